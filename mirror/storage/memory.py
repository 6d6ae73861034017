"""``MemoryStore``: a dict-backed ``Store`` for fast tests, with the same semantics.

Keys are validated like every backend's; ``put`` replaces atomically (a dict
assignment); ``list`` hides ``.tuf-mirror/`` keys. For tests of the code above the
store it also records the order of writes (``writes``) and lets a test inject a
failure before any write (``before_write``), e.g. to simulate a full disk in the
middle of a publish.

What it does not do: persist anything, or bound memory. The spool directory is a
temporary directory created on first use and removed by ``aclose``.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import trio

from mirror.errors import StorageError
from mirror.storage.base import (
    DELETE_BATCH,
    NotFoundInStoreError,
    ObjectInfo,
    PutOptions,
    is_internal_key,
    validate_key,
    validate_prefix,
)

__all__ = ["MemoryStore", "StoredObject"]


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One object of a ``MemoryStore``: its bytes, the options it was put with, and
    its sha256 (computed once at put time)."""

    data: bytes
    options: PutOptions
    sha256: str
    #: when it was put (the wall clock)
    modified: datetime = field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def of(cls, data: bytes, options: PutOptions) -> StoredObject:
        return cls(bytes(data), options, hashlib.sha256(data).hexdigest())


class MemoryStore:
    """A ``Store`` in a dict. ``before_write(key)`` is called before every write
    (put, create, delete); raising from it makes that write fail with nothing changed."""

    def __init__(
        self,
        *,
        url: str = "memory://",
        before_write: Callable[[str], None] | None = None,
    ) -> None:
        self.url = url
        self.objects: dict[str, StoredObject] = {}
        #: keys in the order they were written (put, create_exclusive, delete)
        self.writes: list[str] = []
        self.before_write = before_write
        self._spool: Path | None = None

    def __repr__(self) -> str:
        return f"MemoryStore({len(self.objects)} objects)"

    async def head(self, key: str) -> ObjectInfo | None:
        validate_key(key)
        await trio.lowlevel.checkpoint()
        obj = self.objects.get(key)
        if obj is None:
            return None
        return ObjectInfo(key=key, size=len(obj.data), sha256=obj.sha256)

    async def get(self, key: str, *, max_length: int) -> bytes:
        obj = await self._get(key)
        if len(obj.data) > max_length:
            raise StorageError(f"{key!r} in {self.url} is larger than {max_length} bytes")
        return obj.data

    async def iter_chunks(self, key: str, *, chunk_size: int = 1 << 16) -> AsyncIterator[bytes]:
        data = (await self._get(key)).data
        for start in range(0, len(data), chunk_size):
            yield data[start : start + chunk_size]
            await trio.lowlevel.checkpoint()

    async def put_bytes(self, key: str, data: bytes, options: PutOptions) -> None:
        validate_key(key)
        await trio.lowlevel.checkpoint()
        self._write(key, StoredObject.of(data, options))

    async def put_file(self, key: str, path: Path, options: PutOptions) -> None:
        validate_key(key)
        try:
            data = await trio.Path(path).read_bytes()
        except OSError as exc:
            raise StorageError(f"cannot read the spool file {path} for {key!r}: {exc}") from exc
        self._write(key, StoredObject.of(data, options))
        await trio.Path(path).unlink()

    async def create_exclusive(self, key: str, data: bytes) -> bool:
        validate_key(key)
        await trio.lowlevel.checkpoint()
        if key in self.objects:
            return False
        self._write(key, StoredObject.of(data, PutOptions()))
        return True

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        validate_prefix(prefix)
        # Snapshot the matches first: the dict may change while the caller iterates.
        matches = [
            ObjectInfo(key=key, size=len(obj.data), sha256=obj.sha256, modified=obj.modified)
            for key, obj in self.objects.items()
            if key.startswith(prefix) and not is_internal_key(key)
        ]
        for info in matches:
            await trio.lowlevel.checkpoint()
            yield info

    async def delete(self, key: str) -> None:
        validate_key(key)
        await trio.lowlevel.checkpoint()
        if self.before_write is not None:
            self.before_write(key)
        self.writes.append(key)
        self.objects.pop(key, None)

    async def delete_many(self, keys: Sequence[str]) -> None:
        """``delete`` each key in order (``before_write`` may stop it part way)."""
        if len(keys) > DELETE_BATCH:
            raise ValueError(f"delete_many takes at most {DELETE_BATCH} keys")
        for key in keys:
            await self.delete(key)

    def spool_dir(self) -> Path:
        """A private temporary directory, created on first use (a tiny ``mkdtemp``)."""
        if self._spool is None:
            self._spool = Path(tempfile.mkdtemp(prefix="tuf-mirror-memory-spool-"))
        return self._spool

    async def flush(self) -> None:
        """Nothing to do: every write is durable when it returns."""

    async def aclose(self) -> None:
        """Remove the spool directory; the objects stay readable."""
        if self._spool is not None:
            spool, self._spool = self._spool, None
            await trio.to_thread.run_sync(shutil.rmtree, spool, True)

    async def _get(self, key: str) -> StoredObject:
        validate_key(key)
        await trio.lowlevel.checkpoint()
        obj = self.objects.get(key)
        if obj is None:
            raise NotFoundInStoreError(f"{key!r} is not in {self.url}")
        return obj

    def _write(self, key: str, obj: StoredObject) -> None:
        if self.before_write is not None:
            self.before_write(key)
        self.writes.append(key)
        self.objects[key] = obj
