"""What the ledger's hooks cost, counted on a store that records its calls: a run
reads and writes each index shard at most once (O(shards), not O(targets)), its
shards a run will need are read side by side (``prefetch``), its
spool reaches a thread once per MiB (not once per entry), and what it leaves is
what the canonical encoder gives (entries, index lines, root), whichever hook
(``observe_target`` or ``observe_targets``) recorded it."""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
import trio

from mirror.errors import StorageError
from mirror.ledger.entries import (
    INDEX_SHARDS_HEX,
    IndexRecord,
    meta_key,
    parse_entry,
    shard_of,
    target_entry,
)
from mirror.ledger.log import _PARALLEL_READS, LedgerCorruptError, LedgerLog
from mirror.ledger.merkle import hash_leaf, root_of_leaves
from mirror.ledger.spool import EntrySpool
from mirror.ledger.witness import RunWitness
from mirror.plan import RoleChange
from mirror.storage import PutOptions, Store
from mirror.storage.local import LocalStore
from mirror.storage.memory import MemoryStore
from mirror.storage.prefixed import PrefixedStore
from mirror.trust import TargetFile, TrustedSet

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SHARDS = 16**INDEX_SHARDS_HEX


class CountingStore(MemoryStore):
    """A MemoryStore that records the keys it is asked to get and to put."""

    def __init__(self) -> None:
        super().__init__()
        self.gets: list[str] = []
        self.puts: list[str] = []

    async def get(self, key: str, *, max_length: int) -> bytes:
        self.gets.append(key)
        return await super().get(key, max_length=max_length)

    async def put_bytes(self, key: str, data: bytes, options: PutOptions) -> None:
        self.puts.append(key)
        await super().put_bytes(key, data, options)

    def reset(self) -> None:
        self.gets.clear()
        self.puts.clear()


class _NoSnapshot:
    """``begin``'s verified state without a snapshot (role versions 0)."""

    snapshot = None
    timestamp = None


def targets(prefix: str, count: int, content: bytes = b"") -> list[TargetFile]:
    return [
        TargetFile(
            100 + i,
            {"sha256": hashlib.sha256(b"%s%d%s" % (prefix.encode(), i, content)).hexdigest()},
            f"files/{prefix}/file-{i:05d}.bin",
        )
        for i in range(count)
    ]


def role_of(index: int) -> str:
    return f"bin-{index % 7}"


def in_role_order(observed: list[TargetFile]) -> list[tuple[str, TargetFile]]:
    """(role, target) in the order ``run(batch=True)`` observes them."""
    by_role: dict[str, list[TargetFile]] = {}
    for index, target in enumerate(observed):
        by_role.setdefault(role_of(index), []).append(target)
    return [(role, target) for role, items in by_role.items() for target in items]


async def run(
    store: Store, observed: list[TargetFile], *, batch: bool = False, **options: Any
) -> RunWitness:
    """One run of the witness: every target observed (published), then committed."""
    witness = RunWitness(ledger=LedgerLog(store, origin="o"), now=NOW, **options)
    await witness.start()
    try:
        await witness.begin(cast("TrustedSet", _NoSnapshot()))
        if batch:
            by_role: dict[str, list[tuple[TargetFile, bool]]] = {}
            for role, target in in_role_order(observed):
                by_role.setdefault(role, []).append((target, True))
            for role, items in by_role.items():
                await witness.observe_targets(role, items)
        else:
            for index, target in enumerate(observed):
                await witness.observe_target(role_of(index), target, published=True)
        await witness.after_publish()
    finally:
        await witness.aclose()
    return witness


def index_keys(keys: list[str]) -> Counter[str]:
    return Counter(key for key in keys if key.startswith("index/"))


@pytest.mark.parametrize("count", [50, 2000], ids=["50-targets", "2000-targets"])
async def test_each_shard_is_read_and_written_at_most_once_per_run(count: int) -> None:
    """A first run (empty ledger) reads no index shard and writes each touched
    shard once; an incremental one (``count`` new targets, the old ones observed
    again) reads every index shard at most once and writes each touched shard
    once: the shard reads and writes do not grow with the targets."""
    store = CountingStore()
    first = targets("a", count)
    await run(store, first)
    assert index_keys(store.gets) == Counter()
    assert set(index_keys(store.puts).values()) == {1}
    assert len(index_keys(store.puts)) <= SHARDS
    store.reset()
    witness = await run(store, first + targets("b", count))
    assert witness.appended == count
    for counted in (index_keys(store.gets), index_keys(store.puts)):
        assert set(counted.values()) == {1}
        assert len(counted) <= SHARDS
    head = await LedgerLog(store, origin="o").head()
    assert head.size == 2 * count


