"""The ledger's storage: an append-only, tiled log behind any ``Store``.

Layout (keys of the ledger's own store: a directory or ``s3://bucket/prefix``):

- ``entries/<N>``: entry bundles of ``BUNDLE`` (256) entries each, one canonical
  JSON entry per line; leaf ``i`` is line ``i % 256`` of bundle ``i // 256``. Only the
  last bundle ever grows; lines past the checkpoint's size are leftovers of an
  interrupted commit and are ignored (and overwritten by the next one);
- ``index/<xx>.jsonl``: index records (key, leaf index, entry), sharded by the
  first hex digits of sha256(key): a lookup reads one shard, and a run reads each
  shard at most once (shards read are kept as bytes, up to ``_CACHE_BYTES``;
  concurrent lookups of one shard share its read; ``prefetch`` reads the shards of
  keys known in advance side by side; a lookup parses only its key's lines, found
  by a byte search). A commit appends its lines to a shard in place where the
  store can (a local directory: ``replace_tail``, which also cuts off leftovers),
  else writes the shard again whole; a last line cut short (an append interrupted
  by a crash) is a leftover too, dropped by readers;
- ``states/<seq>.json``: the checkpoint of commit number ``seq`` with the tree's
  right edge (``Frontier``), created with ``create_exclusive``: the
  compare-and-swap that lets only one of two runs from the same base move the
  checkpoint; ``head.json`` points at the latest (a lagging pointer is caught up by
  probing the next numbers);
- ``pending/<name>.jsonl``: what a run is about to publish (one record per
  destination), written before its publish and removed by its commit
  (``mirror.ledger.witness`` replays it after a crash);
- ``evidence/<UTC time>-<TYPE>/``: alarm evidence.

A commit holds the ledger's lock (``mirror.storage.lock``) while it writes, so two
commits never interleave their writes, and moves the checkpoint only if it is
still the one the run started from (``LedgerConflictError`` otherwise, nothing
moved). Memory: one bundle, the index shards read by the run (bounded) and the
right edge. A commit takes a run's entries as canonical bytes with their keys
(the witness's ``EntrySpool``) and builds leaves and index lines from those bytes,
a batch of entries per await.

What it does not do: decide what to append or raise alarms (``witness``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
import shutil
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Iterable,
    Iterator,
    Mapping,
)
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

import trio

from mirror.errors import MirrorError, StorageError, TamperedDestinationError, TransientError
from mirror.ledger.entries import (
    Entry,
    IndexRecord,
    index_line,
    json_string,
    parse_entry,
    scan_index_line,
    shard_of,
    shard_of_json,
)
from mirror.ledger.frontier import Frontier
from mirror.ledger.note import Checkpoint, NoteError, SignedNote, Signer, Verifier, sign_note
from mirror.ledger.spool import EntrySpool
from mirror.storage import NotFoundInStoreError, PutOptions, Store
from mirror.storage.lock import acquire_lock

__all__ = [
    "BUNDLE",
    "Head",
    "LedgerConflictError",
    "LedgerCorruptError",
    "LedgerLog",
]

BUNDLE: Final = 256
_HEAD = "head.json"
_MAX_OBJECT = 256 * 1024 * 1024
_JSON = PutOptions(content_type="application/json", cache_control="no-store")
#: bundles and shards are made durable by one flush before the checkpoint moves
_DEFERRED = PutOptions(cache_control="no-store", durable=False)
#: bytes of index shards kept in memory for lookups (least recently used dropped)
_CACHE_BYTES = 32 * 1024 * 1024
#: entries handed to a commit per batch by ``commit``
_BATCH = 1024
#: lookups in one shard answered by a byte search before its keys are mapped
_SEARCHES = 16
#: bundle and shard writes of a commit in flight at once
_PARALLEL_WRITES = 32
#: index shard reads of a ``prefetch`` in flight at once
_PARALLEL_READS = 32


class LedgerConflictError(TransientError):
    """Another run moved the ledger's checkpoint since this run read it (exit 3):
    this run's entries stay pending and the next run records them."""


class LedgerCorruptError(TamperedDestinationError):
    """The ledger's files do not match its checkpoint (exit 1)."""


def _state_key(seq: int) -> str:
    return f"states/{seq:012d}.json"


def _bundle_key(number: int) -> str:
    return f"entries/{number:09d}"


def _shard_key(shard: str) -> str:
    return f"index/{shard}.jsonl"


