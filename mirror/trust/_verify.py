"""Parsing metadata bytes and counting signatures, with python-tuf's errors translated.

The two primitives every workflow step uses: ``parse`` (bytes to ``Metadata`` of an
expected ``_type``) and ``check_threshold`` (enough distinct keys of a role signed
the canonical bytes). Workflow rules (versions, rollback, expiry) live in
``trusted_set``; this module knows nothing about them.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Mapping
from typing import Any

from securesystemslib.exceptions import UnverifiedSignatureError
from tuf.api.exceptions import RepositoryError
from tuf.api.serialization import DeserializationError, SerializationError

from mirror.errors import MalformedMetadataError, SignatureError
from mirror.trust._tuf import Key, Metadata, Role, Signature

__all__ = [
    "check_threshold",
    "fast_canonical_signed",
    "parse",
    "parse_with_payload",
    "signed_payload",
]


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
    _check_type(metadata, expected_type, what)
    return metadata


def _check_type(metadata: Metadata[Any], expected_type: str, what: str) -> None:
    actual = metadata.signed.type
    if actual != expected_type:
        raise MalformedMetadataError(f"{what}: _type is {actual!r}, expected {expected_type!r}")


def parse_with_payload(
    data: bytes, expected_type: str, what: str
) -> tuple[Metadata[Any], bytes | None]:
    """``parse``, and the fast canonical form of ``signed`` from the same JSON decode
    (``fast_canonical_signed``'s answer, ``None`` where it has none).

    The bytes are decoded once, as python-tuf decodes them (UTF-8, then JSON), with
    floats refused; the canonical form is taken before python-tuf's ``from_dict``
    consumes the document. Anything this decode or ``from_dict`` refuses goes through
    ``parse`` itself, so every error is python-tuf's own, with the same message.
    """
    try:
        document = _DECODER.decode(data.decode("utf-8"))
    except Exception:  # noqa: BLE001 - refused or floats: python-tuf's own path answers
        return parse(data, expected_type, what), None
    signed = document.get("signed") if isinstance(document, dict) else None
    payload = _canonical(signed) if isinstance(signed, dict) else None
    try:
        metadata: Metadata[Any] = Metadata.from_dict(document)
    except Exception:  # noqa: BLE001 - the same refusal again, with python-tuf's error
        return parse(data, expected_type, what), None
    _check_type(metadata, expected_type, what)
    return metadata, payload


class _NotCanonicalizable(Exception):
    """The fast path cannot canonicalize these bytes; take the general one."""


def _no_floats(text: str) -> float:
    raise _NotCanonicalizable(text)


# Every backslash in the standard library's output starts an escape. OLPC canonical
# JSON escapes only '"' and the backslash itself and writes every other character
# raw, so the other escapes are turned back into their characters.
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.DOTALL)
_UNESCAPE = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", "/": "/"}


def _olpc_escape(match: re.Match[str]) -> str:
    code = match.group(1)
    if code in ('"', "\\"):
        return match.group(0)
    if len(code) == 5:
        return chr(int(code[1:], 16))
    return _UNESCAPE[code]


# What python-tuf's decode accepts, except floats and the constants (NaN, Infinity),
# which canonical JSON does not have: one shared decoder, no per-call set-up.
_DECODER = json.JSONDecoder(parse_float=_no_floats, parse_constant=_no_floats)
# Sorted, compact, raw UTF-8. A decoded document cannot hold a cycle, so the
# encoder's cycle bookkeeping (a sixth of its time) is left out.
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, check_circular=False
)


def _canonical(signed: dict[str, Any]) -> bytes | None:
    """OLPC canonical JSON of a decoded ``signed`` object (``None``: a lone
    surrogate, or nesting too deep for the encoder; the general path reports it)."""
    try:
        text = _ENCODER.encode(signed)
    except (ValueError, RecursionError):
        return None
    if "\\" in text:
        text = _ESCAPE.sub(_olpc_escape, text)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: let the general path report it
        return None


def fast_canonical_signed(raw: bytes) -> bytes | None:
    """OLPC canonical JSON of the ``signed`` object of ``raw``, from the C JSON
    codec: about ten times cheaper than python-tuf's pure-Python encoder, which
    dominates verifying a large role. ``None`` where it cannot answer (floats, which
    canonical JSON does not have, or text that is not UTF-8): the caller then takes
    the general path. The result must equal python-tuf's
    ``Metadata.signed_bytes`` (a test compares them)."""
    try:
        document = json.loads(raw, parse_float=_no_floats, parse_constant=_no_floats)
    except (_NotCanonicalizable, ValueError, RecursionError):
        return None
    signed = document.get("signed") if isinstance(document, dict) else None
    if not isinstance(signed, dict):
        return None
    return _canonical(signed)


def signed_payload(metadata: Metadata[Any], what: str, fast: bytes | None = None) -> bytes:
    """The canonical JSON bytes of ``signed`` (all fields, unknown ones included).

    ``fast``: the fast canonical form ``parse_with_payload`` gave with ``metadata``,
    used when there is one; the signatures are checked over exactly what python-tuf
    would sign."""
    if fast is not None:
        return fast
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
        with warnings.catch_warnings():
            # securesystemslib warns about the old spelling of a key type
            # ("ecdsa-sha2-nistp256", sigstore's roots up to v8); under
            # ``-W error`` that warning would read as an invalid signature.
            warnings.simplefilter("ignore", DeprecationWarning)
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
    metadata: Metadata[Any] | None = None,
) -> None:
    """Raise ``SignatureError`` unless ``role``'s threshold of keys signed ``payload``.

    ``by`` names whose keys were used, for the message ("root v3", "delegator A").
    With ``metadata``, a threshold missed over a fast-path payload is counted again
    over python-tuf's own canonical bytes, should the two ever differ.
    """
    valid = count_valid(keys, role, payload, signatures)
    if valid < role.threshold and metadata is not None:
        general = signed_payload(metadata, what)
        if general != payload:
            valid = count_valid(keys, role, general, signatures)
    if valid < role.threshold:
        raise SignatureError(
            f"{what}: {valid} valid signature(s) of the {role.threshold} required "
            f"by the keys of {by}"
        )
