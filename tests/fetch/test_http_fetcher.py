"""HttpFetcher against the real loopback server (tuf_mirror_testing.server)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from mirror.errors import (
    FetchError,
    LengthOrHashMismatchError,
    NotFoundError,
    OversizeError,
    UnsafeNameError,
)
from mirror.fetch.http import HttpFetcher
from mirror.fetch.retry import RetryPolicy
from tuf_mirror_testing.server import Fault, RepoServer, serve_directory

from .conftest import ENCODED_ROLE, FAST_RETRY, ODD_TARGET, TARGET, TIMESTAMP


@pytest.fixture
async def fetcher(server: RepoServer) -> AsyncIterator[HttpFetcher]:
    fetcher = HttpFetcher(server.url + "/metadata", server.url + "/targets/", retry=FAST_RETRY)
    try:
        yield fetcher
    finally:
        await fetcher.aclose()


async def test_fetch_bytes(fetcher: HttpFetcher, server: RepoServer) -> None:
    """fetch_bytes returns the body and the validators; stats count one request."""
    fetched = await fetcher.fetch_bytes("metadata", "timestamp.json", max_length=1000)

    assert fetched is not None
    assert fetched.data == TIMESTAMP
    assert fetched.etag is not None
    assert fetched.last_modified is not None
    assert server.paths() == ["/metadata/timestamp.json"]
    assert server.requests[0].headers["accept-encoding"] == "identity"
    assert (fetcher.stats.requests, fetcher.stats.bytes_received) == (1, len(TIMESTAMP))
    assert fetcher.stats.retries == 0


async def test_404_is_not_found_without_retry(fetcher: HttpFetcher, server: RepoServer) -> None:
    """A 404 is NotFoundError at once: one request, no retry."""
    with pytest.raises(NotFoundError, match=r"/metadata/2\.root\.json.*404"):
        await fetcher.fetch_bytes("metadata", "2.root.json", max_length=1000)

    assert server.paths() == ["/metadata/2.root.json"]
    assert fetcher.stats.retries == 0


async def test_other_4xx_fails_without_retry(fetcher: HttpFetcher, server: RepoServer) -> None:
    """A 403 is a FetchError (not NotFoundError), not retried."""
    server.faults.add("/metadata/timestamp.json", Fault.status(403))

    with pytest.raises(FetchError, match="HTTP 403") as excinfo:
        await fetcher.fetch_bytes("metadata", "timestamp.json", max_length=1000)

    assert not isinstance(excinfo.value, NotFoundError)
    assert len(server.requests) == 1


async def test_5xx_is_retried_until_success(fetcher: HttpFetcher, server: RepoServer) -> None:
    """Two 500s then a 200: success after 3 requests, counted as 2 retries."""
    server.faults.add("/metadata/timestamp.json", Fault.status(500), times=2)

    fetched = await fetcher.fetch_bytes("metadata", "timestamp.json", max_length=1000)

    assert fetched is not None
    assert fetched.data == TIMESTAMP
    assert [r.status for r in server.requests] == [500, 500, 200]
    assert (fetcher.stats.requests, fetcher.stats.retries) == (3, 2)


async def test_persistent_5xx_gives_up_after_all_attempts(
    fetcher: HttpFetcher, server: RepoServer
) -> None:
    """A server that keeps failing gets exactly `attempts` requests, then a FetchError
    naming the URL, the status and the attempts."""
    server.faults.add("/metadata/timestamp.json", Fault.status(502))

    with pytest.raises(FetchError) as excinfo:
        await fetcher.fetch_bytes("metadata", "timestamp.json", max_length=1000)

    message = str(excinfo.value)
    assert f"{server.url}/metadata/timestamp.json" in message
    assert "HTTP 502" in message
    assert "3 attempts" in message
    assert len(server.requests) == FAST_RETRY.attempts
    assert fetcher.stats.retries == FAST_RETRY.attempts - 1


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_honoured(
    server: RepoServer, autojump_clock: trio.abc.Clock, status: int
) -> None:
    """A 429/503 with Retry-After: 7 makes the fetcher wait 7 s (virtual time) before
    the second request, not its own much shorter backoff."""
    server.faults.add("/metadata/timestamp.json", Fault.status(status, retry_after=7), times=1)
    # No timeouts: with real sockets the autojump clock must have no deadline to jump to.
    fetcher = HttpFetcher(
        server.url + "/metadata",
        server.url + "/targets",
        retry=FAST_RETRY,
        transfer_timeout=None,
        connect_timeout=None,
        read_timeout=None,
    )
    start = trio.current_time()

    fetched = await fetcher.fetch_bytes("metadata", "timestamp.json", max_length=1000)

    await fetcher.aclose()
    assert fetched is not None
    assert 7 <= trio.current_time() - start < 7.5
    assert [r.status for r in server.requests] == [status, 200]


async def test_connection_reset_is_retried(fetcher: HttpFetcher, server: RepoServer) -> None:
    """A connection reset without an answer is transient: retried, then success."""
    server.faults.add("/metadata/timestamp.json", Fault.reset(), times=1)

    fetched = await fetcher.fetch_bytes("metadata", "timestamp.json", max_length=1000)

    assert fetched is not None
    assert fetched.data == TIMESTAMP
    assert len(server.requests) == 2
    assert fetcher.stats.retries == 1


async def test_body_cut_by_connection_close_is_retried(
    fetcher: HttpFetcher, server: RepoServer, tmp_path: Path
) -> None:
    """A body cut short by the connection closing (Content-Length not reached) is a
    transient failure: retried; the partial spool file does not survive."""
    server.faults.add("/targets/dir/file.bin", Fault.truncate(1000), times=1)
    dest = tmp_path / "spool"

    fetched = await fetcher.fetch_to_file(
        "targets", "dir/file.bin", dest, length=len(TARGET), algorithms=("sha256",)
    )

    assert dest.read_bytes() == TARGET
    assert fetched.digests["sha256"] == hashlib.sha256(TARGET).hexdigest()
    assert len(server.requests) == 2


async def test_always_truncated_body_gives_up(
    fetcher: HttpFetcher, server: RepoServer, tmp_path: Path
) -> None:
    """If every answer is cut short, the fetch fails with FetchError and no file."""
    server.faults.add("/targets/dir/file.bin", Fault.truncate(10))
    dest = tmp_path / "spool"

    with pytest.raises(FetchError, match="3 attempts"):
        await fetcher.fetch_to_file(
            "targets", "dir/file.bin", dest, length=len(TARGET), algorithms=()
        )

    assert not dest.exists()


async def test_complete_but_short_body_is_a_length_mismatch(
    fetcher: HttpFetcher, server: RepoServer, tmp_path: Path
) -> None:
    """A complete answer shorter than the signed length is LengthOrHashMismatchError,
    not retried, and leaves no file."""
    server.faults.add("/targets/dir/file.bin", Fault.replace(TARGET[:100]))
    dest = tmp_path / "spool"

    with pytest.raises(LengthOrHashMismatchError) as excinfo:
        await fetcher.fetch_to_file(
            "targets", "dir/file.bin", dest, length=len(TARGET), algorithms=()
        )

    assert not isinstance(excinfo.value, OversizeError)
    assert len(server.requests) == 1
    assert not dest.exists()


async def test_declared_length_above_the_cap_is_refused_before_the_body(
    fetcher: HttpFetcher, server: RepoServer, tmp_path: Path
) -> None:
    """A Content-Length above the cap is OversizeError before any body byte is read."""
    server.faults.add("/metadata/timestamp.json", Fault.endless(content_length=10**12))
    server.faults.add("/targets/dir/file.bin", Fault.replace(TARGET + b"extra"))

    with pytest.raises(OversizeError, match="Content-Length"):
        await fetcher.fetch_bytes("metadata", "timestamp.json", max_length=1000)
    with pytest.raises(OversizeError, match="Content-Length"):
        await fetcher.fetch_to_file(
            "targets", "dir/file.bin", tmp_path / "spool", length=len(TARGET), algorithms=()
        )

    assert fetcher.stats.bytes_received == 0
    assert not (tmp_path / "spool").exists()
    assert len(server.requests) == 2


async def test_endless_body_stops_at_the_cap(
    fetcher: HttpFetcher, server: RepoServer, tmp_path: Path
) -> None:
    """An endless body without Content-Length is OversizeError once the cap is passed:
    the fetcher reads at most the cap plus one network chunk, writes nothing past the
    length, and deletes the partial file. Never retried."""
    server.faults.add("/metadata/*", Fault.endless())
    server.faults.add("/targets/*", Fault.endless())
    dest = tmp_path / "spool"

    with pytest.raises(OversizeError):
        await fetcher.fetch_bytes("metadata", "timestamp.json", max_length=100_000)
    assert fetcher.stats.bytes_received <= 100_000 + 65536
    with pytest.raises(OversizeError):
        await fetcher.fetch_to_file(
            "targets", "dir/file.bin", dest, length=len(TARGET), algorithms=("sha256",)
        )

    assert fetcher.stats.bytes_received <= 100_000 + len(TARGET) + 2 * 65536
    assert not dest.exists()
    assert len(server.requests) == 2


async def test_silent_server_hits_the_transfer_deadline(server: RepoServer, tmp_path: Path) -> None:
    """A server that never answers fails the transfer after transfer_timeout seconds
    with a FetchError, and the deadline is retried like any transient failure."""
    server.faults.add("/targets/*", Fault.delay(30))
    fetcher = HttpFetcher(
        server.url + "/metadata",
        server.url + "/targets",
        retry=RetryPolicy(attempts=2, initial=0, jitter=False),
        transfer_timeout=0.2,
    )

    with pytest.raises(FetchError, match="too slow"):
        await fetcher.fetch_to_file(
            "targets", "dir/file.bin", tmp_path / "spool", length=len(TARGET), algorithms=()
        )

    await fetcher.aclose()
    assert len(server.requests) == 2
    assert not (tmp_path / "spool").exists()


async def test_trickling_server_fails_the_throughput_guard(
    server: RepoServer, tmp_path: Path
) -> None:
    """A server that sends, but below min_throughput, is cut off soon after the slack
    (slow-retrieval attack), and the partial file is removed."""
    server.faults.add("/targets/*", Fault.slow_body(2000))
    fetcher = HttpFetcher(
        server.url + "/metadata",
        server.url + "/targets",
        retry=RetryPolicy(attempts=1),
        transfer_timeout=0.2,
        min_throughput=100_000,
    )

    with pytest.raises(FetchError, match="too slow"):
        await fetcher.fetch_to_file(
            "targets", "dir/file.bin", tmp_path / "spool", length=len(TARGET), algorithms=()
        )

    await fetcher.aclose()
    assert 0 < fetcher.stats.bytes_received < len(TARGET)
    assert not (tmp_path / "spool").exists()


async def test_fetch_to_file_digests(fetcher: HttpFetcher, tmp_path: Path) -> None:
    """fetch_to_file writes the exact bytes and computes every requested digest."""
    dest = tmp_path / "spool"

    fetched = await fetcher.fetch_to_file(
        "targets", "dir/file.bin", dest, length=len(TARGET), algorithms=("sha256", "sha512")
    )

    assert fetched.path == dest
    assert fetched.length == len(TARGET)
    assert fetched.digests == {
        "sha256": hashlib.sha256(TARGET).hexdigest(),
        "sha512": hashlib.sha512(TARGET).hexdigest(),
    }
    assert dest.read_bytes() == TARGET


async def test_unknown_hash_algorithm_is_refused_before_fetching(
    fetcher: HttpFetcher, server: RepoServer, tmp_path: Path
) -> None:
    """A hash the fetcher cannot compute cannot be verified: refused with no request."""
    with pytest.raises(LengthOrHashMismatchError, match="md5"):
        await fetcher.fetch_to_file(
            "targets", "dir/file.bin", tmp_path / "spool", length=1, algorithms=("md5",)
        )

    assert server.requests == []


async def test_target_names_are_percent_encoded(
    fetcher: HttpFetcher, server: RepoServer, tmp_path: Path
) -> None:
    """A target named 'a b%c' is requested as /targets/a%20b%25c."""
    fetched = await fetcher.fetch_to_file(
        "targets", "a b%c", tmp_path / "spool", length=len(ODD_TARGET), algorithms=()
    )

    assert fetched.path.read_bytes() == ODD_TARGET
    assert server.paths() == ["/targets/a%20b%25c"]


async def test_encoded_metadata_names_are_sent_verbatim(
    fetcher: HttpFetcher, server: RepoServer
) -> None:
    """Metadata names arrive percent-encoded and are not encoded again."""
    fetched = await fetcher.fetch_bytes("metadata", "1.a%2Fb.json", max_length=1000)

    assert fetched is not None
    assert fetched.data == ENCODED_ROLE
    assert server.paths() == ["/metadata/1.a%2Fb.json"]


async def test_opaque_base_urls_are_not_reencoded(upstream: Path, tmp_path: Path) -> None:
    """Base URLs with %2F and %5B are prefixes: joined with exactly one '/', never
    decoded or re-encoded."""
    odd = tmp_path / "served" / "a%2Fb" / "%5Bv1%5D"
    (odd / "meta").mkdir(parents=True)
    (odd / "meta" / "timestamp.json").write_bytes(TIMESTAMP)
    with serve_directory(tmp_path / "served") as srv:
        base = srv.url + "/a%2Fb/%5Bv1%5D/meta"
        for metadata_url in (base, base + "/"):
            fetcher = HttpFetcher(metadata_url, srv.url + "/targets", retry=FAST_RETRY)
            fetched = await fetcher.fetch_bytes("metadata", "timestamp.json", max_length=1000)
            await fetcher.aclose()
            assert fetched is not None
            assert fetched.data == TIMESTAMP

        assert srv.paths() == ["/a%2Fb/%5Bv1%5D/meta/timestamp.json"] * 2


async def test_conditional_get(fetcher: HttpFetcher, server: RepoServer) -> None:
    """With the ETag or Last-Modified of a previous answer, an unchanged file is a 304:
    fetch_bytes returns None and counts it."""
    first = await fetcher.fetch_bytes("metadata", "timestamp.json", max_length=1000)
    assert first is not None
    assert first.etag is not None

    by_etag = await fetcher.fetch_bytes(
        "metadata", "timestamp.json", max_length=1000, if_none_match=first.etag
    )
    by_date = await fetcher.fetch_bytes(
        "metadata", "timestamp.json", max_length=1000, if_modified_since=first.last_modified
    )
    changed = await fetcher.fetch_bytes(
        "metadata", "timestamp.json", max_length=1000, if_none_match='"something-else"'
    )

    assert by_etag is None
    assert by_date is None
    assert changed is not None
    assert changed.data == TIMESTAMP
    assert server.requests[1].headers["if-none-match"] == first.etag
    assert [r.status for r in server.requests] == [200, 304, 304, 200]
    assert fetcher.stats.not_modified == 2


@pytest.mark.parametrize(
    ("namespace", "name"),
    [
        ("targets", "../outside.txt"),
        ("targets", "/etc/passwd"),
        ("targets", "dir//file.bin"),
        ("targets", "a\\b"),
        ("metadata", "../x.json"),
        ("metadata", "x.json?query"),
        ("metadata", "not encoded.json"),
    ],
)
async def test_unsafe_names_are_refused_without_a_request(
    fetcher: HttpFetcher, server: RepoServer, namespace: str, name: str
) -> None:
    """Names that could escape the base (or break the URL) are UnsafeNameError."""
    with pytest.raises(UnsafeNameError):
        await fetcher.fetch_bytes(namespace, name, max_length=1000)  # type: ignore[arg-type]

    assert server.requests == []


async def test_existing_destination_is_not_overwritten(
    fetcher: HttpFetcher, tmp_path: Path
) -> None:
    """fetch_to_file creates its file exclusively: an existing file is an error and
    stays untouched."""
    dest = tmp_path / "spool"
    dest.write_bytes(b"keep")

    with pytest.raises(Exception, match="spool") as excinfo:
        await fetcher.fetch_to_file("targets", "a b%c", dest, length=len(ODD_TARGET), algorithms=())

    assert type(excinfo.value).__name__ == "StorageError"
    assert dest.read_bytes() == b"keep"


async def test_concurrent_fetches_share_the_client(
    fetcher: HttpFetcher, server: RepoServer
) -> None:
    """Many concurrent fetches through one fetcher all succeed."""
    results: list[bytes] = []

    async def one() -> None:
        fetched = await fetcher.fetch_bytes("metadata", "timestamp.json", max_length=1000)
        assert fetched is not None
        results.append(fetched.data)

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(one)

    assert results == [TIMESTAMP] * 20
    assert fetcher.stats.requests == 20
