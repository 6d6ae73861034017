"""Copying one verified target: presence check, download, verification, write.

``TargetCopier.copy`` makes one target present at the destination under every name
it has: when the destination (or the previous state) already holds it with the
signed length and hashes, nothing is fetched; otherwise it is downloaded with a hard
length cap, checked against the signed length and *every* signed hash, and only
then written under its final names. Small targets travel in memory; large ones
through a spool file on the destination's filesystem.

``copy_batch`` does the same for many targets, in order, with the downloads of
the small ones pipelined where the fetcher can (``PipeliningFetcher``: many
requests on one connection at once, the per-file round trip gone); a target the
shortcut did not bring whole and right goes the way of ``copy``, so errors,
retries and failover are the same.

The same copier runs in the sync process and in worker processes
(``mirror.workers``). What it does not do: decide which targets to copy or whether
a role may list them (``sync.py`` with ``mirror.trust``), or publish metadata.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import trio

from mirror.errors import StorageError, VerificationError, one_error
from mirror.fetch import Fetcher, PipeliningFetcher
from mirror.fetch.budget import TransferBudget, TransferPaused
from mirror.plan import TargetCopy
from mirror.storage import NotFoundInStoreError, PutOptions, Store
from mirror.storage.headers import put_options_for
from mirror.trust import TargetFile, check_target, compute_digests, hash_algorithms_for, new_hasher

TARGETS: Final = "targets"
#: targets up to this size are fetched into memory (concurrency x this = the bound)
SMALL_TARGET = 256 * 1024
#: copies handed to a copier together at most (``copy_batch``: one pipelined batch)
COPY_BATCH = 32


class Outcome(enum.Enum):
    """What ``TargetCopier.copy`` did."""

    PRESENT = "present"
    COPIED = "copied"
    PLANNED = "planned"
    #: not fetched (or only partly, resumably) because --max-transfer was reached
    DEFERRED = "deferred"


@dataclass(frozen=True, slots=True)
class CopyResult:
    outcome: Outcome
    length: int


def target_key(name: str) -> str:
    """The store key of a target file name (relative to the targets prefix)."""
    return f"{TARGETS}/{name}"


class TargetCopier:
    """Copies targets from ``fetcher`` into ``store``; see the module docstring."""

    def __init__(
        self,
        *,
        store: Store,
        fetcher: Fetcher,
        consistent_snapshot: bool,
        base: Store | None = None,
        dry_run: bool = False,
        budget: TransferBudget | None = None,
        short_max_age: int = 60,
    ) -> None:
        self.short_max_age = short_max_age
        self.store = store
        self.budget = budget
        self.base = base if base is not None else store
        self.fetcher = fetcher
        self.consistent_snapshot = consistent_snapshot
        self.dry_run = dry_run
        self._spool_counter = 0
        self._pipelining = fetcher if isinstance(fetcher, PipeliningFetcher) else None

    async def copy(self, copy: TargetCopy) -> CopyResult:
        """Make ``copy`` present under all its names; see the module docstring."""
        missing = await self._missing(copy)
        if not missing:
            return CopyResult(Outcome.PRESENT, copy.length)
        if self.dry_run:
            return CopyResult(Outcome.PLANNED, copy.length)
        target = TargetFile(copy.length, dict(copy.hashes), copy.path)
        if self.budget is None:
            await self._fetch_and_write(target, copy, missing)
            return CopyResult(Outcome.COPIED, copy.length)
        try:
            with self.budget.transfer(
                copy.length, resumable=copy.length > SMALL_TARGET
            ) as allowance:
                if allowance is None:
                    return CopyResult(Outcome.DEFERRED, copy.length)
                await self._fetch_and_write(target, copy, missing)
        except TransferPaused:
            return CopyResult(Outcome.DEFERRED, copy.length)
        return CopyResult(Outcome.COPIED, copy.length)

    async def copy_batch(
        self, copies: Sequence[TargetCopy], done: Callable[[int, CopyResult], None]
    ) -> None:
        """``copy`` each of ``copies``, in order, calling ``done(index, result)`` as
        each is made; the small missing ones are fetched together first
        (``PipeliningFetcher.fetch_many``) where the fetcher can and nothing is paid
        per file (no budget, not a dry run). A target that did not come whole, or
        whose bytes do not match what is signed, is copied by ``copy`` (fetched
        again, with its retries, failover and error). Raises what ``copy`` raises,
        at the first copy that fails (``done`` was called for those before it)."""
        pipelining = self._pipelining
        if pipelining is None or self.budget is not None or self.dry_run or len(copies) < 2:
            for index, copy in enumerate(copies):
                done(index, await self.copy(copy))
            return
        missing: list[list[str] | None] = []
        wanted: list[int] = []
        for index, copy in enumerate(copies):
            if copy.length > SMALL_TARGET:
                missing.append(None)
                continue
            absent = await self._missing(copy)
            missing.append(absent)
            if absent:
                wanted.append(index)
        bodies: dict[int, bytes | None] = {}
        if wanted:
            fetched = await pipelining.fetch_many(
                TARGETS, [(copies[index].names[0], copies[index].length) for index in wanted]
            )
            bodies = dict(zip(wanted, fetched, strict=True))
        writes: list[tuple[str, bytes, PutOptions]] = []
        made: list[tuple[int, CopyResult]] = []
        for index, copy in enumerate(copies):
            keys_missing = missing[index]
            if keys_missing is not None and not keys_missing:
                made.append((index, CopyResult(Outcome.PRESENT, copy.length)))
                continue
            data = bodies.get(index)
            if keys_missing is not None and data is not None:
                target = TargetFile(copy.length, dict(copy.hashes), copy.path)
                try:
                    sha256 = _checked(target, data)
                except VerificationError:
                    data = None  # fetched again by copy: its own error
                else:
                    writes.extend((key, data, self._options(key, sha256)) for key in keys_missing)
                    made.append((index, CopyResult(Outcome.COPIED, copy.length)))
                    continue
            if writes:
                await self._put_all(writes)
                writes.clear()
            for earlier in made:
                done(*earlier)
            made.clear()
            done(index, await self.copy(copy))
        if writes:
            await self._put_all(writes)
        for earlier in made:
            done(*earlier)

    async def _put_all(self, writes: list[tuple[str, bytes, PutOptions]]) -> None:
        """Write every ``(key, data, options)`` of ``writes``, concurrently: a store
        that batches small writes (``LocalStore``) takes them in one thread call."""
        if len(writes) == 1:
            await self.store.put_bytes(*writes[0])
            return
        with one_error():
            async with trio.open_nursery() as nursery:
                for write in writes:
                    nursery.start_soon(self.store.put_bytes, *write)

    async def _fetch_and_write(
        self, target: TargetFile, copy: TargetCopy, missing: list[str]
    ) -> None:
        if copy.length <= SMALL_TARGET:
            await self._copy_small(target, copy, missing)
        else:
            await self._copy_large(target, copy, missing)

    async def _missing(self, copy: TargetCopy) -> list[str]:
        """The keys of ``copy``'s names that do not hold it yet."""
        keys = [target_key(name) for name in copy.names]
        return [key for key in keys if not await self._present(copy, key)]

    async def _present(self, copy: TargetCopy, key: str) -> bool:
        """Whether ``key`` already holds exactly this target (verified by its
        checksum or by hashing), in the destination or in the previous state."""
        if await _holds(self.store, copy.length, copy.hashes, key):
            return True
        return self.base is not self.store and await _holds(
            self.base, copy.length, copy.hashes, key
        )

    async def _copy_small(self, target: TargetFile, copy: TargetCopy, missing: list[str]) -> None:
        """In memory: one request, hashing in the event loop, one atomic write per
        name (no spool file, fewer thread hops)."""
        got = await self.fetcher.fetch_bytes(TARGETS, copy.names[0], max_length=copy.length)
        assert got is not None  # not a conditional request
        sha256 = _checked(target, got.data)
        for key in missing:
            await self.store.put_bytes(key, got.data, self._options(key, sha256))

    async def _copy_large(self, target: TargetFile, copy: TargetCopy, missing: list[str]) -> None:
        """Through a spool file: streamed, hashed on the fly, renamed or uploaded."""
        spool = self._spool_path()
        fetched = await self.fetcher.fetch_to_file(
            TARGETS,
            copy.names[0],
            spool,
            length=copy.length,
            algorithms=hash_algorithms_for(target),
        )
        try:
            check_target(target, fetched.length, fetched.digests)
        except VerificationError:
            await trio.to_thread.run_sync(lambda: spool.unlink(missing_ok=True))
            raise
        sha256 = fetched.digests.get("sha256")
        for index, key in enumerate(missing):
            if index == len(missing) - 1:
                await self.store.put_file(key, spool, self._options(key, sha256))
            else:
                duplicate = self._spool_path()
                try:
                    await trio.to_thread.run_sync(_copy_file, spool, duplicate)
                except OSError as exc:
                    raise StorageError(
                        f"cannot write the spool file {duplicate}: {exc.strerror or exc}"
                    ) from exc
                await self.store.put_file(key, duplicate, self._options(key, sha256))

    def _options(self, key: str, sha256: str | None) -> PutOptions:
        # Durable at the flush before the first metadata file is published: one
        # syncfs instead of two fsyncs per target (which cap a local disk at a few
        # thousand files/s). A target lost to a power cut before that flush is
        # found wrong by the next run's presence check and fetched again.
        return put_options_for(
            key,
            consistent_snapshot=self.consistent_snapshot,
            sha256=sha256,
            short_max_age=self.short_max_age,
            durable=False,
        )

    def _spool_path(self) -> Path:
        self._spool_counter += 1
        suffix = f"{self._spool_counter}-{random.getrandbits(48):012x}"
        return self.store.spool_dir() / f"target-{suffix}"


