"""The fetcher contract, one table run against every ``StreamFetcher``: HTTP (a real
server on 127.0.0.1), a local directory and an air-gap bundle.

Each case pins down what the template (``mirror.fetch.template``) promises whatever
the upstream: exact lengths pass, one byte short or long fails with the right
error and leaves no file, an endless body stops at the cap, digests are right for
every supported algorithm, an unknown algorithm and an unsafe name are refused
before any request, an absent file is ``NotFoundError``, and requests and bytes
are counted.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from mirror.airgap.fetcher import BundleFetcher
from mirror.airgap.manifest import Manifest
from mirror.airgap.state import StateRef
from mirror.airgap.volumes import BundleEntry, CheckedBundle
from mirror.errors import (
    BundleError,
    LengthOrHashMismatchError,
    NotFoundError,
    OversizeError,
    UnsafeNameError,
)
from mirror.fetch import HttpFetcher, LocalFetcher
from mirror.fetch.base import Namespace
from mirror.fetch.spool import SUPPORTED_ALGORITHMS, new_hasher
from mirror.fetch.template import StreamFetcher
from tuf_mirror_testing.server import Fault, serve_directory

from .conftest import FAST_RETRY

#: the files every upstream serves (namespace, name) -> bytes
CONTENT = bytes(range(256)) * 12 + b"tail"  # 3076 bytes
FILES: dict[tuple[Namespace, str], bytes] = {
    ("metadata", "timestamp.json"): b'{"signed": {"_type": "timestamp"}}\n',
    ("targets", "dir/file.bin"): CONTENT,
    ("targets", "empty"): b"",
}
#: served without end (HTTP: no Content-Length; local and bundle: a far larger
#: size than any cap below)
ENDLESS: tuple[Namespace, str] = ("targets", "endless.bin")
ENDLESS_SIZE = 1 << 30
#: how far past the cap a fetcher may read before it stops (one network chunk)
SLACK = 65536

KINDS = ["http", "local", "bundle"]


def _write_upstream(root: Path) -> None:
    for (namespace, name), data in FILES.items():
        path = root / namespace / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    endless = root / ENDLESS[0] / ENDLESS[1]
    with endless.open("wb") as handle:  # sparse: a size, no disk
        handle.truncate(ENDLESS_SIZE)


def _bundle(root: Path) -> CheckedBundle:
    """A bundle of ``FILES`` in one volume file, as ``open_bundle`` would check it;
    the endless file's entry claims more bytes than the volume holds."""
    volume = root / "bundle.vol"
    entries: dict[str, BundleEntry] = {}
    offset = 0
    with volume.open("wb") as handle:
        for (namespace, name), data in FILES.items():
            handle.write(data)
            entries[f"{namespace}/{name}"] = BundleEntry(
                volume, offset, len(data), hashlib.sha256(data).hexdigest(), "volume test"
            )
            offset += len(data)
    entries["/".join(ENDLESS)] = BundleEntry(volume, 0, ENDLESS_SIZE, "0" * 64, "volume test")
    state = StateRef(
        root_version=1,
        timestamp_version=1,
        timestamp_sha256="0" * 64,
        snapshot_version=1,
        snapshot_sha256="0" * 64,
    )
    manifest = Manifest(
        bundle_id="contract",
        created="2026-01-01T00:00:00Z",
        tool="tests",
        upstream="test",
        consistent_snapshot=True,
        base=None,
        brought=state,
    )
    return CheckedBundle(str(root), manifest, entries)


@dataclass
class Upstream:
    """A fetcher of one kind over ``FILES``, and where spool files may go."""

    kind: str
    fetcher: StreamFetcher
    spool_dir: Path


