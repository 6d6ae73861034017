"""ListingStore: presence checks by HEAD until a directory is busy, then by one
listing of it; counted on a MemoryStore that records the calls it receives."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator

import pytest
import trio

from mirror.errors import StorageError
from mirror.storage.base import ObjectInfo, PutOptions
from mirror.storage.listing import ListingStore
from mirror.storage.memory import MemoryStore


class CountingStore(MemoryStore):
    """A MemoryStore that counts head and list calls (one list = one call, whatever
    its size) and can fail its listings."""

    def __init__(self) -> None:
        super().__init__()
        self.heads: list[str] = []
        self.lists: list[str] = []
        self.fail_lists = False

    async def head(self, key: str) -> ObjectInfo | None:
        self.heads.append(key)
        return await super().head(key)

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        self.lists.append(prefix)
        if self.fail_lists:
            raise StorageError("injected listing failure")
        async with contextlib.aclosing(super().list(prefix)) as infos:  # type: ignore[type-var]
            async for info in infos:
                await trio.lowlevel.checkpoint()
                yield info


async def filled(keys: list[str]) -> CountingStore:
    store = CountingStore()
    for key in keys:
        await store.put_bytes(key, key.encode(), PutOptions(sha256=None))
    return store


async def test_heads_below_the_threshold_go_to_the_store() -> None:
    """Fewer head calls in a directory than the threshold: one HEAD each, no listing."""
    inner = await filled(["t/a"])
    store = ListingStore(inner, threshold=4)
    assert [await store.head(k) is not None for k in ("t/a", "t/b", "t/c")] == [True, False, False]
    assert inner.heads == ["t/a", "t/b", "t/c"]
    assert inner.lists == []


async def test_a_busy_directory_is_listed_once() -> None:
    """At the threshold-th head the directory is listed once; after that an absent
    key costs nothing and a present key still gets a real head (for its checksum)."""
    inner = await filled([f"t/{i}" for i in range(0, 20, 2)])  # even keys exist
    store = ListingStore(inner, threshold=3)
    answers = [await store.head(f"t/{i}") for i in range(20)]
    assert [a is not None for a in answers] == [i % 2 == 0 for i in range(20)]
    assert answers[4] == ObjectInfo("t/4", 3, hashlib.sha256(b"t/4").hexdigest())
    assert inner.lists == ["t/"]
    # 2 heads before the listing, then only the present keys (even ones from t/2 on)
    assert inner.heads == ["t/0", "t/1"] + [f"t/{i}" for i in range(2, 20, 2)]
    assert store.heads_saved == 9
    assert store.listed == ["t/"]


async def test_concurrent_heads_share_one_listing() -> None:
    """Many workers heading keys of the same directory at once: one listing, and
    every answer is right."""
    inner = await filled([f"t/{i}" for i in range(50)])
    store = ListingStore(inner, threshold=1)
    results: dict[str, bool] = {}

    async def check(key: str) -> None:
        results[key] = await store.head(key) is not None

    async with trio.open_nursery() as nursery:
        for i in range(100):
            nursery.start_soon(check, f"t/{i}")
    assert results == {f"t/{i}": i < 50 for i in range(100)}
    assert inner.lists == ["t/"]
    assert sorted(inner.heads) == sorted(f"t/{i}" for i in range(50))


async def test_writes_after_the_listing_are_present() -> None:
    """A key this run wrote (put_bytes, put_file, create_exclusive) after the
    listing is present; a deleted one is absent."""
    inner = await filled(["t/old"])
    store = ListingStore(inner, threshold=1)
    assert await store.head("t/new") is None
    await store.put_bytes("t/new", b"x", PutOptions())
    spool = store.spool_dir() / "f"
    spool.write_bytes(b"y")
    await store.put_file("t/file", spool, PutOptions())
    assert await store.create_exclusive("t/lock", b"z")
    for key in ("t/new", "t/file", "t/lock", "t/old"):
        assert await store.head(key) is not None, key
    await store.delete("t/old")
    await store.delete("t/new")
    inner.heads.clear()
    assert await store.head("t/old") is None
    assert await store.head("t/new") is None
    assert inner.heads == []
    await store.aclose()


async def test_subdirectories_and_top_level_keys() -> None:
    """Objects in subdirectories do not answer for the directory's own keys, and a
    key at the top level never triggers a listing of the whole store."""
    inner = await filled(["t/sub/x", "top"])
    store = ListingStore(inner, threshold=1)
    assert await store.head("t/x") is None
    assert await store.head("t/sub/x") is not None
    assert await store.head("top") is not None
    assert await store.head("other") is None
    assert inner.lists == ["t/", "t/sub/"]
    assert inner.heads == ["t/sub/x", "top", "other"]


async def test_the_key_budget_bounds_memory_and_listing() -> None:
    """A directory with more objects than the run's key budget is not kept: its
    keys go back to HEAD, and once the budget is spent nothing is listed again."""
    inner = await filled([f"big/{i}" for i in range(10)] + ["small/a"])
    store = ListingStore(inner, threshold=1, max_keys=5)
    assert await store.head("big/3") is not None
    assert await store.head("big/99") is None
    assert inner.heads == ["big/3", "big/99"], "an abandoned listing answers nothing"
    assert await store.head("small/a") is not None
    assert await store.head("small/b") is None
    assert inner.lists == ["big/"], "no budget left: small/ is not listed"
    assert store.listed == []


async def test_the_budget_counts_every_key_read() -> None:
    """Keys read by successful listings are taken from the budget too."""
    inner = await filled(["a/1", "a/2", "a/3", "b/1", "b/2", "b/3"])
    store = ListingStore(inner, threshold=1, max_keys=4)
    assert await store.head("a/9") is None
    assert await store.head("b/9") is None
    assert store.listed == ["a/"]
    assert inner.heads == ["b/9"]


async def test_a_failed_listing_fails_that_head_and_the_others_fall_back() -> None:
    """A listing that fails raises from the head that started it (a storage error
    like any other); other heads of that directory are answered by the store."""
    inner = await filled(["t/a"])
    inner.fail_lists = True
    store = ListingStore(inner, threshold=1)
    with pytest.raises(StorageError):
        await store.head("t/x")
    assert await store.head("t/a") is not None
    assert await store.head("t/y") is None
    assert inner.lists == ["t/"]
    assert inner.heads == ["t/a", "t/y"]


def test_rejects_nonsense_limits() -> None:
    """A threshold below 1 or a negative budget is a caller bug."""
    with pytest.raises(ValueError, match="threshold"):
        ListingStore(MemoryStore(), threshold=0)
    with pytest.raises(ValueError, match="max_keys"):
        ListingStore(MemoryStore(), max_keys=-1)
