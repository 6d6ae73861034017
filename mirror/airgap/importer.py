"""``tuf-mirror import``: a bundle as one more upstream.

Under the destination's lock:

1. check the bundle (``open_bundle``): manifest checksum and format version, every
   volume present, complete and unaltered, every file's length and sha256 —
   ``BundleError`` (exit 1) naming the volume or file;
2. re-verify the destination's published state from the pinned root and compare it
   with the manifest's base — ``WrongBaseError`` (exit 2) for a bundle applied twice,
   out of order or to another mirror (a full bundle applies to an empty destination
   or over any older state);
3. run the sync engine with the bundle (``BundleFetcher``) as upstream and the
   destination as store: full verification from the pinned root and from the
   destination's trusted state (rollback refused across the gap), the same publish
   order, ``timestamp.json`` last. Expiry is checked against now, or against
   ``--reference-time`` (audits of old bundles; logged as a warning);
4. report the bundle files that no verified metadata referenced (ignored, never
   published) and write the receipt: ``DEST/.tuf-mirror/receipt.json`` and, with
   ``--receipt FILE``, a copy there.

A killed import leaves the published state as it was (or complete, if it died after
``timestamp.json``); run it again: verified targets already written are kept, and
``.tuf-mirror/import.json`` lets the rerun finish a bundle whose state was already
published instead of refusing it as "applied twice".
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Final

import trio

from mirror.airgap.describe import TOOL, expiries, expiry_strings, record_of
from mirror.airgap.fetcher import BundleFetcher
from mirror.airgap.manifest import Manifest
from mirror.airgap.report import BundleReport
from mirror.airgap.state import StateRecord, describe, format_time
from mirror.airgap.views import RecordingStore
from mirror.airgap.volumes import open_bundle
from mirror.config import Settings
from mirror.endpoints import hold_lease, limits_for, open_destination
from mirror.errors import BundleError, MirrorError, NotFoundError, UsageError, WrongBaseError
from mirror.ledger.run import witnessed
from mirror.log import log
from mirror.published import load_published
from mirror.storage import NotFoundInStoreError, PutOptions, Store, atomic
from mirror.sync import Synchronizer

RECEIPT_KEY: Final = ".tuf-mirror/receipt.json"
PENDING_KEY: Final = ".tuf-mirror/import.json"
_SHOW_IGNORED: Final = 5


def check_base(manifest: Manifest, current: StateRecord | None) -> None:
    """Refuse (``WrongBaseError``) a bundle that does not apply to ``current``."""
    brought = manifest.brought
    now_at = describe(None if current is None else current.state)
    if current is not None and current.state == brought:
        raise WrongBaseError(
            f"this bundle was already imported: the destination is at {now_at}, "
            f"the state the bundle brings"
        )
    if manifest.base is None:
        if current is not None and current.state.timestamp_version >= brought.timestamp_version:
            raise WrongBaseError(
                f"the destination is at {now_at}, newer than what this full bundle brings "
                f"({brought.describe()})"
            )
        return
    if current is not None and current.state == manifest.base:
        return
    if current is None:
        hint = "import a --full bundle first"
    elif current.state.timestamp_version < manifest.base.timestamp_version:
        hint = "import the bundles in between first"
    else:
        hint = "export a new bundle --since this destination's receipt"
    raise WrongBaseError(
        f"bundle applies to base {manifest.base.describe()}, destination is at {now_at}: {hint}"
    )


async def _read_text(store: Store, key: str) -> bytes | None:
    try:
        return await store.get(key, max_length=1024**2)
    except NotFoundInStoreError:
        return None


def _pending_bundle(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw).get("bundle_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + rename); ``OSError``."""
    atomic.replace_file(path, data, suffix=f"-{path.name}")


