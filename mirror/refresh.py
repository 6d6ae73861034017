"""The top-level refresh of a sync: root chain, ``root.json`` and the root history,
timestamp (a conditional GET), snapshot, one short step per role as in python-tuf's
``Updater``, each returning what it verified.

``refresh`` starts a new ``TrustedSet`` from the pinned root and the published
state, walks the upstream's root chain and fetches the timestamp: it returns a
``Refreshed``. ``with_root_history`` (a first sync) and ``with_snapshot`` (when the
run walks) return a copy that also holds the old root versions and the new
snapshot. Nothing is written here.

What this module does not do: verification itself (``mirror.trust``), targets and
delegated roles (``walk``), writing (``publish``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

from mirror.config import Settings
from mirror.errors import (
    ExpiredMetadataError,
    FetchError,
    RollbackError,
    UsageError,
    VerificationError,
)
from mirror.fetch import Fetcher, PipeliningFetcher
from mirror.layout import METADATA, meta_key
from mirror.log import log
from mirror.published import Published, read_optional
from mirror.report import RunReport
from mirror.storage import Store
from mirror.trust import (
    EqualVersionError,
    Limits,
    Root,
    TrustedSet,
    Verified,
    metadata_filename,
)
from mirror.upstream import (
    ABSENT,
    check_is_metadata,
    fetch_root_history,
    keep_published_roots,
    metadata_location,
    naming,
    upstream_root_json,
)

__all__ = [
    "MetadataSource",
    "NewSnapshot",
    "Refreshed",
    "RollbackWitness",
    "note_refresh",
    "refresh",
    "with_root_history",
    "with_snapshot",
]


class RollbackWitness(Protocol):
    """Told about a rollback the trust core refused (``hooks.Witness``: the ledger)."""

    async def rollback_refused(self, role: str, data: bytes, error: Exception) -> None:
        """Note the refused bytes (an alarm)."""


@dataclass(frozen=True, slots=True)
class MetadataSource:
    """Where a run reads upstream metadata from, and how it names it in messages."""

    fetcher: Fetcher
    limits: Limits
    #: counts ``roles_fetched`` (output only)
    report: RunReport
    #: the upstream URL or path, for messages
    location: str
    metadata_url: str | None = None
    #: nothing published yet: an upstream serving no TUF metadata is misconfigured
    first_sync: bool = False

    @classmethod
    def of(
        cls,
        settings: Settings,
        fetcher: Fetcher,
        limits: Limits,
        report: RunReport,
        *,
        first_sync: bool,
    ) -> MetadataSource:
        """The source of a run with ``settings`` (its first upstream, or its bundle)."""
        location = settings.upstream[0] if settings.upstream else settings.bundle
        return cls(
            fetcher,
            limits,
            report,
            location=location or "upstream",
            metadata_url=settings.metadata_url,
            first_sync=first_sync,
        )

    async def fetch(self, name: str, max_length: int) -> bytes:
        """The upstream's metadata file ``name`` (at most ``max_length`` bytes)."""
        got = await self.fetcher.fetch_bytes(METADATA, name, max_length=max_length)
        assert got is not None  # not a conditional request
        self.report.roles_fetched += 1
        check_is_metadata(self.where(name), got, first_sync=self.first_sync)
        return got.data

    async def fetch_many(self, names: Sequence[str], max_length: int) -> list[bytes | None]:
        """Best effort, the upstream's metadata files ``names`` at once: pipelined
        where the fetcher can (``PipeliningFetcher``), else not asked. Each one's
        bytes when it came whole and looks like metadata, else None: the caller
        then asks ``fetch``, whose retries, failover and messages are the rule."""
        fetcher = self.fetcher
        if len(names) < 2 or not isinstance(fetcher, PipeliningFetcher):
            return [None] * len(names)
        got = await fetcher.fetch_many(METADATA, [(name, max_length) for name in names])
        for index, data in enumerate(got):
            if data is None:
                continue
            if data.lstrip()[:1] != b"{":
                got[index] = None  # ``fetch`` says what came instead
                continue
            self.report.roles_fetched += 1
        return got

    def where(self, name: str, *, local: bool = False) -> str:
        """The URL (or path) of the metadata file ``name``, for messages
        (``local``: the bytes came from the destination)."""
        if local:
            return f"destination {meta_key(name)}"
        return metadata_location(self.location, self.metadata_url, name)


