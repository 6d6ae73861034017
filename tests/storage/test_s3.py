"""S3Store on moto's in-process mock (``mock_aws``): the Store behaviour, the S3
specifics (checksums, conditional create, multipart) and fault handling.

Faults are injected with botocore's event system: a ``before-send`` handler
registered *first* answers instead of moto (a 503, a 403, a dropped connection) and
counts the attempts. botocore's retry backoff is set to zero so retries cost no
wall time; the number of attempts is what the tests check.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest
import trio
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders
from botocore.exceptions import EndpointConnectionError
from botocore.retries.standard import ExponentialBackoff
from moto import mock_aws
from moto.core.models import botocore_stubber

from mirror.errors import ExitStatus, StorageConfigError, StorageError, UnsafeNameError
from mirror.storage.base import NotFoundInStoreError, ObjectInfo, PutOptions
from mirror.storage.s3 import S3Store, make_client, parse_s3_url

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BUCKET = "tuf-mirror-test"
PREFIX = "mirror/prod"
MAX_ATTEMPTS = 3


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- fixtures -----------------------------------------------------------------------


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials, no user config, no endpoint override, no backoff delay."""
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.0)


@pytest.fixture
def moto() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def client(moto: None) -> S3Client:
    c = make_client(region="us-east-1", max_attempts=MAX_ATTEMPTS)
    c.create_bucket(Bucket=BUCKET)
    return c


@contextlib.asynccontextmanager
async def open_store(
    client: S3Client, prefix: str = PREFIX, **kwargs: Any
) -> AsyncIterator[S3Store]:
    store = S3Store(BUCKET, prefix, client=client, **kwargs)
    try:
        yield store
    finally:
        await store.aclose()


@pytest.fixture
async def store(client: S3Client) -> AsyncIterator[S3Store]:
    async with open_store(client) as s:
        yield s


class _RawBody:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_kwargs: Any) -> Iterator[bytes]:
        yield self._body


def _error_response(request: Any, status: int, code: str) -> AWSResponse:
    body = (
        f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
        f"<Message>injected {code}</Message></Error>"
    ).encode()
    headers = HTTPHeaders()
    headers["Content-Type"] = "application/xml"
    return AWSResponse(request.url, status, headers, _RawBody(body))


class Rule:
    """The faults planned for one operation, and what its requests looked like.

    ``plan`` holds one entry per request to fail: ``(status, code)`` for an HTTP
    error answered instead of moto, ``"connection"`` for a connection error, or a
    callable given the request (it raises, or returns and moto answers).
    Once the plan is used up (with ``forever=True``: never) requests reach moto.
    ``attempts`` counts every request of the operation, failed or not.
    """

    def __init__(self, plan: list[Step], *, forever: bool) -> None:
        self.plan = plan
        self.forever = forever
        self.attempts = 0
        self.threads: list[threading.Thread] = []
        self.requests: list[Any] = []

    def answer(self, request: Any) -> AWSResponse | None:
        self.attempts += 1
        self.threads.append(threading.current_thread())
        self.requests.append(request)
        if not self.plan:
            return None
        step = self.plan[0] if self.forever else self.plan.pop(0)
        if step == "connection":
            raise EndpointConnectionError(endpoint_url=request.url)
        if callable(step):
            step(request)
            return None
        assert isinstance(step, tuple)
        return _error_response(request, *step)


Step = tuple[int, str] | str | Callable[[Any], None]


class FaultInjector:
    """Stands in front of moto for one client.

    botocore calls *every* ``before-send`` handler, so an error answered by a handler
    registered next to moto's would still let moto execute the request (a write
    would happen behind a 500). This replaces moto's handler on the client by one
    that consults the rules first and calls moto only for requests that get through.
    """

    def __init__(self, client: S3Client) -> None:
        self._rules: dict[str, Rule] = {}
        client.meta.events.unregister("before-send", cast("Any", botocore_stubber))
        client.meta.events.register("before-send", self)

    def on(self, operation: str, plan: list[Step] | None = None, *, forever: bool = False) -> Rule:
        rule = self._rules[operation] = Rule(list(plan or []), forever=forever)
        return rule

    def __call__(self, event_name: str, request: Any, **kwargs: Any) -> Any:
        rule = self._rules.get(event_name.rsplit(".", 1)[-1])
        if rule is not None:
            response = rule.answer(request)
            if response is not None:
                return response
        return botocore_stubber(event_name=event_name, request=request, **kwargs)


