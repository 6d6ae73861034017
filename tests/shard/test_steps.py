"""The shard steps in this process: what plan prints and records, and the refusals
(a missing shard, a missing target, an altered manifest, an index out of range, an
unknown run), each with its exit status and one-line message, and the destination
unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mirror.errors import ExitStatus, UsageError
from mirror.shard.cli import shard_position
from mirror.shard.manifest import marker_name, run_key
from tests.shard.conftest import INTERNAL, Dest, Upstream, local_dest, run_json
from tests.sync.conftest import make_repo
from tuf_mirror_testing.server import serve_directory

RUN = "r-1"


def _plan(upstream: Upstream, dest: Dest, *extra: str) -> None:
    assert upstream.run(dest, "shard", "plan", "--shards", "4", "--run-id", RUN, *extra) == 0


def _copy(upstream: Upstream, dest: Dest, index: int) -> int:
    return upstream.run(
        dest, "shard", "copy", "--run-id", RUN, "--index", str(index), "--count", "4"
    )


def test_plan_json_prints_run_id_shards_targets_bytes(
    upstream: Upstream, local: Dest, capsys: pytest.CaptureFixture[str]
) -> None:
    """``shard plan --json`` prints exactly run id, shards, targets and bytes; run.json
    records the manifest's sha256 and one file per shard; a fresh run id is made
    when none is given."""
    assert upstream.run(local, "shard", "plan", "--shards", "3", "--json") == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {"run_id", "shards", "targets", "bytes"}
    files = upstream.target_files()
    assert printed["shards"] == 3
    assert printed["targets"] == len(files)
    assert printed["bytes"] == sum(len(data) for data in files.values())
    recorded = run_json(local, printed["run_id"])
    assert len(recorded["files"]) == 3  # type: ignore[arg-type]
    assert len(str(recorded["manifest_sha256"])) == 64
    lines = [
        json.loads(line)
        for index in range(3)
        for line in local.read(f"{INTERNAL}runs/{printed['run_id']}/shard-{index:04d}.jsonl")
        .decode()
        .splitlines()
    ]
    assert sorted(line["path"] for line in lines) == sorted(
        f"files/file-{n:04d}.txt" for n in range(len(files))
    )


def test_plan_again_keeps_the_manifest_and_refuses_another_shard_count(
    upstream: Upstream, local: Dest
) -> None:
    """A retried plan job with the same run id keeps the run as planned (no second
    manifest); the same id with another shard count is a usage error (exit 2)."""
    _plan(upstream, local)
    before = local.files(internal=True)
    _plan(upstream, local)
    assert local.files(internal=True) == before
    status = upstream.run(local, "shard", "plan", "--shards", "5", "--run-id", RUN)
    assert status == ExitStatus.USAGE
    assert local.files(internal=True) == before


def test_a_missing_shard_blocks_publish(
    upstream: Upstream, dest: Dest, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three of four shards done: publish exits 3 naming the missing shard and
    publishes nothing; once the fourth is copied, publish succeeds."""
    _plan(upstream, dest)
    for index in (0, 1, 3):
        assert _copy(upstream, dest, index) == 0
    before = dest.files(internal=True)
    assert upstream.run(dest, "shard", "publish", "--run-id", RUN) == ExitStatus.TRANSIENT
    assert "1 of 4 shards have not completed (no completion marker: 2)" in capsys.readouterr().err
    assert dest.keys("metadata/") == set()
    assert dest.files(internal=True) == before

    assert _copy(upstream, dest, 2) == 0
    assert upstream.run(dest, "shard", "publish", "--run-id", RUN) == 0
    assert "metadata/timestamp.json" in dest.keys("metadata/")


