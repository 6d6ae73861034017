"""HttpFetcher with httpx.MockTransport, for what the real server cannot produce on
demand (a Retry-After date, httpx-level exceptions, redirect loops) and for timing
checks in virtual time (autojump_clock: no wall-clock waits).

Timing tests use fetch_bytes: fetch_to_file writes in worker threads, and while a
thread runs the autojump clock would jump straight to the transfer deadline.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
import trio

from mirror.errors import FetchError, NotFoundError
from mirror.fetch.http import HttpFetcher
from mirror.fetch.retry import RetryPolicy

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]
BASE = "https://upstream.test/repo"


class PacedStream(httpx.AsyncByteStream):
    """``total`` bytes in ``chunk``-byte pieces, one piece every ``interval`` seconds
    of trio time."""

    def __init__(
        self,
        total: int,
        chunk: int,
        interval: float,
        *,
        on_chunk: Callable[[bytes], None] | None = None,
    ) -> None:
        self.total, self.chunk, self.interval = total, chunk, interval
        self.on_chunk = on_chunk
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        sent = 0
        while sent < self.total and not self.closed:
            await trio.sleep(self.interval)
            piece = b"x" * min(self.chunk, self.total - sent)
            sent += len(piece)
            if self.on_chunk is not None:
                self.on_chunk(piece)
            yield piece

    async def aclose(self) -> None:
        self.closed = True


def make_fetcher(handler: Handler, **options: object) -> tuple[HttpFetcher, list[httpx.Request]]:
    """A fetcher on a MockTransport; the list collects the requests it sends."""
    seen: list[httpx.Request] = []

    async def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return await handler(request)

    transport = httpx.MockTransport(record)
    options.setdefault("retry", RetryPolicy(attempts=3, initial=1.0, jitter=False))
    fetcher = HttpFetcher(BASE + "/metadata", BASE + "/targets", transport=transport, **options)  # type: ignore[arg-type]
    return fetcher, seen


def sequence(*responses: httpx.Response | Exception) -> Handler:
    """A handler answering each request with the next item (the last one repeats)."""
    items = list(responses)

    async def handler(request: httpx.Request) -> httpx.Response:
        item = items.pop(0) if len(items) > 1 else items[0]
        if isinstance(item, Exception):
            raise item
        return item

    return handler


async def test_backoff_sleeps_in_trio_time(autojump_clock: trio.abc.Clock) -> None:
    """Retries wait initial * 2**n seconds of trio time (1 s, then 2 s)."""
    fetcher, seen = make_fetcher(
        sequence(httpx.Response(500), httpx.Response(500), httpx.Response(200, content=b"ok"))
    )
    start = trio.current_time()

    fetched = await fetcher.fetch_bytes("metadata", "timestamp.json", max_length=10)

    assert fetched is not None
    assert fetched.data == b"ok"
    assert trio.current_time() - start == pytest.approx(3.0)
    assert len(seen) == 3


async def test_retry_after_http_date(autojump_clock: trio.abc.Clock) -> None:
    """Retry-After given as an HTTP date is honoured (about 20 s here)."""
    when = email.utils.formatdate(time.time() + 20, usegmt=True)
    fetcher, seen = make_fetcher(
        sequence(
            httpx.Response(503, headers={"Retry-After": when}),
            httpx.Response(200, content=b"ok"),
        )
    )
    start = trio.current_time()

    await fetcher.fetch_bytes("metadata", "timestamp.json", max_length=10)

    assert 18 <= trio.current_time() - start <= 20
    assert len(seen) == 2


async def test_retry_after_is_capped(autojump_clock: trio.abc.Clock) -> None:
    """A Retry-After beyond max_retry_after waits only max_retry_after."""
    fetcher, _ = make_fetcher(
        sequence(
            httpx.Response(429, headers={"Retry-After": "86400"}),
            httpx.Response(200, content=b"ok"),
        ),
        retry=RetryPolicy(attempts=2, max_retry_after=45.0, jitter=False),
    )
    start = trio.current_time()

    await fetcher.fetch_bytes("metadata", "timestamp.json", max_length=10)

    assert trio.current_time() - start == pytest.approx(45.0)


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("read timed out"),
        httpx.RemoteProtocolError("peer closed connection"),
    ],
)
async def test_transport_errors_are_retried_then_translated(
    autojump_clock: trio.abc.Clock, exc: Exception
) -> None:
    """Connection errors and httpx timeouts are retried; after the last attempt they
    become one FetchError (with the httpx error as its cause) - nothing from httpx
    escapes."""
    fetcher, seen = make_fetcher(sequence(exc))

    with pytest.raises(FetchError, match=f"{type(exc).__name__}.*3 attempts") as excinfo:
        await fetcher.fetch_bytes("metadata", "timestamp.json", max_length=10)

    assert len(seen) == 3
    assert fetcher.stats.retries == 2
    assert isinstance(excinfo.value.__cause__, FetchError)
    assert excinfo.value.__cause__.__cause__ is exc


async def test_local_protocol_errors_are_not_retried() -> None:
    """A request httpx refuses to send is a FetchError without retries."""
    fetcher, seen = make_fetcher(sequence(httpx.LocalProtocolError("bad header")))

    with pytest.raises(FetchError, match="LocalProtocolError"):
        await fetcher.fetch_bytes("metadata", "timestamp.json", max_length=10)

    assert len(seen) == 1


async def test_redirects_are_followed_and_loops_refused() -> None:
    """A redirect is followed; a redirect loop is a FetchError, not an httpx error."""

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/moved.json"):
            return httpx.Response(302, headers={"Location": BASE + "/metadata/here.json"})
        if request.url.path.endswith("/here.json"):
            return httpx.Response(200, content=b"here")
        return httpx.Response(302, headers={"Location": str(request.url)})

    fetcher, _ = make_fetcher(handler)

    fetched = await fetcher.fetch_bytes("metadata", "moved.json", max_length=10)
    assert fetched is not None
    assert fetched.data == b"here"
    with pytest.raises(FetchError, match="redirects"):
        await fetcher.fetch_bytes("metadata", "loop.json", max_length=10)


async def test_gone_is_not_found() -> None:
    """410 Gone is NotFoundError, like 404."""
    fetcher, seen = make_fetcher(sequence(httpx.Response(410)))

    with pytest.raises(NotFoundError):
        await fetcher.fetch_bytes("metadata", "2.root.json", max_length=10)
    assert len(seen) == 1


async def test_304_without_a_condition_is_an_error() -> None:
    """A 304 to an unconditional request is a FetchError, never an empty success."""
    fetcher, _ = make_fetcher(sequence(httpx.Response(304)))

    with pytest.raises(FetchError, match="304"):
        await fetcher.fetch_bytes("metadata", "timestamp.json", max_length=10)


async def test_throughput_guard_cuts_a_trickle(autojump_clock: trio.abc.Clock) -> None:
    """1 000 B/s against min_throughput 10 000 B/s and 5 s of slack: the transfer is
    cut after about 5.6 s (not at some fixed total deadline)."""

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=PacedStream(10**6, 1000, 1.0))

    fetcher, _ = make_fetcher(
        handler,
        transfer_timeout=5.0,
        min_throughput=10_000,
        retry=RetryPolicy(attempts=1),
    )
    start = trio.current_time()

    with pytest.raises(FetchError, match="too slow"):
        await fetcher.fetch_bytes("targets", "big.bin", max_length=10**6)

    assert 5.0 < trio.current_time() - start < 6.5


async def test_throughput_guard_lets_a_long_steady_transfer_finish(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A large download at a steady 100 kB/s takes 30 s, far beyond the 5 s slack,
    and still succeeds: every byte received extends the deadline."""

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=PacedStream(3_000_000, 10_000, 0.1))

    fetcher, _ = make_fetcher(handler, transfer_timeout=5.0, min_throughput=10_000)
    start = trio.current_time()

    fetched = await fetcher.fetch_bytes("targets", "big.bin", max_length=3_000_000)

    assert fetched is not None
    assert len(fetched.data) == 3_000_000
    assert trio.current_time() - start == pytest.approx(30.0)


