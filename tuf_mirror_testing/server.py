"""A loopback HTTP/1.1 server for tests, demos and benchmarks: serves a directory
tree, logs every request, and injects faults on demand.

``serve_directory(root)`` starts a ``ThreadingHTTPServer`` on ``127.0.0.1`` (port 0
by default) in a background thread and yields a ``RepoServer``::

    with serve_directory(tmp_path / "repo") as server:
        server.faults.add("/metadata/timestamp.json", Fault.status(503, retry_after=1), times=2)
        ...  # point the mirror at server.url + "/metadata/"
        assert server.paths() == ["/metadata/2.root.json", "/metadata/timestamp.json"]

What it serves: GET and HEAD of regular files under the root, with ``Content-Length``,
a strong ``ETag`` (a prefix of the sha256 of the content), ``Last-Modified``,
``If-None-Match`` / ``If-Modified-Since`` (304), single ``Range: bytes=`` requests
(206, 416) and ``If-Range``. A request path is percent-decoded to find the file; when
that file does not exist, the raw path is tried as a literal file name, so a published
``metadata/1.%2Fdelegatedrole.json`` is found at the URL that names it verbatim (as TUF
clients request it). Paths with ``..``, ``.`` or empty segments, NUL or backslashes
(after decoding), directories and files outside the root (symlinks included) are 404.
Files are read whole into memory per request: it is meant for test-sized files.

What it does not do: directory listings, TLS, HTTP/2, compression, multi-range
requests, uploads (other methods get 405), or binding anything but a loopback address.

Faults (``Fault``) are matched by the raw request path (exact, or an ``fnmatch``
pattern where ``*`` also crosses ``/``); the first active rule that matches applies,
optionally only ``times`` times. Faults combine with ``|``::

    server.faults.add("/targets/*", Fault.delay(0.5) | Fault.slow_body(1000))

Command line (prints the URL on its first stdout line, serves until killed)::

    python -m tuf_mirror_testing.server DIR [--port N] [--bind 127.0.0.1] [--log-requests]
"""

from __future__ import annotations

import argparse
import contextlib
import email.utils
import fnmatch
import hashlib
import ipaddress
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, ClassVar, Literal
from urllib.parse import unquote, urlsplit

__all__ = [
    "Fault",
    "FaultRule",
    "Faults",
    "RepoServer",
    "RequestRecord",
    "main",
    "serve_directory",
]

_CHUNK = 64 * 1024
_ENDLESS_CHUNK = b"x" * _CHUNK
_JOIN_TIMEOUT = 5.0


class _Stopping(Exception):
    """Raised inside a handler when the server is closing."""


