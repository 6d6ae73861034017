"""Writing one download to a spool file: a hard length cap, digests computed on the
fly, ``fsync`` before the file is handed over, removal of partial files, and
partial files that a later attempt or run can resume.

Shared by every fetcher. Writes and hashing run in worker threads in batches of
about 1 MiB, so the event loop never blocks on the disk and a cancelled download
stops between batches.

A spool file can be taken up again (``restart`` from zero, or carry on appending
after the bytes it holds: the fetcher asks the server for the rest with an HTTP
Range request), and digests always cover the whole file. A *resumable* spool file
(``SpoolFile.open_partial``) lives under a deterministic name (``partial_name``)
beside a small sidecar, ``<partial>.partial.json``, which records the download's
source URL, its expected length, the validators (ETag, Last-Modified) of the
response the bytes came from, and how many bytes are durable (``fsync``ed before
the sidecar was written). Checkpoints happen every ``CHECKPOINT_BYTES`` and when a
download is given up (``keep``); so a run killed at any instant leaves either no
sidecar or one that vouches only for bytes on disk, and a later open re-hashes
exactly those bytes and drops the rest. A ``restart`` removes the sidecar before it
truncates. An ``flock`` on the partial file keeps two downloads (threads or
processes) from sharing it.

What it does not do: compare digests with expected values (the caller does), talk
HTTP (the fetcher decides whether the server's answer continues the bytes held),
decide where spool files live (the store's ``spool_dir``), or remove partial files
that no later run will want (``remove_partials``, for the engine to call).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import trio

from mirror.errors import LengthOrHashMismatchError, OversizeError, StorageError
from mirror.fetch.base import FetchedFile, Namespace
from mirror.storage import atomic

__all__ = [
    "CHECKPOINT_BYTES",
    "SIDECAR_SUFFIX",
    "SUPPORTED_ALGORITHMS",
    "Hasher",
    "SpoolFile",
    "check_algorithms",
    "new_hasher",
    "partial_name",
    "reclaim_spool",
    "remove_partials",
    "write_spool_file",
]

_BATCH = 1 << 20
_HASH_BATCH = 4 << 20
#: a resumable download records a checkpoint (fsync + sidecar) after this many bytes
CHECKPOINT_BYTES = 8 << 20
SIDECAR_SUFFIX = ".partial.json"
_PARTIAL_PREFIX = "partial-"
#: how long giving up a download may spend saving its checkpoint (shielded)
_KEEP_TIMEOUT = 10.0


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


def partial_name(namespace: Namespace, name: str, length: int) -> str:
    """The file name of the resumable partial download of ``name`` (``length``
    bytes): the same in every run, different for another file or length."""
    key = hashlib.sha256(f"{namespace}\0{name}\0{length}".encode()).hexdigest()
    return f"{_PARTIAL_PREFIX}{key}"


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


class SpoolFile:
    """One download being written to ``path``; ``dest`` is where ``finish`` leaves
    the complete file (``path`` itself, or another name on the same filesystem).

    ``write`` refuses (``OversizeError``) a chunk that would go past ``length``
    without writing it; ``finish`` checks the total (``LengthOrHashMismatchError``
    when short), ``fsync``s, closes and returns the ``FetchedFile``; ``discard``
    removes the partial file; ``restart`` empties it; ``keep`` (resumable files only)
    checkpoints and closes it for a later ``open_partial``. Use ``async with``:
    leaving the block without ``finish`` or ``keep`` discards the file. Disk errors
    are ``StorageError``.

    ``received`` counts the bytes held (written or buffered); ``etag`` and
    ``last_modified`` are the validators of the response they came from (set by the
    fetcher, restored by ``open_partial``); ``resumed_from`` is where the fetcher
    last continued the file with a Range request.
    """

    def __init__(
        self,
        path: Path,
        fd: int,
        *,
        length: int,
        algorithms: tuple[str, ...],
        name: str,
        limiter: trio.CapacityLimiter | None,
        dest: Path | None = None,
        source: str | None = None,
    ) -> None:
        self.path = path
        self.dest = dest if dest is not None else path
        self.received = 0
        self.resumed_from = 0
        self.etag: str | None = None
        self.last_modified: str | None = None
        self._fd: int | None = fd
        self._length = length
        self._name = name
        self._limiter = limiter
        self._algorithms = algorithms
        self._hashers = {algorithm: new_hasher(algorithm) for algorithm in algorithms}
        self._buffer = bytearray()
        self._finished = False
        #: the source URL of a resumable file (None: not resumable)
        self._source = source
        self._checkpointed = 0

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

    @classmethod
    async def open_partial(
        cls,
        path: Path,
        *,
        dest: Path,
        source: str,
        length: int,
        algorithms: tuple[str, ...],
        name: str,
        limiter: trio.CapacityLimiter | None = None,
    ) -> SpoolFile | None:
        """Open the resumable partial file ``path`` (created if missing) for a
        download of ``length`` bytes from ``source``, finished into ``dest``.

        When its sidecar vouches for a prefix of a download from the same ``source``
        and ``length``, that prefix is kept (one byte short of a complete file, so
        that the server still confirms the validator) and re-hashed, and the
        validators are restored; otherwise the file is emptied. None when another
        download holds the file."""
        check_algorithms(algorithms, name=name)
        if length < 0:
            raise ValueError("length must be >= 0")
        try:
            opened = await trio.to_thread.run_sync(
                _open_partial_sync, path, source, length, limiter=limiter
            )
        except OSError as exc:
            raise StorageError(f"cannot open the spool file {path} for {name}: {exc}") from exc
        if opened is None:
            return None
        fd, held, etag, last_modified = opened
        spool = cls(
            path,
            fd,
            length=length,
            algorithms=algorithms,
            name=name,
            limiter=limiter,
            dest=dest,
            source=source,
        )
        try:
            offset = 0
            while offset < held:
                size = min(_HASH_BATCH, held - offset)
                await trio.to_thread.run_sync(
                    spool._hash_from_disk, fd, offset, size, limiter=limiter
                )
                offset += size
        except OSError as exc:
            await spool.discard()
            raise StorageError(f"cannot read the spool file {path}: {exc}") from exc
        except BaseException:
            await spool._close()
            raise
        spool.received = spool._checkpointed = held
        spool.etag, spool.last_modified = etag, last_modified
        return spool

    @property
    def resumable(self) -> bool:
        """Whether ``keep`` can save this file for a later run."""
        return self._source is not None

    @property
    def validator(self) -> str | None:
        """What to send as ``If-Range`` to continue this file: a strong ETag, else
        the Last-Modified date, else None (the file cannot be continued safely)."""
        if self.etag is not None and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified

    def set_validators(self, *, etag: str | None, last_modified: str | None) -> None:
        """Record the validators of the response whose body is being written."""
        self.etag, self.last_modified = etag, last_modified

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
            if self._source is not None and self.received - self._checkpointed >= CHECKPOINT_BYTES:
                await self.checkpoint()

    async def restart(self) -> None:
        """Drop every byte held (and the sidecar first): the download starts over."""
        self._buffer = bytearray()
        self._hashers = {algorithm: new_hasher(algorithm) for algorithm in self._algorithms}
        self.received = self._checkpointed = self.resumed_from = 0
        self.etag = self.last_modified = None
        fd = self._fd
        assert fd is not None, "restart after discard"
        sidecar = _sidecar(self.path) if self._source is not None else None
        try:
            await trio.to_thread.run_sync(_truncate, fd, sidecar, limiter=self._limiter)
        except OSError as exc:
            raise StorageError(f"cannot empty the spool file {self.path}: {exc}") from exc

    async def checkpoint(self) -> None:
        """Make the bytes held durable and record them in the sidecar (resumable
        files with a validator only; otherwise nothing)."""
        if self._source is None or self.validator is None or self.received == 0:
            return
        await self._flush()
        if self.received == self._checkpointed:
            return
        fd = self._fd
        assert fd is not None, "checkpoint after discard"
        state = {
            "source": self._source,
            "length": self._length,
            "bytes": self.received,
            "etag": self.etag,
            "last_modified": self.last_modified,
        }
        try:
            await trio.to_thread.run_sync(
                _checkpoint_sync, fd, _sidecar(self.path), state, limiter=self._limiter
            )
        except OSError as exc:
            raise StorageError(f"cannot record a checkpoint of {self.path}: {exc}") from exc
        self._checkpointed = self.received

    async def keep(self) -> None:
        """Give the download up for now: checkpoint and close a resumable file with
        bytes worth continuing, discard any other (shielded and time-bounded: runs
        even when cancelled)."""
        with trio.CancelScope(shield=True):
            saved = False
            if self._source is not None and self.validator is not None and self.received:
                # On failure an older checkpoint, if any, still holds.
                with trio.move_on_after(_KEEP_TIMEOUT), contextlib.suppress(StorageError):
                    await self.checkpoint()
                saved = self._checkpointed > 0
            if saved:
                self._finished = True
                await self._close()
            else:
                await self.discard()

    async def finish(self) -> FetchedFile:
        """Check the length, make the file durable, move it to ``dest``, close it;
        return what was written."""
        if self.received != self._length:
            raise LengthOrHashMismatchError(
                f"{self._name}: {self.received} bytes, expected {self._length}"
            )
        await self._flush()
        fd, self._fd = self._fd, None
        assert fd is not None, "finish after discard"
        # One thread hop: fsync, move into place, drop the sidecar (if one was
        # written), close.
        try:
            await trio.to_thread.run_sync(
                _finish_sync,
                fd,
                self.path,
                self.dest if self.dest != self.path else None,
                _sidecar(self.path) if self._checkpointed else None,
                limiter=self._limiter,
            )
        except OSError as exc:
            raise StorageError(f"cannot sync the spool file {self.path}: {exc}") from exc
        self._finished = True
        digests = {algorithm: h.hexdigest() for algorithm, h in self._hashers.items()}
        return FetchedFile(
            path=self.dest, length=self.received, digests=digests, resumed_from=self.resumed_from
        )

    async def discard(self) -> None:
        """Close and delete the partial file and its sidecar (shielded: runs even
        when cancelled)."""
        with trio.CancelScope(shield=True):
            self._finished = True
            await self._close()
            await trio.to_thread.run_sync(_unlink_quietly, self.path, limiter=self._limiter)
            if self._source is not None:
                await trio.to_thread.run_sync(
                    _unlink_quietly, _sidecar(self.path), limiter=self._limiter
                )

    async def _flush(self) -> None:
        if not self._buffer:
            return
        data, self._buffer = bytes(self._buffer), bytearray()
        fd = self._fd
        assert fd is not None, "write after discard"
        try:
            await trio.to_thread.run_sync(self._write_and_hash, fd, data, limiter=self._limiter)
        except OSError as exc:
            raise StorageError(f"cannot write the spool file {self.path}: {exc}") from exc

    def _write_and_hash(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        for hasher in self._hashers.values():
            hasher.update(data)

    def _hash_from_disk(self, fd: int, offset: int, size: int) -> None:
        end = offset + size
        while offset < end:
            data = os.pread(fd, min(_BATCH, end - offset), offset)
            if not data:
                raise OSError(f"the file ended at byte {offset}, expected {end}")
            for hasher in self._hashers.values():
                hasher.update(data)
            offset += len(data)

    async def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                await trio.to_thread.run_sync(os.close, fd, limiter=self._limiter)


async def write_spool_file(path: Path, data: bytes) -> None:
    """Write ``data`` to the new spool file ``path`` (a verified role waiting for its
    turn to be published); a full disk or any other failure is ``StorageError``
    naming the file, and leaves no partial file behind."""
    try:
        await trio.to_thread.run_sync(_write_new_file, path, data)
    except OSError as exc:
        raise StorageError(f"cannot write the spool file {path}: {_reason(exc)}") from exc


async def reclaim_spool(directory: Path) -> int:
    """Delete what runs that were killed left in ``directory``: spooled roles and
    targets and temporary files, every file but the resumable partial downloads
    (and their sidecars) that the coming run may continue. Returns how many files
    were deleted. Only for the holder of the destination's lock: no other run uses
    its spool directory then."""
    return await trio.to_thread.run_sync(_reclaim_spool_sync, directory)


async def remove_partials(directory: Path) -> int:
    """Delete every resumable partial file in ``directory`` (and its sidecar) that
    no download holds; return how many were deleted. For the engine, after a run
    that copied every target: partial files left then will never be continued."""
    return await trio.to_thread.run_sync(_remove_partials_sync, directory)


# -- run in worker threads -----------------------------------------------------------


def _open_partial_sync(
    path: Path, source: str, length: int
) -> tuple[int, int, str | None, str | None] | None:
    """Open (or create) and lock ``path``; keep the prefix its sidecar vouches for.
    Returns (fd, bytes kept, etag, last_modified), or None when it is locked."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        size = os.fstat(fd).st_size
        sidecar = _sidecar(path)
        held, etag, last_modified = 0, None, None
        state = _read_sidecar(sidecar) if size > 0 else None
        if state is not None and state.get("source") == source and state.get("length") == length:
            vouched = state.get("bytes")
            etag = _optional_str(state.get("etag"))
            last_modified = _optional_str(state.get("last_modified"))
            if isinstance(vouched, int) and vouched > 0 and (etag or last_modified):
                # One byte short of complete: the Range request then still asks the
                # server to confirm the validator, however much is held.
                held = min(vouched, size, length - 1)
        if held <= 0:
            held, etag, last_modified = 0, None, None
            _unlink_quietly(sidecar)
        if size != held:
            os.ftruncate(fd, held)
        os.lseek(fd, held, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd, held, etag, last_modified


def _read_sidecar(sidecar: Path) -> dict[str, object] | None:
    try:
        state = json.loads(sidecar.read_bytes())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _truncate(fd: int, sidecar: Path | None) -> None:
    if sidecar is not None:
        _unlink_quietly(sidecar)
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)


