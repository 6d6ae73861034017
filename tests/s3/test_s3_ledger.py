"""A ledger kept apart from the mirror: a local destination with ``--ledger
s3://bucket/prefix`` (moto_server on 127.0.0.1), as the README recommends for a
witness (other location, other credentials)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirror.cli import main
from mirror.errors import ExitStatus
from tests.s3.conftest import S3Env


def test_local_mirror_with_an_s3_ledger(
    s3env: S3Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The ledger is written to the bucket (checkpoint, entries, index), nothing of
    it under the local destination; ``ledger verify`` and a tamper check read it
    back from S3; a local timestamp.json re-serialized (a space added: its signature
    still verifies, TUF accepts it) is refused by the ledger with exit 1."""
    dest = tmp_path / "local-mirror"
    ledger = f"s3://{s3env.bucket}/witness"
    args = [
        "sync",
        "--root",
        str(s3env.root_file),
        "--upstream",
        s3env.server.url,
        "--dest",
        str(dest),
        "--ledger",
        ledger,
        "--s3-addressing-style",
        "path",
    ]
    assert main(args) == ExitStatus.OK
    keys = {
        obj["Key"]
        for obj in s3env.raw.list_objects_v2(Bucket=s3env.bucket, Prefix="witness/")["Contents"]
    }
    assert "witness/states/000000000001.json" in keys
    assert any(key.startswith("witness/entries/") for key in keys)
    assert not (dest / ".tuf-mirror" / "ledger").exists()
    capsys.readouterr()
    assert main(["ledger", "verify", "--ledger", ledger]) == 0
    (dest / "metadata" / "timestamp.json").write_bytes(
        (dest / "metadata" / "timestamp.json").read_bytes().replace(b'"version"', b'"version" ')
    )
    assert main(args) == ExitStatus.VERIFICATION_FAILED
    err = capsys.readouterr().err
    assert "TamperedDestinationError" in err
    assert "is not what the mirror published" in err
