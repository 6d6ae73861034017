"""The resources of a run, built from its ``Settings`` in one place: the upstream
fetcher, the destination store, the verification limits and the lock lease. Every
command (``sync``, ``plan``, ``export``, ``import``, ``verify``, ``prune``, the
ledger commands and ``witness``, the shard steps, worker processes and the
``--policy`` repositories) gets them here, so a setting means the same thing to all
of them:

* ``open_upstream``: every ``--upstream`` in order, failing over from one to the
  next (``FailoverFetcher``); for HTTP upstreams ``--retries``, ``--timeout``,
  ``--transfers`` connections, the ``--bwlimit`` bucket (one per schedule for the
  whole ``trio.run``: all downloads of a process share the cap) and, where the
  caller keeps them, resumable partial downloads;
* ``open_destination``: ``--dest`` with the ``--s3-*`` and ``--uploads`` settings,
  behind a ``ListingStore`` for the commands that check many targets' presence;
* ``limits_for``: ``--max-snapshot-size`` and ``--max-targets-size``;
* ``hold_lease``: the lock on a store for ``--lock-lease``, renewed every third of
  it for as long as the command holds it (``keep_lease``), so that no live run's
  lease ever looks dead to the next one.

What it does not do: decide what a command does with them (the commands), fetch,
verify or write anything itself (``mirror.fetch``, ``mirror.trust``,
``mirror.storage``), or hold the ledger's own short lock (``mirror.ledger.log``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

import trio

from mirror.fetch import Fetcher, RetryPolicy, TokenBucket, is_http, open_fetcher
from mirror.storage import Store, open_store
from mirror.storage.listing import ListingStore
from mirror.storage.lock import DestinationLock, lease_for_sync
from mirror.trust import Limits
from mirror.units import BandwidthSchedule

if TYPE_CHECKING:
    from mirror.config import Settings
    from mirror.report import RunReport

__all__ = [
    "bandwidth_for",
    "hold_lease",
    "keep_lease",
    "limits_for",
    "open_destination",
    "open_endpoints",
    "open_location",
    "open_peer",
    "open_upstream",
    "store_options",
]

#: the ``--bwlimit`` buckets of the current ``trio.run``, one per schedule
_BUCKETS: trio.lowlevel.RunVar[dict[BandwidthSchedule, TokenBucket]] = trio.lowlevel.RunVar(
    "tuf_mirror_bandwidth_buckets"
)


# -- limits ------------------------------------------------------------------------------


def limits_for(settings: Settings) -> Limits:
    """The verification limits of a run: ``--max-snapshot-size`` and
    ``--max-targets-size`` cap the roles whose length is not declared."""
    return Limits(
        max_snapshot_length=settings.max_snapshot_size,
        max_targets_length=settings.max_targets_size,
    )


# -- stores ------------------------------------------------------------------------------


def store_options(settings: Settings, location: str) -> dict[str, object]:
    """Keyword arguments for ``open_store(location, ...)``: the ``--s3-*`` and
    ``--uploads`` settings for an ``s3://`` location, nothing for any other. A
    location other than the destination (a ledger in its own bucket) gets the
    endpoint, region, addressing style and concurrency even when the destination is
    a directory; the storage class is the destination's."""
    if urlsplit(location).scheme.lower() != "s3":
        return {}
    options = settings.s3_store_options()
    if not options:
        options = {
            "endpoint_url": settings.s3_endpoint_url,
            "region": settings.s3_region,
            "addressing_style": settings.s3_addressing_style,
            "max_concurrency": settings.uploads,
        }
    return options


def open_location(settings: Settings, location: str) -> Store:
    """The store at ``location`` (a directory, ``file://``, ``memory://`` or
    ``s3://`` URL) with the run's S3 settings."""
    return open_store(location, **store_options(settings, location))


def open_destination(settings: Settings, *, listing: bool = True) -> Store:
    """The ``--dest`` store. With ``listing`` (the commands that copy targets), it is
    behind a ``ListingStore``: the presence checks of many targets in one directory
    cost one listing instead of a HEAD (S3) or a stat (a local disk, where a first
    sync's 50,000 stats took longer than its downloads' parsing) each. See
    ``mirror.storage.listing`` for the choice by count."""
    store = open_location(settings, settings.dest)
    return ListingStore(store) if listing else store


# -- upstreams ---------------------------------------------------------------------------


