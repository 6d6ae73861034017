"""The orchestrator: the only module that joins upstream (``fetch``), verification
(``trust``) and destination (``storage``).

One sync run:

1. take the destination's lock;
2. load the destination's published state and re-verify it from the pinned root
   (a destination that does not verify is ``TamperedDestinationError``: exit 1,
   nothing written);
3. refresh from the upstream: root chain, timestamp, snapshot, as a TUF client
   whose local metadata is the published state;
4. walk the delegation graph: roles whose snapshot version changed are fetched and
   verified, unchanged ones are loaded from the destination or skipped; the targets
   a changed role adds are streamed to workers that download, verify and write them
   under their final (content-addressed) names;
5. only when every target and role succeeded, publish the metadata in order:
   delegated roles → targets → snapshot → new roots → ``timestamp.json`` last.

A ``NotFoundError`` for a versioned file mid-run means the upstream moved on (and
garbage-collected): the cycle restarts from a fresh timestamp, a bounded number of
times, keeping every target already written. What this module does not do:
signature or hash logic (``trust``), HTTP details and retries (``fetch``), atomic
writes (``storage``), argument parsing (``cli``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import trio

from mirror import shutdown
from mirror.config import Settings
from mirror.copier import CopyResult, Outcome, TargetCopier
from mirror.endpoints import hold_lease, open_endpoints
from mirror.errors import (
    ExpiredMetadataError,
    FetchError,
    MirrorError,
    NotFoundError,
    RollbackError,
    StorageError,
    TamperedDestinationError,
    UsageError,
    VerificationError,
)
from mirror.fetch import Fetcher
from mirror.fetch.budget import TransferBudget
from mirror.fetch.spool import reclaim_spool, remove_partials, write_spool_file
from mirror.filters import TargetFilter
from mirror.log import log
from mirror.plan import (
    MetadataCopy,
    RoleChange,
    TargetCopy,
    diff_snapshot,
    diff_targets,
    metadata_publish_order,
    target_copy,
)
from mirror.report import RunReport
from mirror.storage import NotFoundInStoreError, PutOptions, Store
from mirror.storage.headers import put_options_for
from mirror.trust import (
    Authority,
    DelegationWalk,
    EqualVersionError,
    Limits,
    MetaFile,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
    TrustedSet,
    Verified,
    WalkStep,
    check_meta,
    metadata_filename,
)
from mirror.upstream import (
    ABSENT,
    check_is_metadata,
    fetch_root_history,
    keep_published_roots,
    metadata_location,
    naming,
    note_unreachable,
    upstream_root_json,
)
from mirror.workers import ProcessPool

if TYPE_CHECKING:
    from mirror.ledger.witness import RunWitness
    from mirror.policy import PolicyGate

METADATA: Final = "metadata"
TARGETS: Final = "targets"
STATE_KEY = ".tuf-mirror/state.json"
MAX_RESTARTS = 3
#: worker processes are used when a first sync's snapshot lists at least this many
#: roles, or an incremental sync's snapshot diff changes at least the second number
AUTO_PROCESSES_MIN_ROLES = 64
AUTO_PROCESSES_MIN_CHANGED_ROLES = 512
#: a reference time before any expiry: loading the published state checks
#: signatures, versions and hashes, not freshness (a mirror may lag its upstream)
_NO_EXPIRY = datetime(1, 1, 2, tzinfo=UTC)


def _meta_key(name: str) -> str:
    return f"{METADATA}/{name}"


# -- the published state ------------------------------------------------------------


@dataclass(slots=True)
class Published:
    """The destination's metadata, re-verified from the pinned root."""

    trusted: TrustedSet
    pinned_version: int
    #: verified bytes of the destination's root versions after the pinned one
    roots: list[bytes] = field(default_factory=list)
    pinned_root_published: bool = False
    timestamp: Verified[Timestamp] | None = None
    snapshot: Verified[Snapshot] | None = None
    #: from .tuf-mirror/state.json, valid only for this snapshot version
    previous_versions: dict[str, int] = field(default_factory=dict)
    previous_leaves: set[str] = field(default_factory=set)
    timestamp_etag: str | None = None
    #: the target selection (``TargetFilter.fingerprint``) the published state was
    #: made with; None when unknown
    previous_filter: str | None = None
    #: the state.json document these hints came from (None: absent or stale)
    state: dict[str, Any] | None = None
    #: role -> ISO expiry recorded at the last publish (targets is not re-read on a
    #: run with nothing new)
    previous_expires: dict[str, str] = field(default_factory=dict)
    #: set when the destination holds an interrupted publish (``mirror.recovery``):
    #: timestamp and snapshot verify under an earlier root than the last published
    interrupted: str | None = None

    def versions(self) -> dict[str, int]:
        out = {"root": self.pinned_version + len(self.roots)}
        if self.timestamp is not None:
            out["timestamp"] = self.timestamp.version
        if self.snapshot is not None:
            out["snapshot"] = self.snapshot.version
            meta = self.snapshot.signed.meta.get("targets.json")
            if meta is not None:
                out["targets"] = meta.version
        return out


async def _read(store: Store, key: str, max_length: int) -> bytes | None:
    try:
        return await store.get(key, max_length=max_length)
    except NotFoundInStoreError:
        return None


def _tampered(key: str, exc: VerificationError) -> TamperedDestinationError:
    return TamperedDestinationError(f"destination {key} does not verify: {exc}")


