"""From a re-verified published state (``mirror.published.Published``) to the names the
air gap uses: its ``StateRecord`` and when its top-level metadata expires."""

from __future__ import annotations

from datetime import datetime

from mirror import __version__
from mirror.airgap.state import StateRecord, StateRef, format_time, sha256_hex
from mirror.errors import VerificationError
from mirror.log import log
from mirror.published import Published
from mirror.storage import NotFoundInStoreError, Store
from mirror.trust import Limits, metadata_filename
from mirror.trust import parse_metadata as parse

TOOL = f"tuf-mirror {__version__}"


def record_of(published: Published) -> StateRecord | None:
    """The state ``published`` is at, with its timestamp bytes; None when empty."""
    timestamp, snapshot = published.timestamp, published.snapshot
    if timestamp is None or snapshot is None:
        return None
    targets = snapshot.signed.meta.get("targets.json")
    state = StateRef(
        root_version=published.trusted.root.version,
        timestamp_version=timestamp.version,
        timestamp_sha256=sha256_hex(timestamp.raw),
        snapshot_version=snapshot.version,
        snapshot_sha256=sha256_hex(snapshot.raw),
        targets_version=None if targets is None else targets.version,
    )
    return StateRecord(state=state, timestamp=timestamp.raw, tool=TOOL)


async def expiries(store: Store, published: Published, limits: Limits) -> dict[str, datetime]:
    """When root, timestamp, snapshot and targets of ``published`` expire (the
    targets role is read from ``store``; it was verified when it was written)."""
    out: dict[str, datetime] = {"root": published.trusted.root.signed.expires}
    if published.timestamp is not None:
        out["timestamp"] = published.timestamp.signed.expires
    snapshot = published.snapshot
    if snapshot is not None:
        out["snapshot"] = snapshot.signed.expires
        meta = snapshot.signed.meta.get("targets.json")
        if meta is not None:
            consistent = published.trusted.consistent_snapshot
            key = f"metadata/{metadata_filename('targets', meta.version if consistent else None)}"
            try:
                data = await store.get(key, max_length=limits.max_targets_length)
                out["targets"] = parse(data, "targets", key).signed.expires
            except (NotFoundInStoreError, VerificationError) as exc:
                log.warning("cannot tell when %s expires: %s", key, exc)
    return out


def expiry_strings(expires: dict[str, datetime]) -> dict[str, str]:
    return {role: format_time(when) for role, when in expires.items()}


__all__ = ["TOOL", "expiries", "expiry_strings", "record_of"]
