"""SIGKILL in the middle of a real ``tuf-mirror import`` process, then a rerun: the
published state stays the old one, and the rerun converges to the bytes of a direct
sync without copying again the targets the killed run had written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mirror.errors import ExitStatus
from tests.airgap.conftest import Air
from tests.sync.conftest import tree

_REPO_ROOT = Path(__file__).resolve().parents[2]


def _published(dest: Path) -> dict[str, bytes]:
    """``tree(dest)`` without the ``.tmp-*`` files a killed write may leave (stores
    ignore them; they are never published)."""
    return {k: v for k, v in tree(dest).items() if not k.rsplit("/", 1)[-1].startswith(".tmp-")}


def _target_files(dest: Path) -> set[str]:
    return {name for name in _published(dest) if name.startswith("targets/")}


def test_sigkill_mid_import_then_rerun_converges(air: Air) -> None:
    """Kill -9 while an import copies targets: nothing is published (no timestamp);
    the rerun keeps the targets already written and ends byte-identical to a sync."""
    bundle = air.tmp / "b0.tar"
    assert air.export(bundle, "--full") == ExitStatus.OK
    cmd = [sys.executable, "-m", "tests.airgap.slow_cli", "import", str(bundle)]
    cmd += ["--root", str(air.root_file), "--dest", str(air.far), "--transfers", "2"]
    proc = subprocess.Popen(
        cmd, cwd=_REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while len(_target_files(air.far)) < 10:
            assert proc.poll() is None, "the import finished before it could be killed"
            assert time.monotonic() < deadline, "the import made no progress"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    written = _target_files(air.far)
    assert 10 <= len(written) < 40
    assert not (air.far / "metadata" / "timestamp.json").exists(), "published before done"
    assert air.sync_near() == ExitStatus.OK
    near = tree(air.near)
    for name in written:  # every file the killed run left is complete and verified
        assert (air.far / name).read_bytes() == near[name]

    report = air.tmp / "report.json"
    assert air.import_(bundle, "--report", str(report)) == ExitStatus.OK
    assert _published(air.far) == near
    counts = json.loads(report.read_bytes())
    assert counts["targets_already_present"] == len(written)
    assert counts["targets_fetched"] == 40 - len(written)
    assert air.receipt().exists()


def test_rerun_after_a_kill_between_publish_and_receipt(air: Air) -> None:
    """An import killed after ``timestamp.json`` was published but before the receipt
    was written (its marker ``.tuf-mirror/import.json`` still names the bundle): the
    rerun finishes it (exit 0, receipt written) instead of calling it applied twice."""
    bundle = air.tmp / "b0"
    assert air.export(bundle, "--full") == ExitStatus.OK
    assert air.import_(bundle) == ExitStatus.OK
    manifest = json.loads((bundle / "manifest.json").read_bytes())
    marker = air.far / ".tuf-mirror" / "import.json"
    assert not marker.exists()
    published = tree(air.far)
    marker.write_text(json.dumps({"bundle_id": manifest["bundle_id"]}))
    air.receipt().unlink()
    assert air.import_(bundle) == ExitStatus.OK
    assert tree(air.far) == published
    assert json.loads(air.receipt().read_bytes())["bundle_id"] == manifest["bundle_id"]
    assert not marker.exists()
    assert air.import_(bundle) == ExitStatus.USAGE  # now it is applied twice
