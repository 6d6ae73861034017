"""``tuf-mirror verify --dest s3://bucket/prefix``: audits a bucket from the pinned
root and names the objects that are missing or corrupt."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mirror.errors import ExitStatus
from tests.s3.conftest import TARGETS, S3Env


def verify(s3env: S3Env, report: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    status = s3env.run("verify", "--report", str(report), *extra)
    return status, json.loads(report.read_text())


def test_verify_a_good_bucket(s3env: S3Env, tmp_path: Path) -> None:
    """A freshly synced bucket verifies: every role and every target checked, and
    verify writes nothing."""
    assert s3env.run() == ExitStatus.OK
    before = s3env.objects(internal=True)
    status, report = verify(s3env, tmp_path / "report.json")
    assert status == ExitStatus.OK
    assert report["targets_published"] == TARGETS
    assert report["missing"] == report["corrupt"] == []
    assert s3env.recorder.puts(internal=True) == []
    assert s3env.objects(internal=True) == before


def test_verify_finds_a_corrupt_and_a_missing_object(s3env: S3Env, tmp_path: Path) -> None:
    """A target overwritten with other bytes (same length too) and a deleted target
    and delegated role are each named in the report; exit 1."""
    assert s3env.run() == ExitStatus.OK
    objects = s3env.objects()
    targets = sorted(k for k in objects if k.startswith("targets/"))
    corrupt, missing = targets[0], targets[1]
    s3env.put(corrupt, bytes(reversed(objects[corrupt])) + b"!")
    s3env.delete(missing)
    status, report = verify(s3env, tmp_path / "report.json")
    assert status == ExitStatus.VERIFICATION_FAILED
    assert report["corrupt"] == [corrupt]
    assert report["missing"] == [missing]

    same_length = bytearray(objects[corrupt])
    same_length[0] ^= 1
    s3env.put(corrupt, bytes(same_length))
    s3env.delete("metadata/1.bins-3.json")
    status, report = verify(s3env, tmp_path / "report2.json", "--sample", "1000")
    assert status == ExitStatus.VERIFICATION_FAILED
    assert corrupt in report["corrupt"]
    assert set(report["missing"]) >= {missing, "metadata/1.bins-3.json"}


def test_verify_detects_a_tampered_timestamp(s3env: S3Env) -> None:
    """A timestamp.json in the bucket that the keys did not sign: exit 1."""
    assert s3env.run() == ExitStatus.OK
    timestamp = s3env.objects()["metadata/timestamp.json"]
    tampered = timestamp.replace(b'"version": 1', b'"version": 9')
    assert tampered != timestamp
    s3env.put("metadata/timestamp.json", tampered)
    assert s3env.run("verify") == ExitStatus.VERIFICATION_FAILED