async def test_spool_reaches_a_thread_once_per_mib() -> None:
    """Entries are appended in memory and written in one thread hop per
    ``EntrySpool.DRAIN`` bytes (plus the final flush), not once per entry."""
    store = CountingStore()
    observed = targets("a", 6000)
    witness = RunWitness(ledger=LedgerLog(store, origin="o"), now=NOW)
    await witness.start()
    try:
        await witness.begin(cast("TrustedSet", _NoSnapshot()))
        for index, target in enumerate(observed):
            await witness.observe_target(role_of(index), target, published=True)
        spool = witness._spool
        assert spool is not None
        size = spool.path.stat().st_size + sum(len(raw) + 1 for raw in spool._entries)
        assert size > EntrySpool.DRAIN
        assert spool.writes == size // EntrySpool.DRAIN
        await witness.after_publish()
        assert spool.writes == size // EntrySpool.DRAIN + 1
    finally:
        await witness.aclose()


@pytest.mark.parametrize("batch", [False, True], ids=["observe_target", "observe_targets"])
async def test_a_run_leaves_the_canonical_bytes(batch: bool) -> None:
    """The entries committed are target_entry(...).to_bytes() of what was observed,
    the root is their RFC 6962 root, and every index line is the canonical
    IndexRecord line, whichever hook observed the targets."""
    store = MemoryStore()
    first, second = targets("a", 300), targets("b", 300)
    await run(store, first, batch=batch)
    await run(store, first + second, batch=batch)
    if batch:
        new = {target.path for target in second}
        order = in_role_order(first) + [
            (role, target) for role, target in in_role_order(first + second) if target.path in new
        ]
    else:
        order = [(role_of(i), target) for i, target in enumerate(first + second)]
    assert len({target.path for _, target in order}) == len(order) == 600
    expected = [
        target_entry(
            path=target.path,
            length=target.length,
            hashes=target.hashes,
            role=role,
            role_version=0,
            snapshot_version=None,
            timestamp_version=None,
            time="2026-01-02T03:04:05Z",
        ).to_bytes()
        for role, target in order
    ]
    ledger = LedgerLog(store, origin="o")
    head = await ledger.head()
    assert [raw async for _, raw in ledger.entries(0, head.size)] == expected
    assert head.checkpoint.root == root_of_leaves([hash_leaf(raw) for raw in expected])
    lines = 0
    for number in range(SHARDS):
        key = f"index/{number:02x}.jsonl"
        if await store.head(key) is None:
            continue
        for line in (await store.get(key, max_length=1 << 30)).splitlines():
            record = IndexRecord.from_line(line)
            assert record.to_line() == line + b"\n"
            assert expected[record.leaf] == parse_entry(record.entry.to_bytes()).to_bytes()
            lines += 1
    assert lines == head.size


async def test_observe_targets_raises_the_alarms_of_observe_target() -> None:
    """A recorded target whose content changed, observed in a batch: the same
    TARGET_MUTATION alarm (``--immutable``) and the new content recorded."""
    store = MemoryStore()
    first = targets("a", 20)
    await run(store, first, batch=True)
    changed = targets("a", 20, content=b"changed")
    witness = await run(store, changed[:3] + first[3:], batch=True, immutable=("files/a/*",))
    assert [(a.type, a.subject) for a in witness.alarms] == [
        ("TARGET_MUTATION", target.path) for target in changed[:3]
    ]
    assert witness.appended == 3


