"""SIGINT and SIGTERM sent to a real ``tuf-mirror`` process at several instants: while
a first sync copies targets, while an incremental sync copies targets, while a run
publishes, twice in a row, and to a whole process group with worker processes.

Every case pins down the same contract: exit 130 (SIGINT) or 143 (SIGTERM), no
traceback, one summary line, the report and the metrics written with that status,
the lock released, a destination that is consistent (a fresh ``verify`` passes, or
nothing is published yet), and a rerun that converges to the upstream's bytes
without downloading again a target the stopped run had written (requests counted).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from mirror.cli import main
from mirror.errors import ExitStatus
from tests.sync.conftest import Env, make_repo, serving, tree
from tuf_mirror_testing.server import Fault

_REPO_ROOT = Path(__file__).resolve().parents[2]


def _target_files(dest: Path) -> set[str]:
    root = dest / "targets"
    if not root.exists():
        return set()
    return {p.relative_to(dest).as_posix() for p in root.rglob("*") if p.is_file()}


class Run:
    """One ``tuf-mirror`` subprocess with its report and metrics files."""

    def __init__(
        self,
        env: Env,
        tmp_path: Path,
        *extra: str,
        module: str = "mirror",
        environ: dict[str, str] | None = None,
        new_session: bool = False,
    ) -> None:
        self.report = tmp_path / "report.json"
        self.metrics = tmp_path / "tuf_mirror.prom"
        args = env.args(
            "sync", "--report", str(self.report), "--metrics-file", str(self.metrics), *extra
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=_REPO_ROOT,
            env={**os.environ, **(environ or {})},
            start_new_session=new_session,
        )

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 60
        while not condition():
            assert self.proc.poll() is None, f"the run ended before {what}"
            assert time.monotonic() < deadline, f"no {what} within a minute"
            time.sleep(0.01)

    def stderr_until(self, needle: str) -> list[str]:
        """Read stderr lines until one contains ``needle``."""
        assert self.proc.stderr is not None
        lines = []
        for line in self.proc.stderr:
            lines.append(line)
            if needle in line:
                return lines
        raise AssertionError(f"{needle!r} never printed; stderr: {''.join(lines)}")

    def finish(self, earlier: Sequence[str] = ()) -> tuple[int, str]:
        _, rest = self.proc.communicate(timeout=60)
        return self.proc.returncode, "".join(earlier) + rest


def _assert_stopped(run: Run, status: int, stderr: str, env: Env, signame: str) -> None:
    assert "Traceback" not in stderr, stderr
    summaries = [line for line in stderr.splitlines() if line.startswith("tuf-mirror sync:")]
    assert len(summaries) == 1, stderr
    assert f"INTERRUPTED (exit {status})" in summaries[0]
    assert signame in summaries[0]
    report = json.loads(run.report.read_text())
    assert report["exit_status"] == status
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(run.metrics.read_text())
        for sample in family.samples
    }
    assert samples["tuf_mirror_last_run_exit_status"] == status
    assert not (env.dest / ".tuf-mirror" / "lock").exists(), "the lock was left behind"


def _assert_complete_copies(env: Env, names: set[str]) -> None:
    upstream = tree(env.upstream)
    for name in names:
        assert (env.dest / name).read_bytes() == upstream[name]


def _verify(env: Env) -> int:
    return main(["verify", "--root", str(env.root_file), "--dest", str(env.dest)])


def _rerun_fetches_only_the_rest(env: Env, written: set[str]) -> None:
    env.server.faults.clear()
    assert env.run() == ExitStatus.OK
    upstream = tree(env.upstream)
    assert tree(env.dest) == upstream
    fetched = {p.lstrip("/") for p in env.requested() if p.startswith("/targets/")}
    every = {n for n in upstream if n.startswith("targets/")}
    assert fetched == every - written, "a target the stopped run wrote was fetched again"


def test_sigint_during_first_sync(tmp_path: Path) -> None:
    """SIGINT while a first sync copies targets: exit 130, transfers in flight are
    finished and written, nothing is published, report and metrics say 130, the
    lock is gone; the rerun fetches only the targets not yet written. In flight
    are up to two pipelined batches of 32 (``--transfers 2``): the repository holds
    100 targets."""
    with serving(make_repo(targets=100), tmp_path / "served") as env:
        env.server.faults.add("/targets/*", Fault.delay(0.1))
        run = Run(env, tmp_path, "--transfers", "2")
        run.wait_for(lambda: len(_target_files(env.dest)) >= 8, "8 targets written")
        run.proc.send_signal(signal.SIGINT)
        status, stderr = run.finish()
        assert status == ExitStatus.SIGINT, stderr
        _assert_stopped(run, status, stderr, env, "SIGINT")
        assert "the published state is unchanged" in stderr
        assert not (env.dest / "metadata" / "timestamp.json").exists(), "published while stopping"
        written = _target_files(env.dest)
        assert 8 <= len(written) < 100
        _assert_complete_copies(env, written)
        env.server.wait_idle()
        _rerun_fetches_only_the_rest(env, written)


def test_sigterm_during_incremental_sync(env: Env, tmp_path: Path) -> None:
    """SIGTERM while an incremental sync copies new targets: exit 143, the mirror
    still serves the previous state (verify passes, timestamp unchanged); the rerun
    converges without fetching a written target again."""
    assert env.run() == ExitStatus.OK
    before = (env.dest / "metadata" / "timestamp.json").read_bytes()
    for index in range(30):
        env.repo.add_target(f"more/file-{index:03d}.txt", f"more {index}\n".encode() * 50)
    env.publish()
    old_targets = _target_files(env.dest)
    env.server.faults.add("/targets/*", Fault.delay(0.1))
    run = Run(env, tmp_path, "--transfers", "2")
    run.wait_for(lambda: len(_target_files(env.dest) - old_targets) >= 5, "5 new targets")
    run.proc.send_signal(signal.SIGTERM)
    status, stderr = run.finish()
    assert status == ExitStatus.SIGTERM, stderr
    _assert_stopped(run, status, stderr, env, "SIGTERM")
    assert (env.dest / "metadata" / "timestamp.json").read_bytes() == before
    assert _verify(env) == ExitStatus.OK
    written = _target_files(env.dest)
    _assert_complete_copies(env, written - old_targets)
    env.server.wait_idle()
    _rerun_fetches_only_the_rest(env, written)


def test_sigterm_during_publish_lets_the_publish_complete(env: Env, tmp_path: Path) -> None:
    """SIGTERM while metadata is being published: the publish under way completes
    (never a half-replaced metadata set), then the run stops with 143; verify
    passes and the rerun has nothing to fetch."""
    marker = tmp_path / "publishing"
    run = Run(
        env,
        tmp_path,
        module="tests.sync.slow_publish_cli",
        environ={"SLOW_PUBLISH_MARKER": str(marker)},
    )
    run.wait_for(marker.exists, "the publish")
    run.proc.send_signal(signal.SIGTERM)
    status, stderr = run.finish()
    assert status == ExitStatus.SIGTERM, stderr
    _assert_stopped(run, status, stderr, env, "SIGTERM")
    assert "stopped after publishing" in stderr
    assert tree(env.dest) == tree(env.upstream)
    assert _verify(env) == ExitStatus.OK
    env.server.wait_idle()
    _rerun_fetches_only_the_rest(env, _target_files(env.dest))


def test_second_signal_stops_at_once(env: Env, tmp_path: Path) -> None:
    """A second SIGINT during the grace stops at once (the grace here is 10 minutes
    and the upstream hangs 5 s per target): still exit 130, report written, lock
    released, nothing published; the rerun converges."""
    env.server.faults.add("/targets/*", Fault.delay(5))
    run = Run(env, tmp_path, "--transfers", "2", "--grace", "10m")
    run.wait_for(
        lambda: sum(path.startswith("/targets/") for path in env.server.paths()) >= 2,
        "target requests in flight",
    )
    run.proc.send_signal(signal.SIGINT)
    earlier = run.stderr_until("SIGINT received")
    run.proc.send_signal(signal.SIGINT)
    status, stderr = run.finish(earlier)
    assert status == ExitStatus.SIGINT, stderr
    assert "second signal" in stderr
    _assert_stopped(run, status, stderr, env, "SIGINT")
    assert not (env.dest / "metadata" / "timestamp.json").exists()
    env.server.faults.clear()
    env.server.wait_idle(timeout=30)  # the abandoned requests end their 5 s delay
    _rerun_fetches_only_the_rest(env, _target_files(env.dest))


def test_ctrl_c_to_the_process_group_with_worker_processes(env: Env, tmp_path: Path) -> None:
    """Ctrl-C reaches every process of the terminal's group: the worker processes
    leave the stop to their parent (no traceback from any of them), the parent
    exits 130 and the rerun converges without fetching a written target again."""
    env.server.faults.add("/targets/*", Fault.delay(0.1))
    run = Run(env, tmp_path, "--processes", "2", "--transfers", "2", new_session=True)
    run.wait_for(lambda: len(_target_files(env.dest)) >= 6, "6 targets written")
    os.killpg(run.proc.pid, signal.SIGINT)
    status, stderr = run.finish()
    assert status == ExitStatus.SIGINT, stderr
    assert "KeyboardInterrupt" not in stderr
    _assert_stopped(run, status, stderr, env, "SIGINT")
    written = _target_files(env.dest)
    _assert_complete_copies(env, written)
    env.server.wait_idle()
    _rerun_fetches_only_the_rest(env, written)
