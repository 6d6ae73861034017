"""Fixtures for end-to-end tests of an ``s3://`` destination: one ``moto_server`` on
127.0.0.1 for the session, a fresh bucket per test, a generated upstream served on
127.0.0.1, and an ``S3Recorder`` that sees every S3 request the mirror makes.

The recorder replaces ``mirror.storage.s3.make_client`` by a wrapper that registers
botocore event handlers on each client the mirror creates (in-process runs of
``mirror.cli.main``):

- ``provide-client-params`` / ``after-call``: one ``Call`` per API call with its
  parameters (key, headers, checksum) and whether it succeeded, in order;
- ``before-send``: one ``Send`` per HTTP attempt (retries included), where planned
  faults answer instead of moto_server (a 503 ``SlowDown``, a 500, a 403...).

botocore's retry backoff is recorded and then skipped (``delays``), so retries cost
no wall time while the tests can still see that backoff was computed.
"""

from __future__ import annotations

import fnmatch
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote, urlsplit

import pytest
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders
from botocore.retries.standard import ExponentialBackoff

import mirror.storage.s3 as s3_module
from mirror.cli import main
from mirror.storage.s3 import make_client
from tests.sync.conftest import make_repo
from tuf_mirror_testing.repo import Repository
from tuf_mirror_testing.server import RepoServer, serve_directory

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PREFIX = "mirror"
INTERNAL = ".tuf-mirror/"
#: the upstream of ``s3env``: small, since every object is a few S3 requests
BINS = 4
TARGETS = 24