async def test_leftover_index_lines_are_dropped_by_the_next_commit() -> None:
    """Index lines past the checkpoint (a commit interrupted after writing its
    shards) are ignored by lookups and not written back by the next commit."""
    store = MemoryStore()
    await run(store, targets("a", 1))
    ledger = LedgerLog(store, origin="o")
    head = await ledger.head()
    path = targets("a", 1)[0].path
    records = await ledger.lookup(path, head)
    key = f"index/{shard_of(path)}.jsonl"
    stored = await store.get(key, max_length=1 << 20)
    leftover = IndexRecord(path, 5, records[0].entry).to_line()
    await store.put_bytes(key, stored + leftover, PutOptions())
    fresh = LedgerLog(store, origin="o")
    assert [r.leaf for r in await fresh.lookup(path, head)] == [0]
    await run(store, targets("a", 1, content=b"new"))
    assert leftover not in await store.get(key, max_length=1 << 20)
    again = LedgerLog(store, origin="o")
    assert [r.leaf for r in await again.lookup(path, await again.head())] == [0, 1]


class FailingStore(CountingStore):
    """A CountingStore whose writes of keys starting with ``prefix`` fail."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    async def put_bytes(self, key: str, data: bytes, options: PutOptions) -> None:
        if key.startswith(self.prefix):
            raise StorageError(f"injected failure writing {key}")
        await super().put_bytes(key, data, options)


@pytest.mark.parametrize("prefix", ["entries/", "index/"], ids=["bundle", "shard"])
async def test_a_failed_write_fails_the_commit_with_its_own_error(prefix: str) -> None:
    """The commit's writes run side by side; one that fails makes the commit raise
    that StorageError (not a group of errors) and the checkpoint does not move."""
    store = FailingStore(prefix)
    with pytest.raises(StorageError, match="injected failure"):
        await run(store, targets("a", 3 * 256 + 5))
    assert (await LedgerLog(store, origin="o").head()).size == 0


class SlowCountingStore(CountingStore):
    """A CountingStore whose reads yield to the scheduler a few times, counting the
    reads in flight at once."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = 0
        self.most_in_flight = 0

    async def get(self, key: str, *, max_length: int) -> bytes:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            for _ in range(3):
                await trio.lowlevel.checkpoint()
            return await super().get(key, max_length=max_length)
        finally:
            self.in_flight -= 1


class StepCounter(trio.abc.Instrument):
    """Counts the task steps the scheduler runs: none while a call does not yield."""

    def __init__(self) -> None:
        self.count = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.count += 1


async def test_prefetch_reads_the_shards_side_by_side_once() -> None:
    """``prefetch`` reads the index shards of the keys given, several at a time and
    each once; lookups of those keys then read nothing, a second prefetch of them
    does not even yield to the scheduler, and concurrent lookups of a shard not read
    yet share one read."""
    store = SlowCountingStore()
    first = targets("a", 400)
    await run(store, first)
    ledger = LedgerLog(store, origin="o")
    head = await ledger.head()
    store.reset()
    store.most_in_flight = 0
    keys = [target.path for target in first[:200]]
    await ledger.prefetch(keys, head)
    shards = {shard_of(key) for key in keys}
    assert index_keys(store.gets) == Counter({f"index/{shard}.jsonl": 1 for shard in shards})
    assert ledger.shard_reads == len(shards)
    assert 1 < store.most_in_flight <= _PARALLEL_READS
    for key in keys:
        assert [record.key for record in await ledger.lookup(key, head)] == [key]
    assert ledger.shard_reads == len(shards)
    steps = StepCounter()
    trio.lowlevel.add_instrument(steps)
    try:
        await ledger.prefetch(keys, head)  # all read: returns without yielding
    finally:
        trio.lowlevel.remove_instrument(steps)
    assert steps.count == 0
    rest = [target.path for target in first[200:] if shard_of(target.path) not in shards]
    assert rest
    store.reset()
    async with trio.open_nursery() as nursery:
        for key in rest:
            nursery.start_soon(ledger.lookup, key, head)
    assert set(index_keys(store.gets).values()) == {1}


