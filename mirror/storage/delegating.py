"""``DelegatingStore``: a ``Store`` that forwards every method to the store it wraps.

A wrapper (a cache in front of a store, a key prefix, a recorder, a read-only
view, a fault injector in a test) subclasses it and overrides only the methods it
changes; everything else reaches ``inner`` unchanged. Every ``Store`` method is
written out here, typed, with no ``__getattr__``: a method added to ``Store``
later must be added here too, and ``tests/storage/test_delegating.py`` fails
until it is, so no wrapper silently misses it.

What it does not do: validate keys or translate errors (the wrapped store does),
or change any answer. ``aclose`` closes the wrapped store: a wrapper that only
borrows its store (``PrefixedStore``) overrides it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from mirror.storage.base import ObjectInfo, PutOptions, Store

__all__ = ["DelegatingStore"]


class DelegatingStore:
    """``inner``, method for method; subclasses override what they change."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.url = inner.url

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"

    async def head(self, key: str) -> ObjectInfo | None:
        return await self.inner.head(key)

    async def get(self, key: str, *, max_length: int) -> bytes:
        return await self.inner.get(key, max_length=max_length)

    def iter_chunks(self, key: str, *, chunk_size: int = 1 << 16) -> AsyncIterator[bytes]:
        return self.inner.iter_chunks(key, chunk_size=chunk_size)

    async def put_bytes(self, key: str, data: bytes, options: PutOptions) -> None:
        await self.inner.put_bytes(key, data, options)

    async def put_file(self, key: str, path: Path, options: PutOptions) -> None:
        await self.inner.put_file(key, path, options)

    async def create_exclusive(self, key: str, data: bytes) -> bool:
        return await self.inner.create_exclusive(key, data)

    def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        return self.inner.list(prefix)

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    async def delete_many(self, keys: Sequence[str]) -> None:
        await self.inner.delete_many(keys)

    def spool_dir(self) -> Path:
        return self.inner.spool_dir()

    async def flush(self) -> None:
        await self.inner.flush()

    async def aclose(self) -> None:
        await self.inner.aclose()
