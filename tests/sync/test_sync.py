"""End-to-end ``tuf-mirror sync`` over a real loopback HTTP server: byte identity,
incremental cost, no-op cost, and the published layout."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mirror.errors import ExitStatus
from tests.sync.conftest import Env, tree
from tuf_mirror_testing.repo import metadata_file_name, tamper_published


def upstream_referenced(env: Env) -> dict[str, bytes]:
    """The upstream's files a mirror must hold: all metadata and target versions."""
    return tree(env.upstream)


def test_first_sync_is_byte_identical(env: Env) -> None:
    """A first sync writes exactly the upstream's published files, byte for byte."""
    assert env.run() == ExitStatus.OK
    assert tree(env.dest) == upstream_referenced(env)


async def test_publish_order_is_invariant_4(tmp_path: Path) -> None:
    """Writes happen in DESIGN.md order: every target, then delegated roles, targets,
    snapshot, root, and timestamp.json last (recorded by a MemoryStore); the
    deferred-durability writes (targets, then roles) are flushed before anything
    that references them is written."""
    from datetime import UTC, datetime

    from mirror.config import Settings
    from mirror.fetch.http import HttpFetcher
    from mirror.storage.memory import MemoryStore
    from mirror.sync import Synchronizer
    from tests.sync.conftest import make_repo
    from tuf_mirror_testing.server import serve_directory

    repo = make_repo()
    upstream = tmp_path / "up"
    repo.publish(upstream)
    root = tmp_path / "root.json"
    root.write_bytes(repo.root_bytes(1))
    settings = Settings(
        command="sync", root=root, dest="memory://", upstream=("unused",), processes=0
    )

    class RecordingStore(MemoryStore):
        async def flush(self) -> None:
            self.writes.append("FLUSH")

    store = RecordingStore()
    with serve_directory(upstream) as server:
        fetcher = HttpFetcher(server.url + "/metadata/", server.url + "/targets/")
        sync = Synchronizer(settings=settings, store=store, fetcher=fetcher, now=datetime.now(UTC))
        await sync.run()
        await fetcher.aclose()
    writes = [key for key in store.writes if not key.startswith(".tuf-mirror/")]
    first_metadata = next(i for i, key in enumerate(writes) if not key.startswith("targets/"))
    assert all(key.startswith("targets/") for key in writes[:first_metadata])
    assert len(writes[:first_metadata]) == 40
    metadata = writes[first_metadata:]
    assert metadata[0] == "FLUSH", "targets are durable before any metadata"
    metadata = metadata[1:]
    bins = [k for k in metadata if ".bins-" in k]
    assert metadata[: len(bins)] == bins
    assert metadata[len(bins) :] == [
        "metadata/1.targets.json",
        "FLUSH",
        "metadata/1.snapshot.json",
        "metadata/1.root.json",
        "metadata/root.json",
        "metadata/timestamp.json",
    ]


def test_incremental_sync_fetches_only_the_change(env: Env) -> None:
    """After upstream adds targets, only the changed bins, the new targets and the
    new snapshot/targets metadata are requested."""
    assert env.run() == ExitStatus.OK
    before = tree(env.dest)
    new_paths = ["files/new-a.txt", "files/new-b.txt"]
    for path in new_paths:
        env.repo.add_target(path, f"new {path}".encode())
    changed_bins = {env.repo.role_for_target(p) for p in new_paths}
    written = env.publish()

    assert env.run() == ExitStatus.OK
    assert tree(env.dest) == upstream_referenced(env)

    snapshot_v = env.repo.version("snapshot")
    expected = {
        f"/metadata/{env.repo.version('root') + 1}.root.json",
        "/metadata/timestamp.json",
        f"/metadata/{snapshot_v}.snapshot.json",
    }
    expected |= {f"/metadata/{metadata_file_name(b, env.repo.version(b))}" for b in changed_bins}
    expected |= {"/" + w for w in written if w.startswith("targets/")}
    requested = env.requested()
    assert set(requested) == expected
    assert len(requested) == len(expected), "no file is fetched twice"
    # Nothing already published was rewritten.
    after = tree(env.dest)
    assert all(after[k] == v for k, v in before.items() if k != "metadata/timestamp.json")


