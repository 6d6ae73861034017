"""Injected S3 faults during ``tuf-mirror sync --dest s3://...``: throttling and 500s
are retried with backoff; an upload that keeps failing is exit 3 with the published
state intact (and a rerun converges); access denied and a missing bucket are
configuration errors (exit 2) after exactly one request, never retried."""

from __future__ import annotations

import hashlib
import re

from mirror.errors import ExitStatus
from mirror.storage.s3 import DEFAULT_MAX_ATTEMPTS
from tests.s3.conftest import S3Env
from tests.sync.conftest import tree

_VERSIONED_METADATA = re.compile(r"metadata/[1-9][0-9]*\.[^/]+\.json")


def synced_then_changed(s3env: S3Env) -> tuple[dict[str, bytes], list[str]]:
    """Sync once, then add two targets upstream; returns (bucket, files written)."""
    assert s3env.run() == ExitStatus.OK
    before = s3env.objects()
    s3env.repo.add_target("files/extra-1.txt", b"extra one")
    s3env.repo.add_target("files/extra-2.txt", b"extra two")
    return before, s3env.publish()


def assert_previous_state_intact(s3env: S3Env, before: dict[str, bytes]) -> None:
    """Every published object is still there with the same bytes, timestamp.json
    included; a failed run may only have added verified, not yet referenced files:
    content-addressed targets (each hashing to the digest in its name) and new
    versioned metadata, which no published timestamp leads to. And the bucket
    still verifies from the pinned root."""
    after = s3env.objects()
    assert {k: after.get(k) for k in before} == before, "a published object changed"
    for key in after.keys() - before.keys():
        if key.startswith("targets/"):
            digest = key.rsplit("/", 1)[-1].split(".", 1)[0]
            assert hashlib.sha256(after[key]).hexdigest() == digest, f"{key} is unverified"
        else:
            assert _VERSIONED_METADATA.fullmatch(key), f"{key} was published by a failed run"
    assert s3env.run("verify") == ExitStatus.OK


def test_throttling_is_retried_with_backoff(s3env: S3Env, delays: list[float]) -> None:
    """503 SlowDown on a target upload (twice), on timestamp.json (once) and on a
    HEAD: botocore retries each with exponential backoff, and the sync succeeds with
    byte-identical objects."""
    rec = s3env.recorder
    rec.fail("PutObject", "targets/files/*.file-0007.txt", 503, "SlowDown", times=2)
    rec.fail("PutObject", "metadata/timestamp.json", 503, "SlowDown", times=1)
    rec.fail("HeadObject", "targets/files/*.file-0003.txt", 503, "SlowDown", times=1)
    assert s3env.run() == ExitStatus.OK
    assert s3env.objects() == tree(s3env.upstream)

    target_puts = [s for s in rec.attempts("PutObject") if s.key and "file-0007" in s.key]
    assert [s.faulted for s in target_puts] == [True, True, False]
    ts_puts = [s for s in rec.attempts("PutObject") if s.key == "metadata/timestamp.json"]
    assert [s.faulted for s in ts_puts] == [True, False]
    assert len(delays) == 4, "one backoff per retried attempt"
    assert all(d > 0 for d in delays)


def test_500_is_retried(s3env: S3Env) -> None:
    """A 500 InternalError on a GET of the published state and on an upload is
    retried; the sync succeeds."""
    before, _ = synced_then_changed(s3env)
    rec = s3env.recorder
    rec.fail("GetObject", "metadata/timestamp.json", 500, "InternalError", times=1)
    rec.fail("PutObject", "metadata/*.snapshot.json", 500, "InternalError", times=2)
    assert s3env.run() == ExitStatus.OK
    assert s3env.objects() == tree(s3env.upstream)
    assert sum(s.faulted for s in rec.sends) == 3
    assert before.keys() < s3env.objects().keys()


def test_failed_target_upload_is_exit_3_then_rerun_converges(s3env: S3Env) -> None:
    """A target upload that fails on every attempt (500): the run gives up after the
    configured attempts with exit 3 and publishes no metadata; the previous state is
    intact and still verifies. The next run uploads only what is missing."""
    before, written = synced_then_changed(s3env)
    rec = s3env.recorder
    fault = rec.fail("PutObject", "targets/files/*.extra-1.txt", 500, "InternalError")
    assert s3env.run() == ExitStatus.TRANSIENT
    assert fault.hits == DEFAULT_MAX_ATTEMPTS
    assert not [k for k in rec.puts() if k.startswith("metadata/")], "no metadata published"
    assert_previous_state_intact(s3env, before)
    uploaded = set(s3env.objects()) - set(before)

    rec.faults.clear()
    assert s3env.run() == ExitStatus.OK
    assert s3env.objects() == tree(s3env.upstream)
    again = {k for k in rec.puts() if k.startswith("targets/")}
    assert not again & uploaded, "a target already uploaded was uploaded again"
    assert again == {w for w in written if w.startswith("targets/")} - uploaded


def test_failed_metadata_upload_mid_publish_keeps_the_old_state(s3env: S3Env) -> None:
    """The snapshot upload fails for good after the new targets and delegated roles
    went up: exit 3, timestamp.json still names the old snapshot, the bucket still
    verifies, and a rerun converges without uploading those files again."""
    before, written = synced_then_changed(s3env)
    rec = s3env.recorder
    rec.fail("PutObject", "metadata/*.snapshot.json", 500, "InternalError")
    assert s3env.run() == ExitStatus.TRANSIENT
    attempted = rec.puts()
    assert attempted[-1].endswith(".snapshot.json")
    assert "metadata/timestamp.json" not in attempted
    assert_previous_state_intact(s3env, before)

    rec.faults.clear()
    assert s3env.run() == ExitStatus.OK
    assert s3env.objects() == tree(s3env.upstream)
    redone = set(rec.puts())
    assert redone == {w for w in written if w.startswith("metadata/")} - {
        k for k in attempted if not k.endswith(".snapshot.json")
    }


def test_access_denied_is_exit_2_without_retries(s3env: S3Env) -> None:
    """403 AccessDenied (missing IAM permission): exit 2 after a single request;
    nothing is retried and the upstream is never contacted."""
    rec = s3env.recorder
    rec.fail("*", "*", 403, "AccessDenied")
    assert s3env.run() == ExitStatus.USAGE
    assert len(rec.sends) == 1
    assert s3env.server.requests == []


def test_missing_bucket_is_exit_2_without_retries(s3env: S3Env) -> None:
    """A bucket that does not exist (moto_server's real NoSuchBucket): exit 2 after
    one request."""
    s3env.bucket = "tuf-mirror-no-such-bucket"
    assert s3env.run() == ExitStatus.USAGE
    assert len(s3env.recorder.sends) == 1
    assert s3env.server.requests == []
