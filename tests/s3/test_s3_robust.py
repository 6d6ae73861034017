"""S3 faults the mirror must survive: 5xx during the start-up probe of conditional
writes, connection resets while a body is read, and a killed run's spool: its
resumable partial download is continued by the next run, its leftovers reclaimed."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import botocore.response
import pytest
from urllib3.exceptions import ProtocolError

from mirror.errors import ExitStatus
from mirror.storage.lock import LOCK_KEY
from mirror.storage.s3 import S3Store
from tests.s3.conftest import S3Env
from tests.sync.conftest import tree
from tuf_mirror_testing.server import Fault


def _exited_pid() -> int:
    """The pid of a process of this machine that has exited."""
    probe = subprocess.Popen(["true"])
    probe.wait()
    return probe.pid


def spool_of(s3env: S3Env) -> Path:
    """The destination's spool directory, as every run on it computes it."""
    store = S3Store(s3env.bucket, "mirror")
    return store.spool_dir()


def test_5xx_during_the_conditional_write_probe_is_not_a_configuration_error(
    s3env: S3Env,
) -> None:
    """A 500 on the first attempt of the lock's PutObject and of the If-None-Match
    probe that follows: botocore retries, the retried probe's 412 is read back as
    not ours, so the endpoint is not called one that ignores If-None-Match (2): the
    run succeeds."""
    s3env.recorder.fail("PutObject", ".tuf-mirror/lock", 500, "InternalError", times=2)

    assert s3env.run() == ExitStatus.OK
    assert s3env.objects() == tree(s3env.upstream)
    assert sum(s.faulted for s in s3env.recorder.sends) == 2


def test_5xx_on_every_probe_attempt_is_transient(
    s3env: S3Env, capsys: pytest.CaptureFixture[str]
) -> None:
    """An endpoint answering 503 to every lock PutObject: exit 3 (retry later), one
    line, never exit 2, and nothing written."""
    s3env.recorder.fail("PutObject", ".tuf-mirror/lock", 503, "SlowDown")

    assert s3env.run() == ExitStatus.TRANSIENT
    err = capsys.readouterr().err
    assert "If-None-Match" not in err
    assert "Traceback" not in err
    assert s3env.objects() == {}