def test_noop_sync_makes_two_requests(env: Env) -> None:
    """With nothing new upstream, a run asks only for the next root and timestamp."""
    assert env.run() == ExitStatus.OK
    before = tree(env.dest)
    assert env.run() == ExitStatus.OK
    assert env.requested() == [
        f"/metadata/{env.repo.version('root') + 1}.root.json",
        "/metadata/timestamp.json",
    ]
    assert tree(env.dest) == before


def test_new_root_version_is_mirrored(env: Env) -> None:
    """A new root version upstream is verified and published before timestamp."""
    assert env.run() == ExitStatus.OK
    env.repo.rotate_keys("timestamp")
    env.publish()
    assert env.run() == ExitStatus.OK
    assert tree(env.dest) == upstream_referenced(env)
    assert (env.dest / "metadata/2.root.json").read_bytes() == env.repo.root_bytes(2)


def test_json_report(env: Env, tmp_path: Path, capsys: object) -> None:
    """--report writes counts, bytes and versions before/after."""
    report_file = tmp_path / "report.json"
    assert env.run("sync", "--report", str(report_file)) == ExitStatus.OK
    report = json.loads(report_file.read_text())
    assert report["exit_status"] == 0
    assert report["targets_fetched"] == 40
    assert report["versions_after"]["timestamp"] == env.repo.version("timestamp")
    assert report["versions_before"] == {"root": 1}


def test_plan_copies_nothing(env: Env) -> None:
    """``plan`` verifies the upstream and reports what it would copy, writing nothing."""
    assert env.run("plan") == ExitStatus.OK
    assert tree(env.dest) == {}
    assert not any(r.startswith("/targets/") for r in env.requested())


def test_verify_a_good_mirror(env: Env) -> None:
    """``verify`` passes on a freshly synced mirror."""
    assert env.run() == ExitStatus.OK
    assert main_verify(env) == ExitStatus.OK


def main_verify(env: Env, *extra: str) -> int:
    from mirror.cli import main

    return main(["verify", "--root", str(env.root_file), "--dest", str(env.dest), *extra])


def test_verify_finds_corrupt_and_missing_targets(env: Env, capsys: object) -> None:
    """``verify`` reports a corrupted and a missing target and exits 1."""
    assert env.run() == ExitStatus.OK
    targets = sorted(p for p in (env.dest / "targets").rglob("*") if p.is_file())
    targets[0].write_bytes(b"corrupted")
    targets[1].unlink()
    assert main_verify(env) == ExitStatus.VERIFICATION_FAILED
    assert main_verify(env, "--sample", "1000") == ExitStatus.VERIFICATION_FAILED


def test_non_consistent_snapshot_repository(tmp_path: Path) -> None:
    """A repository without consistent snapshots mirrors too (best effort, warned)."""
    from tests.sync.conftest import make_repo
    from tuf_mirror_testing.server import serve_directory

    repo = make_repo(consistent=False)
    upstream = tmp_path / "up"
    repo.publish(upstream)
    root_file = tmp_path / "root.json"
    root_file.write_bytes(repo.root_bytes(1))
    with serve_directory(upstream) as server:
        env = Env(repo, upstream, server, root_file, tmp_path / "dest")
        assert env.run() == ExitStatus.OK
        assert tree(env.dest) == tree(upstream)
        repo.add_target("files/late.txt", b"late")
        repo.publish(upstream)
        assert env.run() == ExitStatus.OK
        assert tree(env.dest) == tree(upstream)


