"""``LocalStore``: a ``Store`` on a local directory, with atomic, durable writes.

Every write goes to a temporary file named ``.tmp-<random>`` in the destination
directory, is written, ``fsync``-ed, renamed over the final name with
``os.replace`` and followed by an ``fsync`` of the directory: a reader (a web
server serving the mirror) sees the old file or the new one, never a partial one,
and a crash leaves at most a stray ``.tmp-*`` file that listings ignore.

The root directory, and any missing parent directory of a key, is created on the
first write (each new directory is made durable by an ``fsync`` of its parent).
Reads of a missing root behave like an empty store.

Blocking file I/O runs in worker threads (``trio.to_thread.run_sync`` with one
``CapacityLimiter`` per store); each operation runs whole in one thread call, so a
cancelled task never leaves a write half done. Small writes with deferred
durability (``put_bytes`` of at most ``BATCHED_BYTES``, ``durable=False``: a first
sync's targets) share thread calls: a thread hop costs more CPU than writing a
small file, so while one batch runs in a thread the next ones queue, and the next
call takes them all (``_Batcher``). Reads share thread calls the same way (a batcher
of their own, so reads and writes still overlap): a file found larger than
``BATCHED_BYTES`` once opened is read in a thread call of its own instead, so a
large read never holds up the small ones. ``OSError`` is translated here:
to ``StorageError`` naming the key, or ``StorageConfigError`` when the root
directory itself cannot be used.

What it does not do: verification, ordering, removal of empty directories after
``delete``, or protection against symlinks an operator placed inside the root.
Names whose last segment starts with ``.tmp-`` are reserved and rejected.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import stat
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import TypeVar, TypeVarTuple, Unpack
from urllib.parse import unquote, urlsplit

import trio

from mirror.errors import StorageConfigError, StorageError, UnsafeNameError
from mirror.storage import atomic
from mirror.storage.atomic import TEMP_PREFIX
from mirror.storage.base import (
    DELETE_BATCH,
    INTERNAL_PREFIX,
    NotFoundInStoreError,
    ObjectInfo,
    PutOptions,
    is_internal_key,
    validate_key,
    validate_prefix,
)

__all__ = ["BATCHED_BYTES", "TEMP_PREFIX", "LocalStore", "path_from_file_url"]

_SPOOL_KEY = INTERNAL_PREFIX + "spool"
_LIST_BATCH = 512
#: ``ObjectInfo.modified`` of a listed file is its mtime plus this (coarse clock)
_MTIME_SLACK = timedelta(milliseconds=20)
#: ``put_bytes`` with deferred durability of at most this many bytes share thread calls
BATCHED_BYTES = 256 * 1024
#: writes run in one thread call at most
_MAX_BATCH = 64
_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")


def path_from_file_url(url: str) -> Path:
    """The directory a ``file://`` URL (``file:///srv/mirror``) names.

    Raises ``StorageConfigError`` for a remote host or an empty path."""
    parts = urlsplit(url)
    if parts.scheme != "file":
        raise StorageConfigError(f"not a file:// URL: {url!r}")
    if parts.netloc not in ("", "localhost"):
        raise StorageConfigError(f"file:// URL with a remote host is not supported: {url!r}")
    if not parts.path:
        raise StorageConfigError(f"file:// URL without a path: {url!r}")
    return Path(unquote(parts.path))


class LocalStore:
    """A ``Store`` on the directory ``root`` (created on the first write)."""

    def __init__(self, root: Path, *, max_threads: int = 8) -> None:
        self.root = Path(os.path.abspath(root))
        self.url = str(self.root)
        self._limiter = trio.CapacityLimiter(max_threads)
        self._batcher = _Batcher(self._limiter)
        self._reads = _Batcher(self._limiter)
        #: directories known to exist (read and added from worker threads: a set's
        #: add and membership test are atomic under the GIL)
        self._known_dirs: set[Path] = set()
        #: new files are written unnamed, then linked (``atomic.write_new``), until
        #: this filesystem says it cannot
        self._write_new = True
        self._check_root()

    def __repr__(self) -> str:
        return f"LocalStore({self.url!r})"

    # -- Store interface --------------------------------------------------------------

    async def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        # One stat() on a local filesystem takes microseconds; a thread hop costs
        # ten times that, and a first sync heads every target (scripts/bench).
        await trio.lowlevel.checkpoint()
        return self._head_sync(key, path)

    async def get(self, key: str, *, max_length: int) -> bytes:
        path = self._path(key)
        data = await self._reads.run(self._get_small_sync, key, path, max_length)
        if data is None:  # larger than BATCHED_BYTES: in a thread call of its own
            return await self._run(self._get_sync, key, path, max_length)
        return data

    async def iter_chunks(self, key: str, *, chunk_size: int = 1 << 16) -> AsyncIterator[bytes]:
        path = self._path(key)
        fd = await self._run(self._open_for_read, key, path)
        try:
            while True:
                chunk = await self._run(self._read_chunk, key, fd, chunk_size)
                if not chunk:
                    return
                yield chunk
        finally:
            with trio.CancelScope(shield=True):
                await self._run(os.close, fd)

    async def put_bytes(self, key: str, data: bytes, options: PutOptions) -> None:
        path = self._path(key)
        if not options.durable and len(data) <= BATCHED_BYTES:
            await self._batcher.run(self._put_bytes_sync, key, path, data, False)
        else:
            await self._run(self._put_bytes_sync, key, path, data, options.durable)

    async def replace_tail(self, key: str, *, size: int, keep: int, data: bytes) -> bool:
        """If the file at ``key`` is ``size`` bytes long, cut it to its first ``keep``
        bytes and append ``data``, in place (deferred durability: ``flush`` makes it
        durable); False, with nothing written, when it is missing or of another size.

        Not atomic: a reader may see a part of ``data``, and a crash may leave one
        (the bytes before ``keep`` are never touched). For the ledger's index
        shards, whose readers drop what lies past their checkpoint: a commit adds a
        few lines to each, where a temporary file renamed over the shard rewrote it
        whole (and a rename over an existing file is the costly part on ext4)."""
        path = self._path(key)
        return await self._batcher.run(self._replace_tail_sync, key, path, size, keep, data)

    async def put_file(self, key: str, path: Path, options: PutOptions) -> None:
        dest = self._path(key)
        await self._run(self._put_file_sync, key, dest, Path(path), options.durable)

    async def flush(self) -> None:
        """Make every write so far durable: one ``syncfs`` of the destination's
        filesystem (what ``durable=False`` puts deferred)."""
        await self._run(self._flush_sync)

    async def create_exclusive(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        return await self._run(self._create_exclusive_sync, key, path, data)

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        validate_prefix(prefix)
        # Walk the deepest directory that the prefix names completely.
        directory, _, _ = prefix.rpartition("/")
        start = self.root.joinpath(*directory.split("/")) if directory else self.root
        walker = self._walk(start, directory + "/" if directory else "", prefix)
        while True:
            batch = await self._run(_take, walker, _LIST_BATCH)
            for info in batch:
                yield info
            if len(batch) < _LIST_BATCH:
                return

    async def delete(self, key: str) -> None:
        path = self._path(key)
        await self._run(self._delete_sync, key, path)

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Unlink each file in one worker-thread call, then ``fsync`` each directory
        touched once (not once per file)."""
        if len(keys) > DELETE_BATCH:
            raise ValueError(f"delete_many takes at most {DELETE_BATCH} keys")
        paths = [(key, self._path(key)) for key in keys]
        await self._run(self._delete_many_sync, paths)

    def spool_dir(self) -> Path:
        """``<root>/.tuf-mirror/spool``, created if missing (a tiny ``mkdir``)."""
        path = self.root.joinpath(*_SPOOL_KEY.split("/"))
        try:
            self._ensure_dir(path)
        except OSError as exc:
            raise self._error(exc, _SPOOL_KEY, "create the spool directory") from exc
        return path

    async def aclose(self) -> None:
        """Nothing to release: every operation closes its own files."""

    # -- helpers run in worker threads ------------------------------------------------

    def _head_sync(self, key: str, path: Path) -> ObjectInfo | None:
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise self._error(exc, key, "stat") from exc
        if not stat.S_ISREG(st.st_mode):
            return None
        return ObjectInfo(key=key, size=st.st_size)

    def _open_for_read(self, key: str, path: Path) -> int:
        return self._open_file(key, path)[0]

    def _open_file(self, key: str, path: Path) -> tuple[int, int]:
        """An open descriptor of the regular file at ``path``, and its size."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise NotFoundInStoreError(f"{key!r} is not in {self.url}") from exc
        except OSError as exc:
            raise self._error(exc, key, "open") from exc
        try:
            st = os.fstat(fd)
        except OSError as exc:
            os.close(fd)
            raise self._error(exc, key, "stat") from exc
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise NotFoundInStoreError(f"{key!r} is not a file in {self.url}")
        return fd, st.st_size

    def _read_chunk(self, key: str, fd: int, size: int) -> bytes:
        try:
            return os.read(fd, size)
        except OSError as exc:
            raise self._error(exc, key, "read") from exc

    def _get_sync(self, key: str, path: Path, max_length: int) -> bytes:
        fd = self._open_for_read(key, path)
        try:
            return self._read_all(key, fd, max_length)
        finally:
            os.close(fd)

    def _get_small_sync(self, key: str, path: Path, max_length: int) -> bytes | None:
        """``_get_sync`` of a file of at most ``BATCHED_BYTES`` (a batched read); None
        for a larger one (read by ``_get_sync`` in a thread call of its own)."""
        fd, size = self._open_file(key, path)
        try:
            return self._read_all(key, fd, max_length) if size <= BATCHED_BYTES else None
        finally:
            os.close(fd)

    def _read_all(self, key: str, fd: int, max_length: int) -> bytes:
        parts: list[bytes] = []
        total = 0
        while total <= max_length:
            chunk = self._read_chunk(key, fd, min(1 << 20, max_length + 1 - total))
            if not chunk:
                return b"".join(parts)
            parts.append(chunk)
            total += len(chunk)
        raise StorageError(f"{key!r} in {self.url} is larger than {max_length} bytes")

    def _put_bytes_sync(self, key: str, path: Path, data: bytes, durable: bool = True) -> None:
        self._ensure_parent(key, path)
        # A name taken already (timestamp.json, an unversioned role, a state file)
        # goes straight to the replacing write: a stat, not a write thrown away.
        new = self._write_new and not os.path.lexists(path)
        if new and self._put_new(key, path, data, durable):
            return
        tmp = self._write_temp(key, path.parent, data, sync=durable)
        self._replace(key, tmp, path, sync=durable)

    def _put_new(self, key: str, path: Path, data: bytes, durable: bool) -> bool:
        """``data`` as the new file ``path`` in one directory operation
        (``atomic.write_new``); False when ``path`` exists or this filesystem
        cannot (then never asked again), with nothing written either way."""
        try:
            if not atomic.write_new(path, data, durable=durable):
                return False
        except OSError as exc:
            if exc.errno in atomic.UNSUPPORTED_ERRNOS:
                self._write_new = False
                return False
            raise self._error(exc, key, "write") from exc
        if durable:
            self._sync_dir(key, path.parent)
        return True

    def _replace_tail_sync(self, key: str, path: Path, size: int, keep: int, data: bytes) -> bool:
        if not 0 <= keep <= size:
            raise ValueError(f"replace_tail: keep {keep} is not within the size {size}")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return False
        except OSError as exc:
            raise self._error(exc, key, "open") from exc
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size != size:
                return False
            if keep < size:
                os.ftruncate(fd, keep)
            os.lseek(fd, keep, os.SEEK_SET)
            atomic.write_all(fd, data)
        except OSError as exc:
            raise self._error(exc, key, "write") from exc
        finally:
            os.close(fd)
        return True

    def _flush_sync(self) -> None:
        try:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise self._error(exc, ".", "open for syncing") from exc
        try:
            _syncfs(fd)
        except OSError as exc:
            raise self._error(exc, ".", "sync the filesystem of") from exc
        finally:
            os.close(fd)

    def _put_file_sync(self, key: str, dest: Path, source: Path, durable: bool = True) -> None:
        self._ensure_parent(key, dest)
        if durable:
            try:
                fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                raise self._error(exc, key, f"open the spool file {source} for") from exc
            try:
                # The fetcher already synced it; cheap, and makes put_file safe alone.
                os.fsync(fd)
            except OSError as exc:
                raise self._error(exc, key, "sync the spool file for") from exc
            finally:
                os.close(fd)
        try:
            # A rename; a spool file on another filesystem is copied, then renamed.
            atomic.move_into_place(source, dest)
        except OSError as exc:
            raise self._error(exc, key, "write") from exc
        self._sync_dir(key, dest.parent)

    def _create_exclusive_sync(self, key: str, path: Path, data: bytes) -> bool:
        self._ensure_parent(key, path)
        # Write the content to a temporary file, then hard-link it into place: link()
        # fails if the name exists, so the object appears atomically and complete.
        tmp = self._write_temp(key, path.parent, data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise self._error(exc, key, "create") from exc
            # No hard links on this filesystem: O_CREAT|O_EXCL, then write and sync.
            return self._create_exclusive_open(key, path, data)
        finally:
            _unlink_quietly(tmp)
        self._sync_dir(key, path.parent)
        return True

    def _create_exclusive_open(self, key: str, path: Path, data: bytes) -> bool:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            return False
        except OSError as exc:
            raise self._error(exc, key, "create") from exc
        try:
            _write_all(fd, data)
            os.fsync(fd)
        except OSError as exc:
            _unlink_quietly(path)
            raise self._error(exc, key, "write") from exc
        finally:
            os.close(fd)
        self._sync_dir(key, path.parent)
        return True

    def _delete_sync(self, key: str, path: Path) -> None:
        try:
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return
        except OSError as exc:
            raise self._error(exc, key, "delete") from exc
        self._sync_dir(key, path.parent)

    def _delete_many_sync(self, paths: Sequence[tuple[str, Path]]) -> None:
        directories: dict[Path, str] = {}
        for key, path in paths:
            try:
                os.unlink(path)
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                continue
            except OSError as exc:
                raise self._error(exc, key, "delete") from exc
            directories.setdefault(path.parent, key)
        for directory, key in directories.items():
            self._sync_dir(key, directory)

    def _walk(self, directory: Path, key_prefix: str, prefix: str) -> Iterator[ObjectInfo]:
        """Yield the regular files under ``directory`` whose key starts with ``prefix``."""
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise self._error(exc, key_prefix or ".", "list") from exc
        for entry in entries:
            key = key_prefix + entry.name
            if entry.name.startswith(TEMP_PREFIX) or is_internal_key(key + "/"):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    if (key + "/").startswith(prefix) or prefix.startswith(key + "/"):
                        yield from self._walk(Path(entry.path), key + "/", prefix)
                elif key.startswith(prefix) and entry.is_file():
                    st = entry.stat()
                    # The kernel stamps files from a coarse clock (one tick
                    # behind a precise reading): add a margin.
                    modified = datetime.fromtimestamp(st.st_mtime_ns / 1e9, UTC) + _MTIME_SLACK
                    yield ObjectInfo(key=key, size=st.st_size, modified=modified)
            except FileNotFoundError:
                continue  # deleted while listing
            except OSError as exc:
                raise self._error(exc, key, "list") from exc

    def _write_temp(self, key: str, directory: Path, data: bytes, *, sync: bool = True) -> Path:
        """Write ``data`` to a new (synced) temporary file in ``directory``."""
        try:
            return atomic.write_temp(directory, data, durable=sync)
        except OSError as exc:
            raise self._error(exc, key, "write") from exc

    def _replace(self, key: str, tmp: Path, path: Path, *, sync: bool = True) -> None:
        try:
            atomic.rename_into_place(tmp, path, durable=False)
        except OSError as exc:
            raise self._error(exc, key, "write") from exc
        if sync:
            self._sync_dir(key, path.parent)

    def _sync_dir(self, key: str, directory: Path) -> None:
        try:
            atomic.sync_directory(directory)
        except OSError as exc:
            raise self._error(exc, key, "sync the directory of") from exc

    def _ensure_parent(self, key: str, path: Path) -> None:
        try:
            self._ensure_dir(path.parent)
        except OSError as exc:
            raise self._error(exc, key, "create the directory of") from exc

    def _ensure_dir(self, directory: Path) -> None:
        """Create ``directory`` and missing parents, syncing each new entry's parent.
        Directories seen once are remembered: a first sync writes thousands of files
        into each, and a stat per file is measurable (scripts/bench)."""
        if directory in self._known_dirs:
            return
        if directory.is_dir():
            self._known_dirs.add(directory)
            return
        missing: list[Path] = []
        current = directory
        while not current.exists():
            missing.append(current)
            if current.parent == current:
                break
            current = current.parent
        for new in reversed(missing):
            try:
                os.mkdir(new)
            except FileExistsError:
                continue
            fd = os.open(new.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        if not directory.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(directory))
        self._known_dirs.add(directory)

    # -- validation and errors --------------------------------------------------------

    def _check_root(self) -> None:
        """Refuse a root that exists but is not a usable directory (tiny stat calls)."""
        if not self.root.exists():
            return
        if not self.root.is_dir():
            raise StorageConfigError(f"destination {self.url} exists and is not a directory")
        if not os.access(self.root, os.R_OK | os.W_OK | os.X_OK):
            raise StorageConfigError(f"destination {self.url} is not writable (permission denied)")

    def _path(self, key: str) -> Path:
        validate_key(key)
        name = key.rpartition("/")[2]
        if name.startswith(TEMP_PREFIX):
            raise UnsafeNameError(
                f"unsafe storage key {key!r}: names starting with {TEMP_PREFIX!r} are reserved"
            )
        return self.root.joinpath(*key.split("/"))

    def _error(self, exc: OSError, key: str, action: str) -> StorageError | StorageConfigError:
        code = errno.errorcode.get(exc.errno or 0, "")
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        detail = f"{reason} ({code})" if code else reason
        if exc.errno in (errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR) and (
            not self.root.is_dir() or (exc.filename is not None and Path(exc.filename) == self.root)
        ):
            return StorageConfigError(f"cannot use destination {self.url}: {detail}")
        return StorageError(f"cannot {action} {key!r} in {self.url}: {detail}")

    async def _run(self, fn: Callable[[Unpack[_Ts]], _T], *args: *_Ts) -> _T:
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)


class _Job:
    """One call for ``_Batcher``: the call, and how it ended (its result or error)."""

    __slots__ = ("args", "error", "finished", "fn", "result", "wake")

    def __init__(self, fn: Callable[..., object], args: tuple[object, ...]) -> None:
        self.fn = fn
        self.args = args
        self.finished = False
        self.result: object = None
        self.error: BaseException | None = None
        #: set when the job finished, or when its owner must take the batches over
        self.wake = trio.Event()


class _Batcher:
    """Runs small blocking calls (writes, or reads) in worker threads, many per
    thread call.

    A caller that finds no batch running runs the queued jobs (its own included) in
    one thread call, and again while more queued meanwhile; the others wait for
    their job. A job's exception is raised to its own caller only. Cancellation
    works as for ``trio.to_thread.run_sync``: a cancelled caller whose write has not
    started withdraws it (Cancelled); one whose write is running in a thread waits
    for it and returns (the cancellation arrives at its next checkpoint), so a
    write that happened is never unreported. If the running caller is cancelled
    before its thread starts, the jobs go back to the queue and their owners take
    over."""

    def __init__(self, limiter: trio.CapacityLimiter) -> None:
        self._limiter = limiter
        self._queue: list[_Job] = []
        self._running = False

    async def run(self, fn: Callable[[Unpack[_Ts]], _T], *args: *_Ts) -> _T:
        job = _Job(fn, args)
        self._queue.append(job)
        try:
            while not job.finished:
                if self._running:
                    await job.wake.wait()
                    if not job.finished:
                        job.wake = trio.Event()
                    continue
                await self._run_batches()
        except trio.Cancelled:
            # As ``trio.to_thread.run_sync``: a write not started is not done; one
            # running in a thread is waited for and reported (the cancellation
            # arrives at the caller's next checkpoint).
            with trio.CancelScope(shield=True):
                while not job.finished and job not in self._queue:
                    await job.wake.wait()
                    if not job.finished:
                        job.wake = trio.Event()
            if not job.finished:
                self._queue.remove(job)
                raise
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[return-value]  # what ``fn`` returned

    async def _run_batches(self) -> None:
        self._running = True
        try:
            while self._queue:
                batch = self._queue[:_MAX_BATCH]
                del self._queue[: len(batch)]
                try:
                    await trio.to_thread.run_sync(_run_jobs, batch, limiter=self._limiter)
                finally:
                    left = [job for job in batch if not job.finished]
                    self._queue[:0] = left
                    for job in batch:
                        if job.finished:
                            job.wake.set()
        finally:
            self._running = False
            # Cancelled: the owners of what is left take over (the first to run
            # leads; a cancelled owner's job runs with the others).
            for job in self._queue:
                job.wake.set()


def _run_jobs(batch: list[_Job]) -> None:
    for job in batch:
        try:
            job.result = job.fn(*job.args)
        except Exception as exc:  # noqa: BLE001 - handed to the job's own caller
            job.error = exc
        job.finished = True


def _take(iterator: Iterator[_T], count: int) -> list[_T]:
    return list(islice(iterator, count))


def _syncfs(fd: int) -> None:
    """``syncfs(2)`` of the filesystem holding ``fd`` (Linux); ``sync()`` elsewhere."""
    libc = _libc()
    if libc is None or not hasattr(libc, "syncfs"):
        os.sync()
        return
    if libc.syncfs(fd) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
