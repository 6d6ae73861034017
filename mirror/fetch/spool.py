"""Writing one download to a spool file: a hard length cap, digests computed on the
fly, ``fsync`` before the file is handed over, removal of partial files.

Shared by every fetcher. Writes and hashing run in worker threads in batches of
about 1 MiB, so the event loop never blocks on the disk and a cancelled download
stops between batches. What it does not do: compare digests with expected values
(the caller does) or decide where spool files live (the store's ``spool_dir``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import trio

from mirror.errors import LengthOrHashMismatchError, OversizeError, StorageError
from mirror.fetch.base import FetchedFile

__all__ = ["SUPPORTED_ALGORITHMS", "Hasher", "SpoolFile", "check_algorithms", "new_hasher"]

_BATCH = 1 << 20


class Hasher(Protocol):
    """The part of hashlib's hash objects a download uses."""

    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


def _blake2b_256() -> Hasher:
    return hashlib.blake2b(digest_size=32)


#: TUF hash algorithm names (as they appear in metadata) -> hasher factories.
SUPPORTED_ALGORITHMS: dict[str, Callable[[], Hasher]] = {
    "sha224": hashlib.sha224,
    "sha256": hashlib.sha256,
    "sha384": hashlib.sha384,
    "sha512": hashlib.sha512,
    "sha3_256": hashlib.sha3_256,
    "sha3_384": hashlib.sha3_384,
    "sha3_512": hashlib.sha3_512,
    "blake2b": hashlib.blake2b,
    "blake2b-256": _blake2b_256,
    "blake2s": hashlib.blake2s,
}


def check_algorithms(algorithms: tuple[str, ...], *, name: str) -> None:
    """Raise ``LengthOrHashMismatchError`` if an algorithm is not supported: bytes
    whose listed hash cannot be computed cannot be verified."""
    unknown = [a for a in algorithms if a not in SUPPORTED_ALGORITHMS]
    if unknown:
        raise LengthOrHashMismatchError(
            f"{name}: cannot verify hash algorithm(s) {', '.join(map(repr, unknown))}; "
            f"supported: {', '.join(SUPPORTED_ALGORITHMS)}"
        )


def new_hasher(algorithm: str) -> Hasher:
    """A fresh hasher for the TUF algorithm name (``KeyError`` if unsupported)."""
    return SUPPORTED_ALGORITHMS[algorithm]()


class SpoolFile:
    """One download being written to ``dest`` (created exclusively).

    ``write`` refuses (``OversizeError``) a chunk that would go past ``length``
    without writing it; ``finish`` checks the total (``LengthOrHashMismatchError``
    when short), ``fsync``s, closes and returns the ``FetchedFile``; ``discard``
    removes the partial file. Use ``async with SpoolFile.create(...)``: leaving the
    block without ``finish`` discards the file. Disk errors are ``StorageError``.
    """

    def __init__(
        self,
        dest: Path,
        fd: int,
        *,
        length: int,
        algorithms: tuple[str, ...],
        name: str,
        limiter: trio.CapacityLimiter | None,
    ) -> None:
        self.dest = dest
        self.received = 0
        self._fd: int | None = fd
        self._length = length
        self._name = name
        self._limiter = limiter
        self._hashers = {algorithm: new_hasher(algorithm) for algorithm in algorithms}
        self._buffer = bytearray()
        self._finished = False

    @classmethod
    async def create(
        cls,
        dest: Path,
        *,
        length: int,
        algorithms: tuple[str, ...],
        name: str,
        limiter: trio.CapacityLimiter | None = None,
    ) -> SpoolFile:
        """Create ``dest`` (it must not exist) for a download of exactly ``length``
        bytes named ``name`` (used in messages)."""
        check_algorithms(algorithms, name=name)
        if length < 0:
            raise ValueError("length must be >= 0")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            fd = await trio.to_thread.run_sync(os.open, dest, flags, 0o666, limiter=limiter)
        except OSError as exc:
            raise StorageError(f"cannot create the spool file {dest} for {name}: {exc}") from exc
        return cls(dest, fd, length=length, algorithms=algorithms, name=name, limiter=limiter)

    async def __aenter__(self) -> SpoolFile:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if not self._finished:
            await self.discard()

    async def write(self, chunk: bytes) -> None:
        """Append ``chunk``; ``OversizeError`` (nothing written) past ``length``."""
        if self.received + len(chunk) > self._length:
            raise OversizeError(
                f"{self._name}: more than the expected {self._length} bytes "
                f"(got at least {self.received + len(chunk)})"
            )
        self.received += len(chunk)
        self._buffer += chunk
        if len(self._buffer) >= _BATCH:
            await self._flush()

    async def finish(self) -> FetchedFile:
        """Check the length, make the file durable, close it; return what was written."""
        if self.received != self._length:
            raise LengthOrHashMismatchError(
                f"{self._name}: {self.received} bytes, expected {self._length}"
            )
        await self._flush()
        fd = self._fd
        assert fd is not None, "finish after discard"
        try:
            await trio.to_thread.run_sync(os.fsync, fd, limiter=self._limiter)
        except OSError as exc:
            raise StorageError(f"cannot sync the spool file {self.dest}: {exc}") from exc
        await self._close()
        self._finished = True
        digests = {algorithm: h.hexdigest() for algorithm, h in self._hashers.items()}
        return FetchedFile(path=self.dest, length=self.received, digests=digests)

    async def discard(self) -> None:
        """Close and delete the partial file (shielded: runs even when cancelled)."""
        with trio.CancelScope(shield=True):
            await self._close()
            await trio.to_thread.run_sync(_unlink_quietly, self.dest, limiter=self._limiter)

    async def _flush(self) -> None:
        if not self._buffer:
            return
        data, self._buffer = bytes(self._buffer), bytearray()
        fd = self._fd
        assert fd is not None, "write after discard"
        try:
            await trio.to_thread.run_sync(self._write_and_hash, fd, data, limiter=self._limiter)
        except OSError as exc:
            raise StorageError(f"cannot write the spool file {self.dest}: {exc}") from exc

    def _write_and_hash(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        for hasher in self._hashers.values():
            hasher.update(data)

    async def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                await trio.to_thread.run_sync(os.close, fd, limiter=self._limiter)


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
