"""One HTTP connection per transfer slot of ``HttpFetcher``, and the answers it reads.

``DirectConnection`` is the fetcher's own: plain ``http://`` (and ``https://`` when
HTTP/2 is off) goes through ``mirror.fetch.h1``, a strict HTTP/1.1 client for GET
written for this job; ``https://`` with HTTP/2 on goes through httpcore's
``AsyncHTTPConnection`` directly (``CoreConnection``), where ALPN picks HTTP/2 or
HTTP/1.1 and httpcore speaks either. Neither goes through httpx's request and
response models (URL parsing of every URL, header objects, the connection pool's
bookkeeping) nor, for HTTP/1.1, through h11's general state machine: for the
small files a mirror moves by the thousand those cost more CPU than the rest of
the transfer (``scripts/bench``). A connection is opened on first use, kept alive
between requests (``KEEPALIVE`` seconds idle at most, httpx's default), and
replaced when it was closed, has expired, was dropped by the server while idle,
or points at another origin (a redirect); an HTTP/2 connection that refuses
another stream is replaced once.

``HttpxConnection`` sends through an injected ``httpx.AsyncBaseTransport`` instead
(tests plug ``httpx.MockTransport`` there). All return an ``Answer``
(``mirror.fetch.answer``). A body the server sent with a ``Content-Encoding``
other than ``identity`` (we ask for ``identity``) is decoded through httpx, as
before.

httpx and httpcore are imported only when needed (HTTP/2, an injected transport,
a compressed answer, a redirect, an unusual URL): importing them costs a few
hundred milliseconds of CPU per process start, and a mirror starts a process per
run and per worker.

What it does not do: follow redirects, retry, enforce lengths or deadlines, or
translate exceptions (``mirror.fetch.http`` does all of that, and catches the
exception classes given here: ``request_errors()``, ``transport_errors()``,
``other_errors()``, ``invalid_url_errors()``, ``body_end_errors()``: those of
``mirror.fetch.h1``, and httpcore's and httpx's once imported).
"""

from __future__ import annotations

import contextlib
import functools
import re
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from mirror.fetch import h1
from mirror.fetch.answer import Answer, Headers, Target, Timeouts
from mirror.fetch.h1 import H1Connection

if TYPE_CHECKING:
    import httpcore
    import httpx

__all__ = [
    "KEEPALIVE",
    "Answer",
    "Connection",
    "CoreConnection",
    "DirectConnection",
    "HttpxConnection",
    "Timeouts",
    "body_end_errors",
    "invalid_url_errors",
    "is_plain_origin",
    "other_errors",
    "request_errors",
    "split_origin",
    "transport_errors",
]

#: seconds an idle kept-alive connection is reused (httpx's default)
KEEPALIVE = 5.0
#: a request target httpx would send unchanged: RFC 3986 path characters and
#: well-formed percent escapes (anything else takes httpx's encoding, see ``_target``)
_PLAIN_TARGET = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*")
#: an origin httpx would leave as it is (lower-case ASCII host or IP literal, port)
_PLAIN_NETLOC = re.compile(r"([a-z0-9][a-z0-9.\-]*|\[[0-9a-f:.]+\])(?::([0-9]{1,5}))?")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _loaded(name: str) -> Any:
    """The module ``name`` if some code imported it already, else None: an
    exception class of a library nobody imported cannot be raised."""
    return sys.modules.get(name)


def request_errors() -> tuple[type[Exception], ...]:
    """A request that cannot be sent as asked: retrying does not help."""
    errors: list[type[Exception]] = [h1.LocalProtocolError, h1.UnsupportedProtocol]
    if (core := _loaded("httpcore")) is not None:
        errors += (core.UnsupportedProtocol, core.LocalProtocolError)
    if (hx := _loaded("httpx")) is not None:
        errors += (hx.UnsupportedProtocol, hx.LocalProtocolError)
    return tuple(errors)


def transport_errors() -> tuple[type[Exception], ...]:
    """Connection failures, timeouts, broken answers, undecodable bodies:
    transient."""
    errors: list[type[Exception]] = [h1.TransientHttpError]
    if (core := _loaded("httpcore")) is not None:
        errors += (
            core.NetworkError,
            core.TimeoutException,
            core.RemoteProtocolError,
            core.ProxyError,
            core.ConnectionNotAvailable,
        )
    if (hx := _loaded("httpx")) is not None:
        errors += (hx.TransportError, hx.DecodingError)
    return tuple(errors)


def other_errors() -> tuple[type[Exception], ...]:
    """Anything else httpx raises (``httpx.InvalidURL`` is not among them)."""
    hx = _loaded("httpx")
    return (hx.HTTPError,) if hx is not None else ()


def invalid_url_errors() -> tuple[type[Exception], ...]:
    """A URL httpx cannot parse."""
    hx = _loaded("httpx")
    return (hx.InvalidURL,) if hx is not None else ()


