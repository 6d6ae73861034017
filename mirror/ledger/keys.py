"""Witness keys: an Ed25519 private key (PKCS#8 PEM) for signing checkpoints, and
verifier keys given as a PEM public key or C2SP verifier key strings.

These keys sign statements about what the mirror saw (checkpoints); they never sign
TUF metadata. What it does not do: read files (callers pass the bytes), or support
other algorithms than Ed25519. ``cryptography``'s exceptions are translated here.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from mirror.errors import UsageError
from mirror.ledger.note import NoteError, SignedNote, Signer, Verifier

__all__ = ["load_signer", "load_verifiers", "note_names"]


def note_names(note: bytes) -> list[str]:
    """The key names of a signed note's signature lines (none if it does not parse)."""
    try:
        return sorted({signature.name for signature in SignedNote.parse(note).signatures})
    except NoteError:
        return []


def load_signer(pem: bytes, name: str) -> Signer:
    """The Ed25519 signer of a PKCS#8 PEM private key (unencrypted), named ``name``."""
    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise UsageError(
            f"--witness-key: not an unencrypted PKCS#8 PEM private key: {exc}"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError("--witness-key: an Ed25519 key is needed")
    try:
        return Signer(name, key)
    except NoteError as exc:
        raise UsageError(f"--witness-name: {exc}") from exc


def load_verifiers(text: bytes, *, names: Sequence[str] = ()) -> list[Verifier]:
    """Verifier keys from a PEM public key (one per name in ``names``: a PEM key
    carries no name, and the key ID binds name and key, so trying the names a note
    was signed under is safe) or from lines of C2SP verifier keys
    (``name+hash+base64``)."""
    if b"-----BEGIN" in text:
        try:
            key = load_pem_public_key(text)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"not a PEM public key: {exc}") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise UsageError("an Ed25519 public key is needed")
        raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        verifiers = []
        for name in names:
            try:
                verifiers.append(Verifier.from_public(name, raw))
            except NoteError:
                continue
        return verifiers
    out: list[Verifier] = []
    for line in text.decode("utf-8", "replace").splitlines():
        if line.strip():
            try:
                out.append(Verifier.parse(line))
            except NoteError as exc:
                raise UsageError(str(exc)) from exc
    if not out:
        raise UsageError("no verifier key found")
    return out
