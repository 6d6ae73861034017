"""Copy scheduling (``mirror.copying``): when worker processes copy targets, and
what the run counts from copy results."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mirror.config import Settings
from mirror.copier import CopyResult, Outcome
from mirror.copying import (
    AUTO_PROCESSES_MIN_CHANGED_ROLES,
    AUTO_PROCESSES_MIN_ROLES,
    Tally,
    processes_for,
)
from mirror.plan import TargetCopy
from mirror.report import RunReport


def _snapshot(versions: dict[str, int]) -> Any:
    """The part of a verified snapshot ``processes_for`` reads: its meta."""
    meta = {f"{role}.json": SimpleNamespace(version=v) for role, v in versions.items()}
    return SimpleNamespace(signed=SimpleNamespace(meta=meta))


def _roles(count: int, version: int = 1) -> dict[str, int]:
    return {f"bins-{index}": version for index in range(count)}


@pytest.mark.parametrize(
    ("options", "local_only", "new", "old", "expected"),
    # new and old: the snapshot's roles after and before (None: a first sync)
    [
        pytest.param({}, True, _roles(1000), None, 0, id="local-only"),
        pytest.param({"processes": 3}, True, _roles(1000), None, 0, id="local-only-wins"),
        pytest.param({"processes": 3}, False, _roles(1), None, 3, id="explicit"),
        pytest.param({"processes": 0}, False, _roles(1000), None, 0, id="explicit-none"),
        pytest.param(
            {"processes": 3, "max_transfer": 10}, False, _roles(1000), None, 0, id="budget"
        ),
        pytest.param({}, False, _roles(AUTO_PROCESSES_MIN_ROLES - 1), None, 0, id="small-first"),
        pytest.param(
            {},
            False,
            _roles(AUTO_PROCESSES_MIN_CHANGED_ROLES),
            _roles(AUTO_PROCESSES_MIN_CHANGED_ROLES),
            0,
            id="nothing-changed",
        ),
    ],
)
def test_processes_for(
    tmp_path: Path,
    options: dict[str, Any],
    local_only: bool,
    new: dict[str, int],
    *,
    old: dict[str, int] | None,
    expected: int,
) -> None:
    """Worker processes copy only when this process is not the only one that can
    (not a dry run nor an export), no budget is counted here, and either the
    operator asked for them or the snapshot (first sync) or its diff (incremental)
    names enough roles."""
    settings = Settings(
        command="sync", root=tmp_path / "root.json", dest="memory://", upstream=("u",), **options
    )
    trusted: Any = SimpleNamespace(snapshot=_snapshot(new))
    published: Any = SimpleNamespace(snapshot=None if old is None else _snapshot(old))
    got = processes_for(settings, local_only=local_only, trusted=trusted, published=published)
    assert got == expected


@pytest.mark.parametrize(
    ("first_sync", "roles"),
    [
        pytest.param(True, AUTO_PROCESSES_MIN_ROLES, id="large-first-sync"),
        pytest.param(False, AUTO_PROCESSES_MIN_CHANGED_ROLES, id="many-changed-roles"),
    ],
)
def test_processes_for_large_runs(tmp_path: Path, first_sync: bool, roles: int) -> None:
    """A large first sync, or an incremental one that changes very many roles, gets
    between one and four worker processes."""
    settings = Settings(
        command="sync", root=tmp_path / "root.json", dest="memory://", upstream=("u",)
    )
    trusted: Any = SimpleNamespace(snapshot=_snapshot(_roles(roles, version=2)))
    published: Any = SimpleNamespace(snapshot=None if first_sync else _snapshot(_roles(roles)))
    assert 1 <= processes_for(settings, local_only=False, trusted=trusted, published=published) <= 4


@pytest.mark.parametrize(
    ("outcome", "written", "counters"),
    [
        pytest.param(Outcome.COPIED, 1, {"targets_fetched": 1, "target_bytes": 10}, id="copied"),
        pytest.param(
            Outcome.PRESENT, 0, {"targets_already_present": 1, "present_bytes": 10}, id="present"
        ),
        pytest.param(Outcome.DEFERRED, 0, {"targets_deferred": 1}, id="deferred"),
        pytest.param(Outcome.PLANNED, 0, {}, id="planned"),
    ],
)
def test_tally(outcome: Outcome, written: int, counters: dict[str, int]) -> None:
    """Only a target this run wrote counts as written (the flush before publishing
    depends on it); every outcome lands in its report counters."""
    report = RunReport(command="sync")
    tally = Tally(report)
    tally.count(CopyResult(outcome, 10))
    assert tally.written == written
    for name, value in counters.items():
        assert getattr(report, name) == value
    assert report.targets_fetched == written


@pytest.mark.parametrize("processes", ["0", "1"])
def test_every_target_handed_over_in_batches_is_copied(
    processes: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The walk hands copies over ``COPY_BATCH`` at a time (across roles), the
    copiers take each batch together (pipelined): a first sync of 32 bins holding
    1 to 4 targets each, then an incremental one adding a target to most bins,
    copy every target exactly once, in one process and with a worker process,
    whatever batch boundaries fall inside a role's targets. In one process, no
    target is fetched one by one (``copy``): the copy tasks do not split a batch
    between them."""
    from mirror.cli import main
    from mirror.copier import COPY_BATCH, TargetCopier

    alone: list[str] = []
    real_copy = TargetCopier.copy

    async def copy(self: TargetCopier, wanted: TargetCopy) -> CopyResult:
        alone.append(wanted.path)
        return await real_copy(self, wanted)

    monkeypatch.setattr(TargetCopier, "copy", copy)
    from tests.sync.conftest import tree
    from tuf_mirror_testing.repo import Repository
    from tuf_mirror_testing.server import serve_directory

    repo = Repository(consistent_snapshot=True)
    repo.add_hash_bins(32, succinct=False)
    first = [f"a/{index:03d}.txt" for index in range(3 * COPY_BATCH + 5)]
    for path in first:
        repo.add_target(path, f"{path}\n".encode())
    upstream, dest = tmp_path / "upstream", tmp_path / "dest"
    repo.publish(upstream)
    root_file = tmp_path / "root.json"
    root_file.write_bytes(repo.root_bytes(1))
    report = tmp_path / "report.json"
    with serve_directory(upstream) as server:
        args = ["sync", "--root", str(root_file), "--upstream", server.url, "--dest", str(dest)]
        args += ["--processes", processes, "--report", str(report)]
        assert main(args) == 0
        assert json.loads(report.read_text())["targets_fetched"] == len(first)
        added = [f"b/{index:03d}.txt" for index in range(COPY_BATCH + 3)]
        for path in added:
            repo.add_target(path, f"{path}\n".encode())
        repo.publish(upstream)
        server.clear_log()
        assert main(args) == 0
        got = json.loads(report.read_text())
        target_requests = [p for p in server.paths() if p.startswith("/targets/")]
    assert got["targets_new"] == got["targets_fetched"] == len(added)
    assert len(target_requests) == len(added)
    assert alone == []
    files = tree(dest / "targets")
    for path in first + added:
        directory, _, name = path.rpartition("/")
        assert any(key.startswith(f"{directory}/") and key.endswith(f".{name}") for key in files), (
            path
        )


def test_a_copy_without_an_answer_publishes_nothing(
    env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The safety net under the batched hand-over: when a copier leaves one copy
    handed to it unanswered (a bug), the run exits 70 before publishing, and the
    destination's published metadata is the previous run's, byte for byte."""
    from mirror.copier import TargetCopier
    from mirror.errors import ExitStatus
    from tests.sync.conftest import tree

    assert env.run("sync", "--processes", "0") == 0
    before = tree(env.dest / "metadata")
    env.repo.add_target("files/new-a.txt", b"a\n")
    env.repo.add_target("files/new-b.txt", b"b\n")
    env.publish()
    real = TargetCopier.copy_batch

    async def drops_the_last(self: TargetCopier, copies: Any, done: Any) -> None:
        await real(self, copies[:-1], done)

    monkeypatch.setattr(TargetCopier, "copy_batch", drops_the_last)
    assert env.run("sync", "--processes", "0") == ExitStatus.SOFTWARE
    assert tree(env.dest / "metadata") == before