@dataclass(frozen=True, slots=True)
class Fault:
    """What to do wrong when answering a request. Build one with the static
    constructors (``Fault.status(500)``, ``Fault.delay(2.0)``...) and combine several
    with ``|`` (the right-hand side wins where both set the same aspect).

    Order of effects: ``delay`` first; then ``reset`` closes the connection without an
    answer; else ``status`` answers that code (body: ``replace``'s bytes or a short
    text); else ``endless`` streams bytes forever; else the file (or ``replace``'s bytes)
    is served normally, honouring conditional and range headers. ``slow_body`` paces
    and ``truncate`` cuts any body that is sent.
    """

    status_code: int | None = None
    retry_after: int | None = None
    delay_seconds: float = 0.0
    bytes_per_second: int | None = None
    endless_body: bool = False
    declared_length: int | None = None
    truncate_after: int | None = None
    reset_connection: bool = False
    replacement: bytes | None = None

    @staticmethod
    def status(code: int, *, retry_after: int | None = None) -> Fault:
        """Answer with HTTP status ``code`` (and a ``Retry-After: N`` header if given)."""
        if not 100 <= code <= 599:
            raise ValueError(f"not an HTTP status code: {code}")
        return Fault(status_code=code, retry_after=retry_after)

    @staticmethod
    def delay(seconds: float) -> Fault:
        """Wait ``seconds`` before sending the status line and headers."""
        if seconds < 0:
            raise ValueError("delay must be >= 0")
        return Fault(delay_seconds=seconds)

    @staticmethod
    def slow_body(bytes_per_second: int) -> Fault:
        """Send the body at about ``bytes_per_second`` (headers go out at once)."""
        if bytes_per_second <= 0:
            raise ValueError("bytes_per_second must be > 0")
        return Fault(bytes_per_second=bytes_per_second)

    @staticmethod
    def endless(*, content_length: int | None = None) -> Fault:
        """Answer 200 and send ``x`` bytes until the client disconnects. Without
        ``content_length`` there is no ``Content-Length`` (the body ends at connection
        close, which never comes); with it, that (lying, large) length is declared and
        sent in full."""
        if content_length is not None and content_length < 0:
            raise ValueError("content_length must be >= 0")
        return Fault(endless_body=True, declared_length=content_length)

    @staticmethod
    def truncate(after_bytes: int) -> Fault:
        """Declare the full length but close the connection after ``after_bytes`` of
        body."""
        if after_bytes < 0:
            raise ValueError("after_bytes must be >= 0")
        return Fault(truncate_after=after_bytes)

    @staticmethod
    def reset() -> Fault:
        """Read the request, then close the socket with an RST and no answer."""
        return Fault(reset_connection=True)

    @staticmethod
    def replace(body: bytes) -> Fault:
        """Serve ``body`` instead of the file (even where no file exists)."""
        return Fault(replacement=bytes(body))

    def __or__(self, other: Fault) -> Fault:
        """Both faults at once; ``other`` wins where both set the same aspect."""
        if not isinstance(other, Fault):
            return NotImplemented
        default = Fault()
        merged = {
            f.name: (
                getattr(other, f.name)
                if getattr(other, f.name) != getattr(default, f.name)
                else getattr(self, f.name)
            )
            for f in fields(Fault)
        }
        return Fault(**merged)


class FaultRule:
    """A registered fault: which paths, what fault, how many more times. Returned by
    ``Faults.add``; ``hits`` counts the requests it was applied to."""

    __slots__ = ("_lock", "_remaining", "fault", "hits", "pattern")

    def __init__(self, pattern: str, fault: Fault, times: int | None, lock: threading.Lock):
        self.pattern = pattern
        self.fault = fault
        self.hits = 0
        self._remaining = times
        self._lock = lock

    @property
    def remaining(self) -> int | None:
        """Requests this rule still applies to (``None``: unlimited)."""
        with self._lock:
            return self._remaining

    @property
    def active(self) -> bool:
        """Whether the rule can still apply."""
        with self._lock:
            return self._remaining is None or self._remaining > 0

    def matches(self, raw_path: str) -> bool:
        """Whether ``raw_path`` (or its part before ``?``) is this rule's path or glob."""
        candidates = {raw_path, raw_path.split("?", 1)[0]}
        return any(c == self.pattern or fnmatch.fnmatchcase(c, self.pattern) for c in candidates)

    def __repr__(self) -> str:
        return (
            f"FaultRule({self.pattern!r}, {self.fault!r}, "
            f"remaining={self.remaining!r}, hits={self.hits})"
        )


class Faults:
    """The thread-safe set of fault rules of one server, checked in insertion order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []

    def add(self, pattern: str, fault: Fault, *, times: int | None = None) -> FaultRule:
        """Apply ``fault`` to requests whose raw path is ``pattern`` or matches it as an
        ``fnmatch`` glob, for the next ``times`` such requests (``None``: until
        removed)."""
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 (or None)")
        rule = FaultRule(pattern, fault, times, self._lock)
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove(self, rule: FaultRule) -> None:
        """Stop applying ``rule`` (no error if it is already gone)."""
        with self._lock, contextlib.suppress(ValueError):
            self._rules.remove(rule)

    def clear(self) -> None:
        """Remove every rule."""
        with self._lock:
            self._rules.clear()

    @property
    def rules(self) -> list[FaultRule]:
        """The registered rules, in the order they are checked."""
        with self._lock:
            return list(self._rules)

    def take(self, raw_path: str) -> Fault | None:
        """The fault for a request arriving now, counting it against its rule."""
        with self._lock:
            for rule in self._rules:
                if (rule._remaining is None or rule._remaining > 0) and rule.matches(raw_path):
                    if rule._remaining is not None:
                        rule._remaining -= 1
                    rule.hits += 1
                    return rule.fault
        return None


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as the server saw it.

    ``path`` is the raw request target, percent-encoding and query preserved.
    ``status`` is the status sent (0: none, the connection was reset or the request
    is still waiting). ``bytes_sent`` counts body bytes only. ``headers`` has
    lower-cased names. ``complete`` is False while the answer is still being sent.
    """

    method: str
    path: str
    status: int
    bytes_sent: int
    headers: dict[str, str]
    fault: Fault | None = None
    complete: bool = True


