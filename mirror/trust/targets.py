"""Checking bytes against a length and the hashes signed for them.

Used for target files (``check_target``) and for metadata files listed with a length
and hashes in timestamp or snapshot (``check_meta``). The caller streams the bytes
and computes the digests (``new_hasher`` gives the hash object for each algorithm
``hash_algorithms_for`` names); this module only compares. It reads no files.

Only strong hash algorithms are accepted. A file whose signed hashes include an
algorithm not listed in ``HASH_ALGORITHMS`` (``md5``, ``sha1``, a typo such as
``md5-new``) cannot be verified: every listed hash must match, and one cannot be
computed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from typing import Any

from mirror.errors import LengthOrHashMismatchError, OversizeError
from mirror.trust._tuf import MetaFile, TargetFile

__all__ = [
    "HASH_ALGORITHMS",
    "check_length_and_hashes",
    "check_meta",
    "check_target",
    "compute_digests",
    "hash_algorithms_for",
    "new_hasher",
]

_HASHERS: dict[str, Callable[[], Any]] = {
    "sha224": hashlib.sha224,
    "sha256": hashlib.sha256,
    "sha384": hashlib.sha384,
    "sha512": hashlib.sha512,
    "sha3_224": hashlib.sha3_224,
    "sha3_256": hashlib.sha3_256,
    "sha3_384": hashlib.sha3_384,
    "sha3_512": hashlib.sha3_512,
    "blake2b": hashlib.blake2b,
    "blake2s": hashlib.blake2s,
    # python-tuf's name for BLAKE2b with a 32-byte digest.
    "blake2b-256": lambda: hashlib.blake2b(digest_size=32),
}

HASH_ALGORITHMS: frozenset[str] = frozenset(_HASHERS)
"""Hash algorithm names (as written in TUF metadata) that can be verified."""


def new_hasher(algorithm: str) -> Any:
    """A fresh hash object (``update``/``hexdigest``) for a TUF hash algorithm name."""
    try:
        factory = _HASHERS[algorithm]
    except KeyError:
        raise LengthOrHashMismatchError(
            f"hash algorithm {algorithm!r} is not supported: cannot verify"
        ) from None
    return factory()


def _algorithms(hashes: Mapping[str, str], what: str) -> tuple[str, ...]:
    unsupported = sorted(set(hashes) - HASH_ALGORITHMS)
    if unsupported:
        raise LengthOrHashMismatchError(
            f"{what}: hash algorithm {unsupported[0]!r} is not supported, cannot verify"
        )
    return tuple(sorted(hashes))


def hash_algorithms_for(target: TargetFile) -> tuple[str, ...]:
    """The hash algorithms (TUF names, sorted) a caller must compute for ``target``.

    For the common ``sha256``/``sha512`` these are also ``hashlib`` names; use
    ``new_hasher`` for the others. Raises ``LengthOrHashMismatchError`` when a listed
    algorithm is not supported, because then the target cannot be verified.
    """
    return _algorithms(target.hashes, f"target {target.path!r}")


def compute_digests(data: bytes, algorithms: tuple[str, ...]) -> dict[str, str]:
    """Hex digests of in-memory ``data`` for each algorithm."""
    digests: dict[str, str] = {}
    for algorithm in algorithms:
        hasher = new_hasher(algorithm)
        hasher.update(data)
        digests[algorithm] = hasher.hexdigest()
    return digests


def check_length_and_hashes(
    what: str,
    *,
    length: int,
    digests: Mapping[str, str],
    expected_length: int | None,
    expected_hashes: Mapping[str, str] | None,
) -> None:
    """Compare an observed length and digests with the signed ones.

    ``what`` names the file in messages. A signed algorithm that is unsupported
    raises ``LengthOrHashMismatchError``; one the caller did not compute is a caller
    bug (``RuntimeError``).
    """
    if expected_length is not None and length != expected_length:
        cls = OversizeError if length > expected_length else LengthOrHashMismatchError
        raise cls(f"{what}: length {length} differs from signed length {expected_length}")
    if not expected_hashes:
        return
    for algorithm in _algorithms(expected_hashes, what):
        if algorithm not in digests:
            raise RuntimeError(f"{what}: caller did not compute the {algorithm} digest")
        expected = expected_hashes[algorithm]
        if not hmac.compare_digest(digests[algorithm].encode(), expected.encode()):
            raise LengthOrHashMismatchError(
                f"{what}: {algorithm} {digests[algorithm]} differs from signed {expected}"
            )


def check_target(target: TargetFile, length: int, digests: Mapping[str, str]) -> None:
    """Raise unless ``length`` and ``digests`` match what ``target`` lists.

    Every hash the target lists must be present in ``digests`` and equal.
    """
    check_length_and_hashes(
        f"target {target.path!r}",
        length=length,
        digests=digests,
        expected_length=target.length,
        expected_hashes=target.hashes,
    )


def check_meta(what: str, meta: MetaFile, data: bytes) -> None:
    """Raise unless in-memory ``data`` matches the length and hashes in ``meta``
    (each only when listed)."""
    algorithms = _algorithms(meta.hashes, what) if meta.hashes else ()
    check_length_and_hashes(
        what,
        length=len(data),
        digests=compute_digests(data, algorithms),
        expected_length=meta.length,
        expected_hashes=meta.hashes,
    )