def bandwidth_for(settings: Settings) -> TokenBucket | None:
    """The ``--bwlimit`` bucket (None: no cap). Inside a ``trio.run`` every call with
    the same schedule returns the same bucket, so every fetcher the run opens (the
    upstream, a policy's repositories) draws from one cap."""
    schedule = settings.bwlimit
    if schedule is None or schedule.unlimited:
        return None
    try:
        buckets = _BUCKETS.get()
    except LookupError:
        buckets = {}
        _BUCKETS.set(buckets)
    except RuntimeError:  # outside trio.run: a bucket of its own
        return TokenBucket(schedule)
    bucket = buckets.get(schedule)
    if bucket is None:
        bucket = buckets[schedule] = TokenBucket(schedule)
    return bucket


def _http_options(settings: Settings, partial_dir: Path | None) -> dict[str, Any]:
    return {
        "transfer_timeout": settings.timeout,
        "retry": RetryPolicy(attempts=settings.retries),
        "max_connections": settings.transfers,
        "bandwidth": bandwidth_for(settings),
        "partial_dir": partial_dir,
    }


def open_upstream(
    settings: Settings,
    first: str | None = None,
    *,
    partial_dir: Path | None = None,
) -> Fetcher:
    """The fetcher of ``settings.upstream``: ``first`` (default: the first
    ``--upstream``) primary, the others following in their order, failed over to on
    transient errors. HTTP upstreams get the retry, deadline, connection and
    bandwidth settings; ``partial_dir`` keeps resumable partial downloads (None: a
    dry run, or a caller without a spool directory)."""
    upstreams = list(settings.upstream)
    if first is not None:
        upstreams = [first, *(other for other in upstreams if other != first)]
    http_options: dict[str, Any] = {}
    if any(is_http(each) for each in upstreams):
        http_options = _http_options(settings, partial_dir)
    return open_fetcher(
        upstreams,
        metadata_url=settings.metadata_url,
        targets_url=settings.targets_url,
        **http_options,
    )


def open_peer(peer: str, *, retries: int, timeout: float) -> Fetcher:
    """Another mirror read like an upstream (``--witness-peer``): an HTTP one with
    the run's retries and deadline (a handful of metadata files: no bucket)."""
    if not is_http(peer):
        return open_fetcher(peer)
    return open_fetcher(peer, retry=RetryPolicy(attempts=retries), transfer_timeout=timeout)


@asynccontextmanager
async def open_endpoints(settings: Settings, upstream: str) -> AsyncIterator[tuple[Store, Fetcher]]:
    """The destination store and the upstream fetcher of a run, closed on exit.

    The fetcher reads ``upstream`` and fails over to the other ``--upstream`` values
    in their order (``FailoverFetcher``) when there are several. HTTP upstreams share
    one ``--bwlimit`` bucket (per run) and, except for ``plan``, keep resumable
    partial downloads in the store's spool directory."""
    store = open_destination(settings)
    try:
        fetcher = open_upstream(
            settings,
            upstream,
            partial_dir=store.spool_dir() if settings.command != "plan" else None,
        )
        try:
            yield store, fetcher
        finally:
            await fetcher.aclose()
    finally:
        await store.aclose()


# -- the lease ---------------------------------------------------------------------------


async def keep_lease(lock: DestinationLock) -> None:
    """Push the lock's expiry forward every third of its ttl, forever (until
    cancelled): a long run (a first sync of a large repository, a big export) never
    looks stale to the next one. A lease lost meanwhile is ``LockHeldError``."""
    while True:
        await trio.sleep(lock.ttl.total_seconds() / 3)
        await lock.refresh()


@asynccontextmanager
async def hold_lease(
    store: Store, settings: Settings, report: RunReport
) -> AsyncIterator[DestinationLock]:
    """Hold the lock of ``store`` for the block: a ``--lock-lease`` long lease
    (``--break-stale-lock`` as given; the report told how long a live holder locked
    this run out, or whose dead lease it took over), renewed while the block runs.

    A failed renewal (the lease was lost) cancels the block and raises
    ``LockHeldError``; the block's own error comes out as it was raised."""
    async with lease_for_sync(store, settings, report) as lock:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(keep_lease, lock)
                yield lock
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            _raise_alone(group)


def _raise_alone(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Re-raise the one error a nursery wrapped (the block's, or the renewal's)
    unchanged, its cause and context included; several stay a group."""
    if len(group.exceptions) != 1:
        raise group
    only = group.exceptions[0]
    context, cause, suppress = only.__context__, only.__cause__, only.__suppress_context__
    try:
        raise only
    finally:
        only.__context__, only.__cause__ = context, cause
        only.__suppress_context__ = suppress
