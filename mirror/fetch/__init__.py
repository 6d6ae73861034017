"""Getting bytes from upstreams: HTTP (httpx on trio) and local directories, with a
bandwidth cap, resumable downloads and failover between several upstreams.

``open_fetcher`` picks the implementation from the upstream's form; the HTTP
fetcher's knobs (timeouts, retry policy, connections, bandwidth bucket, partial
directory) pass through it. Given several upstreams it returns a
``FailoverFetcher`` over one fetcher each.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mirror.errors import UsageError
from mirror.fetch.base import (
    FetchedBytes,
    FetchedFile,
    Fetcher,
    FetchStats,
    Namespace,
    PipeliningFetcher,
    UpstreamStats,
)
from mirror.fetch.failover import FailoverFetcher
from mirror.fetch.http import HttpFetcher
from mirror.fetch.local import LocalFetcher, path_from_upstream
from mirror.fetch.names import join_url
from mirror.fetch.ratelimit import BandwidthSchedule, TokenBucket
from mirror.fetch.retry import RetryPolicy
from mirror.fetch.spool import remove_partials

__all__ = [
    "BandwidthSchedule",
    "FailoverFetcher",
    "FetchStats",
    "FetchedBytes",
    "FetchedFile",
    "Fetcher",
    "HttpFetcher",
    "LocalFetcher",
    "Namespace",
    "PipeliningFetcher",
    "RetryPolicy",
    "TokenBucket",
    "UpstreamStats",
    "is_http",
    "open_fetcher",
    "remove_partials",
]


def is_http(upstream: str | Path) -> bool:
    """Whether ``upstream`` is an ``http://`` or ``https://`` URL."""
    text = str(upstream)
    return "://" in text and text.partition("://")[0].lower() in ("http", "https")


def open_fetcher(
    upstream: str | Path | Sequence[str | Path],
    *,
    metadata_url: str | None = None,
    targets_url: str | None = None,
    metadata_prefix: str = "metadata",
    targets_prefix: str = "targets",
    **http_options: object,
) -> Fetcher:
    """A fetcher for ``upstream``: ``http(s)://`` -> ``HttpFetcher``; a path or
    ``file://`` URL -> ``LocalFetcher``; a sequence of several -> a
    ``FailoverFetcher`` over one fetcher each, labelled with the upstream, the first
    one primary (a sequence of one is that one upstream).

    The metadata and targets locations default to ``upstream`` joined with
    ``metadata_prefix`` / ``targets_prefix`` (an empty prefix: ``upstream`` itself);
    ``metadata_url`` / ``targets_url`` replace them (URLs for HTTP, paths or
    ``file://`` URLs for a local upstream; not with several upstreams).
    ``http_options`` go to ``HttpFetcher`` (``retry=``, ``transfer_timeout=``,
    ``bandwidth=``...: objects such as a ``TokenBucket`` are shared by all HTTP
    upstreams) and are refused for a single local upstream, left out for local ones
    among several.
    """
    if not isinstance(upstream, str | Path):
        upstreams = list(upstream)
        if not upstreams:
            raise UsageError("no upstream given")
        if len(upstreams) > 1:
            if metadata_url or targets_url:
                raise UsageError(
                    "--metadata-url/--targets-url cannot be combined with several upstreams"
                )
            if len(set(map(str, upstreams))) != len(upstreams):
                raise UsageError(f"the same upstream is given twice: {list(map(str, upstreams))}")
            fetchers: list[tuple[str, Fetcher]] = [
                (
                    str(each),
                    _open_one(
                        each,
                        metadata_url=None,
                        targets_url=None,
                        metadata_prefix=metadata_prefix,
                        targets_prefix=targets_prefix,
                        http_options=http_options if is_http(each) else {},
                    ),
                )
                for each in upstreams
            ]
            return FailoverFetcher(fetchers)
        upstream = upstreams[0]
    return _open_one(
        upstream,
        metadata_url=metadata_url,
        targets_url=targets_url,
        metadata_prefix=metadata_prefix,
        targets_prefix=targets_prefix,
        http_options=http_options,
    )


def _open_one(
    upstream: str | Path,
    *,
    metadata_url: str | None,
    targets_url: str | None,
    metadata_prefix: str,
    targets_prefix: str,
    http_options: dict[str, object],
) -> Fetcher:
    text = str(upstream)
    scheme = text.partition("://")[0].lower() if "://" in text else ""
    if scheme in ("http", "https"):
        return HttpFetcher(
            metadata_url or _join_prefix(text, metadata_prefix),
            targets_url or _join_prefix(text, targets_prefix),
            **http_options,  # type: ignore[arg-type]
        )
    if scheme not in ("", "file"):
        raise UsageError(f"unsupported upstream {text!r}: expected http(s)://, file:// or a path")
    if http_options:
        raise UsageError(f"options {sorted(http_options)} do not apply to a local upstream")
    return LocalFetcher(
        path_from_upstream(upstream),
        metadata_prefix,
        targets_prefix,
        metadata_dir=path_from_upstream(metadata_url) if metadata_url else None,
        targets_dir=path_from_upstream(targets_url) if targets_url else None,
    )


def _join_prefix(base: str, prefix: str) -> str:
    return join_url(base, prefix) if prefix else base