class _Entry:
    """The mutable, in-progress form of a RequestRecord (internal)."""

    __slots__ = ("bytes_sent", "complete", "fault", "headers", "method", "path", "status")

    def __init__(self, method: str, path: str, headers: dict[str, str]) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.status = 0
        self.bytes_sent = 0
        self.fault: Fault | None = None
        self.complete = False

    def record(self) -> RequestRecord:
        return RequestRecord(
            method=self.method,
            path=self.path,
            status=self.status,
            bytes_sent=self.bytes_sent,
            headers=dict(self.headers),
            fault=self.fault,
            complete=self.complete,
        )


class RepoServer:
    """A directory served over HTTP on a loopback address, with a request log and
    fault injection. Use ``serve_directory``, or ``start()`` / ``close()``, or ``with``.
    """

    def __init__(
        self,
        root: Path,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        echo: IO[str] | None = None,
    ) -> None:
        if not ipaddress.ip_address(host).is_loopback or ":" in host:
            raise ValueError(f"refusing to bind {host!r}: only IPv4 loopback is allowed")
        self._root = Path(root).resolve()
        self._host = host
        self._requested_port = port
        self._echo = echo
        self.faults = Faults()
        self._log_lock = threading.Condition()
        self._entries: list[_Entry] = []
        self._stopping = threading.Event()
        self._conn_lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> RepoServer:
        """Bind and start serving in a background thread; returns self."""
        if self._httpd is not None:
            raise RuntimeError("server already started")
        httpd = _HTTPServer((self._host, self._requested_port), _Handler, owner=self)
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"RepoServer:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving: interrupt delays and slow bodies, close every connection and
        wait for the handler threads. Idempotent."""
        httpd = self._httpd
        if httpd is None or self._stopping.is_set():
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        with self._conn_lock:
            open_connections = list(self._connections.items())
        for conn, _ in open_connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for _, thread in open_connections:
            thread.join(_JOIN_TIMEOUT)
        if self._thread is not None:
            self._thread.join(_JOIN_TIMEOUT)

    def __enter__(self) -> RepoServer:
        if self._httpd is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- addresses ---------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound TCP port."""
        if self._httpd is None:
            raise RuntimeError("server not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, without a trailing slash."""
        return f"http://{self._host}:{self.port}"

    @property
    def root(self) -> Path:
        """The directory served; assign another one to swap the whole upstream."""
        return self._root

    @root.setter
    def root(self, value: Path) -> None:
        self._root = Path(value).resolve()

    # -- request log -----------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request since the last ``clear_log()``, in arrival order (a
        snapshot: in-flight requests show their progress so far)."""
        with self._log_lock:
            return [entry.record() for entry in self._entries]

    def paths(self) -> list[str]:
        """The raw request paths, in arrival order."""
        with self._log_lock:
            return [entry.path for entry in self._entries]

    def clear_log(self) -> None:
        """Forget the logged requests."""
        with self._log_lock:
            self._entries.clear()

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Block until every logged request is complete (e.g. after a client gave up
        on a slow answer), or raise ``TimeoutError``."""
        with self._log_lock:
            if not self._log_lock.wait_for(
                lambda: all(e.complete for e in self._entries), timeout=timeout
            ):
                raise TimeoutError("requests still in progress")

    # -- internal, called from handler threads ------------------------------------

    def _arrived(self, method: str, path: str, headers: dict[str, str]) -> _Entry:
        entry = _Entry(method, path, headers)
        with self._log_lock:
            self._entries.append(entry)
        return entry

    def _mark_complete(self, entry: _Entry) -> None:
        """Mark ``entry`` complete. Handlers call this just *before* the last bytes of
        an answer go out, so a client never sees an answer before its record does."""
        with self._log_lock:
            if not entry.complete:
                entry.complete = True
                self._log_lock.notify_all()

    def _completed(self, entry: _Entry) -> None:
        self._mark_complete(entry)
        if self._echo is not None:
            with contextlib.suppress(OSError, ValueError):
                print(
                    f"{entry.method} {entry.path} {entry.status} {entry.bytes_sent}",
                    file=self._echo,
                    flush=True,
                )

    def _track(self, conn: socket.socket) -> None:
        with self._conn_lock:
            self._connections[conn] = threading.current_thread()

    def _untrack(self, conn: socket.socket) -> None:
        with self._conn_lock:
            self._connections.pop(conn, None)


