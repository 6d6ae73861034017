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
of secondary repositories are never copied: the mirror serves the primary's.

What this module does not do: decide anything about targets (``model``, ``gate``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from mirror.errors import VerificationError
from mirror.plan import diff_snapshot
from mirror.policy.model import Listing
from mirror.sync import Published, Synchronizer, _Cycle, load_published
from mirror.trust import Authority, DelegationWalk, TargetFile

__all__ = ["SecondaryRepository"]


class SecondaryRepository(Synchronizer):
    """One secondary repository's refresh and publication (see the module
    docstring). Built like a ``Synchronizer`` whose store is a ``PrefixedStore``."""

    def __init__(self, *, name: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.name = name
        self._published: Published | None = None
        self._cycle_state: _Cycle | None = None

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
        published = await load_published(self.base, root_bytes, self.limits)
        self._published = published
        cycle = await self._refresh_top_level(root_bytes, published)
        self._cycle_state = cycle
        new = cycle.new
        if cycle.timestamp_changed:
            await self._refresh_snapshot(cycle, published)
        elif published.snapshot is not None:
            new.update_snapshot(published.snapshot.raw, trusted=True)
        if new.snapshot is None:
            raise RuntimeError("a refreshed repository without snapshot")
        self._note_expiry(new, published)
        return await self._listing(cycle, published)

    @property
    def snapshot_digest(self) -> str:
        """Identifies the verified snapshot (version and bytes) of this run."""
        assert self._cycle_state is not None
        snapshot = self._cycle_state.new.snapshot
        assert snapshot is not None
        return f"{snapshot.version}:{hashlib.sha256(snapshot.raw).hexdigest()[:16]}"

    @property
    def versions_after(self) -> dict[str, int]:
        assert self._cycle_state is not None
        new = self._cycle_state.new
        out = {"root": new.root.version}
        if new.timestamp is not None:
            out["timestamp"] = new.timestamp.version
        if new.snapshot is not None:
            out["snapshot"] = new.snapshot.version
        return out

    async def _listing(self, cycle: _Cycle, published: Published) -> dict[str, Listing]:
        """Walk every role (unchanged ones from the destination, re-verified;
        changed ones from the upstream) and collect the authorised listings."""
        new = cycle.new
        assert new.snapshot is not None
        consistent = new.consistent_snapshot
        old_meta = dict(published.snapshot.signed.meta) if published.snapshot is not None else None
        cycle.changes = diff_snapshot(old_meta, new.snapshot.signed.meta)
        changed = {change.name: change for change in cycle.changes}
        listing: dict[str, Listing] = {}
        undecided: list[tuple[str, str, Listing]] = []

        data, local = await self._role_bytes(
            "targets",
            new.snapshot.signed.meta["targets.json"].version,
            changed="targets" in changed,
            consistent=consistent,
        )
        targets = new.update_targets(data, trusted=False)
        self.report.roles_verified += 1
        if "targets" in changed:
            await self._spool_role(cycle, changed["targets"], data, present=local)
        walk = DelegationWalk(new)
        cycle.walk = walk

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
                data, local = await self._role_bytes(
                    step.role, step.version, changed=change is not None, consistent=consistent
                )
                verified = walk.feed(step, data, trusted=False)
                self.report.roles_verified += 1
                if step.repeat or step.role in visited:
                    continue
                visited.add(step.role)
                if change is not None:
                    await self._spool_role(cycle, change, data, present=local)
                collect(step.role, verified.signed.targets)
        for role, path, item in undecided:
            if walk.authority(path, role) is Authority.AUTHORIZED:
                listing.setdefault(path, item)
        # Roles the snapshot lists that nothing delegates to: never fetched (issue 9).
        unreachable = walk.unreachable()
        cycle.changes = [c for c in cycle.changes if c.name not in unreachable]
        return listing

    async def publish(self) -> None:
        """Write the verified metadata under ``repositories/<name>/``, timestamp
        last, and the walk hints for the next run."""
        assert self._cycle_state is not None
        assert self._published is not None
        cycle, published = self._cycle_state, self._published
        await self._publish(cycle, published)
        if cycle.timestamp_changed or cycle.timestamp_etag != published.timestamp_etag:
            await self._write_state(cycle)