@pytest.fixture
def faults(client: S3Client) -> FaultInjector:
    return FaultInjector(client)


# -- the Store behaviour ------------------------------------------------------------


async def test_put_bytes_then_get_head_list_round_trip(store: S3Store, client: S3Client) -> None:
    """put_bytes stores the bytes under prefix/key; get, head and list see them
    under the relative key."""
    data = b'{"signed": {}}'
    await store.put_bytes("metadata/1.root.json", data, PutOptions())

    assert await store.get("metadata/1.root.json", max_length=1000) == data
    raw = client.get_object(Bucket=BUCKET, Key=f"{PREFIX}/metadata/1.root.json")
    assert raw["Body"].read() == data
    info = await store.head("metadata/1.root.json")
    assert info == ObjectInfo(key="metadata/1.root.json", size=len(data), sha256=sha256_hex(data))
    assert [i.key async for i in store.list("metadata/")] == ["metadata/1.root.json"]
    assert store.url == f"s3://{BUCKET}/{PREFIX}"


async def test_head_reports_the_s3_sha256_checksum(store: S3Store, client: S3Client) -> None:
    """head's sha256 is the checksum S3 stored (hex), whether the caller gave the
    digest or botocore computed it; an object uploaded without a SHA-256 checksum
    reports None."""
    data = b"target bytes"
    await store.put_bytes("a", data, PutOptions(sha256=sha256_hex(data)))
    await store.put_bytes("b", data, PutOptions())
    client.put_object(Bucket=BUCKET, Key=f"{PREFIX}/c", Body=data)

    assert (await store.head("a")) == ObjectInfo("a", len(data), sha256_hex(data))
    assert (await store.head("b")) == ObjectInfo("b", len(data), sha256_hex(data))
    assert (await store.head("c")) == ObjectInfo("c", len(data), None)


async def test_put_sends_the_given_sha256_so_s3_can_check_it(
    store: S3Store, client: S3Client
) -> None:
    """With PutOptions.sha256 the request carries that digest as
    x-amz-checksum-sha256 (base64), which S3 compares with the bytes it received."""
    seen: list[bytes] = []

    def record(request: Any, **_kwargs: Any) -> None:
        seen.append(request.headers["x-amz-checksum-sha256"])

    client.meta.events.register_first("before-send.s3.PutObject", record)
    data = b"x" * 100
    await store.put_bytes("k", data, PutOptions(sha256=sha256_hex(data)))
    assert seen == [base64.b64encode(hashlib.sha256(data).digest())]


async def test_put_rejects_a_sha256_that_is_not_a_digest(store: S3Store) -> None:
    """A malformed PutOptions.sha256 is a caller bug (ValueError), not a storage error."""
    with pytest.raises(ValueError, match="sha256"):
        await store.put_bytes("k", b"x", PutOptions(sha256="abc"))


async def test_missing_key(store: S3Store) -> None:
    """An absent key is None from head, NotFoundInStoreError from get and from the
    first iteration of iter_chunks; deleting it is not an error."""
    assert await store.head("nope") is None
    with pytest.raises(NotFoundInStoreError):
        await store.get("nope", max_length=10)
    with pytest.raises(NotFoundInStoreError):
        async for _ in store.iter_chunks("nope"):
            pass
    await store.delete("nope")


async def test_get_refuses_an_object_larger_than_max_length(store: S3Store) -> None:
    """get checks ContentLength against max_length before reading the body."""
    await store.put_bytes("big", b"0123456789", PutOptions())
    assert await store.get("big", max_length=10) == b"0123456789"
    with pytest.raises(StorageError, match="more than the 9 allowed") as info:
        await store.get("big", max_length=9)
    assert not isinstance(info.value, NotFoundInStoreError)


async def test_iter_chunks_streams_the_object(store: S3Store) -> None:
    """iter_chunks yields the object's bytes in order, no chunk above chunk_size."""
    data = bytes(range(256)) * 40
    await store.put_bytes("t", data, PutOptions(sha256=sha256_hex(data)))
    chunks = [c async for c in store.iter_chunks("t", chunk_size=1000)]
    assert b"".join(chunks) == data
    assert max(len(c) for c in chunks) <= 1000
    assert len(chunks) >= len(data) // 1000


