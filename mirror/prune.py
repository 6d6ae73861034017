"""``tuf-mirror prune`` (and ``sync --prune``): delete what no retained state needs.

A mirror publishes a new consistent snapshot on every upstream change and never
overwrites a versioned or content-addressed file, so without pruning it grows
without bound. Pruning is mark and sweep from the timestamp (PEP 458):

1. take the destination lock (a sync and a prune never overlap);
2. learn the published states from the mirror's own records (``state.json``'s
   ``history``: timestamp version, snapshot version, root version, publish time,
   and a copy of each published ``timestamp.json`` under
   ``.tuf-mirror/timestamps/``) and choose the retained ones (``select_retained``:
   the current state, the last ``keep_states`` states and every state published
   less than ``keep_for`` ago);
3. mark: load each retained state with the same verification a sync uses (the
   current one with ``mirror.published.load_published``; older ones from their recorded
   timestamp copy, through the root chain up to the root they were published
   under) and walk it as a client would: snapshot, every role the snapshot lists,
   and the content-addressed names of every target that a role is authorised to
   list (``DelegationWalk``) and that the target selection copies. Known states
   that are not retained are walked the same way, so that their files can be
   attributed to them; marks live in an SQLite file in the spool directory, so
   memory stays bounded by the largest role;
4. re-read ``timestamp.json``; if it changed, stop (exit 3) with nothing deleted;
5. sweep, streaming the listing: targets first, then roles, snapshots last, in
   batches (``Store.delete_many``: one S3 DeleteObjects per 1,000 keys). A crash
   at any point leaves every retained state complete, and a known expired state's
   snapshot outlives the files it attributes, so a rerun finishes the job (a
   file held back as possibly newer than the prune keeps the metadata that
   attributes it for the next prune);
6. drop the swept states from the history and delete their timestamp copies.

Never deleted: any ``N.root.json`` and ``root.json``, ``timestamp.json``, files of
the current or a retained state, ``.tuf-mirror/`` (state, ledger, lock: listings
never show it), files outside ``metadata/`` and ``targets/``, and anything whose
listing time is not before the prune started. Files no known state references
(an older mirror's leftovers, a state whose record is missing) are orphans: reported,
deleted only with ``orphans=True`` (``--orphans``).

What it does not do: fetch anything from an upstream, judge the upstream's current
metadata, or decide how long clients need (that is the operator's retention).
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from pathlib import Path
from typing import Any, Final

import trio

from mirror.config import Settings
from mirror.errors import (
    StorageError,
    TamperedDestinationError,
    TransientError,
    UsageError,
    VerificationError,
)
from mirror.filters import TargetFilter
from mirror.layout import METADATA, STATE_KEY, TARGETS
from mirror.log import log
from mirror.published import load_published
from mirror.report import PruneReport, RunReport
from mirror.storage import DELETE_BATCH, INTERNAL_PREFIX, NotFoundInStoreError, PutOptions, Store
from mirror.trust import (
    Authority,
    DelegationWalk,
    Limits,
    Targets,
    TrustedSet,
    metadata_filename,
    target_filenames,
)

#: where each published timestamp.json is kept while its state is in the history
TIMESTAMPS_PREFIX: Final = INTERNAL_PREFIX + "timestamps/"
#: at most this many published states are remembered in state.json
HISTORY_MAX: Final = 1000
#: the defaults keep a client in the middle of an update safe
DEFAULT_KEEP_STATES: Final = 2
DEFAULT_KEEP_FOR: Final = timedelta(hours=1)
#: at most this many keys are listed in the report (the counts are always complete)
MAX_LISTED: Final = 100_000
#: loading an older state checks signatures, versions and hashes, not freshness
_NO_EXPIRY: Final = datetime(1, 1, 2, tzinfo=UTC)
_ROOT_RE: Final = re.compile(r"^metadata/(\d+\.)?root\.json$")
_SNAPSHOT_RE: Final = re.compile(r"^metadata/\d+\.snapshot\.json$")
_LOOKUP_CHUNK: Final = 500
#: what sync appends to the selection's fingerprint under --policy
_POLICY_MARK: Final = "+policy:"
_MAX_STATE_BYTES: Final = 64 * 1024 * 1024


# -- the published states and the retention -----------------------------------------


@dataclass(frozen=True, slots=True)
class PublishedState:
    """One state the mirror published: its id (the timestamp version) and when.

    ``select_retained`` needs only ``state_id`` and ``published_at`` (any record
    of publish times can feed it, e.g. a ledger); marking a state also needs the
    snapshot and root versions it was published with."""

    state_id: int
    published_at: datetime
    snapshot_version: int | None = None
    root_version: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "timestamp": self.state_id,
            "snapshot": self.snapshot_version,
            "root": self.root_version,
            "published": self.published_at.isoformat(),
        }

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> PublishedState:
        published = datetime.fromisoformat(str(entry["published"]))
        if published.tzinfo is None:
            published = published.replace(tzinfo=UTC)
        snapshot, root = entry.get("snapshot"), entry.get("root")
        return cls(
            state_id=int(entry["timestamp"]),
            published_at=published,
            snapshot_version=None if snapshot is None else int(snapshot),
            root_version=None if root is None else int(root),
        )


@dataclass(frozen=True, slots=True)
class Retention:
    """How much history a prune keeps: the last ``keep_states`` states (the current
    one included) and every state published less than ``keep_for`` ago."""

    keep_states: int = DEFAULT_KEEP_STATES
    keep_for: timedelta = DEFAULT_KEEP_FOR

    def __post_init__(self) -> None:
        if self.keep_states < 1:
            raise ValueError("keep_states must be at least 1 (the current state)")
        if self.keep_for < timedelta(0):
            raise ValueError("keep_for must not be negative")

    @property
    def risky(self) -> bool:
        """Less than the defaults: a client in the middle of an update may miss files."""
        return self.keep_states < DEFAULT_KEEP_STATES or self.keep_for < DEFAULT_KEEP_FOR


def select_retained(
    states: Iterable[tuple[int, datetime]], *, current: int, retention: Retention, now: datetime
) -> frozenset[int]:
    """The ids of the states to keep, from ``(state id, published at)`` pairs.

    Always the current state; the ``keep_states`` newest states up to the current
    one; every state published less than ``keep_for`` before ``now``; and, to be
    safe, any recorded state newer than the current one."""
    known = list(states)
    ranked = sorted({state_id for state_id, _ in known if state_id < current}, reverse=True)
    keep = {current, *ranked[: retention.keep_states - 1]}
    for state_id, published_at in known:
        if state_id > current or now - published_at < retention.keep_for:
            keep.add(state_id)
    return frozenset(keep)


def history_of(state: Mapping[str, Any] | None) -> list[PublishedState]:
    """The published states recorded in a ``state.json`` document (oldest first);
    none for a state file written before the history existed."""
    if not state:
        return []
    out: dict[int, PublishedState] = {}
    entries = state.get("history") or []
    if not isinstance(entries, list):
        return []
    for entry in entries:
        try:
            parsed = PublishedState.from_json(entry)
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("ignoring an unreadable history entry in %s: %r", STATE_KEY, entry)
            continue
        out.setdefault(parsed.state_id, parsed)
    return sorted(out.values(), key=lambda s: s.state_id)


def timestamp_copy_key(state_id: int) -> str:
    """Where the ``timestamp.json`` of published state ``state_id`` is kept."""
    return f"{TIMESTAMPS_PREFIX}{state_id}.timestamp.json"


async def _read_state(store: Store) -> dict[str, Any] | None:
    try:
        raw = await store.get(STATE_KEY, max_length=_MAX_STATE_BYTES)
    except NotFoundInStoreError:
        return None
    try:
        state = json.loads(raw)
    except ValueError:
        return None
    return state if isinstance(state, dict) else None


async def record_publish(
    store: Store,
    state: dict[str, Any],
    *,
    timestamp: bytes,
    timestamp_version: int,
    snapshot_version: int,
    root_version: int,
    published_at: datetime,
) -> None:
    """Add the state just published to the history of ``state`` (the new
    ``state.json`` document, written by the caller): the previous document's
    history plus this state, at most ``HISTORY_MAX`` entries, and a copy of its
    ``timestamp.json``. Best effort: a storage failure costs this state's entry
    (prune then treats its files as orphans), never the sync."""
    try:
        history = history_of(await _read_state(store))
    except StorageError as exc:
        log.warning("could not read %s, the publish history starts anew: %s", STATE_KEY, exc)
        history = []
    if all(entry.state_id != timestamp_version for entry in history):
        try:
            await store.put_bytes(
                timestamp_copy_key(timestamp_version),
                timestamp,
                PutOptions(content_type="application/json"),
            )
        except StorageError as exc:
            log.warning("could not keep a copy of timestamp v%d: %s", timestamp_version, exc)
        else:
            history.append(
                PublishedState(timestamp_version, published_at, snapshot_version, root_version)
            )
    dropped, history = history[:-HISTORY_MAX], history[-HISTORY_MAX:]
    state["history"] = [entry.to_json() for entry in history]
    for start in range(0, len(dropped), DELETE_BATCH):
        keys = [timestamp_copy_key(e.state_id) for e in dropped[start : start + DELETE_BATCH]]
        with contextlib.suppress(StorageError):
            await store.delete_many(keys)


# -- marks --------------------------------------------------------------------------


class Mark(IntEnum):
    """Why a file is known: a retained state needs it, or only expired states do."""

    RETAINED = 1
    EXPIRED = 2


class MarkSet:
    """Keys marked by the walk, in an SQLite file (memory stays bounded at millions
    of targets). A key marked ``RETAINED`` stays so whatever else marks it later.
    Every call runs in one worker thread at a time."""

    def __init__(self, directory: Path) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="prune-marks-", dir=directory)
        path = Path(self._dir.name) / "marks.sqlite"
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE marks (key TEXT PRIMARY KEY, kind INTEGER) WITHOUT ROWID")
        self._limiter = trio.CapacityLimiter(1)

    async def add(self, keys: Sequence[str], kind: Mark) -> None:
        if not keys:
            return

        def insert() -> None:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO marks (key, kind) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET kind = min(kind, excluded.kind)",
                ((key, int(kind)) for key in keys),
            )
            self._db.execute("COMMIT")

        await trio.to_thread.run_sync(insert, limiter=self._limiter)

    async def kinds(self, keys: Sequence[str]) -> dict[str, Mark]:
        def lookup() -> dict[str, Mark]:
            found: dict[str, Mark] = {}
            for start in range(0, len(keys), _LOOKUP_CHUNK):
                chunk = keys[start : start + _LOOKUP_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT key, kind FROM marks WHERE key IN ({marks})",  # noqa: S608 - placeholders only
                    chunk,
                )
                found.update((key, Mark(kind)) for key, kind in rows)
            return found

        return await trio.to_thread.run_sync(lookup, limiter=self._limiter)

    def close(self) -> None:
        self._db.close()
        self._dir.cleanup()


# -- marking one state ------------------------------------------------------------------


class _Unavailable(Exception):
    """A state whose files are not (all) on the destination any more."""


def _meta_key(name: str) -> str:
    return f"{METADATA}/{name}"


async def _read(store: Store, key: str, max_length: int) -> bytes | None:
    try:
        return await store.get(key, max_length=max_length)
    except NotFoundInStoreError:
        return None


async def _load_state(
    store: Store, root_bytes: bytes, limits: Limits, state: PublishedState
) -> TrustedSet:
    """Verify an older published state from the pinned root, as ``load_published``
    verifies the current one: the root chain up to the root it was published under,
    its kept ``timestamp.json``, its snapshot. Raises ``_Unavailable`` when a piece
    is gone and ``VerificationError`` when one does not verify."""
    trusted = TrustedSet(root_bytes, now=_NO_EXPIRY, limits=limits, expired_delegated_ok=True)
    if state.snapshot_version is None or state.root_version is None:
        raise _Unavailable("its record lacks the snapshot or root version")
    if state.root_version < trusted.root.version:
        raise _Unavailable(f"published under root v{state.root_version}, before the pinned root")
    for version in range(trusted.root.version + 1, state.root_version + 1):
        data = await _read(store, _meta_key(f"{version}.root.json"), limits.max_root_length)
        if data is None:
            raise _Unavailable(f"{version}.root.json is missing")
        trusted.update_root(data)
    if not trusted.consistent_snapshot:
        raise _Unavailable("no consistent snapshots: older states are overwritten")
    ts = await _read(store, timestamp_copy_key(state.state_id), limits.max_timestamp_length)
    if ts is None:
        raise _Unavailable("its timestamp copy is missing")
    verified = trusted.update_timestamp(ts)
    if verified.version != state.state_id:
        raise TamperedDestinationError(
            f"{timestamp_copy_key(state.state_id)} holds timestamp v{verified.version}"
        )
    snap_version = verified.signed.snapshot_meta.version
    snap_key = _meta_key(metadata_filename("snapshot", snap_version))
    snap = await _read(store, snap_key, limits.max_snapshot_length)
    if snap is None:
        raise _Unavailable(f"{snap_key} is gone")
    trusted.update_snapshot(snap)
    return trusted


@dataclass(slots=True)
class _Marker:
    """Walks states and marks their files."""

    store: Store
    marks: MarkSet
    limits: Limits
    selection: TargetFilter
    report: PruneReport
    #: versions and leaves of the last complete walk: a hash-bin leaf at the same
    #: version under an unchanged delegator is the same file, whose targets are all
    #: marked already, so walks of expired states skip it as sync does
    _versions: dict[str, int] = field(default_factory=dict)
    _leaves: set[str] = field(default_factory=set)
    #: target paths this walk treats as unreferenced (held back by the policy)
    _held_back: frozenset[str] = frozenset()

    async def mark(
        self,
        trusted: TrustedSet,
        kind: Mark,
        *,
        strict: bool,
        held_back: frozenset[str] = frozenset(),
    ) -> None:
        """Mark the snapshot, every role it lists and every target a client of this
        state can fetch (not the ``held_back`` paths). ``strict``: a missing role is
        a damaged destination (``TamperedDestinationError``), else a warning."""
        self._held_back = held_back
        snapshot = trusted.snapshot
        if snapshot is None:
            raise RuntimeError("marking needs a trusted snapshot")
        consistent = trusted.consistent_snapshot
        keys = [_meta_key(metadata_filename("snapshot", snapshot.version if consistent else None))]
        for filename, meta in snapshot.signed.meta.items():
            role = filename.removesuffix(".json")
            keys.append(_meta_key(metadata_filename(role, meta.version if consistent else None)))
        await self.marks.add(keys, kind)

        def missing(key: str) -> None:
            message = f"snapshot v{snapshot.version} lists {key}, which is missing"
            if strict:
                raise TamperedDestinationError(f"destination {message}")
            if kind is Mark.EXPIRED:
                # A prune interrupted after the roles and before the snapshot.
                log.info("%s", message)
                return
            log.warning("%s", message)
            self.report.warnings.append(message)

        top_version = snapshot.signed.meta["targets.json"].version
        top_key = _meta_key(metadata_filename("targets", top_version if consistent else None))
        data = await _read(self.store, top_key, self.limits.max_targets_length)
        if data is None:
            missing(top_key)
            return
        top = trusted.update_targets(data)
        # Only for expired states: every target of a skipped leaf was marked by an
        # earlier walk (needed or not), and a retained state's own authority
        # decides whether it needs a target, so retained states are walked whole.
        hints = kind is Mark.EXPIRED
        walk = DelegationWalk(
            trusted,
            previous_versions=self._versions if hints else None,
            previous_leaves=self._leaves if hints else frozenset(),
        )
        complete = True
        undecided: list[tuple[str, str, dict[str, str]]] = []
        await self._mark_targets(
            walk,
            role="targets",
            targets=top.signed,
            kind=kind,
            consistent=consistent,
            undecided=undecided,
        )
        while not walk.done:
            steps = walk.ready()
            if not steps:
                break  # only roles missing on the destination are outstanding
            for step in steps:
                if step.skippable:
                    walk.skip(step)
                    continue
                key = _meta_key(metadata_filename(step.role, step.version if consistent else None))
                raw = await _read(self.store, key, self.limits.max_targets_length)
                if raw is None:
                    missing(key)
                    complete = False
                    continue
                verified = walk.feed(step, raw)
                if not step.repeat:
                    await self._mark_targets(
                        walk,
                        role=step.role,
                        targets=verified.signed,
                        kind=kind,
                        consistent=consistent,
                        undecided=undecided,
                    )
                if not verified.signed.delegations:
                    trusted.forget_role(step.role)
        names: list[str] = []
        unused: list[str] = []
        for path, role, hashes in undecided:
            wanted = walk.authority(path, role) is Authority.AUTHORIZED
            wanted = wanted and self._wanted(path, role)
            (names if wanted else unused).extend(self._names(path, hashes, consistent))
        await self.marks.add(names, kind)
        await self.marks.add(unused, Mark.EXPIRED)
        if complete:
            self._versions, self._leaves = dict(walk.versions), set(walk.leaves)

    async def _mark_targets(
        self,
        walk: DelegationWalk,
        *,
        role: str,
        targets: Targets,
        kind: Mark,
        consistent: bool,
        undecided: list[tuple[str, str, dict[str, str]]],
    ) -> None:
        # Targets a state lists but a client of this mirror never gets from it (left
        # out by the selection, or not the listing role's to give) are known files
        # that no state needs: marked EXPIRED, so they go like any other.
        names: list[str] = []
        unused: list[str] = []
        for path, target in targets.targets.items():
            verdict = walk.authority(path, role)
            if verdict is Authority.UNDECIDED:
                undecided.append((path, role, dict(target.hashes)))
                continue
            wanted = verdict is Authority.AUTHORIZED and self._wanted(path, role)
            (names if wanted else unused).extend(self._names(path, dict(target.hashes), consistent))
            if len(names) + len(unused) >= DELETE_BATCH:
                await self.marks.add(names, kind)
                await self.marks.add(unused, Mark.EXPIRED)
                names, unused = [], []
        await self.marks.add(names, kind)
        await self.marks.add(unused, Mark.EXPIRED)

    def _wanted(self, path: str, role: str) -> bool:
        return self.selection.selects(path, role) and path not in self._held_back

    @staticmethod
    def _names(path: str, hashes: dict[str, str], consistent: bool) -> list[str]:
        return [
            f"{TARGETS}/{name}"
            for name in target_filenames(path, hashes, consistent_snapshot=consistent)
        ]


# -- the sweep --------------------------------------------------------------------------


def is_protected(key: str) -> bool:
    """Files a prune never deletes whatever the marks say: every root version and
    ``timestamp.json`` (``.tuf-mirror/`` is never listed)."""
    return bool(_ROOT_RE.match(key)) or key == _meta_key("timestamp.json")


@dataclass(slots=True)
class _Sweeper:
    store: Store
    marks: MarkSet
    started: datetime
    apply: bool
    orphans: bool
    report: PruneReport
    #: raises when the published state changed since the marks were made
    check: Callable[[], Awaitable[None]]

    #: files of expired states kept because they may be newer than the prune
    held_back: int = 0

    async def sweep(self) -> None:
        """Targets, then roles, then snapshots (see the module docstring). When a
        file of an expired state was held back as possibly newer than the prune,
        the metadata that attributes it stays too (roles after a held-back target,
        snapshots after a held-back role), so that the next prune finishes."""
        await self.check()
        await self._pass(f"{TARGETS}/", defer_snapshots=False)
        if self._holding():
            return
        await self.check()
        snapshots = await self._pass(f"{METADATA}/", defer_snapshots=True)
        if self._holding():
            return
        await self._delete([(key, size) for key, size in snapshots])

    def _holding(self) -> bool:
        if self.held_back:
            log.info(
                "%d files of expired states may be newer than this prune: the "
                "metadata naming them stays until the next prune",
                self.held_back,
            )
        return bool(self.held_back)

    async def _pass(self, prefix: str, *, defer_snapshots: bool) -> list[tuple[str, int]]:
        deferred: list[tuple[str, int]] = []
        doomed: list[tuple[str, int]] = []
        page: list[tuple[str, int, datetime | None]] = []

        async def decide() -> None:
            kinds = await self.marks.kinds([key for key, _, _ in page])
            for key, size, modified in page:
                if is_protected(key) or kinds.get(key) is Mark.RETAINED:
                    self.report.kept_files += 1
                    self.report.kept_bytes += size
                elif modified is None or modified > self.started:
                    # Written after the prune started (or of unknown age): not ours.
                    self.report.kept_new += 1
                    if kinds.get(key) is Mark.EXPIRED:
                        self.held_back += 1
                elif kinds.get(key) is Mark.EXPIRED or self.orphans:
                    if kinds.get(key) is not Mark.EXPIRED:
                        self._orphan(key, size)
                    if defer_snapshots and _SNAPSHOT_RE.match(key):
                        deferred.append((key, size))
                    else:
                        doomed.append((key, size))
                else:
                    self._orphan(key, size)
            page.clear()

        async for info in self.store.list(prefix):
            page.append((info.key, info.size, info.modified))
            if len(page) >= DELETE_BATCH:
                await decide()
            if len(doomed) >= DELETE_BATCH:
                await self._delete(doomed[:DELETE_BATCH])
                del doomed[:DELETE_BATCH]
        await decide()
        for start in range(0, len(doomed), DELETE_BATCH):
            await self._delete(doomed[start : start + DELETE_BATCH])
        return deferred

    def _orphan(self, key: str, size: int) -> None:
        self.report.orphan_files += 1
        self.report.orphan_bytes += size
        if len(self.report.orphans) < MAX_LISTED:
            self.report.orphans.append(key)

    async def _delete(self, items: Sequence[tuple[str, int]]) -> None:
        for start in range(0, len(items), DELETE_BATCH):
            batch = items[start : start + DELETE_BATCH]
            if self.apply:
                await self.store.delete_many([key for key, _ in batch])
            for key, size in batch:
                self.report.deleted_files += 1
                self.report.deleted_bytes += size
                if len(self.report.deleted) < MAX_LISTED:
                    self.report.deleted.append(key)
                else:
                    self.report.listed_truncated = True


# -- the run ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PruneOptions:
    """What one prune does: the retention, whether to delete (``apply``; else a
    dry run) and whether files of no known state go too (``orphans``)."""

    retention: Retention = Retention()
    apply: bool = False
    orphans: bool = False
    selection: TargetFilter = field(default_factory=TargetFilter)


def options_from(settings: Settings, *, apply: bool) -> PruneOptions:
    """The prune options of ``settings`` (``--keep-states``, ``--keep-for``,
    ``--orphans`` and the target selection)."""
    return PruneOptions(
        retention=Retention(
            keep_states=settings.keep_states, keep_for=timedelta(seconds=settings.keep_for)
        ),
        apply=apply,
        orphans=settings.orphans,
        selection=TargetFilter(settings.include, settings.exclude, settings.role),
    )


async def prune_store(
    store: Store,
    *,
    root_bytes: bytes,
    limits: Limits,
    options: PruneOptions,
    now: datetime,
    states: Sequence[PublishedState] | None = None,
) -> PruneReport:
    """Mark and sweep ``store`` (the caller holds its lock). ``now`` is the moment
    the prune started: nothing listed as written later is deleted. ``states``
    replaces the history of ``state.json`` (another record of publish times)."""
    report = PruneReport(applied=options.apply)
    retention = options.retention
    if retention.risky:
        warning = (
            f"retention of {retention.keep_states} state(s) and "
            f"{retention.keep_for.total_seconds():g}s is below the defaults "
            f"({DEFAULT_KEEP_STATES} states, {DEFAULT_KEEP_FOR.total_seconds():g}s): "
            "clients in the middle of an update may find files gone"
        )
        log.warning("%s", warning)
        report.warnings.append(warning)
    published = await load_published(store, root_bytes, limits)
    if published.timestamp is None or published.snapshot is None:
        log.warning("%s has no published state: nothing to prune", store.url)
        report.warnings.append("no published state: nothing to prune")
        return report
    recorded = await _read_state(store)
    _check_selection(recorded, options.selection)
    current = published.timestamp.version
    known = list(states) if states is not None else history_of(recorded)
    retained = select_retained(
        ((s.state_id, s.published_at) for s in known),
        current=current,
        retention=retention,
        now=now,
    )
    report.states_known = len({s.state_id for s in known} | {current})
    spool = store.spool_dir()
    marks = MarkSet(spool)
    try:
        marker = _Marker(store, marks, limits, options.selection, report)
        await marker.mark(
            published.trusted, Mark.RETAINED, strict=True, held_back=await _held_back(store)
        )
        marked_snapshots = {published.snapshot.version}
        report.states_retained = [current]
        older = sorted((s for s in known if s.state_id != current), key=lambda s: -s.state_id)
        for state in (s for s in older if s.state_id in retained):
            if await _mark_older(
                store,
                root_bytes=root_bytes,
                limits=limits,
                marker=marker,
                state=state,
                marked=marked_snapshots,
                kind=Mark.RETAINED,
            ):
                report.states_retained.append(state.state_id)
        expired = [s for s in older if s.state_id not in retained]
        for state in expired:
            await _mark_older(
                store,
                root_bytes=root_bytes,
                limits=limits,
                marker=marker,
                state=state,
                marked=marked_snapshots,
                kind=Mark.EXPIRED,
            )
        report.states_retained.sort()

        async def unchanged() -> None:
            assert published.timestamp is not None
            now_raw = await _read(store, _meta_key("timestamp.json"), limits.max_timestamp_length)
            if now_raw != published.timestamp.raw:
                raise TransientError(
                    f"{store.url}: timestamp.json changed while pruning (another writer?); "
                    "nothing more was deleted, run again"
                )

        sweeper = _Sweeper(store, marks, now, options.apply, options.orphans, report, unchanged)
        await sweeper.sweep()
    finally:
        await trio.to_thread.run_sync(marks.close)
    # States with files held back stay known, so that the next prune finishes them.
    if options.apply and not sweeper.held_back:
        await _forget(store, recorded, dropped=expired)
    return report


async def _mark_older(
    store: Store,
    *,
    root_bytes: bytes,
    limits: Limits,
    marker: _Marker,
    state: PublishedState,
    marked: set[int],
    kind: Mark,
) -> bool:
    """Mark a recorded state other than the current one; False when it is not on
    the destination (any more). A retained state that does not verify stops the
    prune (exit 1); an expired one is left unattributed, with a warning."""
    if state.snapshot_version is not None and state.snapshot_version in marked:
        return True  # a timestamp-only change: its snapshot is marked already
    what = f"published state (timestamp v{state.state_id})"
    try:
        trusted = await _load_state(store, root_bytes, limits, state)
        await marker.mark(trusted, kind, strict=False)
    except _Unavailable as exc:
        if kind is Mark.RETAINED:
            warning = f"retained {what} is not on the destination any more: {exc}"
            log.warning("%s", warning)
            marker.report.warnings.append(warning)
        else:
            log.info("expired %s is gone: %s", what, exc)
        return False
    except VerificationError as exc:
        if kind is Mark.RETAINED:
            raise TamperedDestinationError(f"retained {what} does not verify: {exc}") from exc
        warning = f"expired {what} does not verify, its files count as orphans: {exc}"
        log.warning("%s", warning)
        marker.report.warnings.append(warning)
        return False
    assert trusted.snapshot is not None
    marked.add(trusted.snapshot.version)
    return True


def _check_selection(recorded: Mapping[str, Any] | None, selection: TargetFilter) -> None:
    """Refuse a target selection other than the published state's: with the wrong
    --include/--exclude/--role, a prune would take the whole partial mirror for
    unreferenced files. (Under ``--policy`` sync appends the policy's fingerprint;
    the policy's verdicts come from ``_held_back``.)"""
    fingerprint = str((recorded or {}).get("filter") or "").partition(_POLICY_MARK)[0]
    if fingerprint and fingerprint != selection.fingerprint():
        raise UsageError(
            "the target selection (--include/--exclude/--role) differs from the one the "
            "published state was synced with: give the same options as sync"
        )


async def _held_back(store: Store) -> frozenset[str]:
    """The target paths the trust policy (``--policy``) held back at the last sync,
    from its bookkeeping: the current state does not need them."""
    from mirror.layout import POLICY_STATE_KEY

    try:
        raw = await store.get(POLICY_STATE_KEY, max_length=_MAX_STATE_BYTES * 4)
    except NotFoundInStoreError:
        return frozenset()
    try:
        return frozenset(str(path) for path in dict(json.loads(raw)["held_back"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        log.warning("ignoring unreadable %s: no target counts as held back", POLICY_STATE_KEY)
        return frozenset()


async def _forget(
    store: Store, recorded: dict[str, Any] | None, *, dropped: Sequence[PublishedState]
) -> None:
    """Drop swept states from the history, then their timestamp copies."""
    if recorded is None or not dropped:
        return
    ids = {s.state_id for s in dropped}
    history = [s for s in history_of(recorded) if s.state_id not in ids]
    recorded["history"] = [entry.to_json() for entry in history]
    await store.put_bytes(
        STATE_KEY,
        json.dumps(recorded, sort_keys=True).encode(),
        PutOptions(content_type="application/json", cache_control="no-store"),
    )
    keys = [timestamp_copy_key(state_id) for state_id in sorted(ids)]
    for start in range(0, len(keys), DELETE_BATCH):
        await store.delete_many(keys[start : start + DELETE_BATCH])


async def run_prune(settings: Settings, *, now: datetime, report: RunReport) -> RunReport:
    """``tuf-mirror prune``: under the destination lock (renewed), one report."""
    from mirror.endpoints import hold_lease, limits_for, open_destination

    report.dest = settings.dest
    store = open_destination(settings, listing=False)
    try:
        async with hold_lease(store, settings, report):
            report.prune = await prune_store(
                store,
                root_bytes=settings.root_bytes(),
                limits=limits_for(settings),
                options=options_from(settings, apply=settings.apply),
                now=now,
            )
    finally:
        await store.aclose()
    report.warnings.extend(report.prune.warnings)
    report.finish()
    return report


async def prune_after_sync(
    store: Store, settings: Settings, report: RunReport, *, now: datetime
) -> None:
    """``sync --prune``: prune (and delete) after a successful publish, under the
    sync's lock."""
    from mirror.endpoints import limits_for

    report.prune = await prune_store(
        store,
        root_bytes=settings.root_bytes(),
        limits=limits_for(settings),
        options=options_from(settings, apply=True),
        now=now,
    )
    report.warnings.extend(report.prune.warnings)


__all__ = [
    "DEFAULT_KEEP_FOR",
    "DEFAULT_KEEP_STATES",
    "HISTORY_MAX",
    "TIMESTAMPS_PREFIX",
    "Mark",
    "MarkSet",
    "PruneOptions",
    "PublishedState",
    "Retention",
    "history_of",
    "is_protected",
    "options_from",
    "prune_after_sync",
    "prune_store",
    "record_publish",
    "run_prune",
    "select_retained",
    "timestamp_copy_key",
]
