"""``export`` and ``import`` get their fetcher, limits and lease from the same
wiring as ``sync`` (``mirror.endpoints``): every ``--upstream`` with failover, the
``--bwlimit`` bucket, and a lease renewed while the run goes on. Each test here
failed before: export read only the first upstream and ignored ``--bwlimit``, and
export and import held a one-hour lease that they never renewed."""

from __future__ import annotations

import fnmatch
import json
import socket
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from mirror.airgap import exporter, importer
from mirror.airgap.exporter import run_export
from mirror.airgap.importer import run_import
from mirror.cli import build_parser, main
from mirror.config import resolve
from mirror.errors import ExitStatus
from mirror.fetch.ratelimit import TokenBucket
from mirror.storage.lock import LockInfo
from tests.airgap.conftest import Air
from tests.sync.conftest import tree
from tuf_mirror_testing.server import Fault, RepoServer, serve_directory

#: long enough that a renewal late by two thirds of it under load is still in time
LEASE = "3s"


@contextmanager
def dead_upstream(kind: str, upstream: Path) -> Iterator[tuple[str, RepoServer | None]]:
    """An upstream URL that fails every request: nothing listening on its port
    (connection refused), or a server answering 503 to everything."""
    if kind == "refused":
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        yield f"http://127.0.0.1:{port}", None
        return
    with serve_directory(upstream) as server:
        server.faults.add("*", Fault.status(503))
        yield server.url, server


def export_args(air: Air, to: Path, *upstreams: str, extra: tuple[str, ...] = ()) -> list[str]:
    return [
        "export",
        "--root",
        str(air.root_file),
        *(arg for url in upstreams for arg in ("--upstream", url)),
        "--to",
        str(to),
        "--state-dir",
        str(air.state_dir),
        "--retries",
        "2",
        "--timeout",
        "5",
        *extra,
    ]


@pytest.mark.parametrize("kind", ["refused", "503"])
def test_export_fails_over_to_the_next_upstream(air: Air, kind: str) -> None:
    """``export --upstream A --upstream B`` with A dead: the export succeeds from B,
    its report names B as the upstream that served and counts the failover, and
    the bundle imports to the bytes a direct sync writes."""
    report = air.tmp / "report.json"
    with dead_upstream(kind, air.upstream) as (dead, server):
        status = main(
            export_args(
                air,
                air.tmp / "b0",
                dead,
                air.server.url,
                extra=("--full", "--report", str(report)),
            )
        )
        assert server is None or server.requests  # A was asked first
    assert status == ExitStatus.OK
    summary = json.loads(report.read_text())
    assert summary["upstream"] == air.server.url
    assert summary["failovers"] >= 1
    assert set(summary["upstreams"]) == {dead, air.server.url}
    assert summary["upstreams"][air.server.url]["metadata_served"] > 0
    assert air.import_(air.tmp / "b0") == ExitStatus.OK
    assert air.sync_near() == ExitStatus.OK
    assert tree(air.far) == tree(air.near)


