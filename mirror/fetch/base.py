"""The interface between the sync engine and whatever serves the upstream's bytes.

A fetcher gets bytes by *relative name* from an upstream ("metadata" or "targets"
namespace): it knows how to join names onto base URLs, stream with a hard length cap,
hash on the fly, time-limit and retry transient failures. It never decides whether
bytes are trustworthy: that is ``mirror.trust``'s job. The HTTP, local and bundle
fetchers share one implementation of the cap, spooling, hashing and counters
(``mirror.fetch.template.StreamFetcher``); ``FailoverFetcher`` wraps fetchers. A
fetcher that can ask for many small files at once (HTTP/1.1 pipelining) is also a
``PipeliningFetcher``: a best-effort shortcut beside ``fetch_bytes``, never instead
of it.

What leaves a fetcher: ``FetchError`` (transient; ``NotFoundError`` for an absent
file), ``LengthOrHashMismatchError`` (``OversizeError`` for more bytes than allowed;
also a hash algorithm that cannot be computed), ``UnsafeNameError`` for a name that
could escape (defence in depth), and ``StorageError`` when the spool file cannot be
written. Nothing from httpx or the OS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

Namespace = Literal["metadata", "targets"]


@dataclass(frozen=True, slots=True)
class FetchedFile:
    """A file streamed to disk: where, how long, and its digests (hex) per algorithm.

    ``resumed_from``: bytes at the start of the file that the final request did not
    fetch, because an earlier attempt or run had (HTTP Range); 0 for a whole fetch.
    """

    path: Path
    length: int
    digests: dict[str, str] = field(default_factory=dict)
    resumed_from: int = 0


@dataclass(frozen=True, slots=True)
class FetchedBytes:
    """A small file fetched into memory, with the validators for a conditional GET.

    ``upstream`` names the upstream that served it when a ``FailoverFetcher`` chose
    among several (validators only make sense to the server that gave them)."""

    data: bytes
    etag: str | None = None
    last_modified: str | None = None
    upstream: str | None = None
    #: the server's Content-Type, when it sent one (for messages only)
    content_type: str | None = None


@dataclass(slots=True)
class UpstreamStats:
    """What one of several upstreams did for a run (``FailoverFetcher``): fetches it
    answered (a file or a 304), fetches it failed (handed to the next upstream),
    and its own request and byte counters."""

    served: int = 0
    failed: int = 0
    requests: int = 0
    bytes_received: int = 0
    #: of ``served``: metadata files and target files
    metadata_served: int = 0
    targets_served: int = 0
    #: taken out of service for the rest of the run, and the failure that did it
    passed_over: bool = False
    error: str | None = None


@dataclass(slots=True)
class FetchStats:
    """Counters a run report shows: requests made and bytes received.

    ``resumed``: downloads continued with an HTTP Range request instead of from
    the start. ``failovers``: fetches one upstream failed and another was asked.
    ``per_upstream``: by upstream (URL or path), filled in by ``FailoverFetcher``
    only."""

    requests: int = 0
    bytes_received: int = 0
    not_modified: int = 0
    retries: int = 0
    resumed: int = 0
    failovers: int = 0
    per_upstream: dict[str, UpstreamStats] = field(default_factory=dict)


class Fetcher(Protocol):
    """Fetches upstream files by relative name."""

    @property
    def stats(self) -> FetchStats:
        """The counters so far (read them; only the fetcher updates them)."""
        ...

    async def fetch_bytes(
        self,
        namespace: Namespace,
        name: str,
        *,
        max_length: int,
        if_none_match: str | None = None,
        if_modified_since: str | None = None,
    ) -> FetchedBytes | None:
        """Fetch ``name`` into memory, reading at most ``max_length`` bytes
        (more is ``OversizeError``). Returns None only for a 304 answer to a
        conditional request. 404 is ``NotFoundError``."""
        ...

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
        computing the digests of ``algorithms`` (over the whole file) on the fly. A
        shorter body is a ``LengthOrHashMismatchError``; the caller compares the
        digests. A fetcher may resume a download that an earlier attempt or run left
        unfinished (``HttpFetcher`` with ``partial_dir``); ``dest`` is only written
        once complete in that case."""
        ...

    async def aclose(self) -> None:
        """Close connections."""
        ...


@runtime_checkable
class PipeliningFetcher(Protocol):
    """A fetcher that can ask for many small files at once (``HttpFetcher``)."""

    async def fetch_many(
        self, namespace: Namespace, items: Sequence[tuple[str, int]]
    ) -> list[bytes | None]:
        """Best effort, for many small files: for each ``(name, limit)`` of ``items``,
        its bytes when it came whole, in one answer of at most ``limit`` bytes, or
        None for anything else (not asked, not answered, another status, too long, a
        failed connection). Never raises for one file's trouble: the caller fetches
        the None ones with ``fetch_bytes``, which retries, fails over and reports.
        The bytes are not verified: the caller checks them against the signed
        length and hashes."""
        ...
