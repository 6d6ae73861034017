"""``LocalFetcher``: the ``Fetcher`` for an upstream that is a directory
(``file://`` URL or path), e.g. a repository on a mounted disk.

A ``StreamFetcher`` (``mirror.fetch.template``): the template owns the length cap,
spooling, hashing and counters; this module opens files. Same semantics as
``HttpFetcher``: names are relative to the metadata or targets
directory (metadata names are the percent-encoded file names as published, target
names raw paths), a hard length cap (``OversizeError``), digests on the fly, and
``NotFoundError`` for a missing file. Names that could escape their directory are
``UnsafeNameError``; a path that leaves it through a symlink is treated as absent
(like a web server would). Conditional reads are supported with a validator made of
the file's size and modification time. All file I/O runs in worker threads, in
chunks, so cancellation is prompt.

What it does not do: retries (a local read either works or does not), deadlines, or
locking against a repository being rewritten while it is read (verification catches
torn reads).
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import unquote, urlsplit

import trio

from mirror.errors import FetchError, NotFoundError, UsageError
from mirror.fetch.base import Namespace
from mirror.fetch.names import name_segments
from mirror.fetch.template import Reader, Request, Stream, StreamFetcher

if TYPE_CHECKING:
    from datetime import datetime

__all__ = ["LocalFetcher", "path_from_upstream"]

_CHUNK = 1 << 20
_T = TypeVar("_T")


def path_from_upstream(upstream: str | Path) -> Path:
    """The directory a path or ``file://`` URL names (``UsageError`` otherwise)."""
    if isinstance(upstream, Path):
        return upstream
    if upstream.lower().startswith("file:"):
        parts = urlsplit(upstream)
        if parts.netloc not in ("", "localhost") or not parts.path:
            raise UsageError(f"unsupported file:// upstream {upstream!r} (remote host or no path)")
        return Path(unquote(parts.path))
    return Path(upstream)