def _checkpoint_sync(fd: int, sidecar: Path, state: dict[str, object]) -> None:
    """Data first (fsync), then the sidecar that vouches for it (atomic replace)."""
    os.fsync(fd)
    # Not synced itself: a sidecar lost in a crash costs a restart, never bad bytes.
    # Its temporary name ends in ".tmp", which the spool cleaners recognise.
    atomic.replace_file(
        sidecar, json.dumps(state).encode(), durable=False, prefix=f"{sidecar.name}.", suffix=".tmp"
    )


def _finish_sync(fd: int, path: Path, dest: Path | None, sidecar: Path | None) -> None:
    try:
        os.fsync(fd)
        if dest is not None:
            atomic.move_into_place(path, dest, durable=False)
    finally:
        os.close(fd)
    if sidecar is not None:
        _unlink_quietly(sidecar)


def _remove_partials_sync(directory: Path) -> int:
    removed = 0
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    for name in names:
        if not name.startswith(_PARTIAL_PREFIX) or name.endswith((SIDECAR_SUFFIX, ".tmp")):
            continue
        path = directory / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # a download holds it
        try:
            _unlink_quietly(_sidecar(path))
            _unlink_quietly(path)
            removed += 1
        finally:
            os.close(fd)
    for name in names:  # sidecars whose partial file is gone
        if name.startswith(_PARTIAL_PREFIX) and name.endswith(SIDECAR_SUFFIX):
            partial = directory / name.removesuffix(SIDECAR_SUFFIX)
            if not partial.exists():
                _unlink_quietly(directory / name)
    return removed


def _write_new_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        atomic.write_all(fd, data)
    except BaseException:
        os.close(fd)
        _unlink_quietly(path)
        raise
    os.close(fd)


def _reclaim_spool_sync(directory: Path) -> int:
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    removed = 0
    for name in names:
        if name.startswith(_PARTIAL_PREFIX) and not name.endswith(".tmp"):
            continue  # a resumable download and its sidecar: remove_partials decides
        path = directory / name
        try:
            if path.is_symlink() or not path.is_dir():
                os.unlink(path)
                removed += 1
        except OSError:
            continue
    for name in names:  # sidecars whose partial file is gone
        sidecar = name.startswith(_PARTIAL_PREFIX) and name.endswith(SIDECAR_SUFFIX)
        if sidecar and not (directory / name.removesuffix(SIDECAR_SUFFIX)).exists():
            _unlink_quietly(directory / name)
    return removed


def _reason(exc: OSError) -> str:
    """``No space left on device`` rather than ``[Errno 28] ...: '/path'``."""
    return exc.strerror or str(exc)


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