@dataclass(frozen=True, slots=True)
class Head:
    """The latest committed state: commit number, checkpoint, right edge, note."""

    seq: int
    checkpoint: Checkpoint
    frontier: Frontier
    #: the stored checkpoint: a signed note, or the bare checkpoint text if unsigned
    note: bytes
    #: the highest timestamp and snapshot versions recorded (ROLLBACK)
    versions: Mapping[str, int] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return self.checkpoint.size


@runtime_checkable
class _TailStore(Protocol):
    """A store that can append to an object in place (``LocalStore.replace_tail``)."""

    async def replace_tail(self, key: str, *, size: int, keep: int, data: bytes) -> bool: ...


class _Shard:
    """One index shard as read: its committed lines (``data``, each ending in a
    newline), the size of the object read (``raw_size``) and whether ``data`` is its
    beginning (``prefix``: a commit can append after it in place). A lookup finds
    its key's lines by a byte search for the canonical ``,"key":<key>,"leaf":`` (a
    JSON string holds no unescaped quote, so only a record's own key field matches,
    checked by the leaf index and the line end after it) and parses those lines
    only; a shard looked up more than ``_SEARCHES`` times maps every key to its
    lines once instead."""

    __slots__ = ("data", "prefix", "raw_size", "searches", "starts")

    def __init__(self, data: bytes, raw_size: int | None = None, *, prefix: bool = True) -> None:
        self.data = data
        self.raw_size = len(data) if raw_size is None else raw_size
        self.prefix = prefix
        self.searches = 0
        self.starts: dict[str, list[int]] | None = None

    @classmethod
    def parse(cls, raw: bytes, size: int, name: str) -> _Shard:
        """The lines of ``raw`` below leaf ``size``. A commit writes a shard's lines
        in leaf order, so leftovers of an interrupted one are a tail: when the last
        line is below ``size`` there are none (the common case: no line is
        parsed); else every line is read and those at or past ``size`` dropped
        (``LedgerCorruptError`` for a line that is no record). A last line without
        its newline is what an interrupted append left: dropped, unless it is a
        whole record below ``size`` (a committed line cut: ``LedgerCorruptError``)."""
        if not raw:
            return cls(b"")
        if raw.endswith(b"\n"):
            last = scan_index_line(raw[raw.rfind(b"\n", 0, len(raw) - 1) + 1 : -1])
            if last is not None and last[1] < size:
                return cls(raw)
            body = raw
        else:
            cut = raw.rfind(b"\n") + 1
            body, torn = raw[:cut], raw[cut:]
            scanned = scan_index_line(torn)
            if scanned is not None and scanned[1] < size:
                raise LedgerCorruptError(f"{name}: a committed line without its end")
        kept = [line for line in body.split(b"\n") if line and _key_and_leaf(line, name)[1] < size]
        data = b"".join(line + b"\n" for line in kept)
        return cls(data, len(raw), prefix=raw.startswith(data))

    def records(self, key: str, name: str) -> list[IndexRecord]:
        if not self.data:
            return []
        if self.starts is None and self.searches < _SEARCHES:
            self.searches += 1
            starts = self._search(key)
        else:
            if self.starts is None:
                self.starts = self._map(name)
            starts = self.starts.get(key, [])
        out = []
        for start in starts:
            line = self.data[start : self.data.index(b"\n", start)]
            try:
                record = IndexRecord.from_line(line)
            except (ValueError, KeyError, TypeError) as exc:
                raise LedgerCorruptError(f"{name}: unreadable line") from exc
            if record.key == key:
                out.append(record)
        return out

    def _search(self, key: str) -> list[int]:
        data = self.data
        needle = b"".join((b',"key":', json_string(key), b',"leaf":'))
        starts = []
        at = data.find(needle)
        while at >= 0:
            end = data.index(b"\n", at)
            if data[at + len(needle) : end - 1].isdigit() and data[end - 1 : end] == b"}":
                starts.append(data.rfind(b"\n", 0, at) + 1)
            at = data.find(needle, end)
        return starts

    def _map(self, name: str) -> dict[str, list[int]]:
        starts: dict[str, list[int]] = {}
        offset = 0
        for line in self.data.split(b"\n"):
            if line:
                starts.setdefault(_key_and_leaf(line, name)[0], []).append(offset)
            offset += len(line) + 1
        return starts


def _key_and_leaf(line: bytes, name: str) -> tuple[str, int]:
    scanned = scan_index_line(line)
    if scanned is not None:
        return scanned
    try:
        record = IndexRecord.from_line(line)
    except (ValueError, KeyError, TypeError) as exc:
        raise LedgerCorruptError(f"{name}: unreadable line") from exc
    return record.key, record.leaf


