"""``HttpFetcher``: the ``Fetcher`` for HTTP(S) upstreams, under trio (connections:
``mirror.fetch.transport``).

A ``StreamFetcher`` (``mirror.fetch.template``): the template streams each body
with the hard length cap (more bytes than allowed is ``OversizeError``, raised
without reading further; a ``Content-Length`` above the cap is refused before the
body), hashes on the fly when writing to a spool file (``mirror.fetch.spool``) and
counts requests and bytes; this module opens the streams. Each request runs under
a deadline owned by this fetcher:

- ``transfer_timeout`` seconds per attempt, plus, when ``min_throughput`` is set,
  ``1 / min_throughput`` seconds for every byte received. A transfer therefore fails
  once its average speed after the first ``transfer_timeout`` seconds falls below
  ``min_throughput`` bytes/s, however large it is (slow-retrieval attack), and a
  server that sends nothing fails after ``transfer_timeout`` seconds;
- ``connect_timeout`` and ``read_timeout`` (no byte for that long), per connection.

Transient failures (connection errors, resets, timeouts, a body cut short by the
connection closing, HTTP 408, 429 and 5xx) are retried under one ``RetryPolicy``
(``mirror.fetch.retry``) honouring ``Retry-After``; 404 and 410 are
``NotFoundError`` at once, other statuses ``FetchError`` at once, and length
violations are never retried. Every httpx and httpcore exception is translated
here: only ``mirror.errors`` exceptions leave this module.

Requests ask for ``Accept-Encoding: identity``: lengths and hashes are about the
file's bytes, and a compressed body would make ``Content-Length`` checks and the
length cap meaningless (and open the door to decompression bombs).

Bandwidth: with a ``bandwidth`` token bucket (``mirror.fetch.ratelimit``) every body
chunk received, metadata and targets alike, is paid for before the next is read;
time spent waiting for the bucket does not count against the transfer's deadline
(the slow-retrieval check is about the server, not our own cap).

Resuming (``fetch_to_file``): a download cut short (reset, truncated body, deadline)
is continued on the retry with ``Range: bytes=N-`` and ``If-Range`` (the strong ETag,
else Last-Modified, of the response the first bytes came from), when the server
gave such a validator. A 206 whose ``Content-Range`` continues exactly the bytes
held is appended (hashing continues); a 200 means the file changed or the server
ignores ranges, and the download starts over; a 416 or a 206 for other bytes
starts over on the next attempt. With ``partial_dir``, downloads go through a
resumable partial file there (``SpoolFile.open_partial``: one per file name and
length, reused by every run) that is moved to ``dest`` when complete, so a download
given up by one run (transient failure, cancellation, a kill) is continued by the
next. The length cap and every hash still cover the whole file.

HTTP/2: with ``http2`` (the default) the TLS handshake offers ``h2`` and
``http/1.1`` by ALPN and httpcore speaks HTTP/2 when the server picks it; plain
``http://`` stays HTTP/1.1. Each transfer slot holds one connection, so a transfer
has its connection to itself either way. All connections of a process share one TLS
context (building one loads the CA bundle, ~40 ms).

What it does not do: decide whether bytes are trustworthy, or fail over between
mirrors (``mirror.fetch.failover``).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import trio

import mirror
from mirror.errors import (
    FetchError,
    ForbiddenError,
    LengthOrHashMismatchError,
    NotFoundError,
    OversizeError,
    UnsafeNameError,
    UsageError,
)
from mirror.fetch.base import Namespace
from mirror.fetch.budget import TransferPaused, current_allowance
from mirror.fetch.names import encoded_path, join_url, name_segments, url_path
from mirror.fetch.ratelimit import TokenBucket
from mirror.fetch.retry import RetryLater, RetryPolicy, parse_retry_after, run_with_retries
from mirror.fetch.spool import SpoolFile, partial_name
from mirror.fetch.template import Reader, Request, Spooler, Stream, StreamFetcher
from mirror.fetch.transport import (
    Answer,
    Connection,
    DirectConnection,
    HttpxConnection,
    body_end_errors,
    invalid_url_errors,
    is_plain_origin,
    other_errors,
    plain_body,
    request_errors,
    transport_errors,
)
from mirror.log import log

if TYPE_CHECKING:
    import httpx

__all__ = ["PIPELINE_DEPTH", "USELESS_BATCHES", "HttpFetcher"]

#: requests pipelined on one connection at most (``HttpFetcher.fetch_many``)
PIPELINE_DEPTH = 32
#: pipelined batches in a row that brought less than half their files, after which
#: a fetcher stops pipelining (``HttpFetcher.fetch_many``)
USELESS_BATCHES = 3

_T = TypeVar("_T")
_RETRIED_STATUSES = frozenset({408, 429})
_NOT_FOUND_STATUSES = frozenset({404, 410})
_ABANDON_TIMEOUT = 1.0
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5
_ABANDON_PULLS = 16
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)


class _Progress:
    """One attempt's progress: moves its deadline forward as bytes arrive (see the
    module docstring), pays the bandwidth bucket, counts the transfer budget, and
    makes the answer's body the template's ``Stream``."""

    __slots__ = (
        "_allowance",
        "_bandwidth",
        "_chunks",
        "_paused",
        "_response",
        "_seconds_per_byte",
        "_timeout",
        "received",
        "scope",
        "start",
    )

    def __init__(
        self,
        scope: trio.CancelScope,
        timeout: float | None,
        min_throughput: int | None,
        bandwidth: TokenBucket | None = None,
    ) -> None:
        self.scope = scope
        self.received = 0
        self.start = trio.current_time()
        self._timeout = timeout
        self._seconds_per_byte = 1.0 / min_throughput if min_throughput else 0.0
        self._paused = 0.0
        self._bandwidth = bandwidth
        self._allowance = current_allowance()
        self._response: Answer | None = None
        self._chunks: AsyncIterator[bytes] | None = None
        scope.deadline = self._deadline()

    def stream(self, response: Answer, declared: int | None) -> Stream:
        """The body of ``response`` for the template (``declared``: its length, if
        it is to be checked against the whole file's)."""
        self._response = response
        chunks = self._chunks = response.chunks()
        return Stream(
            chunks=chunks,
            length=declared,
            etag=response.header("ETag"),
            last_modified=response.header("Last-Modified"),
            content_type=response.header("Content-Type"),
            pace=self.throttle if self._bandwidth is not None else None,
            on_chunk=self.add,
            abandon=self.abandon,
        )

    def add(self, count: int) -> None:
        """``count`` body bytes arrived (the template took them)."""
        self.received += count
        if self._seconds_per_byte:
            self.scope.deadline = self._deadline()
        if self._allowance is not None:
            self._allowance.received(count)

    async def throttle(self, count: int) -> None:
        """Pay ``count`` bytes to the bandwidth bucket, off the deadline."""
        assert self._bandwidth is not None
        with self.paused():
            await self._bandwidth.take(count)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """The time inside does not count against the deadline (our own throttling)."""
        began = trio.current_time()
        self.scope.deadline = math.inf
        try:
            yield
        finally:
            self._paused += trio.current_time() - began
            self.scope.deadline = self._deadline()

    async def abandon(self) -> None:
        """Finish the body of an answer the template stopped reading early.

        httpx and httpcore stream through a chain of nested async generators. A
        consumer that stops early (too many bytes, a disk error, cancellation
        between chunks) would leave them suspended, to be finalized by the garbage
        collector (trio warns about each). So: close the response, then pull once
        more, which raises from the innermost generator through all of them and
        ends the chain here. A body read to its end needs none of this (the
        template only stops early by raising)."""
        response, chunks = self._response, self._chunks
        if response is None or chunks is None:
            return
        with trio.move_on_after(_ABANDON_TIMEOUT, shield=True):
            # Errors here must not replace the one that ended the transfer.
            with contextlib.suppress(*body_end_errors()):
                await response.aclose()
            for _ in range(_ABANDON_PULLS):
                try:
                    await chunks.__anext__()
                except StopAsyncIteration:
                    break
                except body_end_errors():
                    break

    def _deadline(self) -> float:
        if self._timeout is None:
            return math.inf
        return self.start + self._timeout + self._paused + self.received * self._seconds_per_byte


class HttpFetcher(StreamFetcher):
    """Fetches from ``metadata_url`` and ``targets_url`` (opaque base URLs). The
    length cap, spooling, hashing and counters are the template's
    (``mirror.fetch.template``); this class opens streams (with retries, deadlines,
    the bandwidth cap, conditional requests and resuming).

    ``transport``: an httpx transport to use instead of the fetcher's own (tests
    pass an ``httpx.MockTransport``); it is not closed by ``aclose``, and its
    limits apply instead of ``max_connections`` and ``http2`` (the deadline and
    concurrency cap still do).
    ``max_connections`` also caps concurrent transfers: waiting for a free slot does
    not count against a transfer's deadline.
    ``bandwidth``: the token bucket every body chunk is paid from (share one between
    fetchers to cap them together). ``partial_dir``: where ``fetch_to_file`` keeps
    resumable partial downloads; on the filesystem of the ``dest`` paths it is given
    (the complete file is renamed there).
    """

    declared_as = "Content-Length"

    def __init__(
        self,
        metadata_url: str,
        targets_url: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 4,
        transfer_timeout: float | None = 60.0,
        min_throughput: int | None = 1024,
        connect_timeout: float | None = 10.0,
        read_timeout: float | None = 30.0,
        retry: RetryPolicy | None = None,
        http2: bool = True,
        user_agent: str | None = None,
        bandwidth: TokenBucket | None = None,
        partial_dir: Path | None = None,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        self._bases: dict[Namespace, str] = {
            "metadata": _check_base(metadata_url),
            "targets": _check_base(targets_url),
        }
        self._file_limiter = trio.CapacityLimiter(max_connections)
        super().__init__(spool_limiter=self._file_limiter)
        self.retry = retry if retry is not None else RetryPolicy()
        self._transfer_timeout = transfer_timeout
        self._min_throughput = min_throughput
        self.bandwidth = bandwidth
        self._partial_dir = partial_dir
        #: pipelined batches in a row that brought less than half their files
        self._useless_batches = 0
        # One connection per concurrent transfer, handed out from a free list,
        # instead of one pool of N connections: httpcore's pool scans (and polls)
        # every connection on each request, which grows with N and dominated the CPU
        # of small requests (scripts/bench); and without httpx's request and response
        # models (``mirror.fetch.transport``: HTTP/1.1 on ``mirror.fetch.h1``, HTTP/2
        # on httpcore). A mirror needs no cookies, auth or event hooks. Redirects are
        # followed here.
        timeouts: dict[str, float | None] = {
            "connect": connect_timeout,
            "read": read_timeout,
            "write": read_timeout,
            "pool": None,
        }
        self._owns_transport = transport is None
        connections: list[Connection]
        if transport is None:
            cert_env = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
            context = functools.partial(_tls_context, *cert_env)
            if any(base.startswith("https:") for base in self._bases.values()):
                context()  # built now, as always: a bad CA setting shows at once
            connections = [
                DirectConnection(tls_context=context, http2=http2, timeouts=timeouts)
                for _ in range(max_connections)
            ]
        else:
            connections = [HttpxConnection(transport, timeouts=timeouts)] * max_connections
        self._all_connections = list(dict.fromkeys(connections))
        self._free, self._take = trio.open_memory_channel[Connection](max_connections)
        for item in connections:
            self._free.send_nowait(item)
        self._headers = [
            (b"User-Agent", (user_agent or f"tuf-mirror/{mirror.__version__}").encode()),
            (b"Accept-Encoding", b"identity"),
        ]

    def __repr__(self) -> str:
        return f"HttpFetcher({self._bases['metadata']!r}, {self._bases['targets']!r})"

    @property
    def transfer_timeout(self) -> float | None:
        """Seconds per attempt before the throughput allowance (None: no deadline)."""
        return self._transfer_timeout

    @property
    def partial_dir(self) -> Path | None:
        """Where resumable partial downloads are kept (None: not across runs)."""
        return self._partial_dir

    def url_for(self, namespace: Namespace, name: str) -> str:
        """The URL that serves ``name`` (``UnsafeNameError`` for an unsafe name)."""
        return join_url(self._bases[namespace], url_path(namespace, name))

    def locate(self, namespace: Namespace, name: str, segments: list[str]) -> str:
        return join_url(self._bases[namespace], encoded_path(namespace, name, segments))

    def _label(self, location: str) -> str:
        return f"GET {location}"

    async def _transfer(self, request: Request, read: Reader[_T]) -> _T:
        """One GET under the retry policy, each attempt's answer handed to ``read``
        as a ``Stream``; conditional headers for a fetch into memory, resuming for a
        fetch into a file (``_resumable``)."""
        spooler = request.spooler
        if spooler is not None:
            return await self._resumable(request, read, spooler)
        url = request.location
        headers = self._headers
        conditional = request.conditional
        if conditional:
            headers = list(headers)
            if request.if_none_match is not None:
                headers.append((b"If-None-Match", request.if_none_match.encode()))
            if request.if_modified_since is not None:
                headers.append((b"If-Modified-Since", request.if_modified_since.encode()))

        async def consume(response: Answer, progress: _Progress) -> _T:
            if response.status == 304:
                if not conditional:
                    raise FetchError(f"GET {url}: HTTP 304 to an unconditional request")
                return await read(request, Stream(not_modified=True))
            return await read(request, progress.stream(response, _declared_length(response)))

        return await run_with_retries(
            self.retry,
            lambda: self._attempt(url, headers, consume),
            on_retry=self._count_retry,
        )

    async def _resumable(self, request: Request, read: Reader[_T], spooler: Spooler) -> _T:
        """A file fetch: through a resumable partial file with ``partial_dir``, and
        continued with a Range request after an attempt cut short (module
        docstring). The template keeps or discards the spool file on failure."""
        url = request.location
        label = f"GET {url}"
        length = request.limit
        if self._partial_dir is not None:
            # None when another download holds that partial file: then a plain one.
            spooler.spool = await SpoolFile.open_partial(
                self._partial_dir / partial_name(request.namespace, request.name, length),
                dest=spooler.dest,
                source=url,
                length=length,
                algorithms=spooler.algorithms,
                name=label,
                limiter=self._file_limiter,
            )

        allowance = current_allowance()

        def range_end() -> int:
            """The last byte to ask for: the file's, or where the transfer budget's
            grant ends (a resumable download stops there, ``mirror.fetch.budget``)."""
            spool = spooler.spool
            if allowance is None or allowance.stop_after is None or spool is None:
                return length - 1
            if not spool.resumable:
                return length - 1
            left = max(1, allowance.stop_after - allowance.moved)
            return min(length - 1, spool.received + left - 1)

        def headers() -> list[tuple[bytes, bytes]]:
            spool = spooler.spool
            validator = spool.validator if spool is not None and spool.received else None
            end = range_end()
            if validator is None:
                if end == length - 1:
                    return self._headers
                return [*self._headers, (b"Range", f"bytes=0-{end}".encode())]
            assert spool is not None
            return [
                *self._headers,
                (b"Range", f"bytes={spool.received}-{end if end < length - 1 else ''}".encode()),
                (b"If-Range", validator.encode()),
            ]

        async def consume(response: Answer, progress: _Progress) -> _T:
            status = response.status
            if status == 304:
                raise FetchError(f"{label}: HTTP 304 to an unconditional request")
            spool = await self._spool(request)
            declared: int | None = None
            if status == 200:
                declared = _declared_length(response)
                if spool.received:
                    await spool.restart()  # changed upstream, or no ranges: from the start
                spool.set_validators(
                    etag=response.header("ETag"),
                    last_modified=response.header("Last-Modified"),
                )
            elif _continues(response, spool, length, end=range_end()):
                # The range may end before the file does (the transfer budget):
                # checked here rather than against the whole file.
                _check_declared_length(
                    url, response, maximum=range_end() + 1 - spool.received, exact=True
                )
                if not spool.received:
                    spool.set_validators(
                        etag=response.header("ETag"),
                        last_modified=response.header("Last-Modified"),
                    )
                if spool.received:
                    spool.resumed_from = spool.received
                    self.stats.resumed += 1
            else:  # 416, or a 206 for other bytes: start over on the next attempt
                held = spool.received
                await spool.restart()
                raise RetryLater(
                    FetchError(
                        f"{label}: HTTP {status} "
                        f"{response.header('Content-Range') or ''} does not continue "
                        f"the {held} bytes held"
                    )
                )
            stream = progress.stream(response, declared)
            if allowance is not None:

                def on_chunk(count: int) -> None:
                    progress.add(count)
                    if allowance.exhausted and spool.resumable and spool.received < length:
                        raise TransferPaused(f"{label}: paused at the transfer budget")

                stream.on_chunk = on_chunk
            return await read(request, stream)

        return await run_with_retries(
            self.retry,
            lambda: self._attempt(url, headers(), consume, ranges=True),
            on_retry=self._count_retry,
        )

    async def fetch_many(
        self, namespace: Namespace, items: Sequence[tuple[str, int]]
    ) -> list[bytes | None]:
        """``PipeliningFetcher.fetch_many``: the GETs of ``items`` pipelined on one
        HTTP/1.1 connection (``mirror.fetch.h1``), in batches of at most
        ``PIPELINE_DEPTH``, each batch one transfer for the deadline
        (``transfer_timeout`` plus the ``min_throughput`` allowance for the bytes
        received). Only where nothing is paid per chunk: without a bandwidth cap or a
        transfer budget, on the fetcher's own connections; elsewhere every item is
        None. No retry, redirect or resume here: a file that did not come whole in a
        ``200`` is None. Every request sent is counted, and every byte read.

        An upstream where pipelining does not pay (``USELESS_BATCHES`` batches in a
        row that brought less than half their files: it redirects every file, closes
        the connection after each answer, or fails) is not asked this way again by
        this fetcher: every item is None from then on, without a request."""
        results: list[bytes | None] = [None] * len(items)
        if not items or self.bandwidth is not None or not self._owns_transport:
            return results
        if self._useless_batches >= USELESS_BATCHES:
            return results
        if current_allowance() is not None:
            return results
        asked: list[tuple[int, str, int]] = []
        for index, (name, limit) in enumerate(items):
            try:
                location = self.locate(namespace, name, name_segments(namespace, name))
            except UnsafeNameError:
                continue  # fetch_bytes says so
            asked.append((index, location, limit))
        for start in range(0, len(asked), PIPELINE_DEPTH):
            batch = asked[start : start + PIPELINE_DEPTH]
            await self._pipeline(batch, results)
            brought = sum(results[index] is not None for index, _, _ in batch)
            if 2 * brought >= len(batch):
                self._useless_batches = 0
                continue
            self._useless_batches += 1
            if self._useless_batches >= USELESS_BATCHES:
                log.info(
                    "%s: pipelined requests brought %d of %d files; asking one by one",
                    self._bases[namespace],
                    brought,
                    len(batch),
                )
                break
        return results

    async def _pipeline(
        self, asked: list[tuple[int, str, int]], results: list[bytes | None]
    ) -> None:
        """One pipelined batch of ``fetch_many`` into ``results``, under one deadline
        that moves as bytes arrive (``_Progress``: the batch is one transfer)."""
        stats = self.stats
        progress: _Progress | None = None

        async def each(position: int, answer: Answer) -> None:
            index, _, limit = asked[position]
            # Another answer's body is read (up to the limit) only so that the
            # pipeline goes on; a longer one closes the connection.
            body = bytearray()
            chunks = answer.chunks()
            async for chunk in chunks:
                stats.bytes_received += len(chunk)
                assert progress is not None
                progress.add(len(chunk))
                body += chunk
                if len(body) > limit:
                    # Closed, then pulled once: the body's generator ends here
                    # instead of being left suspended for the garbage collector.
                    await answer.aclose()
                    with contextlib.suppress(StopAsyncIteration, *body_end_errors()):
                        await chunks.__anext__()
                    return
            if answer.status == 200 and plain_body(answer):
                results[index] = bytes(body)

        connection = await self._take.receive()
        try:
            if not isinstance(connection, DirectConnection):
                return
            with trio.CancelScope() as scope:
                progress = _Progress(scope, self._transfer_timeout, self._min_throughput)
                stats.requests += len(asked)
                pipelined = await connection.get_many(
                    [location for _, location, _ in asked], self._headers, each
                )
                if not pipelined:
                    stats.requests -= len(asked)
        except (*request_errors(), *transport_errors(), *other_errors()):
            await connection.aclose()  # best effort: the caller asks again one by one
        finally:
            self._free.send_nowait(connection)

    async def aclose(self) -> None:
        """Close the connections (not an injected transport)."""
        if self._owns_transport:
            for connection in self._all_connections:
                await connection.aclose()

    # -- plumbing ---------------------------------------------------------------------

    def _count_retry(self) -> None:
        # Each retry is one more request (the template counted the first).
        self.stats.retries += 1
        self.stats.requests += 1

    async def _attempt(
        self,
        url: str,
        headers: list[tuple[bytes, bytes]],
        consume: Callable[[Answer, _Progress], Awaitable[_T]],
        *,
        ranges: bool = False,
    ) -> _T:
        """One GET of ``url`` (following redirects): status checks, deadline, httpx
        exception translation. ``ranges``: 206 and 416 go to ``consume`` too."""
        connection = await self._take.receive()
        try:
            with trio.CancelScope() as scope:
                progress = _Progress(
                    scope, self._transfer_timeout, self._min_throughput, self.bandwidth
                )
                try:
                    response = await self._get(connection, url, headers)
                    try:
                        _check_status(url, response, ranges=ranges)
                        return await consume(response, progress)
                    finally:
                        if response.closes_at_once:
                            await response.aclose()
                        else:
                            with trio.move_on_after(_ABANDON_TIMEOUT, shield=True):
                                await response.aclose()
                except request_errors() as exc:
                    raise FetchError(f"GET {url}: {_describe(exc)}") from exc
                except transport_errors() as exc:  # timeouts too
                    raise _retry_later(url, exc) from exc
                except invalid_url_errors() as exc:
                    raise FetchError(f"GET {url}: invalid URL ({exc})") from exc
                except other_errors() as exc:
                    raise FetchError(f"GET {url}: {_describe(exc)}") from exc
        finally:
            self._free.send_nowait(connection)
        # Only reached when the deadline cancelled the transfer.
        elapsed = trio.current_time() - progress.start
        raise RetryLater(
            FetchError(
                f"GET {url}: too slow, {progress.received} bytes in {elapsed:.0f}s "
                f"(transfer_timeout {self._transfer_timeout}s, "
                f"min_throughput {self._min_throughput} B/s)"
            )
        )

    async def _get(
        self, connection: Connection, url: str, headers: list[tuple[bytes, bytes]]
    ) -> Answer:
        """Send a GET on the connection, following up to ``_MAX_REDIRECTS``."""
        target = url
        for hop in range(_MAX_REDIRECTS + 1):
            if hop:  # the first request of an attempt is counted by the template or retry
                self.stats.requests += 1
            response = await connection.get(target, headers)
            location = response.header("Location")
            if response.status not in _REDIRECT_STATUSES or not location:
                return response
            await response.aclose()
            import httpx

            joined = httpx.URL(target).join(location)
            if joined.scheme not in ("http", "https"):
                raise FetchError(f"GET {url}: redirected to a non-HTTP URL {joined}")
            target = str(joined)
        raise FetchError(f"GET {url}: more than {_MAX_REDIRECTS} redirects")


def _check_base(url: str) -> str:
    scheme_end = url.find("://")
    path_start = url.find("/", scheme_end + 3) if scheme_end > 0 else -1
    origin = url if path_start < 0 else url[:path_start]
    plain = url.isascii() and url.isprintable() and not any(c in url for c in " ?#")
    if plain and is_plain_origin(origin):
        return url  # the usual case, checked without importing httpx
    import httpx

    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise UsageError(f"invalid upstream URL {url!r}: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UsageError(f"upstream URL {url!r} is not an http:// or https:// URL")
    if parsed.query or parsed.fragment:
        raise UsageError(f"upstream URL {url!r} must not have a query or fragment")
    return url


def _check_status(url: str, response: Answer, *, ranges: bool = False) -> None:
    status = response.status
    if status in (200, 304) or (ranges and status in (206, 416)):
        return
    reason = f"GET {url}: HTTP {status} {response.reason}".rstrip()
    if status in _NOT_FOUND_STATUSES:
        raise NotFoundError(reason)
    if status == 403:
        raise ForbiddenError(reason)
    if status in _RETRIED_STATUSES or 500 <= status <= 599:
        retry_after = parse_retry_after(response.header("Retry-After"))
        raise RetryLater(FetchError(reason), retry_after=retry_after)
    raise FetchError(reason)


def _declared_length(response: Answer) -> int | None:
    """The body's length as the answer declares it: its Content-Length, unless
    absent, not a number, or about an encoded body."""
    declared = response.header("Content-Length")
    if declared is None or not plain_body(response):
        return None
    declared = declared.strip()
    return int(declared) if declared.isdigit() else None


def _check_declared_length(
    url: str, response: Answer, *, maximum: int, exact: bool = False
) -> None:
    """Refuse a range whose declared length is already wrong, before reading it."""
    size = _declared_length(response)
    if size is None:
        return
    if size > maximum:
        raise OversizeError(f"GET {url}: Content-Length {size} is more than {maximum} bytes")
    if exact and size < maximum:
        raise LengthOrHashMismatchError(
            f"GET {url}: Content-Length {size}, expected {maximum} bytes"
        )


def _continues(response: Answer, spool: SpoolFile, length: int, *, end: int) -> bool:
    """Whether a 206 answer carries exactly the bytes asked for, from the end of
    those ``spool`` holds to ``end`` (the file's last byte unless the transfer budget
    bounds this request), of the same version (ETag) they came from."""
    if response.status != 206:
        return False
    match = _CONTENT_RANGE.match(response.header("Content-Range") or "")
    if match is None:
        return False
    first, last, total = int(match.group(1)), int(match.group(2)), match.group(3)
    if first != spool.received or last != end or total not in ("*", str(length)):
        return False
    etag = response.header("ETag")
    return not (spool.received and spool.etag and etag and etag != spool.etag)


@functools.lru_cache(maxsize=4)
def _tls_context(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    """httpx's TLS context (certifi, or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``), built
    once per process and setting: every transport shares it."""
    del cert_file, cert_dir  # the cache key: httpx reads them from the environment
    import httpx

    return httpx.create_ssl_context()


def _retry_later(url: str, exc: Exception) -> RetryLater:
    """A transient failure whose reported FetchError keeps ``exc`` as its cause."""
    error = FetchError(f"GET {url}: {_describe(exc)}")
    error.__cause__ = exc
    return RetryLater(error)


def _describe(exc: Exception) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
