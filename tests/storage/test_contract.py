"""The Store contract: every backend in ``conftest.STORE_FACTORIES`` passes these."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest

from mirror.errors import StorageError, UnsafeNameError
from mirror.storage.base import DELETE_BATCH, NotFoundInStoreError, PutOptions, Store

OPTIONS = PutOptions()


async def listing(store: Store, prefix: str) -> dict[str, int]:
    return {info.key: info.size async for info in store.list(prefix)}


async def read_all(store: Store, key: str, chunk_size: int = 1 << 16) -> bytes:
    return b"".join([chunk async for chunk in store.iter_chunks(key, chunk_size=chunk_size)])


async def test_put_get_round_trip(store: Store) -> None:
    """Bytes put under a key come back unchanged from get and head reports their size."""
    data = b'{"signed": {}}\n' * 100
    await store.put_bytes("metadata/1.root.json", data, OPTIONS)

    assert await store.get("metadata/1.root.json", max_length=len(data)) == data
    info = await store.head("metadata/1.root.json")
    assert info is not None
    assert (info.key, info.size) == ("metadata/1.root.json", len(data))
    assert info.sha256 in (None, hashlib.sha256(data).hexdigest())


async def test_empty_object(store: Store) -> None:
    """A zero-byte object is an object: head gives size 0, get gives b""."""
    await store.put_bytes("targets/empty", b"", OPTIONS)

    assert await store.get("targets/empty", max_length=0) == b""
    info = await store.head("targets/empty")
    assert info is not None
    assert info.size == 0
    assert await listing(store, "targets/") == {"targets/empty": 0}


async def test_put_replaces_and_leaves_no_temporary_objects(store: Store) -> None:
    """A second put replaces the object; listings show only the one final key."""
    await store.put_bytes("metadata/timestamp.json", b"old", OPTIONS)
    await store.put_bytes("metadata/timestamp.json", b"newer content", OPTIONS)

    assert await store.get("metadata/timestamp.json", max_length=100) == b"newer content"
    assert await listing(store, "") == {"metadata/timestamp.json": len(b"newer content")}


async def test_deferred_durability_is_still_atomic_and_flushes(store: Store) -> None:
    """A put with durable=False is visible and complete at once (atomic like any
    put), and flush() makes it durable without error, also on an empty store."""
    await store.flush()
    deferred = dataclasses.replace(OPTIONS, durable=False)
    await store.put_bytes("targets/a/deferred.txt", b"deferred bytes", deferred)
    assert await store.get("targets/a/deferred.txt", max_length=100) == b"deferred bytes"
    assert await listing(store, "targets/") == {"targets/a/deferred.txt": 14}
    await store.flush()
    assert await store.get("targets/a/deferred.txt", max_length=100) == b"deferred bytes"


async def test_head_of_missing_key_is_none(store: Store) -> None:
    """head answers None, not an exception, for a key that does not exist."""
    assert await store.head("metadata/missing.json") is None
    await store.put_bytes("metadata/present.json", b"x", OPTIONS)
    assert await store.head("metadata/missing.json") is None
    assert await store.head("metadata") is None


async def test_get_of_missing_key_raises_not_found(store: Store) -> None:
    """get of an absent key raises NotFoundInStoreError (a StorageError)."""
    with pytest.raises(NotFoundInStoreError):
        await store.get("metadata/missing.json", max_length=10)
    await store.put_bytes("metadata/a/b.json", b"x", OPTIONS)
    with pytest.raises(NotFoundInStoreError):
        await store.get("metadata/a", max_length=10)


async def test_get_enforces_max_length(store: Store) -> None:
    """An object larger than max_length is refused; exactly max_length is fine."""
    await store.put_bytes("metadata/big.json", b"x" * 1000, OPTIONS)

    with pytest.raises(StorageError) as excinfo:
        await store.get("metadata/big.json", max_length=999)
    assert not isinstance(excinfo.value, NotFoundInStoreError)
    assert "metadata/big.json" in str(excinfo.value)
    assert await store.get("metadata/big.json", max_length=1000) == b"x" * 1000


async def test_iter_chunks_streams_the_whole_object(store: Store) -> None:
    """iter_chunks yields the object's bytes in order, no chunk above chunk_size."""
    data = bytes(range(256)) * 41
    await store.put_bytes("targets/blob.bin", data, OPTIONS)

    chunks = [chunk async for chunk in store.iter_chunks("targets/blob.bin", chunk_size=1000)]

    assert b"".join(chunks) == data
    assert all(0 < len(chunk) <= 1000 for chunk in chunks)


async def test_iter_chunks_of_missing_key_raises_not_found(store: Store) -> None:
    """iter_chunks of an absent key raises NotFoundInStoreError on first iteration."""
    with pytest.raises(NotFoundInStoreError):
        await read_all(store, "targets/missing")


