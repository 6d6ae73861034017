"""The object-store shaped interface every destination implements.

A ``Store`` knows keys (``metadata/1.root.json``, ``targets/ab/<hash>.x``), not
paths: keys are ``/``-separated, relative, already validated by ``mirror.trust``
(no ``..``, no empty segments, no backslash, no NUL). Every backend makes ``put``
atomic: a reader sees the old object or the new one, never a partial one.

What it does not do: verification, ordering, retries of verification failures.
``sync.py`` decides what to write and when; a store only writes what it is given.
Backends translate their library's exceptions to ``StorageError`` /
``StorageConfigError`` (``mirror.errors``) and raise ``KeyError``-free APIs:
a missing key is ``None`` from ``head`` and ``NotFoundInStoreError`` from ``get``.

Every backend validates keys again with ``validate_key`` (defence in depth) and
raises ``UnsafeNameError`` for a key that could escape. Keys under
``INTERNAL_PREFIX`` (``.tuf-mirror/``: the lock, spool files) are the tool's own
bookkeeping: they can be written, read and deleted like any other key, but
``list`` never yields them, so a listing shows only published content.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from mirror.errors import StorageError, UnsafeNameError

#: Keys starting with this prefix are the mirror's own bookkeeping (lock, spool).
INTERNAL_PREFIX = ".tuf-mirror/"
#: ``Store.delete_many`` takes at most this many keys (S3 DeleteObjects' limit)
DELETE_BATCH = 1000


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative ``/``-separated key, else raise
    ``UnsafeNameError``: no empty key or segment (so no leading, trailing or
    doubled ``/``), no ``.`` or ``..`` segment, no backslash, no NUL."""
    _check_key_text(key, what="key")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise UnsafeNameError(f"unsafe storage key {key!r}: empty, '.' or '..' segment")
    return key


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if it can start a safe key (``""``, ``"metadata/"``,
    ``"targets/ab"``), else raise ``UnsafeNameError``. Like ``validate_key`` but
    the empty prefix and a trailing ``/`` are allowed."""
    if prefix == "":
        return prefix
    _check_key_text(prefix, what="prefix")
    segments = prefix.split("/")
    if segments[-1] == "":
        segments.pop()
    for segment in segments:
        if segment in ("", ".", ".."):
            raise UnsafeNameError(f"unsafe storage prefix {prefix!r}: empty, '.' or '..' segment")
    return prefix


def is_internal_key(key: str) -> bool:
    """True for the mirror's own bookkeeping keys, which ``list`` never yields."""
    return key.startswith(INTERNAL_PREFIX)


def _check_key_text(text: str, *, what: str) -> None:
    if not text:
        raise UnsafeNameError(f"unsafe storage {what}: empty")
    if "\\" in text or "\0" in text:
        raise UnsafeNameError(f"unsafe storage {what} {text!r}: backslash or NUL")
    if text.startswith("/"):
        raise UnsafeNameError(f"unsafe storage {what} {text!r}: absolute")


class NotFoundInStoreError(StorageError):
    """The key does not exist in the store."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a store knows about one object without reading it."""

    key: str
    size: int
    #: hex sha256 of the content when the backend knows it cheaply (S3 checksum), else None
    sha256: str | None = None
    #: (from ``list``) no earlier than the object's last write: a local file's mtime,
    #: S3's LastModified plus the second it is truncated to; None when unknown
    modified: datetime | None = None


@dataclass(frozen=True, slots=True)
class PutOptions:
    """Per-object publishing hints; backends ignore what they cannot express."""

    content_type: str = "application/octet-stream"
    #: e.g. "public, max-age=31536000, immutable" for versioned files
    cache_control: str | None = None
    #: hex sha256 of the content, sent so the backend can check the upload end to end
    sha256: str | None = None
    #: False: the write must be atomic but may become durable only at the next
    #: ``Store.flush`` (many small targets, then one flush before any metadata)
    durable: bool = True


class Store(Protocol):
    """An object store: head, get, put, list, delete; atomic put."""

    #: human-readable location ("/srv/mirror", "s3://bucket/prefix")
    url: str

    async def head(self, key: str) -> ObjectInfo | None:
        """Return the object's info, or None when the key is absent."""
        ...

    async def get(self, key: str, *, max_length: int) -> bytes:
        """Return the whole object; raise NotFoundInStoreError if absent and
        StorageError if it is larger than max_length."""
        ...

    def iter_chunks(self, key: str, *, chunk_size: int = 1 << 16) -> AsyncIterator[bytes]:
        """Stream an object's bytes (for hashing large targets without loading them).

        An absent key raises NotFoundInStoreError from the first iteration."""
        ...

    async def put_bytes(self, key: str, data: bytes, options: PutOptions) -> None:
        """Atomically create or replace ``key`` with ``data``."""
        ...

    async def put_file(self, key: str, path: Path, options: PutOptions) -> None:
        """Atomically publish the spool file ``path`` (from ``spool_dir``) as ``key``.

        The file is consumed on success: local backends rename it into place,
        remote backends upload it and delete it. On failure it may remain; the
        caller owns cleaning its spool.
        """
        ...

    async def create_exclusive(self, key: str, data: bytes) -> bool:
        """Create ``key`` only if it does not exist; return False if it did.

        Local: O_CREAT|O_EXCL. S3: PutObject with If-None-Match: *.
        """
        ...

    def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (a plain string prefix, not
        only a directory), in no particular order; never keys under
        ``INTERNAL_PREFIX`` nor in-flight temporary objects."""
        ...

    async def delete(self, key: str) -> None:
        """Delete ``key``; deleting an absent key is not an error."""
        ...

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Delete up to ``DELETE_BATCH`` keys (S3: one DeleteObjects request); absent
        keys are not an error. Raises ``StorageError`` if any key could not be
        deleted (the others may be gone)."""
        ...

    def spool_dir(self) -> Path:
        """A directory for download spool files; for local stores on the same
        filesystem as the destination, so that ``put_file`` is a rename."""
        ...

    async def flush(self) -> None:
        """Make every write so far durable (after ``durable=False`` puts)."""
        ...

    async def aclose(self) -> None:
        """Release connections and thread pools."""
        ...
