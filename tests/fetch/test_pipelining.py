"""``HttpFetcher.fetch_many``: many small files with their GETs pipelined on one
HTTP/1.1 connection (``H1Connection.get_many``), best effort.

Against the scripted server on 127.0.0.1 (each request answered with exactly the
bytes a test gives): the requests go out together and the answers are read in
order; a file that does not come whole in a ``200`` is None, never an error, and a
connection that fails or closes leaves the files behind it None (the caller asks
for those one by one with ``fetch_bytes``). Counted: requests the server saw,
connections, the fetcher's counters; never time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from mirror.fetch import FailoverFetcher, LocalFetcher
from mirror.fetch.budget import TransferBudget
from mirror.fetch.http import PIPELINE_DEPTH, HttpFetcher
from mirror.fetch.ratelimit import BandwidthSchedule, TokenBucket
from mirror.fetch.transport import DirectConnection

from .conftest import Scripted, fetcher_for, ok

ITEMS = [(f"f{index}.bin", 100) for index in range(5)]


def body(index: int) -> bytes:
    return b"file %d" % index


def not_found() -> bytes:
    return b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found"


def chunked(data: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (
        len(data),
        data,
    )


@dataclass(frozen=True)
class Case:
    id: str
    #: the answer to the n-th request (None: hang up without answering)
    answers: Callable[[int], bytes | None]
    #: the bodies fetch_many gives, by item
    got: list[bytes | None]
    #: requests the server saw, and connections it accepted
    requests: int = 5
    connections: int = 1
    close_after: set[int] = field(default_factory=set)


CASES = [
    Case("all-answered", lambda n: ok(body(n)), [body(n) for n in range(5)]),
    Case(
        "chunked-200-is-whole",
        lambda n: chunked(body(n)),
        [body(n) for n in range(5)],
    ),
    Case(
        "404-and-503-are-none-and-the-pipeline-goes-on",
        lambda n: {1: not_found(), 2: b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n"}.get(
            n, ok(body(n))
        ),
        [body(0), None, None, body(3), body(4)],
    ),
    Case(
        "a-redirect-is-none-not-followed",
        lambda n: (
            b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n"
            if n == 0
            else ok(body(n))
        ),
        [None, body(1), body(2), body(3), body(4)],
    ),
    Case(
        "an-encoded-body-is-none",
        lambda n: ok(body(n), b"Content-Encoding: gzip") if n == 3 else ok(body(n)),
        [body(0), body(1), body(2), None, body(4)],
    ),
    Case(
        "server-closes-after-two-answers",
        lambda n: ok(body(n)),
        [body(0), body(1), None, None, None],
        requests=2,
        close_after={1},
    ),
    Case(
        "connection-close-answer-ends-the-batch",
        lambda n: ok(body(n), b"Connection: close") if n == 1 else ok(body(n)),
        [body(0), body(1), None, None, None],
    ),
    Case(
        "hang-up-in-the-middle-of-a-body",
        lambda n: b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort" if n == 2 else ok(body(n)),
        [body(0), body(1), None, None, None],
        requests=3,
        close_after={2},
    ),
    Case(
        "longer-than-its-limit-is-none",
        lambda n: ok(b"x" * 101) if n == 1 else ok(body(n)),
        [body(0), None, body(2), body(3), body(4)],
    ),
    Case(
        "far-longer-than-its-limit-is-none-and-ends-the-batch",
        lambda n: ok(b"x" * 1_000_000) if n == 1 else ok(body(n)),
        [body(0), None, None, None, None],
        requests=5,  # read by the server before it answered; never answered
    ),
    Case(
        "no-answer-at-all",
        lambda n: None,
        [None] * 5,
        requests=1,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_fetch_many_answers(case: Case, scripted: Callable[..., Scripted]) -> None:
    """Each item's bytes when its answer was a whole ``200`` of at most its limit,
    None otherwise; the requests went out together on one connection (the server
    held the later ones when it read the first), and every request sent and every
    byte read is counted."""
    server = scripted(lambda n, _: case.answers(n), close_after=case.close_after)
    fetcher = fetcher_for(server, max_connections=1)
    try:
        with trio.fail_after(10):
            got = await fetcher.fetch_many("targets", ITEMS)
    finally:
        await fetcher.aclose()
    assert got == case.got
    assert len(server.requests) <= case.requests
    assert len(server.requests) >= min(case.requests, 1)
    assert server.connections == case.connections
    assert server.held_after[0] > 0, "the requests were not pipelined"
    assert fetcher.stats.requests == len(ITEMS)
    assert fetcher.stats.bytes_received >= sum(len(data) for data in got if data is not None)
    assert [line.split(b"\r\n")[0] for line in server.requests] == [
        b"GET /targets/f%d.bin HTTP/1.1" % n for n in range(len(server.requests))
    ]


async def test_what_fetch_many_left_is_fetched_one_by_one(
    scripted: Callable[..., Scripted],
) -> None:
    """After the server closed the connection with three requests unanswered, the
    caller's ``fetch_bytes`` of those opens a new connection and gets them."""
    server = scripted(lambda n, _: ok(b"answer %d" % n), close_after={1})
    fetcher = fetcher_for(server, max_connections=1)
    try:
        got = await fetcher.fetch_many("targets", ITEMS)
        rest = [
            await fetcher.fetch_bytes("targets", name, max_length=100)
            for (name, _), data in zip(ITEMS, got, strict=True)
            if data is None
        ]
    finally:
        await fetcher.aclose()
    assert got[:2] == [b"answer 0", b"answer 1"]
    assert [each.data for each in rest if each is not None] == [
        b"answer 2",
        b"answer 3",
        b"answer 4",
    ]
    assert server.connections == 2
    assert fetcher.stats.requests == len(ITEMS) + 3


