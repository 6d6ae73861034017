"""Getting bytes from upstreams: HTTP (httpx on trio) and local directories.

``open_fetcher`` picks the implementation from the upstream's form; the HTTP
fetcher's knobs (timeouts, retry policy, connections) pass through it.
"""

from __future__ import annotations

from pathlib import Path

from mirror.errors import UsageError
from mirror.fetch.base import FetchedBytes, FetchedFile, Fetcher, FetchStats, Namespace
from mirror.fetch.http import HttpFetcher
from mirror.fetch.local import LocalFetcher, path_from_upstream
from mirror.fetch.names import join_url
from mirror.fetch.retry import RetryPolicy

__all__ = [
    "FetchStats",
    "FetchedBytes",
    "FetchedFile",
    "Fetcher",
    "HttpFetcher",
    "LocalFetcher",
    "Namespace",
    "RetryPolicy",
    "open_fetcher",
]


def open_fetcher(
    upstream: str | Path,
    *,
    metadata_url: str | None = None,
    targets_url: str | None = None,
    metadata_prefix: str = "metadata",
    targets_prefix: str = "targets",
    **http_options: object,
) -> Fetcher:
    """A fetcher for ``upstream``: ``http(s)://`` -> ``HttpFetcher``; a path or
    ``file://`` URL -> ``LocalFetcher``.

    The metadata and targets locations default to ``upstream`` joined with
    ``metadata_prefix`` / ``targets_prefix`` (an empty prefix: ``upstream`` itself);
    ``metadata_url`` / ``targets_url`` replace them (URLs for HTTP, paths or
    ``file://`` URLs for a local upstream). ``http_options`` go to ``HttpFetcher``
    (``retry=``, ``transfer_timeout=``...) and are refused for a local upstream.
    """
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
