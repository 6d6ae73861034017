"""The backends the storage contract suite runs against.

``STORE_FACTORIES`` maps a backend name to an async context manager factory that
takes a fresh temporary directory and yields an empty ``Store``. Every test that
asks for the ``store`` fixture runs once per entry, so adding a backend is one
line here (plus its factory).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from mirror.storage.base import Store
from mirror.storage.local import LocalStore
from mirror.storage.memory import MemoryStore
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


#: backend name -> factory; one line per backend.
STORE_FACTORIES: dict[str, StoreFactory] = {
    "memory": memory_store,
    "local": local_store,
    "s3": s3_store,
}


@pytest.fixture(params=sorted(STORE_FACTORIES))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An empty store of each registered backend."""
    async with STORE_FACTORIES[request.param](tmp_path) as opened:
        yield opened
