"""``tuf-mirror ledger lookup|export|checkpoint|verify`` and ``tuf-mirror witness``.

- ``ledger lookup PATH``: JSON, every (length, hashes) the path has had, each with
  where it was first seen (a metadata version as ``meta:<role>@<version>``);
- ``ledger export``: every (path, length, hashes) ever published, as JSON lines in
  the ``--expect`` format plus where first seen (one index shard in memory at a time);
- ``ledger checkpoint``: the latest checkpoint (signed note) on stdout;
- ``ledger verify [--key FILE] [--since CHECKPOINT]``: streams the log once and
  checks that it hashes to its checkpoint, that the signature holds, that the log
  extends the older checkpoint (append-only), and that the index says exactly what
  the log says; exit 1 otherwise;
- ``witness``: re-fetches the upstream's metadata as a first sync would (a dry run
  against an empty base: every role, no target bytes, nothing published), checks
  every listing, role version and recorded root version against the ledger, and
  compares ``--witness-peer`` mirrors with it; alarms as in a sync, exit 6.

What it does not do: publish anything, or move the checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio

from mirror.config import Settings
from mirror.errors import ExitStatus, MirrorError, NotFoundError, UsageError
from mirror.ledger.entries import Entry, IndexRecord, parse_entry
from mirror.ledger.frontier import Frontier
from mirror.ledger.log import Head, LedgerCorruptError, LedgerLog, checkpoint_of
from mirror.ledger.note import Checkpoint, NoteError
from mirror.ledger.parsers import LEDGER_COMMANDS, add_parsers
from mirror.ledger.run import open_ledger
from mirror.ledger.witness import fetch_metadata
from mirror.log import log
from mirror.report import RunReport

__all__ = ["LEDGER_COMMANDS", "add_parsers", "run_command"]


def _settings(args: argparse.Namespace, command: str) -> Settings:
    if not args.dest and not args.ledger:
        raise UsageError(f"tuf-mirror {command}: give --dest or --ledger")
    return Settings(
        command=command,
        root=Path(getattr(args, "root", None) or ""),
        dest=args.dest or "",
        upstream=(args.upstream,) if getattr(args, "upstream", None) else (),
        ledger=args.ledger,
        s3_endpoint_url=args.s3_endpoint_url,
        s3_region=args.s3_region,
        immutable=tuple(getattr(args, "immutable", ()) or ()),
        expect=getattr(args, "expect", None),
        expect_key=getattr(args, "expect_key", None),
        retries=2,
        timeout=60.0,
    )


def run_command(args: argparse.Namespace) -> int:
    """Run ``ledger ...`` or ``witness``; return the exit status."""
    if args.command == "witness":
        report = trio.run(
            _witness, _settings(args, "witness"), list(args.witness_peer), args.sample
        )
        if args.json:
            print(json.dumps(report.to_dict(), indent=2))
        summary = report.summary_line()
        if report.error is None and not report.alarms:
            summary = (
                f"tuf-mirror witness: no alarm; {report.roles_verified} roles and "
                f"{report.ledger.get('sampled_targets', 0)} targets checked against a ledger "
                f"of {report.ledger.get('checkpoint_size')} entries, {report.requests} requests"
            )
        print(summary, file=sys.stderr)
        return int(report.exit_status)
    settings = _settings(args, f"ledger {args.ledger_command}")
    return int(trio.run(_ledger, settings, args))


async def _ledger(settings: Settings, args: argparse.Namespace) -> ExitStatus:
    ledger = open_ledger(settings)
    try:
        head = await ledger.head()
        action = args.ledger_command
        if action == "lookup":
            print(json.dumps(await lookup(ledger, head, args.path), indent=2))
        elif action == "export":
            async for line in export(ledger, head):
                sys.stdout.write(line)
        elif action == "checkpoint":
            if head.seq == 0:
                raise UsageError(f"ledger {ledger.url} has no checkpoint yet")
            sys.stdout.write(head.note.decode())
        else:
            key = await trio.Path(args.key).read_bytes() if args.key else None
            since = await trio.Path(args.since).read_bytes() if args.since else None
            summary = await verify(ledger, key=key, since=since)
            print(f"tuf-mirror ledger verify: ok, {summary}", file=sys.stderr)
    except OSError as exc:
        raise UsageError(f"cannot read {exc.filename}: {exc.strerror}") from exc
    finally:
        await ledger.store.aclose()
    return ExitStatus.OK


# -- lookup and export --------------------------------------------------------------


def _seen(entry: Entry) -> dict[str, Any]:
    skip = {"kind", "path", "length", "hashes", "sha256"}
    return {k: v for k, v in entry.data.items() if k not in skip}


async def lookup(ledger: LedgerLog, head: Head, path: str) -> dict[str, Any]:
    """Every distinct (length, hashes) of ``path``, oldest first, with first sighting."""
    versions: list[dict[str, Any]] = []
    for record in await ledger.lookup(path, head):
        if any(
            v["length"] == record.entry.length and v["hashes"] == record.entry.hashes
            for v in versions
        ):
            continue
        versions.append(
            {
                "length": record.entry.length,
                "hashes": record.entry.hashes,
                "first_seen": _seen(record.entry),
                "leaf": record.leaf,
            }
        )
    return {"path": path, "checkpoint_size": head.size, "versions": versions}


async def export(ledger: LedgerLog, head: Head) -> Any:
    """JSON lines, one per (path, length, hashes) ever published (targets)."""
    for number in range(16**2):
        shard = f"{number:02x}"
        records = await ledger._shard(shard, head.size)
        seen: set[str] = set()
        for record in sorted(records, key=lambda r: r.leaf):
            if record.entry.kind != "target":
                continue
            identity = json.dumps([record.key, record.entry.length, record.entry.hashes])
            if identity in seen:
                continue
            seen.add(identity)
            line = {
                "path": record.key,
                "length": record.entry.length,
                "hashes": record.entry.hashes,
                "first_seen": _seen(record.entry),
            }
            yield json.dumps(line, sort_keys=True) + "\n"


# -- verify -------------------------------------------------------------------------


async def verify(ledger: LedgerLog, *, key: bytes | None, since: bytes | None) -> str:
    """Check the log against its checkpoint (see the module docstring); raise
    ``LedgerCorruptError`` (exit 1) on the first mismatch."""
    from mirror.ledger.keys import load_verifiers, note_names

    head = await ledger.head()
    where = ledger.url
    raw_pointer = await ledger._get("head.json")
    if raw_pointer is not None:
        try:
            pointer = int(json.loads(raw_pointer)["seq"])
        except (ValueError, KeyError, TypeError) as exc:
            raise LedgerCorruptError(f"ledger {where}: unreadable head.json") from exc
        if pointer > head.seq:
            raise LedgerCorruptError(f"ledger {where}: head.json names a commit that is missing")
    signed = "unsigned"
    if key is not None:
        try:
            verifiers = load_verifiers(key, names=note_names(head.note))
            checkpoint_of(head.note, verifiers)
        except NoteError as exc:
            raise LedgerCorruptError(f"ledger {where}: checkpoint signature: {exc}") from exc
        signed = "signature ok"
    older: Checkpoint | None = None
    if since is not None:
        try:
            older = checkpoint_of(since)
        except NoteError as exc:
            raise UsageError(f"--since: not a checkpoint: {exc}") from exc
        if older.size > head.size:
            raise LedgerCorruptError(
                f"ledger {where}: --since has {older.size} entries, the ledger only {head.size}"
            )
    frontier = Frontier()
    if older is not None and older.size == 0 and older.root != frontier.root():
        raise LedgerCorruptError(f"ledger {where}: --since is not an empty tree's checkpoint")
    async with contextlib.aclosing(ledger.entries(0, head.size)) as stream:
        async for index, raw in stream:
            try:
                parse_entry(raw)
            except ValueError as exc:
                raise LedgerCorruptError(f"ledger {where}: leaf {index}: {exc}") from exc
            frontier.append(raw)
            if older is not None and frontier.size == older.size and frontier.root() != older.root:
                raise LedgerCorruptError(
                    f"ledger {where}: the log is not an append-only extension of the "
                    f"--since checkpoint (size {older.size})"
                )
    if frontier.root() != head.checkpoint.root:
        raise LedgerCorruptError(
            f"ledger {where}: the entries do not hash to the checkpoint's root (size {head.size})"
        )
    indexed = await _verify_index(ledger, head)
    if indexed != head.size:
        raise LedgerCorruptError(
            f"ledger {where}: the index holds {indexed} of {head.size} entries"
        )
    extension = f", extends the checkpoint of size {older.size}" if older is not None else ""
    return f"{head.size} entries match checkpoint {head.seq} ({signed}{extension})"


async def _verify_index(ledger: LedgerLog, head: Head) -> int:
    """Every index record is its leaf's entry; returns how many there are."""
    count = 0
    bundle_cache: dict[int, list[bytes]] = {}
    for number in range(16**2):
        records: list[IndexRecord] = await ledger._shard(f"{number:02x}", head.size)
        for record in records:
            bundle = record.leaf // 256
            if bundle not in bundle_cache:
                bundle_cache.clear()
                bundle_cache[bundle] = [
                    raw
                    async for _, raw in ledger.entries(
                        bundle * 256, min(head.size, bundle * 256 + 256)
                    )
                ]
            raw = bundle_cache[bundle][record.leaf % 256]
            if raw != record.entry.to_bytes() or record.key != record.entry.key:
                raise LedgerCorruptError(
                    f"ledger {ledger.url}: index record of {record.key!r} differs from leaf "
                    f"{record.leaf}"
                )
            count += 1
    return count