def test_a_target_missing_despite_its_marker_blocks_publish(
    upstream: Upstream, local: Dest, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every marker present but one target deleted afterwards: exit 3, nothing
    published; rerunning that shard's copy restores it and publish succeeds."""
    _plan(upstream, local)
    for index in range(4):
        assert _copy(upstream, local, index) == 0
    victim = sorted(local.keys("targets/"))[0]
    local.delete(victim)
    assert upstream.run(local, "shard", "publish", "--run-id", RUN) == ExitStatus.TRANSIENT
    err = capsys.readouterr().err
    assert "1 targets of the manifest are missing or differ at the destination" in err
    assert victim in err
    assert local.keys("metadata/") == set()
    for index in range(4):
        assert _copy(upstream, local, index) == 0
    assert upstream.run(local, "shard", "publish", "--run-id", RUN) == 0


def test_a_manifest_altered_by_one_byte_is_refused(
    upstream: Upstream, dest: Dest, capsys: pytest.CaptureFixture[str]
) -> None:
    """One byte of shard 2's manifest changed: its copy exits 1 naming the file and
    writes nothing (no target of it, no marker), and publish refuses too."""
    _plan(upstream, dest)
    key = f"{INTERNAL}runs/{RUN}/shard-0002.jsonl"
    data = bytearray(dest.read(key))
    position = data.index(b'"length":') + len(b'"length":')
    data[position] = ord("9") if data[position] != ord("9") else ord("8")
    dest.write(key, bytes(data))
    before = dest.files(internal=True)
    upstream.server.clear_log()
    assert _copy(upstream, dest, 2) == ExitStatus.VERIFICATION_FAILED
    assert f"{key} does not match run.json" in capsys.readouterr().err
    assert dest.files(internal=True) == before
    assert upstream.target_requests() == []
    for index in (0, 1, 3):
        assert _copy(upstream, dest, index) == 0
    capsys.readouterr()
    status = upstream.run(dest, "shard", "publish", "--run-id", RUN)
    assert status in (ExitStatus.TRANSIENT, ExitStatus.VERIFICATION_FAILED)
    assert dest.keys("metadata/") == set()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--index", "4", "--count", "4"], "--index 4 is out of range for --count 4: use 0..3"),
        (["--index", "-1", "--count", "4"], "--index: -1 is not between 0"),
        (["--count", "4"], "--count 4 without a shard index"),
        (["--index", "1", "--count", "3"], "planned with 4 shards, not --count 3"),
        (["--index", "x"], "--index: not a whole number"),
    ],
)
def test_a_shard_position_out_of_range_is_a_usage_error(
    upstream: Upstream,
    local: Dest,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    message: str,
) -> None:
    """``--index 4 --count 4`` and its kin: exit 2 with a one-line message, nothing
    fetched, the destination unchanged."""
    _plan(upstream, local)
    before = local.files(internal=True)
    upstream.server.clear_log()
    assert upstream.run(local, "shard", "copy", "--run-id", RUN, *flags) == ExitStatus.USAGE
    assert message in capsys.readouterr().err
    assert local.files(internal=True) == before
    assert upstream.target_requests() == []


def test_an_unknown_run_is_a_usage_error(
    upstream: Upstream, local: Dest, capsys: pytest.CaptureFixture[str]
) -> None:
    """Copying or publishing a run that was never planned: exit 2, nothing written;
    a run id that could escape the runs directory is refused before anything."""
    assert upstream.run(local, "shard", "copy", "--run-id", "nope") == ExitStatus.USAGE
    assert "no planned run 'nope'" in capsys.readouterr().err
    assert upstream.run(local, "shard", "publish", "--run-id", "nope") == ExitStatus.USAGE
    assert upstream.run(local, "shard", "copy", "--run-id", "../x") == ExitStatus.USAGE
    assert "not a run id: '../x'" in capsys.readouterr().err
    assert local.files(internal=True) == {}


