"""The destination lease with real ``tuf-mirror sync`` processes: an expired lease
from another host is taken over, a live one is not (exit 4, with the lock-out time
in the report), and two processes taking over the same dead lease at once leave
exactly one winner."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mirror.errors import ExitStatus
from mirror.storage.lock import LockInfo, ProcessIdentity
from tests.sync.conftest import Env, tree
from tuf_mirror_testing.server import Fault


def foreign(*, age: timedelta, expires_in: timedelta) -> bytes:
    now = datetime.now(UTC)
    return LockInfo(
        owner="cronjob",
        process=ProcessIdentity(host="evicted-pod-7f9c", pid=1),
        created=now - age,
        expires=now + expires_in,
        token="e" * 32,
    ).to_json()


def sync_process(env: Env, report: Path, *extra: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "mirror.cli", *env.args("sync", "--report", str(report), *extra)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_expired_foreign_lease_is_taken_over_by_a_real_run(env: Env, tmp_path: Path) -> None:
    """An evicted pod's lease that expired 5 minutes ago: the next process takes it
    over (exit 0, a warning naming the dead holder), mirrors, and releases."""
    lock = env.dest / ".tuf-mirror" / "lock"
    lock.parent.mkdir(parents=True)
    lock.write_bytes(foreign(age=timedelta(minutes=20), expires_in=timedelta(minutes=-5)))
    report = tmp_path / "report.json"

    proc = sync_process(env, report)
    _, err = proc.communicate(timeout=120)

    assert proc.returncode == ExitStatus.OK, err.decode()
    assert b"taking over the lock" in err
    assert b"cronjob on evicted-pod-7f9c" in err
    assert not lock.exists()
    assert tree(env.dest) == tree(env.upstream)
    assert "evicted-pod-7f9c" in json.loads(report.read_text())["lock_taken_over"]


def test_live_foreign_lease_is_exit_4_with_lockout_time(env: Env, tmp_path: Path) -> None:
    """A lease renewed 1 minute ago by a run elsewhere, held for 45 minutes: exit 4,
    the lease untouched, nothing written, and locked_out_seconds in the report."""
    lock = env.dest / ".tuf-mirror" / "lock"
    lock.parent.mkdir(parents=True)
    live = foreign(age=timedelta(minutes=45), expires_in=timedelta(minutes=9))
    lock.write_bytes(live)
    report = tmp_path / "report.json"

    proc = sync_process(env, report)
    _, err = proc.communicate(timeout=120)

    assert proc.returncode == ExitStatus.LOCKED, err.decode()
    assert lock.read_bytes() == live
    assert not (env.dest / "metadata").exists()
    held = json.loads(report.read_text())["locked_out_seconds"]
    assert 45 * 60 <= held < 50 * 60


def test_two_processes_taking_over_one_dead_lease(env: Env, tmp_path: Path) -> None:
    """Two sync processes started together on a destination with a dead lease: one
    takes it over and mirrors (exit 0), the other finds the winner's live lease
    (exit 4) or, if it starts after the winner is done, has nothing new to do
    (exit 0); never both writing at once, and the mirror is complete."""
    lock = env.dest / ".tuf-mirror" / "lock"
    lock.parent.mkdir(parents=True)
    lock.write_bytes(foreign(age=timedelta(hours=2), expires_in=timedelta(hours=-1)))
    env.server.faults.add("/targets/*", Fault.delay(0.02))
    procs = [sync_process(env, tmp_path / f"r{i}.json") for i in range(2)]
    results = [(p.communicate(timeout=120)[1], p.returncode) for p in procs]
    statuses = sorted(code for _, code in results)

    assert statuses in ([ExitStatus.OK, ExitStatus.LOCKED], [ExitStatus.OK, ExitStatus.OK])
    reports = [json.loads((tmp_path / f"r{i}.json").read_text()) for i in range(2)]
    takers = [r for r in reports if r.get("lock_taken_over")]
    assert len(takers) == 1, [err.decode() for err, _ in results]
    assert not lock.exists()
    assert tree(env.dest) == tree(env.upstream)