async def test_put_replaces_and_delete_removes(store: S3Store) -> None:
    """A second put replaces the object; delete removes it."""
    await store.put_bytes("k", b"one", PutOptions())
    await store.put_bytes("k", b"two", PutOptions())
    assert await store.get("k", max_length=10) == b"two"
    await store.delete("k")
    assert await store.head("k") is None


async def test_list_is_a_string_prefix_relative_to_the_store(
    store: S3Store, client: S3Client
) -> None:
    """list matches a plain string prefix, yields keys relative to the store prefix
    with their sizes, never objects outside the store prefix (not even under a
    sibling prefix sharing its first characters) and never the internal keys."""
    for key in ("targets/a/1", "targets/a/2", "targets/ab", "metadata/x.json"):
        await store.put_bytes(key, key.encode(), PutOptions())
    assert await store.create_exclusive(".tuf-mirror/lock", b"lock")
    client.put_object(Bucket=BUCKET, Key=f"{PREFIX}x/targets/a/3", Body=b"sibling")
    client.put_object(Bucket=BUCKET, Key="targets/a/4", Body=b"outside")

    got = {i.key: i.size async for i in store.list("targets/a")}
    assert got == {"targets/a/1": 11, "targets/a/2": 11, "targets/ab": 10}
    everything = {i.key async for i in store.list("")}
    assert everything == {"targets/a/1", "targets/a/2", "targets/ab", "metadata/x.json"}
    assert {i.key async for i in store.list("targets/a/")} == {"targets/a/1", "targets/a/2"}


async def test_list_pages_through_many_objects(client: S3Client) -> None:
    """list follows ListObjectsV2 pagination (moto pages at 1000 keys)."""
    for n in range(1005):
        client.put_object(Bucket=BUCKET, Key=f"p/k{n:04}", Body=b"")
    async with open_store(client, "p") as store:
        keys = [i.key async for i in store.list("k")]
    assert sorted(keys) == [f"k{n:04}" for n in range(1005)]


@pytest.mark.parametrize(
    "key",
    [
        "targets/with space.txt",
        "targets/100%.bin",
        "targets/%2Fencoded%20already",
        "metadata/1.a%2Fb.json",
        "targets/ünï cødé/€ + plus.bin",
        "targets/question?and#hash&amp",
    ],
)
async def test_awkward_names_round_trip(store: S3Store, client: S3Client, key: str) -> None:
    """Keys with spaces, percent signs, plus signs, URL metacharacters and non-ASCII
    are stored verbatim (S3 keys are UTF-8) and come back identical from get, head
    and list."""
    data = key.encode()
    await store.put_bytes(key, data, PutOptions())
    assert client.head_object(Bucket=BUCKET, Key=f"{PREFIX}/{key}")["ContentLength"] == len(data)
    assert await store.get(key, max_length=1000) == data
    assert (await store.head(key)) == ObjectInfo(key, len(data), sha256_hex(data))
    assert [i.key async for i in store.list(key)] == [key]


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/../b", "a\\b", "./a"])
async def test_unsafe_keys_are_refused(store: S3Store, key: str) -> None:
    """Every key is validated again before it becomes an S3 key."""
    with pytest.raises(UnsafeNameError):
        await store.put_bytes(key, b"x", PutOptions())


async def test_put_file_small_is_one_putobject_and_consumes_the_file(
    faults: FaultInjector, store: S3Store, client: S3Client
) -> None:
    """A spool file up to the multipart threshold is uploaded with one PutObject
    carrying headers and the whole-object checksum, then deleted."""
    data = b"spooled target" * 100
    spool = store.spool_dir() / "t.part"
    spool.write_bytes(data)
    puts = faults.on("PutObject")
    options = PutOptions(
        content_type="text/plain", cache_control="max-age=1", sha256=sha256_hex(data)
    )
    await store.put_file("targets/t.txt", spool, options)

    assert not spool.exists()
    assert puts.attempts == 1
    raw = client.head_object(Bucket=BUCKET, Key=f"{PREFIX}/targets/t.txt", ChecksumMode="ENABLED")
    assert (raw["ContentType"], raw["CacheControl"]) == ("text/plain", "max-age=1")
    assert (await store.head("targets/t.txt")) == ObjectInfo(
        "targets/t.txt", len(data), sha256_hex(data)
    )


