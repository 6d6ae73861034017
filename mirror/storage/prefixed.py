"""``PrefixedStore``: the part of a ``Store`` under one key prefix, as a ``Store``.

Two users: the ledger's default home ``DEST/.tuf-mirror/ledger/`` (it shares the
destination's connections and concurrency limit instead of opening a second
client), and each secondary repository of a trust policy, published under
``DEST/repositories/<name>/`` with its own bookkeeping (``.tuf-mirror/...`` keys of
the view) under ``DEST/.tuf-mirror/repositories/<name>/`` (``bookkeeping=``).

Keys are validated here and again by the wrapped store. ``head`` and ``list``
answer with the view's keys. ``aclose`` leaves the wrapped store open: it belongs
to its opener.

What it does not do: list a view whose prefix is itself bookkeeping (the wrapped
store never lists keys under ``.tuf-mirror/``; ``list`` raises ``RuntimeError``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from mirror.storage.base import (
    INTERNAL_PREFIX,
    ObjectInfo,
    PutOptions,
    Store,
    is_internal_key,
    validate_key,
    validate_prefix,
)
from mirror.storage.delegating import DelegatingStore

__all__ = ["PrefixedStore"]


class PrefixedStore(DelegatingStore):
    """Keys ``k`` of this view are ``prefix + k`` of ``inner``; with
    ``bookkeeping``, a key ``.tuf-mirror/k`` is ``bookkeeping + k`` instead."""

    def __init__(self, inner: Store, prefix: str, *, bookkeeping: str | None = None) -> None:
        super().__init__(inner)
        self.prefix = validate_prefix(prefix.rstrip("/") + "/")
        self.bookkeeping = (
            None if bookkeeping is None else validate_prefix(bookkeeping.rstrip("/") + "/")
        )
        self.url = f"{inner.url.rstrip('/')}/{self.prefix.rstrip('/')}"

    def _key(self, key: str) -> str:
        validate_key(key)
        if self.bookkeeping is not None and key.startswith(INTERNAL_PREFIX):
            return self.bookkeeping + key.removeprefix(INTERNAL_PREFIX)
        return self.prefix + key

    async def head(self, key: str) -> ObjectInfo | None:
        info = await self.inner.head(self._key(key))
        return None if info is None else dataclasses.replace(info, key=key)

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

    async def replace_tail(self, key: str, *, size: int, keep: int, data: bytes) -> bool:
        """``LocalStore.replace_tail`` of the inner store; False (nothing written)
        when it has none."""
        replace = getattr(self.inner, "replace_tail", None)
        if replace is None:
            return False
        done: bool = await replace(self._key(key), size=size, keep=keep, data=data)
        return done

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        validate_prefix(prefix)
        if is_internal_key(self.prefix):
            raise RuntimeError(f"{self.url} is the mirror's bookkeeping: it is never listed")
        start = len(self.prefix)
        async for info in self.inner.list(self.prefix + prefix):
            key = info.key[start:]
            if not is_internal_key(key):  # written without ``bookkeeping``
                yield dataclasses.replace(info, key=key)

    async def delete(self, key: str) -> None:
        await self.inner.delete(self._key(key))

    async def delete_many(self, keys: Sequence[str]) -> None:
        await self.inner.delete_many([self._key(key) for key in keys])

    async def aclose(self) -> None:
        """The wrapped store belongs to its opener."""
