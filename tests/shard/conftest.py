"""Fixtures for the sharded-copy tests: a generated upstream served on 127.0.0.1, a
destination that is a local directory or a bucket on a ``moto_server`` on
127.0.0.1 (``Dest``: the same views of both), and helpers to run the CLI in this
process or as a separate process, as a Batch array child would be."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mirror.cli import main
from tests.sync.conftest import make_repo, tree
from tuf_mirror_testing.repo import Repository
from tuf_mirror_testing.server import RepoServer, serve_directory

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

INTERNAL = ".tuf-mirror/"
SHARDS = 4
TARGETS = 48


@dataclass
class Dest:
    """A destination and what a test needs to look at it, for either backend."""

    url: str
    path: Path | None = None
    client: S3Client | None = None
    bucket: str | None = None
    prefix: str = "mirror"

    def files(self, *, internal: bool = False) -> dict[str, bytes]:
        """Every object (key relative to the destination) -> bytes."""
        if self.path is not None:
            return tree(self.path, internal=internal)
        assert self.client is not None
        assert self.bucket is not None
        out: dict[str, bytes] = {}
        pages = self.client.get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self.bucket, Prefix=f"{self.prefix}/"):
            for obj in page.get("Contents", []):
                key = obj["Key"][len(self.prefix) + 1 :]
                if key.startswith(INTERNAL + "spool") or (
                    key.startswith(INTERNAL) and not internal
                ):
                    continue
                body = self.client.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"]
                out[key] = body.read()
        return out

    def keys(self, prefix: str) -> set[str]:
        """The keys under ``prefix`` (cheap: no bodies read)."""
        if self.path is not None:
            root = self.path / prefix
            if not root.exists():
                return set()
            return {
                p.relative_to(self.path).as_posix()
                for p in root.rglob("*")
                if p.is_file() and not p.name.startswith(".")
            }
        assert self.client is not None
        assert self.bucket is not None
        found: set[str] = set()
        pages = self.client.get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self.bucket, Prefix=f"{self.prefix}/{prefix}"):
            found.update(obj["Key"][len(self.prefix) + 1 :] for obj in page.get("Contents", []))
        return found

    def read(self, key: str) -> bytes:
        return self.files(internal=True)[key]

    def write(self, key: str, data: bytes) -> None:
        if self.path is not None:
            (self.path / key).write_bytes(data)
            return
        assert self.client is not None
        assert self.bucket is not None
        self.client.put_object(Bucket=self.bucket, Key=f"{self.prefix}/{key}", Body=data)

    def delete(self, key: str) -> None:
        if self.path is not None:
            (self.path / key).unlink()
            return
        assert self.client is not None
        assert self.bucket is not None
        self.client.delete_object(Bucket=self.bucket, Key=f"{self.prefix}/{key}")


def _s3_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, endpoint: str) -> None:
    """Dummy credentials and the endpoint in the environment (children inherit it)."""
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("TUF_MIRROR_S3_ADDRESSING_STYLE", "path")


def _scrub_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_BATCH_JOB_ARRAY_INDEX", "AWS_BATCH_JOB_ARRAY_SIZE", "JOB_COMPLETION_INDEX"):
        monkeypatch.delenv(name, raising=False)
    for name in ("RUN_ID", "DEST", "CONFIG", "UPSTREAM", "ROOT"):
        monkeypatch.delenv(f"TUF_MIRROR_{name}", raising=False)


def local_dest(tmp_path: Path, name: str = "dest") -> Dest:
    return Dest(url=str(tmp_path / name), path=tmp_path / name)


@pytest.fixture(params=["local", "s3"])
def dest(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Dest:
    """The destination of the sharded copy: a directory, or a fresh moto_server bucket."""
    _scrub_env(monkeypatch)
    if request.param == "local":
        return local_dest(tmp_path)
    from mirror.storage.s3 import make_client

    endpoint = request.getfixturevalue("moto_endpoint")
    _s3_env(monkeypatch, tmp_path, endpoint)
    client = make_client(addressing_style="path")
    bucket = f"tuf-mirror-shard-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return Dest(url=f"s3://{bucket}/mirror", client=client, bucket=bucket)


@pytest.fixture
def local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Dest:
    """A local destination directory only (for the cheaper refusal tests)."""
    _scrub_env(monkeypatch)
    return local_dest(tmp_path)


@dataclass
class Upstream:
    """A generated repository served on 127.0.0.1, and its pinned root."""

    repo: Repository
    directory: Path
    server: RepoServer
    root_file: Path

    def common(self, dest: Dest) -> list[str]:
        return [
            "--root",
            str(self.root_file),
            "--upstream",
            self.server.url,
            "--dest",
            dest.url,
            "--retries",
            "2",
            "--timeout",
            "5",
        ]

    def run(self, dest: Dest, *args: str) -> int:
        """``tuf-mirror ARGS... --root --upstream --dest`` in this process."""
        self.server.wait_idle()
        status = main([*args, *self.common(dest)])
        self.server.wait_idle()
        return status

    def command(self, dest: Dest, *args: str) -> list[str]:
        """The command line of a separate ``tuf-mirror`` process."""
        return [sys.executable, "-m", "mirror.cli", *args, *self.common(dest)]

    def spawn(self, dest: Dest, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``tuf-mirror ARGS...`` as a separate process, to its end."""
        return subprocess.run(
            self.command(dest, *args), capture_output=True, text=True, timeout=60, check=False
        )

    def target_requests(self) -> list[str]:
        """Paths of the targets requested since the log was cleared (GETs)."""
        return [
            r.path.removeprefix("/")
            for r in self.server.requests
            if r.method == "GET" and r.path.startswith("/targets/")
        ]

    def target_files(self) -> dict[str, bytes]:
        return {k: v for k, v in tree(self.directory).items() if k.startswith("targets/")}


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Upstream]:
    """A small hash-bin repository (4 bins, TARGETS targets) on 127.0.0.1."""
    repo = make_repo(bins=4, targets=TARGETS)
    directory = tmp_path / "upstream"
    repo.publish(directory)
    root_file = tmp_path / "root.json"
    root_file.write_bytes(repo.root_bytes(1))
    with serve_directory(directory) as server:
        yield Upstream(repo, directory, server, root_file)


def run_json(dest: Dest, run_id: str) -> dict[str, object]:
    data = json.loads(dest.read(f"{INTERNAL}runs/{run_id}/run.json"))
    assert isinstance(data, dict)
    return data
