"""``H1Connection``: one HTTP/1.1 client connection for GET requests, on a trio stream.

Why not h11 under httpcore: for the small files a mirror moves by the thousand, the
general-purpose state machines cost most of the client's CPU per file (about
0.45 ms per request here, against 0.06 ms for reading the same answers directly;
``scripts/bench``). A mirror only ever sends bodiless GETs and reads one answer at a
time, so this module implements exactly that part of RFC 9112, strictly:

- the request: ``GET <target> HTTP/1.1``, ``Host`` and the caller's headers (a
  value holding CR, LF or NUL is refused: ``LocalProtocolError``);
- the answer: status line ``HTTP/1.x NNN reason``; ``1xx`` answers before the final
  one are skipped; header lines ``name: value`` (no folding, names are tokens); at
  most ``MAX_HEAD`` bytes of head; anything else is ``RemoteProtocolError``;
- the body (RFC 9112 §6.3): none for ``1xx``/``204``/``304``; ``Transfer-Encoding``
  ending in ``chunked`` is de-chunked (trailers read and dropped); another
  ``Transfer-Encoding``, or no ``Content-Length``, is read until the server closes;
  else exactly ``Content-Length`` bytes (several differing values are an error). A
  body cut short by the connection closing is ``RemoteProtocolError``;
- keep-alive: the connection is reused for the next request when the answer was
  HTTP/1.1, complete, without ``Connection: close``, with no byte after it, and the
  next request comes within ``keepalive`` seconds; an idle connection the server
  closed (readable while idle) is replaced before it is used.

Timeouts as httpcore's: ``connect`` (TCP and TLS handshake), ``read`` (no byte for
that long), ``write``. Failures raise this module's exceptions, named as httpcore's
and httpx's (``ConnectError``, ``ConnectTimeout``, ``ReadError``, ``ReadTimeout``,
``WriteError``, ``WriteTimeout``, ``RemoteProtocolError``: ``TransientHttpError``;
``LocalProtocolError``, ``UnsupportedProtocol``: ``HttpError``), which
``mirror.fetch.http`` translates like theirs. TLS (``https``) offers ALPN
``http/1.1`` only: HTTP/2 goes through httpcore (``mirror.fetch.transport``).
Neither httpx nor httpcore is imported here: a process that only speaks HTTP/1.1
does not pay for importing them (a few hundred milliseconds per process start).

Pipelining (RFC 9112 §9.3.2, ``get_many``): for many small files, the GETs of a batch
go out in one write and their answers are read in order from the same buffer, so a
batch costs one send and a few receives instead of a round trip per file. It is
best effort: the answers are handed over as they come, and a connection that fails
or closes ends the batch (the requests not answered are the caller's to ask again,
one by one, with ``get``).

What it does not do: request bodies, other methods, proxies, or decoding a
``Content-Encoding`` (the caller asks for ``identity`` and decodes what comes
otherwise).
"""

from __future__ import annotations

import re
import select
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import trio

from mirror.fetch.answer import Answer, Headers, Target, Timeouts

__all__ = [
    "MAX_HEAD",
    "ConnectError",
    "ConnectTimeout",
    "H1Connection",
    "HttpError",
    "LocalProtocolError",
    "ReadError",
    "ReadTimeout",
    "RemoteProtocolError",
    "TransientHttpError",
    "UnsupportedProtocol",
    "WriteError",
    "WriteTimeout",
]

#: bytes of status line and headers accepted at most (as httpcore's h11 default)
MAX_HEAD = 100 * 1024
_READ = 64 * 1024
_STATUS = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: ([^\r\n]*))?")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?")
_BAD_VALUE = re.compile(rb"[\r\n\x00]")
_NO_BODY = frozenset({204, 304})


class HttpError(Exception):
    """A request this client cannot send as asked (retrying does not help)."""


class LocalProtocolError(HttpError):
    """The request would not be valid HTTP/1.1 (a header value with CR or LF)."""


class UnsupportedProtocol(HttpError):
    """Not an ``http`` or ``https`` URL."""