async def test_put_file_large_goes_multipart(faults: FaultInjector, client: S3Client) -> None:
    """Above multipart_threshold the file goes through a multipart upload (several
    UploadPart requests) and arrives byte-identical; its checksum is a composite
    one, so head reports sha256=None."""
    data = hashlib.sha256(b"seed").digest() * (6 * 1024 * 1024 // 32)
    async with open_store(
        client, multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024
    ) as store:
        spool = store.spool_dir() / "big.part"
        spool.write_bytes(data)
        parts = faults.on("UploadPart")
        await store.put_file("targets/big", spool, PutOptions(sha256=sha256_hex(data)))
        assert not spool.exists()
        assert parts.attempts == 2
        assert await store.get("targets/big", max_length=len(data)) == data
        assert (await store.head("targets/big")) == ObjectInfo("targets/big", len(data), None)


async def test_put_file_large_refuses_a_spool_file_that_changed(client: S3Client) -> None:
    """Before a multipart upload the spool file is hashed again: bytes that no
    longer match the verified digest are not uploaded, and the file is kept."""
    async with open_store(client, multipart_threshold=5 * 1024 * 1024) as store:
        spool = store.spool_dir() / "big.part"
        spool.write_bytes(b"\0" * (5 * 1024 * 1024 + 1))
        with pytest.raises(StorageError, match="no longer hashes"):
            await store.put_file("targets/big", spool, PutOptions(sha256=sha256_hex(b"other")))
        assert spool.exists()
        assert await store.head("targets/big") is None


# -- create_exclusive: the lock primitive ---------------------------------------------


async def test_create_exclusive_excludes(store: S3Store) -> None:
    """The first create_exclusive wins, the second is refused (moto honours
    If-None-Match: *) and leaves the first object untouched."""
    assert await store.create_exclusive(".tuf-mirror/lock", b"owner A") is True
    assert await store.create_exclusive(".tuf-mirror/lock", b"owner B") is False
    assert await store.get(".tuf-mirror/lock", max_length=100) == b"owner A"
    await store.delete(".tuf-mirror/lock")
    assert await store.create_exclusive(".tuf-mirror/lock", b"owner B") is True


async def test_create_exclusive_sends_if_none_match(store: S3Store, client: S3Client) -> None:
    """The conditional create is a PutObject with If-None-Match: * (twice on a
    store's first success: the second checks that the server honours it)."""
    seen: list[bytes | None] = []
    client.meta.events.register_first(
        "before-send.s3.PutObject",
        lambda request, **_kw: seen.append(request.headers.get("If-None-Match")),
    )
    await store.create_exclusive("lock", b"x")
    assert seen == [b"*", b"*"]


async def test_create_exclusive_recognises_its_own_retried_write(
    faults: FaultInjector, store: S3Store, client: S3Client
) -> None:
    """When the first attempt reached S3 but its answer was lost, the retry gets
    412; the object holds exactly our bytes, so the create counts as ours."""
    key = f"{PREFIX}/.tuf-mirror/lock"

    def write_then_lose_answer(_request: Any) -> None:
        other = make_client(region="us-east-1")
        other.put_object(Bucket=BUCKET, Key=key, Body=b"token-1")
        raise EndpointConnectionError(endpoint_url="lost answer")

    rule = faults.on("PutObject", [write_then_lose_answer])
    assert await store.create_exclusive(".tuf-mirror/lock", b"token-1") is True
    assert rule.attempts == 3  # lost answer, retry (412), the If-None-Match check


async def test_create_exclusive_retried_but_someone_else_won(
    faults: FaultInjector, store: S3Store, client: S3Client
) -> None:
    """After a retry, a 412 on an object holding other bytes is a lost race."""
    key = f"{PREFIX}/.tuf-mirror/lock"

    def other_writer_wins(_request: Any) -> None:
        other = make_client(region="us-east-1")
        other.put_object(Bucket=BUCKET, Key=key, Body=b"token-other")
        raise EndpointConnectionError(endpoint_url="lost answer")

    faults.on("PutObject", [other_writer_wins])
    assert await store.create_exclusive(".tuf-mirror/lock", b"token-1") is False


async def test_create_exclusive_refuses_a_server_ignoring_if_none_match(
    faults: FaultInjector, store: S3Store
) -> None:
    """An endpoint that ignores If-None-Match (simulated by dropping the header)
    is detected by the check after the first success: StorageConfigError, and the
    object just written is removed again."""

    def drop_condition(request: Any) -> None:
        del request.headers["If-None-Match"]

    rule = faults.on("PutObject", [drop_condition, drop_condition])
    with pytest.raises(StorageConfigError, match="If-None-Match"):
        await store.create_exclusive(".tuf-mirror/lock", b"token")
    assert rule.attempts == 2
    assert await store.head(".tuf-mirror/lock") is None


async def test_conditional_write_support_is_checked_once(
    faults: FaultInjector, store: S3Store
) -> None:
    """The If-None-Match check costs one extra request on the first success only."""
    rule = faults.on("PutObject")
    assert await store.create_exclusive("a", b"x")
    assert await store.create_exclusive("b", b"x")
    assert rule.attempts == 3


async def test_destination_lock_excludes_on_s3(store: S3Store) -> None:
    """mirror.storage.lock on S3: while one run holds the lock a second gets
    LockHeldError (exit 4); after release the lock can be taken again."""
    from mirror.errors import LockHeldError
    from mirror.storage.lock import acquire_lock

    async with acquire_lock(store, owner="first"):
        with pytest.raises(LockHeldError) as info:
            async with acquire_lock(store, owner="second"):
                pass
        assert info.value.exit_status == ExitStatus.LOCKED
    assert await store.head(".tuf-mirror/lock") is None
    async with acquire_lock(store, owner="second"):
        assert await store.head(".tuf-mirror/lock") is not None


async def test_create_exclusive_conflict_is_a_lost_race(
    faults: FaultInjector, store: S3Store, client: S3Client
) -> None:
    """S3's 409 ConditionalRequestConflict (a concurrent conditional write) means
    the lock was not taken."""
    faults.on("PutObject", [(409, "ConditionalRequestConflict")])
    assert await store.create_exclusive("lock", b"x") is False


# -- faults -------------------------------------------------------------------------


async def test_slowdown_is_retried_then_succeeds(
    faults: FaultInjector, store: S3Store, client: S3Client
) -> None:
    """SlowDown (503) is retried by botocore's standard retry mode; the put then
    succeeds."""
    rule = faults.on("PutObject", [(503, "SlowDown"), (503, "SlowDown")])
    await store.put_bytes("k", b"data", PutOptions())
    assert rule.attempts == 3
    assert await store.get("k", max_length=10) == b"data"


@pytest.mark.parametrize(
    "fault", [(500, "InternalError"), (503, "SlowDown"), (400, "RequestTimeout"), "connection"]
)
async def test_exhausted_retries_are_a_storage_error(
    faults: FaultInjector, store: S3Store, client: S3Client, fault: tuple[int, str] | str
) -> None:
    """A transient failure that outlasts max_attempts becomes StorageError (exit 3),
    naming the object, after exactly max_attempts attempts."""
    rule = faults.on("PutObject", [fault], forever=True)
    with pytest.raises(StorageError, match=f"s3://{BUCKET}/{PREFIX}/k") as info:
        await store.put_bytes("k", b"data", PutOptions())
    assert rule.attempts == MAX_ATTEMPTS
    assert info.value.exit_status == ExitStatus.TRANSIENT


@pytest.mark.parametrize(
    "fault",
    [
        (403, "AccessDenied"),
        (403, "InvalidAccessKeyId"),
        (403, "SignatureDoesNotMatch"),
        (404, "NoSuchBucket"),
    ],
)
async def test_configuration_errors_are_not_retried(
    faults: FaultInjector, store: S3Store, client: S3Client, fault: tuple[int, str]
) -> None:
    """Access denied, bad credentials, a missing bucket or a wrong region are
    StorageConfigError (exit 2) after a single attempt, naming the bucket."""
    rule = faults.on("PutObject", [fault], forever=True)
    with pytest.raises(StorageConfigError, match=BUCKET) as info:
        await store.put_bytes("k", b"data", PutOptions())
    assert rule.attempts == 1
    assert info.value.exit_status == ExitStatus.USAGE


async def test_checksum_mismatch_is_a_storage_error(faults: FaultInjector, store: S3Store) -> None:
    """S3 rejecting the bytes against the sent SHA-256 (BadDigest; moto itself does
    not check) is a StorageError, not retried by botocore, and nothing is written."""
    rule = faults.on("PutObject", [(400, "BadDigest")])
    with pytest.raises(StorageError, match="BadDigest"):
        await store.put_bytes("k", b"data", PutOptions(sha256=sha256_hex(b"other")))
    assert rule.attempts == 1
    assert await store.head("k") is None


async def test_wrong_region_is_a_configuration_error(faults: FaultInjector, store: S3Store) -> None:
    """A bucket in another region (301 PermanentRedirect that botocore's region
    redirector cannot resolve) is StorageConfigError, not retried by us."""
    faults.on("PutObject", [(301, "PermanentRedirect")], forever=True)
    with pytest.raises(StorageConfigError, match="PermanentRedirect"):
        await store.put_bytes("k", b"data", PutOptions())


async def test_missing_bucket_is_a_configuration_error(
    faults: FaultInjector, client: S3Client
) -> None:
    """Every operation on a bucket that does not exist is StorageConfigError after
    one attempt -- head included, although a HEAD on a missing bucket can be a bare
    404 like a missing key (HeadBucket tells them apart)."""
    store = S3Store("no-such-bucket-here", client=client)
    try:
        puts = faults.on("PutObject")
        with pytest.raises(StorageConfigError, match="no-such-bucket-here"):
            await store.put_bytes("k", b"x", PutOptions())
        assert puts.attempts == 1
        with pytest.raises(StorageConfigError, match="does not exist"):
            await store.get("k", max_length=1)
        with pytest.raises(StorageConfigError, match="does not exist"):
            _ = [i async for i in store.list("")]
        # real S3 answers HEAD on a missing bucket with a bare 404, as for a missing key
        faults.on("HeadObject", [(404, "")], forever=True)
        with pytest.raises(StorageConfigError, match="does not exist"):
            await store.head("k")
    finally:
        await store.aclose()


async def test_head_of_a_missing_key_checks_the_bucket_once(
    faults: FaultInjector, store: S3Store, client: S3Client
) -> None:
    """A 404 on head costs one HeadBucket for the store's lifetime, not one per key."""
    head_bucket = faults.on("HeadBucket")
    assert await store.head("a") is None
    assert await store.head("b") is None
    assert head_bucket.attempts == 1


async def test_failed_upload_leaves_the_previous_object(
    faults: FaultInjector, store: S3Store, client: S3Client
) -> None:
    """A put that fails (retries exhausted) leaves the previously published object
    byte-identical, and keeps the spool file for the caller."""
    await store.put_bytes("metadata/timestamp.json", b"old", PutOptions())
    faults.on("PutObject", [(500, "InternalError")], forever=True)
    with pytest.raises(StorageError):
        await store.put_bytes("metadata/timestamp.json", b"new", PutOptions())
    spool = store.spool_dir() / "new.part"
    spool.write_bytes(b"new")
    with pytest.raises(StorageError):
        await store.put_file("metadata/timestamp.json", spool, PutOptions())
    assert spool.read_bytes() == b"new"
    assert await store.get("metadata/timestamp.json", max_length=10) == b"old"


async def test_failed_multipart_upload_is_aborted(faults: FaultInjector, client: S3Client) -> None:
    """A multipart upload whose parts keep failing raises StorageError, leaves the
    previous object intact and no incomplete multipart upload behind."""
    size = 5 * 1024 * 1024
    async with open_store(client, multipart_threshold=size, multipart_chunksize=size) as store:
        await store.put_bytes("targets/big", b"previous", PutOptions())
        spool = store.spool_dir() / "big.part"
        spool.write_bytes(b"\1" * (size + 10))
        faults.on("UploadPart", [(500, "InternalError")], forever=True)
        with pytest.raises(StorageError, match="targets/big"):
            await store.put_file("targets/big", spool, PutOptions())
        assert await store.get("targets/big", max_length=100) == b"previous"
    assert client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


async def test_read_faults_are_retried(
    faults: FaultInjector, store: S3Store, client: S3Client
) -> None:
    """Reads (HeadObject, GetObject, ListObjectsV2) retry transient faults too."""
    await store.put_bytes("k", b"data", PutOptions())
    heads = faults.on("HeadObject", [(503, "SlowDown")])
    gets = faults.on("GetObject", ["connection"])
    lists = faults.on("ListObjectsV2", [(500, "InternalError")])
    assert (await store.head("k")) is not None
    assert await store.get("k", max_length=10) == b"data"
    assert [i.key async for i in store.list("")] == ["k"]
    assert (heads.attempts, gets.attempts, lists.attempts) == (2, 2, 2)


# -- threads, limits, lifecycle, configuration ---------------------------------------


async def test_boto3_calls_run_in_worker_threads(
    faults: FaultInjector, store: S3Store, client: S3Client
) -> None:
    """No boto3 request is sent from the event loop's thread."""
    loop_thread = threading.current_thread()
    calls = [
        faults.on(op)
        for op in ("PutObject", "HeadObject", "GetObject", "ListObjectsV2", "DeleteObject")
    ]
    await store.put_bytes("k", b"x", PutOptions())
    await store.head("k")
    await store.get("k", max_length=1)
    _ = [c async for c in store.iter_chunks("k")]
    _ = [i async for i in store.list("")]
    await store.delete("k")
    threads = [t for c in calls for t in c.threads]
    assert len(threads) == 6
    assert loop_thread not in threads


async def test_max_concurrency_caps_simultaneous_requests(client: S3Client) -> None:
    """At most max_concurrency boto3 calls run at once: with 2 slots, 5 concurrent
    heads never have more than 2 requests in flight."""
    state = {"active": 0, "peak": 0}
    cond = threading.Condition()
    release = threading.Event()

    def gate(**_kwargs: Any) -> None:
        with cond:
            state["active"] += 1
            state["peak"] = max(state["peak"], state["active"])
            cond.notify_all()
        release.wait(timeout=10)
        with cond:
            state["active"] -= 1

    client.meta.events.register_first("before-send.s3.HeadObject", gate)

    def two_in_flight() -> None:
        with cond:
            assert cond.wait_for(lambda: state["active"] >= 2, timeout=10)

    async with open_store(client, max_concurrency=2) as store, trio.open_nursery() as nursery:
        for n in range(5):
            nursery.start_soon(store.head, f"k{n}")
        await trio.to_thread.run_sync(two_in_flight)
        release.set()
    assert state["peak"] == 2


async def test_spool_dir_is_the_destinations_and_outlives_aclose(
    client: S3Client, tmp_path: Path
) -> None:
    """spool_dir is private (0700), the same for every store on one destination (a
    later run finds a killed run's partial downloads there) and different for
    another prefix; aclose leaves it (the lock holder reclaims it), is idempotent,
    and the store cannot be used afterwards."""
    store = S3Store(BUCKET, "a", client=client, spool_root=tmp_path)
    spool = store.spool_dir()
    assert spool.stat().st_mode & 0o777 == 0o700
    (spool / "partial-x").write_bytes(b"x")
    await store.aclose()
    await store.aclose()
    assert (spool / "partial-x").exists()
    with pytest.raises(RuntimeError):
        await store.head("k")
    assert S3Store(BUCKET, "a", client=client, spool_root=tmp_path).spool_dir() == spool
    assert S3Store(BUCKET, "b", client=client, spool_root=tmp_path).spool_dir() != spool


def test_a_planted_spool_dir_is_refused(client: S3Client, tmp_path: Path) -> None:
    """A symlink where the spool directory should be (planted in a shared /tmp) is
    refused as a configuration error (exit 2), never followed."""
    from mirror.errors import StorageConfigError

    spool = S3Store(BUCKET, "c", client=client, spool_root=tmp_path).spool_dir()
    spool.rmdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    spool.symlink_to(elsewhere)
    with pytest.raises(StorageConfigError, match="not a directory owned by this user"):
        S3Store(BUCKET, "c", client=client, spool_root=tmp_path)


async def test_store_builds_its_own_client_in_a_thread(moto: None) -> None:
    """Without an injected client the store builds one (lazily, off the event
    loop) from boto3's usual chain, and closes it on aclose."""
    make_client(region="us-east-1").create_bucket(Bucket=BUCKET)
    store = S3Store(
        BUCKET, "p", region="us-east-1", addressing_style="path", storage_class="STANDARD_IA"
    )
    try:
        await store.put_bytes("k", b"x", PutOptions())
        assert await store.get("k", max_length=1) == b"x"
    finally:
        await store.aclose()
    raw = make_client(region="us-east-1").head_object(Bucket=BUCKET, Key="p/k")
    assert raw["StorageClass"] == "STANDARD_IA"


def test_endpoint_from_aws_endpoint_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore itself reads AWS_ENDPOINT_URL (and the S3-specific
    AWS_ENDPOINT_URL_S3, which wins); an explicit endpoint_url wins over both."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    assert make_client().meta.endpoint_url == "http://127.0.0.1:9000"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9001")
    assert make_client().meta.endpoint_url == "http://127.0.0.1:9001"
    assert (
        make_client(endpoint_url="http://127.0.0.1:9002").meta.endpoint_url
        == "http://127.0.0.1:9002"
    )


def test_client_configuration() -> None:
    """make_client configures botocore's standard retry mode with max_attempts and
    the addressing style."""
    c = make_client(region="eu-west-1", addressing_style="path", max_attempts=7)
    config: Any = c.meta.config
    assert config.retries == {"mode": "standard", "total_max_attempts": 7}
    assert config.s3 == {"addressing_style": "path"}
    assert c.meta.region_name == "eu-west-1"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"addressing_style": "sideways"}, StorageConfigError),
        ({"endpoint_url": "not a url"}, StorageConfigError),
    ],
)
def test_make_client_rejects_bad_configuration(
    kwargs: dict[str, Any], error: type[Exception]
) -> None:
    """Bad client settings are configuration errors (exit 2)."""
    with pytest.raises(error):
        make_client(**kwargs)


