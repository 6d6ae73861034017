"""Several upstreams: failover on transient errors, and a hostile secondary cannot
change a byte of the mirror (everything is verified against the same pinned root)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from mirror.cli import main
from mirror.errors import ExitStatus
from tests.sync.conftest import Env, tree
from tuf_mirror_testing.repo import tamper_published
from tuf_mirror_testing.server import Fault, RepoServer, serve_directory


@pytest.fixture
def secondary(env: Env, tmp_path: Path) -> Iterator[tuple[RepoServer, Path]]:
    """A second upstream serving a copy of the first one's files."""
    copy = tmp_path / "secondary"
    shutil.copytree(env.upstream, copy)
    with serve_directory(copy) as server:
        yield server, copy


def run_both(env: Env, second: RepoServer, *extra: str) -> int:
    env.server.wait_idle()
    second.wait_idle()
    env.server.clear_log()
    second.clear_log()
    return main(env.args("sync", "--upstream", second.url, *extra))


def test_failover_to_secondary_when_primary_fails(
    env: Env, secondary: tuple[RepoServer, Path], tmp_path: Path
) -> None:
    """A primary answering 503 to everything: the secondary serves the run, the
    mirror is byte-identical and the report says who served what."""
    second, _ = secondary
    env.server.faults.add("/*", Fault.status(503))
    report = tmp_path / "report.json"
    assert run_both(env, second, "--report", str(report)) == ExitStatus.OK
    assert tree(env.dest) == tree(env.upstream)
    data = json.loads(report.read_text())
    assert data["failovers"] >= 1
    served = {name: stats["served"] for name, stats in data["upstreams"].items()}
    assert served[second.url] > 0
    assert served[env.server.url] == 0
    assert data["upstream"] == second.url, "the report names the upstream that served"
    assert data["upstreams"][env.server.url]["passed_over"] is True
    assert "503" in data["upstreams"][env.server.url]["error"]
    assert data["upstreams"][second.url]["targets_served"] == 40
    assert data["upstreams"][second.url]["metadata_served"] > 0


def test_a_dead_primary_is_named_in_a_warning(
    env: Env, secondary: tuple[RepoServer, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Failing over is not silent: stderr names the skipped primary and the
    upstream used instead, once."""
    second, _ = secondary
    env.server.faults.add("/*", Fault.status(503))
    assert run_both(env, second) == ExitStatus.OK
    err = capsys.readouterr().err
    assert err.count(f"upstream {env.server.url} failed") == 1
    assert f"skipping it for the rest of this run, using {second.url}" in err


def test_a_lagging_primary_404_for_a_required_file_fails_over(
    env: Env, secondary: tuple[RepoServer, Path]
) -> None:
    """A primary that has the new timestamp but not yet the snapshot version it
    names (a lagging CDN) answers 404: the secondary serves it and the run succeeds
    instead of restarting and failing."""
    second, _ = secondary
    assert env.run() == ExitStatus.OK
    env.repo.add_target("files/new.txt", b"new")
    env.publish()
    shutil.rmtree(secondary[1])
    shutil.copytree(env.upstream, secondary[1])
    snapshot = f"{env.repo.version('snapshot')}.snapshot.json"
    env.server.faults.add(f"/metadata/{snapshot}", Fault.status(404))
    assert run_both(env, second) == ExitStatus.OK
    assert tree(env.dest) == tree(env.upstream)
    assert f"/metadata/{snapshot}" in [r.path for r in second.requests]


def test_hostile_secondary_cannot_change_a_byte(
    env: Env, secondary: tuple[RepoServer, Path]
) -> None:
    """The primary fails for targets; the secondary serves a forged target: exit 1,
    the published mirror unchanged. Once the primary is back, the run converges."""
    assert env.run() == ExitStatus.OK
    before = tree(env.dest)
    second, copy = secondary
    env.repo.add_target("files/late.txt", b"late and genuine")
    written = env.publish()
    shutil.copytree(env.upstream, copy, dirs_exist_ok=True)
    new_target = next(w for w in written if w.startswith("targets/"))
    tamper_published(copy, new_target, lambda data: b"forged" + data[6:])
    env.server.faults.add("/targets/*", Fault.status(503))

    assert run_both(env, second, "--retries", "1") == ExitStatus.VERIFICATION_FAILED
    after = tree(env.dest)
    assert {k: v for k, v in after.items() if k in before} == before
    assert "metadata/timestamp.json" in after
    assert after["metadata/timestamp.json"] == before["metadata/timestamp.json"]
    assert new_target not in after

    env.server.faults.clear()
    assert run_both(env, second) == ExitStatus.OK
    assert tree(env.dest) == tree(env.upstream)


def test_hostile_secondary_metadata_is_refused(
    env: Env, secondary: tuple[RepoServer, Path]
) -> None:
    """A secondary serving a rolled-back timestamp while the primary is down: exit 1
    and nothing published."""
    old_timestamp = env.repo.metadata_bytes("timestamp")
    env.repo.add_target("files/x.txt", b"x")
    env.publish()
    assert env.run() == ExitStatus.OK
    before = tree(env.dest)
    second, copy = secondary
    (copy / "metadata" / "timestamp.json").write_bytes(old_timestamp)
    env.server.faults.add("/metadata/timestamp.json", Fault.status(503))
    assert run_both(env, second, "--retries", "1") == ExitStatus.VERIFICATION_FAILED
    assert tree(env.dest) == before
