"""The bandwidth cap: --bwlimit parsing (rates, timetables), the token bucket's
bound measured by counting admitted bytes on trio's autojump clock, and the bucket
applied to every body chunk of HttpFetcher downloads."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
import trio

from mirror.errors import UsageError
from mirror.fetch import open_fetcher
from mirror.fetch.failover import FailoverFetcher
from mirror.fetch.http import HttpFetcher
from mirror.fetch.ratelimit import BandwidthSchedule, TokenBucket, burst_for
from tuf_mirror_testing.server import RepoServer, serve_directory

from .conftest import FAST_RETRY, TARGET, TIMESTAMP
from .test_http_mock_transport import PacedStream, make_fetcher

K = 1024
M = 1024 * 1024


# -- parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "entries"),
    [
        ("10M", ((0, 10 * M),)),
        ("512K", ((0, 512 * K),)),
        ("1.5M", ((0, int(1.5 * M)),)),
        ("2G", ((0, 2 * 1024 * M),)),
        ("1000", ((0, 1000),)),
        ("off", ((0, None),)),
        ("08:00,512K 19:00,10M", ((8 * 60, 512 * K), (19 * 60, 10 * M))),
        ("19:00,10M 08:00,512K", ((8 * 60, 512 * K), (19 * 60, 10 * M))),
        ("  8:30,1M   23:59,off ", ((8 * 60 + 30, M), (23 * 60 + 59, None))),
        ("00:00,off", ((0, None),)),
    ],
)
def test_parse(text: str, entries: tuple[tuple[int, int | None], ...]) -> None:
    """Rates are bytes per second with binary suffixes; a timetable is HH:MM,RATE
    entries in any order, kept sorted by time of day; off is no cap."""
    assert BandwidthSchedule.parse(text).entries == entries


@pytest.mark.parametrize(
    "text",
    [
        "",
        "fast",
        "10Mbit",
        "0",
        "-1M",
        "08:00",
        "08:00,",
        "08:00,fast",
        "24:00,1M",
        "08:60,1M",
        "8h,1M",
        "08:00,1M 08:00,2M",
        "08:00,0",
    ],
)
def test_parse_errors(text: str) -> None:
    """Anything else is a UsageError (bad rate, bad time, a time named twice, zero)."""
    with pytest.raises(UsageError):
        BandwidthSchedule.parse(text)


def test_rate_error_says_bytes_not_bits() -> None:
    """The message of a bad rate reminds that rates are bytes, not bits."""
    with pytest.raises(UsageError, match="bytes per second, not bits"):
        BandwidthSchedule.parse("10Mbps")


@pytest.mark.parametrize(
    ("clock", "rate"),
    [
        ("00:00", None),  # before the first entry: the day's last one (wraps)
        ("07:59", None),
        ("08:00", 512 * K),
        ("12:34", 512 * K),
        ("18:59", 512 * K),
        ("19:00", 10 * M),
        ("22:59", 10 * M),
        ("23:00", None),
        ("23:59", None),
    ],
)
def test_entry_in_force_wraps_around_midnight(clock: str, rate: int | None) -> None:
    """The entry in force is the last one whose time has passed, the previous day's
    last entry before the first one."""
    schedule = BandwidthSchedule.parse("08:00,512K 19:00,10M 23:00,off")
    hour, minute = map(int, clock.split(":"))

    assert schedule.rate_at(datetime(2024, 5, 1, hour, minute, 30)) == rate


def test_text_round_trip() -> None:
    """str() gives back a parseable, canonical form."""
    for text in ("10M", "off", "1000", "08:00,512K 19:00,10M 23:00,off"):
        schedule = BandwidthSchedule.parse(text)
        assert str(schedule) == text
        assert BandwidthSchedule.parse(str(schedule)) == schedule
    assert BandwidthSchedule.parse("off").unlimited
    assert not BandwidthSchedule.parse("00:00,off 12:00,1M").unlimited


# -- the bucket --------------------------------------------------------------------------


def check_bound(log: list[tuple[float, int]], rate: int, burst: int) -> None:
    """Over every interval [t_i, t_j] between admissions, the bytes admitted in it
    are at most rate * (t_j - t_i) + burst."""
    times = [t for t, _ in log]
    prefix = [0]
    for _, count in log:
        prefix.append(prefix[-1] + count)
    for i in range(len(log)):
        for j in range(i, len(log)):
            admitted = prefix[j + 1] - prefix[i]
            assert admitted <= rate * (times[j] - times[i]) + burst + 1, (i, j)


async def test_bucket_bound_over_any_interval(autojump_clock: trio.abc.Clock) -> None:
    """Five consumers taking random amounts (up to the burst) concurrently: over any
    interval the bucket admits at most rate x time + burst, over the whole run at most
    rate x elapsed (it starts empty), and a busy bucket keeps up with its rate."""
    rate = 100_000
    bucket = TokenBucket(rate)
    burst = burst_for(rate)
    rng = random.Random(7)
    log: list[tuple[float, int]] = []

    async def consumer(sizes: list[int]) -> None:
        for size in sizes:
            await bucket.take(size)
            log.append((trio.current_time(), size))

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(consumer, [rng.randint(1, burst) for _ in range(40)])
    elapsed = trio.current_time() - start

    total = sum(size for _, size in log)
    assert bucket.admitted == total
    assert total <= rate * elapsed + 1
    assert total >= rate * elapsed * 0.99
    check_bound(log, rate, burst)


async def test_large_takes_are_paced_in_bursts(autojump_clock: trio.abc.Clock) -> None:
    """A take far above the burst is admitted piece by piece: it ends after
    count / rate seconds, and a small take queued behind it waits its turn (first
    come, first served)."""
    rate = 50_000
    bucket = TokenBucket(rate)
    finished: dict[str, float] = {}

    async def take(label: str, count: int) -> None:
        await bucket.take(count)
        finished[label] = trio.current_time()

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(take, "big", 20 * burst_for(rate))
        await trio.sleep(0.01)
        nursery.start_soon(take, "small", 100)

    assert finished["big"] - start == pytest.approx(20 * burst_for(rate) / rate, rel=1e-3)
    assert finished["small"] > finished["big"]


async def test_no_cap_admits_at_once(autojump_clock: trio.abc.Clock) -> None:
    """An 'off' bucket never sleeps but still counts."""
    bucket = TokenBucket(BandwidthSchedule.parse("off"))
    start = trio.current_time()

    await bucket.take(10 * M)

    assert trio.current_time() == start
    assert bucket.admitted == 10 * M


async def test_cancelled_take_takes_nothing(autojump_clock: trio.abc.Clock) -> None:
    """A take cancelled while it waits admits nothing; the next one is not delayed
    by it beyond its own cost."""
    rate = 10_000
    bucket = TokenBucket(rate)
    with trio.move_on_after(0.1):
        await bucket.take(burst_for(rate))
    assert bucket.admitted == 0

    start = trio.current_time()
    await bucket.take(burst_for(rate))

    # The 0.1 s already waited accrued tokens, so this one needs less than a full wait.
    assert trio.current_time() - start <= burst_for(rate) / rate
    assert bucket.admitted == burst_for(rate)


async def test_timetable_changes_the_rate(autojump_clock: trio.abc.Clock) -> None:
    """With '08:00,10K 08:02,off', starting at 07:59: no cap (the day's last entry),
    then 10 KiB/s from 08:00 (30 KiB take 3 s), then no cap again from 08:02."""
    t0 = trio.current_time()
    base = datetime(2024, 5, 1, 7, 59, 0)
    bucket = TokenBucket(
        BandwidthSchedule.parse("08:00,10K 08:02,off"),
        wall=lambda: base + timedelta(seconds=trio.current_time() - t0),
    )

    await bucket.take(5 * M)
    assert trio.current_time() == t0
    assert bucket.rate is None

    await trio.sleep(60)  # 08:00
    start = trio.current_time()
    await bucket.take(30 * K)
    assert trio.current_time() - start == pytest.approx(3.0, rel=1e-3)
    assert bucket.rate == 10 * K

    await trio.sleep(120)  # 08:02:03
    start = trio.current_time()
    await bucket.take(5 * M)
    assert trio.current_time() == start
    assert bucket.rate is None


async def test_rate_change_takes_effect_while_waiting(autojump_clock: trio.abc.Clock) -> None:
    """A waiter that began under a high rate is paced by the lower rate once it is in
    force: over a long take, the achieved rate follows the timetable."""
    t0 = trio.current_time()
    base = datetime(2024, 5, 1, 7, 59, 50)
    bucket = TokenBucket(
        BandwidthSchedule.parse("00:00,40K 08:00,4K"),
        wall=lambda: base + timedelta(seconds=trio.current_time() - t0),
    )

    # 10 s at 40 KiB/s, then the rest at 4 KiB/s.
    await bucket.take(400 * K + 40 * K)

    assert trio.current_time() - t0 == pytest.approx(20.0, rel=0.02)


# -- applied to downloads -------------------------------------------------------------


async def test_concurrent_downloads_share_one_cap(autojump_clock: trio.abc.Clock) -> None:
    """Four concurrent downloads from a server that sends as fast as asked: together
    they take total / rate seconds (within 2 %), whatever their share."""
    rate = 100_000
    size = 200_000

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=PacedStream(size, 16_384, 0.0))

    fetcher, _ = make_fetcher(handler, bandwidth=TokenBucket(rate))
    start = trio.current_time()

    async with trio.open_nursery() as nursery:
        for index in range(4):
            nursery.start_soon(
                lambda i=index: fetcher.fetch_bytes("targets", f"f{i}", max_length=size)
            )

    elapsed = trio.current_time() - start
    assert fetcher.stats.bytes_received == 4 * size
    assert elapsed == pytest.approx(4 * size / rate, rel=0.02)


async def test_waiting_for_the_cap_is_not_slow_retrieval(autojump_clock: trio.abc.Clock) -> None:
    """A download held at 500 B/s by our own cap finishes, although the throughput
    guard (1024 B/s after 5 s) would cut a server that slow: time spent waiting for
    the bucket does not count against the deadline."""
    size = 20_000

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=PacedStream(size, 1000, 0.0))

    fetcher, seen = make_fetcher(
        handler, bandwidth=TokenBucket(500), transfer_timeout=5.0, min_throughput=1024
    )
    start = trio.current_time()

    fetched = await fetcher.fetch_bytes("targets", "slow.bin", max_length=size)

    assert fetched is not None
    assert len(fetched.data) == size
    assert len(seen) == 1
    assert trio.current_time() - start == pytest.approx(size / 500, rel=0.02)


@pytest.fixture
async def capped(server: RepoServer) -> AsyncIterator[tuple[HttpFetcher, TokenBucket]]:
    bucket = TokenBucket(1 << 30)
    fetcher = HttpFetcher(
        server.url + "/metadata", server.url + "/targets", retry=FAST_RETRY, bandwidth=bucket
    )
    try:
        yield fetcher, bucket
    finally:
        await fetcher.aclose()


async def test_every_body_byte_is_paid_for(
    capped: tuple[HttpFetcher, TokenBucket], tmp_path: Path
) -> None:
    """Metadata (in memory) and targets (to a file) both pay the bucket for every
    byte received, and for nothing else."""
    fetcher, bucket = capped

    await fetcher.fetch_bytes("metadata", "timestamp.json", max_length=1000)
    await fetcher.fetch_to_file(
        "targets", "dir/file.bin", tmp_path / "spool", length=len(TARGET), algorithms=()
    )

    assert bucket.admitted == len(TIMESTAMP) + len(TARGET) == fetcher.stats.bytes_received


async def test_several_upstreams_share_the_bucket(upstream: Path, tmp_path: Path) -> None:
    """open_fetcher gives every HTTP upstream of a FailoverFetcher the same bucket."""
    bucket = TokenBucket(1 << 30)
    with serve_directory(upstream) as first, serve_directory(upstream) as second:
        fetcher = open_fetcher([first.url, second.url], bandwidth=bucket, retry=FAST_RETRY)
        try:
            assert isinstance(fetcher, FailoverFetcher)
            children = list(fetcher.fetchers.values())
            assert all(isinstance(c, HttpFetcher) and c.bandwidth is bucket for c in children)
            direct = children[1]
            await fetcher.fetch_bytes("metadata", "timestamp.json", max_length=1000)
            await direct.fetch_bytes("metadata", "timestamp.json", max_length=1000)
        finally:
            await fetcher.aclose()

    assert bucket.admitted == 2 * len(TIMESTAMP)
