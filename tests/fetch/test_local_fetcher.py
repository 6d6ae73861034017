"""LocalFetcher (directory upstreams) and open_fetcher's dispatch."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mirror.errors import (
    LengthOrHashMismatchError,
    NotFoundError,
    OversizeError,
    UnsafeNameError,
    UsageError,
)
from mirror.fetch import HttpFetcher, LocalFetcher, RetryPolicy, open_fetcher

from .conftest import ENCODED_ROLE, ODD_TARGET, TARGET, TIMESTAMP


@pytest.fixture
async def fetcher(upstream: Path) -> AsyncIterator[LocalFetcher]:
    fetcher = LocalFetcher(upstream)
    try:
        yield fetcher
    finally:
        await fetcher.aclose()


async def test_fetch_bytes(fetcher: LocalFetcher) -> None:
    """Metadata is read by its (percent-encoded) file name, with validators."""
    fetched = await fetcher.fetch_bytes("metadata", "timestamp.json", max_length=1000)
    role = await fetcher.fetch_bytes("metadata", "1.a%2Fb.json", max_length=1000)

    assert fetched is not None
    assert fetched.data == TIMESTAMP
    assert fetched.etag is not None
    assert fetched.last_modified is not None
    assert role is not None
    assert role.data == ENCODED_ROLE
    assert (fetcher.stats.requests, fetcher.stats.bytes_received) == (
        2,
        len(TIMESTAMP) + len(ENCODED_ROLE),
    )


async def test_absent_files_are_not_found(fetcher: LocalFetcher, upstream: Path) -> None:
    """A missing file, a directory, or a path through a file is NotFoundError."""
    for namespace, name in [
        ("metadata", "2.root.json"),
        ("targets", "dir"),
        ("targets", "dir/file.bin/below"),
    ]:
        with pytest.raises(NotFoundError):
            await fetcher.fetch_bytes(namespace, name, max_length=1000)  # type: ignore[arg-type]


async def test_symlinks_leaving_the_upstream_are_not_followed(
    fetcher: LocalFetcher, upstream: Path
) -> None:
    """A symlink inside the upstream pointing outside it is treated as absent."""
    (upstream / "targets" / "escape").symlink_to(upstream.parent / "outside.txt")

    with pytest.raises(NotFoundError, match="leaves"):
        await fetcher.fetch_bytes("targets", "escape", max_length=1000)


@pytest.mark.parametrize("name", ["../outside.txt", "/etc/passwd", "dir/../../x", "a\\b"])
async def test_unsafe_names_are_refused(fetcher: LocalFetcher, name: str) -> None:
    """Names that could escape the upstream directory are UnsafeNameError."""
    with pytest.raises(UnsafeNameError):
        await fetcher.fetch_bytes("targets", name, max_length=1000)


async def test_max_length_is_enforced(fetcher: LocalFetcher) -> None:
    """A file above max_length is OversizeError."""
    with pytest.raises(OversizeError):
        await fetcher.fetch_bytes("metadata", "timestamp.json", max_length=len(TIMESTAMP) - 1)


async def test_conditional_read(fetcher: LocalFetcher, upstream: Path) -> None:
    """An unchanged file with a matching validator is 'not modified' (None); a
    rewritten one is read again."""
    first = await fetcher.fetch_bytes("metadata", "timestamp.json", max_length=1000)
    assert first is not None

    same = await fetcher.fetch_bytes(
        "metadata", "timestamp.json", max_length=1000, if_none_match=first.etag
    )
    by_date = await fetcher.fetch_bytes(
        "metadata", "timestamp.json", max_length=1000, if_modified_since=first.last_modified
    )
    (upstream / "metadata" / "timestamp.json").write_bytes(TIMESTAMP + b" ")
    os.utime(upstream / "metadata" / "timestamp.json", (2e9, 2e9))
    changed = await fetcher.fetch_bytes(
        "metadata", "timestamp.json", max_length=1000, if_none_match=first.etag
    )

    assert same is None
    assert by_date is None
    assert changed is not None
    assert changed.data == TIMESTAMP + b" "
    assert fetcher.stats.not_modified == 2


async def test_fetch_to_file(fetcher: LocalFetcher, tmp_path: Path) -> None:
    """fetch_to_file copies the exact bytes and computes the digests; raw target
    names with spaces and percent signs are file names as they are."""
    fetched = await fetcher.fetch_to_file(
        "targets",
        "dir/file.bin",
        tmp_path / "one",
        length=len(TARGET),
        algorithms=("sha256", "sha512", "blake2b-256"),
    )
    odd = await fetcher.fetch_to_file(
        "targets", "a b%c", tmp_path / "two", length=len(ODD_TARGET), algorithms=()
    )

    assert (tmp_path / "one").read_bytes() == TARGET
    assert fetched.digests == {
        "sha256": hashlib.sha256(TARGET).hexdigest(),
        "sha512": hashlib.sha512(TARGET).hexdigest(),
        "blake2b-256": hashlib.blake2b(TARGET, digest_size=32).hexdigest(),
    }
    assert odd.path.read_bytes() == ODD_TARGET


@pytest.mark.parametrize(
    ("length", "error"),
    [(len(TARGET) - 1, OversizeError), (len(TARGET) + 1, LengthOrHashMismatchError)],
)
async def test_fetch_to_file_length_mismatch_leaves_no_file(
    fetcher: LocalFetcher, tmp_path: Path, length: int, error: type[Exception]
) -> None:
    """A file longer than the signed length is OversizeError, a shorter one
    LengthOrHashMismatchError; either way no spool file remains."""
    with pytest.raises(error):
        await fetcher.fetch_to_file(
            "targets", "dir/file.bin", tmp_path / "spool", length=length, algorithms=()
        )

    assert not (tmp_path / "spool").exists()


async def test_unknown_algorithm_is_refused(fetcher: LocalFetcher, tmp_path: Path) -> None:
    """An unsupported hash algorithm is refused before reading anything."""
    with pytest.raises(LengthOrHashMismatchError, match="md5"):
        await fetcher.fetch_to_file(
            "targets", "dir/file.bin", tmp_path / "spool", length=1, algorithms=("md5",)
        )
    assert fetcher.stats.requests == 0


async def test_open_fetcher_for_directories(upstream: Path, tmp_path: Path) -> None:
    """A path or file:// URL opens a LocalFetcher; prefixes and explicit directories
    choose where metadata and targets live."""
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "timestamp.json").write_bytes(b"flat")

    by_path = open_fetcher(str(upstream))
    by_url = open_fetcher(upstream.as_uri())
    flat = open_fetcher(tmp_path / "flat", metadata_prefix="")
    explicit = open_fetcher(str(upstream), metadata_url=(tmp_path / "flat").as_uri())

    for fetcher, expected in [
        (by_path, TIMESTAMP),
        (by_url, TIMESTAMP),
        (flat, b"flat"),
        (explicit, b"flat"),
    ]:
        assert isinstance(fetcher, LocalFetcher)
        fetched = await fetcher.fetch_bytes("metadata", "timestamp.json", max_length=100)
        assert fetched is not None
        assert fetched.data == expected


async def test_open_fetcher_for_http() -> None:
    """An http(s) upstream opens an HttpFetcher with bases joined from the prefixes,
    or the explicit URLs, passing HTTP options through."""
    fetcher = open_fetcher("https://example.org/repo/", retry=RetryPolicy(attempts=1))
    sigstore_like = open_fetcher("https://tuf.example", metadata_prefix="")
    explicit = open_fetcher(
        "https://example.org", metadata_url="https://cdn.example/m", targets_url="https://t/x"
    )

    assert isinstance(fetcher, HttpFetcher)
    assert isinstance(sigstore_like, HttpFetcher)
    assert isinstance(explicit, HttpFetcher)
    assert fetcher.retry.attempts == 1
    assert fetcher.url_for("metadata", "1.root.json") == (
        "https://example.org/repo/metadata/1.root.json"
    )
    assert fetcher.url_for("targets", "a b") == "https://example.org/repo/targets/a%20b"
    assert sigstore_like.url_for("metadata", "root.json") == "https://tuf.example/root.json"
    assert explicit.url_for("metadata", "x.json") == "https://cdn.example/m/x.json"
    assert explicit.url_for("targets", "y") == "https://t/x/y"
    for opened in (fetcher, sigstore_like, explicit):
        await opened.aclose()


def test_open_fetcher_refuses_bad_upstreams(upstream: Path) -> None:
    """Unknown schemes, HTTP options on a directory and malformed base URLs are
    usage errors."""
    with pytest.raises(UsageError, match="unsupported upstream"):
        open_fetcher("ftp://example.org/repo")
    with pytest.raises(UsageError, match="do not apply"):
        open_fetcher(str(upstream), retry=RetryPolicy())
    with pytest.raises(UsageError, match="query"):
        HttpFetcher("https://example.org/m?x=1", "https://example.org/t")
    with pytest.raises(UsageError, match="remote host"):
        open_fetcher("file://otherhost/repo")
