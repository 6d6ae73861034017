"""C2SP signed notes and checkpoints: the specification's own example verifies,
unknown signatures are ignored, a bad signature by a known key rejects the note."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from mirror.errors import UsageError
from mirror.ledger.keys import load_signer, load_verifiers, note_names
from mirror.ledger.note import (
    Checkpoint,
    NoteError,
    SignedNote,
    Signer,
    Verifier,
    sign_note,
    verify_note,
)

# From c2sp.org/signed-note, section "Example" (verifier key and signed note).
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n"
    "\n"
    "\u2014 example.com/foo "
    "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
).encode()
# From c2sp.org/tlog-checkpoint: the example checkpoint's text.
SPEC_CHECKPOINT = (
    b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
)


def test_spec_example_verifies() -> None:
    """The specification's verifier key parses (key ID recomputed from name and key)
    and verifies the specification's signed note."""
    verifier = Verifier.parse(SPEC_VKEY)
    assert verifier.key_id.hex() == "530d903a"
    assert str(verifier) == SPEC_VKEY
    note, good = verify_note(SPEC_NOTE, [verifier])
    assert note.text == b"This is an example message.\n"
    assert good == [verifier]
    assert note.to_bytes() == SPEC_NOTE


def test_unknown_extra_signature_is_ignored() -> None:
    """A note with an extra signature from an unknown key still verifies."""
    other = Signer("witness.example/other", Ed25519PrivateKey.generate())
    extra = other.sign(b"This is an example message.\n").line().encode()
    note, good = verify_note(SPEC_NOTE + extra, [Verifier.parse(SPEC_VKEY)])
    assert len(note.signatures) == 2
    assert [v.name for v in good] == ["example.com/foo"]


def test_bad_signature_by_known_key_fails() -> None:
    """One flipped bit in the known key's signature rejects the whole note, and so
    does an altered text."""
    verifier = Verifier.parse(SPEC_VKEY)
    note = SignedNote.parse(SPEC_NOTE)
    sig = note.signatures[0]
    broken = bytearray(sig.signature)
    broken[10] ^= 1
    forged = SignedNote(note.text, (type(sig)(sig.name, sig.key_id, bytes(broken)),))
    with pytest.raises(NoteError, match="does not verify"):
        verify_note(forged.to_bytes(), [verifier])
    with pytest.raises(NoteError, match="does not verify"):
        verify_note(SPEC_NOTE.replace(b"example message", b"exemple message"), [verifier])


def test_no_known_signature_fails() -> None:
    """A note signed only by unknown keys is rejected."""
    other = Signer("example.com/foo", Ed25519PrivateKey.generate())  # same name, other key
    note = sign_note(b"hello\n", [other])
    with pytest.raises(NoteError, match="no signature by a known key"):
        verify_note(note.to_bytes(), [Verifier.parse(SPEC_VKEY)])


@pytest.mark.parametrize(
    "data",
    [
        "no blank line\n\u2014 a AAAA\n".encode(),
        "text\n\n\u2014 a !!!!\n".encode(),
        b"text\n\n- a AAAAAAAA\n",
        b"text\n\n",
        "te\x07xt\n\n\u2014 a AAAAAAAA\n".encode(),
    ],
)
def test_malformed_notes(data: bytes) -> None:
    """Malformed notes are NoteError, not crashes."""
    with pytest.raises(NoteError):
        SignedNote.parse(data)


def test_checkpoint_round_trip_and_sign() -> None:
    """The specification's checkpoint text parses; ours serialize the same way and
    a PKCS#8 PEM witness key signs it verifiably (also via a PEM public key)."""
    checkpoint = Checkpoint.parse_text(SPEC_CHECKPOINT)
    assert checkpoint.origin == "example.com/behind-the-sofa"
    assert checkpoint.size == 20852163
    assert checkpoint.text() == SPEC_CHECKPOINT
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    signer = load_signer(pem, "mirror.example/ledger")
    note = sign_note(checkpoint.text(), [signer]).to_bytes()
    verify_note(note, [signer.verifier])
    verify_note(note, load_verifiers(str(signer.verifier).encode()))
    public_pem = private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    verify_note(note, load_verifiers(public_pem, names=note_names(note)))


@pytest.mark.parametrize(
    "text",
    [
        b"origin\n01\n" + base64.b64encode(bytes(32)) + b"\n",
        b"origin\n1\n" + base64.b64encode(bytes(31)) + b"\n",
        b"origin\n1\n",
        b"origin\n1\n" + base64.b64encode(bytes(32)),
    ],
)
def test_bad_checkpoints(text: bytes) -> None:
    """Leading zeros, short roots, missing lines and a missing final newline fail."""
    with pytest.raises(NoteError):
        Checkpoint.parse_text(text)


def test_witness_key_must_be_ed25519() -> None:
    """A non-PEM witness key is a usage error (exit 2)."""
    with pytest.raises(UsageError):
        load_signer(b"not a key", "x")
