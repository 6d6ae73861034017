"""C2SP ``signed-note`` with Ed25519 keys, and the ``tlog-checkpoint`` body (pure).

A signed note is a UTF-8 text ending in a newline, a blank line, then one line per
signature: ``— <key name> base64(key ID || signature)``. The key ID is the first four
bytes of ``SHA-256(key name || 0x0A || 0x01 || public key)`` for Ed25519 (type
0x01). A verifier key is the string ``<name>+<hex key ID>+base64(0x01 || public
key)``. Verification follows the specification: signatures from unknown keys (name
or ID not matching) are ignored; a known key's signature that does not verify
rejects the note; at least one known key must have signed.

A checkpoint's text is three lines: origin, tree size (decimal), base64 root hash.

What it does not do: read key files from disk or choose where notes are stored
(``mirror.ledger.keys`` and ``mirror.ledger.log``). Ed25519 comes from
``cryptography``; its exceptions are translated here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "Checkpoint",
    "NoteError",
    "NoteSignature",
    "SignedNote",
    "Signer",
    "Verifier",
    "key_id",
    "sign_note",
    "verify_note",
]

_ED25519 = 0x01
_DASH = "\u2014 "
#: notes bigger than this are refused before parsing
MAX_NOTE_SIZE = 1 << 20
MAX_SIGNATURES = 64


class NoteError(ValueError):
    """A note that does not parse, or whose signatures do not verify."""


def key_id(name: str, public: bytes) -> bytes:
    """The 4-byte key ID of an Ed25519 key: SHA-256(name || 0x0A || 0x01 || key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([_ED25519]) + public).digest()[:4]


def _check_name(name: str) -> str:
    if not name or "+" in name or any(ch.isspace() for ch in name):
        raise NoteError(f"bad key name {name!r}: empty, or holds a space or '+'")
    return name


@dataclass(frozen=True, slots=True)
class Verifier:
    """An Ed25519 verifier key: name, key ID and public key."""

    name: str
    key_id: bytes
    public: bytes

    @classmethod
    def from_public(cls, name: str, public: bytes) -> Verifier:
        if len(public) != 32:
            raise NoteError("an Ed25519 public key is 32 bytes")
        return cls(_check_name(name), key_id(name, public), public)

    @classmethod
    def parse(cls, vkey: str) -> Verifier:
        """Parse ``<name>+<hex id>+<base64(0x01 || key)>``."""
        parts = vkey.strip().split("+", 2)
        if len(parts) != 3:
            raise NoteError(f"a verifier key has three '+'-separated parts: {vkey!r}")
        name, hex_id, material = parts
        try:
            ident = bytes.fromhex(hex_id)
            raw = base64.b64decode(material, validate=True)
        except (ValueError, binascii.Error) as exc:
            raise NoteError(f"bad verifier key {vkey!r}: {exc}") from exc
        if len(ident) != 4 or len(raw) != 33 or raw[0] != _ED25519:
            raise NoteError(f"not an Ed25519 verifier key: {vkey!r}")
        verifier = cls.from_public(name, raw[1:])
        if verifier.key_id != ident:
            raise NoteError(f"verifier key {vkey!r}: key ID does not match name and key")
        return verifier

    def __str__(self) -> str:
        material = base64.b64encode(bytes([_ED25519]) + self.public).decode()
        return f"{self.name}+{self.key_id.hex()}+{material}"

    def verify(self, text: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(signature, text)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True, slots=True)
class Signer:
    """An Ed25519 private key with the name it signs under."""

    name: str
    private: Ed25519PrivateKey

    def __post_init__(self) -> None:
        _check_name(self.name)

    @property
    def verifier(self) -> Verifier:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        public = self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return Verifier.from_public(self.name, public)

    def sign(self, text: bytes) -> NoteSignature:
        return NoteSignature(self.name, self.verifier.key_id, self.private.sign(text))


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line: key name, key ID, signature bytes."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        blob = base64.b64encode(self.key_id + self.signature).decode()
        return f"{_DASH}{self.name} {blob}\n"