class LedgerLog:
    """Read and append the ledger held in ``store``."""

    def __init__(
        self,
        store: Store,
        *,
        origin: str,
        signer: Signer | None = None,
        break_stale_lock: bool = False,
    ) -> None:
        self.store = store
        self.origin = origin
        self.signer = signer
        self.break_stale_lock = break_stale_lock
        #: shards read at checkpoint size ``_shards_size`` (empty: no such shard
        #: yet; a first sync looks up every path), least recently used first
        self._shards: dict[str, _Shard] = {}
        self._shards_size = -1
        #: (size read, committed bytes, committed bytes begin it) of every shard read
        #: at ``_shards_size``, also once its bytes left the cache: what a commit
        #: that appends in place needs
        self._extents: dict[str, tuple[int, int, bool]] = {}
        self._cached_bytes = 0
        #: shards being read (a second lookup of one waits for the first read)
        self._reading: dict[str, trio.Event] = {}
        #: index shard reads so far (tests count them)
        self.shard_reads = 0

    @property
    def url(self) -> str:
        return self.store.url

    # -- reading ----------------------------------------------------------------------

    async def _get(self, key: str) -> bytes | None:
        try:
            return await self.store.get(key, max_length=_MAX_OBJECT)
        except NotFoundInStoreError:
            return None

    def _empty(self) -> Head:
        from mirror.ledger.merkle import EMPTY_ROOT

        return Head(0, Checkpoint(self.origin, 0, EMPTY_ROOT), Frontier(), b"")

    async def head(self) -> Head:
        """The latest committed state (the empty tree before the first commit)."""
        seq = 0
        raw = await self._get(_HEAD)
        if raw is not None:
            try:
                seq = int(json.loads(raw)["seq"])
            except (ValueError, KeyError, TypeError) as exc:
                raise LedgerCorruptError(f"ledger {self.url}: unreadable {_HEAD}") from exc
        # The pointer is written after the state: a crash in between leaves it behind.
        while await self.store.head(_state_key(seq + 1)) is not None:
            seq += 1
        if seq == 0:
            return self._empty()
        return await self.state(seq)

    async def state(self, seq: int) -> Head:
        raw = await self._get(_state_key(seq))
        if raw is None:
            raise LedgerCorruptError(f"ledger {self.url}: {_state_key(seq)} is missing")
        try:
            data = json.loads(raw)
            note = base64.b64decode(data["note"], validate=True)
            frontier = Frontier.from_json(data["frontier"])
            checkpoint = Checkpoint.parse_text(_note_text(note))
        except (ValueError, KeyError, TypeError, NoteError) as exc:
            raise LedgerCorruptError(
                f"ledger {self.url}: unreadable {_state_key(seq)}: {exc}"
            ) from exc
        if frontier.size != checkpoint.size or frontier.root() != checkpoint.root:
            raise LedgerCorruptError(
                f"ledger {self.url}: {_state_key(seq)}: right edge does not match its checkpoint"
            )
        versions = {str(k): int(v) for k, v in dict(data.get("versions") or {}).items()}
        return Head(seq, checkpoint, frontier, note, versions)

    async def entries(self, start: int, end: int) -> AsyncGenerator[tuple[int, bytes], None]:
        """Leaves ``[start, end)`` as (index, canonical bytes), one bundle in memory."""
        index = start
        while index < end:
            number = index // BUNDLE
            raw = await self._get(_bundle_key(number))
            lines = raw.split(b"\n") if raw is not None else []
            if lines and lines[-1] == b"":
                lines.pop()
            stop = min(end, (number + 1) * BUNDLE)
            if len(lines) < stop - number * BUNDLE:
                raise LedgerCorruptError(
                    f"ledger {self.url}: {_bundle_key(number)} ends before leaf {stop - 1}"
                )
            for position in range(index, stop):
                yield position, lines[position - number * BUNDLE]
            index = stop

    async def lookup(self, key: str, head: Head) -> list[IndexRecord]:
        """Every committed record for ``key``, oldest first."""
        if not head.size:
            return []  # an empty ledger (a first sync looks up every path)
        name = shard_of(key)
        shard = await self._shard_view(name, head.size)
        return shard.records(key, f"ledger {self.url}: {_shard_key(name)}")

    async def _shard(self, name: str, size: int) -> list[IndexRecord]:
        """Every committed record of shard ``name``, in file order (``ledger verify``
        and ``export``: each line parsed)."""
        shard = await self._shard_view(name, size)
        where = f"ledger {self.url}: {_shard_key(name)}"
        records = []
        for line in shard.data.split(b"\n"):
            if line:
                try:
                    records.append(IndexRecord.from_line(line))
                except (ValueError, KeyError, TypeError) as exc:
                    raise LedgerCorruptError(f"{where}: unreadable line") from exc
        return records

    async def prefetch(self, keys: Iterable[str], head: Head) -> None:
        """Read the index shards that lookups of ``keys`` will need, ``_PARALLEL_READS``
        at a time, instead of one by one as the lookups come: a hint, so it stops
        once half the shard cache is filled (a larger index is read on demand)."""
        if not head.size:
            return
        if self._shards_size != head.size:
            self._forget_shards(head.size)
        wanted = sorted({shard_of(key) for key in keys} - self._shards.keys())
        if not wanted:
            return  # no checkpoint: a hook whose shards are all read does not yield
        slots = trio.Semaphore(_PARALLEL_READS)

        async def read(name: str) -> None:
            try:
                await self._shard_view(name, head.size)
            finally:
                slots.release()

        with _one_error():
            async with trio.open_nursery() as nursery:
                for name in wanted:
                    await slots.acquire()
                    if self._cached_bytes >= _CACHE_BYTES // 2:
                        slots.release()
                        break
                    nursery.start_soon(read, name)

    def _forget_shards(self, size: int) -> None:
        self._shards.clear()
        self._extents.clear()
        self._cached_bytes = 0
        self._shards_size = size

    async def _shard_view(self, name: str, size: int) -> _Shard:
        while True:
            if self._shards_size != size:
                self._forget_shards(size)
            cached = self._shards.pop(name, None)
            if cached is not None:
                self._shards[name] = cached  # most recently used last
                return cached
            reading = self._reading.get(name)
            if reading is None:
                break
            # Another task is reading this shard: its read serves this lookup too
            # (if it failed, this one reads again and meets the error itself).
            await reading.wait()
        done = self._reading[name] = trio.Event()
        try:
            # An empty ledger has no committed record: nothing to read (a first sync).
            raw = None
            if size:
                self.shard_reads += 1
                raw = await self._get(_shard_key(name))
            shard = _Shard.parse(raw or b"", size, f"ledger {self.url}: {_shard_key(name)}")
        finally:
            del self._reading[name]
            done.set()
        if self._shards_size != size:
            return shard  # a commit moved the checkpoint meanwhile: not cached
        self._extents[name] = (shard.raw_size, len(shard.data), shard.prefix)
        while self._shards and self._cached_bytes + len(shard.data) > _CACHE_BYTES:
            dropped = self._shards.pop(next(iter(self._shards)))
            self._cached_bytes -= len(dropped.data)
        self._shards[name] = shard
        self._cached_bytes += len(shard.data)
        return shard

    # -- appending ----------------------------------------------------------------------

    async def commit(
        self,
        base: Head,
        entries: AsyncIterable[Entry] | EntrySpool,
        *,
        versions: Mapping[str, int] | None = None,
    ) -> Head:
        """Append ``entries`` (or a run's spool: its canonical lines and keys, so
        nothing is parsed or encoded again) after ``base`` and move the checkpoint,
        or raise ``LedgerConflictError`` (nothing moved) if another run moved it
        first.

        A commit with no entries still records a checkpoint when none exists yet.
        """
        rows = entries.batches() if isinstance(entries, EntrySpool) else _rows(entries)
        return await self._commit_rows(base, rows, versions=versions)

    async def _commit_rows(
        self,
        base: Head,
        rows: AsyncIterable[list[tuple[bytes, bytes]]],
        *,
        versions: Mapping[str, int] | None,
    ) -> Head:
        """``commit`` of entries in batches of (canonical bytes, ``json_string(key)``)."""
        async with acquire_lock(self.store, break_stale=self.break_stale_lock):
            current = await self.head()
            if current.seq != base.seq:
                raise LedgerConflictError(
                    f"ledger {self.url}: another run moved the checkpoint "
                    f"(commit {base.seq} -> {current.seq}); this run's entries stay pending"
                )
            frontier = base.frontier.copy()
            shard_lines = _ShardSpool(self.store.spool_dir())
            slots = trio.Semaphore(_PARALLEL_WRITES)

            async def put_bundle(number: int, lines: list[bytes]) -> None:
                try:
                    await self._put_bundle(number, lines)
                finally:
                    slots.release()

            async def put_shard(shard: str) -> None:
                try:
                    await self._append_shard(shard, base.size, await shard_lines.take(shard))
                finally:
                    slots.release()

            try:
                # Bundles are written while the next ones are hashed, shards side
                # by side: a few store writes in flight, not one at a time.
                with _one_error():
                    async with trio.open_nursery() as nursery:
                        number = base.size // BUNDLE
                        bundle = await self._bundle_prefix(number, base.size - number * BUNDLE)
                        sha256, append_leaf_hash, add_line = (
                            hashlib.sha256,
                            frontier.append_leaf_hash,
                            shard_lines.add,
                        )
                        async for batch in rows:
                            for raw, key_json in batch:
                                leaf = frontier.size
                                add_line(shard_of_json(key_json), index_line(raw, key_json, leaf))
                                append_leaf_hash(sha256(b"\x00" + raw).digest())  # hash_leaf
                                bundle.append(raw)
                                if len(bundle) == BUNDLE:
                                    await slots.acquire()
                                    nursery.start_soon(put_bundle, number, bundle)
                                    number += 1
                                    bundle = []
                            await shard_lines.settle()
                        if bundle and frontier.size > base.size:
                            await slots.acquire()
                            nursery.start_soon(put_bundle, number, bundle)
                merged = dict(base.versions)
                for role, version in (versions or {}).items():
                    merged[role] = max(version, merged.get(role, 0))
                if frontier.size == base.size and base.seq > 0 and merged == dict(base.versions):
                    return base
                with _one_error():
                    async with trio.open_nursery() as nursery:
                        for shard in shard_lines.shards():
                            await slots.acquire()
                            nursery.start_soon(put_shard, shard)
            finally:
                await shard_lines.aclose()
            await self.store.flush()
            checkpoint = Checkpoint(self.origin, frontier.size, frontier.root())
            note = (
                sign_note(checkpoint.text(), [self.signer]).to_bytes()
                if self.signer is not None
                else checkpoint.text()
            )
            state = {
                "note": base64.b64encode(note).decode(),
                "frontier": frontier.to_json(),
                "versions": merged,
            }
            seq = base.seq + 1
            if not await self.store.create_exclusive(
                _state_key(seq), json.dumps(state, sort_keys=True).encode()
            ):
                raise LedgerConflictError(
                    f"ledger {self.url}: another run recorded commit {seq} first"
                )
            # The state is committed: a pointer left behind catches up by probing.
            with contextlib.suppress(StorageError):
                await self.store.put_bytes(_HEAD, json.dumps({"seq": seq}).encode(), _JSON)
            self._forget_shards(-1)
            return Head(seq, checkpoint, frontier, note, merged)

    async def _bundle_prefix(self, number: int, count: int) -> list[bytes]:
        if count == 0:
            return []
        raw = await self._get(_bundle_key(number))
        lines = (raw or b"").split(b"\n")
        if len(lines) < count:
            raise LedgerCorruptError(f"ledger {self.url}: {_bundle_key(number)} is truncated")
        return lines[:count]

    async def _put_bundle(self, number: int, lines: list[bytes]) -> None:
        await self.store.put_bytes(_bundle_key(number), b"\n".join(lines) + b"\n", _DEFERRED)

    async def _append_shard(self, shard: str, size: int, lines: list[bytes]) -> None:
        # The run's lookups have usually read (or found absent) the shard already:
        # its new lines are appended after its committed ones (leftovers cut off),
        # in place when the store can and the shard is still the size read, else
        # the committed lines are written back as read with the new ones.
        key = _shard_key(shard)
        name = f"ledger {self.url}: {key}"
        current = self._shards_size == size
        cached = self._shards.get(shard) if current else None
        extent = self._extents.get(shard) if current else None
        if extent is None:  # not read by this run
            raw = await self._get(key) if size else None
            cached = _Shard.parse(raw or b"", size, name)
            extent = (cached.raw_size, len(cached.data), cached.prefix)
        new = b"".join(lines)
        raw_size, committed, prefix = extent
        if (
            raw_size
            and prefix
            and isinstance(self.store, _TailStore)
            and await self.store.replace_tail(key, size=raw_size, keep=committed, data=new)
        ):
            return
        if cached is None:  # read, then dropped from the cache: read again
            raw = await self._get(key) if size else None
            cached = _Shard.parse(raw or b"", size, name)
        await self.store.put_bytes(key, cached.data + new, _DEFERRED)

    # -- pending runs and evidence ---------------------------------------------------

    async def put_pending(self, run_id: str, document: dict[str, Any], spool: Path) -> None:
        """Record what a run is about to publish (``document`` as the first line,
        then the entries spooled in ``spool``)."""
        key = f"pending/{run_id}.jsonl"
        header = json.dumps(document, sort_keys=True).encode() + b"\n"
        upload = self.store.spool_dir() / f"pending-{secrets.token_hex(6)}"

        def write() -> None:
            upload.parent.mkdir(parents=True, exist_ok=True)
            with upload.open("wb") as out, spool.open("rb") as source:
                out.write(header)
                while chunk := source.read(1 << 16):
                    out.write(chunk)

        await trio.to_thread.run_sync(write)
        await self.store.put_file(key, upload, PutOptions(cache_control="no-store"))

    async def read_pending(self, run_id: str) -> tuple[dict[str, Any], list[Entry]]:
        raw = await self._get(f"pending/{run_id}.jsonl")
        if raw is None:
            return {}, []
        lines = raw.splitlines()
        try:
            document = json.loads(lines[0]) if lines else {}
            return dict(document), [parse_entry(line) for line in lines[1:] if line]
        except ValueError as exc:
            raise LedgerCorruptError(f"ledger {self.url}: unreadable pending/{run_id}") from exc

    async def drop_pending(self, run_id: str) -> None:
        await self.store.delete(f"pending/{run_id}.jsonl")

    async def put_evidence(self, key: str, data: bytes) -> None:
        await self.store.put_bytes(f"evidence/{key}", data, PutOptions(cache_control="no-store"))