def test_worker_processes_copy_byte_identical(env: Env) -> None:
    """With --processes 2 the targets are copied by worker processes: same bytes,
    same requests, and the incremental run still fetches only the change."""
    assert env.run("sync", "--processes", "2") == ExitStatus.OK
    assert tree(env.dest) == upstream_referenced(env)
    assert sum(1 for p in env.requested() if p.startswith("/targets/")) == 40
    env.repo.add_target("files/late.txt", b"late")
    env.publish()
    assert env.run("sync", "--processes", "2") == ExitStatus.OK
    assert tree(env.dest) == upstream_referenced(env)
    assert [p for p in env.requested() if p.startswith("/targets/")] == [
        "/targets/files/" + f"{hashlib.sha256(b'late').hexdigest()}.late.txt"
    ]


def test_worker_process_failure_is_reported(env: Env) -> None:
    """A forged target found by a worker process fails the run with exit 1 and
    publishes nothing."""
    tamper_published(
        env.upstream,
        next(iter(n for n in tree(env.upstream) if n.startswith("targets/"))),
        lambda d: d + b"!",
    )
    assert env.run("sync", "--processes", "2") == ExitStatus.VERIFICATION_FAILED
    assert not (env.dest / "metadata" / "timestamp.json").exists()


async def test_long_run_keeps_its_lock_fresh(tmp_path: Path, autojump_clock: object) -> None:
    """The lock held by a run is refreshed every third of its ttl, so a long first
    sync never looks stale to the next run."""
    from datetime import timedelta

    import trio

    from mirror.endpoints import keep_lease
    from mirror.storage.lock import acquire_lock
    from mirror.storage.memory import MemoryStore

    store = MemoryStore()  # no worker threads: the autojump clock stays exact
    async with acquire_lock(store, ttl=timedelta(seconds=30)) as lock:
        refreshes = 0
        original = lock.refresh

        async def counting_refresh(**kwargs: object) -> None:
            nonlocal refreshes
            refreshes += 1
            await original()

        lock.refresh = counting_refresh  # type: ignore[method-assign]
        with trio.move_on_after(35):
            await keep_lease(lock)
    assert refreshes == 3  # at 10 s, 20 s and 30 s of a 35 s run


def test_first_sync_mirrors_root_history_before_the_pin(tmp_path: Path) -> None:
    """Pinning root v3: the first sync also mirrors 1.root.json and 2.root.json,
    verified as a chain ending in the pinned bytes. A forged old root is never
    published, but it does not fail the run either: it and every older version are
    skipped, with a warning and a count in the report (issue 9)."""
    from tests.sync.conftest import make_repo
    from tuf_mirror_testing.server import serve_directory

    repo = make_repo()
    upstream = tmp_path / "up"
    repo.publish(upstream)
    repo.bump_root()
    repo.publish(upstream)
    repo.bump_root()
    repo.publish(upstream)
    root_file = tmp_path / "root.json"
    root_file.write_bytes(repo.root_bytes(3))
    with serve_directory(upstream) as server:
        env = Env(repo, upstream, server, root_file, tmp_path / "dest")
        good = (upstream / "metadata/1.root.json").read_bytes()
        tamper_published(upstream, "metadata/1.root.json", lambda d: d.replace(b'"1', b'"2', 1))
        report = tmp_path / "report.json"
        assert env.run("sync", "--report", str(report)) == ExitStatus.OK
        assert json.loads(report.read_text())["root_history_skipped"] == 1
        assert not (env.dest / "metadata" / "1.root.json").exists()
        for version in (2, 3):
            name = f"metadata/{version}.root.json"
            assert (env.dest / name).read_bytes() == repo.root_bytes(version)

    (upstream / "metadata/1.root.json").write_bytes(good)
    with serve_directory(upstream) as server:
        env = Env(repo, upstream, server, root_file, tmp_path / "dest2")
        assert env.run("sync", "--report", str(report)) == ExitStatus.OK
        assert json.loads(report.read_text())["root_history_skipped"] == 0
        for version in (1, 2, 3):
            name = f"metadata/{version}.root.json"
            assert (env.dest / name).read_bytes() == repo.root_bytes(version)