class LocalFetcher(StreamFetcher):
    """Reads upstream files from ``root / metadata_prefix`` and ``root / targets_prefix``
    (an empty prefix means the root itself); ``metadata_dir`` / ``targets_dir``
    override those directories. The length cap, spooling, hashing and counters are
    the template's (``mirror.fetch.template``); this class opens files."""

    declared_as = "size"

    def __init__(
        self,
        root: Path,
        metadata_prefix: str = "metadata",
        targets_prefix: str = "targets",
        *,
        metadata_dir: Path | None = None,
        targets_dir: Path | None = None,
        max_threads: int = 4,
    ) -> None:
        limiter = trio.CapacityLimiter(max_threads)
        super().__init__(spool_limiter=limiter)
        root = Path(os.path.abspath(root))
        self._dirs: dict[Namespace, Path] = {
            "metadata": Path(os.path.abspath(metadata_dir or root / metadata_prefix)),
            "targets": Path(os.path.abspath(targets_dir or root / targets_prefix)),
        }
        self._limiter = limiter

    def __repr__(self) -> str:
        return f"LocalFetcher({str(self._dirs['metadata'])!r}, {str(self._dirs['targets'])!r})"

    def path_for(self, namespace: Namespace, name: str) -> Path:
        """The file that holds ``name`` (``UnsafeNameError`` for an unsafe name)."""
        return self._dirs[namespace].joinpath(*name_segments(namespace, name))

    def locate(self, namespace: Namespace, name: str, segments: list[str]) -> str:
        return str(self._dirs[namespace].joinpath(*segments))

    async def _transfer(self, request: Request, read: Reader[_T]) -> _T:
        """Into memory: one thread hop opens and reads the file (and answers a
        conditional read). Into a file: open, then chunks of ``_CHUNK`` bytes, each
        in a worker thread, up to one byte past the cap (a file growing meanwhile)."""
        path = Path(request.location)
        if request.spooler is None:
            stream = await trio.to_thread.run_sync(
                self._read_small, request, path, limiter=self._limiter
            )
            return await read(request, stream)
        fd, size = await trio.to_thread.run_sync(
            self._open, request.namespace, path, limiter=self._limiter
        )
        try:
            chunks = _Chunks(path, fd, request.limit + 1, self._limiter)
            return await read(request, Stream(chunks=chunks, length=size))
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(os.close, fd, limiter=self._limiter)

    # -- helpers run in worker threads ------------------------------------------------

    def _open(self, namespace: Namespace, path: Path) -> tuple[int, int]:
        """Open ``path`` for reading, refusing what is absent, not a regular file or
        outside the namespace directory; return (fd, size)."""
        try:
            real = Path(os.path.realpath(path))
            if not real.is_relative_to(os.path.realpath(self._dirs[namespace])):
                raise NotFoundError(f"{path} leaves the upstream directory (symlink)")
            fd = os.open(real, os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise NotFoundError(f"{path} does not exist") from exc
        except OSError as exc:
            raise FetchError(f"cannot read {path}: {exc}") from exc
        try:
            st = os.fstat(fd)
        except OSError as exc:
            os.close(fd)
            raise FetchError(f"cannot read {path}: {exc}") from exc
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise NotFoundError(f"{path} is not a regular file")
        return fd, st.st_size

    def _read_small(self, request: Request, path: Path) -> Stream:
        """The whole file (at most one byte past the cap; nothing when its size is
        already past it), or "not modified" for a conditional read."""
        fd, size = self._open(request.namespace, path)
        max_length = request.limit
        try:
            st = os.fstat(fd)
            etag = f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
            last_modified = _http_date(st.st_mtime)
            if _not_modified(etag, st.st_mtime, request.if_none_match, request.if_modified_since):
                return Stream(not_modified=True)
            parts: list[bytes] = []
            total = 0
            if size <= max_length:
                while chunk := _read_chunk(path, fd, min(_CHUNK, max_length + 1 - total)):
                    parts.append(chunk)
                    total += len(chunk)
                    if total > max_length:
                        break
        except OSError as exc:
            raise FetchError(f"cannot read {path}: {exc}") from exc
        finally:
            os.close(fd)
        return Stream(data=b"".join(parts), length=size, etag=etag, last_modified=last_modified)


class _Chunks:
    """The chunks of an open file, each read in a worker thread, ``left`` bytes at
    most (an async iterator without a generator: nothing to finalize when the
    reader stops early)."""

    __slots__ = ("_fd", "_left", "_limiter", "_path")

    def __init__(self, path: Path, fd: int, left: int, limiter: trio.CapacityLimiter) -> None:
        self._path = path
        self._fd = fd
        self._left = left
        self._limiter = limiter

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> bytes:
        if self._left <= 0:
            raise StopAsyncIteration
        chunk = await trio.to_thread.run_sync(
            _read_chunk, self._path, self._fd, min(_CHUNK, self._left), limiter=self._limiter
        )
        if not chunk:
            raise StopAsyncIteration
        self._left -= len(chunk)
        return chunk


def _read_chunk(path: Path, fd: int, size: int) -> bytes:
    try:
        return os.read(fd, size)
    except OSError as exc:
        raise FetchError(f"cannot read {path}: {exc}") from exc


def _not_modified(
    etag: str, mtime: float, if_none_match: str | None, if_modified_since: str | None
) -> bool:
    """HTTP's rule: If-None-Match wins when present, else If-Modified-Since."""
    if if_none_match is not None:
        tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
        return "*" in tags or etag in tags
    if if_modified_since is not None:
        since = None
        with contextlib.suppress(TypeError, ValueError, IndexError):
            since = _parse_http_date(if_modified_since)
        return since is not None and since.tzinfo is not None and int(mtime) <= since.timestamp()
    return False


# ``email.utils`` is imported when a local upstream is read, not by every run.
def _http_date(timestamp: float) -> str:
    import email.utils

    return email.utils.formatdate(timestamp, usegmt=True)


def _parse_http_date(value: str) -> datetime:
    import email.utils

    return email.utils.parsedate_to_datetime(value)