def _checked(target: TargetFile, data: bytes) -> str | None:
    """Check ``data`` against ``target``'s signed length and every signed hash
    (``VerificationError``); return its sha256 (None when not signed)."""
    digests = compute_digests(data, hash_algorithms_for(target))
    check_target(target, len(data), digests)
    return digests.get("sha256")


async def stored_state(
    store: Store,
    key: str,
    length: int,
    hashes: Mapping[str, str],
    *,
    trust_checksum: bool = True,
) -> bool | None:
    """Whether ``key`` holds exactly a target of ``length`` and ``hashes``: None when
    absent, False when it holds other bytes, True when it matches. With
    ``trust_checksum`` a SHA-256 the store recorded at upload (S3) stands for
    reading the object; otherwise (an audit) the bytes are read and hashed."""
    info = await store.head(key)
    if info is None:
        return None
    if info.size != length:
        return False
    if trust_checksum and info.sha256 is not None and "sha256" in hashes:
        return info.sha256 == hashes["sha256"]
    hashers = {alg: new_hasher(alg) for alg in hashes}
    try:
        async for chunk in store.iter_chunks(key):
            for hasher in hashers.values():
                hasher.update(chunk)
    except NotFoundInStoreError:
        return None
    return all(hashers[alg].hexdigest() == value for alg, value in hashes.items())


async def _holds(store: Store, length: int, hashes: Mapping[str, str], key: str) -> bool:
    return await stored_state(store, key, length, hashes) is True


def _copy_file(source: Path, dest: Path) -> None:
    try:
        with source.open("rb") as src, dest.open("xb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
    except OSError:
        dest.unlink(missing_ok=True)
        raise