@pytest.fixture
def delays(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The backoff delays botocore computed (and that were skipped)."""
    seen: list[float] = []
    real = ExponentialBackoff.delay_amount

    def record(self: ExponentialBackoff, context: Any) -> float:
        seen.append(real(self, context))
        return 0.0

    monkeypatch.setattr(ExponentialBackoff, "delay_amount", record)
    return seen


@pytest.fixture(autouse=True)
def aws_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, moto_endpoint: str, delays: list[float]
) -> None:
    """Dummy credentials, no user AWS config, the endpoint from AWS_ENDPOINT_URL
    (as a user would set it; subprocesses inherit it), no backoff wall time."""
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    for name in ("S3_ENDPOINT_URL", "S3_REGION", "S3_ADDRESSING_STYLE", "UPLOADS", "DEST"):
        monkeypatch.delenv(f"TUF_MIRROR_{name}", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    # The S3 spool directory lives in TMPDIR (per destination, kept between runs):
    # one per test, here and in subprocesses.
    spool_tmp = tmp_path / "tmpdir"
    spool_tmp.mkdir(exist_ok=True)
    monkeypatch.setenv("TMPDIR", str(spool_tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(spool_tmp))


# -- recording and fault injection -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call:
    """One S3 API call: ``start`` when it was made, ``done`` when it succeeded."""

    event: str  # "start" | "done"
    operation: str
    key: str | None
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Send:
    """One HTTP attempt of an S3 API call (a retry is a new attempt)."""

    operation: str
    key: str | None
    faulted: bool


@dataclass
class Fault:
    """Answer ``status``/``code`` instead of the server for attempts of ``operation``
    whose key matches ``pattern`` (fnmatch): the first ``times`` of them, or all
    when ``times`` is None."""

    operation: str
    pattern: str
    status: int
    code: str
    times: int | None = None
    hits: int = 0

    def take(self, operation: str, key: str | None) -> bool:
        if self.operation not in (operation, "*"):
            return False
        if not fnmatch.fnmatchcase(key or "", self.pattern):
            return False
        if self.times is not None and self.hits >= self.times:
            return False
        self.hits += 1
        return True


class _Body:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_kwargs: Any) -> Iterator[bytes]:
        yield self._body


@dataclass
class S3Recorder:
    """Every S3 call and attempt of the clients the mirror creates; see the module
    docstring. Keys are relative to the store's prefix (``targets/x``)."""

    bucket_prefix: str = f"{PREFIX}/"
    calls: list[Call] = field(default_factory=list)
    sends: list[Send] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()
            self.sends.clear()

    def fail(
        self, operation: str, pattern: str, status: int, code: str, *, times: int | None = None
    ) -> Fault:
        fault = Fault(operation, pattern, status, code, times)
        self.faults.append(fault)
        return fault

    # -- views ------------------------------------------------------------------

    def started(self, operation: str) -> list[Call]:
        return [c for c in self.calls if c.event == "start" and c.operation == operation]

    def puts(self, *, internal: bool = False) -> list[str]:
        """Keys of PutObject calls made, in order (the lock and state left out
        unless ``internal``)."""
        return [
            c.key
            for c in self.started("PutObject")
            if c.key is not None and (internal or not c.key.startswith(INTERNAL))
        ]

    def attempts(self, operation: str) -> list[Send]:
        return [s for s in self.sends if s.operation == operation]

    # -- botocore handlers ----------------------------------------------------------

    def _relative(self, key: str | None) -> str | None:
        if key is not None and key.startswith(self.bucket_prefix):
            return key[len(self.bucket_prefix) :]
        return key

    def _on_params(self, params: dict[str, Any], model: Any, context: Any, **_: Any) -> None:
        key = self._relative(params.get("Key"))
        context["test_key"] = key
        with self._lock:
            self.calls.append(Call("start", model.name, key, dict(params)))

    def _on_after_call(self, model: Any, context: Any, **_: Any) -> None:
        with self._lock:
            self.calls.append(Call("done", model.name, context.get("test_key"), {}))

    def _on_send(self, event_name: str, request: Any, **_: Any) -> AWSResponse | None:
        operation = event_name.rsplit(".", 1)[-1]
        path = unquote(urlsplit(request.url).path)
        # path-style: /bucket/key
        parts = path.lstrip("/").split("/", 1)
        key = self._relative(parts[1]) if len(parts) == 2 and parts[1] else None
        with self._lock:
            fault = next((f for f in self.faults if f.take(operation, key)), None)
            self.sends.append(Send(operation, key, fault is not None))
        if fault is None:
            return None
        body = (
            f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{fault.code}</Code>"
            f"<Message>injected {fault.code}</Message></Error>"
        ).encode()
        headers = HTTPHeaders()
        headers["Content-Type"] = "application/xml"
        return AWSResponse(request.url, fault.status, headers, _Body(body))

    def install(self, client: S3Client) -> S3Client:
        events = client.meta.events
        events.register("provide-client-params.s3", self._on_params)
        events.register("after-call.s3", self._on_after_call)
        events.register_first("before-send.s3", cast("Any", self._on_send))
        return client


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> S3Recorder:
    """Records (and can fail) the S3 requests of every client the mirror makes."""
    rec = S3Recorder()
    real: Callable[..., S3Client] = make_client

    def recording_client(**kwargs: Any) -> S3Client:
        return rec.install(real(**kwargs))

    monkeypatch.setattr(s3_module, "make_client", recording_client)
    return rec


# -- the bucket and the upstream ------------------------------------------------------


@pytest.fixture
def raw() -> S3Client:
    """A plain client on moto_server, to look at (or tamper with) the bucket."""
    return make_client(addressing_style="path")


@pytest.fixture
def bucket(raw: S3Client) -> str:
    """A fresh bucket per test (the server lives for the whole session)."""
    name = f"tuf-mirror-{uuid.uuid4().hex[:12]}"
    raw.create_bucket(Bucket=name)
    return name


@dataclass
class S3Env:
    """An upstream repository and its server, a pinned root, and a bucket."""

    repo: Repository
    upstream: Path
    server: RepoServer
    root_file: Path
    bucket: str
    raw: S3Client
    recorder: S3Recorder

    @property
    def dest(self) -> str:
        return f"s3://{self.bucket}/{PREFIX}"

    def publish(self) -> list[str]:
        return self.repo.publish(self.upstream)

    def args(self, command: str = "sync", *extra: str) -> list[str]:
        common = [command, "--root", str(self.root_file), "--dest", self.dest]
        if command == "verify":
            return [*common, *extra]
        return [
            *common,
            "--upstream",
            self.server.url,
            "--retries",
            "2",
            "--timeout",
            "5",
            "--s3-addressing-style",
            "path",
            *extra,
        ]

    def run(self, command: str = "sync", *extra: str) -> int:
        """Run ``tuf-mirror COMMAND`` in-process; return its exit status. The
        recorder and the upstream's request log start empty."""
        self.server.wait_idle()
        self.server.clear_log()
        self.recorder.clear()
        status = main(self.args(command, *extra))
        self.server.wait_idle()
        return status

    def objects(self, *, internal: bool = False) -> dict[str, bytes]:
        """Every object under the prefix (key relative to it) -> bytes."""
        out: dict[str, bytes] = {}
        paginator = self.raw.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{PREFIX}/"):
            for obj in page.get("Contents", []):
                key = obj["Key"][len(PREFIX) + 1 :]
                if key.startswith(INTERNAL) and not internal:
                    continue
                body = self.raw.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"]
                out[key] = body.read()
        return out

    def head(self, key: str) -> dict[str, Any]:
        resp = self.raw.head_object(
            Bucket=self.bucket, Key=f"{PREFIX}/{key}", ChecksumMode="ENABLED"
        )
        return dict(resp)

    def put(self, key: str, data: bytes) -> None:
        self.raw.put_object(Bucket=self.bucket, Key=f"{PREFIX}/{key}", Body=data)

    def delete(self, key: str) -> None:
        self.raw.delete_object(Bucket=self.bucket, Key=f"{PREFIX}/{key}")

    def requested_targets(self) -> set[str]:
        return {r.path.lstrip("/") for r in self.server.requests if r.path.startswith("/targets/")}


@pytest.fixture
def s3env(tmp_path: Path, bucket: str, raw: S3Client, recorder: S3Recorder) -> Iterator[S3Env]:
    """A small hash-bin repository (BINS bins, TARGETS targets) served on 127.0.0.1
    and an empty bucket to mirror it into."""
    repo = make_repo(bins=BINS, targets=TARGETS)
    upstream = tmp_path / "upstream"
    repo.publish(upstream)
    root_file = tmp_path / "root.json"
    root_file.write_bytes(repo.root_bytes(1))
    with serve_directory(upstream) as server:
        yield S3Env(repo, upstream, server, root_file, bucket, raw, recorder)
