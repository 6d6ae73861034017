"""An upstream directory with awkward names, served by the loopback test server;
and a scripted HTTP server that answers each request with exactly the bytes a test
gives (``scripted``)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mirror.fetch.http import HttpFetcher
from mirror.fetch.retry import RetryPolicy
from tuf_mirror_testing.server import RepoServer, serve_directory

TIMESTAMP = b'{"signed": {"_type": "timestamp", "version": 7}}\n'
TARGET = bytes(range(256)) * 1000  # 256 000 bytes
ENCODED_ROLE = b'{"signed": {"_type": "targets"}}\n'
ODD_TARGET = b"a target whose name has a space and a percent sign\n"

#: fast, deterministic retries for tests against a real server (counts, not time)
FAST_RETRY = RetryPolicy(attempts=3, initial=0.001, maximum=0.001, jitter=False)


@pytest.fixture
def upstream(tmp_path: Path) -> Path:
    """metadata/timestamp.json, metadata/1.a%2Fb.json (a role name percent-encoded in
    the file name), targets/dir/file.bin and targets/a b%c."""
    root = tmp_path / "upstream"
    (root / "metadata").mkdir(parents=True)
    (root / "targets" / "dir").mkdir(parents=True)
    (root / "metadata" / "timestamp.json").write_bytes(TIMESTAMP)
    (root / "metadata" / "1.a%2Fb.json").write_bytes(ENCODED_ROLE)
    (root / "targets" / "dir" / "file.bin").write_bytes(TARGET)
    (root / "targets" / "a b%c").write_bytes(ODD_TARGET)
    (tmp_path / "outside.txt").write_bytes(b"outside the upstream")
    return root


@pytest.fixture
def server(upstream: Path) -> Iterator[RepoServer]:
    with serve_directory(upstream) as srv:
        yield srv


#: answer bytes for the n-th request (0-based) of the whole server; None hangs up
Script = Callable[[int, bytes], bytes | None]


@dataclass
class Scripted:
    """A loopback server: per request, the script's bytes are sent; ``close_after``
    answers end with the server closing the connection."""

    script: Script
    close_after: set[int] = field(default_factory=set)
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    url: str = ""
    #: set once the server closed a connection
    hung_up: threading.Event = field(default_factory=threading.Event)
    #: per request: the bytes of later requests the server already held when it had
    #: read this one's head (more than 0: the client pipelined)
    held_after: list[int] = field(default_factory=list)


def _read_head(conn: socket.socket, pending: bytearray) -> bytes | None:
    while b"\r\n\r\n" not in pending:
        data = conn.recv(65536)
        if not data:
            return None
        pending += data
    end = pending.index(b"\r\n\r\n")
    head = bytes(pending[:end])
    del pending[: end + 4]
    return head


@pytest.fixture
def scripted() -> Iterator[Callable[..., Scripted]]:
    listeners: list[socket.socket] = []

    def start(script: Script, *, close_after: set[int] | None = None) -> Scripted:
        state = Scripted(script, close_after or set())
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)
        state.url = f"http://127.0.0.1:{listener.getsockname()[1]}"

        def serve(conn: socket.socket) -> None:
            pending = bytearray()
            try:
                with conn:
                    while (head := _read_head(conn, pending)) is not None:
                        index = len(state.requests)
                        state.requests.append(head)
                        state.held_after.append(len(pending))
                        answer = state.script(index, head)
                        if answer is None:
                            return
                        conn.sendall(answer)
                        if index in state.close_after:
                            return
            except ConnectionError:
                return  # the client went away in the middle of an answer
            finally:
                state.hung_up.set()

        def accept() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                state.connections += 1
                threading.Thread(target=serve, args=(conn,), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
        return state

    yield start
    for listener in listeners:
        listener.close()


def ok(body: bytes, *extra: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (
        len(body),
        b"".join(line + b"\r\n" for line in extra),
        body,
    )


def fetcher_for(server: Scripted, **options: object) -> HttpFetcher:
    return HttpFetcher(
        server.url + "/metadata",
        server.url + "/targets",
        retry=options.pop("retry", FAST_RETRY),  # type: ignore[arg-type]
        **options,  # type: ignore[arg-type]
    )
