"""Read-only ``Store`` views the air-gap commands hand to the sync engine.

* ``BaseView`` — the far side's published state as the exporter knows it: the
  ``timestamp.json`` bytes from a receipt (or the exporter's record of its last
  export), every other metadata file from the export state directory's copies or,
  failing that, from the upstream (which keeps old versioned files with consistent
  snapshots). The engine reads it as the export's ``base`` and re-verifies all of it
  from the pinned root, so a wrong receipt or copy is detected, not trusted.
* ``OverlayView`` — a store seen through another (the export's new files over the
  base), to re-load and describe the state a bundle brings.
* ``RecordingStore`` — a destination that notes the keys the engine looked at, so
  an import can tell the bundle files that verified metadata referenced.

``BaseView`` and ``OverlayView`` are read-only (``ReadOnlyBase``): a write is a
caller bug (``RuntimeError``). ``RecordingStore`` is a ``DelegatingStore``: every
method it does not record reaches the wrapped store.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

from mirror.airgap.state import StateRecord, sha256_hex
from mirror.errors import BaseUnavailableError, NotFoundError
from mirror.fetch import Fetcher
from mirror.layout import STATE_KEY
from mirror.storage import NotFoundInStoreError, ObjectInfo, PutOptions, Store
from mirror.storage.delegating import DelegatingStore
from mirror.storage.readonly import ReadOnlyBase
from mirror.trust import metadata_filename

_ROOT_RE: Final = re.compile(r"^metadata/(\d+)\.root\.json$")


class BaseView(ReadOnlyBase):
    """The far side's state (``record``; ``None``: an empty mirror, for ``--full``).

    Keys answered: ``metadata/timestamp.json`` (the record's bytes),
    ``metadata/N.root.json`` up to the record's root version, every other metadata
    file from ``cache`` or the upstream, and the walk hints (``hints``: the
    engine's ``.tuf-mirror/state.json`` of the export that brought this state).
    Targets are never "present": a target the diff names goes into the bundle.
    A metadata file of the base found nowhere is ``BaseUnavailableError``.

    Without hints for the base's snapshot, the view still answers the hints file,
    with no walk hints but the far side's target selection (``selection``: the whole
    repository; air-gap bundles are never partial), so the engine diffs the new
    state against the base instead of treating it as a mirror of unknown selection.
    """

    def __init__(
        self,
        record: StateRecord | None,
        *,
        fetcher: Fetcher,
        cache: Store | None = None,
        hints: bytes | None = None,
        selection: str | None = None,
        source: str = "the base state",
    ) -> None:
        self.record = record
        self.fetcher = fetcher
        self.cache = cache
        self.hints = hints
        self.selection = selection
        self.source = source
        self.url = f"base view ({source})"

    def _snapshot_names(self) -> set[str]:
        if self.record is None:
            return set()
        version = self.record.state.snapshot_version
        return {
            f"metadata/{metadata_filename('snapshot', version)}",
            f"metadata/{metadata_filename('snapshot', None)}",
        }

    async def get(self, key: str, *, max_length: int) -> bytes:
        record = self.record
        if record is None:
            raise NotFoundInStoreError(f"{key!r} is not in an empty base")
        if key == "metadata/timestamp.json":
            return record.timestamp
        if key == STATE_KEY:
            return self._hints(record)
        if not key.startswith("metadata/"):
            raise NotFoundInStoreError(f"{key!r} is not part of {self.url}")
        root = _ROOT_RE.match(key)
        if root is not None and int(root.group(1)) > record.state.root_version:
            raise NotFoundInStoreError(f"{key!r} is newer than {self.url}")
        if key == "metadata/root.json":
            raise NotFoundInStoreError(f"{key!r} is not used from {self.url}")
        expected = record.state.snapshot_sha256 if key in self._snapshot_names() else None
        for data in (await self._cached(key, max_length), await self._upstream(key, max_length)):
            if data is not None and (expected is None or sha256_hex(data) == expected):
                return data
        raise BaseUnavailableError(
            f"cannot rebuild {self.source}: {key} is neither in the export state directory "
            f"nor at the upstream (garbage-collected?); export with --full, or --since a "
            f"receipt of a newer state"
        )

    def _hints(self, record: StateRecord) -> bytes:
        version = record.state.snapshot_version
        state = self._recorded_hints(version)
        if state is None:
            if self.selection is None:
                raise NotFoundInStoreError(f"no walk hints for {self.url}")
            state = {"snapshot_version": version, "versions": {}, "leaves": []}
        # The etag is the exporter's, not the far side's: never a "not modified".
        state.pop("timestamp_etag", None)
        if self.selection is not None:
            state.setdefault("filter", self.selection)
        return json.dumps(state).encode()

    def _recorded_hints(self, snapshot_version: int) -> dict[str, Any] | None:
        if self.hints is None:
            return None
        try:
            state = json.loads(self.hints)
        except ValueError:
            return None
        if not isinstance(state, dict) or state.get("snapshot_version") != snapshot_version:
            return None
        return state

    async def _cached(self, key: str, max_length: int) -> bytes | None:
        if self.cache is None:
            return None
        try:
            return await self.cache.get(key, max_length=max_length)
        except NotFoundInStoreError:
            return None

    async def _upstream(self, key: str, max_length: int) -> bytes | None:
        try:
            got = await self.fetcher.fetch_bytes(
                "metadata", key.removeprefix("metadata/"), max_length=max_length
            )
        except NotFoundError:
            return None
        return None if got is None else got.data

    async def head(self, key: str) -> ObjectInfo | None:
        if not key.startswith("metadata/") or self.record is None:
            return None
        try:
            data = await self.get(key, max_length=64 * 1024**2)
        except NotFoundInStoreError:
            return None
        return ObjectInfo(key=key, size=len(data))

    async def iter_chunks(self, key: str, *, chunk_size: int = 1 << 16) -> AsyncIterator[bytes]:
        data = await self.get(key, max_length=64 * 1024**2)
        for start in range(0, len(data), chunk_size):
            yield data[start : start + chunk_size]

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        """A base view cannot enumerate the far side: it lists nothing."""
        nothing: tuple[ObjectInfo, ...] = ()
        for info in nothing:
            yield info

    async def aclose(self) -> None:
        """Nothing to release: the fetcher and the cache belong to the caller."""


class OverlayView(ReadOnlyBase):
    """``top`` seen over ``bottom``: a key in ``top`` hides the same key below."""

    def __init__(self, top: Store, bottom: Store) -> None:
        self.top = top
        self.bottom = bottom
        self.url = f"{top.url} over {bottom.url}"

    async def get(self, key: str, *, max_length: int) -> bytes:
        try:
            return await self.top.get(key, max_length=max_length)
        except NotFoundInStoreError:
            return await self.bottom.get(key, max_length=max_length)

    async def head(self, key: str) -> ObjectInfo | None:
        return await self.top.head(key) or await self.bottom.head(key)

    async def iter_chunks(self, key: str, *, chunk_size: int = 1 << 16) -> AsyncIterator[bytes]:
        store = self.top if await self.top.head(key) is not None else self.bottom
        async for chunk in store.iter_chunks(key, chunk_size=chunk_size):
            yield chunk

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        seen: set[str] = set()
        async for info in self.top.list(prefix):
            seen.add(info.key)
            yield info
        async for info in self.bottom.list(prefix):
            if info.key not in seen:
                yield info

    async def aclose(self) -> None:
        """Nothing to release: both stores belong to the caller."""


class RecordingStore(DelegatingStore):
    """A store that remembers every key read, probed or written through it."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.touched: set[str] = set()

    async def head(self, key: str) -> ObjectInfo | None:
        self.touched.add(key)
        return await self.inner.head(key)

    async def get(self, key: str, *, max_length: int) -> bytes:
        self.touched.add(key)
        return await self.inner.get(key, max_length=max_length)

    def iter_chunks(self, key: str, *, chunk_size: int = 1 << 16) -> AsyncIterator[bytes]:
        self.touched.add(key)
        return self.inner.iter_chunks(key, chunk_size=chunk_size)

    async def put_bytes(self, key: str, data: bytes, options: PutOptions) -> None:
        self.touched.add(key)
        await self.inner.put_bytes(key, data, options)

    async def put_file(self, key: str, path: Path, options: PutOptions) -> None:
        self.touched.add(key)
        await self.inner.put_file(key, path, options)


__all__ = ["BaseView", "OverlayView", "RecordingStore"]
