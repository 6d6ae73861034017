"""Bounded resources, by counting: the number of roles and targets a sync holds in
flight does not grow with the repository."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio

from mirror.config import Settings
from mirror.fetch.http import HttpFetcher
from mirror.storage.local import LocalStore
from mirror.sync import Synchronizer
from tuf_mirror_testing.repo import Repository
from tuf_mirror_testing.server import serve_directory


class CountingFetcher:
    """Wraps a fetcher and records how many fetches were in flight at most."""

    def __init__(self, inner: HttpFetcher) -> None:
        self.inner = inner
        self.in_flight = {"metadata": 0, "targets": 0}
        self.peak = {"metadata": 0, "targets": 0}

    @property
    def stats(self) -> Any:
        return self.inner.stats

    async def _count(self, namespace: str, call: Any) -> Any:
        self.in_flight[namespace] += 1
        self.peak[namespace] = max(self.peak[namespace], self.in_flight[namespace])
        try:
            return await call
        finally:
            self.in_flight[namespace] -= 1

    async def fetch_bytes(self, namespace: Any, name: str, **kwargs: Any) -> Any:
        return await self._count(namespace, self.inner.fetch_bytes(namespace, name, **kwargs))

    async def fetch_to_file(self, namespace: Any, name: str, dest: Path, **kwargs: Any) -> Any:
        return await self._count(
            namespace, self.inner.fetch_to_file(namespace, name, dest, **kwargs)
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_roles_and_targets_in_flight_are_bounded(tmp_path: Path) -> None:
    """With 64 bins and 600 targets, at most a window of roles (2 x transfers) and
    `transfers` targets are being fetched at once: memory follows the largest role,
    not the repository."""
    repo = Repository()
    repo.add_hash_bins(64)
    for index in range(600):
        repo.add_target(f"files/{index:04d}.bin", b"%d" % index * 10)
    upstream = tmp_path / "up"
    repo.publish(upstream)
    root = tmp_path / "root.json"
    root.write_bytes(repo.root_bytes(1))
    transfers = 3
    settings = Settings(
        command="sync",
        root=root,
        dest=str(tmp_path / "dest"),
        upstream=("unused",),
        transfers=transfers,
        processes=0,
    )
    with serve_directory(upstream) as server:
        fetcher = CountingFetcher(
            HttpFetcher(server.url + "/metadata/", server.url + "/targets/", max_connections=8)
        )
        store = LocalStore(tmp_path / "dest")
        sync = Synchronizer(
            settings=settings,
            store=store,
            fetcher=fetcher,  # type: ignore[arg-type]
            now=datetime.now(UTC),
        )
        report = await sync.run()
        await fetcher.aclose()
        await store.aclose()
    assert report.targets_fetched == 600
    assert report.roles_verified == 65
    assert 1 < fetcher.peak["metadata"] <= 2 * transfers
    assert 1 < fetcher.peak["targets"] <= transfers
    await trio.lowlevel.checkpoint()
