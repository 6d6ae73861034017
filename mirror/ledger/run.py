"""Opening a run's ledger from its settings (``--ledger``, ``--witness-key`` ...).

What it does not do: anything with the ledger's content (``log``, ``witness``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from mirror.config import Settings
from mirror.errors import ExitStatus, UsageError
from mirror.ledger.log import LedgerLog
from mirror.ledger.witness import RunWitness, load_expected
from mirror.report import RunReport
from mirror.storage import Store

__all__ = ["default_origin", "ledger_location", "open_ledger", "open_witness", "witnessed"]

LEDGER_DIR = ".tuf-mirror/ledger"


def ledger_location(settings: Settings) -> str:
    """``--ledger``, else ``DEST/.tuf-mirror/ledger`` (a directory or an S3 prefix)."""
    explicit = settings.ledger
    if explicit:
        return str(explicit)
    if not settings.dest:
        raise UsageError("give --ledger or --dest (whose ledger is DEST/.tuf-mirror/ledger)")
    if urlsplit(settings.dest).scheme.lower() in ("s3", "memory"):
        return settings.dest.rstrip("/") + "/" + LEDGER_DIR
    return str(Path(settings.dest) / LEDGER_DIR)


def default_origin(settings: Settings) -> str:
    """``--witness-name``, else the upstream (or destination) as a schema-less URL."""
    name = settings.witness_name
    if name:
        return str(name)
    source = settings.upstream[0] if settings.upstream else settings.dest or "tuf-mirror"
    parts = urlsplit(source)
    text = (parts.netloc + parts.path) if parts.scheme and parts.netloc else source
    cleaned = "".join("-" if ch.isspace() or ch == "+" else ch for ch in text).strip("/")
    return f"{cleaned or 'tuf-mirror'}/ledger"


def open_ledger(settings: Settings, *, destination: Store | None = None) -> LedgerLog:
    """The run's ledger (not yet read). Without ``--ledger`` and with the run's
    ``destination`` at hand, the ledger is a view of ``DEST/.tuf-mirror/ledger`` on
    that store (its connections and ``--uploads`` limit); else a store of its own."""
    from mirror.endpoints import open_location

    store: Store
    if destination is not None and not settings.ledger:
        from mirror.storage.listing import ListingStore
        from mirror.storage.prefixed import PrefixedStore

        # The ledger's keys are never listed: bypass the listing-based presence checks.
        inner = destination.inner if isinstance(destination, ListingStore) else destination
        store = PrefixedStore(inner, LEDGER_DIR)
    else:
        store = open_location(settings, ledger_location(settings))
    signer = None
    key_file = settings.witness_key
    origin = default_origin(settings)
    if key_file:
        from mirror.ledger.keys import load_signer

        try:
            pem = Path(key_file).read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read --witness-key {key_file}: {exc.strerror}") from exc
        signer = load_signer(pem, origin)
    return LedgerLog(
        store, origin=origin, signer=signer, break_stale_lock=settings.break_stale_lock
    )


def open_witness(settings: Settings, *, now: datetime, destination: Store | None) -> RunWitness:
    """The ledger's part in a sync or import run, from ``--immutable``,
    ``--expect``/``--expect-key`` and ``--on-alarm``."""
    expected = []
    expect_file = settings.expect
    if expect_file:
        key_file = settings.expect_key
        try:
            data = Path(expect_file).read_bytes()
            key = Path(key_file).read_bytes() if key_file else None
        except OSError as exc:
            raise UsageError(f"cannot read --expect/--expect-key: {exc}") from exc
        expected = load_expected(data, key=key)
    return RunWitness(
        ledger=open_ledger(settings, destination=destination),
        now=now,
        immutable=settings.immutable,
        expected=expected,
        refuse=settings.on_alarm == "refuse",
        peers=settings.witness_peer,
        peer_retries=settings.retries,
        peer_timeout=settings.timeout,
        destination=destination,
    )


@asynccontextmanager
async def witnessed(
    settings: Settings, *, now: datetime, destination: Store, report: RunReport
) -> AsyncIterator[RunWitness]:
    """The witness of one sync or import run: started on entry; on exit its alarms
    go to the report (also for a failed run) and a run that otherwise succeeded
    with alarms exits 6 (``--on-alarm publish``)."""
    witness = open_witness(settings, now=now, destination=destination)
    try:
        await witness.start()
        failed = True
        try:
            yield witness
            failed = False
        finally:
            report.alarms = [dataclasses.asdict(alarm) for alarm in witness.alarms]
            report.warnings.extend(witness.warnings)
            if witness.head is not None:
                report.ledger = {
                    "location": witness.ledger.url,
                    "checkpoint_size": witness.head.size,
                    "commit": witness.head.seq,
                    "on_alarm": settings.on_alarm,
                    "recovered": list(witness.recovered),
                    "entries_appended": witness.appended,
                    "seconds": round(witness.seconds, 3),
                }
            if witness.alarms and not failed:
                report.exit_status = ExitStatus.WITNESS_ALARM
    finally:
        await witness.aclose()
        await witness.ledger.store.aclose()