def body_end_errors() -> tuple[type[Exception], ...]:
    """What pulling the rest of an abandoned body may raise (``http._Body``)."""
    errors: list[type[Exception]] = [h1.TransientHttpError]
    if (core := _loaded("httpcore")) is not None:
        errors += (core.NetworkError, core.TimeoutException, core.ProtocolError)
    if (hx := _loaded("httpx")) is not None:
        errors += (hx.HTTPError, hx.StreamError)
    return tuple(errors)


class Connection(Protocol):
    """Sends one GET at a time (the fetcher's slot holds it for a transfer)."""

    async def get(self, url: str, headers: Headers) -> Answer:
        """Send ``GET url`` and return the answer once its headers arrived."""
        ...

    async def aclose(self) -> None:
        """Close the connection."""
        ...


class DirectConnection:
    """The fetcher's own ``Connection``: ``H1Connection`` for ``http://`` (and for
    ``https://`` without ``http2``), httpcore's connection for ``https://`` with
    ``http2`` (ALPN picks HTTP/2 or HTTP/1.1 there). ``tls_context`` builds the TLS
    context on first use."""

    def __init__(
        self, *, tls_context: Callable[[], ssl.SSLContext], http2: bool, timeouts: Timeouts
    ) -> None:
        self._tls_context = tls_context
        self._timeouts = timeouts
        self._http2 = http2
        self._h1 = H1Connection(tls_context=tls_context, timeouts=timeouts, keepalive=KEEPALIVE)
        self._core: CoreConnection | None = None

    async def get(self, url: str, headers: Headers) -> Answer:
        target = _target(url)
        if self._http2 and target.scheme == b"https":
            if self._core is None:
                self._core = CoreConnection(
                    ssl_context=self._tls_context(), http2=True, timeouts=self._timeouts
                )
            await self._h1.aclose()
            return await self._core.send(target, headers)
        return _decoded(await self._h1.get(target, headers))

    async def get_many(
        self,
        urls: Sequence[str],
        headers: Headers,
        each: Callable[[int, Answer], Awaitable[None]],
    ) -> bool:
        """GETs of ``urls`` (one origin) pipelined on the HTTP/1.1 connection, their
        answers, undecoded, handed to ``each`` in order (``H1Connection.get_many``:
        best effort, a failure of the connection ends the batch). False, with nothing
        sent, where this connection does not pipeline: ``https://`` with ``http2``
        (HTTP/2 multiplexes instead)."""
        targets = [_target(url) for url in urls]
        if self._http2 and any(target.scheme == b"https" for target in targets):
            return False
        await self._h1.get_many(targets, headers, each)
        return True

    async def aclose(self) -> None:
        await self._h1.aclose()
        if self._core is not None:
            await self._core.aclose()


class CoreConnection:
    """A ``Connection`` on httpcore's ``AsyncHTTPConnection``; see the module
    docstring."""

    def __init__(self, *, ssl_context: ssl.SSLContext, http2: bool, timeouts: Timeouts) -> None:
        import httpcore

        self._httpcore = httpcore
        self._ssl_context = ssl_context
        self._http2 = http2
        self._extensions = {"timeout": timeouts}
        self._connection: httpcore.AsyncHTTPConnection | None = None
        self._origin: httpcore.Origin | None = None

    async def get(self, url: str, headers: Headers) -> Answer:
        return await self.send(_target(url), headers)

    async def send(self, target: Target, headers: Headers) -> Answer:
        """``get`` with the URL already split (see ``_target``)."""
        httpcore = self._httpcore
        request = httpcore.Request(
            b"GET",
            httpcore.URL(
                scheme=target.scheme, host=target.host, port=target.port, target=target.path
            ),
            headers=[(b"Host", target.netloc), *headers],
            extensions=self._extensions,
        )
        origin = request.url.origin
        connection = await self._connection_for(origin)
        try:
            response = await connection.handle_async_request(request)
        except httpcore.ConnectionNotAvailable:
            # An HTTP/2 connection that will take no new stream (GOAWAY, or the
            # server's stream limit): once more on a fresh connection.
            await self.aclose()
            connection = await self._connection_for(origin)
            response = await connection.handle_async_request(request)
        # As httpx words it: the server's reason phrase (HTTP/1.1), else the
        # standard one (HTTP/2 has none).
        phrase = response.extensions.get("reason_phrase")
        if isinstance(phrase, bytes):
            reason = phrase.decode("ascii", errors="ignore")
        else:
            import httpx

            reason = httpx.codes.get_reason_phrase(response.status)
        answer = Answer(
            response.status, reason, response.headers, response.aiter_stream(), response
        )
        return _decoded(answer)

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(*body_end_errors()):
                await connection.aclose()

    async def _connection_for(self, origin: httpcore.Origin) -> httpcore.AsyncHTTPConnection:
        connection = self._connection
        if connection is not None and (
            origin != self._origin or connection.is_closed() or connection.has_expired()
        ):
            await self.aclose()
            connection = None
        if connection is None:
            connection = self._httpcore.AsyncHTTPConnection(
                origin,
                ssl_context=self._ssl_context,
                keepalive_expiry=KEEPALIVE,
                http1=True,
                http2=self._http2,
            )
            self._connection, self._origin = connection, origin
        return connection


