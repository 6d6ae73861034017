"""Recognise a publish that stopped between two of its own steps.

A sync publishes new roots before ``timestamp.json`` (DESIGN.md, invariant 4). When a
new root rotates the timestamp (or snapshot) keys and the run is killed, or the
``timestamp.json`` write fails, after ``N.root.json`` and before ``timestamp.json``,
the destination holds a root chain that ends in root vN and a timestamp signed
under root vN-1: the timestamp does not verify under the final root. That is not a
tampered destination, it is our own unfinished publish, and TUF clients cannot use
such a mirror until it is finished.

``earlier_root_state`` tells the two apart: it re-verifies the published timestamp
and snapshot under each earlier root of the (already verified) chain, newest first.
If they verify under root vK < vN, the destination is an interrupted publish: the
loader keeps that state as the previous one (the diff base, as a TUF client keeps
its old timestamp while it updates its root) and the run publishes the upstream's
current timestamp, signed under the final root, which completes it. If they verify
under no root of the chain, the destination is tampered, as before.

What it does not do: fetch, write or decide the publish order (``mirror.sync``), or
trust anything the pinned root's chain did not sign: every byte is verified again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from mirror.errors import IncompletePublishError, VerificationError
from mirror.trust import Limits, Snapshot, Timestamp, TrustedSet, Verified

__all__ = [
    "EarlierRootState",
    "IncompletePublishError",
    "earlier_root_state",
]


@dataclass(frozen=True, slots=True)
class EarlierRootState:
    """The published timestamp and snapshot, verified under an earlier root."""

    trusted: TrustedSet
    timestamp: Verified[Timestamp]
    snapshot: Verified[Snapshot]
    #: the root version they verify under, and the final published one
    root_version: int
    final_root_version: int

    def describe(self) -> str:
        """One line for the log and the report."""
        return (
            f"an interrupted publish: {self.final_root_version}.root.json is published "
            f"but timestamp.json (v{self.timestamp.version}) is still the one signed "
            f"under root v{self.root_version}"
        )


#: reads and verifies the snapshot the timestamp names, from the destination
SnapshotLoader = Callable[[TrustedSet, Verified[Timestamp]], Awaitable[Verified[Snapshot]]]


async def earlier_root_state(
    *,
    root_bytes: bytes,
    roots: Sequence[bytes],
    timestamp_raw: bytes,
    limits: Limits,
    now: datetime,
    load_snapshot: SnapshotLoader,
) -> EarlierRootState | None:
    """The published state under the newest earlier root it verifies under, or None.

    ``roots`` are the verified root versions after the pinned one (``root_bytes``),
    as the destination publishes them; the last one is the root under which the
    timestamp did not verify. ``now`` is the loader's reference time."""
    final = len(roots)
    for keep in range(final - 1, -1, -1):
        trusted = _trusted_set(root_bytes, roots[:keep], limits, now)
        try:
            timestamp = trusted.update_timestamp(timestamp_raw)
            snapshot = await load_snapshot(trusted, timestamp)
        except VerificationError:
            continue
        pinned = trusted.root.version - keep
        return EarlierRootState(
            trusted=trusted,
            timestamp=timestamp,
            snapshot=snapshot,
            root_version=trusted.root.version,
            final_root_version=pinned + final,
        )
    return None


def _trusted_set(
    root_bytes: bytes, roots: Sequence[bytes], limits: Limits, now: datetime
) -> TrustedSet:
    trusted = TrustedSet(root_bytes, now=now, limits=limits, expired_delegated_ok=True)
    for data in roots:
        trusted.update_root(data)
    return trusted