class TransientHttpError(HttpError):
    """A failure of the connection or of the answer: worth retrying."""


class ConnectError(TransientHttpError):
    pass


class ConnectTimeout(TransientHttpError):
    pass


class ReadError(TransientHttpError):
    pass


class ReadTimeout(TransientHttpError):
    pass


class WriteError(TransientHttpError):
    pass


class WriteTimeout(TransientHttpError):
    pass


class RemoteProtocolError(TransientHttpError):
    """The server's answer is not valid HTTP/1.1, or was cut short."""


class H1Connection:
    """One HTTP/1.1 connection (``http`` or ``https``); see the module docstring."""

    def __init__(
        self,
        *,
        tls_context: Callable[[], ssl.SSLContext],
        timeouts: Timeouts,
        keepalive: float,
    ) -> None:
        #: the TLS context for https, built on first use
        self._tls_context = tls_context
        self._connect_timeout = timeouts.get("connect")
        self._read_timeout = timeouts.get("read")
        self._write_timeout = timeouts.get("write")
        self._keepalive = keepalive
        self._stream: trio.abc.Stream | None = None
        self._poll: select.poll | None = None
        self._origin: tuple[bytes, bytes, int] | None = None
        self._buffer = bytearray()
        self._idle_since = 0.0
        self._exchange: _Exchange | None = None
        #: while a request and its answer's head are under way: their timeout scope
        self._head_scope: trio.CancelScope | None = None
        self._phase_is_write = False
        #: pipelined answers still expected after the current one (``get_many``)
        self._pending = 0

    async def get(self, target: Target, headers: Headers) -> Answer:
        """Send ``GET`` to ``target`` and read the answer's head."""
        if self._exchange is not None:
            raise RuntimeError("H1Connection: the previous answer was not closed")
        request = _request(target, _header_block(headers))
        stream = await self._ready((target.scheme, target.host, target.port_or_default))
        exchange = self._exchange = _Exchange(self, stream)
        try:
            return await self._head(stream, exchange, request)
        except BaseException:
            await exchange.aclose()
            raise

    async def get_many(
        self,
        targets: Sequence[Target],
        headers: Headers,
        each: Callable[[int, Answer], Awaitable[None]],
    ) -> None:
        """Pipelining: send a GET for every one of ``targets`` (one origin) in one
        write, then hand the answers to ``each(index, answer)`` in order. ``each``
        reads the body (to its end, or the connection is closed after it) and must
        not use this connection otherwise; the answer is closed when it returns.

        Best effort: a failure of the connection (connect, send, a head or body cut
        short, a timeout, an answer after which the connection cannot be reused) ends
        the batch without an error; the targets ``each`` was not called for, or whose
        body it could not read to the end, were not answered. What ``each`` raises
        (other than this connection's failures) goes on, the connection closed."""
        if self._exchange is not None:
            raise RuntimeError("H1Connection: the previous answer was not closed")
        if not targets:
            return
        first = targets[0]
        origin = (first.scheme, first.host, first.port_or_default)
        block = _header_block(headers)
        requests = []
        for target in targets:
            if (target.scheme, target.host, target.port_or_default) != origin:
                raise ValueError("H1Connection.get_many: targets of more than one origin")
            requests.append(_request(target, block))
        answered = False
        try:
            stream = await self._ready(origin)
            for index in range(len(targets)):
                if self._stream is not stream:
                    break  # closed after the previous answer: the rest are unanswered
                self._pending = len(targets) - index - 1
                exchange = self._exchange = _Exchange(self, stream)
                try:
                    # Every request goes with the first head read, in one write.
                    answer = await self._head(
                        stream, exchange, b"".join(requests) if index == 0 else None
                    )
                    await each(index, answer)
                finally:
                    await exchange.aclose()
            answered = True
        except TransientHttpError:
            await self._close()
        finally:
            self._pending = 0
            if not answered:  # answers may still be on their way: never reuse it
                await self._close()

    async def aclose(self) -> None:
        """Close the connection (also in the middle of an answer)."""
        await self._close()

    # -- the connection ---------------------------------------------------------------

    async def _ready(self, origin: tuple[bytes, bytes, int]) -> trio.abc.Stream:
        stream = self._stream
        if stream is not None and (
            origin != self._origin
            or trio.current_time() - self._idle_since > self._keepalive
            or self._dropped()
        ):
            await self._close()
            stream = None
        if stream is None:
            stream = await self._connect(origin)
        return stream

    def _dropped(self) -> bool:
        """Whether the server closed the idle connection (or sent something
        unasked): its socket is readable."""
        poll = self._poll
        if poll is None:
            return True
        try:
            return bool(poll.poll(0))
        except OSError:
            return True

    async def _connect(self, origin: tuple[bytes, bytes, int]) -> trio.abc.Stream:
        scheme, host, port = origin
        hostname = host.decode("ascii")
        try:
            with trio.fail_after(_forever(self._connect_timeout)):
                tcp = await trio.open_tcp_stream(hostname, port)
                stream: trio.abc.Stream = tcp
                if scheme == b"https":
                    context = self._tls_context()
                    context.set_alpn_protocols(["http/1.1"])
                    tls = trio.SSLStream(
                        tcp,
                        context,
                        server_hostname=hostname,
                        https_compatible=True,
                    )
                    try:
                        await tls.do_handshake()
                    except BaseException:
                        await trio.aclose_forcefully(tcp)
                        raise
                    stream = tls
                elif scheme != b"http":
                    await trio.aclose_forcefully(tcp)
                    raise UnsupportedProtocol(f"unsupported URL scheme {scheme!r}")
        except trio.TooSlowError as exc:
            raise ConnectTimeout(str(exc)) from exc
        except (OSError, trio.BrokenResourceError) as exc:
            raise ConnectError(str(exc) or type(exc).__name__) from exc
        self._stream, self._origin = stream, origin
        self._poll = select.poll()
        self._poll.register(tcp.socket.fileno(), select.POLLIN)
        self._buffer = bytearray()
        self._idle_since = trio.current_time()
        return stream

    async def _head(
        self, stream: trio.abc.Stream, exchange: _Exchange, request: bytes | None
    ) -> Answer:
        """Send ``request`` (if any) and read ``exchange``'s head, under one scope
        whose deadline moves before each send and receive (write, then read
        timeout), instead of a scope per operation: per small file, scopes show in
        profiles."""
        self._phase_is_write = False
        with trio.CancelScope() as scope:
            self._head_scope = scope
            try:
                if request is not None:
                    await self._send(stream, request)
                return await exchange.read_head()
            finally:
                self._head_scope = None
        if self._phase_is_write:
            raise WriteTimeout("timed out sending the request")
        raise ReadTimeout("timed out reading the answer")

    async def _close(self) -> None:
        stream, self._stream, self._poll = self._stream, None, None
        self._exchange = None
        self._buffer = bytearray()
        if stream is not None:
            await trio.aclose_forcefully(stream)

    async def _send(self, stream: trio.abc.Stream, data: bytes) -> None:
        try:
            scope = self._head_scope
            if scope is not None:
                self._phase_is_write = True
                scope.deadline = _deadline(self._write_timeout)
                await stream.send_all(data)
            elif self._write_timeout is None:
                await stream.send_all(data)
            else:
                with trio.fail_after(self._write_timeout):
                    await stream.send_all(data)
        except trio.TooSlowError as exc:
            raise WriteTimeout(str(exc)) from exc
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise WriteError(str(exc) or type(exc).__name__) from exc

    async def _receive(self, stream: trio.abc.Stream) -> bytes:
        try:
            scope = self._head_scope
            if scope is not None:
                self._phase_is_write = False
                scope.deadline = _deadline(self._read_timeout)
                return bytes(await stream.receive_some(_READ))
            if self._read_timeout is None:
                return bytes(await stream.receive_some(_READ))
            with trio.fail_after(self._read_timeout):
                return bytes(await stream.receive_some(_READ))
        except trio.TooSlowError as exc:
            raise ReadTimeout(str(exc)) from exc
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ReadError(str(exc) or type(exc).__name__) from exc

    async def _finished(self, exchange: _Exchange, *, reusable: bool) -> None:
        """``exchange`` is closed: keep the connection for the next request, or not."""
        if exchange is not self._exchange:
            return
        self._exchange = None
        # Bytes after a complete answer are the next pipelined one's, else unasked.
        if reusable and self._stream is exchange.stream and (self._pending or not self._buffer):
            self._idle_since = trio.current_time()
            return
        self._pending = 0
        await self._close()