async def run_import(
    settings: Settings, *, now: datetime, report: BundleReport | None = None
) -> BundleReport:
    """``tuf-mirror import``: check, verify and publish one bundle; write the receipt.
    ``report`` (optional) is filled in as the run goes, so a caller still has the
    counters of a run that raised or was stopped."""
    if not settings.bundle:
        raise UsageError(
            "give the bundle to import: tuf-mirror import BUNDLE --root ... --dest ..."
        )
    root_bytes = settings.root_bytes()
    report = report if report is not None else BundleReport(command="import")
    report.upstream, report.dest = settings.bundle, settings.dest
    reference = settings.reference_time
    if reference is not None:
        warning = (
            f"--reference-time {format_time(reference)}: expiry is checked against this "
            f"time, NOT the current time ({format_time(now)}); for audits of old bundles only"
        )
        log.warning("%s", warning)
        report.warnings.append(warning)
        report.reference_time = format_time(reference)
    limits = limits_for(settings)
    store = open_destination(settings)
    try:
        async with (
            hold_lease(store, settings, report),
            witnessed(settings, now=now, destination=store, report=report) as witness,
        ):
            bundle = await open_bundle(settings.bundle)
            manifest = bundle.manifest
            report.bundle = bundle.location
            report.bundle_id = manifest.bundle_id
            report.volumes = [volume.name for volume in manifest.volumes]
            report.bundle_files = len(manifest.files)
            report.bundle_bytes = manifest.payload_bytes
            report.base = None if manifest.base is None else manifest.base.to_json()
            report.brought = manifest.brought.to_json()

            current = record_of(await load_published(store, root_bytes, limits))
            pending = _pending_bundle(await _read_text(store, PENDING_KEY))
            finishing = (
                current is not None
                and current.state == manifest.brought
                and pending == manifest.bundle_id
            )
            if finishing:
                log.warning("finishing the interrupted import of this bundle")
            else:
                check_base(manifest, current)
            await store.put_bytes(
                PENDING_KEY,
                json.dumps({"bundle_id": manifest.bundle_id}).encode(),
                PutOptions(),
            )
            recording = RecordingStore(store)
            fetcher = BundleFetcher(bundle, max_threads=settings.transfers)
            sync = Synchronizer(
                settings=settings,
                store=recording,
                fetcher=fetcher,
                now=reference or now,
                report=report,
                witness=witness,
            )
            try:
                await sync.run()
            except NotFoundError as exc:
                await _forget_pending(store)
                raise BundleError(
                    f"the bundle lacks a file the verified metadata needs: {exc}"
                ) from exc
            except MirrorError:
                await _forget_pending(store)
                raise

            published = await load_published(store, root_bytes, limits)
            after = record_of(published)
            assert after is not None  # the engine published a timestamp
            if after.state != manifest.brought:
                warning = (
                    f"the manifest says the bundle brings {manifest.brought.describe()}, "
                    f"the verified state is {after.state.describe()}"
                )
                log.warning("%s", warning)
                report.warnings.append(warning)
            report.expires = expiry_strings(await expiries(store, published, limits))
            ignored = sorted(
                key
                for key in bundle.entries
                if key not in fetcher.requested and key not in recording.touched
            )
            report.ignored = ignored
            if ignored:
                shown = ", ".join(ignored[:_SHOW_IGNORED])
                more = f" and {len(ignored) - _SHOW_IGNORED} more" if len(ignored) > 5 else ""
                log.warning(
                    "%d bundle files are referenced by no verified metadata and were ignored: %s%s",
                    len(ignored),
                    shown,
                    more,
                )
            receipt = StateRecord(
                state=after.state,
                timestamp=after.timestamp,
                expires=report.expires,
                created=format_time(now),
                tool=TOOL,
                destination=store.url,
                bundle_id=manifest.bundle_id,
                reference_time=report.reference_time,
            ).to_bytes()
            await store.put_bytes(RECEIPT_KEY, receipt, PutOptions())
            where = f"{store.url.rstrip('/')}/{RECEIPT_KEY}"
            if settings.receipt:
                try:
                    await trio.to_thread.run_sync(_write_file, Path(settings.receipt), receipt)
                except OSError as exc:
                    raise UsageError(
                        f"cannot write --receipt {settings.receipt}: {exc.strerror}"
                    ) from exc
                where = settings.receipt
            report.receipt = where
            await _forget_pending(store)
    finally:
        await store.aclose()
    log.info("import of %s done: the destination is at %s", report.bundle, describe(after.state))
    report.finish()
    return report


async def _forget_pending(store: Store) -> None:
    try:
        await store.delete(PENDING_KEY)
    except MirrorError as exc:
        log.warning("could not remove %s: %s", PENDING_KEY, exc)


__all__ = ["PENDING_KEY", "RECEIPT_KEY", "check_base", "run_import"]