@contextlib.contextmanager
def serve_directory(
    root: Path,
    *,
    port: int = 0,
    host: str = "127.0.0.1",
    echo: IO[str] | None = None,
) -> Iterator[RepoServer]:
    """Serve ``root`` on ``host:port`` (port 0: any free port) for the duration of
    the ``with`` block. ``echo``: a stream to print one line per finished request."""
    server = RepoServer(root, port=port, host=host, echo=echo)
    server.start()
    try:
        yield server
    finally:
        server.close()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        *,
        owner: RepoServer,
    ) -> None:
        self.owner = owner
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (getfqdn): skip the DNS lookup.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def handle_error(self, request: object, client_address: object) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError | _Stopping):
            return  # a client that went away, or shutdown: not worth a traceback
        super().handle_error(request, client_address)  # type: ignore[arg-type]


_Range = tuple[int, int] | Literal["unsatisfiable"] | None


def _parse_range(value: str, size: int) -> _Range:
    """A single ``bytes=`` range as (first, last) inclusive, "unsatisfiable", or None
    when the header is to be ignored (malformed, multi-range, other unit)."""
    unit, sep, spec = value.strip().partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    first, last = first.strip(), last.strip()
    if not dash or (first and not first.isdigit()) or (last and not last.isdigit()):
        return None
    if not first:
        if not last:
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            return "unsatisfiable"
        return (max(0, size - suffix), size - 1)
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        return "unsatisfiable"
    end = int(last) if last else size - 1
    return (start, min(end, size - 1))


def _etag_list(value: str) -> list[str]:
    return [tag.strip().removeprefix("W/") for tag in value.split(",") if tag.strip()]


