"""``StreamFetcher``: the template every fetcher follows (HTTP, local directory,
air-gap bundle).

What is the same for every upstream is implemented here, once:

- the name check: a name that could escape its namespace is ``UnsafeNameError``
  (``mirror.fetch.names.name_segments``) before anything else happens;
- the counters (``FetchStats``): one request per fetch (a subclass that makes more,
  such as HTTP's retries and redirects, counts the extra ones), every body byte
  received, and answers "not modified";
- the hard length cap: a declared length above the cap is ``OversizeError``
  before any body byte is read; a body that goes past the cap is ``OversizeError``
  at the chunk that does, and nothing further is read; a file shorter than its
  signed length (declared or actual) is ``LengthOrHashMismatchError``;
- ``fetch_bytes``: reading a small file into memory;
- ``fetch_to_file``: streaming a file into a ``SpoolFile`` (``mirror.fetch.spool``)
  with its digests computed on the fly, and, when the transfer fails, discarding
  the spool file or keeping a resumable one for a later attempt or run.

A subclass says only how to open a byte stream: ``locate`` (the URL or path of a
checked name) and ``_transfer`` (open a ``Stream`` for a ``Request`` and
hand it to the template's reader; a subclass that retries opens and hands over a
new stream per attempt). What is particular to one upstream stays in its
subclass: HTTP adds resuming (Range requests and the validators kept beside a
partial file), retries, conditional requests, the bandwidth cap and deadlines; the
local fetcher the symlink check and validators made from file metadata; the bundle
fetcher the check against the manifest's checksum.

Cost: this is the per-target hot path of a first sync. The template adds no await,
cancel scope, context manager or thread hop of its own, per file or per chunk: a
stream that holds its whole body already (``Stream.data``, read in the subclass's
one thread hop) is taken as it is; a streamed body costs one ``await`` per chunk
(its iterator's), plus the subclass's ``pace`` hook only when it has one (HTTP's
bandwidth cap).

What it does not do: decide whether bytes are trustworthy (the caller compares the
digests with the signed ones, ``mirror.trust``), retry, or translate a library's
exceptions: each subclass translates its own, and the template raises only
``mirror.errors`` exceptions and lets the subclass's pass unchanged.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import ClassVar, NamedTuple, TypeVar

import trio

from mirror.errors import (
    FetchError,
    LengthOrHashMismatchError,
    NotFoundError,
    OversizeError,
)
from mirror.fetch.base import FetchedBytes, FetchedFile, FetchStats, Namespace
from mirror.fetch.budget import TransferPaused
from mirror.fetch.names import name_segments
from mirror.fetch.spool import SpoolFile, check_algorithms

__all__ = ["Reader", "Request", "Spooler", "Stream", "StreamFetcher"]

_T = TypeVar("_T")


class Spooler:
    """Where a file fetch goes: ``dest`` (a new file), the ``algorithms`` to digest,
    and the ``spool`` file once there is one (the template creates it when the
    first stream arrives; a subclass that resumes sets it earlier, to a partial
    file it reopened)."""

    __slots__ = ("algorithms", "dest", "spool")

    def __init__(self, dest: Path, algorithms: tuple[str, ...]) -> None:
        self.dest = dest
        self.algorithms = algorithms
        self.spool: SpoolFile | None = None


class Request(NamedTuple):
    """One fetch as asked: ``location`` is what ``locate`` gave (URL or path),
    ``limit`` the most bytes the file may have (``max_length`` or the signed
    ``length``); ``spooler`` is None for a fetch into memory.

    An immutable named tuple rather than a frozen dataclass: one is built per file
    on the hot path, and a frozen dataclass's ``__init__`` (``object.__setattr__``
    per field) costs four times as much."""

    namespace: Namespace
    name: str
    location: str
    limit: int
    if_none_match: str | None = None
    if_modified_since: str | None = None
    spooler: Spooler | None = None

    @property
    def conditional(self) -> bool:
        """Whether the caller sent validators (an answer "not modified" is allowed)."""
        return self.if_none_match is not None or self.if_modified_since is not None


class Stream:
    """An opened byte stream, as a subclass hands it to the template.

    Either ``data`` (the whole body, already read) or ``chunks`` (an async
    iterator of body chunks); ``length`` is the declared length of the body
    (Content-Length, a file's size, a bundle entry's length; None when not
    known), checked against the cap before the body is read. ``not_modified``:
    the answer to a conditional request was "not modified" (no body).

    Hooks, per chunk received: ``pace(count)`` is awaited before the chunk is
    taken (HTTP: the bandwidth cap), ``on_chunk(count)`` called after it was
    (HTTP: the deadline, the transfer budget). ``abandon()`` is awaited when the
    template stops reading early (cap passed, disk error, cancellation), before
    the exception goes on.
    """

    __slots__ = (
        "abandon",
        "chunks",
        "content_type",
        "data",
        "etag",
        "last_modified",
        "length",
        "not_modified",
        "on_chunk",
        "pace",
    )

    def __init__(
        self,
        *,
        data: bytes | None = None,
        chunks: AsyncIterator[bytes] | None = None,
        length: int | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
        content_type: str | None = None,
        not_modified: bool = False,
        pace: Callable[[int], Awaitable[None]] | None = None,
        on_chunk: Callable[[int], None] | None = None,
        abandon: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.data = data
        self.chunks = chunks
        self.length = length
        self.etag = etag
        self.last_modified = last_modified
        self.content_type = content_type
        self.not_modified = not_modified
        self.pace = pace
        self.on_chunk = on_chunk
        self.abandon = abandon


#: the template's reader a subclass hands each opened stream to
Reader = Callable[[Request, Stream], Awaitable[_T]]


class StreamFetcher(ABC):
    """The ``Fetcher`` template; see the module docstring. Subclasses implement
    ``locate`` and ``_transfer`` and may set ``declared_as`` (how a declared length
    is named in messages) and override ``_label`` (how a location is named)."""

    #: how a declared length is named in messages ("Content-Length", "size"...)
    declared_as: ClassVar[str] = "declared length"

    def __init__(self, *, spool_limiter: trio.CapacityLimiter | None = None) -> None:
        self.stats = FetchStats()
        #: the worker threads that spool files' disk I/O runs in
        self._spool_limiter = spool_limiter

    # -- what a subclass supplies -----------------------------------------------------

    @abstractmethod
    def locate(self, namespace: Namespace, name: str, segments: list[str]) -> str:
        """The URL or path that serves ``name``, whose ``segments`` the template has
        checked (``name_segments``)."""

    @abstractmethod
    async def _transfer(self, request: Request, read: Reader[_T]) -> _T:
        """Open the stream ``request`` asks for and return ``await read(request,
        stream)``: once, or once per attempt for a subclass that retries. Raise
        ``NotFoundError`` for an absent file and the subclass's own translated
        errors for anything else."""

    def _label(self, location: str) -> str:
        """How messages name a transfer from ``location``."""
        return location

    # -- the template -----------------------------------------------------------------

    async def fetch_bytes(
        self,
        namespace: Namespace,
        name: str,
        *,
        max_length: int,
        if_none_match: str | None = None,
        if_modified_since: str | None = None,
    ) -> FetchedBytes | None:
        """Fetch ``name`` into memory, reading at most ``max_length`` bytes (more is
        ``OversizeError``). None only for "not modified" after a conditional
        request. An absent file is ``NotFoundError``."""
        request = Request(
            namespace,
            name,
            self.locate(namespace, name, name_segments(namespace, name)),
            max_length,
            if_none_match,
            if_modified_since,
        )
        self.stats.requests += 1
        return await self._transfer(request, self._into_memory)

    async def fetch_to_file(
        self,
        namespace: Namespace,
        name: str,
        dest: Path,
        *,
        length: int,
        algorithms: tuple[str, ...],
    ) -> FetchedFile:
        """Stream ``name`` into the new file ``dest``, never past ``length`` bytes,
        with the digests of ``algorithms``; a shorter file is
        ``LengthOrHashMismatchError``, an algorithm that cannot be computed too
        (before any request). On failure ``dest`` does not exist (a resumable
        partial file may be kept elsewhere, see ``mirror.fetch.http``)."""
        location = self.locate(namespace, name, name_segments(namespace, name))
        check_algorithms(algorithms, name=location)
        spooler = Spooler(dest, algorithms)
        request = Request(namespace, name, location, length, spooler=spooler)
        self.stats.requests += 1
        try:
            return await self._transfer(request, self._into_file)
        except BaseException as exc:
            spool = spooler.spool
            if spool is not None:
                if spool.resumable and _worth_keeping(exc):
                    await spool.keep()
                else:
                    await spool.discard()
            raise

    async def aclose(self) -> None:  # noqa: B027 - optional hook: most fetchers hold nothing
        """Release what the fetcher holds (nothing, unless a subclass says so)."""

    async def _spool(self, request: Request) -> SpoolFile:
        """The spool file of the file fetch ``request``, created on first use."""
        spooler = request.spooler
        assert spooler is not None, "a fetch into memory has no spool file"
        spool = spooler.spool
        if spool is None:
            spool = spooler.spool = await SpoolFile.create(
                spooler.dest,
                length=request.limit,
                algorithms=spooler.algorithms,
                name=self._label(request.location),
                limiter=self._spool_limiter,
            )
        return spool

    def _check_declared(self, request: Request, declared: int, *, held: int, exact: bool) -> None:
        """Refuse a body whose declared length is already wrong, before reading it."""
        if held + declared > request.limit:
            raise OversizeError(
                f"{self._label(request.location)}: {self.declared_as} {declared} "
                f"is more than {request.limit - held} bytes"
            )
        if exact and held + declared < request.limit:
            raise LengthOrHashMismatchError(
                f"{self._label(request.location)}: {self.declared_as} {declared}, "
                f"expected {request.limit - held} bytes"
            )

    async def _into_memory(self, request: Request, stream: Stream) -> FetchedBytes | None:
        """The reader of ``fetch_bytes``: the body, capped at ``request.limit``."""
        if stream.not_modified:
            if not request.conditional:
                raise FetchError(
                    f"{self._label(request.location)}: 'not modified' to an unconditional request"
                )
            self.stats.not_modified += 1
            return None
        limit = request.limit
        if stream.length is not None and stream.length > limit:
            self._check_declared(request, stream.length, held=0, exact=False)
        data = stream.data
        stats = self.stats
        if data is None:
            chunks = stream.chunks
            assert chunks is not None, "a stream has data or chunks"
            pace, on_chunk = stream.pace, stream.on_chunk
            body = bytearray()
            try:
                async for chunk in chunks:
                    count = len(chunk)
                    stats.bytes_received += count
                    if pace is not None:
                        await pace(count)
                    if len(body) + count > limit:
                        raise OversizeError(
                            f"{self._label(request.location)}: more than {limit} bytes"
                        )
                    body += chunk
                    if on_chunk is not None:
                        on_chunk(count)
            except BaseException:
                if stream.abandon is not None:
                    await stream.abandon()
                raise
            data = bytes(body)
        else:
            stats.bytes_received += len(data)
            if len(data) > limit:
                raise OversizeError(f"{self._label(request.location)}: more than {limit} bytes")
        return FetchedBytes(
            data=data,
            etag=stream.etag,
            last_modified=stream.last_modified,
            content_type=stream.content_type,
        )

    async def _into_file(self, request: Request, stream: Stream) -> FetchedFile:
        """The reader of ``fetch_to_file``: the body appended to the spool file
        (which refuses a chunk past the length), then finished (which refuses a
        short file)."""
        if stream.not_modified:
            raise FetchError(
                f"{self._label(request.location)}: 'not modified' to an unconditional request"
            )
        spooler = request.spooler
        assert spooler is not None, "a file fetch has a spooler"
        held = spooler.spool.received if spooler.spool is not None else 0
        if stream.length is not None:
            self._check_declared(request, stream.length, held=held, exact=True)
        spool = await self._spool(request)
        stats = self.stats
        data = stream.data
        if data is None:
            chunks = stream.chunks
            assert chunks is not None, "a stream has data or chunks"
            pace, on_chunk = stream.pace, stream.on_chunk
            try:
                async for chunk in chunks:
                    count = len(chunk)
                    stats.bytes_received += count
                    if pace is not None:
                        await pace(count)
                    await spool.write(chunk)
                    if on_chunk is not None:
                        on_chunk(count)
            except BaseException:
                if stream.abandon is not None:
                    await stream.abandon()
                raise
        else:
            stats.bytes_received += len(data)
            await spool.write(data)
        return await spool.finish()


def _worth_keeping(exc: BaseException) -> bool:
    """Whether a download that ended with ``exc`` may be continued later: transient
    failures, a pause at the transfer budget and cancellation, not a missing file or
    bad bytes."""
    if isinstance(exc, TransferPaused):
        return True
    if isinstance(exc, FetchError):
        return not isinstance(exc, NotFoundError)
    return not isinstance(exc, Exception)  # Cancelled, KeyboardInterrupt...
