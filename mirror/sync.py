"""The run loop of ``sync`` and ``plan``: the only module that joins upstream
(``fetch``), verification (``trust``) and destination (``storage``), through the
phase modules, each returning a typed result:

``published.load_published`` → ``refresh`` (``Refreshed``) → ``copying.walk_and_copy``
(``walk.Walked``) → the gate and the witness (``hooks``) → ``publish``.

A ``NotFoundError`` for a versioned file mid-run means the upstream moved on (and
garbage-collected): the cycle restarts from a fresh timestamp, at most
``MAX_RESTARTS`` times, keeping every target already written. The run report is
filled as the run goes and read by nothing in it. README "How a sync works" names
the module of each step.

What this module does not do: any phase itself, signature or hash logic, HTTP,
atomic writes, argument parsing (``cli``), the ledger or the trust policy (plugged
in through ``hooks.Extensions``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime

import trio

from mirror import shutdown
from mirror.config import Settings
from mirror.copier import TargetCopier
from mirror.copying import GateCopies, Tally, count_requests, processes_for, walk_and_copy
from mirror.endpoints import hold_lease, open_endpoints
from mirror.errors import NotFoundError, one_error
from mirror.fetch import Fetcher
from mirror.fetch.budget import TransferBudget
from mirror.fetch.spool import reclaim_spool, remove_partials
from mirror.filters import TargetFilter
from mirror.hooks import Extensions, Gate, PublishContext, Witness, consult_gate
from mirror.log import log
from mirror.publish import (
    Spooler,
    expiry_of,
    publish_metadata,
    refresh_validators,
    state_after,
    warn_expiry,
    write_state,
)
from mirror.published import Published, load_published
from mirror.refresh import (
    MetadataSource,
    Refreshed,
    note_refresh,
    refresh,
    with_root_history,
    with_snapshot,
)
from mirror.report import RunReport
from mirror.storage import Store
from mirror.trust import Limits
from mirror.walk import RoleLoader, Walked
from mirror.workers import ProcessPool

MAX_RESTARTS = 3


@dataclass(frozen=True, slots=True)
class SyncOutcome:
    """What a run did, for the callers that decide from it (``export``)."""

    #: nothing to publish: no new timestamp, root or target
    nothing_new: bool
    #: targets this run wrote
    targets_written: int


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
        witness: Witness | None = None,
    ) -> None:
        self.settings = settings
        #: copies the targets the walk names instead of the default one (``shard plan``
        #: records them in its manifest)
        self._copier = copier
        #: the ledger's part in this run (``hooks.Witness``); None: no ledger
        self.witness = witness
        self.store = store
        #: where the previous state is read from: the destination itself, or (for an
        #: export) a view of the far side's state while ``store`` receives the files
        self.base = base if base is not None else store
        #: the upstream URL/path worker processes open for themselves (None: no workers)
        self.upstream = upstream
        self._pools: list[ProcessPool] = []
        self.filter = TargetFilter(settings.include, settings.exclude, settings.role)
        #: --policy: decides which targets are published (None: every selected one)
        self.policy: Gate | None = None
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

    async def run(self) -> RunReport:
        """``execute``, returning the report."""
        await self.execute()
        return self.report

    async def execute(self) -> SyncOutcome:
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
                self.report.versions_before = published.versions()
                try:
                    return await self._cycle(root_bytes, published)
                except NotFoundError as exc:
                    if restarts >= MAX_RESTARTS:
                        raise
                    restarts += 1
                    self.report.restarts = restarts
                    log.warning("%s; restarting from a fresh timestamp (%d)", exc, restarts)
        finally:
            # Also for a failed run: the report says what it cost.
            count_requests(self.report, self.fetcher.stats, self._pools)

    def _selection(self) -> str:
        """Fingerprint of what this run selects: the filters and, under --policy,
        the policy file (a change re-decides every target)."""
        extra = f"+policy:{self.policy.fingerprint()}" if self.policy is not None else ""
        return self.filter.fingerprint() + extra

    def _new_copier(self, consistent: bool) -> TargetCopier:
        return TargetCopier(
            store=self.store,
            fetcher=self.fetcher,
            consistent_snapshot=consistent,
            base=self.base,
            dry_run=self.dry_run,
            budget=self.budget,
            short_max_age=self.settings.timestamp_max_age,
        )

    async def _cycle(self, root_bytes: bytes, published: Published) -> SyncOutcome:
        started = trio.current_time()
        report = self.report
        source = MetadataSource.of(
            self.settings,
            self.fetcher,
            self.limits,
            report,
            first_sync=published.timestamp is None,
        )
        refreshed = await refresh(source, root_bytes, published, now=self.now, witness=self.witness)
        refreshed = await with_root_history(refreshed, source, self.store, root_bytes, published)
        new = refreshed.trusted
        log.info(
            "refreshed root v%d, timestamp %s in %.2fs",
            new.root.version,
            "changed" if refreshed.timestamp_changed else "unchanged",
            trio.current_time() - started,
        )
        note_refresh(report, refreshed)
        # A target selection other than the published state's needs a walk even
        # when the upstream has nothing new.
        selection = self._selection()
        reselect = published.snapshot is not None and published.previous_filter != selection
        loader = RoleLoader(store=self.store, base=self.base, source=source, witness=self.witness)
        tally = Tally(report)
        walked: Walked | None = None
        if refreshed.timestamp_changed or reselect:
            refreshed = await with_snapshot(refreshed, source, published, witness=self.witness)
            walked = await walk_and_copy(
                refreshed.trusted,
                published,
                loader=loader,
                spooler=Spooler(self.store, dry_run=self.dry_run, witness=self.witness),
                copier=self._copier or self._new_copier(new.consistent_snapshot),
                tally=tally,
                settings=self.settings,
                processes=processes_for(
                    self.settings,
                    local_only=self.dry_run or self.upstream is None or self.base is not self.store,
                    trusted=new,
                    published=published,
                ),
                upstream=self.upstream,
                target_filter=self.filter,
                gate=self.policy,
                witness=self.witness,
                full_pass=reselect,
                pools=self._pools,
            )
            if self.budget is not None:
                self.budget.check()  # --max-transfer stopped it: publish nothing
            log.info(
                "verified %d roles, copied %d targets (%d already present) at %.2fs",
                report.roles_verified,
                report.targets_fetched,
                report.targets_already_present,
                trio.current_time() - started,
            )
        else:
            report.nothing_new = not refreshed.new_roots
        report.expired_delegated_roles = list(new.expired_delegated)
        for role in new.expired_delegated:
            log.warning("delegated role %s has expired upstream; mirrored as is", role)
        report.expires = expires = expiry_of(new, published)
        warn_expiry(report, expires, now=self.now, horizon=self.settings.expiry_warning)
        gate_copies = GateCopies(self._new_copier(new.consistent_snapshot), tally)
        if self.policy is not None:
            changed = frozenset(c.name for c in walked.changes) if walked else frozenset()
            context = PublishContext(
                trusted=new,
                published=published,
                changed_roles=changed,
                target_filter=self.filter,
                roles=loader,
                copy_target=gate_copies,
                report=report,
            )
            await consult_gate(self.policy, context, witness=self.witness)
        if self.budget is not None:
            self.budget.check()  # ... also in the copies the policy gate made
        if not self.dry_run:
            async with shutdown.finishing():  # a first signal lets a publish complete
                if self.witness is not None:
                    await self.witness.before_publish(refreshed, published, root_bytes)
                await self._publish(refreshed, published, walked, root_bytes, tally)
                if walked is not None:
                    state = state_after(
                        refreshed,
                        versions=walked.versions,
                        leaves=walked.leaves,
                        selection=selection,
                        expires=expires,
                    )
                    await write_state(
                        self.store, state, new, record_history=self.base is self.store
                    )
                    # Every target is in place: partial downloads left from earlier
                    # interrupted runs will never be continued.
                    await remove_partials(self.store.spool_dir())
                elif refreshed.timestamp_etag != published.timestamp_etag:
                    await refresh_validators(self.store, published, new, refreshed.timestamp_etag)
                if self.witness is not None:
                    await self.witness.after_publish()
            log.info(
                "published %d metadata files at %.2fs",
                report.roles_published,
                trio.current_time() - started,
            )
        report.versions_after = refreshed.versions()
        if not refreshed.timestamp_changed and published.timestamp is not None:
            report.versions_after.setdefault("timestamp", published.timestamp.version)
        return SyncOutcome(
            nothing_new=walked is None and not refreshed.new_roots and not gate_copies.copied,
            targets_written=tally.written,
        )

    async def _publish(
        self,
        refreshed: Refreshed,
        published: Published,
        walked: Walked | None,
        pinned: bytes,
        tally: Tally,
    ) -> None:
        await publish_metadata(
            self.store,
            refreshed,
            published,
            changes=walked.changes if walked is not None else (),
            spooled=walked.spooled if walked is not None else {},
            pinned=pinned,
            targets_written=tally.written > 0,
            short_max_age=self.settings.timestamp_max_age,
            report=self.report,
        )


# -- entry points ----------------------------------------------------------------------


async def run_sync(
    settings: Settings,
    *,
    now: datetime,
    dry_run: bool = False,
    report: RunReport | None = None,
    progress: bool = False,
    extensions: Extensions,
) -> RunReport:
    """``tuf-mirror sync`` (or ``plan`` with ``dry_run``): one run, one report.

    ``report`` (optional) is filled in as the run goes, so a caller still has the
    counters of a run that raised. ``extensions`` open the ledger's witness and the
    policy gate (``mirror.extensions.STANDARD``)."""
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
                if extensions.witness is not None:
                    sync.witness = await stack.enter_async_context(
                        extensions.witness(settings, now=now, destination=store, report=report)
                    )
            if settings.policy is not None:
                if extensions.gate is None:
                    raise RuntimeError("--policy without a gate extension")
                sync.policy = await stack.enter_async_context(
                    extensions.gate(settings, store, now=now, report=report, dry_run=dry_run)
                )
            with one_error():
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


__all__ = [
    "MAX_RESTARTS",
    "Published",
    "SyncOutcome",
    "Synchronizer",
    "load_published",
    "run_sync",
    "verify_destination",
]
