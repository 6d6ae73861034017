"""How a run's settings reach its fetcher (``mirror.endpoints.open_endpoints``): retries,
deadline, concurrency, the bandwidth bucket, the partial directory and failover
order; and what a no-op conditional GET costs on the wire."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mirror.config import Settings
from mirror.endpoints import open_endpoints
from mirror.fetch.failover import FailoverFetcher
from mirror.fetch.http import HttpFetcher
from mirror.fetch.local import LocalFetcher
from mirror.fetch.ratelimit import BandwidthSchedule
from tuf_mirror_testing.server import RepoServer

from .conftest import FAST_RETRY, TIMESTAMP


def settings_for(tmp_path: Path, *upstreams: str, **changes: object) -> Settings:
    settings = Settings(
        command="sync",
        root=tmp_path / "root.json",
        dest=str(tmp_path / "dest"),
        upstream=upstreams,
    )
    return dataclasses.replace(settings, **changes)  # type: ignore[arg-type]


async def test_settings_reach_every_http_upstream(tmp_path: Path) -> None:
    """--retries, --timeout, --transfers and --bwlimit reach each HTTP upstream's
    fetcher; all share one bucket; partial downloads live in the store's spool
    directory; the upstream asked for is primary, the others follow in order."""
    settings = settings_for(
        tmp_path,
        "http://a.test",
        "http://b.test",
        "http://c.test",
        retries=2,
        timeout=9.0,
        transfers=3,
        bwlimit=BandwidthSchedule.parse("1M"),
    )

    async with open_endpoints(settings, "http://b.test") as (store, fetcher):
        assert isinstance(fetcher, FailoverFetcher)
        assert list(fetcher.fetchers) == ["http://b.test", "http://a.test", "http://c.test"]
        children = list(fetcher.fetchers.values())
        buckets = set()
        for child in children:
            assert isinstance(child, HttpFetcher)
            assert child.retry.attempts == 2
            assert child.transfer_timeout == 9.0
            assert child.partial_dir == store.spool_dir()
            assert child.bandwidth is not None
            assert child.bandwidth.rate == 1024 * 1024
            buckets.add(id(child.bandwidth))
        assert len(buckets) == 1


async def test_single_upstream_and_plan(tmp_path: Path, upstream: Path) -> None:
    """One HTTP upstream is a plain HttpFetcher without a bucket when --bwlimit is
    unset; plan keeps no partial files; a local upstream gets no HTTP options."""
    http = settings_for(tmp_path, "http://a.test", command="plan")
    async with open_endpoints(http, "http://a.test") as (_, fetcher):
        assert isinstance(fetcher, HttpFetcher)
        assert fetcher.bandwidth is None
        assert fetcher.partial_dir is None

    local = settings_for(tmp_path, str(upstream))
    async with open_endpoints(local, str(upstream)) as (_, fetcher):
        assert isinstance(fetcher, LocalFetcher)


@contextlib.contextmanager
def counting_relay(port: int) -> Iterator[tuple[int, list[int]]]:
    """A TCP relay on 127.0.0.1 to ``port`` that counts the bytes it carries in both
    directions (``counter[0]``): what a run costs on the wire, headers included."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    counter = [0]
    lock = threading.Lock()
    stop = threading.Event()
    sockets: list[socket.socket] = []
    pumps: list[threading.Thread] = []

    def pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                with lock:
                    counter[0] += len(data)
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            upstream = socket.create_connection(("127.0.0.1", port))
            sockets.extend((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                thread = threading.Thread(target=pump, args=(source, sink), daemon=True)
                pumps.append(thread)
                thread.start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()[1], counter
    finally:
        stop.set()
        acceptor.join(5)
        listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in pumps:
            thread.join(5)
        for sock in sockets:
            sock.close()


@pytest.mark.parametrize("validator", ["etag", "last_modified"])
async def test_no_op_conditional_get_costs_well_under_2_kb(
    server: RepoServer, validator: str
) -> None:
    """Asking again for an unchanged timestamp.json with its ETag (If-None-Match) or,
    for an upstream without ETags, its Last-Modified (If-Modified-Since) is a 304 with
    no body: request and answer together stay well under 2 KB on the wire."""
    with counting_relay(server.port) as (port, counter):
        base = f"http://127.0.0.1:{port}"
        fetcher = HttpFetcher(base + "/metadata", base + "/targets", retry=FAST_RETRY)
        try:
            first = await fetcher.fetch_bytes("metadata", "timestamp.json", max_length=1000)
            assert first is not None
            assert first.data == TIMESTAMP
            counter[0] = 0
            again = await fetcher.fetch_bytes(
                "metadata",
                "timestamp.json",
                max_length=1000,
                if_none_match=first.etag if validator == "etag" else None,
                if_modified_since=first.last_modified if validator == "last_modified" else None,
            )
        finally:
            await fetcher.aclose()

    assert again is None
    last = server.requests[-1]
    assert (last.status, last.bytes_sent) == (304, 0)
    assert 0 < counter[0] < 1024
