"""``HttpFetcher``: the ``Fetcher`` for HTTP(S) upstreams, under trio (connections:
``mirror.fetch.transport``).

Each request streams its body with a hard length cap (more bytes than allowed is
``OversizeError``, raised without reading further; a ``Content-Length`` above the
cap is refused before the body), hashes on the fly when writing to a spool file
(``mirror.fetch.spool``), and runs under a deadline owned by this fetcher:

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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
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
    UsageError,
)
from mirror.fetch.base import FetchedBytes, FetchedFile, FetchStats, Namespace
from mirror.fetch.budget import TransferPaused, current_allowance
from mirror.fetch.names import join_url, url_path
from mirror.fetch.ratelimit import TokenBucket
from mirror.fetch.retry import RetryLater, RetryPolicy, parse_retry_after, run_with_retries
from mirror.fetch.spool import SpoolFile, check_algorithms, partial_name
from mirror.fetch.transport import (
    Answer,
    Connection,
    DirectConnection,
    HttpxConnection,
    body_end_errors,
    invalid_url_errors,
    is_plain_origin,
    other_errors,
    request_errors,
    transport_errors,
)

if TYPE_CHECKING:
    import httpx

__all__ = ["HttpFetcher"]

_T = TypeVar("_T")
_RETRIED_STATUSES = frozenset({408, 429})
_NOT_FOUND_STATUSES = frozenset({404, 410})
_ABANDON_TIMEOUT = 1.0
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5
_ABANDON_PULLS = 16
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)


class _Progress:
    """Moves an attempt's deadline forward as bytes arrive (see module docstring)."""

    def __init__(
        self, scope: trio.CancelScope, timeout: float | None, min_throughput: int | None
    ) -> None:
        self.scope = scope
        self.received = 0
        self.start = trio.current_time()
        self._timeout = timeout
        self._seconds_per_byte = 1.0 / min_throughput if min_throughput else 0.0
        self._paused = 0.0
        scope.deadline = self._deadline()

    def add(self, count: int) -> None:
        self.received += count
        if self._seconds_per_byte:
            self.scope.deadline = self._deadline()

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

    def _deadline(self) -> float:
        if self._timeout is None:
            return math.inf
        return self.start + self._timeout + self._paused + self.received * self._seconds_per_byte