def test_a_connection_reset_while_reading_is_exit_3(
    s3env: S3Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """urllib3's ProtocolError (connection reset mid-body) from reading an object of
    the published state is a transient StorageError: exit 3, one line, no
    traceback, the bucket unchanged; the rerun converges."""
    assert s3env.run() == ExitStatus.OK
    s3env.repo.add_target("files/new.txt", b"new")
    s3env.publish()
    before = s3env.objects(internal=True)
    real = botocore.response.StreamingBody.read

    def reset(self: botocore.response.StreamingBody, amt: int | None = None) -> bytes:
        raise ProtocolError("Connection broken: ConnectionResetError(104, 'reset by peer')")

    monkeypatch.setattr(botocore.response.StreamingBody, "read", reset)
    capsys.readouterr()
    assert s3env.run() == ExitStatus.TRANSIENT
    err = capsys.readouterr().err
    assert "Connection broken" in err
    assert "Traceback" not in err
    monkeypatch.setattr(botocore.response.StreamingBody, "read", real)
    assert s3env.objects(internal=True) == before, "changed, or the lock left behind"

    assert s3env.run() == ExitStatus.OK
    assert s3env.objects() == tree(s3env.upstream)


def test_a_partial_download_resumes_in_the_next_s3_run(s3env: S3Env) -> None:
    """A large target whose download breaks off: the S3 run exits 3 and keeps the
    partial file in the destination's spool directory (not a private temporary one
    removed at exit); the next run continues it with a Range request, so the
    server sends each of its bytes once, and the partial is gone afterwards."""
    assert s3env.run() == ExitStatus.OK
    data = hashlib.sha256(b"seed").digest() * (600 * 1024 // 32)
    s3env.repo.add_target("big/blob.bin", data)
    s3env.publish()
    s3env.server.faults.add("/targets/*blob.bin", Fault.truncate(400 * 1024))

    assert s3env.run("sync", "--retries", "1") == ExitStatus.TRANSIENT
    partials = [p for p in spool_of(s3env).iterdir() if p.name.startswith("partial-")]
    assert partials, "no partial download kept"
    first = sum(r.bytes_sent for r in s3env.server.requests if "blob.bin" in r.path)

    s3env.server.faults.clear()
    assert s3env.run() == ExitStatus.OK
    again = [r for r in s3env.server.requests if "blob.bin" in r.path]
    assert len(again) == 1
    assert again[0].headers.get("range", "").startswith("bytes=")
    assert first + again[0].bytes_sent == len(data)
    assert s3env.objects() == tree(s3env.upstream)
    assert not [p for p in spool_of(s3env).iterdir() if p.name.startswith("partial-")]


def test_a_killed_runs_spool_leftovers_are_reclaimed(s3env: S3Env) -> None:
    """Spooled roles and targets a killed run left in the destination's spool
    directory are deleted by the next run that holds the lock."""
    spool = spool_of(s3env)
    for name in ("role-1-deadbeef", "target-3-0123456789ab", "partial-x.partial.json.tmp"):
        (spool / name).write_bytes(b"x" * 1000)

    assert s3env.run() == ExitStatus.OK
    assert list(spool.iterdir()) == []


@pytest.mark.parametrize(
    "operation", ["GetObject", "HeadObject", "PutObject", "ListObjectsV2", "DeleteObject"]
)
def test_5xx_on_every_attempt_of_one_operation_is_never_1_or_2(
    s3env: S3Env, operation: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An incremental sync while every attempt of one S3 operation answers 500: the
    run ends 0 (the operation was not needed, or only for cleanup) or 3, never 1 (a
    security event) or 2 (configuration), with no traceback; the bucket still
    verifies, and with the fault gone the rerun converges."""
    assert s3env.run() == ExitStatus.OK
    s3env.repo.add_target("files/new.txt", b"new")
    s3env.publish()
    fault = s3env.recorder.fail(operation, "*", 500, "InternalError")
    capsys.readouterr()

    status = s3env.run()
    err = capsys.readouterr().err
    s3env.recorder.faults.remove(fault)
    assert status in (ExitStatus.OK, ExitStatus.TRANSIENT), err
    assert "Traceback" not in err
    assert fault.hits > 0 or operation == "ListObjectsV2"  # not needed by this run
    assert s3env.run("verify") == ExitStatus.OK
    if operation == "DeleteObject":
        # The lock could not be released: the next run finds it once this process
        # is gone (as a later cron run would find a finished process's lock).
        left = {
            key: data
            for key, data in s3env.objects(internal=True).items()
            if key.endswith(LOCK_KEY)
        }
        assert LOCK_KEY in left  # the destination's (and any other store's, e.g. a ledger's)
        for key, data in left.items():
            lock = json.loads(data)
            assert lock["pid"] == os.getpid()
            lock["pid"], lock["pid_start"] = _exited_pid(), None
            s3env.put(key, json.dumps(lock).encode())

    assert s3env.run() == ExitStatus.OK
    assert s3env.objects() == tree(s3env.upstream)


def test_verify_with_read_only_credentials(s3env: S3Env) -> None:
    """An auditor whose credentials may only read (every PutObject and DeleteObject
    answers 403 AccessDenied, as under a read-only IAM policy) verifies the bucket:
    exit 0, and verify never even attempts a write."""
    assert s3env.run() == ExitStatus.OK
    for operation in ("PutObject", "DeleteObject", "CreateMultipartUpload"):
        s3env.recorder.fail(operation, "*", 403, "AccessDenied")

    assert s3env.run("verify") == ExitStatus.OK
    assert s3env.recorder.attempts("PutObject") == []
    assert s3env.recorder.attempts("DeleteObject") == []