@dataclass(frozen=True, slots=True)
class NewSnapshot:
    """A snapshot verified this run, to be published under ``name``."""

    name: str
    version: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Refreshed:
    """What the refresh verified: the new trusted set and what changed."""

    #: root (final), timestamp and, after ``with_snapshot``, snapshot; the walk
    #: adds the targets roles to it
    trusted: TrustedSet
    #: root versions after the published ones, in order
    new_roots: tuple[Verified[Root], ...] = ()
    timestamp_changed: bool = False
    #: the validator of the timestamp the upstream served (304: the published one)
    timestamp_etag: str | None = None
    #: the upstream's unversioned root.json, when it equals a verified root version
    root_json: bytes | None = None
    #: root versions older than the pinned one (a first sync), by version, each
    #: shown authentic by the chain that ends in the pinned root
    root_history: Mapping[int, bytes] = field(default_factory=dict)
    #: the snapshot to publish (None: unchanged, or not refreshed)
    snapshot: NewSnapshot | None = None

    @property
    def snapshot_changed(self) -> bool:
        return self.snapshot is not None

    def versions(self) -> dict[str, int]:
        """The versions of the top-level roles verified so far, by role."""
        new = self.trusted
        return {
            "root": new.root.version,
            **({"timestamp": new.timestamp.version} if new.timestamp else {}),
            **({"snapshot": new.snapshot.version} if new.snapshot else {}),
            **({"targets": new.targets.version} if new.targets else {}),
        }


def note_refresh(report: RunReport, refreshed: Refreshed) -> None:
    """The upstream's versions into the report, and a warning (once per run) when
    the upstream does not use consistent snapshots."""
    trusted = refreshed.trusted
    report.upstream_versions = {"root": trusted.root.version}
    if trusted.timestamp is not None:
        report.upstream_versions["timestamp"] = trusted.timestamp.version
    if trusted.consistent_snapshot:
        return
    warning = (
        "the upstream does not use consistent snapshots: files are replaced in "
        "place and readers may briefly see a mix of old and new files"
    )
    if warning not in report.warnings:
        log.warning("%s", warning)
        report.warnings.append(warning)


async def refresh(
    source: MetadataSource,
    root_bytes: bytes,
    published: Published,
    *,
    now: datetime,
    witness: RollbackWitness | None = None,
) -> Refreshed:
    """Root chain and timestamp, from the published state to the upstream's newest."""
    trusted = TrustedSet(root_bytes, now=now, limits=source.limits, expired_delegated_ok=True)
    new_roots = await _refresh_root(source, trusted, published)
    root_json = None
    if new_roots or not published.pinned_root_published:
        root_json = await upstream_root_json(
            lambda name: source.fetch(name, source.limits.max_root_length),
            [root_bytes, *published.roots, *(root.raw for root in new_roots)],
            source.report,
        )
    changed, etag = await _refresh_timestamp(source, trusted, published, witness)
    return Refreshed(
        trusted,
        new_roots=new_roots,
        timestamp_changed=changed,
        timestamp_etag=etag,
        root_json=root_json,
    )


async def _refresh_root(
    source: MetadataSource, trusted: TrustedSet, published: Published
) -> tuple[Verified[Root], ...]:
    """The published roots, then N+1, N+2, ... until the upstream has no next version."""
    for data in published.roots:
        trusted.update_root(data)
    new_roots: list[Verified[Root]] = []
    while True:
        name = f"{trusted.root.version + 1}.root.json"
        try:
            data = await source.fetch(name, source.limits.max_root_length)
        except ABSENT:  # 403: an object store hiding a missing key
            break
        with naming(source.where(name)):
            new_roots.append(trusted.update_root(data))
    trusted.check_root_not_expired()
    return tuple(new_roots)


