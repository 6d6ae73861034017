"""Target files: length and every listed hash; supported algorithms."""

from __future__ import annotations

import hashlib

import pytest
from tuf.api.metadata import MetaFile, TargetFile

from mirror.errors import LengthOrHashMismatchError, OversizeError
from mirror.trust import (
    check_meta,
    check_target,
    compute_digests,
    hash_algorithms_for,
    new_hasher,
)

DATA = b"artifact content"


def _target(hashes: dict[str, str] | None = None, length: int = len(DATA)) -> TargetFile:
    if hashes is None:
        hashes = {
            "sha256": hashlib.sha256(DATA).hexdigest(),
            "sha512": hashlib.sha512(DATA).hexdigest(),
        }
    return TargetFile(length, hashes, "dir/file")


def test_matching_target_passes() -> None:
    """Right length and all hashes: no error."""
    target = _target()
    check_target(target, len(DATA), compute_digests(DATA, hash_algorithms_for(target)))


def test_length_mismatch() -> None:
    """A different length fails (longer: OversizeError)."""
    target = _target()
    digests = compute_digests(DATA, ("sha256", "sha512"))
    with pytest.raises(LengthOrHashMismatchError, match="length 3"):
        check_target(target, 3, digests)
    with pytest.raises(OversizeError):
        check_target(target, len(DATA) + 1, digests)


def test_one_hash_mismatch_fails() -> None:
    """Every listed hash must match, not just one."""
    target = _target()
    digests = compute_digests(DATA, ("sha256", "sha512"))
    digests["sha512"] = hashlib.sha512(b"other").hexdigest()
    with pytest.raises(LengthOrHashMismatchError, match="sha512"):
        check_target(target, len(DATA), digests)


def test_uncomputed_algorithm_is_a_caller_bug() -> None:
    """A listed algorithm the caller did not compute is a RuntimeError."""
    target = _target()
    with pytest.raises(RuntimeError, match="sha512"):
        check_target(target, len(DATA), compute_digests(DATA, ("sha256",)))


@pytest.mark.parametrize("algorithm", ["md5-new", "md5", "sha1", "crc32"])
def test_unsupported_algorithm_cannot_verify(algorithm: str) -> None:
    """A target listing an unsupported algorithm cannot be verified."""
    target = _target({"sha256": hashlib.sha256(DATA).hexdigest(), algorithm: "00"})
    with pytest.raises(LengthOrHashMismatchError, match="not supported"):
        hash_algorithms_for(target)
    with pytest.raises(LengthOrHashMismatchError, match="not supported"):
        check_target(target, len(DATA), compute_digests(DATA, ("sha256",)))


def test_algorithms_listed_sorted() -> None:
    """hash_algorithms_for names the algorithms to compute, sorted."""
    assert hash_algorithms_for(_target()) == ("sha256", "sha512")


def test_blake2b_256() -> None:
    """python-tuf's blake2b-256 name means BLAKE2b with a 32-byte digest."""
    hasher = new_hasher("blake2b-256")
    hasher.update(DATA)
    assert hasher.hexdigest() == hashlib.blake2b(DATA, digest_size=32).hexdigest()


def test_uppercase_hash_in_metadata_does_not_match() -> None:
    """Hex digests compare exactly (lower-case)."""
    target = _target({"sha256": hashlib.sha256(DATA).hexdigest().upper()})
    with pytest.raises(LengthOrHashMismatchError):
        check_target(target, len(DATA), compute_digests(DATA, ("sha256",)))


def test_check_meta_optional_fields() -> None:
    """MetaFile length and hashes are checked only when present."""
    check_meta("x", MetaFile(1), DATA)
    check_meta("x", MetaFile(1, len(DATA)), DATA)
    with pytest.raises(LengthOrHashMismatchError):
        check_meta("x", MetaFile(1, None, {"sha256": "00" * 32}), DATA)