async def test_a_kept_connection_serves_the_next_batch(scripted: Callable[..., Scripted]) -> None:
    """A batch answered in full leaves its connection open for the next request."""
    server = scripted(lambda n, _: ok(b"n%d" % n))
    fetcher = fetcher_for(server, max_connections=1)
    try:
        first = await fetcher.fetch_many("targets", ITEMS[:3])
        second = await fetcher.fetch_bytes("metadata", "timestamp.json", max_length=100)
    finally:
        await fetcher.aclose()
    assert first == [b"n0", b"n1", b"n2"]
    assert second is not None
    assert second.data == b"n3"
    assert server.connections == 1


async def test_long_lists_go_in_batches_of_the_pipeline_depth(
    scripted: Callable[..., Scripted],
) -> None:
    """More items than ``PIPELINE_DEPTH``: every one answered, in batches, each
    batch's requests written together."""
    server = scripted(lambda n, _: ok(b"%d" % n))
    fetcher = fetcher_for(server, max_connections=1)
    items = [(f"t{index}", 10) for index in range(PIPELINE_DEPTH * 2 + 3)]
    try:
        got = await fetcher.fetch_many("targets", items)
    finally:
        await fetcher.aclose()
    assert got == [b"%d" % n for n in range(len(items))]
    assert server.connections == 1
    # The last request of a batch is read with nothing behind it.
    assert [n for n, held in enumerate(server.held_after) if held == 0] == [
        PIPELINE_DEPTH - 1,
        2 * PIPELINE_DEPTH - 1,
        len(items) - 1,
    ]


async def test_a_stalled_answer_ends_the_batch_at_the_read_timeout(
    scripted: Callable[..., Scripted],
) -> None:
    """A server that stops answering half-way: the batch ends after ``read_timeout``
    without an error, the answered files given, the others None."""
    server = scripted(lambda n, _: ok(body(n)) if n < 2 else b"")
    fetcher = fetcher_for(server, max_connections=1, read_timeout=0.2)
    try:
        with trio.fail_after(10):
            got = await fetcher.fetch_many("targets", ITEMS)
    finally:
        await fetcher.aclose()
    assert got == [body(0), body(1), None, None, None]


async def test_unsafe_names_are_not_asked(scripted: Callable[..., Scripted]) -> None:
    """A name that could escape its namespace is None without a request (the
    caller's ``fetch_bytes`` raises ``UnsafeNameError`` for it)."""
    server = scripted(lambda n, _: ok(b"x%d" % n))
    fetcher = fetcher_for(server, max_connections=1)
    try:
        got = await fetcher.fetch_many("targets", [("a", 9), ("../b", 9), ("c", 9)])
    finally:
        await fetcher.aclose()
    assert got == [b"x0", None, b"x1"]
    assert [line.split(b"\r\n")[0] for line in server.requests] == [
        b"GET /targets/a HTTP/1.1",
        b"GET /targets/c HTTP/1.1",
    ]


async def test_nothing_is_pipelined_where_bytes_are_paid_per_chunk(
    scripted: Callable[..., Scripted],
) -> None:
    """With a bandwidth cap, or inside a transfer budget's grant, every item is None
    and no request is made: ``fetch_bytes`` pays those per chunk."""
    server = scripted(lambda n, _: ok(b"x"))
    capped = fetcher_for(server, bandwidth=TokenBucket(BandwidthSchedule.parse("1M")))
    plain = fetcher_for(server)
    budget = TransferBudget(1000)
    try:
        assert await capped.fetch_many("targets", ITEMS) == [None] * 5
        with budget.transfer(10, resumable=False) as allowance:
            assert allowance is not None
            assert await plain.fetch_many("targets", ITEMS) == [None] * 5
    finally:
        await capped.aclose()
        await plain.aclose()
    assert server.requests == []


async def test_https_with_http2_does_not_pipeline() -> None:
    """On ``https://`` with HTTP/2 offered the connection multiplexes instead:
    ``get_many`` says no and sends nothing (it would have to connect to send)."""
    connection = DirectConnection(tls_context=_no_tls, http2=True, timeouts={})
    called: list[int] = []

    async def each(index: int, answer: object) -> None:
        called.append(index)

    assert not await connection.get_many(["https://127.0.0.1:9/targets/a"], [], each)
    assert called == []


