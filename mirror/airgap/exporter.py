"""``tuf-mirror export``: verify the upstream exactly as ``sync`` does and write a
bundle of what the far side lacks.

The far side's state (the *base*) comes from ``--since RECEIPT`` (the receipt its
last import wrote), else from this exporter's record of its previous export, or is
empty with ``--full``. The sync engine runs with the upstream as upstream, a
``BaseView`` of that state as its previous state, and a fresh staging directory as
its destination: so it verifies everything from the pinned root, refuses rollback
against the far side's state, and writes exactly the files a sync of the far side
would copy — new roots, timestamp, snapshot, changed roles, new targets — in the
staging directory. Those files, with their lengths and sha256 in a manifest, become
the bundle (a directory or ``.tar`` volumes).

Everything lives under the export state directory (``--state-dir``, default
``$XDG_STATE_HOME/tuf-mirror/exports/<id>``, one per pinned root and upstream):

* ``last-export.json`` — the state the last bundle brings (a receipt's format), the
  default base of the next export;
* ``hints.json`` — the engine's delegation-walk hints for that state;
* ``metadata-cache/metadata/…`` — a copy of every metadata file exported so far, so
  the base can be rebuilt even after the upstream garbage-collected old versions
  (the upstream is asked when the copy lacks a file: a ``--since`` receipt from a
  mirror fed by another exporter); a file found in neither is
  ``BaseUnavailableError`` (exit 2) suggesting ``--full``;
* ``staging/`` — the bundle being built; a killed export resumes from it (verified
  targets are not downloaded again) while the base stays the same.

The export state directory is locked for the run. What this module does not do:
verification (``mirror.trust`` via ``mirror.sync``), the tar format
(``mirror.airgap.volumes``).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import secrets
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import trio

from mirror import shutdown
from mirror.airgap.describe import TOOL, expiries, expiry_strings, record_of
from mirror.airgap.manifest import FileEntry, Manifest
from mirror.airgap.report import BundleReport
from mirror.airgap.state import StateRecord, format_time
from mirror.airgap.views import BaseView, OverlayView
from mirror.airgap.volumes import (
    assign_volumes,
    existing_bundle_paths,
    file_digest,
    write_directory_bundle,
    write_tar_bundle,
)
from mirror.config import Settings
from mirror.endpoints import hold_lease, limits_for, open_upstream
from mirror.errors import (
    StorageError,
    TamperedDestinationError,
    UsageError,
    ValidityTooShortError,
)
from mirror.fetch import Fetcher
from mirror.layout import STATE_KEY
from mirror.log import log
from mirror.published import load_published
from mirror.storage import PutOptions
from mirror.storage.local import LocalStore
from mirror.sync import Synchronizer

LAST_EXPORT = "last-export.json"
HINTS = "hints.json"
CACHE = "metadata-cache"
STAGING = "staging"
_STAGING_BASE = ".tuf-mirror/export-base.json"
#: partial-mirror settings an export refuses (read with getattr: optional features)
_PARTIAL = ("include", "exclude", "role")


def default_state_dir(root_bytes: bytes, upstream: str) -> Path:
    """``$XDG_STATE_HOME/tuf-mirror/exports/<sha256(root, upstream)[:16]>``."""
    home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    digest = hashlib.sha256(root_bytes + b"\n" + upstream.encode()).hexdigest()[:16]
    return Path(home) / "tuf-mirror" / "exports" / digest


def _whole_selection() -> str | None:
    """How the engine's hints name "every target" (``mirror.filters``, when this
    version has partial mirrors; imported by name: it is an optional feature)."""
    try:
        filters = importlib.import_module("mirror.filters")
        fingerprint = filters.TargetFilter().fingerprint()
    except (ImportError, AttributeError, TypeError):
        return None
    return fingerprint if isinstance(fingerprint, str) else None


def _absolute(path: str | Path) -> Path:
    return Path(os.path.abspath(path))


def _read_optional(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc


async def _choose_base(settings: Settings, state_dir: Path) -> tuple[StateRecord | None, str]:
    """The far side's state, and a phrase naming where it came from."""
    if settings.full:
        return None, "an empty mirror (--full)"
    if settings.since:
        raw = await trio.to_thread.run_sync(_read_optional, Path(settings.since))
        if raw is None:
            raise UsageError(f"--since {settings.since}: no such receipt")
        source = f"the far side's state from {settings.since}"
        return StateRecord.from_bytes(raw, f"--since {settings.since}"), source
    raw = await trio.to_thread.run_sync(_read_optional, state_dir / LAST_EXPORT)
    if raw is None:
        raise UsageError(
            f"no previous export is recorded in {state_dir}: give --since RECEIPT (the "
            f"receipt the far side's last import wrote) or --full for a first bundle"
        )
    return StateRecord.from_bytes(raw, str(state_dir / LAST_EXPORT)), (
        f"the state of the last export recorded in {state_dir}"
    )


