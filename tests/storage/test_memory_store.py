"""MemoryStore's test helpers: the write log and failure injection."""

from __future__ import annotations

import pytest

from mirror.errors import StorageError
from mirror.storage.base import PutOptions
from mirror.storage.memory import MemoryStore


async def test_writes_are_logged_in_order() -> None:
    """Every put, exclusive create and delete is appended to `writes`, in order, so
    tests can check publish order."""
    store = MemoryStore()
    await store.put_bytes("targets/a", b"a", PutOptions())
    await store.create_exclusive(".tuf-mirror/lock", b"{}")
    await store.put_bytes("metadata/timestamp.json", b"{}", PutOptions())
    await store.delete(".tuf-mirror/lock")

    assert store.writes == [
        "targets/a",
        ".tuf-mirror/lock",
        "metadata/timestamp.json",
        ".tuf-mirror/lock",
    ]
    assert store.objects["targets/a"].options == PutOptions()


async def test_before_write_can_fail_a_write() -> None:
    """An exception from before_write fails that write and changes nothing."""

    def full_disk(key: str) -> None:
        if key.startswith("metadata/"):
            raise StorageError(f"no space left for {key}")

    store = MemoryStore(before_write=full_disk)
    await store.put_bytes("targets/a", b"a", PutOptions())

    with pytest.raises(StorageError, match="timestamp"):
        await store.put_bytes("metadata/timestamp.json", b"{}", PutOptions())

    assert list(store.objects) == ["targets/a"]
    assert store.writes == ["targets/a"]
