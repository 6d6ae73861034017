"""The right edge of an RFC 6962 tree (pure): append leaves in O(log n) memory.

A tree of ``n`` leaves is a sequence of perfect subtrees, one per set bit of ``n``
(largest first). Keeping their hashes is enough to append leaves and to compute
the root at every size on the way, so the ledger never loads the log to extend it
and ``ledger verify`` recomputes a root by streaming the entries once.

What it does not do: proofs (``mirror.ledger.merkle``) or storage.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from mirror.ledger.merkle import EMPTY_ROOT, hash_children, hash_leaf

__all__ = ["Frontier"]


@dataclass(slots=True)
class Frontier:
    """Perfect-subtree hashes of the tree so far, largest (leftmost) first."""

    size: int = 0
    hashes: list[bytes] = field(default_factory=list)

    def append_leaf_hash(self, leaf_hash: bytes) -> None:
        self.hashes.append(leaf_hash)
        self.size += 1
        # Each trailing zero bit of the new size merges the two rightmost subtrees.
        count = self.size
        while count & 1 == 0:
            right = self.hashes.pop()
            left = self.hashes.pop()
            self.hashes.append(hash_children(left, right))
            count >>= 1

    def append(self, leaf: bytes) -> None:
        self.append_leaf_hash(hash_leaf(leaf))

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        node = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            node = hash_children(left, node)
        return node

    def copy(self) -> Frontier:
        return Frontier(self.size, list(self.hashes))

    def to_json(self) -> dict[str, object]:
        return {"size": self.size, "hashes": [base64.b64encode(h).decode() for h in self.hashes]}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Frontier:
        size = data["size"]
        hashes = data["hashes"]
        if not isinstance(size, int) or not isinstance(hashes, list):
            raise ValueError("bad frontier")
        decoded = [base64.b64decode(str(h), validate=True) for h in hashes]
        if len(decoded) != bin(size).count("1") or any(len(h) != 32 for h in decoded):
            raise ValueError("frontier does not match its size")
        return cls(size, decoded)