async def _refresh_timestamp(
    source: MetadataSource,
    trusted: TrustedSet,
    published: Published,
    witness: RollbackWitness | None,
) -> tuple[bool, str | None]:
    """(whether the upstream's timestamp is newer than the published one, its ETag)."""
    if published.timestamp is not None:
        try:
            trusted.update_timestamp(published.timestamp.raw)
        except (VerificationError, EqualVersionError) as exc:
            # New root rotated the timestamp keys (fast-forward) or it expired.
            log.info("published timestamp is no rollback floor any more: %s", exc)
    # A conditional GET: a run with nothing new moves a few hundred bytes. It
    # only makes sense while the published timestamp is still trusted. ETag only:
    # Last-Modified has one-second granularity, and a timestamp re-signed within
    # the second of our previous fetch would then look unchanged until it
    # changes again.
    etag = published.timestamp_etag if trusted.timestamp is not None else None
    try:
        got = await source.fetcher.fetch_bytes(
            METADATA,
            "timestamp.json",
            max_length=source.limits.max_timestamp_length,
            if_none_match=etag,
        )
    except ABSENT as exc:
        # Not a garbage-collected versioned file: no restart can help. Before
        # anything was published, the upstream URL is wrong (exit 2).
        error = UsageError if source.first_sync else FetchError
        raise error(
            f"{exc}: the upstream has no timestamp.json (check --upstream or --metadata-url)"
        ) from exc
    if got is None:
        # 304: the upstream's timestamp is the one we published.
        _check_published_fresh(trusted)
        return False, published.timestamp_etag
    source.report.roles_fetched += 1
    where = source.where("timestamp.json")
    check_is_metadata(where, got, first_sync=source.first_sync)
    try:
        with naming(where):
            trusted.update_timestamp(got.data)
    except RollbackError as exc:
        if witness is not None:
            await witness.rollback_refused("timestamp", got.data, exc)
        raise
    except EqualVersionError:
        _check_published_fresh(trusted)
        return False, got.etag
    return True, got.etag


def _check_published_fresh(trusted: TrustedSet) -> None:
    timestamp = trusted.timestamp
    if timestamp is not None and timestamp.signed.is_expired(trusted.now):
        raise ExpiredMetadataError(
            f"timestamp v{timestamp.version}: the upstream still serves an expired "
            f"timestamp (expired {timestamp.signed.expires:%Y-%m-%dT%H:%M:%SZ})"
        )


async def with_root_history(
    refreshed: Refreshed,
    source: MetadataSource,
    store: Store,
    root_bytes: bytes,
    published: Published,
) -> Refreshed:
    """Root versions 1 .. pinned-1 from the upstream, for a first sync: clients that
    pinned an older root need the whole chain. Only those shown authentic back from
    the pinned bytes and not yet at the destination (``store``) are kept; the rest
    are skipped with a warning (``mirror.upstream.fetch_root_history``), never
    failing the run."""
    if published.pinned_root_published or published.pinned_version <= 1:
        return refreshed
    limit = source.limits.max_root_length

    async def fetch(name: str) -> bytes:
        return await source.fetch(name, limit)

    history = await keep_published_roots(
        lambda name: read_optional(store, meta_key(name), limit),
        await fetch_root_history(fetch, root_bytes, published.pinned_version, source.report),
        source.report,
    )
    return replace(refreshed, root_history=history)


async def with_snapshot(
    refreshed: Refreshed,
    source: MetadataSource,
    published: Published,
    *,
    witness: RollbackWitness | None = None,
) -> Refreshed:
    """The snapshot the timestamp names: the published one when it is that version
    (then nothing new to publish), else the upstream's, verified."""
    trusted = refreshed.trusted
    assert trusted.timestamp is not None
    if published.snapshot is not None:
        try:
            trusted.update_snapshot(published.snapshot.raw, trusted=True)
        except VerificationError as exc:
            log.debug("published snapshot is not the final one: %s", exc)
    wanted = trusted.timestamp.signed.snapshot_meta.version
    if (
        trusted.snapshot is not None
        and trusted.snapshot.version == wanted
        and (published.snapshot is not None and published.snapshot.raw == trusted.snapshot.raw)
    ):
        return refreshed
    name = metadata_filename("snapshot", wanted if trusted.consistent_snapshot else None)
    data = await source.fetch(name, source.limits.snapshot_max(trusted.timestamp.signed))
    try:
        with naming(source.where(name)):
            verified = trusted.update_snapshot(data)
    except RollbackError as exc:
        if witness is not None:
            await witness.rollback_refused("snapshot", data, exc)
        raise
    return replace(refreshed, snapshot=NewSnapshot(name, verified.version, data))
