"""``ReadOnlyStore``: a store that can only be read, for audits.

``tuf-mirror verify`` opens the destination through it, so an audit needs read
access only (a read-only mount, S3 credentials without ``s3:PutObject``) and cannot
write by mistake: every write method raises ``RuntimeError`` (a caller bug, not a
storage condition). ``spool_dir`` is refused too: a local store creates
``DEST/.tuf-mirror/spool`` on demand.

What it does not do: check permissions or translate errors; reads go to the wrapped
store unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from mirror.storage.base import ObjectInfo, PutOptions, Store

__all__ = ["ReadOnlyStore"]


class ReadOnlyStore:
    """``inner`` for reading; every write is a ``RuntimeError``."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.url = inner.url

    def __repr__(self) -> str:
        return f"ReadOnlyStore({self.inner!r})"

    async def head(self, key: str) -> ObjectInfo | None:
        return await self.inner.head(key)

    async def get(self, key: str, *, max_length: int) -> bytes:
        return await self.inner.get(key, max_length=max_length)

    def iter_chunks(self, key: str, *, chunk_size: int = 1 << 16) -> AsyncIterator[bytes]:
        return self.inner.iter_chunks(key, chunk_size=chunk_size)

    def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        return self.inner.list(prefix)

    async def put_bytes(self, key: str, data: bytes, options: PutOptions) -> None:
        raise self._refused("put", key)

    async def put_file(self, key: str, path: Path, options: PutOptions) -> None:
        raise self._refused("put", key)

    async def create_exclusive(self, key: str, data: bytes) -> bool:
        raise self._refused("create", key)

    async def delete(self, key: str) -> None:
        raise self._refused("delete", key)

    async def delete_many(self, keys: Sequence[str]) -> None:
        raise self._refused("delete", ", ".join(keys))

    def spool_dir(self) -> Path:
        raise self._refused("spool in", ".tuf-mirror/spool")

    async def flush(self) -> None:
        """Nothing was written."""

    async def aclose(self) -> None:
        await self.inner.aclose()

    def _refused(self, action: str, key: str) -> RuntimeError:
        return RuntimeError(f"read-only store {self.url}: refused to {action} {key}")
