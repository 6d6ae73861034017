"""Copy scheduling: the target copies the walk sends are made by tasks in this
process or by worker processes (``mirror.workers``), while the walk goes on.

``copy_targets`` runs a producer (the walk, given the send side of a channel)
against the copiers, counting what was copied in a ``Tally``: the engine decides
from it, never from the report, whether targets were written. ``walk_and_copy``
is the sync's producer: ``walk.walk_roles`` with a ``walk.TargetSender``.

What this module does not do: decide which targets are copied (``walk``), copy one
target (``copier``), publish (``publish``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from mirror import shutdown
from mirror.config import Settings
from mirror.copier import COPY_BATCH, CopyResult, Outcome, TargetCopier
from mirror.errors import one_error
from mirror.fetch import FetchStats
from mirror.filters import TargetFilter
from mirror.hooks import Gate, Witness
from mirror.log import log
from mirror.plan import TargetCopy, diff_snapshot
from mirror.publish import Spooler
from mirror.published import Published
from mirror.report import RunReport
from mirror.trust import TrustedSet
from mirror.walk import RoleLoader, TargetSender, Walked, walk_roles
from mirror.workers import ProcessPool, take_ready

_T = TypeVar("_T")

__all__ = [
    "AUTO_PROCESSES_MIN_CHANGED_ROLES",
    "AUTO_PROCESSES_MIN_ROLES",
    "GateCopies",
    "Tally",
    "copy_targets",
    "count_requests",
    "processes_for",
    "walk_and_copy",
]

#: worker processes are used when a first sync's snapshot lists at least this many
#: roles, or an incremental sync's snapshot diff changes at least the second number
AUTO_PROCESSES_MIN_ROLES = 64
AUTO_PROCESSES_MIN_CHANGED_ROLES = 512


class Tally:
    """Counts copy results into the run report, and keeps what the engine decides
    from: how many targets this run wrote."""

    __slots__ = ("answered", "report", "written")

    def __init__(self, report: RunReport) -> None:
        self.report = report
        #: targets written by this run (a flush makes them durable before publishing)
        self.written = 0
        #: copy results counted, whatever their outcome
        self.answered = 0

    def count(self, result: CopyResult) -> None:
        self.answered += 1
        report = self.report
        if result.outcome is Outcome.PRESENT:
            report.targets_already_present += 1
            report.present_bytes += result.length
        elif result.outcome is Outcome.COPIED:
            self.written += 1
            report.targets_fetched += 1
            report.targets_published += 1
            report.target_bytes += result.length
        elif result.outcome is Outcome.DEFERRED:
            report.targets_deferred += 1


def processes_for(
    settings: Settings,
    *,
    local_only: bool,
    trusted: TrustedSet,
    published: Published,
) -> int:
    """How many worker processes copy targets (0: this process does).

    Worker processes pay start-up (~0.3 s of CPU each, while this process walks)
    and ~0.3 ms of CPU per target on top (jobs and results through pipes), and
    win wall time when there are many targets to copy and idle cores: a first
    sync of a repository with many roles (the snapshot of ``trusted``), or a change
    touching very many roles (its diff from the ``published`` one, counted only
    when needed). +500 targets over
    ~400 of 1024 bins (scripts/bench) is cheaper in one process: 2.07 s wall and
    1.79 s of CPU, against 2.89 s and 3.31 s with two workers. Children open the
    upstream and destination by themselves, so an export's base view or a dry run
    (``local_only``) keeps everything here."""
    if local_only:
        return 0
    if settings.max_transfer is not None or settings.bwlimit is not None:
        # The budget and the bandwidth bucket are counted in this process.
        if settings.processes:
            log.warning(
                "--processes ignored: --max-transfer and --bwlimit are counted in one process"
            )
        return 0
    if settings.processes is not None:
        return settings.processes
    assert trusted.snapshot is not None
    new = trusted.snapshot.signed.meta
    if published.snapshot is None:
        if len(new) < AUTO_PROCESSES_MIN_ROLES:
            return 0
    elif len(diff_snapshot(published.snapshot.signed.meta, new)) < AUTO_PROCESSES_MIN_CHANGED_ROLES:
        return 0
    return max(1, min(os.cpu_count() or 1, 4))


async def copy_targets(
    produce: Callable[[trio.MemorySendChannel[TargetCopy]], Awaitable[_T]],
    *,
    copier: TargetCopier,
    tally: Tally,
    settings: Settings,
    processes: int,
    upstream: str | None,
    consistent: bool,
    pools: list[ProcessPool],
) -> _T:
    """Run ``produce`` (it sends the copies to make) against ``settings.transfers``
    copy tasks, or ``processes`` worker processes (appended to ``pools``, whose
    statistics ``count_requests`` reads); return what ``produce`` returned."""
    results: list[_T] = []
    send, receive = trio.open_memory_channel[TargetCopy](settings.transfers * 4)
    with one_error():
        async with trio.open_nursery() as nursery:
            if processes:
                assert upstream is not None
                pool = ProcessPool(
                    settings=settings,
                    upstream=upstream,
                    consistent_snapshot=consistent,
                    processes=processes,
                    concurrency=settings.transfers,
                    on_result=tally.count,
                )
                pools.append(pool)
                nursery.start_soon(pool.run, receive)
            else:
                taking = trio.Lock()
                async with receive:
                    for _ in range(settings.transfers):
                        nursery.start_soon(_target_worker, receive.clone(), copier, tally, taking)
            async with send:
                results.append(await produce(send))
    return results[0]


async def _target_worker(
    receive: trio.MemoryReceiveChannel[TargetCopy],
    copier: TargetCopier,
    tally: Tally,
    taking: trio.Lock,
) -> None:
    """Copy what ``receive`` brings, the copies ready together in one batch
    (``TargetCopier.copy_batch``: their downloads pipelined). One copy task at a time
    waits on the channel (``taking``): a channel hands an item straight to each task
    waiting on it, so with every task waiting, a hand-over of 32 copies would be cut
    into batches of one, fetched one by one."""

    def count(index: int, result: CopyResult) -> None:
        tally.count(result)

    async with receive:
        while True:
            async with taking:
                try:
                    copy = await receive.receive()
                except trio.EndOfChannel:
                    return
                batch = take_ready(copy, receive, COPY_BATCH)
            async with shutdown.transfer(len(batch)):  # a stop request starts no new one
                await copier.copy_batch(batch, count)


class GateCopies:
    """Copies targets one at a time after the walk (the policy gate's deferred
    ones), counted as the walk's are."""

    __slots__ = ("copied", "copier", "tally")

    def __init__(self, copier: TargetCopier, tally: Tally) -> None:
        self.copier = copier
        self.tally = tally
        self.copied = 0

    async def __call__(self, copy: TargetCopy) -> None:
        report = self.tally.report
        self.copied += 1
        report.targets_new += 1
        report.planned_bytes += copy.length
        report.nothing_new = False
        self.tally.count(await self.copier.copy(copy))


