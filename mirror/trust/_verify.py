"""Parsing metadata bytes and counting signatures, with python-tuf's errors translated.

The two primitives every workflow step uses: ``parse`` (bytes to ``Metadata`` of an
expected ``_type``) and ``check_threshold`` (enough distinct keys of a role signed
the canonical bytes). Workflow rules (versions, rollback, expiry) live in
``trusted_set``; this module knows nothing about them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from securesystemslib.exceptions import UnverifiedSignatureError
from tuf.api.exceptions import RepositoryError
from tuf.api.serialization import DeserializationError, SerializationError

from mirror.errors import MalformedMetadataError, SignatureError
from mirror.trust._tuf import Key, Metadata, Role, Signature

__all__ = ["check_threshold", "parse", "signed_payload"]


def _cause(exc: BaseException) -> str:
    """The innermost message of an exception chain, on one line."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def parse(data: bytes, expected_type: str, what: str) -> Metadata[Any]:
    """Parse ``data`` as TUF metadata whose ``_type`` must be ``expected_type``.

    Raises ``MalformedMetadataError`` (not JSON, not TUF, duplicate signatures by one
    key id, duplicate key ids in a role, unsupported key type, wrong ``_type``).
    """
    try:
        metadata: Metadata[Any] = Metadata.from_bytes(data)
    except DeserializationError as exc:
        raise MalformedMetadataError(f"{what}: not valid TUF metadata: {_cause(exc)}") from exc
    actual = metadata.signed.type
    if actual != expected_type:
        raise MalformedMetadataError(f"{what}: _type is {actual!r}, expected {expected_type!r}")
    return metadata


def signed_payload(metadata: Metadata[Any], what: str) -> bytes:
    """The canonical JSON bytes of ``signed`` (all fields, unknown ones included)."""
    try:
        return metadata.signed_bytes
    except (SerializationError, RepositoryError, ValueError, TypeError) as exc:
        raise MalformedMetadataError(f"{what}: cannot canonicalize: {_cause(exc)}") from exc


def _key_identity(key: Key) -> str:
    """Two key ids for the same public key must not count twice towards a threshold
    (whatever keytype spelling each entry uses)."""
    public = key.keyval.get("public")
    return public.strip() if isinstance(public, str) else f"keyid:{key.keyid}"


def _signature_valid(key: Key, signature: Signature, payload: bytes) -> bool:
    try:
        key.verify_signature(signature, payload)
    except UnverifiedSignatureError:
        return False
    except Exception:  # noqa: BLE001 - any failure to verify (odd key types) is "not valid"
        return False
    return True


def count_valid(
    keys: Mapping[str, Key],
    role: Role,
    payload: bytes,
    signatures: Mapping[str, Signature],
) -> int:
    """Number of distinct keys of ``role`` with a valid signature over ``payload``.

    Signatures by key ids the role does not list, and signatures that fail to
    verify (including empty or malformed ones), are ignored.
    """
    counted: set[str] = set()
    for keyid in dict.fromkeys(role.keyids):
        signature = signatures.get(keyid)
        key = keys.get(keyid)
        if signature is None or key is None:
            continue
        identity = _key_identity(key)
        if identity in counted:
            continue
        if _signature_valid(key, signature, payload):
            counted.add(identity)
    return len(counted)


def check_threshold(
    what: str,
    *,
    keys: Mapping[str, Key],
    role: Role,
    payload: bytes,
    signatures: Mapping[str, Signature],
    by: str,
) -> None:
    """Raise ``SignatureError`` unless ``role``'s threshold of keys signed ``payload``.

    ``by`` names whose keys were used, for the message ("root v3", "delegator A").
    """
    valid = count_valid(keys, role, payload, signatures)
    if valid < role.threshold:
        raise SignatureError(
            f"{what}: {valid} valid signature(s) of the {role.threshold} required "
            f"by the keys of {by}"
        )
