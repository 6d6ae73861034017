"""The three steps of a sharded first copy: ``plan``, ``copy`` (one shard, or all)
and ``publish``, each a job for any scheduler (an AWS Batch array job, a
Kubernetes Indexed Job, a shell loop).

- ``plan_run``: the sync engine in dry-run mode (full TUF workflow from the pinned
  root, the destination's published state re-verified, the delegation walk with
  target authority and filters) with a copier that records every target to copy
  in the manifest (``mirror.shard.manifest``) instead of copying it; ``run.json``
  last. Planning the same run id again returns the existing plan (a retried job).
- ``copy_shards``: every target of a shard through the engine's ``TargetCopier``
  (presence check, download with a hard length cap, check against the manifest's
  length and every hash, atomic write under its final content-addressed names),
  then the shard's completion marker, last. Idempotent: a shard run twice, or by two
  pods at once, writes the same bytes under the same names. SIGTERM stops it
  cleanly (exit 143); the rerun continues, skipping what is present.
- ``publish_run``: every shard's marker present and every target of the manifest
  present with its length (else ``TransientError``, exit 3, nothing published),
  then the normal incremental sync under the destination lock: it re-verifies
  everything, finds every target present with its hashes (fetching none again), and
  publishes the metadata in order, ``timestamp.json`` last. A newer upstream state
  since the plan is simply synced: its new targets are fetched then.

No lock is taken by ``plan`` and ``copy``: they only write under
``.tuf-mirror/runs/`` and content-addressed target names, which no reader sees
until ``publish`` (which holds the lock) writes the metadata that names them.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import trio

from mirror.config import Settings
from mirror.copier import CopyResult, Outcome, TargetCopier
from mirror.endpoints import open_endpoints
from mirror.errors import MirrorError, TerminatedError, TransientError, UsageError
from mirror.extensions import STANDARD
from mirror.fetch import Fetcher
from mirror.fetch.budget import TransferBudget
from mirror.log import log
from mirror.plan import TargetCopy
from mirror.report import RunReport
from mirror.shard.manifest import (
    ManifestWriter,
    RunInfo,
    marker_name,
    read_run,
    read_shard,
    run_key,
    write_run,
)
from mirror.shard.report import ShardReport
from mirror.storage import NotFoundInStoreError, PutOptions, Store
from mirror.sync import Synchronizer, run_sync

#: missing targets named in publish's error message at most
_SHOW_MISSING: Final = 5
_JSON: Final = PutOptions(content_type="application/json")


@dataclass(frozen=True, slots=True)
class ShardArgs:
    """What a shard step needs beyond the sync settings (``Settings.extra["shard"]``)."""

    step: str
    run_id: str | None = None
    shards: int | None = None
    #: None: every shard (copy)
    index: int | None = None
    count: int | None = None


def new_run_id(now: datetime) -> str:
    """A fresh run id: the UTC time and 6 random hex digits."""
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


# -- plan -----------------------------------------------------------------------------


class _ManifestRecorder(TargetCopier):
    """The copier ``plan`` gives the engine: it records, and copies nothing."""

    def __init__(self, writer: ManifestWriter, *, store: Store, fetcher: Fetcher) -> None:
        super().__init__(store=store, fetcher=fetcher, consistent_snapshot=True, dry_run=True)
        self.writer = writer

    async def copy(self, copy: TargetCopy) -> CopyResult:
        await self.writer.add(copy)
        return CopyResult(Outcome.PLANNED, copy.length)


async def plan_run(
    settings: Settings, args: ShardArgs, *, now: datetime, report: ShardReport
) -> ShardReport:
    """``tuf-mirror shard plan``; see the module docstring."""
    assert args.shards is not None
    run_id = args.run_id or new_run_id(now)
    report.run_id = run_id
    report.shards = args.shards
    upstream = settings.upstream[0]
    report.upstream = upstream
    report.dest = settings.dest
    async with open_endpoints(settings, upstream) as (store, fetcher):
        existing = await _existing_run(store, run_id)
        if existing is not None:
            if existing.shards != args.shards:
                raise UsageError(
                    f"run {run_id} exists with {existing.shards} shards, not {args.shards}"
                )
            log.warning("run %s was planned already; its manifest is kept", run_id)
            _describe(report, existing)
            report.finish()
            return report
        writer = ManifestWriter(
            store.spool_dir() / f"plan-{run_id}-{secrets.token_hex(4)}", args.shards
        )
        try:
            engine = Synchronizer(
                settings=settings,
                store=store,
                fetcher=fetcher,
                now=now,
                dry_run=True,
                report=report,
                copier=_ManifestRecorder(writer, store=store, fetcher=fetcher),
            )
            await engine.run()
            files = await writer.finish()
            await writer.upload(store, run_id)
        finally:
            await trio.to_thread.run_sync(writer.remove)
        info = RunInfo(
            run_id=run_id,
            shards=args.shards,
            consistent_snapshot=writer.consistent_snapshot is not False,
            files=files,
            created=now.isoformat(),
            upstream_versions=dict(report.upstream_versions),
        )
        await write_run(store, info)
    _describe(report, info)
    log.info(
        "planned run %s: %d targets, %d bytes in %d shards; manifest sha256 %s",
        run_id,
        info.total_targets,
        info.total_bytes,
        info.shards,
        info.manifest_sha256,
    )
    report.finish()
    return report


async def _existing_run(store: Store, run_id: str) -> RunInfo | None:
    if await store.head(run_key(run_id, "run.json")) is None:
        return None
    return await read_run(store, run_id)


def _describe(report: ShardReport, info: RunInfo) -> None:
    report.run_id = info.run_id
    report.shards = info.shards
    report.manifest_targets = info.total_targets
    report.manifest_bytes = info.total_bytes
    report.manifest_sha256 = info.manifest_sha256


# -- copy -----------------------------------------------------------------------------


async def for_each_target(
    store: Store,
    info: RunInfo,
    index: int,
    work: Callable[[TargetCopy], Awaitable[None]],
    *,
    limit: int,
) -> int:
    """Run ``work`` on every target of shard ``index``, ``limit`` at once, as the
    manifest streams in (a bounded queue: a slow large target never holds the
    others back); return how many targets the shard has."""
    send, receive = trio.open_memory_channel[TargetCopy](limit * 4)

    async def worker(channel: trio.MemoryReceiveChannel[TargetCopy]) -> None:
        async with channel:
            async for item in channel:
                await work(item)

    async def feed(copies: list[TargetCopy]) -> None:
        for copy in copies:
            await send.send(copy)

    with first_error():
        async with trio.open_nursery() as nursery:
            async with receive:
                for _ in range(limit):
                    nursery.start_soon(worker, receive.clone())
            async with send:
                return await read_shard(store, info, index, feed)


async def copy_shards(
    settings: Settings, args: ShardArgs, *, now: datetime, report: ShardReport
) -> ShardReport:
    """``tuf-mirror shard copy``; see the module docstring."""
    assert args.run_id is not None
    upstream = settings.upstream[0]
    report.run_id = args.run_id
    report.upstream = upstream
    report.dest = settings.dest
    async with open_endpoints(settings, upstream) as (store, fetcher):
        info = await read_run(store, args.run_id)
        _describe(report, info)
        if args.count is not None and args.count != info.shards:
            raise UsageError(
                f"run {info.run_id} was planned with {info.shards} shards, not --count {args.count}"
            )
        if args.index is not None and args.index >= info.shards:
            raise UsageError(
                f"--index {args.index} is out of range: run {info.run_id} has shards "
                f"0..{info.shards - 1}"
            )
        indexes = [args.index] if args.index is not None else list(range(info.shards))
        report.shard_indexes = indexes
        copier = TargetCopier(
            store=store,
            fetcher=fetcher,
            consistent_snapshot=info.consistent_snapshot,
            budget=(
                TransferBudget(settings.max_transfer) if settings.max_transfer is not None else None
            ),
            short_max_age=settings.timestamp_max_age,
        )

        async def one(copy: TargetCopy) -> None:
            report.targets_new += 1
            result = await copier.copy(copy)
            if result.outcome is Outcome.PRESENT:
                report.targets_already_present += 1
                report.present_bytes += result.length
            elif result.outcome is Outcome.DEFERRED:  # --max-transfer: a later run
                report.targets_deferred += 1
            else:
                report.targets_fetched += 1
                report.targets_published += 1
                report.target_bytes += result.length

        try:
            for index in indexes:
                before = (report.targets_fetched, report.targets_already_present)
                total = await for_each_target(store, info, index, one, limit=settings.transfers)
                # Deferred-durability target writes become durable before the
                # marker says they are there.
                await store.flush()
                if copier.budget is not None:
                    copier.budget.check()  # no marker for a shard the budget cut short
                marker = {
                    "run_id": info.run_id,
                    "index": index,
                    "count": info.shards,
                    "manifest_sha256": info.manifest_sha256,
                    "shard_sha256": info.files[index].sha256,
                    "targets": total,
                    "copied": report.targets_fetched - before[0],
                    "present": report.targets_already_present - before[1],
                    "finished": datetime.now(now.tzinfo).isoformat(),
                }
                await store.put_bytes(
                    run_key(info.run_id, marker_name(index)),
                    json.dumps(marker, sort_keys=True).encode(),
                    _JSON,
                )
                log.info(
                    "shard %d/%d of run %s done: %d targets (%d copied, %d present)",
                    index,
                    info.shards,
                    info.run_id,
                    total,
                    marker["copied"],
                    marker["present"],
                )
        finally:
            stats = fetcher.stats
            report.requests = stats.requests
            report.bytes_received = stats.bytes_received
            report.retries = stats.retries
            report.resumed = stats.resumed
    report.finish()
    return report


# -- publish ----------------------------------------------------------------------------


async def _marker(store: Store, info: RunInfo, index: int) -> dict[str, Any] | None:
    try:
        raw = await store.get(run_key(info.run_id, marker_name(index)), max_length=1024 * 1024)
    except NotFoundInStoreError:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


async def check_complete(store: Store, info: RunInfo, *, concurrency: int) -> None:
    """Every shard's marker is there (for this manifest) and every target of the
    manifest is present with its length; else ``TransientError``."""
    unfinished = [
        index
        for index in range(info.shards)
        if ((await _marker(store, info, index)) or {}).get("manifest_sha256")
        != info.manifest_sha256
    ]
    if unfinished:
        shown = ", ".join(str(index) for index in unfinished[:20])
        raise TransientError(
            f"run {info.run_id}: {len(unfinished)} of {info.shards} shards have not "
            f"completed (no completion marker: {shown}); nothing published: run "
            f"`tuf-mirror shard copy --run-id {info.run_id} --index K --count "
            f"{info.shards}` for them, then publish again"
        )
    missing: list[str] = []
    count = 0

    async def present(copy: TargetCopy) -> None:
        # Presence and length: the copy checked the hashes before it wrote, and the
        # sync that publishes checks them again (a HEAD with S3's checksum); reading
        # every byte here too would triple a first copy's reads on a local disk.
        nonlocal count
        for name in copy.names:
            key = f"targets/{name}"
            found = await store.head(key)
            if found is None or found.size != copy.length:
                count += 1
                if len(missing) < _SHOW_MISSING:  # bounded, whatever is missing
                    missing.append(key)

    for index in range(info.shards):
        await for_each_target(store, info, index, present, limit=concurrency)
    if count:
        raise TransientError(
            f"run {info.run_id}: {count} targets of the manifest are missing or "
            f"differ at the destination although every shard completed (e.g. "
            f"{', '.join(missing)}); nothing published: rerun the shards' copies, "
            "then publish again"
        )


async def publish_run(
    settings: Settings, args: ShardArgs, *, now: datetime, report: ShardReport
) -> ShardReport:
    """``tuf-mirror shard publish``; see the module docstring."""
    assert args.run_id is not None
    report.run_id = args.run_id
    upstream = settings.upstream[0]
    async with open_endpoints(settings, upstream) as (store, _fetcher):
        info = await read_run(store, args.run_id)
        _describe(report, info)
        await check_complete(store, info, concurrency=settings.uploads)
    log.info("run %s: every shard completed; publishing through the sync engine", info.run_id)
    sync_settings = dataclasses.replace(settings, command="sync")
    await run_sync(sync_settings, now=now, report=report, extensions=STANDARD)
    planned = info.upstream_versions.get("timestamp")
    current = report.upstream_versions.get("timestamp")
    if planned is not None and current is not None and current != planned:
        note = (
            f"the upstream moved on since the plan (timestamp v{planned} -> v{current}): "
            f"the sync copied {report.targets_fetched} newer targets itself"
        )
        log.warning("%s", note)
        report.warnings.append(note)
    async with open_endpoints(settings, upstream) as (store, _fetcher):
        record = {
            "run_id": info.run_id,
            "manifest_sha256": info.manifest_sha256,
            "published": now.isoformat(),
            "versions": report.versions_after,
        }
        await store.put_bytes(
            run_key(info.run_id, "published.json"),
            json.dumps(record, sort_keys=True).encode(),
            _JSON,
        )
    return report


# -- signals and errors -----------------------------------------------------------------


@asynccontextmanager
async def terminates_cleanly(*, what: str) -> AsyncIterator[None]:
    """Run the block; on SIGTERM cancel it and raise ``TerminatedError`` (exit 143).

    Spot capacity gives two minutes' notice, Kubernetes a grace period: whatever
    the block wrote is complete (atomic puts), and a rerun continues."""
    terminated = False
    with first_error():
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                nonlocal terminated
                with trio.open_signal_receiver(signal.SIGTERM) as signals:
                    async for _ in signals:
                        terminated = True
                        log.warning("SIGTERM: stopping the %s cleanly", what)
                        nursery.cancel_scope.cancel()
                        return

            nursery.start_soon(watch)
            yield
            nursery.cancel_scope.cancel()
    if terminated:
        raise TerminatedError(
            f"{what} stopped by SIGTERM; what was written is complete and verified: "
            "run it again to continue"
        )


@contextmanager
def first_error() -> Iterator[None]:
    """Turn a nursery's group of ``MirrorError``s into one (a verification failure
    before others); anything else propagates as the group (a bug)."""
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = list(_leaves(group))
        if any(isinstance(leaf, KeyboardInterrupt) for leaf in leaves):
            raise KeyboardInterrupt from None  # main() maps it to exit 130
        errors = [leaf for leaf in leaves if isinstance(leaf, MirrorError)]
        if not leaves or len(errors) != len(leaves):
            raise
        errors.sort(key=lambda error: int(error.exit_status) != 1)
        raise errors[0] from None


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


STEPS: Final = {"plan": plan_run, "copy": copy_shards, "publish": publish_run}


async def run_step(settings: Settings, *, now: datetime, report: RunReport) -> ShardReport:
    """Run the shard step ``settings.extra["shard"]`` describes; ``report`` gives
    the start time."""
    args = settings.extra["shard"]
    assert isinstance(args, ShardArgs)
    shard_report = ShardReport(command=settings.command, started=report.started)
    what = f"shard {args.step}" + (f" of run {args.run_id}" if args.run_id else "")
    async with terminates_cleanly(what=what):
        return await STEPS[args.step](settings, args, now=now, report=shard_report)


__all__ = [
    "ShardArgs",
    "check_complete",
    "copy_shards",
    "new_run_id",
    "plan_run",
    "publish_run",
    "run_step",
    "terminates_cleanly",
]
