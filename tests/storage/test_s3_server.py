"""S3Store against one ``moto_server`` on 127.0.0.1, over real HTTP.

The in-process mock (test_s3.py) skips the wire; these checks do not: URL encoding
of awkward keys, the headers a static client actually receives, checksums sent as
headers or trailers, multipart upload, conditional create, and an endpoint taken
from ``AWS_ENDPOINT_URL`` the way a user would configure it.
"""

from __future__ import annotations

import hashlib
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from botocore.retries.standard import ExponentialBackoff

from mirror.errors import ExitStatus, StorageError
from mirror.storage.base import ObjectInfo, PutOptions
from mirror.storage.headers import IMMUTABLE_CACHE_CONTROL, put_options_for
from mirror.storage.s3 import S3Store, make_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MiB = 1024 * 1024
PREFIX = "mirror"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, moto_endpoint: str) -> None:
    """Fake credentials, no user config, the endpoint from AWS_ENDPOINT_URL, no
    retry backoff delay."""
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.0)


@pytest.fixture
def bucket() -> str:
    """A fresh bucket per test: the server lives for the session."""
    name = f"tuf-mirror-{uuid.uuid4().hex[:12]}"
    make_client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def raw(bucket: str) -> S3Client:
    """A plain client on the server, to look at what the store wrote."""
    return make_client()


@pytest.fixture
async def store(bucket: str) -> AsyncIterator[S3Store]:
    """A store configured like a user would: bucket and prefix only, the endpoint
    from AWS_ENDPOINT_URL (read by botocore), path-style addressing."""
    s = S3Store(
        bucket,
        PREFIX,
        addressing_style="path",
        multipart_threshold=5 * MiB,
        multipart_chunksize=5 * MiB,
    )
    try:
        yield s
    finally:
        await s.aclose()


def http_get(raw: S3Client, bucket: str, key: str) -> httpx.Response:
    """What a plain HTTP client (a TUF client behind a CDN) gets for ``key``: a GET
    of a presigned URL (the bucket is private)."""
    url = raw.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": f"{PREFIX}/{key}"}, ExpiresIn=60
    )
    return httpx.get(url)


async def test_headers_are_served(store: S3Store, bucket: str, raw: S3Client) -> None:
    """Content-Type and Cache-Control given at put are what an HTTP GET returns, for
    the short-lived timestamp and for an immutable versioned file."""
    ts = b'{"signed": {"_type": "timestamp"}}'
    root = b'{"signed": {"_type": "root"}}'
    await store.put_bytes(
        "metadata/timestamp.json",
        ts,
        put_options_for("metadata/timestamp.json", consistent_snapshot=True, short_max_age=30),
    )
    await store.put_bytes(
        "metadata/2.root.json",
        root,
        put_options_for("metadata/2.root.json", consistent_snapshot=True, sha256=sha256_hex(root)),
    )

    got = http_get(raw, bucket, "metadata/timestamp.json")
    assert got.status_code == 200
    assert got.content == ts
    assert got.headers["content-type"] == "application/json"
    assert got.headers["cache-control"] == "public, max-age=30"
    got = http_get(raw, bucket, "metadata/2.root.json")
    assert got.content == root
    assert got.headers["cache-control"] == IMMUTABLE_CACHE_CONTROL


async def test_checksums_are_recorded(store: S3Store, raw: S3Client, bucket: str) -> None:
    """Over HTTP, the SHA-256 checksum is stored whether the digest was given
    (header) or computed by botocore from a streamed file (trailer), and head
    reports it."""
    data = b"some target" * 1000
    await store.put_bytes("targets/a", data, PutOptions(sha256=sha256_hex(data)))
    spool = store.spool_dir() / "b.part"
    spool.write_bytes(data)
    await store.put_file("targets/b", spool, PutOptions())

    for key in ("targets/a", "targets/b"):
        assert (await store.head(key)) == ObjectInfo(key, len(data), sha256_hex(data))
    resp = raw.head_object(Bucket=bucket, Key=f"{PREFIX}/targets/b", ChecksumMode="ENABLED")
    assert resp["ContentLength"] == len(data)


async def test_multipart_upload_is_byte_identical(
    store: S3Store, bucket: str, raw: S3Client
) -> None:
    """A 6 MiB spool file above the 5 MiB threshold is uploaded in parts (multipart
    ETag) with SHA-256 part checksums, and served back byte-identical, with its
    headers; head does not pass the checksum of checksums off as the content's."""
    data = hashlib.sha512(b"seed").digest() * (6 * MiB // 64)
    spool = store.spool_dir() / "big.part"
    spool.write_bytes(data)
    key = f"targets/{sha256_hex(data)}.big.tar.gz"
    await store.put_file(
        key, spool, put_options_for(key, consistent_snapshot=True, sha256=sha256_hex(data))
    )

    assert not spool.exists()
    head = raw.head_object(Bucket=bucket, Key=f"{PREFIX}/{key}", ChecksumMode="ENABLED")
    assert head["ETag"].strip('"').endswith("-2")
    assert head["ChecksumSHA256"]  # the parts were sent with SHA-256 checksums
    got = http_get(raw, bucket, key)
    assert sha256_hex(got.content) == sha256_hex(data)
    assert got.headers["content-type"] == "application/gzip"
    assert got.headers["cache-control"] == IMMUTABLE_CACHE_CONTROL
    streamed = b"".join([c async for c in store.iter_chunks(key, chunk_size=MiB)])
    assert streamed == data
    assert (await store.head(key)) == ObjectInfo(key, len(data), None)


async def test_conditional_create_over_http(store: S3Store) -> None:
    """moto_server honours If-None-Match: * on PutObject: one winner."""
    assert await store.create_exclusive(".tuf-mirror/lock", b"first") is True
    assert await store.create_exclusive(".tuf-mirror/lock", b"second") is False
    assert await store.get(".tuf-mirror/lock", max_length=100) == b"first"


@pytest.mark.parametrize(
    "key",
    ["targets/with space.txt", "targets/100%.bin", "metadata/1.a%2Fb.json", "targets/ü/€ + x.bin"],
)
async def test_awkward_names_over_http(
    store: S3Store, bucket: str, raw: S3Client, key: str
) -> None:
    """Spaces, percent signs, plus signs and non-ASCII survive URL encoding on the
    wire: the object is at the literal key (an HTTP client asking for the
    percent-encoded key gets it) and lists under its own name."""
    data = key.encode()
    await store.put_bytes(key, data, PutOptions())
    assert await store.get(key, max_length=100) == data
    assert http_get(raw, bucket, key).content == data
    assert [
        i.key async for i in store.list("targets/" if key.startswith("t") else "metadata/")
    ] == [key]


async def test_connection_refused_is_a_storage_error(tmp_path: Path) -> None:
    """An endpoint that refuses connections is retried max_attempts times, then
    StorageError (exit 3)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = make_client(endpoint_url=f"http://127.0.0.1:{port}", max_attempts=2)
    attempts: list[Any] = []
    client.meta.events.register("before-send.s3.HeadObject", lambda **kw: attempts.append(kw))
    store = S3Store("bucket", client=client, spool_root=tmp_path)
    try:
        with pytest.raises(StorageError, match=r"127\.0\.0\.1") as info:
            await store.head("k")
    finally:
        await store.aclose()
    assert info.value.exit_status == ExitStatus.TRANSIENT
    assert len(attempts) == 2