# -- witness -------------------------------------------------------------------------


async def _witness(settings: Settings, peers: list[str], sample: int | None) -> RunReport:
    report = RunReport(command="witness")
    report.upstream = settings.upstream[0]
    try:
        await witness(settings, peers=peers, report=report, now=datetime.now(UTC), sample=sample)
    except MirrorError as exc:
        log.error("%s", exc.diagnostics())
        report.finish(exc)
        return report
    report.finish()
    if report.alarms:
        report.exit_status = ExitStatus.WITNESS_ALARM
    return report


async def witness(
    settings: Settings,
    *,
    peers: list[str],
    report: RunReport,
    now: datetime,
    sample: int | None = None,
) -> None:
    """The auditor's run: see the module docstring."""
    import dataclasses
    import hashlib

    from mirror.endpoints import open_destination, open_upstream
    from mirror.ledger.run import open_witness
    from mirror.storage.memory import MemoryStore
    from mirror.sync import Synchronizer

    empty = MemoryStore()
    destination = None
    if settings.dest:
        destination = open_destination(settings, listing=False)
    run_witness = open_witness(settings, now=now, destination=destination)
    run_witness.audit = True
    fetcher = open_upstream(settings)
    try:
        await run_witness.start()
        assert run_witness.head is not None
        sync = Synchronizer(
            settings=settings,
            store=empty,
            fetcher=fetcher,
            now=now,
            dry_run=True,
            report=report,
            base=empty,
            witness=run_witness,
        )
        await sync.run()
        # Versioned metadata the ledger recorded: every root version, and the
        # upstream's current timestamp and snapshot.
        timestamp = await fetch_metadata(fetcher, "timestamp.json")
        snapshot_version = None
        if timestamp is not None:
            snapshot_version = int(
                json.loads(timestamp)["signed"]["meta"]["snapshot.json"]["version"]
            )
            await run_witness.observe_versions(
                timestamp=timestamp, snapshot_version=snapshot_version
            )
            await run_witness.observe_meta(
                name="timestamp.json",
                role="timestamp",
                version=int(json.loads(timestamp)["signed"]["version"]),
                data=timestamp,
            )
        recorded = await _recorded_meta(run_witness.ledger, run_witness.head)
        for (role, version), name in sorted(recorded.items()):
            if role not in ("root", "snapshot"):
                continue
            data = await fetch_metadata(fetcher, name)
            if data is not None:
                await run_witness.observe_meta(name=name, role=role, version=version, data=data)
        await run_witness.check_expected()
        if sample is not None:
            await _sample_targets(run_witness, fetcher, sample, report)
        for peer in peers:
            await run_witness.compare_peer(
                peer, recorded, retries=settings.retries, transfer_timeout=settings.timeout
            )
        report.alarms = [dataclasses.asdict(alarm) for alarm in run_witness.alarms]
        report.warnings.extend(run_witness.warnings)
        report.ledger = {
            **report.ledger,
            "location": run_witness.ledger.url,
            "checkpoint_size": run_witness.head.size,
            "commit": run_witness.head.seq,
            "checked_sha256": hashlib.sha256(run_witness.head.note).hexdigest(),
        }
    finally:
        report.alarms = [dataclasses.asdict(alarm) for alarm in run_witness.alarms]
        await run_witness.aclose()
        await run_witness.ledger.store.aclose()
        await fetcher.aclose()
        await empty.aclose()
        if destination is not None:
            await destination.aclose()


