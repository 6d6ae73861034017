"""SIGTERM to a real ``tuf-mirror sync`` process writing to S3 (moto_server on
127.0.0.1) while it uploads targets: exit 143, no traceback, nothing a reader would
follow is published, the lock object is deleted; the rerun uploads only what is
missing and ends byte-identical to the upstream."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from mirror.errors import ExitStatus
from tests.s3.conftest import S3Env
from tests.s3.test_s3_resume import target_keys
from tests.sync.conftest import tree
from tuf_mirror_testing.server import Fault


def test_sigterm_mid_sync_on_s3_then_rerun_converges(s3env: S3Env) -> None:
    """SIGTERM at 8 uploaded targets: 143 with one summary line, no timestamp.json,
    no lock left in the bucket; the rerun uploads none of the written targets."""
    s3env.server.faults.add("/targets/*", Fault.delay(0.1))
    cmd = [sys.executable, "-m", "mirror", *s3env.args("sync", "--transfers", "2")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(target_keys(s3env)) < 8:
        assert proc.poll() is None, "the sync finished before it could be stopped"
        assert time.monotonic() < deadline, "the sync made no progress"
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == ExitStatus.SIGTERM, stderr
    assert "Traceback" not in stderr
    summaries = [line for line in stderr.splitlines() if line.startswith("tuf-mirror sync:")]
    assert len(summaries) == 1
    assert "INTERRUPTED (exit 143)" in summaries[0]
    objects = s3env.objects(internal=True)
    assert "metadata/timestamp.json" not in objects, "published while stopping"
    assert ".tuf-mirror/lock" not in objects, "the lock was left behind"

    written = target_keys(s3env)
    upstream = tree(s3env.upstream)
    for key in written:
        assert objects[key] == upstream[key]
    s3env.server.faults.clear()
    s3env.server.wait_idle()
    assert s3env.run() == ExitStatus.OK
    assert s3env.objects() == upstream
    uploaded = {k for k in s3env.recorder.puts() if k.startswith("targets/")}
    all_targets = {k for k in upstream if k.startswith("targets/")}
    assert uploaded == all_targets - written, "a target already in the bucket was uploaded"
