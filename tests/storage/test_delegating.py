"""The store wrappers beyond the contract suite: ``DelegatingStore`` forwards every
``Store`` method (so no wrapper silently misses one added later), the read-only
stores refuse every write, and ``PrefixedStore`` maps keys under its prefix."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from mirror.airgap.views import BaseView, OverlayView
from mirror.errors import UnsafeNameError
from mirror.fetch import Fetcher
from mirror.storage.base import INTERNAL_PREFIX, ObjectInfo, PutOptions, Store
from mirror.storage.delegating import DelegatingStore
from mirror.storage.memory import MemoryStore
from mirror.storage.prefixed import PrefixedStore
from mirror.storage.readonly import ReadOnlyStore

OPTIONS = PutOptions()
INFO = ObjectInfo("k", 1)


def store_methods() -> set[str]:
    """The public methods of the ``Store`` protocol."""
    return {
        name
        for name, member in vars(Store).items()
        if not name.startswith("_") and inspect.isfunction(member)
    }


class SpyStore:
    """A ``Store`` that records each call (method, arguments) and answers a fixed
    value per method."""

    url = "spy://"

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    async def head(self, key: str) -> ObjectInfo | None:
        self.calls.append(("head", (key,)))
        return INFO

    async def get(self, key: str, *, max_length: int) -> bytes:
        self.calls.append(("get", (key, max_length)))
        return b"got"

    async def iter_chunks(self, key: str, *, chunk_size: int = 1 << 16) -> AsyncIterator[bytes]:
        self.calls.append(("iter_chunks", (key, chunk_size)))
        yield b"chunk"

    async def put_bytes(self, key: str, data: bytes, options: PutOptions) -> None:
        self.calls.append(("put_bytes", (key, data, options)))

    async def put_file(self, key: str, path: Path, options: PutOptions) -> None:
        self.calls.append(("put_file", (key, path, options)))

    async def create_exclusive(self, key: str, data: bytes) -> bool:
        self.calls.append(("create_exclusive", (key, data)))
        return True

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        self.calls.append(("list", (prefix,)))
        yield INFO

    async def delete(self, key: str) -> None:
        self.calls.append(("delete", (key,)))

    async def delete_many(self, keys: Sequence[str]) -> None:
        self.calls.append(("delete_many", (tuple(keys),)))

    def spool_dir(self) -> Path:
        self.calls.append(("spool_dir", ()))
        return Path("spool")

    async def flush(self) -> None:
        self.calls.append(("flush", ()))

    async def aclose(self) -> None:
        self.calls.append(("aclose", ()))


async def _collect(iterator: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in iterator]


async def _sync(value: Any) -> Any:
    return value


#: method -> (call on a store, the call the inner store sees, the answer)
FORWARDED: dict[str, tuple[Callable[[Store], Awaitable[Any]], tuple[Any, ...], Any]] = {
    "head": (lambda s: s.head("a/k"), ("a/k",), INFO),
    "get": (lambda s: s.get("a/k", max_length=9), ("a/k", 9), b"got"),
    "iter_chunks": (
        lambda s: _collect(s.iter_chunks("a/k", chunk_size=3)),
        ("a/k", 3),
        [b"chunk"],
    ),
    "put_bytes": (lambda s: s.put_bytes("a/k", b"x", OPTIONS), ("a/k", b"x", OPTIONS), None),
    "put_file": (
        lambda s: s.put_file("a/k", Path("f"), OPTIONS),
        ("a/k", Path("f"), OPTIONS),
        None,
    ),
    "create_exclusive": (lambda s: s.create_exclusive("a/k", b"x"), ("a/k", b"x"), True),
    "list": (lambda s: _collect(s.list("a/")), ("a/",), [INFO]),
    "delete": (lambda s: s.delete("a/k"), ("a/k",), None),
    "delete_many": (lambda s: s.delete_many(["a/k", "b"]), (("a/k", "b"),), None),
    "spool_dir": (lambda s: _sync(s.spool_dir()), (), Path("spool")),
    "flush": (lambda s: s.flush(), (), None),
    "aclose": (lambda s: s.aclose(), (), None),
}


def test_every_store_method_is_written_out_on_the_delegating_store() -> None:
    """Each public ``Store`` method is defined by ``DelegatingStore`` itself (not
    reached through ``__getattr__``), and the forwarding table below covers it: a
    method added to ``Store`` fails here until the base forwards it."""
    methods = store_methods()
    assert methods == set(FORWARDED)
    assert methods <= set(vars(DelegatingStore))
    assert "__getattr__" not in vars(DelegatingStore)


@pytest.mark.parametrize("method", sorted(FORWARDED))
async def test_the_delegating_store_forwards_each_method(method: str) -> None:
    """Each method reaches the wrapped store once, with the same arguments, and
    its answer comes back unchanged."""
    call, seen, answer = FORWARDED[method]
    inner = SpyStore()
    store = DelegatingStore(inner)

    assert await call(store) == answer
    assert inner.calls == [(method, seen)]
    assert store.url == inner.url


#: write method -> a call of it on a read-only store
WRITES: dict[str, Callable[[Store], Awaitable[Any]]] = {
    "put_bytes": lambda s: s.put_bytes("a/k", b"x", OPTIONS),
    "put_file": lambda s: s.put_file("a/k", Path("f"), OPTIONS),
    "create_exclusive": lambda s: s.create_exclusive("a/k", b"x"),
    "delete": lambda s: s.delete("a/k"),
    "delete_many": lambda s: s.delete_many(["a/k"]),
    "spool_dir": lambda s: _sync(s.spool_dir()),
}


def _read_only_views(inner: Store) -> dict[str, Store]:
    fetcher: Fetcher = None  # type: ignore[assignment]  # a base view without a record never fetches
    return {
        "ReadOnlyStore": ReadOnlyStore(inner),
        "BaseView": BaseView(None, fetcher=fetcher, cache=inner),
        "OverlayView": OverlayView(inner, MemoryStore()),
    }


@pytest.mark.parametrize("view", ["ReadOnlyStore", "BaseView", "OverlayView"])
@pytest.mark.parametrize("write", sorted(WRITES))
async def test_read_only_stores_refuse_every_write(view: str, write: str) -> None:
    """Every write to a read-only store (verify's ``ReadOnlyStore``, the air-gap
    views) is a ``RuntimeError`` naming the store, and the wrapped store sees no
    call at all; ``flush`` has nothing to do."""
    inner = SpyStore()
    store = _read_only_views(inner)[view]

    with pytest.raises(RuntimeError, match=r"read-only store .*: refused to"):
        await WRITES[write](store)
    await store.flush()
    assert inner.calls == []


async def test_read_only_store_reads_and_closes_the_wrapped_store() -> None:
    """``ReadOnlyStore`` reads through to the wrapped store and closes it."""
    inner = SpyStore()
    store = ReadOnlyStore(inner)

    assert await store.get("a/k", max_length=9) == b"got"
    assert [info async for info in store.list("a/")] == [INFO]
    await store.aclose()
    assert [name for name, _ in inner.calls] == ["get", "list", "aclose"]


@pytest.mark.parametrize(
    ("bookkeeping", "key", "stored_as"),
    [
        (None, "metadata/1.root.json", "repositories/r/metadata/1.root.json"),
        (None, ".tuf-mirror/state.json", "repositories/r/.tuf-mirror/state.json"),
        (".tuf-mirror/repositories/r", "targets/a.txt", "repositories/r/targets/a.txt"),
        (
            ".tuf-mirror/repositories/r",
            ".tuf-mirror/state.json",
            ".tuf-mirror/repositories/r/state.json",
        ),
    ],
    ids=["published", "bookkeeping-under-prefix", "published-with-bookkeeping", "bookkeeping"],
)
async def test_prefixed_store_maps_keys(bookkeeping: str | None, key: str, stored_as: str) -> None:
    """A key of the view is ``prefix + key`` of the wrapped store, or, with
    ``bookkeeping``, a ``.tuf-mirror/`` key goes under the bookkeeping prefix;
    ``head`` answers with the view's key."""
    inner = MemoryStore()
    view = PrefixedStore(inner, "repositories/r/", bookkeeping=bookkeeping)

    await view.put_bytes(key, b"data", OPTIONS)

    assert await inner.get(stored_as, max_length=10) == b"data"
    info = await view.head(key)
    assert info is not None
    assert (info.key, info.size) == (key, 4)
    await view.delete_many([key])
    assert await inner.head(stored_as) is None