def test_store_rejects_bad_configuration() -> None:
    """Bad bucket names, prefixes and addressing styles fail at construction."""
    with pytest.raises(StorageConfigError):
        S3Store("")
    with pytest.raises(StorageConfigError):
        S3Store("bucket/x")
    with pytest.raises(StorageConfigError):
        S3Store("bucket", "a/../b")
    with pytest.raises(StorageConfigError):
        S3Store("bucket", addressing_style="sideways")
    with pytest.raises(ValueError, match="5 MiB"):
        S3Store("bucket", multipart_chunksize=1024)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://bucket", ("bucket", "")),
        ("s3://bucket/", ("bucket", "")),
        ("s3://bucket/some/prefix", ("bucket", "some/prefix")),
        ("s3://bucket/some/prefix/", ("bucket", "some/prefix")),
        ("s3://my.bucket-1/with space", ("my.bucket-1", "with space")),
    ],
)
def test_parse_s3_url(url: str, expected: tuple[str, str]) -> None:
    """parse_s3_url splits bucket and prefix, without the outer slashes."""
    assert parse_s3_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "bucket/prefix",
        "http://bucket/x",
        "s3://",
        "s3:///prefix",
        "s3://b/x?y=1",
        "s3://b/a//c",
        "s3://b/a/../c",
        "s3://user@b/x",
        "s3://b:80/x",
    ],
)
def test_parse_s3_url_rejects(url: str) -> None:
    """Anything but s3://bucket[/prefix] with a clean prefix is a configuration error."""
    with pytest.raises(StorageConfigError):
        parse_s3_url(url)


# -- for the storage contract suite --------------------------------------------------


@contextlib.asynccontextmanager
async def s3_store_on_moto(tmp_path: Path) -> AsyncIterator[S3Store]:
    """A fresh S3Store on moto's in-process mock (for the contract suite)."""
    del tmp_path  # the store spools in its own temporary directory
    with mock_aws():
        c = make_client(region="us-east-1")
        c.create_bucket(Bucket=BUCKET)
        store = S3Store(BUCKET, PREFIX, client=c)
        try:
            yield store
        finally:
            await store.aclose()


async def test_contract_factory_gives_a_working_store(tmp_path: Path) -> None:
    """The factory the contract suite uses yields a usable, isolated store."""
    async with s3_store_on_moto(tmp_path) as store:
        assert [i async for i in store.list("")] == []
        await store.put_bytes("k", b"x", PutOptions())
        assert await store.get("k", max_length=1) == b"x"
