"""The HTTP/1.1 client (``mirror.fetch.h1``) through ``HttpFetcher``, against a
scripted server on 127.0.0.1 that answers each request with exactly the bytes a
test gives: framings (chunked, close-delimited, interim answers), keep-alive and
its limits, and malformed answers, which are transient ``FetchError``s."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest
import trio

from mirror.errors import FetchError, OversizeError
from mirror.fetch.retry import RetryPolicy

from .conftest import Scripted, fetcher_for, ok


async def test_keep_alive_reuses_one_connection(scripted: Callable[..., Scripted]) -> None:
    """Complete answers with Content-Length leave the connection open: three
    fetches, one connection, the request line and Host header as sent."""
    server = scripted(lambda n, _: ok(b"body %d" % n))
    fetcher = fetcher_for(server, max_connections=1)
    try:
        got = [await fetcher.fetch_bytes("metadata", "a.json", max_length=100) for _ in range(3)]
    finally:
        await fetcher.aclose()
    assert [g.data for g in got if g is not None] == [b"body 0", b"body 1", b"body 2"]
    assert server.connections == 1
    first = server.requests[0].split(b"\r\n")
    assert first[0] == b"GET /metadata/a.json HTTP/1.1"
    assert first[1] == b"Host: " + server.url.removeprefix("http://").encode()


async def test_chunked_body_with_extensions_and_trailers(
    scripted: Callable[..., Scripted],
) -> None:
    """A chunked body is de-chunked (extensions ignored, trailers dropped) and the
    connection is reused afterwards."""
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: 1\r\n\r\n"
    )
    server = scripted(lambda n, _: chunked if n == 0 else ok(b"next"))
    fetcher = fetcher_for(server, max_connections=1)
    try:
        first = await fetcher.fetch_bytes("metadata", "a.json", max_length=100)
        second = await fetcher.fetch_bytes("metadata", "b.json", max_length=100)
    finally:
        await fetcher.aclose()
    assert first is not None
    assert first.data == b"hello world"
    assert second is not None
    assert second.data == b"next"
    assert server.connections == 1


async def test_body_until_close_and_connection_close(scripted: Callable[..., Scripted]) -> None:
    """Without Content-Length the body runs until the server closes; an answer with
    ``Connection: close`` is not followed by a reuse: two fetches, two connections,
    no retry."""
    server = scripted(
        lambda n, _: (
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it"
            if n == 0
            else ok(b"x", b"Connection: close")
        ),
        close_after={0, 1},
    )
    fetcher = fetcher_for(server, max_connections=1)
    try:
        first = await fetcher.fetch_bytes("metadata", "a.json", max_length=100)
        second = await fetcher.fetch_bytes("metadata", "b.json", max_length=100)
    finally:
        await fetcher.aclose()
    assert first is not None
    assert first.data == b"all of it"
    assert second is not None
    assert second.data == b"x"
    assert (server.connections, fetcher.stats.retries) == (2, 0)


async def test_endless_body_until_close_is_cut_at_the_cap(
    scripted: Callable[..., Scripted],
) -> None:
    """A close-delimited body longer than allowed is OversizeError (never retried):
    the length cap holds without Content-Length."""
    server = scripted(lambda n, _: b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 5000, close_after={0})
    fetcher = fetcher_for(server)
    try:
        with pytest.raises(OversizeError, match="more than 100 bytes"):
            await fetcher.fetch_bytes("metadata", "a.json", max_length=100)
    finally:
        await fetcher.aclose()
    assert len(server.requests) == 1


async def test_interim_answers_are_skipped(scripted: Callable[..., Scripted]) -> None:
    """1xx answers (100 Continue, 103 Early Hints) before the final one are read
    past."""
    server = scripted(
        lambda n, _: (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
            + ok(b"final")
        )
    )
    fetcher = fetcher_for(server)
    try:
        got = await fetcher.fetch_bytes("metadata", "a.json", max_length=100)
    finally:
        await fetcher.aclose()
    assert got is not None
    assert got.data == b"final"


async def test_idle_connection_closed_by_server_is_replaced(
    scripted: Callable[..., Scripted],
) -> None:
    """A kept-alive connection the server closed while idle is replaced before the
    next request: no failed request, no retry."""
    server = scripted(lambda n, _: ok(b"body"), close_after={0})
    fetcher = fetcher_for(server, max_connections=1)
    try:
        await fetcher.fetch_bytes("metadata", "a.json", max_length=100)
        # The server hangs up after answering (over loopback its FIN has arrived
        # once its close returned).
        assert await trio.to_thread.run_sync(server.hung_up.wait, 10)
        await fetcher.fetch_bytes("metadata", "b.json", max_length=100)
    finally:
        await fetcher.aclose()
    assert len(server.requests) == 2
    assert server.connections == 2
    assert fetcher.stats.requests == 2


async def test_trailing_bytes_after_a_body_end_reuse(scripted: Callable[..., Scripted]) -> None:
    """Bytes after a complete Content-Length body are not taken for the next answer:
    the connection is dropped and the next request gets a fresh one."""
    server = scripted(
        lambda n, _: ok(b"body") + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nforge"
    )
    fetcher = fetcher_for(server, max_connections=1)
    try:
        first = await fetcher.fetch_bytes("metadata", "a.json", max_length=100)
        second = await fetcher.fetch_bytes("metadata", "b.json", max_length=100)
    finally:
        await fetcher.aclose()
    assert first is not None
    assert second is not None
    assert (first.data, second.data) == (b"body", b"body")
    assert server.connections == 2


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", "conflicting"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\nabc", "malformed Content-Length"),
        (b"SPDY/9 200 OK\r\n\r\n", "malformed status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header line"),
        (b"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n", "malformed header line"),
        (b"HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n", "malformed header value"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 200_000 + b"\r\n\r\n", "too large"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n", "CRLF"),
        (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "Switching Protocols"),
    ],
)
async def test_malformed_answers_are_transient_fetch_errors(
    scripted: Callable[..., Scripted], answer: bytes, message: str
) -> None:
    """A malformed answer is RemoteProtocolError: retried (three attempts), then a
    FetchError naming it; nothing of it is returned."""
    server = scripted(lambda n, _: answer, close_after={0, 1, 2})
    fetcher = fetcher_for(server)
    try:
        with pytest.raises(FetchError, match=f"RemoteProtocolError: .*{message}.*3 attempts"):
            await fetcher.fetch_bytes("metadata", "a.json", max_length=100)
    finally:
        await fetcher.aclose()
    assert len(server.requests) == 3


async def test_body_cut_short_is_retried_then_whole(scripted: Callable[..., Scripted]) -> None:
    """A Content-Length body cut by the connection closing is retried; the retry
    gets the whole body (one retry counted)."""
    server = scripted(
        lambda n, _: ok(b"0123456789")[:-5] if n == 0 else ok(b"0123456789"), close_after={0}
    )
    fetcher = fetcher_for(server)
    try:
        got = await fetcher.fetch_bytes("metadata", "a.json", max_length=100)
    finally:
        await fetcher.aclose()
    assert got is not None
    assert got.data == b"0123456789"
    assert fetcher.stats.retries == 1


async def test_header_value_with_newline_is_refused_before_sending(
    scripted: Callable[..., Scripted],
) -> None:
    """An outgoing header value holding CR or LF (an ETag from a hostile answer, as
    If-None-Match) is LocalProtocolError: a FetchError, no request sent, no retry."""
    server = scripted(lambda n, _: ok(b"x"))
    fetcher = fetcher_for(server, retry=RetryPolicy(attempts=3, initial=0, jitter=False))
    try:
        with pytest.raises(FetchError, match="LocalProtocolError"):
            await fetcher.fetch_bytes(
                "metadata", "a.json", max_length=100, if_none_match='"a"\r\nX-Evil: 1'
            )
    finally:
        await fetcher.aclose()
    assert server.requests == []


async def test_repeated_headers_are_joined(scripted: Callable[..., Scripted]) -> None:
    """A header sent twice reads as both values joined with ", " (as httpx did)."""
    server = scripted(lambda n, _: ok(b"x", b'ETag: "a"', b'etag: "b"'))
    fetcher = fetcher_for(server)
    try:
        got = await fetcher.fetch_bytes("metadata", "a.json", max_length=100)
    finally:
        await fetcher.aclose()
    assert got is not None
    assert got.etag == '"a", "b"'


async def test_no_answer_is_a_read_timeout(scripted: Callable[..., Scripted]) -> None:
    """A server that takes the request and never answers fails each attempt after
    ``read_timeout`` (ReadTimeout, retried), also without a transfer deadline."""
    server = scripted(lambda n, _: b"")
    fetcher = fetcher_for(server, transfer_timeout=None, read_timeout=0.2)
    try:
        with pytest.raises(FetchError, match=r"ReadTimeout.*3 attempts"):
            await fetcher.fetch_bytes("metadata", "a.json", max_length=100)
    finally:
        await fetcher.aclose()
    assert len(server.requests) == 3


async def test_a_stalled_body_is_a_read_timeout(scripted: Callable[..., Scripted]) -> None:
    """A body that stops coming after the head fails after ``read_timeout`` too."""
    server = scripted(lambda n, _: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    fetcher = fetcher_for(server, transfer_timeout=None, read_timeout=0.2)
    try:
        with pytest.raises(FetchError, match=r"ReadTimeout.*3 attempts"):
            await fetcher.fetch_bytes("metadata", "a.json", max_length=100)
    finally:
        await fetcher.aclose()
    assert len(server.requests) == 3


def test_http1_fetches_import_neither_httpx_nor_httpcore() -> None:
    """A sync, its workers and an HTTP/1.1 fetch import neither httpx nor httpcore
    (their import costs a few hundred milliseconds per process start)."""
    code = """
import socket, sys, threading, trio
import mirror.cli, mirror.sync, mirror.workers
from mirror.fetch.http import HttpFetcher

server = socket.create_server(("127.0.0.1", 0))
def answer():
    conn, _ = server.accept()
    conn.recv(65536)
    conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")
threading.Thread(target=answer, daemon=True).start()
base = "http://127.0.0.1:%d" % server.getsockname()[1]

async def main():
    fetcher = HttpFetcher(base + "/metadata", base + "/targets")
    got = await fetcher.fetch_bytes("metadata", "a.json", max_length=10)
    await fetcher.aclose()
    assert got is not None and got.data == b"ok", got

trio.run(main)
loaded = sorted(name for name in ("httpx", "httpcore", "h11", "h2") if name in sys.modules)
assert not loaded, loaded
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