class _Exchange:
    """One request's answer on an ``H1Connection``: its head, then its body."""

    __slots__ = ("_closed", "_complete", "_connection", "_keep_alive", "stream")

    def __init__(self, connection: H1Connection, stream: trio.abc.Stream) -> None:
        self._connection = connection
        self.stream = stream
        self._closed = False
        self._complete = False
        self._keep_alive = False

    async def read_head(self) -> Answer:
        connection = self._connection
        buffer = connection._buffer
        while True:
            end = buffer.find(b"\r\n\r\n")
            while end < 0:
                if len(buffer) > MAX_HEAD:
                    raise RemoteProtocolError("answer head too large")
                data = await connection._receive(self.stream)
                if not data:
                    if buffer:
                        raise RemoteProtocolError(
                            "peer closed connection in the middle of an answer head"
                        )
                    raise RemoteProtocolError("Server disconnected without sending a response.")
                start = max(0, len(buffer) - 3)
                buffer += data
                end = buffer.find(b"\r\n\r\n", start)
            if end + 4 > MAX_HEAD:
                raise RemoteProtocolError("answer head too large")
            head = bytes(buffer[:end])
            del buffer[: end + 4]
            status_line, _, fields = head.partition(b"\r\n")
            match = _STATUS.fullmatch(status_line)
            if match is None:
                raise RemoteProtocolError(f"malformed status line {status_line[:80]!r}")
            status = int(match.group(2))
            if status == 101:
                raise RemoteProtocolError("101 Switching Protocols: nothing was asked")
            if 100 <= status < 200:
                continue  # an interim answer (100 Continue, 103 Early Hints): the next
            raw = _parse_fields(fields) if fields else []
            return self._answer(match, status, raw)

    def _answer(self, match: re.Match[bytes], status: int, raw: Headers) -> Answer:
        reason = (match.group(3) or b"").decode("ascii", errors="ignore")
        http11 = match.group(1) == b"1"
        length: int | None = None
        chunked = until_close = False
        lengths: set[bytes] = set()
        encodings: list[bytes] = []
        close = not http11
        for name, value in raw:
            lowered = name.lower()
            if lowered == b"content-length":
                lengths.update(part.strip() for part in value.split(b","))
            elif lowered == b"transfer-encoding":
                encodings += (part.strip().lower() for part in value.split(b","))
            elif lowered == b"connection":
                tokens = {part.strip().lower() for part in value.split(b",")}
                if b"close" in tokens:
                    close = True
        if status in _NO_BODY:
            length = 0
        elif encodings:
            if encodings[-1] == b"chunked":
                chunked = True
            else:
                until_close = True
            close = close or bool(lengths)  # both framings: never reuse
        elif lengths:
            if len(lengths) != 1:
                raise RemoteProtocolError("conflicting Content-Length values")
            (value,) = lengths
            if not value.isdigit():
                raise RemoteProtocolError(f"malformed Content-Length {value[:40]!r}")
            length = int(value)
        else:
            until_close = True
        self._keep_alive = not close and not until_close
        if chunked:
            body = self._chunked()
        elif until_close:
            body = self._until_close()
        else:
            assert length is not None
            body = self._exactly(length)
        return Answer(status, reason, raw, body, self, closes_at_once=True)

    async def aclose(self) -> None:
        """Release the connection: kept for the next request only after a complete
        body (not read to the end: closed)."""
        if self._closed:
            return
        self._closed = True
        await self._connection._finished(self, reusable=self._complete and self._keep_alive)

    # -- bodies -----------------------------------------------------------------------

    async def _exactly(self, length: int) -> AsyncIterator[bytes]:
        connection = self._connection
        buffer = connection._buffer
        remaining = length
        while remaining:
            if buffer:
                take = min(len(buffer), remaining)
                chunk = bytes(buffer[:take])
                del buffer[:take]
            else:
                data = await connection._receive(self.stream)
                if not data:
                    raise RemoteProtocolError(
                        f"peer closed connection without sending complete message body: "
                        f"received {length - remaining} bytes, expected {length}"
                    )
                if len(data) > remaining:
                    buffer += data[remaining:]
                    data = data[:remaining]
                chunk = data
            remaining -= len(chunk)
            if not remaining:
                self._complete = True
            yield chunk
            if self._closed:
                return
        self._complete = True

    async def _until_close(self) -> AsyncIterator[bytes]:
        connection = self._connection
        buffer = connection._buffer
        if buffer:
            chunk = bytes(buffer)
            buffer.clear()
            yield chunk
            if self._closed:
                return
        while True:
            data = await connection._receive(self.stream)
            if not data:
                self._complete = True
                return
            yield data
            if self._closed:
                return

    async def _line(self) -> bytes:
        """The next CRLF-terminated line of a chunked body (without the CRLF)."""
        connection = self._connection
        buffer = connection._buffer
        while True:
            end = buffer.find(b"\r\n")
            if end >= 0:
                line = bytes(buffer[:end])
                del buffer[: end + 2]
                return line
            if len(buffer) > MAX_HEAD:
                raise RemoteProtocolError("chunked body: line too long")
            data = await connection._receive(self.stream)
            if not data:
                raise RemoteProtocolError(
                    "peer closed connection without sending complete message body: "
                    "incomplete chunked read"
                )
            buffer += data

    async def _chunked(self) -> AsyncIterator[bytes]:
        connection = self._connection
        buffer = connection._buffer
        while True:
            line = await self._line()
            match = _CHUNK_SIZE.fullmatch(line)
            if match is None:
                raise RemoteProtocolError(f"malformed chunk size {line[:40]!r}")
            remaining = int(match.group(1), 16)
            if remaining == 0:
                while await self._line():  # trailer fields, up to the empty line
                    pass
                self._complete = True
                return
            while remaining:
                if not buffer:
                    data = await connection._receive(self.stream)
                    if not data:
                        raise RemoteProtocolError(
                            "peer closed connection without sending complete message body: "
                            "incomplete chunked read"
                        )
                    buffer += data
                take = min(len(buffer), remaining)
                chunk = bytes(buffer[:take])
                del buffer[:take]
                remaining -= take
                yield chunk
                if self._closed:
                    return
            if await self._line():
                raise RemoteProtocolError("chunk not followed by CRLF")


def _header_block(headers: Headers) -> bytes:
    """The caller's header lines, each checked (``LocalProtocolError``)."""
    for name, value in headers:
        if _BAD_VALUE.search(value) or not _TOKEN.fullmatch(name):
            raise LocalProtocolError(f"invalid header {name!r}: {value!r}")
    return b"".join(b"%s: %s\r\n" % (name, value) for name, value in headers)


def _request(target: Target, header_block: bytes) -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (target.path, target.netloc, header_block)


def _parse_fields(fields: bytes) -> Headers:
    raw: Headers = []
    for line in fields.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            raise RemoteProtocolError(f"malformed header line {line[:80]!r}")
        value = value.strip(b" \t")
        if _BAD_VALUE.search(value):
            raise RemoteProtocolError(f"malformed header value in {line[:80]!r}")
        raw.append((name, value))
    return raw


def _forever(timeout: float | None) -> float:
    return float("inf") if timeout is None else timeout


def _deadline(timeout: float | None) -> float:
    return float("inf") if timeout is None else trio.current_time() + timeout
