"""Value types of the trust core: verified metadata with its raw bytes, and limits.

``Verified`` pairs the exact bytes that were verified with the parsed metadata, so
what gets published is always the verified byte string, never a re-serialization.
``Limits`` holds the size and count caps that bound memory and work. Nothing here
verifies anything by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from mirror.trust._tuf import Metadata, Root, Snapshot, Targets, Timestamp

__all__ = ["Limits", "T", "Verified"]

T = TypeVar("T", Root, Timestamp, Snapshot, Targets)


@dataclass(frozen=True, slots=True)
class Verified(Generic[T]):
    """Metadata that passed verification as ``role``, with the exact input bytes."""

    raw: bytes
    metadata: Metadata[T]
    role: str

    @property
    def signed(self) -> T:
        """The signed payload (``Root``, ``Timestamp``, ``Snapshot`` or ``Targets``)."""
        return self.metadata.signed

    @property
    def version(self) -> int:
        """The version inside the metadata."""
        return self.metadata.signed.version


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Caps on sizes and counts.

    Lengths declared in signed metadata take precedence; the ``max_*_length``
    values apply where nothing is declared (PEP 458 snapshots exceed 2 MB, hence the
    generous defaults). ``max_delegation_visits=None`` derives the cap from the
    snapshot: one visit per role it lists, plus one.
    """

    max_root_length: int = 512_000
    max_timestamp_length: int = 16_384
    max_snapshot_length: int = 32_000_000
    max_targets_length: int = 64_000_000
    max_root_rotations: int = 256
    max_delegation_visits: int | None = None

    def snapshot_max(self, timestamp: Timestamp) -> int:
        """Bytes to accept for snapshot: the length timestamp declares, else the cap."""
        declared = timestamp.snapshot_meta.length
        return declared if declared is not None else self.max_snapshot_length

    def targets_max(self, snapshot: Snapshot, role: str) -> int:
        """Bytes to accept for a targets role: the length snapshot declares, else the cap."""
        meta = snapshot.meta.get(f"{role}.json")
        if meta is not None and meta.length is not None:
            return meta.length
        return self.max_targets_length

    def delegation_visits(self, snapshot: Snapshot) -> int:
        """How many roles one delegation search or walk may visit."""
        if self.max_delegation_visits is not None:
            return self.max_delegation_visits
        return len(snapshot.meta) + 1
