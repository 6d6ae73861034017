"""RFC 6962 Merkle tree hashing, inclusion and consistency proofs (pure: no I/O).

Leaves are hashed as ``SHA-256(0x00 || leaf)``, interior nodes as
``SHA-256(0x01 || left || right)``, and the root of ``n`` leaves splits at the
largest power of two below ``n`` (RFC 6962 section 2.1). The empty tree's root is
``SHA-256("")``.

Proofs are built from a ``HashSource``: anything that can give the hash of a
complete, aligned subtree (``subtree(level, index)``: the ``2**level`` leaves from
``index * 2**level``), so the ledger answers from its stored hash tiles and tests
from a list. Verification (``verify_inclusion``, ``verify_consistency``) follows
RFC 9162 section 2.1.3.2 and 2.1.4.2 and needs nothing but the proof.

What it does not do: store anything, or read tiles (``mirror.ledger.log``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Final

__all__ = [
    "EMPTY_ROOT",
    "HashSource",
    "ProofError",
    "consistency_proof",
    "hash_children",
    "hash_leaf",
    "inclusion_proof",
    "range_hash",
    "root_of_leaves",
    "tree_root",
    "verify_consistency",
    "verify_inclusion",
]

EMPTY_ROOT: Final = hashlib.sha256(b"").digest()

#: ``source(level, index)``: the hash of the complete subtree of ``2**level`` leaves
#: starting at leaf ``index * 2**level``
HashSource = Callable[[int, int], bytes]


class ProofError(ValueError):
    """A proof that does not verify, or a request for a proof that cannot exist."""


def hash_leaf(data: bytes) -> bytes:
    """The RFC 6962 leaf hash: SHA-256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    """The RFC 6962 interior node hash: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(size: int) -> int:
    """The largest power of two strictly smaller than ``size`` (size >= 2)."""
    return 1 << ((size - 1).bit_length() - 1)


def root_of_leaves(leaf_hashes: Sequence[bytes]) -> bytes:
    """The root of a tree given all its leaf hashes (small trees and tests)."""
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    # Bottom-up: pair neighbours; an odd last node is promoted unchanged, which
    # gives exactly RFC 6962's left-heavy split.
    while len(level) > 1:
        paired = [hash_children(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def range_hash(source: HashSource, start: int, size: int) -> bytes:
    """The Merkle hash of leaves ``[start, start + size)`` where ``start`` is a
    multiple of the largest power of two that fits (every range RFC 6962 asks for)."""
    if size <= 0:
        raise ProofError("empty range")
    if size & (size - 1) == 0:
        level = size.bit_length() - 1
        if start % size:
            raise RuntimeError(f"unaligned subtree {start}+{size}")
        return source(level, start >> level)
    k = _split(size)
    return hash_children(range_hash(source, start, k), range_hash(source, start + k, size - k))


def tree_root(source: HashSource, size: int) -> bytes:
    """The root hash of the first ``size`` leaves."""
    return EMPTY_ROOT if size == 0 else range_hash(source, 0, size)


def inclusion_proof(source: HashSource, index: int, size: int) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of ``size`` leaves (RFC 6962
    section 2.1.1), leaf-side first."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of {size}")
    proof: list[bytes] = []
    start, length = 0, size
    # Top-down, then reversed: each step keeps the half holding the leaf and
    # records the other half's hash.
    while length > 1:
        k = _split(length)
        if index - start < k:
            proof.append(range_hash(source, start + k, length - k))
            length = k
        else:
            proof.append(range_hash(source, start, k))
            start, length = start + k, length - k
    proof.reverse()
    return proof


def consistency_proof(source: HashSource, old_size: int, new_size: int) -> list[bytes]:
    """The proof that the first ``old_size`` leaves are a prefix of the first
    ``new_size`` (RFC 6962 section 2.1.2, SUBPROOF)."""
    if not 0 <= old_size <= new_size:
        raise ProofError(f"no consistency proof from {old_size} to {new_size}")
    if old_size in (0, new_size):
        return []
    proof: list[bytes] = []

    def subproof(m: int, start: int, n: int, whole: bool) -> None:
        if m == n:
            if not whole:
                proof.append(range_hash(source, start, n))
            return
        k = _split(n)
        if m <= k:
            subproof(m, start, k, whole)
            proof.append(range_hash(source, start + k, n - k))
        else:
            subproof(m - k, start + k, n - k, False)
            proof.append(range_hash(source, start, k))

    subproof(old_size, 0, new_size, True)
    return proof


def _check_hashes(*hashes: bytes) -> None:
    if any(len(value) != 32 for value in hashes):
        raise ProofError("a hash is 32 bytes")


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise ``ProofError`` unless ``proof`` shows leaf ``index`` with ``leaf_hash``
    in the tree of ``size`` leaves whose root is ``root``."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of {size}")
    _check_hashes(leaf_hash, root, *proof)
    fn, sn = index, size - 1
    node = leaf_hash
    for sibling in proof:
        if sn == 0:
            raise ProofError("inclusion proof too long")
        if fn & 1 or fn == sn:
            node = hash_children(sibling, node)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            node = hash_children(node, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof too short")
    if node != root:
        raise ProofError("inclusion proof does not lead to the root")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise ``ProofError`` unless ``proof`` shows the tree (``old_size``,
    ``old_root``) is a prefix of the tree (``new_size``, ``new_root``)."""
    if old_size < 0 or old_size > new_size:
        raise ProofError(f"tree size went from {old_size} to {new_size}")
    _check_hashes(*proof)
    if old_size == 0:
        # Every tree extends the empty one: a proof of it proves nothing (RFC 9162
        # defines none), so it is refused like the reference implementation does.
        raise ProofError("no consistency proof from the empty tree")
    if old_size == new_size:
        if proof:
            raise ProofError("non-empty proof between equal sizes")
        if old_root != new_root:
            raise ProofError("same size, different roots")
        return
    _check_hashes(old_root, new_root)
    if not proof:
        raise ProofError("empty consistency proof")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        # A complete old tree is its own first node.
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for node in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof too long")
        if fn & 1 or fn == sn:
            fr = hash_children(node, fr)
            sr = hash_children(node, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = hash_children(sr, node)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof too short")
    if fr != old_root:
        raise ProofError("consistency proof does not lead to the old root")
    if sr != new_root:
        raise ProofError("consistency proof does not lead to the new root")
