"""The work manifest of a sharded first copy: what ``shard plan`` writes and what
``shard copy`` and ``shard publish`` read, all under ``DEST/.tuf-mirror/runs/<run-id>/``.

Layout of one run::

    .tuf-mirror/runs/<run-id>/shard-0000.jsonl   one JSON line per target of shard 0
    ...
    .tuf-mirror/runs/<run-id>/run.json           written last: the run's description
    .tuf-mirror/runs/<run-id>/done/0000.json     completion marker of shard 0 (copy)
    .tuf-mirror/runs/<run-id>/published.json     written by publish

A manifest line is ``{"hashes": {...}, "length": N, "path": "...", "role": "..."}``
(sorted keys, compact). Every target lands in the shard ``shard_of(path, shards)``
gives. ``run.json`` records, per shard file, its sha256, size, target count and
bytes, plus the sha256 of that list (``manifest_sha256``): a shard file altered by
one byte is refused before anything is copied from it.

Memory stays bounded: the writer buffers at most ``FLUSH_BYTES`` of lines in all
before appending them to the shard files, and the reader streams a shard's file
(downloaded to the spool, checked, then parsed block by block).

The manifest is a work list, not a trust anchor: ``copy`` checks every download
against the manifest's length and hashes, and ``publish`` runs the full sync
engine, which checks every target's presence against the *verified* metadata
again. What this module does not do: copy anything or decide what to copy.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import trio

from mirror.errors import StorageError, TamperedDestinationError, UsageError, VerificationError
from mirror.plan import TargetCopy, target_copy
from mirror.shard.partition import SCHEME, shard_of
from mirror.storage import NotFoundInStoreError, PutOptions, Store
from mirror.trust import TargetFile

FORMAT: Final = "tuf-mirror-shard-run/1"
RUNS_PREFIX: Final = ".tuf-mirror/runs/"
#: lines buffered in memory (all shards together) before they are appended to disk
FLUSH_BYTES: Final = 4 * 1024 * 1024
#: a manifest line longer than this is not one the planner wrote
MAX_LINE: Final = 1024 * 1024
_BLOCK: Final = 1 << 20
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
_JSON: Final = PutOptions(content_type="application/json")
_NDJSON: Final = PutOptions(content_type="application/x-ndjson")


def validate_run_id(run_id: str) -> str:
    """Return ``run_id`` if it is a safe key segment (letters, digits, ``._-``)."""
    if not _RUN_ID.fullmatch(run_id) or run_id in (".", ".."):
        raise UsageError(
            f"not a run id: {run_id!r} (1-80 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit)"
        )
    return run_id


def run_key(run_id: str, name: str) -> str:
    """The store key of ``name`` inside run ``run_id``."""
    return f"{RUNS_PREFIX}{validate_run_id(run_id)}/{name}"


def shard_file_name(index: int) -> str:
    return f"shard-{index:04d}.jsonl"


def marker_name(index: int) -> str:
    return f"done/{index:04d}.json"


@dataclass(frozen=True, slots=True)
class ShardFile:
    """One shard's part of the manifest, as ``run.json`` records it."""

    index: int
    sha256: str
    size: int
    targets: int
    target_bytes: int

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "sha256": self.sha256,
            "size": self.size,
            "targets": self.targets,
            "bytes": self.target_bytes,
        }