class HttpFetcher:
    """Fetches from ``metadata_url`` and ``targets_url`` (opaque base URLs).

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
        self.stats = FetchStats()
        self.retry = retry if retry is not None else RetryPolicy()
        self._transfer_timeout = transfer_timeout
        self._min_throughput = min_throughput
        self.bandwidth = bandwidth
        self._partial_dir = partial_dir
        self._file_limiter = trio.CapacityLimiter(max_connections)
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

    async def fetch_bytes(
        self,
        namespace: Namespace,
        name: str,
        *,
        max_length: int,
        if_none_match: str | None = None,
        if_modified_since: str | None = None,
    ) -> FetchedBytes | None:
        url = self.url_for(namespace, name)
        headers = list(self._headers)
        if if_none_match is not None:
            headers.append((b"If-None-Match", if_none_match.encode()))
        if if_modified_since is not None:
            headers.append((b"If-Modified-Since", if_modified_since.encode()))
        conditional = if_none_match is not None or if_modified_since is not None

        async def consume(response: Answer, progress: _Progress) -> FetchedBytes | None:
            if response.status == 304:
                if not conditional:
                    raise FetchError(f"GET {url}: HTTP 304 to an unconditional request")
                self.stats.not_modified += 1
                return None
            _check_declared_length(url, response, maximum=max_length)
            body = bytearray()
            allowance = current_allowance()
            async with _Body(response) as chunks:
                async for chunk in chunks:
                    await self._received(chunk, progress)
                    if allowance is not None:
                        allowance.received(len(chunk))
                    if len(body) + len(chunk) > max_length:
                        raise OversizeError(f"GET {url}: more than {max_length} bytes")
                    body += chunk
            return FetchedBytes(
                data=bytes(body),
                etag=response.header("ETag"),
                last_modified=response.header("Last-Modified"),
                content_type=response.header("Content-Type"),
            )

        return await self._with_retries(url, headers, consume)

    async def fetch_to_file(
        self,
        namespace: Namespace,
        name: str,
        dest: Path,
        *,
        length: int,
        algorithms: tuple[str, ...],
    ) -> FetchedFile:
        url = self.url_for(namespace, name)
        label = f"GET {url}"
        check_algorithms(algorithms, name=url)
        spool: SpoolFile | None = None
        if self._partial_dir is not None:
            # None when another download holds that partial file: then a plain one.
            spool = await SpoolFile.open_partial(
                self._partial_dir / partial_name(namespace, name, length),
                dest=dest,
                source=url,
                length=length,
                algorithms=algorithms,
                name=label,
                limiter=self._file_limiter,
            )

        allowance = current_allowance()

        def range_end() -> int:
            """The last byte to ask for: the file's, or where the transfer budget's
            grant ends (a resumable download stops there, ``mirror.fetch.budget``)."""
            if allowance is None or allowance.stop_after is None or spool is None:
                return length - 1
            if not spool.resumable:
                return length - 1
            left = max(1, allowance.stop_after - allowance.moved)
            return min(length - 1, spool.received + left - 1)

        def headers() -> list[tuple[bytes, bytes]]:
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

        async def consume(response: Answer, progress: _Progress) -> FetchedFile:
            nonlocal spool
            status = response.status
            if status == 304:
                raise FetchError(f"{label}: HTTP 304 to an unconditional request")
            if spool is None:
                spool = await SpoolFile.create(
                    dest,
                    length=length,
                    algorithms=algorithms,
                    name=label,
                    limiter=self._file_limiter,
                )
            if status == 200:
                _check_declared_length(url, response, maximum=length, exact=True)
                if spool.received:
                    await spool.restart()  # changed upstream, or no ranges: from the start
                spool.set_validators(
                    etag=response.header("ETag"),
                    last_modified=response.header("Last-Modified"),
                )
            elif _continues(response, spool, length, end=range_end()):
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
            async with _Body(response) as chunks:
                async for chunk in chunks:
                    await self._received(chunk, progress)
                    await spool.write(chunk)
                    if allowance is not None:
                        allowance.received(len(chunk))
                        if allowance.exhausted and spool.resumable and spool.received < length:
                            raise TransferPaused(f"{label}: paused at the transfer budget")
            return await spool.finish()

        try:
            return await run_with_retries(
                self.retry,
                lambda: self._attempt(url, headers(), consume, ranges=True),
                on_retry=self._count_retry,
            )
        except BaseException as exc:
            if spool is not None:
                if spool.resumable and _worth_keeping(exc):
                    await spool.keep()
                else:
                    await spool.discard()
            raise

    async def aclose(self) -> None:
        """Close the connections (not an injected transport)."""
        if self._owns_transport:
            for connection in self._all_connections:
                await connection.aclose()

    # -- plumbing ---------------------------------------------------------------------

    async def _with_retries(
        self,
        url: str,
        headers: list[tuple[bytes, bytes]],
        consume: Callable[[Answer, _Progress], Awaitable[_T]],
    ) -> _T:
        """Attempts of one GET under the retry policy."""
        return await run_with_retries(
            self.retry,
            lambda: self._attempt(url, headers, consume),
            on_retry=self._count_retry,
        )

    def _count_retry(self) -> None:
        self.stats.retries += 1

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
                progress = _Progress(scope, self._transfer_timeout, self._min_throughput)
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
        for _ in range(_MAX_REDIRECTS + 1):
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

    async def _received(self, chunk: bytes, progress: _Progress) -> None:
        """Count a body chunk, move the deadline, and pay the bandwidth bucket."""
        self.stats.bytes_received += len(chunk)
        progress.add(len(chunk))
        if self.bandwidth is not None:
            with progress.paused():
                await self.bandwidth.take(len(chunk))


class _Body:
    """``async with _Body(response) as chunks``: ``response.chunks()``, finished
    properly however the caller stops.

    httpx and httpcore stream through a chain of nested async generators. A consumer
    that stops early (too many bytes, a disk error, cancellation between chunks)
    would leave them suspended, to be finalized by the garbage collector (trio warns
    about each). So, when the block ends with an exception: close the response, then
    pull once more, which raises from the innermost generator through all of them
    and ends the chain here. A block that ends without one has read the body to its
    end (the fetcher's loops only stop early by raising): nothing to finish. A class
    rather than a generator-based context manager: one per file, it shows up in
    profiles.
    """

    __slots__ = ("_chunks", "_response")

    def __init__(self, response: Answer) -> None:
        self._response = response
        self._chunks = response.chunks()

    async def __aenter__(self) -> AsyncIterator[bytes]:
        return self._chunks

    async def __aexit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            return
        with trio.move_on_after(_ABANDON_TIMEOUT, shield=True):
            # Errors here must not replace the one that ended the transfer.
            with contextlib.suppress(*body_end_errors()):
                await self._response.aclose()
            for _ in range(_ABANDON_PULLS):
                try:
                    await self._chunks.__anext__()
                except StopAsyncIteration:
                    break
                except body_end_errors():
                    break


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


def _check_declared_length(
    url: str, response: Answer, *, maximum: int, exact: bool = False
) -> None:
    """Refuse a body whose declared length is already wrong, before reading it."""
    encoding = response.header("Content-Encoding")
    encoding = "identity" if encoding is None else encoding.strip().lower()
    declared = response.header("Content-Length")
    if declared is None or encoding != "identity" or not declared.strip().isdigit():
        return
    size = int(declared)
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


def _worth_keeping(exc: BaseException) -> bool:
    """Whether a download that ended with ``exc`` may be continued later: transient
    failures, a pause at the transfer budget and cancellation, not a missing file or
    bad bytes."""
    if isinstance(exc, TransferPaused):
        return True
    if isinstance(exc, FetchError):
        return not isinstance(exc, NotFoundError)
    return not isinstance(exc, Exception)  # Cancelled, KeyboardInterrupt...


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
