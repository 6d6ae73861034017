"""SIGKILL in the middle of a real ``tuf-mirror prune --apply`` process: the mirror
left behind verifies (every retained state is complete) and the rerun converges to
exactly the listing an uninterrupted prune leaves."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mirror.errors import ExitStatus
from tests.prune.conftest import changed_mirror, files, run_local
from tests.sync.conftest import Env

#: Runs the CLI in a child process whose ``LocalStore.delete_many`` stops for good
#: (until killed) once it has made BATCHES calls, after touching MARKER.
_CHILD = """
import sys, trio
from pathlib import Path
from mirror.storage.local import LocalStore
from mirror.cli import main

batches, marker = int(sys.argv[1]), Path(sys.argv[2])
real = LocalStore.delete_many
calls = 0

async def delete_many(self, keys):
    global calls
    if calls == batches:
        marker.write_text(str(calls))
        await trio.sleep_forever()
    calls += 1
    await real(self, keys)

LocalStore.delete_many = delete_many
sys.exit(main(sys.argv[3:]))
"""


@pytest.mark.parametrize(
    "batches",
    [0, 1, 2],
    ids=["before-any-delete", "after-targets", "after-roles-before-snapshots"],
)
def test_sigkill_mid_apply_then_rerun_converges(penv: Env, tmp_path: Path, batches: int) -> None:
    """Kill -9 after 0, 1 or 2 delete batches (targets are swept first, then roles,
    snapshots last): ``verify`` accepts the mirror, and the rerun deletes the rest
    and drops the swept states from the history."""
    listings = changed_mirror(penv)
    before = files(penv.dest)
    marker = tmp_path / "stopped"
    args = ["prune", "--root", str(penv.root_file), "--dest", str(penv.dest)]
    args += ["--keep-states", "1", "--keep-for", "0", "--apply"]
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(batches), str(marker), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, "the prune ended before it could be killed"
            assert time.monotonic() < deadline, "the prune made no progress"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    left = files(penv.dest)
    assert listings[-1].keys <= left <= before
    assert (len(left) < len(before)) == (batches > 0)
    assert run_local(penv, "verify") == ExitStatus.OK

    assert run_local(penv, "prune", "--keep-states", "1", "--keep-for", "0", "--apply") == 0

    assert files(penv.dest) == listings[-1].keys
    assert run_local(penv, "verify") == ExitStatus.OK
    state = json.loads((penv.dest / ".tuf-mirror" / "state.json").read_bytes())
    assert [entry["timestamp"] for entry in state["history"]] == [penv.repo.version("timestamp")]
    copies = {p.name for p in (penv.dest / ".tuf-mirror" / "timestamps").iterdir()}
    assert copies == {f"{penv.repo.version('timestamp')}.timestamp.json"}
