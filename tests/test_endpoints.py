"""``mirror.endpoints``: what every command's fetcher, store, limits and lease are
built from. The upstream order and its HTTP settings, one ``--bwlimit`` bucket per
run, the S3 options of each location, the limits, and a lease that renews itself
while its holder runs (counted on trio's autojump clock) and lets the holder's own
error out unchanged."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio

from mirror.config import Settings
from mirror.endpoints import (
    bandwidth_for,
    hold_lease,
    limits_for,
    open_destination,
    open_peer,
    open_upstream,
    store_options,
)
from mirror.errors import LockHeldError, StorageError, UsageError
from mirror.fetch import FailoverFetcher, HttpFetcher, LocalFetcher, TokenBucket
from mirror.report import RunReport
from mirror.storage.base import PutOptions
from mirror.storage.listing import ListingStore
from mirror.storage.local import LocalStore
from mirror.storage.lock import LOCK_KEY, DestinationLock, LockInfo, ProcessIdentity
from mirror.storage.memory import MemoryStore
from mirror.units import BandwidthSchedule


def settings_for(*upstreams: str, **changes: object) -> Settings:
    settings = Settings(
        command="sync", root=Path("root.json"), dest="memory://", upstream=upstreams
    )
    return dataclasses.replace(settings, **changes)  # type: ignore[arg-type]


# -- upstreams ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "order"),
    [
        (None, ["http://a.test", "http://b.test", "http://c.test"]),
        ("http://c.test", ["http://c.test", "http://a.test", "http://b.test"]),
    ],
    ids=["given-order", "first-moved-ahead"],
)
async def test_every_upstream_in_order_with_the_http_settings(
    first: str | None, order: list[str]
) -> None:
    """Every --upstream is opened, in order (the one asked for first), each with
    --retries, --timeout and the --bwlimit bucket; no partial directory unless the
    caller keeps one."""
    settings = settings_for(
        "http://a.test",
        "http://b.test",
        "http://c.test",
        retries=3,
        timeout=7.0,
        bwlimit=BandwidthSchedule.parse("2M"),
    )
    fetcher = open_upstream(settings, first)
    try:
        assert isinstance(fetcher, FailoverFetcher)
        assert list(fetcher.fetchers) == order
        for child in fetcher.fetchers.values():
            assert isinstance(child, HttpFetcher)
            assert (child.retry.attempts, child.transfer_timeout) == (3, 7.0)
            assert child.bandwidth is not None
            assert child.bandwidth.rate == 2 * 1024 * 1024
            assert child.partial_dir is None
    finally:
        await fetcher.aclose()


async def test_one_bandwidth_bucket_for_every_fetcher_of_a_run(tmp_path: Path) -> None:
    """Two fetchers opened in one run with the same --bwlimit (the upstream and a
    policy repository) draw from one bucket: the cap is the run's, not each
    fetcher's. An ``off`` schedule is no bucket at all."""
    capped = settings_for("http://a.test", bwlimit=BandwidthSchedule.parse("1M"))
    other = dataclasses.replace(capped, upstream=("http://policy.test",))
    first, second = open_upstream(capped), open_upstream(other, partial_dir=tmp_path)
    try:
        assert isinstance(first, HttpFetcher)
        assert isinstance(second, HttpFetcher)
        assert first.bandwidth is not None
        assert first.bandwidth is second.bandwidth
        assert second.partial_dir == tmp_path
    finally:
        await first.aclose()
        await second.aclose()
    off = BandwidthSchedule.parse("off")
    assert bandwidth_for(dataclasses.replace(capped, bwlimit=off)) is None
    assert bandwidth_for(dataclasses.replace(capped, bwlimit=None)) is None


def test_each_run_has_its_own_bucket() -> None:
    """A bucket belongs to one ``trio.run`` (its clock): the next run starts a new,
    empty one; outside a run each call gets its own."""
    settings = settings_for("http://a.test", bwlimit=BandwidthSchedule.parse("1M"))

    async def bucket() -> TokenBucket | None:
        return bandwidth_for(settings)

    first, second = trio.run(bucket), trio.run(bucket)
    assert first is not None
    assert second is not None
    assert first is not second
    assert bandwidth_for(settings) is not bandwidth_for(settings)


async def test_local_upstreams_and_peers(tmp_path: Path) -> None:
    """A directory upstream or --witness-peer takes no HTTP settings (instead of a
    usage error); an HTTP peer gets the run's retries and deadline."""
    local = open_upstream(settings_for(str(tmp_path), retries=2))
    peer = open_peer(str(tmp_path), retries=2, timeout=5.0)
    http_peer = open_peer("http://peer.test", retries=2, timeout=5.0)
    try:
        assert isinstance(local, LocalFetcher)
        assert isinstance(peer, LocalFetcher)
        assert isinstance(http_peer, HttpFetcher)
        assert (http_peer.retry.attempts, http_peer.transfer_timeout) == (2, 5.0)
    finally:
        for fetcher in (local, peer, http_peer):
            await fetcher.aclose()


