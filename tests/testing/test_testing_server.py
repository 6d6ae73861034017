"""Tests of tuf_mirror_testing.server: the loopback HTTP server used by the other tests."""

from __future__ import annotations

import email.utils
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio

from tuf_mirror_testing.server import Fault, RepoServer, main, serve_directory

TIMESTAMP = b'{"signed": {"version": 1}}\n'
TARGET = bytes(range(256)) * 4


@pytest.fixture
def root(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "metadata").mkdir(parents=True)
    (repo / "targets" / "a").mkdir(parents=True)
    (repo / "metadata" / "timestamp.json").write_bytes(TIMESTAMP)
    (repo / "metadata" / "1.%2Fdelegated.json").write_bytes(b"encoded role")
    (repo / "targets" / "a" / "file.bin").write_bytes(TARGET)
    (repo / "targets" / "with space.txt").write_bytes(b"spaced")
    (tmp_path / "secret.txt").write_bytes(b"outside")
    return repo


@pytest.fixture
def server(root: Path) -> Iterator[RepoServer]:
    with serve_directory(root) as srv:
        yield srv


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as c:
        yield c


def raw_request(server: RepoServer, request_line: str) -> bytes:
    """Send one request line verbatim (no client-side normalisation); return the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(f"{request_line}\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# -- plain serving ---------------------------------------------------------------


def test_get_serves_file_with_length_and_validators(
    server: RepoServer, client: httpx.Client
) -> None:
    """GET returns the file's bytes with Content-Length, a strong ETag and Last-Modified."""
    assert server.url.startswith("http://127.0.0.1:")
    assert not server.url.endswith("/")
    response = client.get(f"{server.url}/metadata/timestamp.json")
    assert response.status_code == 200
    assert response.content == TIMESTAMP
    assert response.headers["content-length"] == str(len(TIMESTAMP))
    assert response.headers["etag"].startswith('"')
    assert not response.headers["etag"].startswith("W/")
    assert email.utils.parsedate_to_datetime(response.headers["last-modified"]) is not None
    assert response.http_version == "HTTP/1.1"


def test_head_sends_headers_without_body(server: RepoServer, client: httpx.Client) -> None:
    """HEAD answers the GET headers (length included) and no body; it is logged."""
    get = client.get(f"{server.url}/targets/a/file.bin")
    head = client.head(f"{server.url}/targets/a/file.bin")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(TARGET))
    assert head.headers["etag"] == get.headers["etag"]
    assert [(r.method, r.bytes_sent) for r in server.requests] == [
        ("GET", len(TARGET)),
        ("HEAD", 0),
    ]


def test_missing_files_and_directories_are_404(server: RepoServer, client: httpx.Client) -> None:
    """Missing files, directories (no listing) and empty segments answer 404."""
    for path in ["/metadata/2.root.json", "/metadata", "/metadata/", "/", "/targets//a/file.bin"]:
        assert client.get(f"{server.url}{path}").status_code == 404, path
    assert [r.status for r in server.requests] == [404] * 5


def test_paths_outside_root_are_refused(server: RepoServer) -> None:
    """``..`` (literal or percent-encoded), backslashes and NUL never reach outside root."""
    for target in [
        "/../secret.txt",
        "/%2E%2E/secret.txt",
        "/metadata/..%2F..%2Fsecret.txt",
        "/metadata/%5C..%5Csecret.txt",
        "/metadata/timestamp.json%00",
    ]:
        answer = raw_request(server, f"GET {target} HTTP/1.1")
        assert answer.startswith(b"HTTP/1.1 404"), target
        assert b"outside" not in answer
    assert server.paths()[0] == "/../secret.txt"


def test_symlink_out_of_root_is_404(root: Path, server: RepoServer, client: httpx.Client) -> None:
    """A symlink inside the root pointing outside it is not followed."""
    (root / "escape.txt").symlink_to(root.parent / "secret.txt")
    assert client.get(f"{server.url}/escape.txt").status_code == 404


def test_percent_encoded_names(server: RepoServer, client: httpx.Client) -> None:
    """A path is decoded to find the file, else taken literally (TUF's encoded role
    file names); the log keeps the raw path as received."""
    response = client.get(f"{server.url}/metadata/1.%2Fdelegated.json")
    assert response.content == b"encoded role"
    assert client.get(f"{server.url}/targets/with%20space.txt").content == b"spaced"
    assert server.paths() == ["/metadata/1.%2Fdelegated.json", "/targets/with%20space.txt"]