async def test_begin_prefetches_the_changed_roles_shards() -> None:
    """``begin`` with the snapshot's changed roles reads the shards of their old and
    new versions' keys at once; the walk's checks of those versions then read no
    shard."""
    store = CountingStore()
    await run(store, targets("a", 300))
    witness = RunWitness(ledger=LedgerLog(store, origin="o"), now=NOW)
    await witness.start()
    try:
        changes = [RoleChange(f"bins-{index:02x}", 1, 2) for index in range(64)]
        store.reset()
        await witness.begin(cast("TrustedSet", _NoSnapshot()), changes)
        wanted = {shard_of(meta_key(c.name, v)) for c in changes for v in (1, 2)}
        assert set(index_keys(store.gets)) == {f"index/{shard}.jsonl" for shard in wanted}
        reads = len(store.gets)
        for change in changes:
            await witness.check_published("k", change.name, 1, b"unrecorded")
        assert len(store.gets) == reads
    finally:
        await witness.aclose()


async def test_prefetch_of_an_unreadable_shard_is_the_ledgers_error() -> None:
    """A shard that holds a line that is no index record makes ``prefetch`` raise
    ``LedgerCorruptError`` naming the shard (exit 1), as the lookup would: one
    error, not a group of the reads in flight."""
    store = CountingStore()
    first = targets("a", 200)
    await run(store, first)
    ledger = LedgerLog(store, origin="o")
    head = await ledger.head()
    broken = shard_of(first[0].path)
    key = f"index/{broken}.jsonl"
    data = await store.get(key, max_length=1 << 30)
    await store.put_bytes(key, data + b"not a record\n", PutOptions())
    with pytest.raises(LedgerCorruptError, match=f"index/{broken}.jsonl: unreadable line"):
        await ledger.prefetch([target.path for target in first], head)


def local_ledger_store(root: Path) -> Store:
    """The ledger's store in a sync run on a local destination: a view of
    ``DEST/.tuf-mirror/ledger`` on the destination's ``LocalStore``."""
    return PrefixedStore(LocalStore(root), ".tuf-mirror/ledger")


async def shard_files(store: Store) -> dict[str, bytes]:
    out = {}
    for number in range(SHARDS):
        key = f"index/{number:02x}.jsonl"
        if await store.head(key) is not None:
            out[key] = await store.get(key, max_length=1 << 30)
    return out