class _ShardSpool:
    """The index lines of one commit, grouped by shard: in memory up to a budget,
    then appended to one local file per shard (memory stays bounded on a first
    sync of millions of targets)."""

    BUDGET = 8 * 1024 * 1024

    def __init__(self, spool_dir: Path) -> None:
        self.directory = spool_dir / f"ledger-index-{secrets.token_hex(6)}"
        self.memory: dict[str, list[bytes]] = {}
        self.spilled: set[str] = set()
        self.size = 0

    def add(self, shard: str, line: bytes) -> None:
        lines = self.memory.get(shard)
        if lines is None:
            self.memory[shard] = [line]
        else:
            lines.append(line)
        self.size += len(line)

    async def settle(self) -> None:
        """Spill to disk once the lines in memory reach the budget."""
        if self.size >= self.BUDGET:
            await trio.to_thread.run_sync(self._spill)

    def _spill(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for shard, lines in self.memory.items():
            with (self.directory / shard).open("ab") as out:
                out.write(b"".join(lines))
            self.spilled.add(shard)
        self.memory.clear()
        self.size = 0

    def shards(self) -> list[str]:
        return sorted(set(self.memory) | self.spilled)

    async def take(self, shard: str) -> list[bytes]:
        lines = self.memory.pop(shard, [])
        if shard in self.spilled:
            spilled = await trio.Path(self.directory / shard).read_bytes()
            lines = [spilled, *lines]
        return lines

    async def aclose(self) -> None:
        if self.spilled:
            await trio.to_thread.run_sync(shutil.rmtree, self.directory, True)


@contextlib.contextmanager
def _one_error() -> Iterator[None]:
    """A nursery's group of ``MirrorError``s as its first one (what a commit's
    caller expects: exit statuses come from the error's class); anything else is
    a bug and propagates as the group."""
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = list(_leaves(group))
        if leaves and all(isinstance(leaf, MirrorError) for leaf in leaves):
            raise leaves[0] from None
        raise


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


async def _rows(entries: AsyncIterable[Entry]) -> AsyncIterator[list[tuple[bytes, bytes]]]:
    batch: list[tuple[bytes, bytes]] = []
    async for entry in entries:
        batch.append((entry.to_bytes(), json_string(entry.key)))
        if len(batch) >= _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _note_text(note: bytes) -> bytes:
    """The checkpoint text of a stored note (signed or bare)."""
    if b"\n\n" in note:
        return SignedNote.parse(note).text
    return note


def checkpoint_of(note: bytes, verifiers: Iterable[Verifier] = ()) -> Checkpoint:
    """Parse a stored or exported checkpoint; with ``verifiers``, check its signature."""
    from mirror.ledger.note import verify_note

    keys = list(verifiers)
    if keys:
        signed, _ = verify_note(note, keys)
        return Checkpoint.parse_text(signed.text)
    return Checkpoint.parse_text(_note_text(note))
