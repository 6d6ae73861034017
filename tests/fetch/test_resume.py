"""Resumable downloads: a body cut short is continued with Range/If-Range on the
retry (only the remainder is sent, counted in the server's log), across runs through
a partial file and its sidecar in ``partial_dir``, and started over when the file
changed upstream or the server does not continue the bytes held."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
import trio

from mirror.errors import FetchError, LengthOrHashMismatchError, NotFoundError
from mirror.fetch import spool as spool_module
from mirror.fetch.http import HttpFetcher
from mirror.fetch.retry import RetryPolicy
from mirror.fetch.spool import SIDECAR_SUFFIX, partial_name, remove_partials
from tuf_mirror_testing.server import Fault, RepoServer

from .conftest import FAST_RETRY, TARGET
from .test_http_mock_transport import BASE, PacedStream

NAME = "dir/file.bin"
PATH = "/targets/dir/file.bin"
SHA256 = hashlib.sha256(TARGET).hexdigest()


def http_fetcher(server: RepoServer, partial_dir: Path | None = None) -> HttpFetcher:
    return HttpFetcher(
        server.url + "/metadata",
        server.url + "/targets",
        retry=FAST_RETRY,
        partial_dir=partial_dir,
    )


@pytest.fixture
async def fetcher(server: RepoServer) -> AsyncIterator[HttpFetcher]:
    fetcher = http_fetcher(server)
    try:
        yield fetcher
    finally:
        await fetcher.aclose()


def partial_of(partial_dir: Path, length: int = len(TARGET)) -> Path:
    return partial_dir / partial_name("targets", NAME, length)


def sidecar_of(partial: Path) -> Path:
    return partial.with_name(partial.name + SIDECAR_SUFFIX)


async def fetch_target(fetcher: HttpFetcher, dest: Path) -> tuple[int, str, int]:
    """Fetch the test target to ``dest``: (length, sha256, resumed_from)."""
    fetched = await fetcher.fetch_to_file(
        "targets", NAME, dest, length=len(TARGET), algorithms=("sha256",)
    )
    return fetched.length, fetched.digests["sha256"], fetched.resumed_from


# -- within one run ---------------------------------------------------------------------


async def test_disconnect_mid_file_resumes_with_range(
    fetcher: HttpFetcher, server: RepoServer, tmp_path: Path
) -> None:
    """A connection closed after 100 000 bytes: the retry asks for bytes=100000- with
    If-Range (the first answer's ETag) and the server sends only the remainder; the
    whole file verifies and no byte is received twice."""
    server.faults.add(PATH, Fault.truncate(100_000), times=1)
    dest = tmp_path / "spool"

    result = await fetch_target(fetcher, dest)

    assert result == (len(TARGET), SHA256, 100_000)
    assert dest.read_bytes() == TARGET
    first, second = server.requests
    assert (first.status, first.bytes_sent) == (200, 100_000)
    assert second.headers["range"] == "bytes=100000-"
    assert second.headers["if-range"].startswith('"')
    assert (second.status, second.bytes_sent) == (206, len(TARGET) - 100_000)
    assert fetcher.stats.bytes_received == len(TARGET)
    assert (fetcher.stats.resumed, fetcher.stats.retries) == (1, 1)


async def test_each_retry_continues_where_the_last_stopped(
    fetcher: HttpFetcher, server: RepoServer, tmp_path: Path
) -> None:
    """Two cuts in a row: the second and third requests start at 60 000 and 120 000."""
    server.faults.add(PATH, Fault.truncate(60_000), times=2)

    result = await fetch_target(fetcher, tmp_path / "spool")

    assert result == (len(TARGET), SHA256, 120_000)
    assert [r.headers.get("range") for r in server.requests] == [
        None,
        "bytes=60000-",
        "bytes=120000-",
    ]
    assert sum(r.bytes_sent for r in server.requests) == len(TARGET)


async def test_file_changed_between_attempts_starts_over(
    fetcher: HttpFetcher, server: RepoServer, tmp_path: Path
) -> None:
    """The first (cut) answer came from another version of the file: the If-Range
    validator does not match, the server answers 200 with the whole current file,
    and the download starts over from byte 0 (the old bytes are not kept)."""
    other = bytes(reversed(TARGET))
    server.faults.add(PATH, Fault.replace(other) | Fault.truncate(100_000), times=1)
    dest = tmp_path / "spool"

    result = await fetch_target(fetcher, dest)

    assert result == (len(TARGET), SHA256, 0)
    assert dest.read_bytes() == TARGET
    second = server.requests[1]
    assert second.headers["range"] == "bytes=100000-"
    assert (second.status, second.bytes_sent) == (200, len(TARGET))
    assert fetcher.stats.resumed == 0


async def test_length_cap_covers_the_whole_file(
    fetcher: HttpFetcher, server: RepoServer, tmp_path: Path
) -> None:
    """Resumed bytes count towards the length: a file that is now longer than the
    expected length is refused, and nothing is left behind."""
    server.faults.add(PATH, Fault.truncate(100_000), times=1)
    dest = tmp_path / "spool"

    with pytest.raises(LengthOrHashMismatchError):
        await fetcher.fetch_to_file(
            "targets", NAME, dest, length=len(TARGET) - 1, algorithms=("sha256",)
        )

    assert not dest.exists()


# -- across runs (partial_dir) ----------------------------------------------------------


async def test_next_run_resumes_a_download_given_up(server: RepoServer, tmp_path: Path) -> None:
    """A run whose every attempt is cut after 10 000 bytes fails, but keeps 30 000
    bytes and a sidecar vouching for them; the next run (a new fetcher) asks for
    bytes=30000- and receives only the remainder; the partial file and sidecar are
    gone once the file is complete at dest."""
    partial_dir = tmp_path / "partials"
    partial_dir.mkdir()
    partial = partial_of(partial_dir)
    server.faults.add(PATH, Fault.truncate(10_000), times=3)

    first_run = http_fetcher(server, partial_dir)
    with pytest.raises(FetchError, match="3 attempts"):
        await fetch_target(first_run, tmp_path / "dest")
    await first_run.aclose()

    assert partial.read_bytes() == TARGET[:30_000]
    state = json.loads(sidecar_of(partial).read_text())
    assert state["bytes"] == 30_000
    assert state["etag"] == server.requests[1].headers["if-range"]
    assert [r.headers.get("range") for r in server.requests] == [
        None,
        "bytes=10000-",
        "bytes=20000-",
    ]
    assert not (tmp_path / "dest").exists()

    server.clear_log()
    second_run = http_fetcher(server, partial_dir)
    result = await fetch_target(second_run, tmp_path / "dest")
    await second_run.aclose()

    assert result == (len(TARGET), SHA256, 30_000)
    assert (tmp_path / "dest").read_bytes() == TARGET
    (request,) = server.requests
    assert request.headers["range"] == "bytes=30000-"
    assert request.headers["if-range"] == state["etag"]
    assert (request.status, request.bytes_sent) == (206, len(TARGET) - 30_000)
    assert second_run.stats.bytes_received == len(TARGET) - 30_000
    assert os.listdir(partial_dir) == []


async def test_next_run_restarts_when_the_file_changed(
    server: RepoServer, upstream: Path, tmp_path: Path
) -> None:
    """If the file changed upstream between runs, If-Range fails: a 200 with the
    whole new file, written from byte 0, with digests of the new file only."""
    partial_dir = tmp_path / "partials"
    partial_dir.mkdir()
    server.faults.add(PATH, Fault.truncate(10_000), times=3)
    first_run = http_fetcher(server, partial_dir)
    with pytest.raises(FetchError):
        await fetch_target(first_run, tmp_path / "dest")
    await first_run.aclose()
    changed = bytes(reversed(TARGET))
    (upstream / "targets" / "dir" / "file.bin").write_bytes(changed)

    server.clear_log()
    second_run = http_fetcher(server, partial_dir)
    result = await fetch_target(second_run, tmp_path / "dest")
    await second_run.aclose()

    assert result == (len(changed), hashlib.sha256(changed).hexdigest(), 0)
    assert (tmp_path / "dest").read_bytes() == changed
    (request,) = server.requests
    assert request.headers["range"] == "bytes=30000-"
    assert (request.status, request.bytes_sent) == (200, len(changed))
    assert os.listdir(partial_dir) == []


async def test_bytes_the_sidecar_does_not_vouch_for_are_dropped(
    server: RepoServer, tmp_path: Path
) -> None:
    """A run killed between writing and its next checkpoint leaves bytes on disk that
    no sidecar vouches for (here: garbage). The next run keeps only the vouched
    prefix and asks for the rest from there."""
    partial_dir = tmp_path / "partials"
    partial_dir.mkdir()
    partial = partial_of(partial_dir)
    server.faults.add(PATH, Fault.truncate(10_000), times=3)
    first_run = http_fetcher(server, partial_dir)
    with pytest.raises(FetchError):
        await fetch_target(first_run, tmp_path / "dest")
    await first_run.aclose()
    with partial.open("ab") as handle:
        handle.write(b"\xff" * 5000)

    server.clear_log()
    second_run = http_fetcher(server, partial_dir)
    result = await fetch_target(second_run, tmp_path / "dest")
    await second_run.aclose()

    assert result == (len(TARGET), SHA256, 30_000)
    assert server.requests[0].headers["range"] == "bytes=30000-"


@pytest.mark.parametrize(
    "state",
    [
        None,  # no sidecar at all
        {"source": "http://elsewhere.test/targets/dir/file.bin"},  # another source
        {"length": 12345},  # another length
        {"etag": None, "last_modified": None},  # no validator
        {"bytes": 0},
    ],
)
async def test_partial_without_a_usable_sidecar_starts_over(
    server: RepoServer, tmp_path: Path, state: dict[str, object] | None
) -> None:
    """Bytes left without a sidecar that matches this download (same source URL and
    length, a validator, a byte count) are not trusted: the download starts from
    zero, without a Range header."""
    partial_dir = tmp_path / "partials"
    partial_dir.mkdir()
    partial = partial_of(partial_dir)
    partial.write_bytes(TARGET[:50_000])
    if state is not None:
        full = {
            "source": f"{server.url}/targets/dir/file.bin",
            "length": len(TARGET),
            "bytes": 50_000,
            "etag": '"whatever"',
            "last_modified": None,
        }
        full.update(state)
        sidecar_of(partial).write_text(json.dumps(full))

    fetcher = http_fetcher(server, partial_dir)
    result = await fetch_target(fetcher, tmp_path / "dest")
    await fetcher.aclose()

    assert result == (len(TARGET), SHA256, 0)
    (request,) = server.requests
    assert "range" not in request.headers
    assert os.listdir(partial_dir) == []


async def test_complete_partial_is_confirmed_with_one_byte(
    server: RepoServer, fetcher: HttpFetcher, tmp_path: Path
) -> None:
    """A partial file that was complete when its run ended (killed before it was
    used) is not trusted blindly: the next run asks for the last byte with If-Range,
    so the server still confirms the version."""
    fetched = await fetcher.fetch_bytes("targets", NAME, max_length=len(TARGET))
    assert fetched is not None
    partial_dir = tmp_path / "partials"
    partial_dir.mkdir()
    partial = partial_of(partial_dir)
    partial.write_bytes(TARGET)
    sidecar_of(partial).write_text(
        json.dumps(
            {
                "source": f"{server.url}/targets/dir/file.bin",
                "length": len(TARGET),
                "bytes": len(TARGET),
                "etag": fetched.etag,
                "last_modified": fetched.last_modified,
            }
        )
    )
    server.clear_log()

    resuming = http_fetcher(server, partial_dir)
    result = await fetch_target(resuming, tmp_path / "dest")
    await resuming.aclose()

    assert result == (len(TARGET), SHA256, len(TARGET) - 1)
    (request,) = server.requests
    assert request.headers["range"] == f"bytes={len(TARGET) - 1}-"
    assert (request.status, request.bytes_sent) == (206, 1)


async def test_absent_file_removes_the_partial(server: RepoServer, tmp_path: Path) -> None:
    """A 404 is not a reason to keep bytes: partial file and sidecar are removed."""
    partial_dir = tmp_path / "partials"
    partial_dir.mkdir()
    server.faults.add(PATH, Fault.truncate(10_000), times=3)
    first_run = http_fetcher(server, partial_dir)
    with pytest.raises(FetchError):
        await fetch_target(first_run, tmp_path / "dest")
    assert len(os.listdir(partial_dir)) == 2
    server.faults.add(PATH, Fault.status(404))

    with pytest.raises(NotFoundError):
        await fetch_target(first_run, tmp_path / "dest")
    await first_run.aclose()

    assert os.listdir(partial_dir) == []


async def test_checkpoints_vouch_only_for_durable_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """During a long download the sidecar is rewritten every CHECKPOINT_BYTES, and at
    any moment it vouches for no more bytes than the partial file holds."""
    monkeypatch.setattr(spool_module, "CHECKPOINT_BYTES", 2 << 20)
    partial_dir = tmp_path / "partials"
    partial_dir.mkdir()
    size = 9 << 20
    partial = partial_dir / partial_name("targets", "big.bin", size)
    seen: list[tuple[int, int]] = []

    def look(piece: bytes) -> None:
        sidecar = sidecar_of(partial)
        if sidecar.exists():
            vouched = json.loads(sidecar.read_text())["bytes"]
            seen.append((vouched, partial.stat().st_size))

    async def handler(request: httpx.Request) -> httpx.Response:
        headers = {"ETag": '"v1"', "Content-Length": str(size)}
        return httpx.Response(
            200, headers=headers, stream=PacedStream(size, 64 << 10, 0, on_chunk=look)
        )

    fetcher = HttpFetcher(
        BASE + "/metadata",
        BASE + "/targets",
        transport=httpx.MockTransport(handler),
        partial_dir=partial_dir,
    )
    fetched = await fetcher.fetch_to_file(
        "targets", "big.bin", tmp_path / "dest", length=size, algorithms=()
    )

    assert fetched.length == size
    vouched = sorted({v for v, _ in seen})
    assert len(vouched) >= 3
    assert all(v % (1 << 20) == 0 for v in vouched)
    assert all(v <= on_disk for v, on_disk in seen)
    assert os.listdir(partial_dir) == []


def cut_after(count: int, *, headers: dict[str, str]) -> httpx.Response:
    """A 200 answer whose body breaks (httpx.ReadError) after ``count`` bytes."""

    class Broken(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield TARGET[:count]
            raise httpx.ReadError("connection lost")

    return httpx.Response(
        200, headers={**headers, "Content-Length": str(len(TARGET))}, stream=Broken()
    )


def mock_fetcher(
    answers: list[Callable[[httpx.Request], httpx.Response]], **options: object
) -> tuple[HttpFetcher, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers[len(seen) - 1](request)

    retry = RetryPolicy(attempts=len(answers), initial=0.0, jitter=False)
    fetcher = HttpFetcher(
        BASE + "/metadata",
        BASE + "/targets",
        transport=httpx.MockTransport(handler),
        retry=retry,
        **options,  # type: ignore[arg-type]
    )
    return fetcher, seen


def whole(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=TARGET)


async def test_server_ignoring_ranges_starts_over(tmp_path: Path) -> None:
    """A server that answers a Range request with 200 and the whole file: the bytes
    held are dropped and the file is written from the start."""
    fetcher, seen = mock_fetcher([lambda r: cut_after(1000, headers={"ETag": '"a"'}), whole])

    fetched = await fetcher.fetch_to_file(
        "targets", NAME, tmp_path / "dest", length=len(TARGET), algorithms=("sha256",)
    )

    assert fetched.digests["sha256"] == SHA256
    assert seen[1].headers["range"] == "bytes=1000-"
    assert fetcher.stats.bytes_received == 1000 + len(TARGET)


@pytest.mark.parametrize(
    ("headers", "if_range"),
    [
        ({}, None),  # no validator: nothing proves the rest belongs to the same file
        ({"ETag": 'W/"weak"'}, None),  # weak ETags never match If-Range
        (
            {"ETag": 'W/"weak"', "Last-Modified": "Tue, 01 Oct 2024 10:00:00 GMT"},
            "Tue, 01 Oct 2024 10:00:00 GMT",
        ),
        ({"Last-Modified": "Tue, 01 Oct 2024 10:00:00 GMT"}, "Tue, 01 Oct 2024 10:00:00 GMT"),
    ],
)
async def test_validator_choice(
    tmp_path: Path, headers: dict[str, str], if_range: str | None
) -> None:
    """If-Range carries a strong ETag, else Last-Modified; with neither the retry
    asks for the whole file again."""
    fetcher, seen = mock_fetcher([lambda r: cut_after(1000, headers=headers), whole])

    await fetcher.fetch_to_file(
        "targets", NAME, tmp_path / "dest", length=len(TARGET), algorithms=()
    )

    assert seen[1].headers.get("if-range") == if_range
    assert seen[1].headers.get("range") == ("bytes=1000-" if if_range else None)


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(416, headers={"Content-Range": f"bytes */{len(TARGET)}"}),
        httpx.Response(
            206,
            headers={"Content-Range": f"bytes 0-99/{len(TARGET)}", "ETag": '"a"'},
            content=TARGET[:100],
        ),
        httpx.Response(
            206,
            headers={"Content-Range": f"bytes 1000-{len(TARGET) - 1}/999999", "ETag": '"a"'},
            content=TARGET[1000:],
        ),
        httpx.Response(
            206,
            headers={"Content-Range": f"bytes 1000-{len(TARGET) - 1}/{len(TARGET)}", "ETag": '"b"'},
            content=TARGET[1000:],
        ),
        httpx.Response(206, headers={"ETag": '"a"'}, content=TARGET[1000:]),
    ],
    ids=["416", "other-range", "other-total", "other-etag", "no-content-range"],
)
async def test_answers_that_do_not_continue_start_over(
    tmp_path: Path, answer: httpx.Response
) -> None:
    """A 416, or a 206 for other bytes, another total, another version or without
    Content-Range, is not appended: the next attempt asks for the whole file."""
    fetcher, seen = mock_fetcher(
        [lambda r: cut_after(1000, headers={"ETag": '"a"'}), lambda r: answer, whole]
    )

    fetched = await fetcher.fetch_to_file(
        "targets", NAME, tmp_path / "dest", length=len(TARGET), algorithms=("sha256",)
    )

    assert fetched.digests["sha256"] == SHA256
    assert fetched.resumed_from == 0
    assert [r.headers.get("range") for r in seen] == [None, "bytes=1000-", None]


async def test_cancelled_download_is_kept_for_later(tmp_path: Path) -> None:
    """A download cancelled from outside (say, the run's budget stopped it) keeps its
    partial file with a checkpoint; the next fetch continues from there."""
    partial_dir = tmp_path / "partials"
    partial_dir.mkdir()
    scope = trio.CancelScope()
    chunks = 0

    def count(piece: bytes) -> None:
        nonlocal chunks
        chunks += 1
        if chunks == 50:
            scope.cancel()

    size = 1_000_000

    async def handler(request: httpx.Request) -> httpx.Response:
        if "range" in request.headers:
            start = int(request.headers["range"].removeprefix("bytes=").rstrip("-"))
            headers = {"ETag": '"v"', "Content-Range": f"bytes {start}-{size - 1}/{size}"}
            return httpx.Response(206, headers=headers, content=b"x" * (size - start))
        stream = PacedStream(size, 1000, 0, on_chunk=count)
        return httpx.Response(200, headers={"ETag": '"v"'}, stream=stream)

    def make() -> HttpFetcher:
        return HttpFetcher(
            BASE + "/metadata",
            BASE + "/targets",
            transport=httpx.MockTransport(handler),
            partial_dir=partial_dir,
        )

    first = make()
    with scope:
        await first.fetch_to_file(
            "targets", "big.bin", tmp_path / "dest", length=size, algorithms=()
        )
    assert scope.cancelled_caught
    partial = partial_dir / partial_name("targets", "big.bin", size)
    held = json.loads(sidecar_of(partial).read_text())["bytes"]
    assert held >= 49_000
    assert partial.stat().st_size == held

    second = make()
    fetched = await second.fetch_to_file(
        "targets", "big.bin", tmp_path / "dest", length=size, algorithms=("sha256",)
    )

    assert fetched.resumed_from == held
    assert fetched.digests["sha256"] == hashlib.sha256(b"x" * size).hexdigest()
    assert second.stats.bytes_received == size - held


async def test_partial_held_by_another_download_is_left_alone(
    server: RepoServer, tmp_path: Path
) -> None:
    """When another process holds the partial file (flock), the download goes to a
    plain spool file instead, and the other download's file is not touched."""
    partial_dir = tmp_path / "partials"
    partial_dir.mkdir()
    partial = partial_of(partial_dir)
    partial.write_bytes(b"someone else's bytes")
    fd = os.open(partial, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        fetcher = http_fetcher(server, partial_dir)
        result = await fetch_target(fetcher, tmp_path / "dest")
        await fetcher.aclose()
    finally:
        os.close(fd)

    assert result == (len(TARGET), SHA256, 0)
    assert partial.read_bytes() == b"someone else's bytes"


async def test_remove_partials(tmp_path: Path) -> None:
    """remove_partials deletes partial files and their sidecars, and orphan sidecars,
    but neither files held by a download nor anything else in the directory."""
    (tmp_path / "partial-a").write_bytes(b"a")
    (tmp_path / ("partial-a" + SIDECAR_SUFFIX)).write_text("{}")
    (tmp_path / "partial-b").write_bytes(b"b")
    (tmp_path / ("partial-gone" + SIDECAR_SUFFIX)).write_text("{}")
    (tmp_path / "partial-held").write_bytes(b"held")
    (tmp_path / "target-1").write_bytes(b"other spool file")
    fd = os.open(tmp_path / "partial-held", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        removed = await remove_partials(tmp_path)
    finally:
        os.close(fd)

    assert removed == 2
    assert sorted(os.listdir(tmp_path)) == ["partial-held", "target-1"]
