"""``--max-transfer`` with a soft cut-off: in-flight transfers finish, resumed
downloads pay only what they move, a target larger than the budget progresses a
budget's worth per run, and repeated runs converge. Bytes are counted at the test
server."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from mirror.errors import ExitStatus
from tests.sync.conftest import Env, tree
from tuf_mirror_testing.repo import Repository
from tuf_mirror_testing.server import serve_directory

MiB = 1024 * 1024
#: three large targets (resumable downloads) and a few small ones (in memory)
LARGE = {f"big/blob-{index}.bin": 1 * MiB + 4099 * index for index in range(3)}
SMALL = {f"small/file-{index}.txt": 3000 + index for index in range(6)}


def _content(path: str, size: int) -> bytes:
    seed = hashlib.sha256(path.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


@pytest.fixture
def big_env(tmp_path: Path) -> Iterator[Env]:
    repo = Repository(consistent_snapshot=True)
    repo.add_hash_bins(4, succinct=False)
    for path, size in {**LARGE, **SMALL}.items():
        repo.add_target(path, _content(path, size))
    upstream = tmp_path / "upstream"
    repo.publish(upstream)
    root_file = tmp_path / "root.json"
    root_file.write_bytes(repo.root_bytes(1))
    with serve_directory(upstream) as server:
        yield Env(repo, upstream, server, root_file, tmp_path / "dest")


def test_budget_below_the_largest_target_converges(big_env: Env, tmp_path: Path) -> None:
    """A budget of 400 KiB, smaller than each 1 MiB target: every run but the last
    exits 5 having made progress; the runs converge within ceil(content / budget) + 2
    runs to the upstream byte for byte; each run's target bytes stay within the
    budget plus one small target; the server sends each target's bytes exactly once
    in total (resumed, never restarted, never fetched again), so the total is at
    most the content size plus one budget."""
    env = big_env
    budget = 400 * 1024
    content = sum(LARGE.values()) + sum(SMALL.values())
    bound = -(-content // budget) + 2
    per_file: dict[str, int] = defaultdict(int)
    statuses: list[int] = []
    report = tmp_path / "report.json"
    for _ in range(bound):
        status = env.run("sync", "--max-transfer", str(budget), "--report", str(report))
        statuses.append(status)
        served = 0
        for record in env.server.requests:
            if record.path.startswith("/targets/"):
                per_file[record.path] += record.bytes_sent
                served += record.bytes_sent
        assert served <= budget + max(SMALL.values()), (statuses, served)
        data = json.loads(report.read_text())
        if status == ExitStatus.OK:
            break
        assert status == ExitStatus.BUDGET, data["error"]
        assert served > 0, "exit 5 without progress"
        assert data["targets_deferred"] > 0
        assert not (env.dest / "metadata/timestamp.json").exists(), "published early"
    assert statuses[-1] == ExitStatus.OK, statuses
    assert tree(env.dest) == tree(env.upstream)
    lengths = {
        f"/{name}": len(data)
        for name, data in tree(env.upstream).items()
        if name.startswith("targets/")
    }
    assert dict(per_file) == lengths, "a target's bytes were sent more than once"
    assert sum(per_file.values()) <= content + budget


def test_in_flight_transfers_finish_when_the_budget_is_reached(
    big_env: Env, tmp_path: Path
) -> None:
    """A budget that covers the small targets and one large one: the transfers the
    run started finish and are written (verified, under their final names); the
    next run fetches only what is left, no verified file again."""
    env = big_env
    report = tmp_path / "report.json"
    status = env.run("sync", "--max-transfer", "1200K", "--transfers", "1", "--report", str(report))
    assert status == ExitStatus.BUDGET
    written = {k for k in tree(env.dest) if k.startswith("targets/")}
    data = json.loads(report.read_text())
    assert data["targets_fetched"] == len(written) >= 1
    upstream = tree(env.upstream)
    for name in written:
        assert (env.dest / name).read_bytes() == upstream[name]

    assert env.run() == ExitStatus.OK
    again = {r.path.lstrip("/") for r in env.server.requests if r.path.startswith("/targets/")}
    assert not again & written, "a verified, complete download was fetched again"
    assert tree(env.dest) == upstream


def test_zero_budget_is_a_usage_error(big_env: Env) -> None:
    """--max-transfer 0 could never make progress: exit 2, nothing written."""
    assert big_env.run("sync", "--max-transfer", "0") == ExitStatus.USAGE
    assert not big_env.dest.exists() or tree(big_env.dest) == {}