async def test_put_file_publishes_and_consumes_the_spool_file(store: Store) -> None:
    """put_file publishes the spool file's bytes under the key and removes the file."""
    data = b"target content\n" * 1000
    spool = store.spool_dir()
    path = spool / "download-1"
    path.write_bytes(data)

    await store.put_file("targets/dir/abc123.file.txt", path, OPTIONS)

    assert not path.exists()
    assert await store.get("targets/dir/abc123.file.txt", max_length=len(data)) == data
    assert await listing(store, "targets/") == {"targets/dir/abc123.file.txt": len(data)}


async def test_put_file_replaces_an_existing_object(store: Store) -> None:
    """put_file over an existing key replaces the object."""
    await store.put_bytes("targets/file", b"old", OPTIONS)
    path = store.spool_dir() / "download-2"
    path.write_bytes(b"new")

    await store.put_file("targets/file", path, OPTIONS)

    assert await store.get("targets/file", max_length=10) == b"new"


async def test_create_exclusive_creates_once(store: Store) -> None:
    """create_exclusive returns True the first time and False after, keeping the
    first content."""
    assert await store.create_exclusive(".tuf-mirror/lock", b"first") is True
    assert await store.create_exclusive(".tuf-mirror/lock", b"second") is False
    assert await store.get(".tuf-mirror/lock", max_length=100) == b"first"

    await store.delete(".tuf-mirror/lock")
    assert await store.create_exclusive(".tuf-mirror/lock", b"third") is True
    assert await store.get(".tuf-mirror/lock", max_length=100) == b"third"


async def test_create_exclusive_fails_over_a_put_object(store: Store) -> None:
    """create_exclusive does not overwrite an object written with put_bytes."""
    await store.put_bytes("metadata/x.json", b"put", OPTIONS)
    assert await store.create_exclusive("metadata/x.json", b"exclusive") is False
    assert await store.get("metadata/x.json", max_length=100) == b"put"


async def test_list_filters_by_string_prefix(store: Store) -> None:
    """list yields every key starting with the prefix (not only whole directories)."""
    objects = {
        "metadata/1.root.json": b"1",
        "metadata/2.root.json": b"22",
        "metadata/timestamp.json": b"333",
        "targets/a/b.txt": b"4444",
        "targets/ab.txt": b"55555",
        "targets/c/d/e.txt": b"666666",
    }
    for key, data in objects.items():
        await store.put_bytes(key, data, OPTIONS)
    sizes = {key: len(data) for key, data in objects.items()}

    assert await listing(store, "") == sizes
    assert await listing(store, "metadata/") == {k: v for k, v in sizes.items() if k[0] == "m"}
    assert await listing(store, "metadata/1.") == {"metadata/1.root.json": 1}
    assert await listing(store, "targets/a") == {"targets/a/b.txt": 4, "targets/ab.txt": 5}
    assert await listing(store, "targets/c/d/") == {"targets/c/d/e.txt": 6}
    assert await listing(store, "targets/c/d/e.txt") == {"targets/c/d/e.txt": 6}
    assert await listing(store, "nothing/") == {}
    assert await listing(store, "targets/zzz") == {}


async def test_list_hides_internal_keys(store: Store) -> None:
    """Keys under .tuf-mirror/ (lock, spool) never appear in listings."""
    await store.create_exclusive(".tuf-mirror/lock", b"{}")
    await store.put_bytes(".tuf-mirror/state.json", b"{}", OPTIONS)
    await store.put_bytes("metadata/1.root.json", b"{}", OPTIONS)

    assert await listing(store, "") == {"metadata/1.root.json": 2}
    assert await listing(store, ".tuf-mirror/") == {}
    assert await store.head(".tuf-mirror/lock") is not None


async def test_delete_is_idempotent(store: Store) -> None:
    """delete removes the object; deleting an absent key is not an error."""
    await store.put_bytes("targets/old.txt", b"x", OPTIONS)

    await store.delete("targets/old.txt")
    await store.delete("targets/old.txt")
    await store.delete("targets/never-existed.txt")

    assert await store.head("targets/old.txt") is None
    assert await listing(store, "") == {}


async def test_delete_many_removes_exactly_the_given_keys(store: Store) -> None:
    """delete_many removes every given key (absent ones are no error) and nothing
    else; an empty batch does nothing."""
    keys = [f"targets/d{index % 3}/{index}.txt" for index in range(7)]
    for key in keys:
        await store.put_bytes(key, b"x", OPTIONS)
    await store.put_bytes(".tuf-mirror/state.json", b"{}", OPTIONS)

    await store.delete_many([*keys[:5], "targets/never-existed.txt"])
    await store.delete_many([])

    assert await listing(store, "") == {keys[5]: 1, keys[6]: 1}
    assert await store.head(".tuf-mirror/state.json") is not None