async def _sample_targets(run_witness: Any, fetcher: Any, sample: int, report: RunReport) -> None:
    """Fetch ``sample`` recorded targets (0: all; the latest content of each path,
    chosen uniformly, one index shard in memory at a time) and compare their bytes
    with the ledger. Under its content-addressed name a target must have exactly
    the recorded bytes; under its plain name (repositories without consistent
    snapshots) only an ``--immutable`` path must."""
    import hashlib
    import random

    from mirror.errors import LengthOrHashMismatchError
    from mirror.trust import target_filenames

    ledger, head = run_witness.ledger, run_witness.head
    chosen: list[IndexRecord] = []
    seen = 0
    rng = random.SystemRandom()
    for number in range(16**2):
        latest: dict[str, IndexRecord] = {}
        for record in await ledger._shard(f"{number:02x}", head.size):
            if record.entry.kind == "target":
                latest[record.key] = record
        for record in latest.values():
            seen += 1
            if sample == 0 or len(chosen) < sample:
                chosen.append(record)
            else:
                slot = rng.randrange(seen)
                if slot < sample:
                    chosen[slot] = record
    sampled = 0
    for record in chosen:
        entry = record.entry
        path, hashes = str(entry.data["path"]), entry.hashes
        names = target_filenames(path, hashes, consistent_snapshot=True)
        data: bytes | None = None
        addressed = True
        for name in [*names, path]:
            try:
                got = await fetcher.fetch_bytes("targets", name, max_length=entry.length)
            except NotFoundError:
                continue
            except LengthOrHashMismatchError:
                data = b""  # more bytes than recorded
            else:
                data = bytes(got.data) if got is not None else None
            addressed = name != path
            break
        sampled += 1
        if data is None:
            continue
        observed = {
            name: hashlib.new(name, data).hexdigest()
            for name in hashes
            if name in hashlib.algorithms_available
        }
        if len(data) == entry.length and all(observed[n] == hashes[n] for n in observed):
            continue
        if not addressed and not run_witness._immutable(path):
            continue
        await run_witness.alarm(
            "TARGET_MUTATION",
            path,
            {"length": entry.length, "hashes": hashes, "first_seen": entry.data},
            {
                "length": len(data),
                "hashes": observed,
                "served_as": "content-addressed" if addressed else "path",
            },
            files={"upstream-target": data},
        )
    report.ledger["sampled_targets"] = sampled


async def _recorded_meta(ledger: LedgerLog, head: Head) -> dict[tuple[str, int], str]:
    """(role, version) -> file name of every versioned metadata file recorded."""
    out: dict[tuple[str, int], str] = {}
    async for _, raw in ledger.entries(0, head.size):
        entry = parse_entry(raw)
        if entry.kind == "meta" and entry.data["name"] != "timestamp.json":
            out[(str(entry.data["role"]), int(entry.data["version"]))] = str(entry.data["name"])
    return out