async def load_published(
    store: Store, root_bytes: bytes, limits: Limits, *, witness: RunWitness | None = None
) -> Published:
    """Load and re-verify the destination's published metadata from the pinned root.

    Expiry is not checked (a mirror may lag its upstream); everything else is. With
    a ``witness``, every file read is also checked against the ledger's sha256.
    """
    trusted = TrustedSet(root_bytes, now=_NO_EXPIRY, limits=limits, expired_delegated_ok=True)
    published = Published(trusted, trusted.root.version)
    pinned_key = _meta_key(f"{trusted.root.version}.root.json")
    pinned_copy = await _read(store, pinned_key, limits.max_root_length)
    if pinned_copy is not None and pinned_copy != root_bytes:
        raise TamperedDestinationError(
            f"destination {pinned_key} differs from the pinned root (--root)"
        )
    published.pinned_root_published = pinned_copy is not None
    version = trusted.root.version + 1
    while data := await _read(store, _meta_key(f"{version}.root.json"), limits.max_root_length):
        if witness is not None:
            await witness.check_published(_meta_key(f"{version}.root.json"), "root", version, data)
        try:
            trusted.update_root(data)
        except VerificationError as exc:
            raise _tampered(_meta_key(f"{version}.root.json"), exc) from exc
        published.roots.append(data)
        version += 1

    ts_key = _meta_key("timestamp.json")
    ts_raw = await _read(store, ts_key, limits.max_timestamp_length)
    if ts_raw is None:
        return published

    async def load_snapshot(
        trusted: TrustedSet, timestamp: Verified[Timestamp]
    ) -> Verified[Snapshot]:
        snap_version = timestamp.signed.snapshot_meta.version
        snap_key = _meta_key(
            metadata_filename("snapshot", snap_version if trusted.consistent_snapshot else None)
        )
        # The generic cap, not the declared length: a longer file is a tampered one
        # (the trust core says so), not a storage failure.
        snap_raw = await _read(store, snap_key, limits.max_snapshot_length)
        if snap_raw is None:
            raise TamperedDestinationError(
                f"destination {ts_key} names {snap_key}, which is missing"
            )
        if witness is not None:
            await witness.check_published(snap_key, "snapshot", snap_version, snap_raw)
        try:
            return trusted.update_snapshot(snap_raw)
        except VerificationError as exc:
            raise _tampered(snap_key, exc) from exc

    try:
        try:
            published.timestamp = trusted.update_timestamp(ts_raw)
        except VerificationError as exc:
            raise _tampered(ts_key, exc) from exc
        published.snapshot = await load_snapshot(trusted, published.timestamp)
    except TamperedDestinationError:
        # Not tampered if it is our own publish, stopped after a new root (key
        # rotation) and before timestamp.json: mirror.recovery tells.
        from mirror.recovery import earlier_root_state

        earlier = await earlier_root_state(
            root_bytes=root_bytes,
            roots=published.roots,
            timestamp_raw=ts_raw,
            limits=limits,
            now=_NO_EXPIRY,
            load_snapshot=load_snapshot,
        )
        if earlier is None:
            raise
        log.warning("destination %s holds %s; this run completes it", store.url, earlier.describe())
        published.trusted = earlier.trusted
        published.timestamp, published.snapshot = earlier.timestamp, earlier.snapshot
        published.interrupted = earlier.describe()
    if witness is not None:
        await witness.check_published(ts_key, "timestamp", published.timestamp.version, ts_raw)

    state_raw = await _read(store, STATE_KEY, 64 * 1024 * 1024)
    if state_raw is not None:
        _apply_state(published, state_raw)
    return published