@dataclass(frozen=True, slots=True)
class SignedNote:
    """A note text (ending in a newline) and its signature lines."""

    text: bytes
    signatures: tuple[NoteSignature, ...]

    def to_bytes(self) -> bytes:
        lines = "".join(signature.line() for signature in self.signatures)
        return self.text + b"\n" + lines.encode()

    @classmethod
    def parse(cls, data: bytes) -> SignedNote:
        if len(data) > MAX_NOTE_SIZE:
            raise NoteError("note too large")
        try:
            decoded = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NoteError("a note is UTF-8") from exc
        if any(ord(ch) < 0x20 and ch != "\n" for ch in decoded):
            raise NoteError("a note holds no control characters but newlines")
        split = decoded.rfind("\n\n")
        if split < 0 or not decoded.endswith("\n"):
            raise NoteError("no blank line between the note text and its signatures")
        text = decoded[: split + 1]
        signatures: list[NoteSignature] = []
        for line in decoded[split + 2 :].splitlines():
            if not line.startswith(_DASH):
                raise NoteError(f"bad signature line {line!r}")
            name, _, blob = line[len(_DASH) :].partition(" ")
            try:
                raw = base64.b64decode(blob, validate=True)
            except (ValueError, binascii.Error) as exc:
                raise NoteError(f"bad signature line {line!r}: {exc}") from exc
            if not name or len(raw) < 5 or " " in blob:
                raise NoteError(f"bad signature line {line!r}")
            signatures.append(NoteSignature(name, raw[:4], raw[4:]))
        if not signatures:
            raise NoteError("a signed note has at least one signature")
        if len(signatures) > MAX_SIGNATURES:
            raise NoteError("too many signatures")
        return cls(text.encode(), tuple(signatures))


def sign_note(text: bytes, signers: Iterable[Signer]) -> SignedNote:
    """Sign ``text`` (which must end in a newline) with every signer."""
    if not text.endswith(b"\n"):
        raise NoteError("a note text ends in a newline")
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NoteError("a note is UTF-8") from exc
    if any(ord(ch) < 0x20 and ch != "\n" for ch in decoded):
        raise NoteError("a note text holds no control characters but newlines")
    return SignedNote(text, tuple(signer.sign(text) for signer in signers))


def verify_note(data: bytes, verifiers: Iterable[Verifier]) -> tuple[SignedNote, list[Verifier]]:
    """Parse and verify a signed note; return it with the known keys that signed.

    Unknown signatures are ignored; a known key's bad signature or no known
    signature at all is ``NoteError``."""
    note = SignedNote.parse(data)
    known = {(v.name, v.key_id): v for v in verifiers}
    good: list[Verifier] = []
    for signature in note.signatures:
        verifier = known.get((signature.name, signature.key_id))
        if verifier is None:
            continue
        if not verifier.verify(note.text, signature.signature):
            raise NoteError(f"the signature of {signature.name} does not verify")
        good.append(verifier)
    if not good:
        raise NoteError("no signature by a known key")
    return note, good


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tlog-checkpoint body: origin, tree size, root hash (+ extension lines)."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> bytes:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode()]
        return ("\n".join([*lines, *self.extensions]) + "\n").encode()

    @classmethod
    def parse_text(cls, text: bytes) -> Checkpoint:
        try:
            lines = text.decode("utf-8").split("\n")
        except UnicodeDecodeError as exc:
            raise NoteError("a checkpoint is UTF-8") from exc
        if lines[-1] != "" or len(lines) < 4 or any(not line for line in lines[:-1]):
            raise NoteError("a checkpoint has at least three non-empty lines")
        origin, size_text, root_text = lines[:3]
        if not size_text.isdigit() or (size_text.startswith("0") and size_text != "0"):
            raise NoteError(f"bad tree size {size_text!r}")
        try:
            root = base64.b64decode(root_text, validate=True)
        except (ValueError, binascii.Error) as exc:
            raise NoteError(f"bad root hash {root_text!r}") from exc
        if len(root) != 32:
            raise NoteError("a root hash is 32 bytes")
        return cls(origin, int(size_text), root, tuple(lines[3:-1]))