async def test_a_local_ledger_appends_to_its_shards_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a local destination a commit appends its index lines to the shards that
    exist (``replace_tail``: no whole rewrite), writes the new ones whole, and
    leaves byte for byte the shards a store without appends gets."""
    store = local_ledger_store(tmp_path)
    memory = MemoryStore()
    first, second = targets("a", 300), targets("b", 300)
    await run(store, first)
    await run(memory, first)
    existing = set(await shard_files(store))
    tails: list[str] = []
    puts: list[str] = []
    real_tail, real_put = LocalStore.replace_tail, LocalStore.put_bytes

    async def replace_tail(self: LocalStore, key: str, **kwargs: Any) -> bool:
        tails.append(key)
        return await real_tail(self, key, **kwargs)

    async def put_bytes(self: LocalStore, key: str, data: bytes, options: PutOptions) -> None:
        puts.append(key)
        await real_put(self, key, data, options)

    monkeypatch.setattr(LocalStore, "replace_tail", replace_tail)
    monkeypatch.setattr(LocalStore, "put_bytes", put_bytes)
    await run(store, first + second)
    await run(memory, first + second)
    written = await shard_files(store)
    assert written == await shard_files(memory)
    prefix = ".tuf-mirror/ledger/"
    touched = {f"index/{shard_of(target.path)}.jsonl" for target in second}
    assert touched & existing
    assert touched - existing
    assert sorted(tails) == sorted(prefix + key for key in touched & existing)
    assert sorted(key for key in puts if key.startswith(prefix + "index/")) == sorted(
        prefix + key for key in touched - existing
    )


async def test_a_shard_cut_short_by_a_crash_is_read_and_mended(tmp_path: Path) -> None:
    """An append interrupted by a crash leaves a part of a line past the checkpoint:
    lookups read the committed records as before, and the next commit that adds to
    the shard cuts the part off first (the shard is then what an uninterrupted
    history gives)."""
    store = local_ledger_store(tmp_path)
    memory = MemoryStore()
    first, second = targets("a", 40), targets("a", 40, content=b"new")
    await run(store, first)
    await run(memory, first)
    path = first[0].path
    key = f"index/{shard_of(path)}.jsonl"
    committed = await store.get(key, max_length=1 << 20)
    torn = IndexRecord(path, 999, parse_entry(target_entry_bytes_of(first[0]))).to_line()[:-20]
    tmp_path.joinpath(".tuf-mirror", "ledger", key).write_bytes(committed + torn)
    ledger = LedgerLog(store, origin="o")
    head = await ledger.head()
    assert [record.leaf for record in await ledger.lookup(path, head)] == [
        record.leaf for record in await LedgerLog(memory, origin="o").lookup(path, head)
    ]
    await run(store, second)
    await run(memory, second)
    assert await shard_files(store) == await shard_files(memory)


async def test_a_committed_index_line_cut_short_is_corruption(tmp_path: Path) -> None:
    """A shard whose last committed record lost its newline was not left so by a
    commit (whole lines, made durable before the checkpoint moves): a lookup in it
    raises ``LedgerCorruptError`` (exit 1)."""
    store = local_ledger_store(tmp_path)
    first = targets("a", 40)
    await run(store, first)
    key = f"index/{shard_of(first[0].path)}.jsonl"
    shard = tmp_path.joinpath(".tuf-mirror", "ledger", key)
    shard.write_bytes(shard.read_bytes()[:-1])
    ledger = LedgerLog(store, origin="o")
    with pytest.raises(LedgerCorruptError, match="a committed line without its end"):
        await ledger.lookup(first[0].path, await ledger.head())


async def test_a_shard_changed_since_it_was_read_is_written_whole(tmp_path: Path) -> None:
    """When a shard is no longer the size the run read (another writer), the commit
    does not append to it: it writes the committed lines it read and its own."""
    store = local_ledger_store(tmp_path)
    memory = MemoryStore()
    first, second = targets("a", 40), targets("b", 40)
    await run(store, first)
    await run(memory, first)
    witness = RunWitness(ledger=LedgerLog(store, origin="o"), now=NOW)
    await witness.start()
    try:
        await witness.begin(cast("TrustedSet", _NoSnapshot()))
        by_role: dict[str, list[tuple[TargetFile, bool]]] = {}
        for role, target in in_role_order(first + second):
            by_role.setdefault(role, []).append((target, True))
        for role, items in by_role.items():
            await witness.observe_targets(role, items)
        key = f"index/{shard_of(second[0].path)}.jsonl"
        shard = tmp_path.joinpath(".tuf-mirror", "ledger", key)
        shard.write_bytes(shard.read_bytes() + b"a leftover of another writer\n")
        await witness.after_publish()
    finally:
        await witness.aclose()
    await run(memory, first + second, batch=True)
    assert await shard_files(store) == await shard_files(memory)


def target_entry_bytes_of(target: TargetFile) -> bytes:
    return target_entry(
        path=target.path,
        length=target.length,
        hashes=target.hashes,
        role="bin-0",
        role_version=0,
        snapshot_version=None,
        timestamp_version=None,
        time="2026-01-02T03:04:05Z",
    ).to_bytes()


async def test_a_local_commit_reads_no_shard_again_when_the_cache_dropped_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shard read by the run and dropped from the shard cache since (an index
    larger than the cache) is appended to without being read again: the commit
    needs its size, not its bytes. The shards are those of a store without appends."""
    from mirror.ledger import log

    store = local_ledger_store(tmp_path)
    memory = MemoryStore()
    first, second = targets("a", 60), targets("a", 60, content=b"new")
    await run(store, first)
    await run(memory, first)
    monkeypatch.setattr(log, "_CACHE_BYTES", 1)  # every shard leaves the cache at once
    gets: list[str] = []
    real_get = LocalStore.get

    async def get(self: LocalStore, key: str, *, max_length: int) -> bytes:
        gets.append(key)
        return await real_get(self, key, max_length=max_length)

    witness = RunWitness(ledger=LedgerLog(store, origin="o"), now=NOW)
    await witness.start()
    try:
        await witness.begin(cast("TrustedSet", _NoSnapshot()))
        for role, target in in_role_order(second):
            await witness.observe_targets(role, [(target, True)])
        monkeypatch.setattr(LocalStore, "get", get)
        await witness.after_publish()
    finally:
        await witness.aclose()
    assert not [key for key in gets if "/index/" in key]
    await run(memory, second, batch=True)
    assert await shard_files(store) == await shard_files(memory)