def test_export_draws_every_byte_from_the_bandwidth_bucket(
    air: Air, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``export --bwlimit``: every byte the export receives passes through the token
    bucket (counted, not timed: a cap high enough not to slow the test)."""
    taken: list[int] = []
    real = TokenBucket.take

    async def take(self: TokenBucket, count: int) -> None:
        taken.append(count)
        await real(self, count)

    monkeypatch.setattr(TokenBucket, "take", take)
    report = air.tmp / "report.json"
    args = export_args(
        air,
        air.tmp / "b0",
        air.server.url,
        extra=("--full", "--bwlimit", "512M", "--report", str(report)),
    )
    assert main(args) == ExitStatus.OK
    summary = json.loads(report.read_text())
    assert summary["targets_fetched"] > 0
    assert summary["bytes_received"] > summary["target_bytes"] > 0
    assert sum(taken) == summary["bytes_received"]


def lease_of(lock: Path) -> LockInfo:
    return LockInfo.from_json(lock.read_bytes())


async def held_past_its_ttl(lock: Path) -> tuple[LockInfo, LockInfo]:
    """Wait until the lease first seen on ``lock`` would have expired had
    it not been renewed; the lease as first seen and as it is then."""
    first = lease_of(lock)
    await trio.sleep((first.expires - datetime.now(UTC)).total_seconds() + 0.1)
    assert datetime.now(UTC) > first.expires
    return first, lease_of(lock)


async def check_renewed_lease(
    lock: Path,
    run: Callable[[], Awaitable[Any]],
    paused: trio.Event,
    resume: trio.Event,
    second: Callable[[], int],
) -> None:
    """Start ``run``; once it is paused (inside its lease), hold it past the lease's
    ttl: the lease is still the same holder's, with a later expiry, and ``second``
    (another run of the same command) exits 4 instead of taking it over."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        with trio.fail_after(120):
            await paused.wait()
        first, later = await held_past_its_ttl(lock)
        assert later.token == first.token
        assert later.expires > first.expires
        assert later.expires > datetime.now(UTC)
        assert await trio.to_thread.run_sync(second) == ExitStatus.LOCKED
        assert lease_of(lock).token == first.token  # not taken over
        resume.set()
    assert not await trio.to_thread.run_sync(lock.exists)


async def test_export_renews_its_lease(air: Air, monkeypatch: pytest.MonkeyPatch) -> None:
    """An export held past ``--lock-lease`` keeps its state directory's lease alive
    (the expiry moved forward), so a second export started meanwhile exits 4; the
    first then completes and releases the lock."""
    paused, resume = trio.Event(), trio.Event()
    real = exporter._hash_staging

    async def hash_staging(staging: Any) -> Any:
        paused.set()
        await resume.wait()
        return await real(staging)

    monkeypatch.setattr(exporter, "_hash_staging", hash_staging)
    args = export_args(air, air.tmp / "b0", air.server.url, extra=("--full", "--lock-lease", LEASE))
    settings = resolve("export", build_parser().parse_args(args))
    await check_renewed_lease(
        air.state_dir / ".tuf-mirror" / "lock",
        partial(run_export, settings, now=datetime.now(UTC)),
        paused,
        resume,
        partial(air.export, air.tmp / "b1", "--full"),
    )
    assert (air.tmp / "b0" / "manifest.json").exists()
    assert not (air.tmp / "b1").exists()


async def test_import_renews_its_lease(air: Air, monkeypatch: pytest.MonkeyPatch) -> None:
    """An import held past ``--lock-lease`` keeps the destination's lease alive, so
    a second import started meanwhile exits 4; the first then publishes."""
    bundle = air.tmp / "b0"
    assert await trio.to_thread.run_sync(partial(air.export, bundle, "--full")) == ExitStatus.OK
    paused, resume = trio.Event(), trio.Event()
    real = importer.open_bundle

    async def open_bundle(location: str) -> Any:
        paused.set()
        await resume.wait()
        return await real(location)

    monkeypatch.setattr(importer, "open_bundle", open_bundle)
    args = [
        "import",
        str(bundle),
        "--root",
        str(air.root_file),
        "--dest",
        str(air.far),
        "--lock-lease",
        LEASE,
    ]
    settings = resolve("import", build_parser().parse_args(args))
    await check_renewed_lease(
        air.far / ".tuf-mirror" / "lock",
        partial(run_import, settings, now=datetime.now(UTC)),
        paused,
        resume,
        partial(air.import_, bundle),
    )
    assert (air.far / "metadata" / "timestamp.json").exists()


def test_a_failed_export_resumes_its_partial_download(air: Air) -> None:
    """An export whose download of a large target is cut short on every attempt
    fails (exit 3) and keeps the partial file in its staging spool; the next export
    asks only for the rest of that file (a Range request answered 206)."""
    size = 600 * 1024  # above the copier's in-memory size: downloaded to a file
    air.repo.add_target("files/large.bin", bytes(range(256)) * (size // 256))
    air.publish()
    pattern = "/targets/files/*.large.bin"
    air.server.faults.add(pattern, Fault.truncate(100_000), times=2)
    assert air.export(air.tmp / "b0", "--full") == ExitStatus.TRANSIENT
    air.server.clear_log()
    report = air.tmp / "report.json"
    assert air.export(air.tmp / "b0", "--full", "--report", str(report)) == ExitStatus.OK
    asked = [r for r in air.server.requests if fnmatch.fnmatchcase(r.path, pattern)]
    assert [(r.status, r.headers.get("range")) for r in asked] == [(206, "bytes=200000-")]
    assert asked[0].bytes_sent == size - 200_000
    assert json.loads(report.read_text())["resumed"] == 1
