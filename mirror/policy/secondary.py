"""The other repositories of a trust policy: refreshed with the sync's own TUF
workflow, their metadata mirrored under ``DEST/repositories/<name>/``.

Each secondary repository is a full TUF repository with its own pinned root. Its
published copy at the destination is its trusted state, re-verified from the
pinned root at every run exactly as the primary's is: a newer timestamp or
snapshot than the published one is required (rollback), an expired one refused
(freeze), every delegated role verified with its delegator's keys. The run's
bookkeeping (``state.json``: conditional-GET validators, walk hints) lives under
``DEST/.tuf-mirror/repositories/<name>/``, out of clients' sight.

``SecondaryRepository.refresh`` verifies and returns every target path the
repository vouches for (the listing the delegation search gives for it);
``publish`` writes the verified metadata in the usual order, timestamp last. Targets
of secondary repositories are never copied: the mirror serves the primary's. It is
the engine's phases without the copies: ``published.load_published``,
``refresh``, a listing walk with ``walk.RoleLoader``, ``publish``.

What this module does not do: decide anything about targets (``model``, ``gate``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime

from mirror.config import Settings
from mirror.errors import VerificationError
from mirror.fetch import Fetcher
from mirror.filters import TargetFilter
from mirror.plan import RoleChange, diff_snapshot
from mirror.policy.model import Listing
from mirror.publish import (
    Spooled,
    Spooler,
    expiry_of,
    publish_metadata,
    timestamp_sha256,
    warn_expiry,
    write_state,
)
from mirror.published import MirrorState, Published, load_published
from mirror.refresh import MetadataSource, Refreshed, refresh, with_snapshot
from mirror.report import RunReport
from mirror.storage import Store
from mirror.trust import Authority, DelegationWalk, Limits, TargetFile
from mirror.walk import RoleLoader

__all__ = ["SecondaryRepository"]


class SecondaryRepository:
    """One secondary repository's refresh and publication (see the module
    docstring), against a ``PrefixedStore`` of the destination."""

    def __init__(
        self,
        *,
        name: str,
        settings: Settings,
        store: Store,
        fetcher: Fetcher,
        now: datetime,
        dry_run: bool = False,
        report: RunReport | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.store = store
        self.fetcher = fetcher
        self.now = now
        self.dry_run = dry_run
        self.report = report or RunReport(command="plan" if dry_run else "sync")
        self.limits = Limits(
            max_snapshot_length=settings.max_snapshot_size,
            max_targets_length=settings.max_targets_size,
        )
        self._published: Published | None = None
        self._refreshed: Refreshed | None = None
        #: filled by the listing walk: what ``publish`` writes
        self._changes: list[RoleChange] = []
        self._spooled: dict[str, Spooled] = {}
        self._walk: DelegationWalk | None = None
        self._expires: dict[str, str] = {}

    async def refresh(self) -> dict[str, Listing]:
        """Verify the repository from its published state to the upstream's newest
        and return ``path -> listing`` of every target it vouches for.

        A verification failure is re-raised as the same error type naming the
        repository."""
        try:
            return await self._refresh()
        except VerificationError as exc:
            raise type(exc)(f"policy repository {self.name!r}: {exc}") from exc

    async def _refresh(self) -> dict[str, Listing]:
        root_bytes = self.settings.root_bytes()
        published = await load_published(self.store, root_bytes, self.limits)
        self._published = published
        # As for the primary's first sync: an upstream serving no TUF metadata is a
        # configuration error (exit 2).
        source = MetadataSource.of(
            self.settings, self.fetcher, self.limits, self.report, first_sync=True
        )
        refreshed = await refresh(source, root_bytes, published, now=self.now)
        new = refreshed.trusted
        if refreshed.timestamp_changed:
            refreshed = await with_snapshot(refreshed, source, published)
        elif published.snapshot is not None:
            new.update_snapshot(published.snapshot.raw, trusted=True)
        self._refreshed = refreshed
        if new.snapshot is None:
            raise RuntimeError("a refreshed repository without snapshot")
        self._expires = expiry_of(new, published)
        self.report.expires = self._expires
        warn_expiry(self.report, self._expires, now=self.now, horizon=self.settings.expiry_warning)
        loader = RoleLoader(store=self.store, base=self.store, source=source)
        return await self._listing(refreshed, published, loader)

    @property
    def snapshot_digest(self) -> str:
        """Identifies the verified snapshot (version and bytes) of this run."""
        assert self._refreshed is not None
        snapshot = self._refreshed.trusted.snapshot
        assert snapshot is not None
        return f"{snapshot.version}:{hashlib.sha256(snapshot.raw).hexdigest()[:16]}"

    @property
    def versions_after(self) -> dict[str, int]:
        assert self._refreshed is not None
        new = self._refreshed.trusted
        out = {"root": new.root.version}
        if new.timestamp is not None:
            out["timestamp"] = new.timestamp.version
        if new.snapshot is not None:
            out["snapshot"] = new.snapshot.version
        return out

    async def _listing(
        self, refreshed: Refreshed, published: Published, loader: RoleLoader
    ) -> dict[str, Listing]:
        """Walk every role (unchanged ones from the destination, re-verified;
        changed ones from the upstream) and collect the authorised listings."""
        new = refreshed.trusted
        assert new.snapshot is not None
        consistent = new.consistent_snapshot
        spooler = Spooler(self.store, dry_run=self.dry_run)
        old_meta = dict(published.snapshot.signed.meta) if published.snapshot is not None else None
        changes = diff_snapshot(old_meta, new.snapshot.signed.meta)
        changed = {change.name: change for change in changes}
        listing: dict[str, Listing] = {}
        undecided: list[tuple[str, str, Listing]] = []
        self._spooled = {}

        async def spool(change: RoleChange, data: bytes, *, present: bool) -> None:
            item = await spooler.spool_role(change, data, consistent=consistent, present=present)
            self._spooled[item.copy.name] = item

        data, local = await loader.role_bytes(
            "targets",
            new.snapshot.signed.meta["targets.json"].version,
            changed="targets" in changed,
            consistent=consistent,
        )
        targets = new.update_targets(data, trusted=False)
        self.report.roles_verified += 1
        if "targets" in changed:
            await spool(changed["targets"], data, present=local)
        walk = DelegationWalk(new)
        self._walk = walk

        def collect(role: str, entries: Mapping[str, TargetFile]) -> None:
            for path, target in entries.items():
                item = Listing.of(target.length, target.hashes)
                verdict = walk.authority(path, role)
                if verdict is Authority.AUTHORIZED:
                    listing.setdefault(path, item)
                elif verdict is Authority.UNDECIDED:
                    undecided.append((role, path, item))

        collect("targets", targets.signed.targets)
        visited: set[str] = set()
        while not walk.done:
            steps = walk.ready()
            if not steps:
                raise RuntimeError("delegation walk stalled")
            for step in steps:
                change = changed.get(step.role)
                data, local = await loader.role_bytes(
                    step.role, step.version, changed=change is not None, consistent=consistent
                )
                verified = walk.feed(step, data, trusted=False)
                self.report.roles_verified += 1
                if step.repeat or step.role in visited:
                    continue
                visited.add(step.role)
                if change is not None:
                    await spool(change, data, present=local)
                collect(step.role, verified.signed.targets)
        for role, path, item in undecided:
            if walk.authority(path, role) is Authority.AUTHORIZED:
                listing.setdefault(path, item)
        # Roles the snapshot lists that nothing delegates to: never fetched (issue 9).
        unreachable = walk.unreachable()
        self._changes = [c for c in changes if c.name not in unreachable]
        return listing

    async def publish(self) -> None:
        """Write the verified metadata under ``repositories/<name>/``, timestamp
        last, and the walk hints for the next run."""
        assert self._refreshed is not None
        assert self._published is not None
        refreshed, published = self._refreshed, self._published
        await publish_metadata(
            self.store,
            refreshed,
            published,
            changes=self._changes,
            spooled=self._spooled,
            pinned=self.settings.root_bytes(),
            targets_written=False,  # a secondary's targets are never copied
            short_max_age=self.settings.timestamp_max_age,
            report=self.report,
        )
        if refreshed.timestamp_changed or refreshed.timestamp_etag != published.timestamp_etag:
            new = refreshed.trusted
            if self._walk is None or new.snapshot is None:
                return
            state = MirrorState(
                snapshot_version=new.snapshot.version,
                versions=dict(self._walk.versions),
                leaves=tuple(sorted(self._walk.leaves)),
                timestamp_etag=refreshed.timestamp_etag,
                timestamp_sha256=timestamp_sha256(new),
                filter=TargetFilter(
                    self.settings.include, self.settings.exclude, self.settings.role
                ).fingerprint(),
                expires=self._expires,
            )
            await write_state(self.store, state, new, record_history=True)