def manifest_digest(files: tuple[ShardFile, ...]) -> str:
    """The manifest's own sha256: over the canonical JSON of every shard file's record."""
    canonical = json.dumps([f.to_json() for f in files], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class RunInfo:
    """``run.json``: what one ``shard plan`` wrote."""

    run_id: str
    shards: int
    consistent_snapshot: bool
    files: tuple[ShardFile, ...]
    created: str
    #: versions of the upstream state the plan verified (root, timestamp, snapshot...)
    upstream_versions: dict[str, int] = field(default_factory=dict)

    @property
    def total_targets(self) -> int:
        return sum(f.targets for f in self.files)

    @property
    def total_bytes(self) -> int:
        return sum(f.target_bytes for f in self.files)

    @property
    def manifest_sha256(self) -> str:
        return manifest_digest(self.files)

    def to_bytes(self) -> bytes:
        doc = {
            "format": FORMAT,
            "run_id": self.run_id,
            "shards": self.shards,
            "partition": SCHEME,
            "consistent_snapshot": self.consistent_snapshot,
            "created": self.created,
            "upstream_versions": self.upstream_versions,
            "targets": self.total_targets,
            "bytes": self.total_bytes,
            "files": [f.to_json() for f in self.files],
            "manifest_sha256": self.manifest_sha256,
        }
        return json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_bytes(cls, run_id: str, data: bytes) -> RunInfo:
        where = run_key(run_id, "run.json")
        try:
            doc = json.loads(data)
            if doc["format"] != FORMAT or doc["partition"] != SCHEME:
                raise ValueError(f"unknown format {doc['format']!r} / {doc['partition']!r}")
            files = tuple(
                ShardFile(
                    index=int(f["index"]),
                    sha256=str(f["sha256"]),
                    size=int(f["size"]),
                    targets=int(f["targets"]),
                    target_bytes=int(f["bytes"]),
                )
                for f in doc["files"]
            )
            info = cls(
                run_id=str(doc["run_id"]),
                shards=int(doc["shards"]),
                consistent_snapshot=bool(doc["consistent_snapshot"]),
                files=files,
                created=str(doc["created"]),
                upstream_versions={str(k): int(v) for k, v in doc["upstream_versions"].items()},
            )
            recorded = str(doc["manifest_sha256"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise TamperedDestinationError(f"{where} is unreadable: {exc}") from exc
        if info.run_id != run_id or [f.index for f in files] != list(range(info.shards)):
            raise TamperedDestinationError(f"{where} does not describe run {run_id}")
        if recorded != info.manifest_sha256:
            raise TamperedDestinationError(
                f"{where}: manifest sha256 {info.manifest_sha256} differs from the recorded "
                f"{recorded}"
            )
        return info


async def read_run(store: Store, run_id: str) -> RunInfo:
    """The run's ``run.json``; ``UsageError`` when there is no such (complete) plan."""
    key = run_key(run_id, "run.json")
    try:
        data = await store.get(key, max_length=64 * 1024 * 1024)
    except NotFoundInStoreError:
        raise UsageError(
            f"no planned run {run_id!r} in {store.url} (no {key}): run `tuf-mirror shard plan`"
            " first, with the same --dest"
        ) from None
    return RunInfo.from_bytes(run_id, data)


async def write_run(store: Store, info: RunInfo) -> None:
    await store.put_bytes(run_key(info.run_id, "run.json"), info.to_bytes(), _JSON)


# -- writing -----------------------------------------------------------------------


def _line(copy: TargetCopy) -> bytes:
    doc = {"path": copy.path, "length": copy.length, "hashes": dict(copy.hashes), "role": copy.role}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode() + b"\n"


class ManifestWriter:
    """Appends targets to per-shard files in ``directory``, hashing as it goes."""

    def __init__(self, directory: Path, shards: int) -> None:
        self.directory = directory
        self.shards = shards
        self._buffers: list[list[bytes]] = [[] for _ in range(shards)]
        self._hashers = [hashlib.sha256() for _ in range(shards)]
        self._sizes = [0] * shards
        self._targets = [0] * shards
        self._bytes = [0] * shards
        self._buffered = 0
        #: whether the targets' names are content-addressed (None: no target seen)
        self.consistent_snapshot: bool | None = None
        directory.mkdir(parents=True, exist_ok=True)
        for index in range(shards):
            self.path(index).write_bytes(b"")

    def path(self, index: int) -> Path:
        return self.directory / shard_file_name(index)

    async def add(self, copy: TargetCopy) -> None:
        """Record one target (in the shard its path hashes to)."""
        index = shard_of(copy.path, self.shards)
        line = _line(copy)
        self._buffers[index].append(line)
        self._hashers[index].update(line)
        self._sizes[index] += len(line)
        self._targets[index] += 1
        self._bytes[index] += copy.length
        self._buffered += len(line)
        if self.consistent_snapshot is None:
            self.consistent_snapshot = copy.names != (copy.path,)
        if self._buffered >= FLUSH_BYTES:
            await self.flush()

    async def flush(self) -> None:
        buffers, self._buffers = self._buffers, [[] for _ in range(self.shards)]
        self._buffered = 0
        await trio.to_thread.run_sync(self._append, buffers)

    def _append(self, buffers: list[list[bytes]]) -> None:
        for index, lines in enumerate(buffers):
            if lines:
                with self.path(index).open("ab") as handle:
                    handle.writelines(lines)

    async def finish(self) -> tuple[ShardFile, ...]:
        """Flush and describe every shard file."""
        await self.flush()
        return tuple(
            ShardFile(
                index=index,
                sha256=self._hashers[index].hexdigest(),
                size=self._sizes[index],
                targets=self._targets[index],
                target_bytes=self._bytes[index],
            )
            for index in range(self.shards)
        )

    async def upload(self, store: Store, run_id: str) -> None:
        """Put every shard file into ``store`` under the run's prefix."""
        for index in range(self.shards):
            await store.put_file(run_key(run_id, shard_file_name(index)), self.path(index), _NDJSON)

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


# -- reading -----------------------------------------------------------------------


async def _download(store: Store, key: str, dest: Path, expected: ShardFile) -> None:
    """Copy ``key`` to the local file ``dest``, refusing it unless its size and
    sha256 are the recorded ones."""
    hasher = hashlib.sha256()
    size = 0
    handle = await trio.open_file(dest, "wb")
    try:
        async with handle:
            async for chunk in store.iter_chunks(key, chunk_size=_BLOCK):
                size += len(chunk)
                if size > expected.size:
                    break
                hasher.update(chunk)
                await handle.write(chunk)
    except NotFoundInStoreError:
        raise TamperedDestinationError(f"{key} is missing although run.json lists it") from None
    if size != expected.size or hasher.hexdigest() != expected.sha256:
        raise TamperedDestinationError(
            f"{key} does not match run.json (sha256 {expected.sha256}, {expected.size} bytes): "
            "the manifest was altered; plan a new run"
        )


def _parse(key: str, number: int, raw: bytes, info: RunInfo, index: int) -> TargetCopy:
    where = f"{key} line {number}"
    try:
        doc = json.loads(raw)
        path, length, hashes, role = doc["path"], doc["length"], doc["hashes"], doc["role"]
        if not (
            isinstance(path, str)
            and isinstance(role, str)
            and isinstance(length, int)
            and length >= 0
            and isinstance(hashes, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in hashes.items())
        ):
            raise ValueError("wrong field types")
    except (ValueError, KeyError, TypeError) as exc:
        raise TamperedDestinationError(f"{where} is not a manifest entry: {exc}") from exc
    if shard_of(path, info.shards) != index:
        raise TamperedDestinationError(f"{where}: {path!r} does not belong to shard {index}")
    try:
        # The names are derived again (and validated: invariant 8), never read.
        return target_copy(
            TargetFile(length, hashes, path),
            role=role,
            consistent_snapshot=info.consistent_snapshot,
        )
    except VerificationError as exc:
        raise TamperedDestinationError(f"{where}: {exc}") from exc


async def read_shard(
    store: Store,
    info: RunInfo,
    index: int,
    handle: Callable[[list[TargetCopy]], Awaitable[None]],
    *,
    batch: int = 512,
) -> int:
    """Feed the targets of shard ``index``, in batches, from its checked manifest
    file to ``handle``; return how many there were. The file is downloaded to the
    spool and checked against ``run.json`` before the first batch."""
    expected = info.files[index]
    key = run_key(info.run_id, shard_file_name(index))
    local = store.spool_dir() / f"manifest-{index:04d}-{secrets.token_hex(6)}"
    number = 0
    try:
        await _download(store, key, local, expected)
        pending = b""
        out: list[TargetCopy] = []
        source = await trio.open_file(local, "rb")
        async with source:
            while block := await source.read(_BLOCK):
                lines = (pending + block).split(b"\n")
                pending = lines.pop()
                if len(pending) > MAX_LINE:
                    raise TamperedDestinationError(f"{key}: a line longer than {MAX_LINE} bytes")
                for raw in lines:
                    number += 1
                    out.append(_parse(key, number, raw, info, index))
                    if len(out) >= batch:
                        await handle(out)
                        out = []
        if pending:
            raise TamperedDestinationError(f"{key}: the last line is incomplete")
        if out:
            await handle(out)
    except OSError as exc:
        raise StorageError(f"cannot spool {key} to {local}: {exc.strerror}") from exc
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(lambda: local.unlink(missing_ok=True))
    return number


__all__ = [
    "FORMAT",
    "RUNS_PREFIX",
    "ManifestWriter",
    "RunInfo",
    "ShardFile",
    "manifest_digest",
    "marker_name",
    "read_run",
    "read_shard",
    "run_key",
    "shard_file_name",
    "validate_run_id",
    "write_run",
]
