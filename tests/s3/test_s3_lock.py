"""The destination lock on a bucket: two real runs against the same bucket at once
(one ``tuf-mirror sync`` process, one in-process run), and leases from other hosts."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from mirror.errors import ExitStatus
from mirror.storage.lock import LOCK_KEY, LockInfo, ProcessIdentity
from tests.s3.conftest import PREFIX, S3Env
from tests.sync.conftest import tree
from tuf_mirror_testing.server import Fault


def lock_bytes(s3env: S3Env) -> bytes | None:
    try:
        resp = s3env.raw.get_object(Bucket=s3env.bucket, Key=f"{PREFIX}/{LOCK_KEY}")
    except ClientError:
        return None
    return bytes(resp["Body"].read())


def test_second_concurrent_run_gets_exit_4(s3env: S3Env) -> None:
    """While a ``tuf-mirror sync`` process holds the bucket's lock (a conditional
    PUT), a second run exits 4 after one failed conditional PUT, writes nothing and
    leaves the holder's lock alone; the first run then finishes and releases it."""
    s3env.server.faults.add("/targets/*", Fault.delay(0.1))
    cmd = [sys.executable, "-m", "mirror.cli", *s3env.args("sync", "--transfers", "2")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while (held := lock_bytes(s3env)) is None:
            assert proc.poll() is None, "the first run ended before taking the lock"
            assert time.monotonic() < deadline, "the first run never took the lock"
            time.sleep(0.01)
        holder = json.loads(held)
        assert holder["pid"] == proc.pid

        assert s3env.run() == ExitStatus.LOCKED
        assert s3env.recorder.puts(internal=True) == [LOCK_KEY], "one conditional PUT, no write"
        assert lock_bytes(s3env) == held, "the holder's lock was left alone"
        assert proc.poll() is None, "the first run was still working"
    finally:
        s3env.server.faults.clear()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitStatus.OK, err.decode()
    assert lock_bytes(s3env) is None, "released"
    assert s3env.objects() == tree(s3env.upstream)


def foreign_lease(*, created: datetime, expires: datetime) -> bytes:
    return LockInfo(
        owner="cron",
        process=ProcessIdentity(host="elsewhere.example", pid=4242),
        created=created,
        expires=expires,
        token=secrets.token_hex(8),
    ).to_json()


def test_expired_lease_from_another_host_is_taken_over(
    s3env: S3Env, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A lease left by a run on another machine (an evicted pod) that expired is
    taken over by the next run without any flag: it syncs, releases, leaves no claim
    object, and its report names the dead holder."""
    now = datetime.now(UTC)
    s3env.put(
        LOCK_KEY, foreign_lease(created=now - timedelta(hours=3), expires=now - timedelta(hours=2))
    )
    report = tmp_path / "report.json"

    assert s3env.run("sync", "--report", str(report)) == ExitStatus.OK

    assert "taking over the lock" in caplog.text
    assert lock_bytes(s3env) is None
    assert [k for k in s3env.objects(internal=True) if k.startswith(".tuf-mirror/lock")] == []
    assert s3env.objects() == tree(s3env.upstream)
    doc = json.loads(report.read_text())
    assert "cron on elsewhere.example (pid 4242)" in doc["lock_taken_over"]
    assert doc["locked_out_seconds"] == 0


def test_live_lease_from_another_host_is_exit_4_with_lockout_time(
    s3env: S3Env, tmp_path: Path
) -> None:
    """A lease from another host that is still live (renewed) is held: exit 4, nothing
    written, the lock untouched, and the report says how long the destination has
    been locked out; --break-stale-lock takes it over."""
    now = datetime.now(UTC)
    live = foreign_lease(created=now - timedelta(minutes=30), expires=now + timedelta(minutes=5))
    s3env.put(LOCK_KEY, live)
    report = tmp_path / "report.json"

    assert s3env.run("sync", "--report", str(report)) == ExitStatus.LOCKED

    assert lock_bytes(s3env) == live
    assert s3env.objects() == {}
    doc = json.loads(report.read_text())
    assert doc["exit_status"] == ExitStatus.LOCKED
    assert 30 * 60 <= doc["locked_out_seconds"] < 40 * 60

    assert s3env.run("sync", "--break-stale-lock") == ExitStatus.OK
    assert lock_bytes(s3env) is None
    assert s3env.objects() == tree(s3env.upstream)