def test_log_keeps_arrival_order_headers_and_clears(
    server: RepoServer, client: httpx.Client
) -> None:
    """Every request (404s too) is logged in order with status, body bytes and
    lower-cased headers; clear_log forgets them."""
    client.get(f"{server.url}/metadata/2.root.json")
    client.get(f"{server.url}/metadata/timestamp.json?x=1", headers={"X-Test": "yes"})
    records = server.requests
    assert [(r.method, r.path, r.status) for r in records] == [
        ("GET", "/metadata/2.root.json", 404),
        ("GET", "/metadata/timestamp.json?x=1", 200),
    ]
    assert records[1].bytes_sent == len(TIMESTAMP)
    assert records[1].headers["x-test"] == "yes"
    assert all(r.complete and r.fault is None for r in records)
    server.clear_log()
    assert server.requests == []
    assert server.paths() == []


def test_other_methods_are_405(server: RepoServer, client: httpx.Client) -> None:
    """Uploads are refused with 405 and logged."""
    response = client.put(f"{server.url}/metadata/timestamp.json", content=b"x")
    assert response.status_code == 405
    assert server.requests[0].method == "PUT"
    assert (server.root / "metadata" / "timestamp.json").read_bytes() == TIMESTAMP


def test_root_can_be_modified_and_swapped(
    root: Path, tmp_path: Path, server: RepoServer, client: httpx.Client
) -> None:
    """Changes on disk are served at once; assigning ``root`` swaps the whole tree."""
    url = f"{server.url}/metadata/timestamp.json"
    (root / "metadata" / "timestamp.json").write_bytes(b"v2")
    assert client.get(url).content == b"v2"
    other = tmp_path / "other" / "metadata"
    other.mkdir(parents=True)
    (other / "timestamp.json").write_bytes(b"other")
    server.root = other.parent
    assert client.get(url).content == b"other"


def test_keep_alive_and_concurrency(server: RepoServer) -> None:
    """Many concurrent keep-alive clients get every answer right."""
    errors: list[BaseException] = []

    def worker() -> None:
        with httpx.Client(timeout=5.0) as c:
            for _ in range(25):
                try:
                    assert c.get(f"{server.url}/targets/a/file.bin").content == TARGET
                except BaseException as exc:  # collected and re-checked below
                    errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(server.requests) == 200
    assert {r.status for r in server.requests} == {200}


# -- conditional requests and ranges ---------------------------------------------