def count_requests(report: RunReport, stats: FetchStats, pools: list[ProcessPool]) -> None:
    """What the run's fetches cost, this process's and its workers', into the report."""
    report.requests = stats.requests + sum(p.requests for p in pools)
    report.bytes_received = stats.bytes_received + sum(p.bytes_received for p in pools)
    report.retries = stats.retries + sum(p.retries for p in pools)
    report.worker_peak_rss_bytes = max((p.peak_rss for p in pools), default=0)
    report.resumed = stats.resumed
    report.failovers = stats.failovers
    report.upstreams = {
        name: dataclasses.asdict(upstream) for name, upstream in stats.per_upstream.items()
    }
    if stats.per_upstream:  # name the upstream that served the metadata, not a dead one
        busiest = max(stats.per_upstream.items(), key=lambda item: item[1].metadata_served)
        if busiest[1].metadata_served:
            report.upstream = busiest[0]


async def walk_and_copy(
    trusted: TrustedSet,
    published: Published,
    *,
    loader: RoleLoader,
    spooler: Spooler,
    copier: TargetCopier,
    tally: Tally,
    settings: Settings,
    processes: int,
    upstream: str | None,
    target_filter: TargetFilter,
    gate: Gate | None,
    witness: Witness | None,
    full_pass: bool,
    pools: list[ProcessPool],
) -> Walked:
    """The delegation walk (``walk.walk_roles``), with the copies of the targets it
    sends made meanwhile."""
    consistent = trusted.consistent_snapshot
    senders: list[TargetSender] = []
    answered = tally.answered

    async def produce(send: trio.MemorySendChannel[TargetCopy]) -> Walked:
        sender = TargetSender(
            send=send,
            target_filter=target_filter,
            consistent=consistent,
            report=tally.report,
            gate=gate,
            witness=witness,
        )
        senders.append(sender)
        return await walk_roles(
            trusted,
            published,
            loader=loader,
            sender=sender,
            spooler=spooler,
            full_pass=full_pass,
            window=max(2, settings.transfers * 2),
            report=tally.report,
            witness=witness,
        )

    walked = await copy_targets(
        produce,
        copier=copier,
        tally=tally,
        settings=settings,
        processes=processes,
        upstream=upstream,
        consistent=consistent,
        pools=pools,
    )
    # Every copy handed over has its result, or metadata listing a target that was
    # never copied could be published: a bug, stopped here (exit 70).
    sent = sum(sender.sent for sender in senders)
    if tally.answered - answered != sent:
        raise RuntimeError(
            f"{sent} target copies were handed over and {tally.answered - answered} "
            "answered: nothing is published"
        )
    return walked
