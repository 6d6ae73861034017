"""``PrefixedStore``: the part of a ``Store`` under one key prefix, as a ``Store``.

The ledger's default home is ``DEST/.tuf-mirror/ledger/``: through this view it
shares the destination's connections and concurrency limit (``--uploads``) instead
of opening a second client. Keys are validated by the wrapped store. ``aclose``
leaves the wrapped store open (its owner closes it).

What it does not do: ``list`` (the wrapped stores never list the mirror's
bookkeeping under ``.tuf-mirror/``); the ledger never needs it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from mirror.storage import ObjectInfo, PutOptions, Store

__all__ = ["PrefixedStore"]


class PrefixedStore:
    """Keys ``k`` of this view are ``prefix + k`` of ``inner``."""

    def __init__(self, inner: Store, prefix: str) -> None:
        self.inner = inner
        self.prefix = prefix.rstrip("/") + "/"
        self.url = f"{inner.url.rstrip('/')}/{self.prefix.rstrip('/')}"

    def _key(self, key: str) -> str:
        return self.prefix + key

    async def head(self, key: str) -> ObjectInfo | None:
        info = await self.inner.head(self._key(key))
        return None if info is None else ObjectInfo(key, info.size, info.sha256)

    async def get(self, key: str, *, max_length: int) -> bytes:
        return await self.inner.get(self._key(key), max_length=max_length)

    def iter_chunks(self, key: str, *, chunk_size: int = 1 << 16) -> AsyncIterator[bytes]:
        return self.inner.iter_chunks(self._key(key), chunk_size=chunk_size)

    async def put_bytes(self, key: str, data: bytes, options: PutOptions) -> None:
        await self.inner.put_bytes(self._key(key), data, options)

    async def put_file(self, key: str, path: Path, options: PutOptions) -> None:
        await self.inner.put_file(self._key(key), path, options)

    async def create_exclusive(self, key: str, data: bytes) -> bool:
        return await self.inner.create_exclusive(self._key(key), data)

    def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        raise RuntimeError("PrefixedStore does not list")

    async def delete(self, key: str) -> None:
        await self.inner.delete(self._key(key))

    async def delete_many(self, keys: Sequence[str]) -> None:
        await self.inner.delete_many([self._key(key) for key in keys])

    def spool_dir(self) -> Path:
        return self.inner.spool_dir()

    async def flush(self) -> None:
        await self.inner.flush()

    async def aclose(self) -> None:
        """The wrapped store belongs to its opener."""