def test_if_none_match_gives_304_until_content_changes(
    root: Path, server: RepoServer, client: httpx.Client
) -> None:
    """A matching If-None-Match gets 304 with no body; new content gets a new ETag."""
    url = f"{server.url}/metadata/timestamp.json"
    etag = client.get(url).headers["etag"]
    not_modified = client.get(url, headers={"If-None-Match": etag})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    assert not_modified.headers["etag"] == etag
    assert client.get(url, headers={"If-None-Match": f'W/{etag}, "zz"'}).status_code == 304
    (root / "metadata" / "timestamp.json").write_bytes(TIMESTAMP.replace(b"1", b"2"))
    changed = client.get(url, headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert [r.status for r in server.requests] == [200, 304, 304, 200]


def test_if_modified_since(server: RepoServer, client: httpx.Client) -> None:
    """If-Modified-Since at or after Last-Modified gets 304; an older date gets 200."""
    url = f"{server.url}/metadata/timestamp.json"
    last_modified = client.get(url).headers["last-modified"]
    assert client.get(url, headers={"If-Modified-Since": last_modified}).status_code == 304
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert client.get(url, headers={"If-Modified-Since": old}).status_code == 200


@pytest.mark.parametrize(
    "case",
    [
        ("bytes=1000-", 206, TARGET[1000:], "bytes 1000-1023/1024"),
        ("bytes=10-19", 206, TARGET[10:20], "bytes 10-19/1024"),
        ("bytes=1000-5000", 206, TARGET[1000:], "bytes 1000-1023/1024"),
        ("bytes=-4", 206, TARGET[-4:], "bytes 1020-1023/1024"),
        ("bytes=1024-", 416, b"", "bytes */1024"),
        ("bytes=0-1,5-6", 200, TARGET, None),
        ("items=0-1", 200, TARGET, None),
    ],
)
def test_range_requests(
    server: RepoServer, client: httpx.Client, case: tuple[str, int, bytes, str | None]
) -> None:
    """Single byte ranges get 206 + Content-Range, past-the-end 416, others the whole file."""
    header, status, content, content_range = case
    response = client.get(f"{server.url}/targets/a/file.bin", headers={"Range": header})
    assert response.status_code == status
    assert response.content == content
    assert response.headers.get("content-range") == content_range
    assert server.requests[0].bytes_sent == len(content)


def test_if_range(server: RepoServer, client: httpx.Client) -> None:
    """If-Range with the current ETag honours Range; a stale ETag gets the full 200."""
    url = f"{server.url}/targets/a/file.bin"
    etag = client.head(url).headers["etag"]
    partial = client.get(url, headers={"Range": "bytes=100-", "If-Range": etag})
    assert partial.status_code == 206
    assert partial.content == TARGET[100:]
    stale = client.get(url, headers={"Range": "bytes=100-", "If-Range": '"stale"'})
    assert stale.status_code == 200
    assert stale.content == TARGET


# -- faults ------------------------------------------------------------------------


def test_status_fault_with_retry_after_for_n_requests(
    server: RepoServer, client: httpx.Client
) -> None:
    """A status fault with ``times`` answers that code that many times, then stops."""
    url = f"{server.url}/metadata/timestamp.json"
    rule = server.faults.add("/metadata/timestamp.json", Fault.status(503, retry_after=7), times=2)
    first, second, third = client.get(url), client.get(url), client.get(url)
    assert (first.status_code, second.status_code, third.status_code) == (503, 503, 200)
    assert first.headers["retry-after"] == "7"
    assert third.content == TIMESTAMP
    assert rule.hits == 2
    assert rule.remaining == 0
    assert not rule.active
    assert [r.fault for r in server.requests] == [Fault.status(503, retry_after=7)] * 2 + [None]


def test_glob_fault_and_clear(server: RepoServer, client: httpx.Client) -> None:
    """A glob rule applies to every matching path until removed; clear() removes all."""
    server.faults.add("/targets/*", Fault.status(500))
    assert client.get(f"{server.url}/targets/a/file.bin").status_code == 500
    assert client.get(f"{server.url}/targets/with%20space.txt").status_code == 500
    assert client.get(f"{server.url}/metadata/timestamp.json").status_code == 200
    server.faults.clear()
    assert client.get(f"{server.url}/targets/a/file.bin").status_code == 200


def test_first_matching_rule_wins_and_remove(server: RepoServer, client: httpx.Client) -> None:
    """Rules are checked in insertion order; a removed rule no longer applies."""
    url = f"{server.url}/metadata/timestamp.json"
    first = server.faults.add("/metadata/*", Fault.status(502))
    server.faults.add("/metadata/timestamp.json", Fault.status(404))
    assert client.get(url).status_code == 502
    server.faults.remove(first)
    assert client.get(url).status_code == 404


def test_replace_fault(server: RepoServer, client: httpx.Client) -> None:
    """replace() serves other bytes (with a matching length and ETag), even for a
    path that has no file."""
    url = f"{server.url}/metadata/timestamp.json"
    original_etag = client.get(url).headers["etag"]
    server.faults.add("/metadata/timestamp.json", Fault.replace(b"evil"), times=1)
    server.faults.add("/metadata/9.root.json", Fault.replace(b"made up"))
    replaced = client.get(url)
    assert replaced.content == b"evil"
    assert replaced.headers["etag"] != original_etag
    assert client.get(f"{server.url}/metadata/9.root.json").content == b"made up"
    assert client.get(url).content == TIMESTAMP


def test_delay_fault_delays_headers(server: RepoServer, client: httpx.Client) -> None:
    """delay() holds the answer back; a client timeout fires; close() does not wait."""
    server.faults.add("/metadata/timestamp.json", Fault.delay(0.3), times=1)
    started = time.monotonic()
    assert client.get(f"{server.url}/metadata/timestamp.json").content == TIMESTAMP
    assert time.monotonic() - started >= 0.3
    server.faults.add("/metadata/timestamp.json", Fault.delay(60), times=1)
    with pytest.raises(httpx.ReadTimeout):
        client.get(f"{server.url}/metadata/timestamp.json", timeout=0.1)
    assert not server.requests[-1].complete
    started = time.monotonic()
    server.close()
    assert time.monotonic() - started < 5


def test_slow_body_fault(server: RepoServer, client: httpx.Client) -> None:
    """slow_body() paces the body (headers first) and still delivers every byte."""
    server.faults.add("/targets/a/file.bin", Fault.slow_body(4096), times=1)
    started = time.monotonic()
    response = client.get(f"{server.url}/targets/a/file.bin")
    assert response.content == TARGET
    # 1024 bytes at 4096 B/s in 204-byte steps: the last step leaves >= 0.19 s in.
    assert time.monotonic() - started >= 0.18


def test_endless_fault_without_length(server: RepoServer, client: httpx.Client) -> None:
    """endless() streams bytes with no Content-Length until the client hangs up."""
    server.faults.add("/metadata/timestamp.json", Fault.endless(), times=1)
    received = 0
    with client.stream("GET", f"{server.url}/metadata/timestamp.json") as response:
        assert "content-length" not in response.headers
        for chunk in response.iter_raw():
            received += len(chunk)
            if received > 3_000_000:
                break
    assert received > 3_000_000
    server.wait_idle()
    assert server.requests[0].bytes_sent >= 3_000_000
    assert client.get(f"{server.url}/metadata/timestamp.json").content == TIMESTAMP


def test_endless_fault_with_lying_length(server: RepoServer, client: httpx.Client) -> None:
    """endless(content_length=N) declares a large length and keeps sending."""
    server.faults.add("/metadata/timestamp.json", Fault.endless(content_length=10**12), times=1)
    received = 0
    with client.stream("GET", f"{server.url}/metadata/timestamp.json") as response:
        assert response.headers["content-length"] == str(10**12)
        for chunk in response.iter_raw():
            received += len(chunk)
            if received > 1_000_000:
                break
    assert received > 1_000_000


def test_truncate_fault(server: RepoServer, client: httpx.Client) -> None:
    """truncate() declares the full length, sends part of the body, closes."""
    server.faults.add("/targets/a/file.bin", Fault.truncate(100), times=1)
    received: list[bytes] = []

    def read_all() -> None:
        with client.stream("GET", f"{server.url}/targets/a/file.bin") as response:
            assert response.headers["content-length"] == str(len(TARGET))
            received.extend(response.iter_raw())

    with pytest.raises(httpx.RemoteProtocolError):
        read_all()
    assert b"".join(received) == TARGET[:100]
    server.wait_idle()
    assert server.requests[0].bytes_sent == 100
    assert client.get(f"{server.url}/targets/a/file.bin").content == TARGET


def test_truncate_applies_to_ranges(server: RepoServer, client: httpx.Client) -> None:
    """A truncated 206 is cut the same way (for resume tests)."""
    server.faults.add("/targets/a/file.bin", Fault.truncate(10), times=1)
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(f"{server.url}/targets/a/file.bin", headers={"Range": "bytes=500-"})
    server.wait_idle()
    assert (server.requests[0].status, server.requests[0].bytes_sent) == (206, 10)


def test_reset_fault(server: RepoServer, client: httpx.Client) -> None:
    """reset() closes the connection with no answer; the log shows status 0."""
    server.faults.add("/metadata/timestamp.json", Fault.reset(), times=1)
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        client.get(f"{server.url}/metadata/timestamp.json")
    server.wait_idle()
    assert server.requests[0].status == 0
    assert client.get(f"{server.url}/metadata/timestamp.json").content == TIMESTAMP


def test_faults_combine(server: RepoServer, client: httpx.Client) -> None:
    """``|`` combines aspects: a status with a replaced body, a slow truncated file."""
    server.faults.add("/a", Fault.status(500) | Fault.replace(b"oops"), times=1)
    response = client.get(f"{server.url}/a")
    assert (response.status_code, response.content) == (500, b"oops")
    combined = Fault.slow_body(100_000) | Fault.truncate(3)
    assert (combined.bytes_per_second, combined.truncate_after) == (100_000, 3)


def test_fault_constructors_validate() -> None:
    """Nonsense fault parameters are refused at construction."""
    with pytest.raises(ValueError):
        Fault.status(42)
    with pytest.raises(ValueError):
        Fault.slow_body(0)
    with pytest.raises(ValueError):
        Fault.truncate(-1)


def test_only_loopback() -> None:
    """The server refuses to bind a non-loopback address."""
    with pytest.raises(ValueError):
        RepoServer(Path(), host="0.0.0.0")
    with pytest.raises(SystemExit):
        main(["--bind", "0.0.0.0", "."])


# -- from trio and from the command line --------------------------------------------


async def test_usable_from_trio(server: RepoServer) -> None:
    """A trio test can use the server with an httpx AsyncClient."""
    async with httpx.AsyncClient() as client, trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(client.get, f"{server.url}/targets/a/file.bin")
    assert server.paths() == ["/targets/a/file.bin"] * 5


@pytest.mark.slow
def test_command_line_prints_url_and_serves(root: Path) -> None:
    """``python -m tuf_mirror_testing.server DIR`` prints its URL first, then serves."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tuf_mirror_testing.server", str(root), "--log-requests"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{url}/metadata/timestamp.json").content == TIMESTAMP
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "GET /metadata/timestamp.json 200" in stderr