def _parse_http_date(value: str) -> datetime | None:
    try:
        return email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tuf-mirror-testing/1"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 60
    server: _HTTPServer

    _methods_not_allowed: ClassVar[tuple[str, ...]] = ("POST", "PUT", "DELETE", "PATCH")

    def log_message(self, format: str, *args: object) -> None:
        """Silence the stdlib's stderr logging (the owner keeps a log)."""

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection)

    def finish(self) -> None:
        try:
            with contextlib.suppress(OSError):
                super().finish()
        finally:
            self.server.owner._untrack(self.connection)

    def do_GET(self) -> None:
        self._handle(head=False)

    def do_HEAD(self) -> None:
        self._handle(head=True)

    def do_POST(self) -> None:
        self._not_allowed()

    do_PUT = do_DELETE = do_PATCH = do_POST

    # -- plumbing ----------------------------------------------------------------

    @property
    def _owner(self) -> RepoServer:
        return self.server.owner

    def _raw_path(self) -> str:
        words = self.requestline.split()
        return words[1] if len(words) >= 2 else self.path

    def _not_allowed(self) -> None:
        entry = self._owner._arrived(self.command, self._raw_path(), self._header_dict())
        try:
            self.close_connection = True
            self._send(entry, 405, {"Allow": "GET, HEAD"}, b"method not allowed\n", None)
        except OSError:
            self.close_connection = True
        finally:
            self._owner._completed(entry)

    def _header_dict(self) -> dict[str, str]:
        return {name.lower(): value for name, value in self.headers.items()}

    def _handle(self, *, head: bool) -> None:
        raw = self._raw_path()
        entry = self._owner._arrived(self.command, raw, self._header_dict())
        fault = self._owner.faults.take(raw)
        entry.fault = fault
        try:
            self._respond(entry, raw, fault, head=head)
        except (OSError, _Stopping):
            self.close_connection = True
        finally:
            self._owner._completed(entry)

    def _respond(self, entry: _Entry, raw: str, fault: Fault | None, *, head: bool) -> None:
        delay = fault.delay_seconds if fault is not None else 0.0
        if delay > 0 and self._owner._stopping.wait(delay):
            raise _Stopping
        if fault is not None and fault.reset_connection:
            self._reset(entry)
            return
        if fault is not None and fault.status_code is not None:
            code = fault.status_code
            body = fault.replacement
            if body is None:
                body = f"injected fault: HTTP {code}\n".encode()
            headers = {"Content-Type": "text/plain"}
            if fault.retry_after is not None:
                headers["Retry-After"] = str(fault.retry_after)
            self._send(entry, code, headers, b"" if head else body, fault, length=len(body))
            return
        if fault is not None and fault.endless_body:
            self._send_endless(entry, fault, head=head)
            return

        found = self._load(raw)
        if fault is not None and fault.replacement is not None:
            mtime = found[1] if found is not None else time.time()
            found = (fault.replacement, mtime)
        if found is None:
            body = b"not found\n"
            headers = {"Content-Type": "text/plain"}
            self._send(entry, 404, headers, b"" if head else body, fault, length=len(body))
            return
        data, mtime = found
        etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
        last_modified = email.utils.formatdate(mtime, usegmt=True)
        json = raw.split("?", 1)[0].endswith(".json")
        headers = {
            "Content-Type": "application/json" if json else "application/octet-stream",
            "ETag": etag,
            "Last-Modified": last_modified,
            "Accept-Ranges": "bytes",
        }
        if self._not_modified(etag, mtime):
            self._send(entry, 304, headers, b"", fault, length=None)
            return
        range_header = self.headers.get("Range")
        if range_header is not None and not head and self._if_range_holds(etag, last_modified):
            wanted = _parse_range(range_header, len(data))
            if wanted == "unsatisfiable":
                headers["Content-Range"] = f"bytes */{len(data)}"
                self._send(entry, 416, headers, b"", fault, length=0)
                return
            if wanted is not None:
                first, last = wanted
                headers["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
                part = data[first : last + 1]
                self._send(entry, 206, headers, part, fault, length=len(part))
                return
        self._send(entry, 200, headers, b"" if head else data, fault, length=len(data))

    def _load(self, raw: str) -> tuple[bytes, float] | None:
        """The file a raw request path names, as (content, mtime), or None."""
        path = urlsplit(raw).path if not raw.startswith("/") else raw.split("?", 1)[0]
        path = path.split("#", 1)[0]
        if not path.startswith("/"):
            return None
        try:
            decoded = unquote(path, errors="strict")
        except UnicodeDecodeError:
            return None
        decoded_segments = decoded[1:].split("/")
        if any(s in ("", ".", "..") or "\\" in s or "\0" in s for s in decoded_segments):
            return None
        root = self._owner.root
        candidates = [decoded_segments]
        if decoded != path:
            candidates.append(path[1:].split("/"))
        for segments in candidates:
            try:
                real = root.joinpath(*segments).resolve(strict=True)
                if not real.is_relative_to(root) or not real.is_file():
                    continue
                data = real.read_bytes()
                mtime = real.stat().st_mtime
            except (OSError, RuntimeError):
                continue
            return data, mtime
        return None

    def _not_modified(self, etag: str, mtime: float) -> bool:
        if_none_match = self.headers.get("If-None-Match")
        if if_none_match is not None:
            tags = _etag_list(if_none_match)
            return "*" in tags or etag in tags
        if_modified_since = self.headers.get("If-Modified-Since")
        if if_modified_since is not None:
            since = _parse_http_date(if_modified_since)
            if since is not None and since.tzinfo is not None:
                return int(mtime) <= since.timestamp()
        return False

    def _if_range_holds(self, etag: str, last_modified: str) -> bool:
        if_range = self.headers.get("If-Range")
        if if_range is None:
            return True
        if_range = if_range.strip()
        if if_range.startswith('"'):
            return if_range == etag
        if if_range.startswith("W/"):
            return False  # weak validators never match If-Range
        return if_range == last_modified

    def _send(
        self,
        entry: _Entry,
        code: int,
        headers: dict[str, str],
        body: bytes,
        fault: Fault | None,
        *,
        length: int | None = 0,
    ) -> None:
        """Status, headers (``Content-Length: length`` unless None), then ``body``
        (empty for HEAD), with the fault's pacing and truncation."""
        entry.status = code
        self.send_response(code)
        for name, value in headers.items():
            self.send_header(name, value)
        if length is not None:
            self.send_header("Content-Length", str(length))
        truncate = fault.truncate_after if fault is not None else None
        if truncate is not None and truncate < len(body):
            self.send_header("Connection", "close")
            body = body[:truncate]
        if not body:
            self._owner._mark_complete(entry)
        self.end_headers()
        if body:
            rate = fault.bytes_per_second if fault is not None else None
            self._write_body(entry, [body], rate, total=len(body))

    def _send_endless(self, entry: _Entry, fault: Fault, *, head: bool) -> None:
        entry.status = 200
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if fault.declared_length is not None:
            self.send_header("Content-Length", str(fault.declared_length))
        else:
            self.send_header("Connection", "close")
        if head:
            self._owner._mark_complete(entry)
        self.end_headers()
        if head:
            return
        limit = fault.declared_length
        if fault.truncate_after is not None:
            self.close_connection = True
            limit = fault.truncate_after if limit is None else min(limit, fault.truncate_after)
        self._write_body(entry, _endless(limit), fault.bytes_per_second, total=limit)

    def _write_body(
        self, entry: _Entry, chunks: Iterable[bytes], rate: int | None, *, total: int | None
    ) -> None:
        """Write ``chunks`` (``total`` bytes in all, None: unknown), paced at ``rate``
        bytes/s if given, counting into the entry as it goes."""
        stopping = self._owner._stopping
        started = time.monotonic()
        sent = 0
        step = _CHUNK if rate is None else max(1, min(_CHUNK, rate // 20))
        for chunk in chunks:
            view = memoryview(chunk)
            for offset in range(0, len(view), step):
                if stopping.is_set():
                    raise _Stopping
                if rate is not None:
                    wait = started + sent / rate - time.monotonic()
                    if wait > 0 and stopping.wait(wait):
                        raise _Stopping
                piece = view[offset : offset + step]
                entry.bytes_sent = sent + len(piece)
                if total is not None and entry.bytes_sent >= total:
                    self._owner._mark_complete(entry)
                try:
                    self.wfile.write(piece)
                except OSError:
                    entry.bytes_sent = sent
                    raise
                sent += len(piece)

    def _reset(self, entry: _Entry) -> None:
        """Close the connection with an RST (SO_LINGER 0), answering nothing."""
        self.close_connection = True
        conn = self.connection
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._owner._mark_complete(entry)
        # The socket only really closes once its buffered reader is closed too (the
        # writer holds no reference to the descriptor).
        with contextlib.suppress(OSError):
            self.rfile.close()
        conn.close()


def _endless(limit: int | None) -> Iterator[bytes]:
    remaining = limit
    while remaining is None or remaining > 0:
        if remaining is None:
            yield _ENDLESS_CHUNK
        else:
            chunk = _ENDLESS_CHUNK[:remaining]
            remaining -= len(chunk)
            yield chunk


def main(argv: list[str] | None = None) -> int:
    """``python -m tuf_mirror_testing.server DIR``: print the URL, serve until killed."""
    parser = argparse.ArgumentParser(
        prog="python -m tuf_mirror_testing.server",
        description="Serve a directory over HTTP on a loopback address (tests and demos).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("directory", type=Path, help="directory to serve")
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: any free port)")
    parser.add_argument("--bind", default="127.0.0.1", help="loopback IPv4 address to bind")
    parser.add_argument(
        "--log-requests", action="store_true", help="print one line per request on stderr"
    )
    args = parser.parse_args(argv)
    try:
        loopback = ipaddress.IPv4Address(args.bind).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        parser.error(f"--bind must be an IPv4 loopback address, not {args.bind!r}")
    if not args.directory.is_dir():
        parser.error(f"not a directory: {args.directory}")

    def _terminate(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _terminate)
    echo = sys.stderr if args.log_requests else None
    with serve_directory(args.directory, port=args.port, host=args.bind, echo=echo) as server:
        print(server.url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
