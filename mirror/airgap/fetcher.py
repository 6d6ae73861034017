"""``BundleFetcher``: a checked bundle as one more upstream for the sync engine.

It serves the files of a ``CheckedBundle`` by their published names, reading each
from its volume (or bundle directory) at the recorded offset. A ``StreamFetcher``
(``mirror.fetch.template``), with the same contract as the other fetchers: a hard
length cap (``OversizeError``), digests computed on the fly, ``NotFoundError`` for a
file the bundle does not hold, ``UnsafeNameError`` for a name that could escape.
Each read is compared with the manifest's sha256 again, so a bundle changed after
it was checked is a ``BundleError`` naming the file. Conditional requests are never
answered with "not modified": a bundle is read whole.

It records which names were asked for, so an import can report the files no
verified metadata referenced. What it does not do: decide whether bytes are
trustworthy (``mirror.trust`` via the sync engine), retries.
"""

from __future__ import annotations

import hashlib
import os
from typing import Final, TypeVar

import trio

from mirror.airgap.volumes import BundleEntry, CheckedBundle
from mirror.errors import BundleError, NotFoundError
from mirror.fetch.base import Namespace
from mirror.fetch.template import Reader, Request, Stream, StreamFetcher

_CHUNK: Final = 1 << 20
_T = TypeVar("_T")


class BundleFetcher(StreamFetcher):
    """Reads upstream files from a checked bundle. The length cap, spooling,
    hashing and counters are the template's (``mirror.fetch.template``); this class
    finds a file's bytes in the bundle and checks them against the manifest."""

    declared_as = "length in the bundle"

    def __init__(self, bundle: CheckedBundle, *, max_threads: int = 4) -> None:
        limiter = trio.CapacityLimiter(max_threads)
        super().__init__(spool_limiter=limiter)
        self.bundle = bundle
        #: bundle paths ("metadata/3.snapshot.json") the sync engine asked for
        self.requested: set[str] = set()
        self._limiter = limiter

    def __repr__(self) -> str:
        return f"BundleFetcher({self.bundle.location!r})"

    def locate(self, namespace: Namespace, name: str, segments: list[str]) -> str:
        """The bundle path of ``name`` ("targets/a/b.txt")."""
        return f"{namespace}/{name}"

    async def _transfer(self, request: Request, read: Reader[_T]) -> _T:
        """Into memory: one thread hop reads the entry's bytes, checked against the
        manifest's sha256. Into a file: chunks read in worker threads, the sha256
        checked when the last one has been read (``BundleError`` for a bundle
        changed after it was checked)."""
        key = request.location
        self.requested.add(key)
        entry = self.bundle.entries.get(key)
        if entry is None:
            raise NotFoundError(f"the bundle {self.bundle.location} holds no {key}")
        if request.spooler is None:
            if entry.length > request.limit:  # refused before reading, as declared
                return await read(request, Stream(data=b"", length=entry.length))
            data = await trio.to_thread.run_sync(_read_range, entry, key, limiter=self._limiter)
            if hashlib.sha256(data).hexdigest() != entry.sha256:
                raise BundleError(f"{entry.where}: {key} changed after it was checked")
            return await read(request, Stream(data=data, length=entry.length))
        if entry.length > request.limit:  # refused before opening the volume
            return await read(request, Stream(data=b"", length=entry.length))
        try:
            source = await trio.to_thread.run_sync(_open_at, entry, limiter=self._limiter)
        except OSError as exc:
            raise BundleError(f"cannot read {key} from {entry.where}: {exc.strerror}") from exc
        try:
            chunks = _Chunks(key, entry, source, self._limiter)
            return await read(request, Stream(chunks=chunks, length=entry.length))
        finally:
            os.close(source)


class _Chunks:
    """The bytes of one bundle entry, chunk by chunk from an open volume, each read
    in a worker thread; after the last one, ``BundleError`` unless they match the
    manifest's sha256 (a class, not a generator: nothing to finalize when the
    reader stops early)."""

    __slots__ = ("_check", "_entry", "_key", "_limiter", "_remaining", "_source")

    def __init__(
        self, key: str, entry: BundleEntry, source: int, limiter: trio.CapacityLimiter
    ) -> None:
        self._key = key
        self._entry = entry
        self._source = source
        self._limiter = limiter
        self._remaining = entry.length
        self._check = hashlib.sha256()

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> bytes:
        entry = self._entry
        if self._remaining <= 0:
            if self._check.hexdigest() != entry.sha256:
                raise BundleError(f"{entry.where}: {self._key} changed after it was checked")
            raise StopAsyncIteration
        try:
            chunk = await trio.to_thread.run_sync(
                os.read, self._source, min(_CHUNK, self._remaining), limiter=self._limiter
            )
        except OSError as exc:
            raise BundleError(
                f"cannot read {self._key} from {entry.where}: {exc.strerror}"
            ) from exc
        if not chunk:
            raise BundleError(f"{entry.where}: {self._key} is shorter than when it was checked")
        self._check.update(chunk)
        self._remaining -= len(chunk)
        return chunk


def _open_at(entry: BundleEntry) -> int:
    fd = os.open(entry.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.lseek(fd, entry.offset, os.SEEK_SET)
    except OSError:
        os.close(fd)
        raise
    return fd


def _read_range(entry: BundleEntry, key: str) -> bytes:
    try:
        with entry.path.open("rb") as handle:
            handle.seek(entry.offset)
            data = handle.read(entry.length)
    except OSError as exc:
        raise BundleError(f"cannot read {key} from {entry.where}: {exc.strerror}") from exc
    if len(data) != entry.length:
        raise BundleError(f"{entry.where}: {key} is shorter than when it was checked")
    return data


__all__ = ["BundleFetcher"]
