"""SIGTERM in the middle of a real ``tuf-mirror import`` or ``export`` process:
exit 143, no traceback, nothing published (no bundle written), the lock released,
the report written; the rerun converges without copying or downloading again what
the stopped run had written."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from mirror.airgap.exporter import STAGING
from mirror.airgap.volumes import existing_bundle_paths
from mirror.errors import ExitStatus
from tests.airgap.conftest import Air
from tests.airgap.test_kill import _published, _target_files
from tests.sync.conftest import tree
from tuf_mirror_testing.server import Fault

_REPO_ROOT = Path(__file__).resolve().parents[2]


def test_sigterm_mid_import_then_rerun_converges(air: Air) -> None:
    """SIGTERM while an import copies targets: 143 with one summary line, nothing
    published, no lock left, the report counts what the stopped run copied; the
    rerun copies only the targets not yet written."""
    bundle = air.tmp / "b0.tar"
    assert air.export(bundle, "--full") == ExitStatus.OK
    stopped_report = air.tmp / "stopped.json"
    cmd = [sys.executable, "-m", "tests.airgap.slow_cli", "import", str(bundle)]
    cmd += ["--root", str(air.root_file), "--dest", str(air.far)]
    cmd += ["--report", str(stopped_report), "--transfers", "2"]
    proc = subprocess.Popen(
        cmd, cwd=_REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while len(_target_files(air.far)) < 10:
        assert proc.poll() is None, "the import finished before it could be stopped"
        assert time.monotonic() < deadline, "the import made no progress"
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == ExitStatus.SIGTERM, stderr
    assert "Traceback" not in stderr
    summaries = [line for line in stderr.splitlines() if line.startswith("tuf-mirror import:")]
    assert len(summaries) == 1
    assert "INTERRUPTED (exit 143)" in summaries[0]
    assert json.loads(stopped_report.read_text())["exit_status"] == ExitStatus.SIGTERM
    assert not (air.far / ".tuf-mirror" / "lock").exists()
    assert not (air.far / "metadata" / "timestamp.json").exists(), "published while stopping"

    written = _target_files(air.far)
    stopped = json.loads(stopped_report.read_text())
    assert stopped["targets_fetched"] == len(written), "the stopped run's counters are kept"
    assert air.sync_near() == ExitStatus.OK
    near = tree(air.near)
    for name in written:
        assert (air.far / name).read_bytes() == near[name]
    report = air.tmp / "report.json"
    assert air.import_(bundle, "--report", str(report)) == ExitStatus.OK
    assert _published(air.far) == near
    counts = json.loads(report.read_bytes())
    assert counts["targets_already_present"] == len(written)
    assert counts["targets_fetched"] == 40 - len(written)


def test_sigterm_mid_export_writes_no_bundle_and_the_rerun_resumes(air: Air) -> None:
    """SIGTERM while an export downloads targets: 143, no bundle (not even a partial
    one) at --to, the state directory's lock released; the rerun writes the bundle
    without downloading again the targets the stopped run had staged."""
    air.server.faults.add("/targets/*", Fault.delay(0.1))
    to = air.tmp / "b0.tar"
    cmd = [sys.executable, "-m", "mirror", "export", "--root", str(air.root_file)]
    cmd += ["--upstream", air.server.url, "--to", str(to), "--state-dir", str(air.state_dir)]
    cmd += ["--full", "--transfers", "2"]
    proc = subprocess.Popen(
        cmd, cwd=_REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    staged_targets = air.state_dir / STAGING / "targets"

    def staged() -> set[str]:
        if not staged_targets.exists():
            return set()
        return {p.name for p in staged_targets.rglob("*") if p.is_file()}

    deadline = time.monotonic() + 60
    while len(staged()) < 8:
        assert proc.poll() is None, "the export finished before it could be stopped"
        assert time.monotonic() < deadline, "the export made no progress"
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == ExitStatus.SIGTERM, stderr
    assert "Traceback" not in stderr
    summaries = [line for line in stderr.splitlines() if line.startswith("tuf-mirror export:")]
    assert len(summaries) == 1
    assert "INTERRUPTED (exit 143)" in summaries[0]
    assert existing_bundle_paths(to) == []
    assert not (air.state_dir / ".tuf-mirror" / "lock").exists()

    kept = staged()
    air.server.faults.clear()
    air.server.wait_idle()
    air.server.clear_log()
    assert air.export(to, "--full") == ExitStatus.OK
    fetched = {p.rsplit("/", 1)[-1] for p in air.server.paths() if p.startswith("/targets/")}
    assert fetched, "the rerun fetched nothing"
    assert not fetched & kept, "a staged target was downloaded again"
    assert len(fetched | kept) == 40