class HttpxConnection:
    """A ``Connection`` through an injected httpx transport (not closed here)."""

    def __init__(self, transport: httpx.AsyncBaseTransport, *, timeouts: Timeouts) -> None:
        self._transport = transport
        self._extensions = {"timeout": timeouts}

    async def get(self, url: str, headers: Headers) -> Answer:
        import httpx

        request = httpx.Request("GET", url, headers=headers, extensions=self._extensions)
        return _from_httpx(await self._transport.handle_async_request(request))

    async def aclose(self) -> None:
        """Nothing: the transport belongs to whoever injected it."""


def _decoded(answer: Answer) -> Answer:
    """``answer``, or, when the server sent a ``Content-Encoding`` other than
    ``identity`` (we ask for ``identity``), the same answer decoded by httpx as
    before (its decoders, its ``DecodingError``)."""
    if plain_body(answer):
        return answer
    import httpx

    return _from_httpx(
        httpx.Response(answer.status, headers=answer.raw_headers, stream=_raw_stream(answer))
    )


def plain_body(answer: Answer) -> bool:
    """Whether ``answer``'s body is the file's bytes as they are: no
    ``Content-Encoding``, or ``identity``."""
    encoding = answer.header("Content-Encoding")
    return encoding is None or encoding.strip().lower() == "identity"


def _from_httpx(response: httpx.Response) -> Answer:
    return Answer(
        response.status_code,
        response.reason_phrase,
        response.headers.raw,
        response.aiter_bytes(),
        response,
    )


def _raw_stream(answer: Answer) -> httpx.AsyncByteStream:
    """``answer``'s raw body as an httpx byte stream (for httpx to decode)."""
    return _raw_stream_class()(answer)


@functools.cache
def _raw_stream_class() -> Callable[[Answer], httpx.AsyncByteStream]:
    import httpx

    class RawStream(httpx.AsyncByteStream):
        def __init__(self, answer: Answer) -> None:
            self._answer = answer

        async def __aiter__(self) -> AsyncIterator[bytes]:
            async for chunk in self._answer.chunks():
                yield chunk

        async def aclose(self) -> None:
            await self._answer.aclose()

    return RawStream


def _target(url: str) -> Target:
    """Where ``GET url`` goes, as httpx would send it; the origin part is parsed
    once per origin."""
    scheme_end = url.find("://")
    path_start = url.find("/", scheme_end + 3) if scheme_end > 0 else -1
    if path_start < 0 or "?" in url or "#" in url:
        return _parse(url)
    path = url[path_start:]
    if not _PLAIN_TARGET.fullmatch(path):
        return _parse(url)
    scheme, host, port, netloc = split_origin(url[:path_start])
    return Target(scheme, host, port, netloc, path.encode("ascii"))


def is_plain_origin(prefix: str) -> bool:
    """Whether ``scheme://host[:port]`` is an http(s) origin ``split_origin`` splits
    by itself (lower-case ASCII host or IP literal, valid port)."""
    scheme, sep, netloc = prefix.partition("://")
    if not sep or scheme not in _DEFAULT_PORTS:
        return False
    match = _PLAIN_NETLOC.fullmatch(netloc)
    return match is not None and (match.group(2) is None or int(match.group(2)) <= 0xFFFF)


@functools.lru_cache(maxsize=64)
def split_origin(prefix: str) -> tuple[bytes, bytes, int | None, bytes]:
    """(scheme, host, port or None for the default, Host header) of
    ``scheme://host[:port]`` as httpx gives them. Plain ASCII origins are split
    here; anything else (IDNA, user info, upper case) is httpx's to parse
    (``httpx.InvalidURL`` when it cannot)."""
    if is_plain_origin(prefix):
        scheme, _, netloc = prefix.partition("://")
        default = _DEFAULT_PORTS[scheme]
        match = _PLAIN_NETLOC.fullmatch(netloc)
        assert match is not None
        host = match.group(1)
        port = int(match.group(2)) if match.group(2) is not None else None
        if port == default:
            port = None
        shown = host if port is None else f"{host}:{port}"
        return scheme.encode(), host.strip("[]").encode(), port, shown.encode()
    import httpx

    parsed = httpx.URL(prefix + "/")
    return parsed.raw_scheme, parsed.raw_host, parsed.port, parsed.netloc


def _parse(url: str) -> Target:
    import httpx

    parsed = httpx.URL(url)
    return Target(parsed.raw_scheme, parsed.raw_host, parsed.port, parsed.netloc, parsed.raw_path)
