"""``LocalFetcher``: the ``Fetcher`` for an upstream that is a directory
(``file://`` URL or path), e.g. a repository on a mounted disk.

Same semantics as ``HttpFetcher``: names are relative to the metadata or targets
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
import email.utils
import os
import stat
from pathlib import Path
from urllib.parse import unquote, urlsplit

import trio

from mirror.errors import FetchError, NotFoundError, OversizeError, UsageError
from mirror.fetch.base import FetchedBytes, FetchedFile, FetchStats, Namespace
from mirror.fetch.names import name_segments
from mirror.fetch.spool import SpoolFile, check_algorithms

__all__ = ["LocalFetcher", "path_from_upstream"]

_CHUNK = 1 << 20


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


class LocalFetcher:
    """Reads upstream files from ``root / metadata_prefix`` and ``root / targets_prefix``
    (an empty prefix means the root itself); ``metadata_dir`` / ``targets_dir``
    override those directories."""

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
        root = Path(os.path.abspath(root))
        self._dirs: dict[Namespace, Path] = {
            "metadata": Path(os.path.abspath(metadata_dir or root / metadata_prefix)),
            "targets": Path(os.path.abspath(targets_dir or root / targets_prefix)),
        }
        self.stats = FetchStats()
        self._limiter = trio.CapacityLimiter(max_threads)

    def __repr__(self) -> str:
        return f"LocalFetcher({str(self._dirs['metadata'])!r}, {str(self._dirs['targets'])!r})"

    def path_for(self, namespace: Namespace, name: str) -> Path:
        """The file that holds ``name`` (``UnsafeNameError`` for an unsafe name)."""
        return self._dirs[namespace].joinpath(*name_segments(namespace, name))

    async def fetch_bytes(
        self,
        namespace: Namespace,
        name: str,
        *,
        max_length: int,
        if_none_match: str | None = None,
        if_modified_since: str | None = None,
    ) -> FetchedBytes | None:
        path = self.path_for(namespace, name)
        self.stats.requests += 1
        result = await trio.to_thread.run_sync(
            self._read_small,
            namespace,
            path,
            max_length,
            if_none_match,
            if_modified_since,
            limiter=self._limiter,
        )
        if result is None:
            self.stats.not_modified += 1
        else:
            self.stats.bytes_received += len(result.data)
        return result

    async def fetch_to_file(
        self,
        namespace: Namespace,
        name: str,
        dest: Path,
        *,
        length: int,
        algorithms: tuple[str, ...],
    ) -> FetchedFile:
        path = self.path_for(namespace, name)
        check_algorithms(algorithms, name=str(path))
        self.stats.requests += 1
        fd, size = await trio.to_thread.run_sync(self._open, namespace, path, limiter=self._limiter)
        try:
            if size > length:
                raise OversizeError(f"{path}: {size} bytes, more than the expected {length}")
            spool = await SpoolFile.create(
                dest, length=length, algorithms=algorithms, name=str(path), limiter=self._limiter
            )
            async with spool:
                while True:
                    # Read one byte past the expected length to catch a growing file.
                    want = min(_CHUNK, length + 1 - spool.received)
                    chunk = await trio.to_thread.run_sync(
                        self._read_chunk, path, fd, want, limiter=self._limiter
                    )
                    if not chunk:
                        break
                    self.stats.bytes_received += len(chunk)
                    await spool.write(chunk)
                return await spool.finish()
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(os.close, fd, limiter=self._limiter)

    async def aclose(self) -> None:
        """Nothing to close: every read closes its file."""

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

    def _read_chunk(self, path: Path, fd: int, size: int) -> bytes:
        try:
            return os.read(fd, size)
        except OSError as exc:
            raise FetchError(f"cannot read {path}: {exc}") from exc

    def _read_small(
        self,
        namespace: Namespace,
        path: Path,
        max_length: int,
        if_none_match: str | None,
        if_modified_since: str | None,
    ) -> FetchedBytes | None:
        fd, size = self._open(namespace, path)
        try:
            st = os.fstat(fd)
            etag = f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
            last_modified = email.utils.formatdate(st.st_mtime, usegmt=True)
            if _not_modified(etag, st.st_mtime, if_none_match, if_modified_since):
                return None
            if size > max_length:
                raise OversizeError(f"{path}: {size} bytes, more than {max_length}")
            parts: list[bytes] = []
            total = 0
            while chunk := self._read_chunk(path, fd, min(_CHUNK, max_length + 1 - total)):
                parts.append(chunk)
                total += len(chunk)
                if total > max_length:
                    raise OversizeError(f"{path}: more than {max_length} bytes")
        except OSError as exc:
            raise FetchError(f"cannot read {path}: {exc}") from exc
        finally:
            os.close(fd)
        return FetchedBytes(data=b"".join(parts), etag=etag, last_modified=last_modified)


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
            since = email.utils.parsedate_to_datetime(if_modified_since)
        return since is not None and since.tzinfo is not None and int(mtime) <= since.timestamp()
    return False
