"""The S3 destination: a ``Store`` on one bucket and key prefix, through boto3.

Every boto3 call runs in a worker thread (``trio.to_thread.run_sync``) under one
``trio.CapacityLimiter`` per store, the upload concurrency knob; nothing blocks the
event loop. Credentials, region and endpoint come from boto3's usual chain
(environment, shared config, instance roles; ``AWS_ENDPOINT_URL`` /
``AWS_ENDPOINT_URL_S3`` are read by botocore itself) unless given here.

Integrity: every upload carries a SHA-256 checksum (``ChecksumAlgorithm=SHA256``, and
``ChecksumSHA256`` set to the caller's verified digest when ``PutOptions.sha256`` is
given), so S3 rejects bytes damaged between the spool file and the bucket.
``head`` reports that digest back as ``ObjectInfo.sha256`` when it covers the whole
object (single-request uploads). Multipart uploads (files above
``multipart_threshold``) get per-part SHA-256 checksums, which S3 combines into a
checksum *of checksums*; those objects report ``sha256=None``. Before a multipart
upload the spool file is hashed again and compared with ``PutOptions.sha256``.

Retries: S3's own throttling (``SlowDown``, 503), 500s, ``RequestTimeout`` and
connection errors are retried by botocore's ``standard`` retry mode (exponential
backoff with jitter, ``max_attempts`` in total), configured here and nowhere else;
tenacity is the HTTP-fetch retry policy, not this one. What is left after the retries
becomes ``StorageError`` (exit 3). Access denied, a missing bucket, bad credentials
or a wrong region become ``StorageConfigError`` (exit 2) and are never retried.

Cancellation waits for the S3 call in flight (worker threads cannot be
interrupted; botocore's connect/read timeouts bound the wait).

What it does not do: decide publish order, headers or what to skip (``sync.py`` and
``mirror.storage.headers``), judge names (``mirror.trust`` does; keys are only
re-checked with ``validate_key`` as a safety net), or implement the lock protocol
(``mirror.storage.lock``, on top of ``create_exclusive``).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import os
import re
import stat
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, cast
from urllib.parse import urlsplit

import botocore.session
import trio
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
)
from botocore.loaders import Loader, create_loader
from urllib3.exceptions import HTTPError as Urllib3Error

from mirror.errors import StorageConfigError, StorageError
from mirror.storage.base import (
    DELETE_BATCH,
    NotFoundInStoreError,
    ObjectInfo,
    PutOptions,
    is_internal_key,
    validate_key,
    validate_prefix,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ListObjectsV2OutputTypeDef, ObjectIdentifierTypeDef

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_MULTIPART_CHUNKSIZE",
    "DEFAULT_MULTIPART_THRESHOLD",
    "S3Store",
    "make_client",
    "parse_s3_url",
]

_T = TypeVar("_T")

MiB: Final = 1024 * 1024
#: Files larger than this go through multipart upload (boto3's managed transfer).
DEFAULT_MULTIPART_THRESHOLD: Final = 64 * MiB
#: Part size of multipart uploads (S3's minimum is 5 MiB).
DEFAULT_MULTIPART_CHUNKSIZE: Final = 16 * MiB
#: Attempts per S3 request in total, first one included (botocore ``standard`` mode).
DEFAULT_MAX_ATTEMPTS: Final = 5

_ADDRESSING_STYLES: Final[dict[str, Literal["path", "virtual", "auto"]]] = {
    "path": "path",
    "virtual": "virtual",
    "auto": "auto",
}

# Error codes that mean "the destination is misconfigured": never retried, exit 2.
_CONFIG_ERROR_CODES: Final = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "AccountProblem",
        "AuthorizationHeaderMalformed",  # wrong region
        "ExpiredToken",
        "IllegalLocationConstraintException",
        "InvalidAccessKeyId",
        "InvalidBucketName",
        "InvalidStorageClass",
        "NotImplemented",  # a feature this S3-compatible server lacks
        "InvalidToken",
        "NoSuchBucket",
        "PermanentRedirect",  # bucket in another region
        "SignatureDoesNotMatch",
        "TokenRefreshRequired",
    }
)
# HTTP statuses with an empty body (HEAD) that mean the same.
_CONFIG_ERROR_STATUSES: Final = frozenset({301, 400, 401, 403})
_MULTIPART_ETAG: Final = re.compile(r"[0-9a-fA-F]+-[0-9]+")
_NOT_FOUND_CODES: Final = frozenset({"NoSuchKey", "NotFound", "404"})
# A conditional create lost: the key exists (412) or another conditional write on
# the same key is in flight (409).
_EXCLUSIVE_LOST_CODES: Final = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
_BOTOCORE_CONFIG_ERRORS: Final = (
    NoCredentialsError,
    PartialCredentialsError,
    CredentialRetrievalError,
    NoRegionError,
    ParamValidationError,
)


def parse_s3_url(url: str) -> tuple[str, str]:
    """Split ``s3://bucket/some/prefix`` into ``("bucket", "some/prefix")``.

    The prefix has no leading or trailing ``/`` and may be empty. Raises
    ``StorageConfigError`` for anything else (another scheme, no bucket, a query,
    empty or dot segments in the prefix).
    """
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise StorageConfigError(f"{url!r} is not an s3://bucket/prefix URL")
    if parts.query or parts.fragment or "@" in parts.netloc or ":" in parts.netloc:
        raise StorageConfigError(f"{url!r}: an S3 URL has no credentials, port, query or fragment")
    return parts.netloc, _normalize_prefix(parts.path, what=url)


def _normalize_prefix(prefix: str, *, what: str) -> str:
    stripped = prefix.strip("/")
    if stripped and any(seg in {"", ".", ".."} for seg in stripped.split("/")):
        raise StorageConfigError(f"{what!r}: the S3 key prefix has an empty, '.' or '..' segment")
    return stripped


def make_client(
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    addressing_style: str | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    max_pool_connections: int = 16,
) -> S3Client:
    """A botocore S3 client configured the way ``S3Store`` expects.

    Blocking (it loads botocore's service model): call it from a thread, or before
    the event loop starts. ``endpoint_url=None`` lets botocore use
    ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` or the AWS endpoint of the region.
    """
    style = _addressing_style(addressing_style)
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, not {max_attempts}")
    config = Config(
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        max_pool_connections=max_pool_connections,
        user_agent_extra="tuf-mirror",
        s3={"addressing_style": style} if style is not None else None,
    )
    # A private botocore session per client (boto3's default session is not
    # thread-safe; credentials and endpoint are resolved afresh), sharing one parsed
    # copy of botocore's service models: 10 ms per client instead of ~80 ms.
    session = botocore.session.get_session()
    session.register_component("data_loader", _shared_loader())
    try:
        client = session.create_client(
            "s3", endpoint_url=endpoint_url, region_name=region, config=config
        )
    except ValueError as exc:  # invalid endpoint URL or region name
        raise StorageConfigError(f"cannot configure the S3 client: {exc}") from exc
    except BotoCoreError as exc:
        raise StorageConfigError(f"cannot configure the S3 client: {exc}") from exc
    return cast("S3Client", client)


@functools.cache
def _shared_loader() -> Loader:
    """botocore's model loader, shared by every client of the process (it only
    caches parsed JSON files; botocore shares one per session already)."""
    return create_loader()


def _addressing_style(value: str | None) -> Literal["path", "virtual", "auto"] | None:
    if value is None:
        return None
    try:
        return _ADDRESSING_STYLES[value]
    except KeyError:
        raise StorageConfigError(
            f"S3 addressing style {value!r} is not one of path, virtual, auto"
        ) from None


def _b64_to_hex(value: str) -> str | None:
    try:
        digest = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return digest.hex() if len(digest) == 32 else None


def _hex_to_b64(value: str) -> str:
    try:
        digest = bytes.fromhex(value)
    except ValueError:
        digest = b""
    if len(digest) != 32:
        raise ValueError(f"PutOptions.sha256 is not a hex SHA-256 digest: {value!r}")
    return base64.b64encode(digest).decode("ascii")


def _destination_spool(url: str, root: Path | None) -> Path:
    """The spool directory of the destination ``url`` (see ``S3Store.spool_dir``),
    created private (0700). One that is not a real directory owned by this user (a
    symlink planted in a shared ``/tmp``) is refused as ``StorageConfigError``; any
    other failure (a full or read-only ``$TMPDIR``) is ``StorageError``."""
    base = Path(root) if root is not None else Path(tempfile.gettempdir())
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    path = base / f"tuf-mirror-s3-spool-{os.getuid()}-{digest}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        info = path.lstat()
    except OSError as exc:
        raise StorageError(
            f"cannot create the spool directory {path} for {url}: {exc.strerror or exc}"
        ) from exc
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise StorageConfigError(
            f"the spool directory {path} for {url} is not a directory owned by this user;"
            " remove it or set TMPDIR"
        )
    return path


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


def _is_multipart(resp: Mapping[str, Any]) -> bool:
    """True when a HeadObject answer describes a multipart object, whose SHA-256
    checksum is a checksum of the part checksums, not of the content.

    S3 says so three ways: ``ChecksumType: COMPOSITE``, a ``-<parts>`` suffix on the
    checksum, and the ``-<parts>`` suffix of a multipart ETag. Some S3-compatible
    servers (moto 5.2) give only the last, so all three are checked.
    """
    checksum = str(resp.get("ChecksumSHA256", ""))
    etag = str(resp.get("ETag", "")).strip('"')
    return (
        resp.get("ChecksumType") == "COMPOSITE"
        or "-" in checksum
        or _MULTIPART_ETAG.fullmatch(etag) is not None
    )


def _error_code(exc: ClientError) -> tuple[str, int]:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    return code, status


def _retry_attempts(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0))


class S3Store:
    """A ``Store`` on ``s3://bucket/prefix``; see the module docstring.

    Keys map to ``prefix + "/" + key`` (just ``key`` with an empty prefix); S3 keys
    are arbitrary UTF-8, so spaces, ``%`` and non-ASCII names are stored as given.
    ``client`` replaces the client ``make_client`` would build (tests, custom
    sessions); an injected client is not closed by ``aclose``.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        addressing_style: str | None = None,
        storage_class: str | None = None,
        max_concurrency: int = 16,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        multipart_chunksize: int = DEFAULT_MULTIPART_CHUNKSIZE,
        multipart_concurrency: int = 4,
        spool_root: Path | None = None,
        client: S3Client | None = None,
    ) -> None:
        if not bucket or "/" in bucket:
            raise StorageConfigError(f"invalid S3 bucket name {bucket!r}")
        _addressing_style(addressing_style)
        if max_concurrency < 1 or multipart_concurrency < 1:
            raise ValueError("max_concurrency and multipart_concurrency must be >= 1")
        if multipart_chunksize < 5 * MiB:
            raise ValueError("multipart_chunksize must be at least 5 MiB (an S3 limit)")
        self.bucket = bucket
        self.prefix = _normalize_prefix(prefix, what=prefix)
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._endpoint_url = endpoint_url
        self._region = region
        self._addressing_style = addressing_style
        self._storage_class = storage_class
        self._max_attempts = max_attempts
        self._multipart_threshold = multipart_threshold
        self._multipart_chunksize = multipart_chunksize
        self._multipart_concurrency = multipart_concurrency
        self._max_concurrency = max_concurrency
        self._limiter = trio.CapacityLimiter(max_concurrency)
        self._client = client
        self._owns_client = client is None
        self._client_lock = trio.Lock()
        self._bucket_checked = False
        self._conditional_writes_checked = False
        self._closed = False
        self._spool = _destination_spool(self.url, spool_root)

    # -- plumbing ---------------------------------------------------------------------

    def _key(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _where(self, key: str | None) -> str:
        return f"{self.url}/{key}" if key else self.url

    async def _get_client(self) -> S3Client:
        if self._closed:
            raise RuntimeError(f"{self.url}: store used after aclose()")
        if self._client is None:
            async with self._client_lock:
                if self._client is None:
                    self._client = await trio.to_thread.run_sync(
                        lambda: make_client(
                            endpoint_url=self._endpoint_url,
                            region=self._region,
                            addressing_style=self._addressing_style,
                            max_attempts=self._max_attempts,
                            max_pool_connections=(
                                self._max_concurrency * self._multipart_concurrency
                            ),
                        )
                    )
        assert self._client is not None
        return self._client

    async def _call(self, operation: str, key: str | None, fn: Callable[[S3Client], _T]) -> _T:
        """Run ``fn(client)`` in a worker thread, translating every library error."""
        client = await self._get_client()
        try:
            return await trio.to_thread.run_sync(fn, client, limiter=self._limiter)
        except (ClientError, BotoCoreError, Boto3Error, OSError, Urllib3Error) as exc:
            # urllib3's ProtocolError (a connection reset while a body is read) is
            # not wrapped by botocore when it happens in Body.read().
            raise self._translate(operation, key, exc) from exc

    def _translate(self, operation: str, key: str | None, exc: Exception) -> Exception:
        """The ``mirror.errors`` exception for a boto3/botocore/OS error."""
        where = self._where(key)
        cause: BaseException = exc
        # boto3's managed transfer wraps the ClientError in S3UploadFailedError.
        if not isinstance(exc, ClientError | BotoCoreError) and isinstance(
            exc.__context__, ClientError
        ):
            cause = exc.__context__
        if isinstance(cause, ClientError):
            code, status = _error_code(cause)
            message = cause.response.get("Error", {}).get("Message", "") or f"HTTP {status}"
            if code in _NOT_FOUND_CODES:
                return NotFoundInStoreError(f"{where}: no such object")
            if code == "NoSuchBucket":
                return StorageConfigError(
                    f"S3 bucket {self.bucket!r} does not exist ({operation} {where})"
                )
            if code in _CONFIG_ERROR_CODES or (
                status in _CONFIG_ERROR_STATUSES and code in {"", str(status)}
            ):
                return StorageConfigError(
                    f"S3 bucket {self.bucket!r} refused {operation} on {where}: "
                    f"{code or status} ({message}); check the bucket, region, endpoint "
                    "and credentials"
                )
            attempts = _retry_attempts(cause) + 1
            return StorageError(
                f"{where}: {operation} failed after {attempts} attempt(s): "
                f"{code or status} ({message})"
            )
        if isinstance(exc, _BOTOCORE_CONFIG_ERRORS):
            return StorageConfigError(f"{where}: {operation}: {exc}")
        if isinstance(exc, BotoCoreError):
            # connection errors, timeouts, checksum mismatches on read, ...
            return StorageError(f"{where}: {operation} failed: {exc}")
        if isinstance(exc, OSError | Urllib3Error):
            return StorageError(f"{where}: {operation} failed: {exc}")
        # boto3's wrappers (S3UploadFailedError, RetriesExceededError) without a cause
        return StorageError(f"{where}: {operation} failed: {type(exc).__name__}: {exc}")

    async def _check_bucket(self) -> None:
        """Raise StorageConfigError if the bucket is missing (once per store).

        A HEAD on a key of a missing bucket is a bare 404, indistinguishable from a
        missing key; HeadBucket tells them apart. A 403 here is not an error: a
        writer may lack s3:ListBucket and still be able to do its job.
        """
        if self._bucket_checked:
            return

        def head_bucket(client: S3Client) -> None:
            try:
                client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                code, status = _error_code(exc)
                if status == 403 or code == "AccessDenied":
                    return
                if status == 404 or code in {"NoSuchBucket", "NotFound", "404"}:
                    raise StorageConfigError(
                        f"S3 bucket {self.bucket!r} does not exist ({self.url})"
                    ) from exc
                raise

        await self._call("HeadBucket", None, head_bucket)
        self._bucket_checked = True

    def _put_args(self, options: PutOptions) -> dict[str, Any]:
        args: dict[str, Any] = {"ContentType": options.content_type, "ChecksumAlgorithm": "SHA256"}
        if options.cache_control is not None:
            args["CacheControl"] = options.cache_control
        if self._storage_class is not None:
            args["StorageClass"] = self._storage_class
        return args

    # -- Store ------------------------------------------------------------------------

    async def head(self, key: str) -> ObjectInfo | None:
        """HeadObject; ``sha256`` from the object's full-object SHA-256 checksum."""
        full = self._key(key)

        def head_object(client: S3Client) -> ObjectInfo | None:
            try:
                resp = client.head_object(Bucket=self.bucket, Key=full, ChecksumMode="ENABLED")
            except ClientError as exc:
                code, status = _error_code(exc)
                if code in _NOT_FOUND_CODES or (status == 404 and code != "NoSuchBucket"):
                    return None
                raise
            checksum = resp.get("ChecksumSHA256")
            sha256 = None
            if checksum and not _is_multipart(resp):
                sha256 = _b64_to_hex(checksum)
            return ObjectInfo(key=key, size=int(resp["ContentLength"]), sha256=sha256)

        info = await self._call("HeadObject", key, head_object)
        if info is None:
            await self._check_bucket()
        return info

    async def get(self, key: str, *, max_length: int) -> bytes:
        """GetObject; refuses objects larger than ``max_length`` before reading them."""
        full = self._key(key)

        def get_object(client: S3Client) -> bytes:
            resp = client.get_object(Bucket=self.bucket, Key=full, ChecksumMode="ENABLED")
            body = resp["Body"]
            try:
                if resp["ContentLength"] > max_length:
                    raise StorageError(
                        f"{self._where(key)} is {resp['ContentLength']} bytes, "
                        f"more than the {max_length} allowed"
                    )
                # read() to the end also checks the stored checksum, if any
                return body.read()
            finally:
                body.close()

        return await self._call("GetObject", key, get_object)

    async def iter_chunks(self, key: str, *, chunk_size: int = 1 << 16) -> AsyncIterator[bytes]:
        """GetObject, then one worker-thread read per chunk."""
        full = self._key(key)
        resp = await self._call(
            "GetObject",
            key,
            lambda client: client.get_object(Bucket=self.bucket, Key=full, ChecksumMode="ENABLED"),
        )
        body = resp["Body"]
        try:
            while True:
                chunk = await self._call("GetObject", key, lambda _client: body.read(chunk_size))
                if not chunk:  # the empty read at the end also checks the checksum
                    return
                yield chunk
        finally:
            body.close()

    async def put_bytes(self, key: str, data: bytes, options: PutOptions) -> None:
        """PutObject with headers and a SHA-256 checksum S3 checks on arrival."""
        full = self._key(key)
        args = self._put_args(options)
        if options.sha256 is not None:
            args["ChecksumSHA256"] = _hex_to_b64(options.sha256)

        def put_object(client: S3Client) -> None:
            client.put_object(Bucket=self.bucket, Key=full, Body=data, **args)

        await self._call("PutObject", key, put_object)

    async def put_file(self, key: str, path: Path, options: PutOptions) -> None:
        """Upload the spool file ``path`` and delete it once the upload succeeded.

        Up to ``multipart_threshold`` bytes: one PutObject streamed from the file with
        the whole-object checksum. Above: boto3's managed multipart transfer with
        per-part SHA-256 checksums, after checking the file still hashes to
        ``options.sha256``. A failed upload leaves the previous object untouched
        (S3 replaces an object only when the upload completes) and keeps the file.
        """
        full = self._key(key)
        args = self._put_args(options)
        expected_b64 = _hex_to_b64(options.sha256) if options.sha256 is not None else None

        def upload(client: S3Client) -> None:
            size = path.stat().st_size
            if size <= self._multipart_threshold:
                single = dict(args)
                if expected_b64 is not None:
                    single["ChecksumSHA256"] = expected_b64
                with path.open("rb") as f:
                    client.put_object(Bucket=self.bucket, Key=full, Body=f, **single)
            else:
                self._upload_multipart(client, full, path, args, options.sha256)
            path.unlink(missing_ok=True)

        await self._call("PutObject", key, upload)

    def _upload_multipart(
        self,
        client: S3Client,
        full: str,
        path: Path,
        args: dict[str, Any],
        sha256: str | None,
    ) -> None:
        if sha256 is not None and _file_sha256(path) != sha256.lower():
            raise StorageError(
                f"spool file {path} no longer hashes to {sha256}; not uploading it to "
                f"s3://{self.bucket}/{full}"
            )
        config = TransferConfig(
            multipart_threshold=self._multipart_threshold,
            multipart_chunksize=self._multipart_chunksize,
            max_concurrency=self._multipart_concurrency,
            use_threads=self._multipart_concurrency > 1,
            preferred_transfer_client="classic",
        )
        # s3transfer aborts the multipart upload if a part or the completion fails.
        with create_transfer_manager(client, config) as manager:
            manager.upload(str(path), self.bucket, full, extra_args=args).result()

    async def create_exclusive(self, key: str, data: bytes) -> bool:
        """PutObject with ``If-None-Match: *``; False when the key already exists.

        If the request had to be retried, the 412 may answer our own earlier attempt
        that did succeed; then the object is read back and the answer is True when it
        holds exactly ``data`` (lock contents carry a per-attempt token).

        The first success of a store is followed by the same conditional request
        again, which must now fail: an S3-compatible server that ignores
        ``If-None-Match`` would make every lock succeed, so it is refused as
        ``StorageConfigError`` (after deleting the object just written).
        """
        full = self._key(key)

        def conditional_put(client: S3Client, body: bytes) -> bool:
            """True if the object was created, False if it already existed."""
            try:
                client.put_object(
                    Bucket=self.bucket,
                    Key=full,
                    Body=body,
                    IfNoneMatch="*",
                    CacheControl="no-store",
                    ChecksumAlgorithm="SHA256",
                )
            except ClientError as exc:
                code, status = _error_code(exc)
                if code not in _EXCLUSIVE_LOST_CODES and status not in {409, 412}:
                    raise
                if _retry_attempts(exc) == 0:
                    return False
                try:
                    resp = client.get_object(Bucket=self.bucket, Key=full)
                except ClientError:
                    return False
                with resp["Body"] as stored:
                    return bool(stored.read(len(body) + 1) == body)
            return True

        def create(client: S3Client) -> bool:
            if not conditional_put(client, data):
                return False
            if not self._conditional_writes_checked:
                # The probe sends other bytes: if a 5xx made botocore retry it, the
                # 412 answering the retry is then read back as "not ours" (the
                # endpoint does honour If-None-Match), not as our own success.
                if conditional_put(client, data + b"\n"):
                    client.delete_object(Bucket=self.bucket, Key=full)
                    raise StorageConfigError(
                        f"the S3 endpoint of {self.url} ignores If-None-Match on PutObject "
                        "(conditional writes), so the destination lock would not exclude "
                        "concurrent runs; use an endpoint that supports conditional writes"
                    )
                self._conditional_writes_checked = True
            return True

        return await self._call("PutObject", key, create)

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        """ListObjectsV2 pages, one worker-thread call per page; keys under
        ``INTERNAL_PREFIX`` (the lock) are left out."""
        validate_prefix(prefix)
        root = self.prefix + "/" if self.prefix else ""
        full_prefix = root + prefix
        pages: Iterator[ListObjectsV2OutputTypeDef] | None = None

        def next_page(client: S3Client) -> ListObjectsV2OutputTypeDef | None:
            nonlocal pages
            if pages is None:
                paginator = client.get_paginator("list_objects_v2")
                pages = iter(paginator.paginate(Bucket=self.bucket, Prefix=full_prefix))
            return next(pages, None)

        while True:
            page = await self._call("ListObjectsV2", prefix or None, next_page)
            if page is None:
                return
            for obj in page.get("Contents", []):
                full = obj.get("Key", "")
                key = full[len(root) :]
                if full.startswith(root) and not is_internal_key(key):
                    # LastModified is truncated to the second: the write may have
                    # happened up to a second later.
                    stamp = obj.get("LastModified")
                    modified = stamp + timedelta(seconds=1) if stamp is not None else None
                    yield ObjectInfo(key=key, size=int(obj.get("Size", 0)), modified=modified)

    async def delete(self, key: str) -> None:
        """DeleteObject; S3 answers 204 for an absent key too."""
        full = self._key(key)
        await self._call(
            "DeleteObject", key, lambda client: client.delete_object(Bucket=self.bucket, Key=full)
        )

    async def delete_many(self, keys: Sequence[str]) -> None:
        """One DeleteObjects request (quiet mode: only failures are answered)."""
        if len(keys) > DELETE_BATCH:
            raise ValueError(f"delete_many takes at most {DELETE_BATCH} keys")
        if not keys:
            return
        objects: list[ObjectIdentifierTypeDef] = [{"Key": self._key(key)} for key in keys]

        def delete_objects(client: S3Client) -> list[str]:
            resp = client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}
            )
            return [
                f"{error.get('Key', '?')}: {error.get('Code', '?')}"
                for error in resp.get("Errors", [])
            ]

        failed = await self._call("DeleteObjects", keys[0], delete_objects)
        if failed:
            raise StorageError(
                f"{self.url}: DeleteObjects failed for {len(failed)} of {len(keys)} keys "
                f"(first: {failed[0]})"
            )

    def spool_dir(self) -> Path:
        """This destination's spool directory on the local disk:
        ``$TMPDIR/tuf-mirror-s3-spool-<uid>-<hash of the s3:// URL>``, the same for
        every run on this destination, so a later run finds the resumable partial
        downloads of one that was killed and reclaims what it left
        (``mirror.fetch.spool.reclaim_spool``, under the destination's lock)."""
        return self._spool

    async def flush(self) -> None:
        """Nothing to do: every write is durable when it returns."""

    async def aclose(self) -> None:
        """Close the client's connection pool (if this store made it). Idempotent.

        The spool directory stays: it is this destination's (see ``spool_dir``), and
        the run holding the destination's lock reclaims it."""
        if self._closed:
            return
        self._closed = True
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            await trio.to_thread.run_sync(client.close, limiter=self._limiter)

    def __repr__(self) -> str:
        return f"S3Store({self.url!r})"