def test_index_and_count_come_from_the_schedulers_environment(
    upstream: Upstream, local: Dest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without flags, an AWS Batch array child copies AWS_BATCH_JOB_ARRAY_INDEX of
    AWS_BATCH_JOB_ARRAY_SIZE, a Kubernetes Indexed Job pod JOB_COMPLETION_INDEX;
    with neither, copy does every shard."""
    _plan(upstream, local)
    markers = f"{INTERNAL}runs/{RUN}/done/"
    monkeypatch.setenv("AWS_BATCH_JOB_ARRAY_INDEX", "1")
    monkeypatch.setenv("AWS_BATCH_JOB_ARRAY_SIZE", "4")
    assert upstream.run(local, "shard", "copy", "--run-id", RUN) == 0
    assert local.keys(markers) == {f"{markers}0001.json"}
    monkeypatch.delenv("AWS_BATCH_JOB_ARRAY_INDEX")
    monkeypatch.delenv("AWS_BATCH_JOB_ARRAY_SIZE")
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "3")
    monkeypatch.setenv("TUF_MIRROR_RUN_ID", RUN)
    assert upstream.run(local, "shard", "copy", "--count", "4") == 0
    assert local.keys(markers) == {f"{markers}0001.json", f"{markers}0003.json"}
    monkeypatch.delenv("JOB_COMPLETION_INDEX")
    upstream.server.clear_log()
    assert upstream.run(local, "shard", "copy") == 0
    assert local.keys(markers) == {f"{markers}{index:04d}.json" for index in range(4)}
    done = json.loads(local.read(f"{markers}0003.json"))
    assert done["copied"] == 0
    assert done["present"] == done["targets"]
    # Only the two shards not copied before were fetched.
    assert len(upstream.target_requests()) == len(local.keys("targets/")) - sum(
        json.loads(local.read(f"{markers}{index:04d}.json"))["targets"] for index in (1, 3)
    )


def test_shard_position_precedence() -> None:
    """Flags beat the environment; AWS Batch's index beats Kubernetes'; a count from
    the environment without an index is refused."""
    env = {"AWS_BATCH_JOB_ARRAY_INDEX": "2", "JOB_COMPLETION_INDEX": "5"}
    assert shard_position(None, "8", env) == (2, 8)
    assert shard_position("7", "8", env) == (7, 8)
    assert shard_position(None, None, {"JOB_COMPLETION_INDEX": "5"}) == (5, None)
    assert shard_position(None, None, {}) == (None, None)
    with pytest.raises(UsageError, match="AWS_BATCH_JOB_ARRAY_SIZE 4 without a shard index"):
        shard_position(None, None, {"AWS_BATCH_JOB_ARRAY_SIZE": "4"})
    with pytest.raises(UsageError, match="JOB_COMPLETION_INDEX 5 is out of range"):
        shard_position(None, "4", {"JOB_COMPLETION_INDEX": "5"})


def test_publish_after_the_upstream_moved_on_syncs_the_rest(
    upstream: Upstream, local: Dest, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A new upstream state between plan and publish: publish still succeeds, the
    normal sync fetching only the new target, and says the upstream moved on."""
    _plan(upstream, local)
    for index in range(4):
        assert _copy(upstream, local, index) == 0
    upstream.repo.add_target("files/late.txt", b"late\n")
    upstream.repo.publish(upstream.directory)
    upstream.server.clear_log()
    assert upstream.run(local, "shard", "publish", "--run-id", RUN) == 0
    assert [name.rsplit(".", 1)[0].split(".", 1)[1] for name in upstream.target_requests()] == [
        "late"
    ]
    assert "the upstream moved on since the plan (timestamp v1 -> v2)" in capsys.readouterr().err
    reference = local_dest(tmp_path, "reference")
    assert upstream.run(reference, "sync") == 0
    assert local.files() == reference.files()


def test_a_repository_without_consistent_snapshots(tmp_path: Path, local: Dest) -> None:
    """Targets published under their plain paths (no hash prefix): the run records
    it, copy writes those names, and the result equals a single-process sync."""
    repo = make_repo(bins=4, targets=20, consistent=False)
    repo.publish(tmp_path / "plain")
    root_file = tmp_path / "plain-root.json"
    root_file.write_bytes(repo.root_bytes(1))
    with serve_directory(tmp_path / "plain") as server:
        plain = Upstream(repo, tmp_path / "plain", server, root_file)
        assert plain.run(local, "shard", "plan", "--shards", "3", "--run-id", RUN) == 0
        assert run_json(local, RUN)["consistent_snapshot"] is False
        assert plain.run(local, "shard", "copy", "--run-id", RUN) == 0
        assert "targets/files/file-0000.txt" in local.keys("targets/")
        assert plain.run(local, "shard", "publish", "--run-id", RUN) == 0
        reference = local_dest(tmp_path, "reference")
        assert plain.run(reference, "sync") == 0
    assert local.files() == reference.files()


def test_a_policy_is_refused(
    upstream: Upstream, local: Dest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sharded copy cannot honour a trust policy (held-back targets would be
    written where clients find them): every step refuses --policy with exit 2 and
    writes nothing."""
    policy = tmp_path / "policy.toml"
    policy.write_text("")
    for step in (
        ["plan", "--shards", "2"],
        ["copy", "--run-id", RUN],
        ["publish", "--run-id", RUN],
    ):
        status = upstream.run(local, "shard", *step, "--policy", str(policy))
        assert status == ExitStatus.USAGE
        assert "--policy is not supported by `shard` yet" in capsys.readouterr().err
    assert local.files(internal=True) == {}


def test_a_shard_cut_short_by_the_budget_writes_no_marker(upstream: Upstream, local: Dest) -> None:
    """``shard copy --max-transfer`` smaller than the shard: exit 5, the copied
    targets stay, no completion marker (publish would otherwise trust a partial
    shard); repeated copies converge and then publish succeeds."""
    _plan(upstream, local)
    for index in (0, 1, 2):
        assert _copy(upstream, local, index) == 0
    copy_3 = ("shard", "copy", "--run-id", RUN, "--index", "3", "--count", "4")
    marker = run_key(RUN, marker_name(3))
    assert upstream.run(local, *copy_3, "--max-transfer", "300") == ExitStatus.BUDGET
    assert marker not in local.files(internal=True)
    assert local.keys("targets/"), "nothing copied"
    statuses = [upstream.run(local, *copy_3, "--max-transfer", "300") for _ in range(20)]
    assert ExitStatus.OK in statuses
    assert set(statuses[: statuses.index(ExitStatus.OK)]) <= {ExitStatus.BUDGET}
    assert marker in local.files(internal=True)
    assert upstream.run(local, "shard", "publish", "--run-id", RUN) == 0