async def test_delete_many_takes_a_full_batch_and_refuses_more(store: Store) -> None:
    """A batch of DELETE_BATCH keys is one call; one more key is a caller bug."""
    keys = [f"targets/{index}.txt" for index in range(DELETE_BATCH)]
    for key in keys[:3]:
        await store.put_bytes(key, b"x", OPTIONS)

    await store.delete_many(keys)
    with pytest.raises(ValueError, match="at most"):
        await store.delete_many([*keys, "targets/extra.txt"])

    assert await listing(store, "") == {}


async def test_list_reports_a_modification_time_not_before_the_write(store: Store) -> None:
    """list's ``modified`` is never earlier than the write it describes, so an
    object written after a moment is never taken for an older one."""
    before = datetime.now(UTC)
    await store.put_bytes("targets/new.txt", b"x", OPTIONS)

    [info] = [info async for info in store.list("targets/")]

    assert info.modified is not None
    assert info.modified >= before


@pytest.mark.parametrize(
    "key",
    [
        "targets/with space/file name.txt",
        "metadata/1.a%2Fb.json",
        "metadata/1.%5Bbracket%5D.json",
        "targets/100%.txt",
        "targets/ünïcødé/文件.txt",
        "targets/emoji-🦀.bin",
        "targets/.hidden",
        "targets/+plus&amp;=?#.txt",
    ],
)
async def test_unusual_but_safe_names_are_stored_verbatim(store: Store, key: str) -> None:
    """Spaces, percent signs (%2F stays literal), unicode and punctuation are kept
    exactly: put, head, get, list and delete all see the same key."""
    await store.put_bytes(key, key.encode(), OPTIONS)

    assert await store.get(key, max_length=1000) == key.encode()
    assert await listing(store, "") == {key: len(key.encode())}
    assert await listing(store, key) == {key: len(key.encode())}
    prefix = key.rpartition("/")[0] + "/"
    assert await listing(store, prefix) == {key: len(key.encode())}
    if "%2F" in key:
        assert await store.head(key.replace("%2F", "/")) is None
    await store.delete(key)
    assert await store.head(key) is None


UNSAFE_KEYS = [
    "",
    "/etc/passwd",
    "../outside",
    "metadata/../../outside",
    "metadata/..",
    "./metadata/x",
    "metadata/./x",
    "metadata//x",
    "metadata/",
    "metadata\\x",
    "metadata/x\0y",
]


def _operations(store: Store) -> dict[str, Callable[[str], Awaitable[object]]]:
    async def iterate(key: str) -> object:
        return await read_all(store, key)

    return {
        "head": store.head,
        "get": lambda key: store.get(key, max_length=10),
        "iter_chunks": iterate,
        "put_bytes": lambda key: store.put_bytes(key, b"x", OPTIONS),
        "create_exclusive": lambda key: store.create_exclusive(key, b"x"),
        "delete": store.delete,
        "delete_many": lambda key: store.delete_many([key]),
    }


@pytest.mark.parametrize("key", UNSAFE_KEYS)
async def test_unsafe_keys_are_rejected_by_every_operation(store: Store, key: str) -> None:
    """Keys that could escape the destination raise UnsafeNameError everywhere and
    write nothing."""
    refused = []
    for name, operation in _operations(store).items():
        try:
            await operation(key)
        except UnsafeNameError:
            refused.append(name)
    assert refused == list(_operations(store))
    assert await listing(store, "") == {}


async def test_put_file_rejects_unsafe_keys(store: Store) -> None:
    """put_file refuses an unsafe key and leaves the spool file where it was."""
    path = store.spool_dir() / "download-3"
    path.write_bytes(b"x")

    with pytest.raises(UnsafeNameError):
        await store.put_file("../escape", path, OPTIONS)

    assert path.read_bytes() == b"x"


@pytest.mark.parametrize("prefix", ["/abs", "../x", "a//b", "a/../b", "a\\b"])
async def test_list_rejects_unsafe_prefixes(store: Store, prefix: str) -> None:
    """list refuses prefixes that could not start a safe key."""
    with pytest.raises(UnsafeNameError):
        await listing(store, prefix)


async def test_put_options_do_not_change_content(store: Store) -> None:
    """Publishing hints (content type, cache control, sha256) do not alter the bytes."""
    data = b'{"signed": {"version": 3}}'
    options = PutOptions(
        content_type="application/json",
        cache_control="public, max-age=31536000, immutable",
        sha256=hashlib.sha256(data).hexdigest(),
    )
    await store.put_bytes("metadata/3.snapshot.json", data, options)

    assert await store.get("metadata/3.snapshot.json", max_length=100) == data