def _no_tls() -> object:
    raise AssertionError("no TLS context is needed to say no")


async def test_failover_pipelines_from_its_current_upstream(
    scripted: Callable[..., Scripted], tmp_path: Path
) -> None:
    """``FailoverFetcher.fetch_many`` asks the upstream in service (counted as
    served by it); an upstream whose fetcher does not pipeline gives only None."""
    server = scripted(lambda n, _: ok(b"y%d" % n))
    http = fetcher_for(server)
    local_root = tmp_path / "local"
    (local_root / "targets").mkdir(parents=True)
    failover = FailoverFetcher([(server.url, http), ("local", LocalFetcher(local_root))])
    only_local = FailoverFetcher([("local", LocalFetcher(local_root))])
    try:
        got = await failover.fetch_many("targets", ITEMS[:2])
        assert await only_local.fetch_many("targets", ITEMS[:2]) == [None, None]
    finally:
        await failover.aclose()
    assert got == [b"y0", b"y1"]
    assert failover.stats.per_upstream[server.url].targets_served == 2
    assert failover.stats.requests == 2


def test_pipelining_is_one_fetcher_capability() -> None:
    """The HTTP fetcher and the failover wrapper pipeline; the local one does not."""
    from mirror.fetch import PipeliningFetcher

    assert isinstance(
        HttpFetcher("http://127.0.0.1:9/m", "http://127.0.0.1:9/t"), PipeliningFetcher
    )
    assert not isinstance(LocalFetcher(Path(".")), PipeliningFetcher)


async def test_a_trickling_body_ends_the_batch_at_the_throughput_deadline(
    tmp_path: Path,
) -> None:
    """Slow retrieval: a server that sends one pipelined body at a trickle (but
    never stalls long enough for the read timeout) is given what ``fetch_bytes``
    gives one file: ``transfer_timeout`` plus ``1 / min_throughput`` seconds per
    byte received, not per byte allowed. The batch ends then, the files behind the
    slow one None, without an error."""
    from tuf_mirror_testing.server import Fault, serve_directory

    (tmp_path / "targets").mkdir()
    for name in ("a", "slow", "c"):
        (tmp_path / "targets" / name).write_bytes(name.encode() * 1000)
    with serve_directory(tmp_path) as server:
        server.faults.add("/targets/slow", Fault.slow_body(50))
        fetcher = HttpFetcher(
            f"{server.url}/metadata/",
            f"{server.url}/targets/",
            transfer_timeout=0.3,
            min_throughput=10_000,
            read_timeout=5,
        )
        try:
            with trio.fail_after(10):  # a limit per byte allowed would be 300 s
                got = await fetcher.fetch_many(
                    "targets", [("a", 1_000_000), ("slow", 1_000_000), ("c", 1_000_000)]
                )
        finally:
            await fetcher.aclose()
    assert got == [b"a" * 1000, None, None]


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(
            b"HTTP/1.1 302 Found\r\nLocation: /cdn/x\r\nContent-Length: 0\r\n\r\n",
            id="every-file-redirected",
        ),
        pytest.param(
            b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", id="http-1.0-one-per-connection"
        ),
    ],
)
async def test_an_upstream_where_pipelining_does_not_pay_is_asked_one_by_one(
    answer: bytes, scripted: Callable[..., Scripted]
) -> None:
    """After ``USELESS_BATCHES`` batches in a row that brought less than half their
    files (a redirect for each, or one answer per connection), the fetcher stops
    pipelining: later calls give None at once, without a request."""
    from mirror.fetch.http import USELESS_BATCHES

    server = scripted(lambda n, _: answer)
    fetcher = fetcher_for(server, max_connections=1)
    items = [(f"f{index}", 10) for index in range(4)]
    try:
        for _ in range(USELESS_BATCHES):
            assert (await fetcher.fetch_many("targets", items)).count(None) >= 3
        seen = len(server.requests)
        assert await fetcher.fetch_many("targets", items) == [None] * 4
    finally:
        await fetcher.aclose()
    assert len(server.requests) == seen


async def test_a_good_batch_resets_the_count_of_useless_ones(
    scripted: Callable[..., Scripted],
) -> None:
    """Batches that bring most of their files keep pipelining on, also between
    ones that did not (a passing outage is not a verdict on the upstream)."""
    from mirror.fetch.http import USELESS_BATCHES

    def script(n: int, _: bytes) -> bytes:
        return ok(b"x") if n // 4 % 2 else not_found()

    server = scripted(script)
    fetcher = fetcher_for(server, max_connections=1)
    items = [(f"f{index}", 10) for index in range(4)]
    try:
        for _ in range(2 * USELESS_BATCHES):
            await fetcher.fetch_many("targets", items)
    finally:
        await fetcher.aclose()
    assert len(server.requests) == 4 * 2 * USELESS_BATCHES