async def test_fixed_deadline_without_throughput_guard(autojump_clock: trio.abc.Clock) -> None:
    """With min_throughput=None, transfer_timeout is a fixed deadline per attempt."""

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=PacedStream(3_000_000, 10_000, 0.1))

    fetcher, _ = make_fetcher(
        handler, transfer_timeout=5.0, min_throughput=None, retry=RetryPolicy(attempts=1)
    )
    start = trio.current_time()

    with pytest.raises(FetchError, match="too slow"):
        await fetcher.fetch_bytes("targets", "big.bin", max_length=3_000_000)

    assert trio.current_time() - start == pytest.approx(5.0)


async def test_cancellation_removes_the_partial_file(tmp_path: Path) -> None:
    """A download cancelled from outside, mid-body, leaves no spool file behind."""
    scope = trio.CancelScope()
    chunks = 0

    def count(piece: bytes) -> None:
        nonlocal chunks
        chunks += 1
        if chunks == 50:
            scope.cancel()

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=PacedStream(10**6, 1000, 0, on_chunk=count))

    fetcher, _ = make_fetcher(handler)

    with scope:
        await fetcher.fetch_to_file(
            "targets", "big.bin", tmp_path / "spool", length=10**6, algorithms=()
        )

    assert scope.cancelled_caught
    assert 50 <= chunks < 1000
    assert fetcher.stats.bytes_received >= 50_000
    assert not (tmp_path / "spool").exists()
