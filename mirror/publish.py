"""Spooling and publishing a run's verified metadata, and the state file after it.

* ``Spooler`` keeps each verified role until its turn: ``Spooled``. The first
  ``Spooler.MEMORY`` bytes of roles stay in memory (no file, and their publish
  is a ``put_bytes`` that the store may batch with others), the rest on disk
  (memory stays bounded by that budget plus the largest role).
* ``publish_metadata`` writes in the order of invariant 4 (``plan.
  metadata_publish_order``), with the durability rule: targets written this run are
  flushed before any metadata that references them; versioned delegated and
  targets roles are written with deferred durability and made durable by one
  flush before the snapshot; ``timestamp.json`` last.
* ``write_state`` records ``.tuf-mirror/state.json`` (``published.MirrorState``)
  and the publish history (``prune.record_publish``); ``refresh_validators``
  updates only its conditional-GET validators.
* ``expiry_of`` / ``warn_expiry``: when the published top-level metadata expires.

What this module does not do: verify (everything handed over is verified), decide
what to publish (the refresh and the walk did), or copy targets (``copying``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from mirror.errors import StorageError, one_error
from mirror.fetch.spool import write_spool_file
from mirror.layout import STATE_KEY, meta_key
from mirror.log import log
from mirror.plan import MetadataCopy, RoleChange, metadata_publish_order
from mirror.published import MirrorState, Published, encode_state
from mirror.refresh import Refreshed
from mirror.report import RunReport
from mirror.storage import PutOptions, Store
from mirror.storage.headers import put_options_for
from mirror.trust import TrustedSet, metadata_filename

if TYPE_CHECKING:
    from mirror.hooks import Witness

__all__ = [
    "Spooled",
    "Spooler",
    "expiry_of",
    "publish_metadata",
    "refresh_validators",
    "state_after",
    "warn_expiry",
    "write_state",
]


@dataclass(frozen=True, slots=True)
class Spooled:
    """A verified metadata file waiting for its turn to be published."""

    copy: MetadataCopy
    path: Path | None = None
    data: bytes | None = None
    #: the destination already holds these verified bytes (an interrupted run wrote them)
    present: bool = False


class Spooler:
    """Spools verified roles for one run: in memory up to ``MEMORY`` bytes, then in
    the store's spool directory, or (a dry run, or bytes already at the
    destination) not at all."""

    #: bytes of roles kept in memory by one spooler (the rest go to spool files)
    MEMORY = 8 * 1024 * 1024

    def __init__(self, store: Store, *, dry_run: bool, witness: Witness | None = None) -> None:
        self.store = store
        self.dry_run = dry_run
        self.witness = witness
        self._counter = 0
        #: bytes of roles kept in memory so far
        self.in_memory = 0

    def _path(self, kind: str) -> Path:
        self._counter += 1
        return self.store.spool_dir() / f"{kind}-{self._counter}-{random.getrandbits(32):08x}"

    async def spool_role(
        self, change: RoleChange, data: bytes, *, consistent: bool, present: bool = False
    ) -> Spooled:
        """Spool the verified ``data`` of a changed role (``present``: the
        destination already holds them)."""
        name = metadata_filename(change.name, change.new_version if consistent else None)
        copy = MetadataCopy(name, change.name, change.new_version)
        if self.witness is not None:
            await self.witness.observe_meta(
                name=name, role=change.name, version=change.new_version, data=data
            )
        if self.dry_run or present:
            return Spooled(copy, present=present)
        if self.in_memory + len(data) <= self.MEMORY:
            self.in_memory += len(data)
            return Spooled(copy, data=data)
        # Past the budget, kept on disk: memory stays bounded by it and the largest role.
        path = self._path("role")
        await write_spool_file(path, data)
        return Spooled(copy, path=path)


def _root_files(refreshed: Refreshed, published: Published, pinned: bytes) -> dict[str, bytes]:
    """Root versions to publish: old versions (a first sync), the pinned root itself
    on a first sync (clients bootstrapping from it start there), then the new ones,
    in order; and ``root.json`` when the upstream serves a verified one."""
    roots: dict[str, bytes] = {}
    for version, data in sorted(refreshed.root_history.items()):
        roots[f"{version}.root.json"] = data
    if not published.pinned_root_published:
        roots[f"{published.pinned_version}.root.json"] = pinned
    for root in refreshed.new_roots:
        roots[f"{root.version}.root.json"] = root.raw
    # Only a root.json the upstream itself serves (and that is a verified root):
    # a mirror adds no files of its own under the client-visible names.
    if refreshed.root_json is not None and roots:
        roots["root.json"] = refreshed.root_json
    return roots


async def publish_metadata(
    store: Store,
    refreshed: Refreshed,
    published: Published,
    *,
    changes: Sequence[RoleChange],
    spooled: Mapping[str, Spooled],
    pinned: bytes,
    targets_written: bool,
    short_max_age: int,
    report: RunReport,
) -> None:
    """Publish in order, ``timestamp.json`` last (see the module docstring).
    ``targets_written``: this run wrote targets (they are flushed first)."""
    new = refreshed.trusted
    consistent = new.consistent_snapshot
    roots = _root_files(refreshed, published, pinned)
    root_versions = [int(name.split(".", 1)[0]) for name in roots if name != "root.json"]
    snapshot = refreshed.snapshot
    order = metadata_publish_order(
        changed_roles=list(changes) if snapshot is not None else [],
        snapshot_version=snapshot.version if snapshot is not None else None,
        new_root_versions=root_versions,
        timestamp_changed=refreshed.timestamp_changed,
        consistent_snapshot=consistent,
        unversioned_root="root.json" in roots,
    )
    # Targets were written with deferred durability: make them durable before
    # any metadata that references them is published.
    if targets_written:
        await store.flush()
    # Versioned targets roles are referenced by nothing until the snapshot that
    # names them is published: they are written with deferred durability and
    # made durable by one flush before the snapshot (not two fsyncs each).
    # The delegated roles among them are not ordered against each other either:
    # they are written side by side (a local store batches such small writes into
    # few thread calls), all before ``targets.json``.
    deferred = 0
    side_by_side: list[tuple[str, Spooled, PutOptions]] = []
    for item in order:
        key = meta_key(item.name)
        options = put_options_for(key, consistent_snapshot=consistent, short_max_age=short_max_age)
        later = consistent and item.role not in ("snapshot", "root", "timestamp")
        if later:
            options = dataclasses.replace(options, durable=False)
            deferred += 1
            spool = spooled.get(item.name)
            if item.role != "targets" and spool is not None and not spool.present:
                side_by_side.append((key, spool, options))
                continue
        await _put_spooled(store, side_by_side, report)
        side_by_side = []
        if not later and deferred:
            await store.flush()
            deferred = 0
        if item.name in roots:
            await store.put_bytes(key, roots[item.name], options)
        elif item.name == "timestamp.json":
            assert new.timestamp is not None
            await store.put_bytes(key, new.timestamp.raw, options)
        elif snapshot is not None and item.name == snapshot.name:
            await store.put_bytes(key, snapshot.data, options)
        else:
            spool = spooled.get(item.name)
            if spool is None:
                raise RuntimeError(f"nothing spooled for {item.name}")
            if spool.present:
                continue
            await _put_one(store, key, spool, options)
        report.roles_published += 1
    await _put_spooled(store, side_by_side, report)
    if deferred:
        await store.flush()


#: spooled roles written at once by ``_put_spooled``
_PARALLEL_PUTS = 64


async def _put_one(store: Store, key: str, spool: Spooled, options: PutOptions) -> None:
    if spool.path is not None:
        await store.put_file(key, spool.path, options)
    else:
        assert spool.data is not None
        await store.put_bytes(key, spool.data, options)


async def _put_spooled(
    store: Store, items: Sequence[tuple[str, Spooled, PutOptions]], report: RunReport
) -> None:
    """Write ``items`` (key, spooled role, options), ``_PARALLEL_PUTS`` at a time."""
    if len(items) <= 1:
        for item in items:
            await _put_one(store, *item)
        report.roles_published += len(items)
        return
    slots = trio.Semaphore(_PARALLEL_PUTS)

    async def put(key: str, spool: Spooled, options: PutOptions) -> None:
        try:
            await _put_one(store, key, spool, options)
        finally:
            slots.release()

    with one_error():
        async with trio.open_nursery() as nursery:
            for item in items:
                await slots.acquire()
                nursery.start_soon(put, *item)
    report.roles_published += len(items)


async def put_state(store: Store, document: Mapping[str, object]) -> None:
    """Write ``.tuf-mirror/state.json``; a failure costs the next run time, never this one."""
    try:
        await store.put_bytes(
            STATE_KEY,
            encode_state(document),
            put_options_for(STATE_KEY, consistent_snapshot=False),
        )
    except StorageError as exc:
        log.warning("could not record %s (next run is slower): %s", STATE_KEY, exc)


async def write_state(
    store: Store, state: MirrorState, trusted: TrustedSet, *, record_history: bool
) -> None:
    """Record ``state`` after a publish; with ``record_history`` (the destination
    itself, not an export's staging) also the publish history, for prune."""
    document = state.to_json()
    if record_history and trusted.timestamp is not None and trusted.snapshot is not None:
        # The history of published states, for prune's retention.
        from mirror.prune import record_publish

        await record_publish(
            store,
            document,
            timestamp=trusted.timestamp.raw,
            timestamp_version=trusted.timestamp.version,
            snapshot_version=trusted.snapshot.version,
            root_version=trusted.root.version,
            published_at=datetime.now(UTC),
        )
    await put_state(store, document)


def timestamp_sha256(trusted: TrustedSet) -> str | None:
    return hashlib.sha256(trusted.timestamp.raw).hexdigest() if trusted.timestamp else None


def state_after(
    refreshed: Refreshed,
    *,
    versions: Mapping[str, int],
    leaves: Collection[str],
    selection: str,
    expires: Mapping[str, str],
) -> MirrorState:
    """The state file of the state this run publishes (``versions``/``leaves``: its
    walk's; ``selection``: the target selection's fingerprint)."""
    new = refreshed.trusted
    assert new.snapshot is not None
    return MirrorState(
        snapshot_version=new.snapshot.version,
        versions=dict(versions),
        leaves=tuple(sorted(leaves)),
        timestamp_etag=refreshed.timestamp_etag,
        timestamp_sha256=timestamp_sha256(new),
        filter=selection,
        expires=dict(expires),
    )


async def refresh_validators(
    store: Store, published: Published, trusted: TrustedSet, etag: str | None
) -> None:
    """Nothing new, but the timestamp's ETag changed (or was not usable): record
    the new one, so later runs with nothing new stay conditional GETs."""
    if published.state is None or trusted.timestamp is None:
        return
    await put_state(
        store,
        dataclasses.replace(
            published.state, timestamp_etag=etag, timestamp_sha256=timestamp_sha256(trusted)
        ).to_json(),
    )


def expiry_of(trusted: TrustedSet, published: Published) -> dict[str, str]:
    """role -> ISO expiry of the top-level metadata published after this run
    (targets is not re-read on a run with nothing new: the recorded value stays)."""
    expires: dict[str, str] = dict(published.previous_expires)
    expires["root"] = trusted.root.signed.expires.isoformat()
    for role, verified in (
        ("timestamp", trusted.timestamp),
        ("snapshot", trusted.snapshot or published.snapshot),
        ("targets", trusted.targets),
    ):
        if verified is not None:
            expires[role] = verified.signed.expires.isoformat()
    return expires


def warn_expiry(
    report: RunReport, expires: Mapping[str, str], *, now: datetime, horizon: float
) -> None:
    """Warn when published metadata expires within ``horizon`` seconds (--expiry-warning):
    operators learn before clients fail."""
    for role, when in sorted(expires.items()):
        left = (datetime.fromisoformat(when) - now).total_seconds()
        if left < horizon:
            warning = (
                f"published {role} expires in {left / 3600:.1f} h ({when}): "
                "clients will refuse it unless the upstream re-signs in time"
                if left > 0
                else f"published {role} expired at {when}"
            )
            log.warning("%s", warning)
            report.warnings.append(warning)
