"""SIGKILL in the middle of a real ``tuf-mirror sync`` process, then a rerun: the
published state stays consistent throughout and the rerun converges to the same
bytes without downloading again the targets the killed run had written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mirror.errors import ExitStatus
from tests.sync.conftest import Env, tree
from tuf_mirror_testing.server import Fault


def _target_files(dest: Path) -> set[str]:
    root = dest / "targets"
    return {p.relative_to(dest).as_posix() for p in root.rglob("*") if p.is_file()}


def test_sigkill_mid_sync_then_rerun_converges(env: Env) -> None:
    """Kill -9 while targets are being copied: nothing is published (no timestamp),
    and the rerun fetches only the targets that were not yet written."""
    env.server.faults.add("/targets/*", Fault.delay(0.05))
    cmd = [sys.executable, "-m", "mirror.cli", *env.args("sync", "--transfers", "2")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while len(_target_files(env.dest) if env.dest.exists() else ()) < 10:
            assert proc.poll() is None, "the sync finished before it could be killed"
            assert time.monotonic() < deadline, "the sync made no progress"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    env.server.wait_idle()

    written = _target_files(env.dest)
    assert 10 <= len(written) < 40
    assert not (env.dest / "metadata" / "timestamp.json").exists(), "published before done"
    upstream = tree(env.upstream)
    for name in written:  # every file the killed run left is complete and verified
        assert (env.dest / name).read_bytes() == upstream[name]

    env.server.faults.clear()
    assert env.run() == ExitStatus.OK
    assert tree(env.dest) == upstream
    fetched = {p.lstrip("/") for p in env.requested() if p.startswith("/targets/")}
    assert fetched == {n for n in upstream if n.startswith("targets/")} - written
