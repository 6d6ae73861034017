"""``BundleFetcher``: a checked bundle as one more upstream for the sync engine.

It serves the files of a ``CheckedBundle`` by their published names, reading each
from its volume (or bundle directory) at the recorded offset, with the same contract
as the other fetchers: a hard length cap (``OversizeError``), digests computed on the
fly, ``NotFoundError`` for a file the bundle does not hold. Each read is compared
with the manifest's sha256 again, so a bundle changed after it was checked is a
``BundleError`` naming the file. Conditional requests are never answered with "not
modified": a bundle is read whole.

It records which names were asked for, so an import can report the files no
verified metadata referenced. What it does not do: decide whether bytes are
trustworthy (``mirror.trust`` via the sync engine), retries.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Final

import trio

from mirror.airgap.volumes import BundleEntry, CheckedBundle
from mirror.errors import (
    BundleError,
    LengthOrHashMismatchError,
    NotFoundError,
    OversizeError,
    StorageError,
)
from mirror.fetch.base import FetchedBytes, FetchedFile, FetchStats, Namespace
from mirror.trust import new_hasher

_CHUNK: Final = 1 << 20


class BundleFetcher:
    """Reads upstream files from a checked bundle."""

    def __init__(self, bundle: CheckedBundle, *, max_threads: int = 4) -> None:
        self.bundle = bundle
        self.stats = FetchStats()
        #: bundle paths ("metadata/3.snapshot.json") the sync engine asked for
        self.requested: set[str] = set()
        self._limiter = trio.CapacityLimiter(max_threads)

    def __repr__(self) -> str:
        return f"BundleFetcher({self.bundle.location!r})"

    def _entry(self, namespace: Namespace, name: str) -> BundleEntry:
        key = f"{namespace}/{name}"
        self.requested.add(key)
        self.stats.requests += 1
        entry = self.bundle.entries.get(key)
        if entry is None:
            raise NotFoundError(f"the bundle {self.bundle.location} holds no {key}")
        return entry

    async def fetch_bytes(
        self,
        namespace: Namespace,
        name: str,
        *,
        max_length: int,
        if_none_match: str | None = None,
        if_modified_since: str | None = None,
    ) -> FetchedBytes:
        entry = self._entry(namespace, name)
        if entry.length > max_length:
            raise OversizeError(f"{namespace}/{name}: {entry.length} bytes, more than {max_length}")
        data = await trio.to_thread.run_sync(_read_range, entry, limiter=self._limiter)
        if hashlib.sha256(data).hexdigest() != entry.sha256:
            raise BundleError(f"{entry.where}: {namespace}/{name} changed after it was checked")
        self.stats.bytes_received += len(data)
        return FetchedBytes(data=data)

    async def fetch_to_file(
        self,
        namespace: Namespace,
        name: str,
        dest: Path,
        *,
        length: int,
        algorithms: tuple[str, ...],
    ) -> FetchedFile:
        entry = self._entry(namespace, name)
        key = f"{namespace}/{name}"
        if entry.length > length:
            raise OversizeError(f"{key}: {entry.length} bytes in the bundle, more than {length}")
        try:
            hashers = {algorithm: new_hasher(algorithm) for algorithm in algorithms}
        except (KeyError, ValueError, LengthOrHashMismatchError) as exc:
            raise LengthOrHashMismatchError(f"{key}: cannot compute {algorithms}") from exc
        check = hashlib.sha256()
        try:
            source = await trio.to_thread.run_sync(_open_at, entry, limiter=self._limiter)
        except OSError as exc:
            raise BundleError(f"cannot read {key} from {entry.where}: {exc.strerror}") from exc
        try:
            sink = await trio.to_thread.run_sync(dest.open, "xb", limiter=self._limiter)
        except OSError as exc:
            os.close(source)
            raise StorageError(f"cannot write the spool file {dest}: {exc.strerror}") from exc
        complete = False
        try:
            remaining = entry.length
            while remaining > 0:
                chunk = await trio.to_thread.run_sync(
                    os.read, source, min(_CHUNK, remaining), limiter=self._limiter
                )
                if not chunk:
                    raise BundleError(f"{entry.where}: {key} is shorter than when it was checked")
                check.update(chunk)
                for hasher in hashers.values():
                    hasher.update(chunk)
                await trio.to_thread.run_sync(sink.write, chunk, limiter=self._limiter)
                remaining -= len(chunk)
                self.stats.bytes_received += len(chunk)
            if check.hexdigest() != entry.sha256:
                raise BundleError(f"{entry.where}: {key} changed after it was checked")
            if entry.length != length:
                raise LengthOrHashMismatchError(
                    f"{key}: {entry.length} bytes in the bundle, the signed length is {length}"
                )
            await trio.to_thread.run_sync(sink.flush, limiter=self._limiter)
            await trio.to_thread.run_sync(os.fsync, sink.fileno(), limiter=self._limiter)
            complete = True
        except OSError as exc:
            raise StorageError(f"cannot copy {key} to {dest}: {exc.strerror}") from exc
        finally:
            sink.close()
            os.close(source)
            if not complete:
                _discard(dest)
        return FetchedFile(
            path=dest,
            length=entry.length,
            digests={algorithm: hasher.hexdigest() for algorithm, hasher in hashers.items()},
        )

    async def aclose(self) -> None:
        """Nothing to close: every read closes its file."""


def _discard(path: Path) -> None:
    path.unlink(missing_ok=True)


def _open_at(entry: BundleEntry) -> int:
    fd = os.open(entry.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.lseek(fd, entry.offset, os.SEEK_SET)
    except OSError:
        os.close(fd)
        raise
    return fd


def _read_range(entry: BundleEntry) -> bytes:
    try:
        with entry.path.open("rb") as handle:
            handle.seek(entry.offset)
            data = handle.read(entry.length)
    except OSError as exc:
        raise BundleError(f"cannot read {entry.where}: {exc.strerror}") from exc
    if len(data) != entry.length:
        raise BundleError(f"{entry.where}: a file is shorter than when it was checked")
    return data


__all__ = ["BundleFetcher"]