@pytest.fixture(params=KINDS)
async def upstream(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Upstream]:
    kind: str = request.param
    root = tmp_path / "upstream"
    _write_upstream(root)
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    with ExitStack() as stack:
        fetcher: StreamFetcher
        if kind == "http":
            server = stack.enter_context(serve_directory(root))
            server.faults.add("/" + "/".join(ENDLESS), Fault.endless())
            fetcher = HttpFetcher(
                server.url + "/metadata", server.url + "/targets", retry=FAST_RETRY
            )
        elif kind == "local":
            fetcher = LocalFetcher(root)
        else:
            fetcher = BundleFetcher(_bundle(root))
        try:
            yield Upstream(kind, fetcher, spool_dir)
        finally:
            await fetcher.aclose()


def _spool_files(upstream: Upstream) -> list[Path]:
    return sorted(upstream.spool_dir.iterdir())


async def _fetch(upstream: Upstream, into: str, namespace: Namespace, name: str, cap: int) -> None:
    """``fetch_bytes`` (``into="memory"``) or ``fetch_to_file`` (``"file"``, sha256)
    of ``name`` with ``cap`` as its ``max_length`` or ``length``."""
    if into == "memory":
        await upstream.fetcher.fetch_bytes(namespace, name, max_length=cap)
    else:
        await upstream.fetcher.fetch_to_file(
            namespace, name, upstream.spool_dir / "dest", length=cap, algorithms=("sha256",)
        )


# -- lengths ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delta", "error"),
    [
        pytest.param(0, None, id="exact"),
        pytest.param(+1, None, id="cap-one-above"),
        pytest.param(-1, OversizeError, id="one-byte-long"),
    ],
)
async def test_fetch_bytes_cap(
    upstream: Upstream, delta: int, error: type[Exception] | None
) -> None:
    """fetch_bytes returns the exact bytes when they fit ``max_length`` (a cap above
    the size is no requirement to reach it), and refuses one byte more than the cap
    with OversizeError."""
    fetcher = upstream.fetcher
    if error is None:
        got = await fetcher.fetch_bytes("targets", "dir/file.bin", max_length=len(CONTENT) + delta)
        assert got is not None
        assert got.data == CONTENT
        assert fetcher.stats.bytes_received == len(CONTENT)
    else:
        with pytest.raises(error):
            await fetcher.fetch_bytes("targets", "dir/file.bin", max_length=len(CONTENT) + delta)
        assert fetcher.stats.bytes_received <= len(CONTENT)
    assert fetcher.stats.requests == 1


@pytest.mark.parametrize(
    ("delta", "error"),
    [
        pytest.param(0, None, id="exact"),
        pytest.param(+1, LengthOrHashMismatchError, id="one-byte-short"),
        pytest.param(-1, OversizeError, id="one-byte-long"),
    ],
)
async def test_fetch_to_file_length(
    upstream: Upstream, delta: int, error: type[Exception] | None
) -> None:
    """fetch_to_file writes a file of exactly the signed length; a file one byte
    shorter than signed is LengthOrHashMismatchError (not OversizeError), one
    byte longer is OversizeError, and either failure leaves no file behind."""
    fetcher = upstream.fetcher
    dest = upstream.spool_dir / "dest"
    length = len(CONTENT) + delta
    if error is None:
        fetched = await fetcher.fetch_to_file(
            "targets", "dir/file.bin", dest, length=length, algorithms=("sha256",)
        )
        assert (fetched.path, fetched.length) == (dest, len(CONTENT))
        assert dest.read_bytes() == CONTENT
        assert fetcher.stats.bytes_received == len(CONTENT)
    else:
        with pytest.raises(error) as raised:
            await fetcher.fetch_to_file(
                "targets", "dir/file.bin", dest, length=length, algorithms=("sha256",)
            )
        assert type(raised.value) is error
        assert _spool_files(upstream) == []
    assert fetcher.stats.requests == 1


