"""The ledger's storage on every backend: append-only commits, lookups by key,
the right edge and checkpoint, compare-and-swap between two runs, and corruption."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mirror.errors import LockHeldError
from mirror.ledger.entries import Entry, meta_entry, meta_key, target_entry
from mirror.ledger.log import BUNDLE, LedgerConflictError, LedgerLog, checkpoint_of
from mirror.ledger.merkle import hash_leaf, root_of_leaves
from mirror.ledger.note import Signer
from mirror.storage import PutOptions, Store


def _target(path: str, content: bytes, role_version: int = 1) -> Entry:
    return target_entry(
        path=path,
        length=len(content),
        hashes={"sha256": hashlib.sha256(content).hexdigest()},
        role="targets",
        role_version=role_version,
        snapshot_version=1,
        timestamp_version=1,
        time="2026-01-01T00:00:00Z",
    )


async def _items(entries: Sequence[Entry]) -> AsyncIterator[Entry]:
    for entry in entries:
        yield entry


async def test_commit_lookup_and_root(store: Store) -> None:
    """Entries appended over three commits (crossing a bundle boundary) keep their
    order; the checkpoint's root is the RFC 6962 root of their canonical bytes; a
    lookup returns every record of a key, oldest first; the note is signed."""
    signer = Signer("mirror.example/ledger", Ed25519PrivateKey.generate())
    ledger = LedgerLog(store, origin="mirror.example/ledger", signer=signer)
    head = await ledger.head()
    assert head.size == 0
    batches = [
        [_target(f"p/{i}", b"x%d" % i) for i in range(200)],
        [_target(f"p/{i}", b"y%d" % i) for i in range(100)],
        [meta_entry(name="1.root.json", role="root", version=1, data=b"{}", time="t")],
    ]
    for batch in batches:
        head = await ledger.commit(head, _items(batch))
    everything = [entry for batch in batches for entry in batch]
    assert head.size == len(everything) == 301 > BUNDLE
    assert head.checkpoint.root == root_of_leaves([hash_leaf(e.to_bytes()) for e in everything])
    assert checkpoint_of(head.note, [signer.verifier]) == head.checkpoint
    again = await LedgerLog(store, origin="other").head()
    assert again.checkpoint == head.checkpoint
    assert again.seq == 3
    stored = [raw async for _, raw in ledger.entries(0, head.size)]
    assert stored == [e.to_bytes() for e in everything]
    records = await ledger.lookup("p/7", head)
    assert [r.entry.hashes for r in records] == [
        _target("p/7", b"x7").hashes,
        _target("p/7", b"y7").hashes,
    ]
    assert [r.leaf for r in records] == [7, 207]
    assert await ledger.lookup(meta_key("root", 1), head)


async def test_compare_and_swap(store: Store) -> None:
    """Two runs that read the same checkpoint: the first commit moves it, the second
    is LedgerConflictError and changes nothing."""
    first = LedgerLog(store, origin="o")
    second = LedgerLog(store, origin="o")
    base = await first.head()
    moved = await first.commit(base, _items([_target("a", b"1")]))
    with pytest.raises(LedgerConflictError):
        await second.commit(base, _items([_target("b", b"2")]))
    assert (await second.head()).checkpoint == moved.checkpoint
    assert await second.lookup("b", await second.head()) == []


async def test_concurrent_commits_one_wins(store: Store) -> None:
    """Two commits from the same base at the same time: exactly one moves the
    checkpoint; the other fails (lock held or conflict) with nothing moved."""
    base = await LedgerLog(store, origin="o").head()
    outcomes: list[str] = []

    async def commit(name: str) -> None:
        try:
            await LedgerLog(store, origin="o").commit(base, _items([_target(name, b"1")] * 300))
            outcomes.append("moved")
        except (LedgerConflictError, LockHeldError):
            outcomes.append("refused")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(commit, "a")
        nursery.start_soon(commit, "b")
    assert sorted(outcomes) == ["moved", "refused"]
    head = await LedgerLog(store, origin="o").head()
    assert head.seq == 1
    assert head.size == 300


async def test_leftovers_of_an_interrupted_commit_are_ignored(store: Store) -> None:
    """Lines written past the checkpoint by a commit that never moved it are not
    part of the log: lookups ignore them and the next commit overwrites them."""
    ledger = LedgerLog(store, origin="o")
    head = await ledger.commit(await ledger.head(), _items([_target("a", b"1")]))
    await store.put_bytes(
        "entries/000000000", _target("a", b"1").to_bytes() + b"\nleftover\n", PutOptions()
    )
    head = await ledger.commit(head, _items([_target("b", b"2")]))
    assert [raw async for _, raw in ledger.entries(0, 2)] == [
        _target("a", b"1").to_bytes(),
        _target("b", b"2").to_bytes(),
    ]


async def test_index_lines_spill_to_disk(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A commit larger than the in-memory budget for index lines spills them to
    local files and still indexes every entry, in leaf order."""
    from mirror.ledger import log as log_module

    monkeypatch.setattr(log_module._ShardSpool, "BUDGET", 1000)
    ledger = LedgerLog(store, origin="o")
    entries = [_target(f"p/{i % 50}", b"v%d" % i) for i in range(300)]
    head = await ledger.commit(await ledger.head(), _items(entries))
    records = await ledger.lookup("p/7", head)
    assert [r.leaf for r in records] == [7, 57, 107, 157, 207, 257]
    assert not list(store.spool_dir().glob("ledger-index-*"))