async def test_prefixed_store_lists_its_keys_and_hides_bookkeeping() -> None:
    """``list`` yields the view's keys under the prefix only, never a bookkeeping
    key even when it was stored under the prefix."""
    inner = MemoryStore(url="memory://mirror/")
    await inner.put_bytes("elsewhere/x", b"1", OPTIONS)
    view = PrefixedStore(inner, "repositories/r")
    await view.put_bytes("metadata/a.json", b"12", OPTIONS)
    await view.put_bytes(f"{INTERNAL_PREFIX}state.json", b"{}", OPTIONS)

    assert {info.key: info.size async for info in view.list("")} == {"metadata/a.json": 2}
    assert view.url == "memory://mirror/repositories/r"


async def test_prefixed_store_of_bookkeeping_does_not_list_and_does_not_close() -> None:
    """A view whose prefix is bookkeeping (the ledger's ``.tuf-mirror/ledger``) refuses
    to list, since the wrapped store never lists those keys; ``aclose`` leaves the
    wrapped store to its opener; unsafe keys are refused before the wrapped store."""
    inner = SpyStore()
    view = PrefixedStore(inner, ".tuf-mirror/ledger")

    with pytest.raises(RuntimeError, match="never listed"):
        await _collect(view.list(""))
    with pytest.raises(UnsafeNameError):
        await view.get("../escape", max_length=1)
    await view.aclose()
    assert inner.calls == []