def _apply_state(published: Published, raw: bytes) -> None:
    """Use the hints of .tuf-mirror/state.json if they describe this snapshot.

    The hints only let an unchanged hash-bin leaf be skipped without reading it; a
    wrong hint can cost completeness, never admit an unverified byte, and the walk
    checks afterwards that every changed role was reached.
    """
    assert published.snapshot is not None
    try:
        state = json.loads(raw)
        if state.get("snapshot_version") != published.snapshot.version:
            return
        published.state = state
        published.previous_versions = {str(k): int(v) for k, v in state["versions"].items()}
        published.previous_leaves = {str(name) for name in state["leaves"]}
        # The validators of a conditional GET describe the timestamp they were
        # recorded with: only when that is the published one may a 304 stand for it.
        assert published.timestamp is not None
        recorded = state.get("timestamp_sha256")
        if recorded == hashlib.sha256(published.timestamp.raw).hexdigest():
            etag = state.get("timestamp_etag")
            published.timestamp_etag = str(etag) if etag else None
        selection = state.get("filter")
        published.previous_filter = str(selection) if selection else None
        expires = state.get("expires") or {}
        published.previous_expires = {str(k): str(v) for k, v in dict(expires).items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        log.warning("ignoring unreadable %s", STATE_KEY)


# -- the run --------------------------------------------------------------------------


@dataclass(slots=True)
class _Spooled:
    """A verified metadata file waiting for its turn to be published."""

    copy: MetadataCopy
    path: Path | None = None
    data: bytes | None = None
    #: the destination already holds these verified bytes (an interrupted run wrote them)
    present: bool = False


@dataclass(slots=True)
class _Cycle:
    """What one refresh cycle verified and what it will publish."""

    new: TrustedSet
    new_roots: list[Verified[Any]] = field(default_factory=list)
    timestamp_changed: bool = False
    snapshot_changed: bool = False
    changes: list[RoleChange] = field(default_factory=list)
    spooled: dict[str, _Spooled] = field(default_factory=dict)
    walk: DelegationWalk | None = None
    timestamp_etag: str | None = None
    #: root versions older than the pinned one (a first sync), by version, each
    #: shown authentic by the chain that ends in the pinned root
    root_history: dict[int, bytes] = field(default_factory=dict)
    #: the upstream's unversioned root.json, when it equals a verified root version
    root_json: bytes | None = None


class Synchronizer:
    """One run of ``sync`` or ``plan`` against one store and one fetcher."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        fetcher: Fetcher,
        now: datetime,
        dry_run: bool = False,
        report: RunReport | None = None,
        base: Store | None = None,
        upstream: str | None = None,
        copier: TargetCopier | None = None,
        witness: RunWitness | None = None,
    ) -> None:
        self.settings = settings
        #: copies the targets the walk names instead of the default one (``shard plan``
        #: records them in its manifest)
        self._copier = copier
        #: the ledger's part in this run (``mirror.ledger.witness``); None: no ledger
        self.witness = witness
        self.store = store
        #: where the previous state is read from: the destination itself, or (for an
        #: export) a view of the far side's state while ``store`` receives the files
        self.base = base if base is not None else store
        #: the upstream URL/path worker processes open for themselves (None: no workers)
        self.upstream = upstream
        self._pools: list[ProcessPool] = []
        #: targets whose authority could only be decided after the walk
        self._undecided: list[tuple[str, TargetFile]] = []
        self.filter = TargetFilter(settings.include, settings.exclude, settings.role)
        #: --policy: decides which targets are published (None: every selected one)
        self.policy: PolicyGate | None = None
        self.budget = (
            TransferBudget(settings.max_transfer) if settings.max_transfer is not None else None
        )
        self.fetcher = fetcher
        self.now = now
        self.dry_run = dry_run
        self.report = report or RunReport(command="plan" if dry_run else "sync")
        self.limits = Limits(
            max_snapshot_length=settings.max_snapshot_size,
            max_targets_length=settings.max_targets_size,
        )
        self._spool_counter = 0
        #: nothing published yet: an upstream serving no TUF metadata is misconfigured
        self._first_sync = True

    async def run(self) -> RunReport:
        """Refresh, copy and publish; restart from a fresh timestamp when the
        upstream garbage-collects a versioned file under our feet."""
        root_bytes = self.settings.root_bytes()
        restarts = 0
        try:
            while True:
                published = await load_published(
                    self.base, root_bytes, self.limits, witness=self.witness
                )
                if self.witness is not None:
                    await self.witness.recover(published)
                self._first_sync = published.timestamp is None
                self.report.versions_before = published.versions()
                try:
                    await self._cycle(root_bytes, published)
                except NotFoundError as exc:
                    if restarts >= MAX_RESTARTS:
                        raise
                    restarts += 1
                    self.report.restarts = restarts
                    log.warning("%s; restarting from a fresh timestamp (%d)", exc, restarts)
                    continue
                break
        finally:
            # Also for a failed run: the report says what it cost.
            self._count_fetches()
        return self.report

    def _count_fetches(self) -> None:
        stats = self.fetcher.stats
        self.report.requests = stats.requests + sum(p.requests for p in self._pools)
        self.report.bytes_received = stats.bytes_received + sum(
            p.bytes_received for p in self._pools
        )
        self.report.retries = stats.retries + sum(p.retries for p in self._pools)
        self.report.worker_peak_rss_bytes = max((p.peak_rss for p in self._pools), default=0)
        self.report.resumed = stats.resumed
        self.report.failovers = stats.failovers
        self.report.upstreams = {
            name: dataclasses.asdict(upstream) for name, upstream in stats.per_upstream.items()
        }
        if stats.per_upstream:  # name the upstream that served the metadata, not a dead one
            busiest = max(stats.per_upstream.items(), key=lambda item: item[1].metadata_served)
            if busiest[1].metadata_served:
                self.report.upstream = busiest[0]

    # -- refresh ------------------------------------------------------------------

    async def _fetch_meta(self, name: str, max_length: int) -> bytes:
        got = await self.fetcher.fetch_bytes(METADATA, name, max_length=max_length)
        assert got is not None  # not a conditional request
        self.report.roles_fetched += 1
        check_is_metadata(self._where(name), got, first_sync=self._first_sync)
        return got.data

    def _where(self, name: str, *, local: bool = False) -> str:
        """The URL (or path) of the upstream's metadata file ``name``, for messages
        (``local``: the bytes came from the destination)."""
        if local:
            return f"destination {_meta_key(name)}"
        upstream = self.settings.upstream[0] if self.settings.upstream else self.settings.bundle
        return metadata_location(upstream or "upstream", self.settings.metadata_url, name)

    async def _root_history(self, root_bytes: bytes, pinned_version: int) -> dict[int, bytes]:
        """Root versions 1 .. pinned-1 from the upstream, for a first sync: clients
        that pinned an older root need the whole chain. Only those shown authentic
        back from the pinned bytes are kept; the rest are skipped with a warning
        (``mirror.upstream.fetch_root_history``), never failing the run."""

        async def fetch(name: str) -> bytes:
            return await self._fetch_meta(name, self.limits.max_root_length)

        return await fetch_root_history(fetch, root_bytes, pinned_version, self.report)

    async def _refresh_top_level(self, root_bytes: bytes, published: Published) -> _Cycle:
        new = TrustedSet(root_bytes, now=self.now, limits=self.limits, expired_delegated_ok=True)
        cycle = _Cycle(new)
        for data in published.roots:
            new.update_root(data)
        # Root chain: N+1, N+2, ... until the upstream has no next version.
        while True:
            name = f"{new.root.version + 1}.root.json"
            try:
                data = await self._fetch_meta(name, self.limits.max_root_length)
            except ABSENT:  # 403: an object store hiding a missing key
                break
            with naming(self._where(name)):
                cycle.new_roots.append(new.update_root(data))
        new.check_root_not_expired()
        if cycle.new_roots or not published.pinned_root_published:
            cycle.root_json = await upstream_root_json(
                lambda name: self._fetch_meta(name, self.limits.max_root_length),
                [root_bytes, *published.roots, *(root.raw for root in cycle.new_roots)],
                self.report,
            )

        if published.timestamp is not None:
            try:
                new.update_timestamp(published.timestamp.raw)
            except (VerificationError, EqualVersionError) as exc:
                # New root rotated the timestamp keys (fast-forward) or it expired.
                log.info("published timestamp is no rollback floor any more: %s", exc)
        # A conditional GET: a run with nothing new moves a few hundred bytes. It
        # only makes sense while the published timestamp is still trusted. ETag only:
        # Last-Modified has one-second granularity, and a timestamp re-signed within
        # the second of our previous fetch would then look unchanged until it
        # changes again.
        etag = published.timestamp_etag if new.timestamp is not None else None
        try:
            got = await self.fetcher.fetch_bytes(
                METADATA,
                "timestamp.json",
                max_length=self.limits.max_timestamp_length,
                if_none_match=etag,
            )
        except ABSENT as exc:
            # Not a garbage-collected versioned file: no restart can help. Before
            # anything was published, the upstream URL is wrong (exit 2).
            error = UsageError if self._first_sync else FetchError
            raise error(
                f"{exc}: the upstream has no timestamp.json (check --upstream or --metadata-url)"
            ) from exc
        if got is None:
            # 304: the upstream's timestamp is the one we published.
            cycle.timestamp_etag = published.timestamp_etag
            self._check_published_fresh(new)
            return cycle
        cycle.timestamp_etag = got.etag
        self.report.roles_fetched += 1
        where = self._where("timestamp.json")
        check_is_metadata(where, got, first_sync=self._first_sync)
        try:
            with naming(where):
                new.update_timestamp(got.data)
        except RollbackError as exc:
            if self.witness is not None:
                await self.witness.rollback_refused("timestamp", got.data, exc)
            raise
        except EqualVersionError:
            self._check_published_fresh(new)
            return cycle
        cycle.timestamp_changed = True
        return cycle

    @staticmethod
    def _check_published_fresh(new: TrustedSet) -> None:
        timestamp = new.timestamp
        if timestamp is not None and timestamp.signed.is_expired(new.now):
            raise ExpiredMetadataError(
                f"timestamp v{timestamp.version}: the upstream still serves an expired "
                f"timestamp (expired {timestamp.signed.expires:%Y-%m-%dT%H:%M:%SZ})"
            )

    async def _refresh_snapshot(self, cycle: _Cycle, published: Published) -> None:
        new = cycle.new
        assert new.timestamp is not None
        if published.snapshot is not None:
            try:
                new.update_snapshot(published.snapshot.raw, trusted=True)
            except VerificationError as exc:
                log.debug("published snapshot is not the final one: %s", exc)
        wanted = new.timestamp.signed.snapshot_meta.version
        if (
            new.snapshot is not None
            and new.snapshot.version == wanted
            and (published.snapshot is not None and published.snapshot.raw == new.snapshot.raw)
        ):
            return
        name = metadata_filename("snapshot", wanted if new.consistent_snapshot else None)
        data = await self._fetch_meta(name, self.limits.snapshot_max(new.timestamp.signed))
        try:
            with naming(self._where(name)):
                verified = new.update_snapshot(data)
        except RollbackError as exc:
            if self.witness is not None:
                await self.witness.rollback_refused("snapshot", data, exc)
            raise
        cycle.snapshot_changed = True
        self._spool_bytes(cycle, MetadataCopy(name, "snapshot", verified.version), data)

    # -- targets and delegations ------------------------------------------------------

    async def _role_bytes(
        self, role: str, version: int, *, changed: bool, consistent: bool
    ) -> tuple[bytes, bool]:
        """Bytes for a role version: the published copy when the destination already
        has it (unchanged role, or written by an interrupted run), else the upstream's.
        Returns (bytes, from_destination)."""
        name = metadata_filename(role, version if consistent else None)
        if not changed or consistent:
            # A changed role may have been written by an interrupted run (``store``);
            # an unchanged one is part of the previous state (``base``).
            where = self.store if changed else self.base
            local = await _read(where, _meta_key(name), self.limits.max_targets_length)
            if local is not None:
                if not changed and self.witness is not None:
                    await self.witness.check_published(_meta_key(name), role, version, local)
                return local, True
        if not changed:
            raise TamperedDestinationError(
                f"destination {_meta_key(name)} is missing although the published snapshot lists it"
            )
        return await self._fetch_meta(name, self.limits.max_targets_length), False

    async def _previous_targets(
        self, published: Published, role: str, old_version: int | None, consistent: bool
    ) -> dict[str, TargetFile] | None:
        """The targets of the published version of a changed role, for the diff.

        Checked against the published snapshot's version (and hashes when listed);
        a copy that does not match is not used, so every target of the new version
        is considered (and found present or fetched).
        """
        if old_version is None or published.snapshot is None:
            return None
        name = metadata_filename(role, old_version if consistent else None)
        if not consistent:
            return None  # the unversioned file is about to be replaced: no diff base
        data = await _read(self.base, _meta_key(name), self.limits.max_targets_length)
        if data is None:
            return None
        if self.witness is not None:
            await self.witness.check_published(_meta_key(name), role, old_version, data)
        meta = published.snapshot.signed.meta.get(f"{role}.json")
        try:
            if meta is not None:
                check_meta(f"published {name}", meta, data)
        except VerificationError as exc:
            log.warning("not diffing against %s: %s", name, exc)
            return None
        # Only lengths and hashes matter here, so the C JSON decoder is enough: a
        # full python-tuf parse per changed role cost more than its fetch.
        try:
            signed = json.loads(data)["signed"]
            if signed["_type"] != "targets" or signed["version"] != old_version:
                return None
            return {
                path: TargetFile(int(info["length"]), dict(info["hashes"]), path)
                for path, info in signed["targets"].items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("not diffing against %s: %s", name, exc)
            return None

    async def _walk(
        self,
        cycle: _Cycle,
        published: Published,
        send: trio.MemorySendChannel[TargetCopy],
    ) -> None:
        new = cycle.new
        assert new.snapshot is not None
        consistent = new.consistent_snapshot
        old_meta: dict[str, MetaFile] | None = (
            dict(published.snapshot.signed.meta) if published.snapshot is not None else None
        )
        cycle.changes = diff_snapshot(old_meta, new.snapshot.signed.meta)
        changed = {c.name: c for c in cycle.changes}
        if self.witness is not None:
            await self.witness.begin(new)

        # Top-level targets.
        tchange = changed.get("targets")
        targets_version = new.snapshot.signed.meta["targets.json"].version
        data, local = await self._role_bytes(
            "targets",
            targets_version,
            changed=tchange is not None,
            consistent=consistent,
        )
        targets_name = metadata_filename("targets", targets_version if consistent else None)
        with naming(self._where(targets_name, local=local)):
            verified = new.update_targets(data, trusted=False)
        self.report.roles_verified += 1
        if tchange is not None:
            await self._spool_role(cycle, tchange, data, present=local)
        # A target selection other than the published state's (filters added,
        # removed or changed; or unknown) means looking at every target again, not
        # only at the new ones: presence checks keep that cheap.
        full_pass = published.snapshot is not None and (
            published.previous_filter != self._selection()
        )
        if full_pass:
            log.info("target selection changed since the last run: checking every target")
        use_hints = not full_pass and published.previous_versions.get("targets") == verified.version
        walk = DelegationWalk(
            new,
            previous_versions=published.previous_versions if use_hints else None,
            previous_leaves=published.previous_leaves if use_hints else frozenset(),
        )
        cycle.walk = walk
        if tchange is not None or full_pass:
            old = (
                await self._previous_targets(published, "targets", tchange.old_version, consistent)
                if tchange is not None and not full_pass
                else None
            )
            await self._send_targets(
                walk=walk,
                role="targets",
                targets=verified.signed,
                old=old,
                send=send,
                consistent=consistent,
            )

        visited: set[str] = set()
        while not walk.done:
            steps = walk.ready()
            if not steps:
                raise RuntimeError("delegation walk stalled")
            needed: list[WalkStep] = []
            for step in steps:
                if step.skippable and step.role not in changed:
                    walk.skip(step)
                else:
                    needed.append(step)
            # Fetch a window of roles at a time, concurrently (the network round
            # trips overlap), then verify them in walk order. The window bounds
            # memory: a few roles in flight, never the whole repository.
            window = max(2, self.settings.transfers * 2)
            for start in range(0, len(needed), window):
                batch = needed[start : start + window]
                loaded = await self._load_steps(
                    batch, changed, published, consistent, full_pass=full_pass
                )
                for step, (data, local, old) in zip(batch, loaded, strict=True):
                    name = metadata_filename(step.role, step.version if consistent else None)
                    with naming(self._where(name, local=local)):
                        verified = walk.feed(step, data, trusted=False)
                    self.report.roles_verified += 1
                    if step.repeat or step.role in visited:
                        continue
                    visited.add(step.role)
                    change = changed.get(step.role)
                    if change is not None:
                        await self._spool_role(cycle, change, data, present=local)
                    if change is not None or full_pass:
                        await self._send_targets(
                            walk=walk,
                            role=step.role,
                            targets=verified.signed,
                            old=old,
                            send=send,
                            consistent=consistent,
                        )
                    if not verified.signed.delegations:
                        new.forget_role(step.role)
        undecided, self._undecided = self._undecided, []
        for role, target in undecided:
            await self._send_target(
                walk.authority(target.path, role), role, target, send, consistent
            )
        # Roles the snapshot lists that nothing delegates to: never fetched nor
        # published (a client never asks for them), counted in the report.
        unreachable = walk.unreachable()
        note_unreachable(self.report, unreachable)
        cycle.changes = [c for c in cycle.changes if c.name not in unreachable]

    async def _load_steps(
        self,
        steps: list[WalkStep],
        changed: dict[str, RoleChange],
        published: Published,
        consistent: bool,
        *,
        full_pass: bool = False,
    ) -> list[tuple[bytes, bool, dict[str, TargetFile] | None]]:
        """For each step, concurrently: the role's bytes (destination or upstream),
        whether they came from the destination, and for a changed role the targets
        of its published version (the diff base)."""
        results: list[tuple[bytes, bool, dict[str, TargetFile] | None] | None] = [None] * len(steps)

        async def load(index: int, step: WalkStep) -> None:
            change = changed.get(step.role)
            data, local = await self._role_bytes(
                step.role, step.version, changed=change is not None, consistent=consistent
            )
            old = None
            if change is not None and not step.repeat and not full_pass:
                old = await self._previous_targets(
                    published, step.role, change.old_version, consistent
                )
            results[index] = (data, local, old)

        async with trio.open_nursery() as nursery:
            for index, step in enumerate(steps):
                nursery.start_soon(load, index, step)
        return [result for result in results if result is not None]

    async def _send_targets(
        self,
        *,
        walk: DelegationWalk,
        role: str,
        targets: Targets,
        old: dict[str, TargetFile] | None,
        send: trio.MemorySendChannel[TargetCopy],
        consistent: bool,
    ) -> None:
        for target in diff_targets(old, targets.targets):
            verdict = walk.authority(target.path, role)
            if verdict is Authority.UNDECIDED:
                # A role earlier in this path's search is not known yet (a diamond
                # graph): ask again once the walk is complete.
                self._undecided.append((role, target))
                continue
            await self._send_target(verdict, role, target, send, consistent)

    async def _send_target(
        self,
        verdict: Authority,
        role: str,
        target: TargetFile,
        send: trio.MemorySendChannel[TargetCopy],
        consistent: bool,
    ) -> None:
        if verdict is not Authority.AUTHORIZED:
            log.warning(
                "%s lists %r, which the delegation search gives to another role (%s): not mirrored",
                role,
                target.path,
                verdict.value,
            )
            self.report.warnings.append(f"{role}: unauthorised target {target.path!r}")
            return
        selected = self.filter.selects(target.path, role)
        admitted = selected and (self.policy is None or self.policy.admit(role, target))
        if self.witness is not None:
            await self.witness.observe_target(role, target, published=admitted)
        if not selected:
            self.report.targets_filtered += 1
            return
        if not admitted:
            return
        copy = target_copy(target, role=role, consistent_snapshot=consistent)
        self.report.targets_new += 1
        self.report.planned_bytes += target.length
        await send.send(copy)

    # -- target workers ----------------------------------------------------------------

    async def _target_worker(
        self, receive: trio.MemoryReceiveChannel[TargetCopy], copier: TargetCopier
    ) -> None:
        async with receive:
            async for copy in receive:
                async with shutdown.transfer():  # a stop request starts no new one
                    self._count(await copier.copy(copy))

    def _count(self, result: CopyResult) -> None:
        if result.outcome is Outcome.PRESENT:
            self.report.targets_already_present += 1
            self.report.present_bytes += result.length
        elif result.outcome is Outcome.COPIED:
            self.report.targets_fetched += 1
            self.report.targets_published += 1
            self.report.target_bytes += result.length
        elif result.outcome is Outcome.DEFERRED:
            self.report.targets_deferred += 1

    # -- spooling and publishing ---------------------------------------------------

    def _spool_path(self, kind: str) -> Path:
        self._spool_counter += 1
        return self.store.spool_dir() / f"{kind}-{self._spool_counter}-{random.getrandbits(32):08x}"

    def _spool_bytes(self, cycle: _Cycle, copy: MetadataCopy, data: bytes) -> None:
        cycle.spooled[copy.name] = _Spooled(copy, data=data)

    async def _spool_role(
        self, cycle: _Cycle, change: RoleChange, data: bytes, *, present: bool = False
    ) -> None:
        consistent = cycle.new.consistent_snapshot
        name = metadata_filename(change.name, change.new_version if consistent else None)
        copy = MetadataCopy(name, change.name, change.new_version)
        if self.witness is not None:
            await self.witness.observe_meta(
                name=name, role=change.name, version=change.new_version, data=data
            )
        if self.dry_run or present:
            cycle.spooled[name] = _Spooled(copy, present=present)
            return
        # Kept on disk, not in memory: memory stays bounded by the largest role.
        path = self._spool_path("role")
        await write_spool_file(path, data)
        cycle.spooled[name] = _Spooled(copy, path=path)

    def _put_options(self, key: str, consistent: bool) -> PutOptions:
        """Headers of a published metadata file: immutable when versioned, else the
        configured short max-age (``--timestamp-max-age``)."""
        return put_options_for(
            key,
            consistent_snapshot=consistent,
            short_max_age=self.settings.timestamp_max_age,
        )

    async def _publish(self, cycle: _Cycle, published: Published) -> None:
        new = cycle.new
        consistent = new.consistent_snapshot
        # Root versions to publish: the pinned root itself on a first sync (clients
        # bootstrapping from it start there), then the new ones, in order.
        roots: dict[str, bytes] = {}
        for version, data in sorted(cycle.root_history.items()):
            roots[f"{version}.root.json"] = data
        if not published.pinned_root_published:
            roots[f"{published.pinned_version}.root.json"] = self.settings.root_bytes()
        for root in cycle.new_roots:
            roots[f"{root.version}.root.json"] = root.raw
        root_versions = [int(name.split(".", 1)[0]) for name in roots]
        # Only a root.json the upstream itself serves (and that is a verified root):
        # a mirror adds no files of its own under the client-visible names.
        if cycle.root_json is not None and root_versions:
            roots["root.json"] = cycle.root_json
        order = metadata_publish_order(
            changed_roles=cycle.changes if cycle.snapshot_changed else [],
            snapshot_version=(
                new.snapshot.version if cycle.snapshot_changed and new.snapshot else None
            ),
            new_root_versions=root_versions,
            timestamp_changed=cycle.timestamp_changed,
            consistent_snapshot=consistent,
            unversioned_root="root.json" in roots,
        )
        # Targets were written with deferred durability: make them durable before
        # any metadata that references them is published.
        if self.report.targets_fetched:
            await self.store.flush()
        # Versioned targets roles are referenced by nothing until the snapshot that
        # names them is published: they are written with deferred durability and
        # made durable by one flush before the snapshot (not two fsyncs each).
        deferred = 0
        for item in order:
            key = _meta_key(item.name)
            options = self._put_options(key, consistent)
            if consistent and item.role not in ("snapshot", "root", "timestamp"):
                options = dataclasses.replace(options, durable=False)
                deferred += 1
            elif deferred:
                await self.store.flush()
                deferred = 0
            if item.name in roots:
                await self.store.put_bytes(key, roots[item.name], options)
            elif item.name == "timestamp.json":
                assert new.timestamp is not None
                await self.store.put_bytes(key, new.timestamp.raw, options)
            else:
                spooled = cycle.spooled.get(item.name)
                if spooled is None:
                    raise RuntimeError(f"nothing spooled for {item.name}")
                if spooled.present:
                    continue
                if spooled.path is not None:
                    await self.store.put_file(key, spooled.path, options)
                else:
                    assert spooled.data is not None
                    await self.store.put_bytes(key, spooled.data, options)
            self.report.roles_published += 1
        if deferred:
            await self.store.flush()

    async def _refresh_validators(self, cycle: _Cycle, published: Published) -> None:
        """Nothing new, but the timestamp's ETag changed (or was not usable): record
        the new one, so later runs with nothing new stay conditional GETs."""
        new = cycle.new
        if published.state is None or new.timestamp is None:
            return
        state = dict(published.state)
        state["timestamp_etag"] = cycle.timestamp_etag
        state["timestamp_sha256"] = hashlib.sha256(new.timestamp.raw).hexdigest()
        await self._put_state(state)

    async def _put_state(self, state: dict[str, Any]) -> None:
        try:
            await self.store.put_bytes(
                STATE_KEY,
                json.dumps(state, sort_keys=True).encode(),
                put_options_for(STATE_KEY, consistent_snapshot=False),
            )
        except StorageError as exc:
            log.warning("could not record %s (next run is slower): %s", STATE_KEY, exc)

    async def _write_state(self, cycle: _Cycle) -> None:
        new = cycle.new
        if cycle.walk is None or new.snapshot is None:
            return
        state = {
            "snapshot_version": new.snapshot.version,
            "versions": cycle.walk.versions,
            "leaves": sorted(cycle.walk.leaves),
            "timestamp_etag": cycle.timestamp_etag,
            "timestamp_sha256": (
                hashlib.sha256(new.timestamp.raw).hexdigest() if new.timestamp else None
            ),
            "filter": self._selection(),
            "expires": self.report.expires,
        }
        if self.base is self.store and new.timestamp is not None:
            # The history of published states, for prune's retention.
            from mirror.prune import record_publish

            await record_publish(
                self.store,
                state,
                timestamp=new.timestamp.raw,
                timestamp_version=new.timestamp.version,
                snapshot_version=new.snapshot.version,
                root_version=new.root.version,
                published_at=datetime.now(UTC),
            )
        await self._put_state(state)

    # -- one cycle ---------------------------------------------------------------------

    async def _cycle(self, root_bytes: bytes, published: Published) -> None:
        started = trio.current_time()
        cycle = await self._refresh_top_level(root_bytes, published)
        new = cycle.new
        if not published.pinned_root_published and published.pinned_version > 1:
            cycle.root_history = await keep_published_roots(
                lambda name: _read(self.store, _meta_key(name), self.limits.max_root_length),
                await self._root_history(root_bytes, published.pinned_version),
                self.report,
            )
        self.report.upstream_versions = {"root": new.root.version}
        if new.timestamp is not None:
            self.report.upstream_versions["timestamp"] = new.timestamp.version
        log.info(
            "refreshed root v%d, timestamp %s in %.2fs",
            new.root.version,
            "changed" if cycle.timestamp_changed else "unchanged",
            trio.current_time() - started,
        )
        if not new.consistent_snapshot:
            warning = (
                "the upstream does not use consistent snapshots: files are replaced in "
                "place and readers may briefly see a mix of old and new files"
            )
            if warning not in self.report.warnings:
                log.warning("%s", warning)
                self.report.warnings.append(warning)
        # A target selection other than the published state's needs a walk even
        # when the upstream has nothing new.
        reselect = published.snapshot is not None and (
            published.previous_filter != self._selection()
        )
        walked = cycle.timestamp_changed or reselect
        if walked:
            await self._refresh_snapshot(cycle, published)
            await self._copy_everything(cycle, published)
            if self.budget is not None:
                self.budget.check()  # --max-transfer stopped it: publish nothing
            log.info(
                "verified %d roles, copied %d targets (%d already present) at %.2fs",
                self.report.roles_verified,
                self.report.targets_fetched,
                self.report.targets_already_present,
                trio.current_time() - started,
            )
        else:
            self.report.nothing_new = not cycle.new_roots
        self.report.expired_delegated_roles = list(new.expired_delegated)
        for role in new.expired_delegated:
            log.warning("delegated role %s has expired upstream; mirrored as is", role)
        self._note_expiry(new, published)
        if self.policy is not None:
            await self.policy.before_publish(self, cycle, published)
            if self.witness is not None:  # a party of --policy stopped vouching (issue 14)
                for path, alarm in sorted(self.policy.alarms.items()):
                    await self.witness.alarm(
                        "VOUCH_WITHDRAWN", path, alarm["repositories"], alarm["verdict"]
                    )
        if self.budget is not None:
            self.budget.check()  # ... also in the copies the policy gate made
        if not self.dry_run:
            async with shutdown.finishing():  # a first signal lets a publish complete
                if self.witness is not None:
                    await self.witness.before_publish(cycle, published, self.settings.root_bytes())
                await self._publish(cycle, published)
                if walked:
                    await self._write_state(cycle)
                    # Every target is in place: partial downloads left from earlier
                    # interrupted runs will never be continued.
                    await remove_partials(self.store.spool_dir())
                elif cycle.timestamp_etag != published.timestamp_etag:
                    await self._refresh_validators(cycle, published)
                if self.witness is not None:
                    await self.witness.after_publish()
            log.info(
                "published %d metadata files at %.2fs",
                self.report.roles_published,
                trio.current_time() - started,
            )
        self.report.versions_after = {
            "root": new.root.version,
            **({"timestamp": new.timestamp.version} if new.timestamp else {}),
            **({"snapshot": new.snapshot.version} if new.snapshot else {}),
            **({"targets": new.targets.version} if new.targets else {}),
        }
        if not cycle.timestamp_changed and published.timestamp is not None:
            self.report.versions_after.setdefault("timestamp", published.timestamp.version)

    def _selection(self) -> str:
        """Fingerprint of what this run selects: the filters and, under --policy,
        the policy file (a change re-decides every target)."""
        extra = f"+policy:{self.policy.fingerprint()}" if self.policy is not None else ""
        return self.filter.fingerprint() + extra

    def _note_expiry(self, new: TrustedSet, published: Published) -> None:
        """Record when the published top-level metadata expires, and warn when that
        is within --expiry-warning: operators learn before clients fail."""
        expires: dict[str, str] = dict(published.previous_expires)
        expires["root"] = new.root.signed.expires.isoformat()
        for role, verified in (
            ("timestamp", new.timestamp),
            ("snapshot", new.snapshot or published.snapshot),
            ("targets", new.targets),
        ):
            if verified is not None:
                expires[role] = verified.signed.expires.isoformat()
        self.report.expires = expires
        horizon = self.settings.expiry_warning
        for role, when in sorted(expires.items()):
            left = (datetime.fromisoformat(when) - self.now).total_seconds()
            if left < horizon:
                warning = (
                    f"published {role} expires in {left / 3600:.1f} h ({when}): "
                    "clients will refuse it unless the upstream re-signs in time"
                    if left > 0
                    else f"published {role} expired at {when}"
                )
                log.warning("%s", warning)
                self.report.warnings.append(warning)

    async def _copy_everything(self, cycle: _Cycle, published: Published) -> None:
        consistent = cycle.new.consistent_snapshot
        copier = self._copier or TargetCopier(
            store=self.store,
            fetcher=self.fetcher,
            consistent_snapshot=consistent,
            base=self.base,
            dry_run=self.dry_run,
            budget=self.budget,
            short_max_age=self.settings.timestamp_max_age,
        )
        processes = self._processes(cycle, published)
        send, receive = trio.open_memory_channel[TargetCopy](self.settings.transfers * 4)
        with _one_error():
            async with trio.open_nursery() as nursery:
                if processes:
                    assert self.upstream is not None
                    pool = ProcessPool(
                        settings=self.settings,
                        upstream=self.upstream,
                        consistent_snapshot=consistent,
                        processes=processes,
                        concurrency=self.settings.transfers,
                        on_result=self._count,
                    )
                    self._pools.append(pool)
                    nursery.start_soon(pool.run, receive)
                else:
                    async with receive:
                        for _ in range(self.settings.transfers):
                            nursery.start_soon(self._target_worker, receive.clone(), copier)
                async with send:
                    await self._walk(cycle, published, send)

    def _processes(self, cycle: _Cycle, published: Published) -> int:
        """How many worker processes copy targets (0: this process does).

        Worker processes pay start-up (~0.3 s of CPU each, while this process walks)
        and ~0.3 ms of CPU per target on top (jobs and results through pipes), and
        win wall time when there are many targets to copy and idle cores: a first
        sync of a repository with many roles, or a change touching very many roles.
        +500 targets over ~400 of 1024 bins (scripts/bench) is cheaper in one
        process: 2.07 s wall and 1.79 s of CPU, against 2.89 s and 3.31 s with two
        workers. Children open the upstream and destination by themselves, so an
        export's base view or a dry run keeps everything here."""
        if self.dry_run or self.upstream is None or self.base is not self.store:
            return 0
        if self.budget is not None or self.settings.bwlimit is not None:
            # The budget and the bandwidth bucket are counted in this process.
            if self.settings.processes:
                log.warning(
                    "--processes ignored: --max-transfer and --bwlimit are counted in one process"
                )
            return 0
        if self.settings.processes is not None:
            return self.settings.processes
        assert cycle.new.snapshot is not None
        first_sync = published.snapshot is None
        if first_sync:
            roles = len(cycle.new.snapshot.signed.meta)
        else:
            assert published.snapshot is not None
            roles = len(
                diff_snapshot(published.snapshot.signed.meta, cycle.new.snapshot.signed.meta)
            )
        if roles < (AUTO_PROCESSES_MIN_ROLES if first_sync else AUTO_PROCESSES_MIN_CHANGED_ROLES):
            return 0
        return max(1, min(os.cpu_count() or 1, 4))


@contextmanager
def _one_error() -> Iterator[None]:
    """Turn a nursery's group of ``MirrorError``s into the one that matters most
    (a verification failure before a transient one); anything else is a bug and
    propagates as the group."""
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = list(_leaves(group))
        if not leaves or not all(isinstance(leaf, MirrorError) for leaf in leaves):
            raise
        errors = [leaf for leaf in leaves if isinstance(leaf, MirrorError)]
        errors.sort(key=lambda error: not isinstance(error, VerificationError))
        raise errors[0] from None


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


# -- entry points ----------------------------------------------------------------------


async def run_sync(
    settings: Settings,
    *,
    now: datetime,
    dry_run: bool = False,
    report: RunReport | None = None,
    progress: bool = False,
) -> RunReport:
    """``tuf-mirror sync`` (or ``plan`` with ``dry_run``): one run, one report.

    ``report`` (optional) is filled in as the run goes, so a caller still has the
    counters of a run that raised."""
    upstream = settings.upstream[0]
    if report is None:
        report = RunReport(command="plan" if dry_run else "sync")
    report.upstream = upstream
    report.dest = settings.dest
    async with open_endpoints(settings, upstream) as (store, fetcher):
        sync = Synchronizer(
            settings=settings,
            store=store,
            fetcher=fetcher,
            now=now,
            dry_run=dry_run,
            report=report,
            upstream=upstream,
        )
        async with contextlib.AsyncExitStack() as stack:
            if not dry_run:
                await stack.enter_async_context(hold_lease(store, settings, report))
                # What killed runs left in the spool (not resumable partials).
                await reclaim_spool(store.spool_dir())
                from mirror.ledger.run import witnessed

                sync.witness = await stack.enter_async_context(
                    witnessed(settings, now=now, destination=store, report=report)
                )
            if settings.policy is not None:
                from mirror.policy import open_gate

                sync.policy = await stack.enter_async_context(
                    open_gate(settings, store, now=now, report=report, dry_run=dry_run)
                )
            with _one_error():
                async with trio.open_nursery() as nursery:
                    if progress:
                        from mirror.progress import show_progress

                        nursery.start_soon(show_progress, report)
                    await sync.run()
                    if settings.repair and not dry_run:
                        from mirror.audit import repair_targets

                        await repair_targets(
                            settings, store=store, fetcher=fetcher, now=now, report=report
                        )
                    if settings.prune and not dry_run and report.exit_status == 0:
                        from mirror.prune import prune_after_sync

                        await prune_after_sync(store, settings, report, now=datetime.now(UTC))
                    nursery.cancel_scope.cancel()
    report.finish()
    return report


async def verify_destination(settings: Settings, *, now: datetime) -> RunReport:
    """``tuf-mirror verify``: audit a published mirror from the pinned root."""
    from mirror.audit import audit

    return await audit(settings, now=now)


__all__ = ["Published", "Synchronizer", "load_published", "run_sync", "verify_destination"]