# -- stores and limits -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dest", "location", "options"),
    [
        ("/srv/mirror", "/srv/ledger", {}),
        (
            "/srv/mirror",
            "s3://ledger/log",
            {
                "endpoint_url": "http://127.0.0.1:9",
                "region": "eu-west-1",
                "addressing_style": None,
                "max_concurrency": 4,
            },
        ),
        (
            "s3://mirror",
            "s3://mirror",
            {
                "endpoint_url": "http://127.0.0.1:9",
                "region": "eu-west-1",
                "addressing_style": None,
                "storage_class": "STANDARD_IA",
                "max_concurrency": 4,
            },
        ),
        ("s3://mirror", "/srv/ledger", {}),
    ],
    ids=["directories", "ledger-in-s3", "s3-destination", "ledger-in-a-directory"],
)
def test_store_options_of_each_location(dest: str, location: str, options: object) -> None:
    """An s3:// location gets the --s3-* settings and --uploads (a ledger in its own
    bucket too, though the destination is a directory); a directory gets none."""
    settings = settings_for(
        dest=dest,
        s3_endpoint_url="http://127.0.0.1:9",
        s3_region="eu-west-1",
        s3_storage_class="STANDARD_IA",
        uploads=4,
    )
    assert store_options(settings, location) == options


async def test_destination_with_and_without_listing(tmp_path: Path) -> None:
    """Commands that copy targets get the destination behind a ListingStore; verify
    and prune get the store itself."""
    settings = settings_for(dest=str(tmp_path))
    listed, plain = open_destination(settings), open_destination(settings, listing=False)
    try:
        assert isinstance(listed, ListingStore)
        assert isinstance(listed.inner, LocalStore)
        assert isinstance(plain, LocalStore)
    finally:
        await listed.aclose()
        await plain.aclose()


def test_limits_from_settings() -> None:
    """--max-snapshot-size and --max-targets-size become the verification limits."""
    limits = limits_for(settings_for(max_snapshot_size=1000, max_targets_size=2000))
    assert (limits.max_snapshot_length, limits.max_targets_length) == (1000, 2000)


# -- the lease ---------------------------------------------------------------------------


def count_renewals(monkeypatch: pytest.MonkeyPatch) -> list[datetime]:
    """Record the expiry after each renewal of any lease."""
    expiries: list[datetime] = []
    real = DestinationLock.refresh

    async def refresh(self: DestinationLock, **kwargs: object) -> None:
        await real(self, **kwargs)  # type: ignore[arg-type]
        expiries.append(self.info.expires)

    monkeypatch.setattr(DestinationLock, "refresh", refresh)
    return expiries


@pytest.mark.parametrize(
    ("lease", "held", "renewals"),
    [(30.0, 35.0, 3), (30.0, 9.0, 0), (600.0, 3500.0, 17)],
    ids=["past-its-ttl", "shorter-than-a-third", "an-hour-long-export"],
)
async def test_a_held_lease_renews_every_third_of_its_length(
    monkeypatch: pytest.MonkeyPatch,
    autojump_clock: object,
    lease: float,
    held: float,
    renewals: int,
) -> None:
    """Whoever holds the lease renews it every third of --lock-lease for as long as
    it holds it, and releases it at the end."""
    expiries = count_renewals(monkeypatch)
    store = MemoryStore()  # no worker threads: the autojump clock stays exact
    async with hold_lease(store, settings_for(lock_lease=lease), RunReport("sync")) as lock:
        assert lock.ttl == timedelta(seconds=lease)
        await trio.sleep(held)
    assert len(expiries) == renewals
    assert expiries == sorted(expiries)
    assert await store.head(LOCK_KEY) is None


async def test_a_lost_lease_stops_the_holder(autojump_clock: object) -> None:
    """A lease broken by another run (its lock object replaced) is noticed at the
    next renewal: the holder's block is cancelled and LockHeldError (exit 4) comes
    out on its own, not inside an exception group; the other run's lock stays."""
    store = MemoryStore()
    finished = False
    foreign = LockInfo(
        owner="other",
        process=ProcessIdentity(host="elsewhere", pid=1),
        created=datetime.now(UTC),
        expires=datetime.now(UTC) + timedelta(hours=1),
        token="f" * 32,
    ).to_json()

    async def hold_and_lose() -> None:
        nonlocal finished
        async with hold_lease(store, settings_for(lock_lease=30.0), RunReport("sync")):
            await store.put_bytes(LOCK_KEY, foreign, PutOptions())
            await trio.sleep(60)
            finished = True

    with pytest.raises(LockHeldError, match="taken over by another run"):
        await hold_and_lose()
    assert not finished
    assert await store.get(LOCK_KEY, max_length=4096) == foreign


async def test_the_holders_own_error_comes_out_unchanged(autojump_clock: object) -> None:
    """An error raised by the block leaves ``hold_lease`` as itself (same object,
    same cause), and the lease is released."""
    store = MemoryStore()
    cause = OSError("disk on fire")
    error = StorageError("write failed")
    with pytest.raises(StorageError) as caught:
        async with hold_lease(store, settings_for(lock_lease=30.0), RunReport("sync")):
            raise error from cause
    assert caught.value is error
    assert caught.value.__cause__ is cause
    assert await store.head(LOCK_KEY) is None


async def test_a_live_lease_is_exit_4_with_the_lockout_time(autojump_clock: object) -> None:
    """A second holder of a live lease is refused (LockHeldError) and its report
    says how long the destination has been held."""
    store = MemoryStore()
    async with hold_lease(store, settings_for(lock_lease=30.0), RunReport("sync")):
        report = RunReport("prune")
        with pytest.raises(LockHeldError):
            async with hold_lease(store, settings_for(lock_lease=30.0), report):
                pass
        assert report.locked_out_seconds is not None


@pytest.mark.parametrize("lease", [0.0, -1.0], ids=["zero", "negative"])
async def test_a_lease_must_have_a_length(lease: float) -> None:
    """--lock-lease 0 is a usage error (exit 2), before any lock is taken."""
    store = MemoryStore()
    with pytest.raises(UsageError, match="--lock-lease must be positive"):
        async with hold_lease(store, settings_for(lock_lease=lease), RunReport("export")):
            pass
    assert await store.head(LOCK_KEY) is None
