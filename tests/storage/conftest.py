"""The backends the storage contract suite runs against.

``STORE_FACTORIES`` maps a backend name to an async context manager factory that
takes a fresh temporary directory and yields an empty ``Store``. Every test that
asks for the ``store`` fixture runs once per entry, so adding a backend is one
line here (plus its factory).

The wrappers built on ``DelegatingStore`` that must behave as a store (the listing
cache, the key-prefix view, the air-gap recorder) run the same suite over a memory
or local store; the read-only ones have their own table of refused writes in
``test_delegating.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from mirror.airgap.views import RecordingStore
from mirror.storage.base import INTERNAL_PREFIX, Store
from mirror.storage.delegating import DelegatingStore
from mirror.storage.listing import ListingStore
from mirror.storage.local import LocalStore
from mirror.storage.memory import MemoryStore
from mirror.storage.prefixed import PrefixedStore
from mirror.storage.s3 import S3Store, make_client

StoreFactory = Callable[[Path], contextlib.AbstractAsyncContextManager[Store]]


@contextlib.asynccontextmanager
async def memory_store(tmp_path: Path) -> AsyncIterator[Store]:
    store = MemoryStore()
    try:
        yield store
    finally:
        await store.aclose()


@contextlib.asynccontextmanager
async def local_store(tmp_path: Path) -> AsyncIterator[Store]:
    # A root that does not exist yet: the store creates it on the first write.
    store = LocalStore(tmp_path / "destination")
    try:
        yield store
    finally:
        await store.aclose()


@contextlib.asynccontextmanager
async def s3_store(tmp_path: Path) -> AsyncIterator[Store]:
    # S3 on moto's in-process mock; a key prefix, so the store's own keys are not
    # the whole bucket. mock_aws supplies fake credentials.
    from moto import mock_aws

    with mock_aws():
        client = make_client(region="us-east-1")
        client.create_bucket(Bucket="tuf-mirror-contract")
        store = S3Store("tuf-mirror-contract", "mirror", client=client, spool_root=tmp_path)
        try:
            yield store
        finally:
            await store.aclose()


@contextlib.asynccontextmanager
async def delegating_store(tmp_path: Path) -> AsyncIterator[Store]:
    async with memory_store(tmp_path) as inner:
        yield DelegatingStore(inner)


@contextlib.asynccontextmanager
async def listing_store(tmp_path: Path) -> AsyncIterator[Store]:
    # threshold=1: every head in a directory goes through its listing.
    async with local_store(tmp_path) as inner:
        yield ListingStore(inner, threshold=1)


@contextlib.asynccontextmanager
async def prefixed_store(tmp_path: Path) -> AsyncIterator[Store]:
    # As a secondary repository of a trust policy sees the destination.
    async with local_store(tmp_path) as inner:
        yield PrefixedStore(
            inner, "repositories/other", bookkeeping=f"{INTERNAL_PREFIX}repositories/other"
        )


@contextlib.asynccontextmanager
async def prefixed_memory_store(tmp_path: Path) -> AsyncIterator[Store]:
    # Without ``bookkeeping``: ``.tuf-mirror/`` keys of the view live under the prefix.
    async with memory_store(tmp_path) as inner:
        yield PrefixedStore(inner, "repositories/other")


@contextlib.asynccontextmanager
async def recording_store(tmp_path: Path) -> AsyncIterator[Store]:
    async with memory_store(tmp_path) as inner:
        yield RecordingStore(inner)


#: backend name -> factory; one line per backend.
STORE_FACTORIES: dict[str, StoreFactory] = {
    "memory": memory_store,
    "local": local_store,
    "s3": s3_store,
    "delegating(memory)": delegating_store,
    "listing(local)": listing_store,
    "prefixed(local)": prefixed_store,
    "prefixed(memory)": prefixed_memory_store,
    "recording(memory)": recording_store,
}


@pytest.fixture(params=sorted(STORE_FACTORIES))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An empty store of each registered backend."""
    async with STORE_FACTORIES[request.param](tmp_path) as opened:
        yield opened