async def test_empty_file(upstream: Upstream) -> None:
    """A zero-length file is fetched into memory and to a file, with the digest of
    no bytes."""
    fetcher = upstream.fetcher
    dest = upstream.spool_dir / "dest"

    got = await fetcher.fetch_bytes("targets", "empty", max_length=0)
    fetched = await fetcher.fetch_to_file(
        "targets", "empty", dest, length=0, algorithms=("sha256",)
    )

    assert got is not None
    assert got.data == b""
    assert fetched.digests == {"sha256": hashlib.sha256(b"").hexdigest()}
    assert dest.read_bytes() == b""
    assert (fetcher.stats.requests, fetcher.stats.bytes_received) == (2, 0)


@pytest.mark.parametrize("cap", [0, 1000, 100_000], ids=["cap-0", "cap-1000", "cap-100000"])
@pytest.mark.parametrize("into", ["memory", "file"])
async def test_endless_body_stops_at_the_cap(upstream: Upstream, cap: int, into: str) -> None:
    """An endless body is OversizeError once the cap is passed, having read at most
    the cap plus one network chunk, and leaves no file behind."""
    fetcher = upstream.fetcher
    with pytest.raises(OversizeError):
        await _fetch(upstream, into, *ENDLESS, cap)

    assert fetcher.stats.bytes_received <= cap + SLACK
    assert fetcher.stats.requests == 1
    assert _spool_files(upstream) == []


# -- digests ---------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", sorted(SUPPORTED_ALGORITHMS))
async def test_digest_per_algorithm(upstream: Upstream, algorithm: str) -> None:
    """fetch_to_file computes the digest of every supported algorithm over the
    whole file, as hashlib computes it."""
    expected = new_hasher(algorithm)
    expected.update(CONTENT)

    fetched = await upstream.fetcher.fetch_to_file(
        "targets",
        "dir/file.bin",
        upstream.spool_dir / "dest",
        length=len(CONTENT),
        algorithms=(algorithm,),
    )

    assert fetched.digests == {algorithm: expected.hexdigest()}


async def test_several_digests_at_once(upstream: Upstream) -> None:
    """Several algorithms at once: one digest each, all over the same bytes."""
    fetched = await upstream.fetcher.fetch_to_file(
        "targets",
        "dir/file.bin",
        upstream.spool_dir / "dest",
        length=len(CONTENT),
        algorithms=("sha256", "sha512", "blake2b-256"),
    )

    assert fetched.digests == {
        "sha256": hashlib.sha256(CONTENT).hexdigest(),
        "sha512": hashlib.sha512(CONTENT).hexdigest(),
        "blake2b-256": hashlib.blake2b(CONTENT, digest_size=32).hexdigest(),
    }


@pytest.mark.parametrize("algorithms", [("md5",), ("sha256", "crc32")], ids=["md5", "mixed"])
async def test_unknown_algorithm_is_refused_before_any_request(
    upstream: Upstream, algorithms: tuple[str, ...]
) -> None:
    """A hash the fetcher cannot compute cannot be verified: LengthOrHashMismatchError
    naming it, no request made, no file created."""
    with pytest.raises(LengthOrHashMismatchError, match=algorithms[-1]):
        await upstream.fetcher.fetch_to_file(
            "targets",
            "dir/file.bin",
            upstream.spool_dir / "dest",
            length=len(CONTENT),
            algorithms=algorithms,
        )

    assert upstream.fetcher.stats.requests == 0
    assert _spool_files(upstream) == []


# -- names -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("namespace", "name"),
    [
        pytest.param("targets", "", id="empty"),
        pytest.param("targets", "../outside", id="dot-dot"),
        pytest.param("targets", "dir/../../outside", id="dot-dot-inside"),
        pytest.param("targets", "/etc/passwd", id="absolute"),
        pytest.param("targets", "dir//file.bin", id="empty-segment"),
        pytest.param("targets", "./dir/file.bin", id="dot"),
        pytest.param("targets", "dir\\file.bin", id="backslash"),
        pytest.param("targets", "dir/file.bin\0", id="nul"),
        pytest.param("metadata", "time stamp.json", id="metadata-not-encoded"),
    ],
)
@pytest.mark.parametrize("into", ["memory", "file"])
async def test_unsafe_names_are_refused_before_any_request(
    upstream: Upstream, namespace: Namespace, name: str, into: str
) -> None:
    """A name that could escape its namespace is UnsafeNameError, with no request
    made and no file created."""
    fetcher = upstream.fetcher
    with pytest.raises(UnsafeNameError):
        await _fetch(upstream, into, namespace, name, len(CONTENT))

    assert fetcher.stats.requests == 0
    assert _spool_files(upstream) == []


