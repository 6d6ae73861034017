"""``tuf-mirror verify``: audit a published mirror from the pinned root.

Re-verifies the destination's metadata (root chain, timestamp, snapshot, targets and
every reachable delegated role) exactly as a sync does at its start, then checks the
length and every hash of each target the metadata lists, under every name it is
published as (or of a random sample of ``--sample N`` targets). Missing and corrupt
files are reported by name, in the report and one per line on stderr
(``repair_targets``, for ``sync --repair``, fetches the damaged targets again). Expired
top-level metadata (root, timestamp, snapshot, targets) fails the audit (exit 1):
clients refuse such a mirror. A destination holding an interrupted publish
(``mirror.recovery``) fails with exit 3: the next ``sync`` completes it.

It writes nothing: the destination is opened through ``ReadOnlyStore``, so an
auditor needs read access only (``s3:GetObject``, ``s3:ListBucket``), and it needs
no upstream. Repairing what it finds is ``sync --repair``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import datetime

import trio

from mirror.config import Settings
from mirror.copier import TargetCopier, stored_state
from mirror.errors import (
    ExitStatus,
    IncompletePublishError,
    TamperedDestinationError,
    VerificationError,
)
from mirror.fetch import Fetcher
from mirror.layout import METADATA, TARGETS
from mirror.log import log
from mirror.plan import TargetCopy
from mirror.published import load_published
from mirror.report import RunReport
from mirror.storage import NotFoundInStoreError, Store
from mirror.storage.readonly import ReadOnlyStore
from mirror.trust import DelegationWalk, Limits, Targets, metadata_filename, target_filenames

#: at most this many names are kept in the report's missing/corrupt lists
MAX_LISTED = 1000


@dataclass(frozen=True, slots=True)
class _Check:
    path: str
    length: int
    hashes: dict[str, str]
    names: tuple[str, ...]
    role: str = "targets"


class _Sampler:
    """Keeps every check, or a uniform random sample of ``size`` (reservoir)."""

    def __init__(self, size: int | None) -> None:
        self.size = size
        self.seen = 0
        self.kept: list[_Check] = []
        self._random = random.Random()  # noqa: S311 - sampling, not security

    def add(self, check: _Check) -> None:
        self.seen += 1
        if self.size is None or len(self.kept) < self.size:
            self.kept.append(check)
            return
        index = self._random.randrange(self.seen)
        if index < self.size:
            self.kept[index] = check


async def audit(settings: Settings, *, now: datetime) -> RunReport:
    """Audit ``settings.dest``; the report lists missing and corrupt files."""
    from mirror.endpoints import limits_for, open_destination

    report = RunReport(command="verify", dest=settings.dest)
    limits = limits_for(settings)
    store = ReadOnlyStore(open_destination(settings, listing=False))
    try:
        await _audit(store, settings, limits, now, report)
    finally:
        await store.aclose()
    report.finish()
    for name in report.missing:
        log.error("missing: %s", name)
    for name in report.corrupt:
        log.error("corrupt: %s", name)
    if report.missing or report.corrupt or report.expired_top_level:
        report.exit_status = ExitStatus.VERIFICATION_FAILED
    return report


def _check_expiry(
    report: RunReport, role: str, version: int, expires: datetime, now: datetime
) -> None:
    """Expired top-level metadata fails the audit: clients refuse the mirror."""
    if expires <= now:
        message = f"{role} v{version} expired at {expires:%Y-%m-%dT%H:%M:%SZ}"
        log.error("expired: %s", message)
        report.expired_top_level.append(message)


def _note(report: RunReport, bucket: list[str], name: str) -> None:
    if len(bucket) < MAX_LISTED:
        bucket.append(name)


async def _audit(
    store: Store,
    settings: Settings,
    limits: Limits,
    now: datetime,
    report: RunReport,
    *,
    damaged: list[_Check] | None = None,
) -> None:
    published = await load_published(store, settings.root_bytes(), limits)
    if published.interrupted is not None:
        raise IncompletePublishError(
            f"{store.url} holds {published.interrupted}: TUF clients cannot use it until "
            "the next sync completes the publish"
        )
    if published.snapshot is None or published.timestamp is None:
        raise TamperedDestinationError(f"{store.url}: no published timestamp.json")
    trusted = published.trusted
    report.versions_after = published.versions()
    for role, signed in (
        ("root", trusted.root.signed),
        ("timestamp", published.timestamp.signed),
        ("snapshot", published.snapshot.signed),
    ):
        _check_expiry(report, role, signed.version, signed.expires, now)
    consistent = trusted.consistent_snapshot
    sampler = _Sampler(settings.sample)

    async def load(role: str, version: int) -> bytes | None:
        name = metadata_filename(role, version if consistent else None)
        try:
            return await store.get(f"{METADATA}/{name}", max_length=limits.max_targets_length)
        except NotFoundInStoreError:
            _note(report, report.missing, f"{METADATA}/{name}")
            return None

    def collect(role: str, targets: Targets, walk: DelegationWalk | None) -> None:
        for path, target in targets.targets.items():
            if walk is not None and not walk.is_authorized(path, role):
                continue
            names = target_filenames(path, dict(target.hashes), consistent_snapshot=consistent)
            sampler.add(_Check(path, target.length, dict(target.hashes), tuple(names), role))

    targets_version = published.snapshot.signed.meta["targets.json"].version
    data = await load("targets", targets_version)
    if data is None:
        raise TamperedDestinationError(f"{store.url}: published targets v{targets_version} missing")
    try:
        top = trusted.update_targets(data)
    except VerificationError as exc:
        raise TamperedDestinationError(f"destination targets: {exc}") from exc
    _check_expiry(report, "targets", top.version, top.signed.expires, now)
    report.roles_verified = 1
    walk = DelegationWalk(trusted)
    collect("targets", top.signed, walk)
    while not walk.done:
        steps = walk.ready()
        if not steps:
            break
        for step in steps:
            raw = await load(step.role, step.version)
            if raw is None:
                continue  # reported missing; its delegations cannot be followed
            try:
                verified = walk.feed(step, raw)
            except VerificationError as exc:
                _note(report, report.corrupt, f"{METADATA}/{step.role} ({exc})")
                continue
            report.roles_verified += 1
            if not step.repeat:
                collect(step.role, verified.signed, walk)

    limiter = trio.CapacityLimiter(max(1, settings.transfers))

    async def check_one(check: _Check) -> None:
        async with limiter:
            for name in check.names:
                key = f"{TARGETS}/{name}"
                result = await stored_state(
                    store, key, check.length, check.hashes, trust_checksum=False
                )
                if result is None:
                    _note(report, report.missing, key)
                elif not result:
                    _note(report, report.corrupt, key)
                if not result and damaged is not None and check not in damaged:
                    damaged.append(check)
            report.targets_published += 1

    async with trio.open_nursery() as nursery:
        for check in sampler.kept:
            nursery.start_soon(check_one, check)


async def repair_targets(
    settings: Settings,
    *,
    store: Store,
    fetcher: Fetcher,
    now: datetime,
    report: RunReport,
) -> None:
    """``sync --repair``: after the sync, audit the published targets as ``verify``
    does and fetch again, from the upstream, exactly those that are missing or
    corrupt, each verified against its signed length and hashes before it is
    written (under the damaged names only). ``report.repaired`` lists them.

    Damaged *metadata* is not repaired here (an old role version may be gone
    upstream): it stays in ``report.missing`` / ``report.corrupt`` and fails the run
    (exit 1), as ``verify`` would."""
    from mirror.endpoints import limits_for

    limits = limits_for(settings)
    found = RunReport(command="verify")
    damaged: list[_Check] = []
    await _audit(store, replace(settings, sample=None), limits, now, found, damaged=damaged)
    published = await load_published(store, settings.root_bytes(), limits)
    copier = TargetCopier(
        store=store,
        fetcher=fetcher,
        consistent_snapshot=published.trusted.consistent_snapshot,
        short_max_age=settings.timestamp_max_age,
    )
    for check in damaged:
        copy = TargetCopy(
            path=check.path,
            length=check.length,
            hashes=check.hashes,
            names=check.names,
            role=check.role,
        )
        log.warning("repairing %s (%s)", check.path, ", ".join(check.names))
        await copier.copy(copy)
        report.repaired.append(check.path)
        report.targets_fetched += 1
        report.target_bytes += check.length
    if damaged:
        await store.flush()
    metadata = [name for name in found.missing + found.corrupt if name.startswith(METADATA)]
    if metadata:
        report.missing = [n for n in found.missing if n.startswith(METADATA)]
        report.corrupt = [n for n in found.corrupt if n.startswith(METADATA)]
        raise TamperedDestinationError(
            f"{store.url}: published metadata is missing or corrupt ({', '.join(metadata[:5])});"
            " --repair restores targets only"
        )