def _base_identity(record: StateRecord | None, upstream: str) -> bytes:
    state = None if record is None else record.state.to_json()
    return json.dumps({"base": state, "upstream": upstream}, sort_keys=True).encode()


def _prepare_staging(staging: Path, identity: bytes) -> None:
    """Keep the staging directory of an interrupted export of the same base (its
    verified targets are reused); start afresh for any other base."""
    marker = staging / _STAGING_BASE
    if _read_optional(marker) != identity:
        shutil.rmtree(staging, ignore_errors=True)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_bytes(identity)


def _check_validity(
    expires: dict[str, datetime], now: datetime, min_validity: float | None
) -> None:
    if min_validity is None:
        return
    floor = now + timedelta(seconds=min_validity)
    short = [(role, when) for role, when in expires.items() if when < floor]
    if short:
        role, when = min(short, key=lambda item: item[1])
        left = when - now
        raise ValidityTooShortError(
            f"the {role} metadata to export expires {format_time(when)} (in "
            f"{_duration(left)}), sooner than --min-validity {_duration(floor - now)}: the "
            f"bundle could expire in transit; nothing written (export again once the "
            f"upstream re-signed it, or lower --min-validity)"
        )


def _duration(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    return f"{days}d{hours}h" if days else f"{hours}h{rest // 60}m"


async def _hash_staging(staging: LocalStore) -> list[FileEntry]:
    entries: list[FileEntry] = []
    async for info in staging.list(""):
        path = staging.root.joinpath(*info.key.split("/"))
        length, sha256 = await trio.to_thread.run_sync(file_digest, path)
        entries.append(FileEntry(info.key, length, sha256))
    return entries


async def _cache_metadata(state_dir: Path, staging: LocalStore, entries: list[FileEntry]) -> None:
    """Keep a copy of the exported metadata: the base of later exports."""
    cache = LocalStore(state_dir / CACHE)
    for entry in entries:
        if entry.path.startswith("metadata/") and entry.path not in (
            "metadata/timestamp.json",
            "metadata/root.json",
        ):
            data = await staging.get(entry.path, max_length=entry.length)
            await cache.put_bytes(entry.path, data, PutOptions())


async def _record_export(state_dir: Path, hints: bytes | None, record: StateRecord) -> None:
    """Record the state the bundle brings: the default base of the next export."""
    state_store = LocalStore(state_dir)
    if hints is not None:
        await state_store.put_bytes(HINTS, hints, PutOptions())
    await state_store.put_bytes(LAST_EXPORT, record.to_bytes(), PutOptions())


async def _walk_hints(staging: LocalStore) -> bytes | None:
    try:
        return await staging.get(STATE_KEY, max_length=64 * 1024**2)
    except StorageError as exc:
        log.warning("no walk hints recorded for the next export: %s", exc)
        return None


async def run_export(
    settings: Settings, *, now: datetime, report: BundleReport | None = None
) -> BundleReport:
    """``tuf-mirror export``: one bundle of what the far side lacks, or none when
    nothing is new. ``report`` (optional) is filled in as the run goes."""
    if not settings.to:
        raise UsageError("--to BUNDLE is required (a new directory, or FILE.tar)")
    if settings.full and settings.since:
        raise UsageError("--full and --since exclude each other")
    partial = [name for name in _PARTIAL if getattr(settings, name, None)]
    if partial:
        raise UsageError(
            f"--{partial[0]}: partial exports are not supported (the far side would miss "
            f"the targets left out); export the whole repository"
        )
    to = _absolute(settings.to)
    is_tar = to.name.endswith(".tar")
    if settings.volume_size is not None and not is_tar:
        raise UsageError("--volume-size needs a .tar bundle (--to NAME.tar)")
    if not await trio.to_thread.run_sync(to.parent.is_dir):
        raise UsageError(f"--to {settings.to}: the directory {to.parent} does not exist")
    existing = await trio.to_thread.run_sync(existing_bundle_paths, to)
    if existing:
        raise UsageError(f"{existing[0]} exists already: export to a new bundle name")
    root_bytes = settings.root_bytes()
    upstream = settings.upstream[0]
    state_dir = _absolute(settings.state_dir or default_state_dir(root_bytes, upstream))
    record, source = await _choose_base(settings, state_dir)
    report = report if report is not None else BundleReport(command="export")
    report.upstream, report.dest = upstream, str(to)
    report.base = None if record is None else record.state.to_json()
    limits = limits_for(settings)
    state_store = LocalStore(state_dir)
    fetcher: Fetcher | None = None
    try:
        async with hold_lease(state_store, settings, report):
            staging_path = state_dir / STAGING
            await trio.to_thread.run_sync(
                _prepare_staging, staging_path, _base_identity(record, upstream)
            )
            staging = LocalStore(staging_path)
            # Every --upstream with failover, --bwlimit, --retries, --timeout, as for a
            # sync; a killed export's partial downloads resume from the staging spool.
            fetcher = open_upstream(settings, partial_dir=staging.spool_dir())
            hints = await trio.to_thread.run_sync(_read_optional, state_dir / HINTS)
            base = BaseView(
                record,
                fetcher=fetcher,
                cache=LocalStore(state_dir / CACHE),
                hints=hints,
                selection=_whole_selection(),
                source=source,
            )
            sync = Synchronizer(
                settings=settings, store=staging, fetcher=fetcher, now=now, report=report, base=base
            )
            try:
                outcome = await sync.execute()
            except TamperedDestinationError as exc:
                raise TamperedDestinationError(
                    f"{source} does not verify from the pinned root: {exc}"
                ) from exc
            if outcome.nothing_new:
                log.warning("nothing new since %s: no bundle written", source)
                await trio.to_thread.run_sync(shutil.rmtree, staging_path, True)
                report.finish()
                return report
            view = OverlayView(staging, base)
            brought_published = await load_published(view, root_bytes, limits)
            brought = record_of(brought_published)
            assert brought is not None  # the engine published a timestamp
            expires = await expiries(view, brought_published, limits)
            report.expires = expiry_strings(expires)
            _check_validity(expires, now, settings.min_validity)

            entries = await _hash_staging(staging)
            manifest = Manifest(
                bundle_id=secrets.token_hex(16),
                created=format_time(now),
                tool=TOOL,
                upstream=upstream,
                consistent_snapshot=brought_published.trusted.consistent_snapshot,
                base=None if record is None else record.state,
                brought=brought.state,
                expires=report.expires,
                files=tuple(entries),
            )
            await _cache_metadata(state_dir, staging, entries)
            hints = await _walk_hints(staging)
            async with shutdown.finishing():  # a first signal lets the bundle complete
                if is_tar:
                    manifest = assign_volumes(manifest, to.name, settings.volume_size)
                    written = await write_tar_bundle(
                        staging_path,
                        to,
                        manifest,
                        mtime=int(now.timestamp()),
                        volume_size=settings.volume_size,
                    )
                    report.volumes = [str(path) for path in written]
                else:
                    await write_directory_bundle(staging_path, to, manifest)
                await _record_export(state_dir, hints, _receipt_like(brought, manifest))
            await trio.to_thread.run_sync(shutil.rmtree, staging_path, True)
    finally:
        if fetcher is not None:
            await fetcher.aclose()
    report.bundle = str(to)
    report.bundle_id = manifest.bundle_id
    report.bundle_files = len(manifest.files)
    report.bundle_bytes = manifest.payload_bytes
    report.brought = brought.state.to_json()
    report.finish()
    return report


def _receipt_like(brought: StateRecord, manifest: Manifest) -> StateRecord:
    """What the far side's receipt will say once it imported this bundle."""
    return StateRecord(
        state=brought.state,
        timestamp=brought.timestamp,
        expires=dict(manifest.expires),
        created=manifest.created,
        tool=TOOL,
        destination="(expected after import)",
        bundle_id=manifest.bundle_id,
    )


__all__ = ["default_state_dir", "run_export"]