@pytest.mark.parametrize(
    ("namespace", "name"),
    [
        pytest.param("metadata", "2.root.json", id="metadata"),
        pytest.param("targets", "dir/absent.bin", id="target"),
        pytest.param("targets", "absent/below", id="directory-absent"),
    ],
)
@pytest.mark.parametrize("into", ["memory", "file"])
async def test_absent_file_is_not_found(
    upstream: Upstream, namespace: Namespace, name: str, into: str
) -> None:
    """An absent file is NotFoundError (counted as one request, never retried) and
    leaves no file behind."""
    fetcher = upstream.fetcher
    with pytest.raises(NotFoundError):
        await _fetch(upstream, into, namespace, name, 100)

    assert (fetcher.stats.requests, fetcher.stats.retries) == (1, 0)
    assert _spool_files(upstream) == []


# -- counters --------------------------------------------------------------------------


async def test_requests_and_bytes_are_counted(upstream: Upstream) -> None:
    """Each fetch is one request (when nothing is retried) and every body byte is
    counted, metadata and targets, into memory and to files alike."""
    fetcher = upstream.fetcher
    timestamp = FILES["metadata", "timestamp.json"]

    await fetcher.fetch_bytes("metadata", "timestamp.json", max_length=1000)
    await fetcher.fetch_bytes("targets", "dir/file.bin", max_length=len(CONTENT))
    for index in range(3):
        await fetcher.fetch_to_file(
            "targets",
            "dir/file.bin",
            upstream.spool_dir / f"dest-{index}",
            length=len(CONTENT),
            algorithms=(),
        )

    stats = fetcher.stats
    assert (stats.requests, stats.retries, stats.not_modified, stats.resumed) == (5, 0, 0, 0)
    assert stats.bytes_received == len(timestamp) + 4 * len(CONTENT)


def test_every_fetcher_is_a_stream_fetcher() -> None:
    """The three fetchers share the template: none reimplements ``fetch_bytes`` or
    ``fetch_to_file``."""
    for cls in (HttpFetcher, LocalFetcher, BundleFetcher):
        assert issubclass(cls, StreamFetcher)
        assert cls.fetch_bytes is StreamFetcher.fetch_bytes
        assert cls.fetch_to_file is StreamFetcher.fetch_to_file


# -- what the bundle fetcher adds -------------------------------------------------------


@pytest.mark.parametrize("into", ["memory", "file"])
@pytest.mark.parametrize("tamper", ["changed", "truncated"])
async def test_bundle_changed_after_it_was_checked(tmp_path: Path, tamper: str, into: str) -> None:
    """A bundle whose bytes changed (or were cut short) after it was checked is a
    BundleError naming the file, and leaves no file behind."""
    root = tmp_path / "upstream"
    _write_upstream(root)
    bundle = _bundle(root)
    entry = bundle.entries["targets/dir/file.bin"]
    with entry.path.open("r+b") as volume:
        if tamper == "changed":
            volume.seek(entry.offset + 10)
            volume.write(b"X")
        else:
            volume.truncate(entry.offset + 100)
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    fetcher = BundleFetcher(bundle)

    with pytest.raises(BundleError, match=r"dir/file\.bin"):
        await _fetch(
            Upstream("bundle", fetcher, spool_dir), into, "targets", "dir/file.bin", len(CONTENT)
        )

    assert list(spool_dir.iterdir()) == []
    assert fetcher.requested == {"targets/dir/file.bin"}
