"""Getting bytes from upstreams: HTTP (httpx on trio) and local directories."""

from mirror.fetch.base import FetchedBytes, FetchedFile, Fetcher, FetchStats, Namespace

__all__ = ["FetchStats", "FetchedBytes", "FetchedFile", "Fetcher", "Namespace"]
