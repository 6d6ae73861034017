"""The delegation walk of a sync: load every reachable targets role (from the
destination when unchanged, from the upstream when changed), verify it in walk
order, spool the changed ones, and send the targets they add to the copiers.

* ``RoleLoader``: a role version's bytes (``role_bytes``) and the targets of a
  changed role's published version, its diff base (``previous_targets``);
* ``TargetSender``: the target decisions, in one place: authority (the delegation
  search), the filters and the policy gate decide which new targets are sent;
* ``walk_roles``: drives ``trust.DelegationWalk``, loading a window of roles
  concurrently, and returns ``Walked``.

What this module does not do: verification itself (``mirror.trust``), copying
targets (``copying``), publishing (``publish``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from mirror.copier import COPY_BATCH
from mirror.errors import TamperedDestinationError, VerificationError
from mirror.filters import TargetFilter
from mirror.layout import meta_key
from mirror.log import log
from mirror.plan import (
    Decision,
    PublishedTargets,
    RoleChange,
    TargetCopy,
    TargetDecision,
    decide_target,
    diff_snapshot,
    plan_role,
)
from mirror.publish import Spooled, Spooler
from mirror.published import Published, read_optional
from mirror.refresh import MetadataSource
from mirror.report import RunReport
from mirror.storage import Store
from mirror.storage.listing import ListingStore
from mirror.trust import (
    DelegationWalk,
    MetaFile,
    TargetFile,
    Targets,
    TrustedSet,
    WalkStep,
    check_meta,
    metadata_filename,
)
from mirror.upstream import naming, note_unreachable

if TYPE_CHECKING:
    from mirror.hooks import Gate, Witness

__all__ = ["RoleLoader", "TargetSender", "Walked", "walk_roles"]


@dataclass(frozen=True, slots=True)
class Walked:
    """What the walk loaded and will publish."""

    #: changed roles to publish, in snapshot-diff order (unreachable ones left out)
    changes: tuple[RoleChange, ...]
    #: metadata file name -> the verified bytes of a changed role
    spooled: Mapping[str, Spooled]
    #: role -> version of every role reached, and the roles that delegate nothing
    #: (the state file's walk hints)
    versions: Mapping[str, int]
    leaves: frozenset[str]
    #: roles the snapshot lists that nothing delegates to (never fetched)
    unreachable: frozenset[str] = field(default_factory=frozenset)


class RoleLoader:
    """Reads role versions for a run: from ``store`` (written by an interrupted
    run), ``base`` (the previous state) or the upstream."""

    def __init__(
        self,
        *,
        store: Store,
        base: Store,
        source: MetadataSource,
        witness: Witness | None = None,
    ) -> None:
        self.store = store
        self.base = base
        self.source = source
        self.witness = witness
        # A changed role's presence is asked of the store itself, not answered from
        # a listing: the metadata directory holds every version ever published, and
        # listing it would spend the run's listing budget on nothing.
        self._probe = store.inner if isinstance(store, ListingStore) else store

    async def role_bytes(
        self, role: str, version: int, *, changed: bool, consistent: bool
    ) -> tuple[bytes, bool]:
        """Bytes for a role version: the published copy when the destination already
        has it (unchanged role, or written by an interrupted run), else the upstream's.
        Returns (bytes, from_destination)."""
        local = await self.local_bytes(role, version, changed=changed, consistent=consistent)
        if local is not None:
            return local, True
        name = metadata_filename(role, version if consistent else None)
        return await self.source.fetch(name, self.source.limits.max_targets_length), False

    async def local_bytes(
        self, role: str, version: int, *, changed: bool, consistent: bool
    ) -> bytes | None:
        """The destination's copy of a role version: the published one of an
        unchanged role (which must be there), or one an interrupted run wrote for a
        changed role. None: the bytes come from the upstream."""
        if changed and not consistent:
            return None  # the unversioned file is the previous version
        name = metadata_filename(role, version if consistent else None)
        # A changed role may have been written by an interrupted run (``store``);
        # an unchanged one is part of the previous state (``base``).
        where = self.store if changed else self.base
        # Usually a changed role is not there yet: a presence check first (on a
        # local disk a stat, no thread hop).
        present = not changed or await self._probe.head(meta_key(name)) is not None
        limit = self.source.limits.max_targets_length
        local = await read_optional(where, meta_key(name), limit) if present else None
        if local is not None:
            if not changed and self.witness is not None:
                await self.witness.check_published(meta_key(name), role, version, local)
            return local
        if not changed:
            raise TamperedDestinationError(
                f"destination {meta_key(name)} is missing although the published snapshot lists it"
            )
        return None

    async def previous_targets(
        self, published: Published, role: str, old_version: int | None, consistent: bool
    ) -> PublishedTargets | None:
        """The targets of the published version of a changed role, for the diff.

        Checked against the published snapshot's version (and hashes when listed);
        a copy that does not match is not used, so every target of the new version
        is considered (and found present or fetched).
        """
        if old_version is None or published.snapshot is None:
            return None
        name = metadata_filename(role, old_version if consistent else None)
        if not consistent:
            return None  # the unversioned file is about to be replaced: no diff base
        data = await read_optional(self.base, meta_key(name), self.source.limits.max_targets_length)
        if data is None:
            return None
        if self.witness is not None:
            await self.witness.check_published(meta_key(name), role, old_version, data)
        meta = published.snapshot.signed.meta.get(f"{role}.json")
        try:
            if meta is not None:
                check_meta(f"published {name}", meta, data)
        except VerificationError as exc:
            log.warning("not diffing against %s: %s", name, exc)
            return None
        # Only lengths and hashes matter here, so the C JSON decoder is enough: a
        # full python-tuf parse per changed role cost more than its fetch.
        try:
            signed = json.loads(data)["signed"]
            if signed["_type"] != "targets" or signed["version"] != old_version:
                return None
            return PublishedTargets.from_entries(signed["targets"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("not diffing against %s: %s", name, exc)
            return None


# -- the target decisions ---------------------------------------------------------------


class TargetSender:
    """Decides, for each new target of a role, whether it is copied, and sends the
    copies. Everything the walk decides about targets is in this class."""

    def __init__(
        self,
        *,
        send: trio.MemorySendChannel[TargetCopy],
        target_filter: TargetFilter,
        consistent: bool,
        report: RunReport,
        gate: Gate | None = None,
        witness: Witness | None = None,
    ) -> None:
        self.send = send
        self.filter = target_filter
        self.consistent = consistent
        self.report = report
        self.gate = gate
        self.witness = witness
        #: targets whose authority could only be decided after the walk
        self._undecided: list[tuple[str, TargetFile]] = []
        #: copies decided and not handed over yet (``COPY_BATCH`` at most)
        self._pending: list[TargetCopy] = []
        #: copies handed over to the copiers
        self.sent = 0

    async def send_targets(
        self,
        walk: DelegationWalk,
        role: str,
        targets: Targets,
        old: PublishedTargets | None,
    ) -> None:
        """Plan one role's new and changed targets and act on the plan."""
        decisions: list[TargetDecision] = []
        for decision in plan_role(
            role=role,
            targets=targets.targets,
            previous=old,
            authority=walk.authority,
            selects=self.filter.selects,
            admits=self.gate.admit if self.gate is not None else None,
            consistent_snapshot=self.consistent,
        ):
            if decision.decision is Decision.UNDECIDED:
                # A role earlier in this path's search is not known yet (a diamond
                # graph): ask again once the walk is complete.
                self._undecided.append((role, decision.target))
            else:
                decisions.append(decision)
        await self._act(role, decisions)

    async def send_undecided(self, walk: DelegationWalk) -> None:
        """The walk is complete: decide the targets that had to wait for it."""
        undecided, self._undecided = self._undecided, []
        by_role: dict[str, list[TargetDecision]] = {}
        for role, target in undecided:
            by_role.setdefault(role, []).append(
                decide_target(
                    role=role,
                    target=target,
                    verdict=walk.authority(target.path, role),
                    selects=self.filter.selects,
                    admits=self.gate.admit if self.gate is not None else None,
                    consistent_snapshot=self.consistent,
                )
            )
        for role, decisions in by_role.items():
            await self._act(role, decisions)
        await self._hand_over()

    async def _act(self, role: str, decisions: list[TargetDecision]) -> None:
        """Act on one role's plan, in its order: warn about the targets another role
        is authoritative for, let the witness observe the others (one call per role,
        before any of them is copied), count, and send the copies."""
        observed: list[tuple[TargetFile, bool]] = []
        for decision in decisions:
            if decision.authorized:
                observed.append((decision.target, decision.published))
                continue
            log.warning(
                "%s lists %r, which the delegation search gives to another role (%s): not mirrored",
                role,
                decision.target.path,
                decision.authority.value,
            )
            self.report.warnings.append(f"{role}: unauthorised target {decision.target.path!r}")
        if self.witness is not None and observed:
            await self.witness.observe_targets(role, observed)
        for decision in decisions:
            if decision.decision is Decision.FILTERED:
                self.report.targets_filtered += 1
            elif decision.copy is not None:  # (HELD: the policy gate holds it back)
                self.report.targets_new += 1
                self.report.planned_bytes += decision.target.length
                self._pending.append(decision.copy)
                if len(self._pending) >= COPY_BATCH:
                    await self._hand_over()

    async def _hand_over(self) -> None:
        """Send the pending copies, without a checkpoint while the channel has room:
        the copiers wake to ``COPY_BATCH`` copies at once and take them together (a
        pipelined batch, one frame to a worker process), not one by one, also when
        each role adds only one or two (an incremental run)."""
        pending, self._pending = self._pending, []
        send = self.send
        for copy in pending:
            try:
                send.send_nowait(copy)
            except trio.WouldBlock:
                await send.send(copy)
            self.sent += 1


# -- the walk ---------------------------------------------------------------------------


async def walk_roles(
    trusted: TrustedSet,
    published: Published,
    *,
    loader: RoleLoader,
    sender: TargetSender,
    spooler: Spooler,
    full_pass: bool,
    window: int,
    report: RunReport,
    witness: Witness | None = None,
) -> Walked:
    """Verify every reachable targets role of ``trusted``'s snapshot, spool the
    changed ones and send their new targets (every target with ``full_pass``: the
    target selection changed). ``window``: roles loaded concurrently."""
    assert trusted.snapshot is not None
    consistent = trusted.consistent_snapshot
    source = loader.source
    old_meta: dict[str, MetaFile] | None = (
        dict(published.snapshot.signed.meta) if published.snapshot is not None else None
    )
    all_changes = diff_snapshot(old_meta, trusted.snapshot.signed.meta)
    changed = {c.name: c for c in all_changes}
    spooled: dict[str, Spooled] = {}

    async def spool(change: RoleChange, data: bytes, *, present: bool) -> None:
        item = await spooler.spool_role(change, data, consistent=consistent, present=present)
        spooled[item.copy.name] = item

    if witness is not None:
        await witness.begin(trusted, all_changes)

    # Top-level targets.
    tchange = changed.get("targets")
    targets_version = trusted.snapshot.signed.meta["targets.json"].version
    data, local = await loader.role_bytes(
        "targets", targets_version, changed=tchange is not None, consistent=consistent
    )
    targets_name = metadata_filename("targets", targets_version if consistent else None)
    with naming(source.where(targets_name, local=local)):
        verified = trusted.update_targets(data, trusted=False)
    report.roles_verified += 1
    if tchange is not None:
        await spool(tchange, data, present=local)
    if full_pass:
        log.info("target selection changed since the last run: checking every target")
    use_hints = not full_pass and published.previous_versions.get("targets") == verified.version
    walk = DelegationWalk(
        trusted,
        previous_versions=published.previous_versions if use_hints else None,
        previous_leaves=published.previous_leaves if use_hints else frozenset(),
    )
    if tchange is not None or full_pass:
        old = (
            await loader.previous_targets(published, "targets", tchange.old_version, consistent)
            if tchange is not None and not full_pass
            else None
        )
        await sender.send_targets(walk, "targets", verified.signed, old)

    visited: set[str] = set()
    while not walk.done:
        steps = walk.ready()
        if not steps:
            raise RuntimeError("delegation walk stalled")
        needed: list[WalkStep] = []
        for step in steps:
            if step.skippable and step.role not in changed:
                walk.skip(step)
            else:
                needed.append(step)
        # Fetch a window of roles at a time, concurrently (the network round
        # trips overlap), then verify them in walk order, while the next window
        # loads. The window bounds memory: two windows of roles in flight at most,
        # never the whole repository.
        batches = [needed[start : start + window] for start in range(0, len(needed), window)]

        async def verify(batch: list[WalkStep], loaded: _Loaded) -> None:
            for step, (data, local, old) in zip(batch, loaded, strict=True):
                name = metadata_filename(step.role, step.version if consistent else None)
                with naming(source.where(name, local=local)):
                    verified = walk.feed(step, data, trusted=False)
                report.roles_verified += 1
                if step.repeat or step.role in visited:
                    continue
                visited.add(step.role)
                change = changed.get(step.role)
                if change is not None:
                    await spool(change, data, present=local)
                if change is not None or full_pass:
                    await sender.send_targets(walk, step.role, verified.signed, old)
                if not verified.signed.delegations:
                    trusted.forget_role(step.role)

        await _load_ahead(
            loader,
            batches,
            verify,
            changed=changed,
            published=published,
            consistent=consistent,
            full_pass=full_pass,
        )
    await sender.send_undecided(walk)
    # Roles the snapshot lists that nothing delegates to: never fetched nor
    # published (a client never asks for them), counted in the report.
    unreachable = walk.unreachable()
    note_unreachable(report, unreachable)
    return Walked(
        changes=tuple(c for c in all_changes if c.name not in unreachable),
        spooled=spooled,
        versions=dict(walk.versions),
        leaves=frozenset(walk.leaves),
        unreachable=frozenset(unreachable),
    )


_Loaded = list[tuple[bytes, bool, PublishedTargets | None]]


async def _load_ahead(
    loader: RoleLoader,
    batches: list[list[WalkStep]],
    verify: Callable[[list[WalkStep], _Loaded], Awaitable[None]],
    *,
    changed: Mapping[str, RoleChange],
    published: Published,
    consistent: bool,
    full_pass: bool,
) -> None:
    """``verify`` each of ``batches`` in order with what ``_load_steps`` loaded for
    it, the next batch loading in the background meanwhile (the network and the
    destination's reads overlap the verification)."""
    results: list[_Loaded | None] = [None] * len(batches)
    ready = [trio.Event() for _ in batches]

    async def load(index: int) -> None:
        results[index] = await _load_steps(
            loader, batches[index], changed, published, consistent, full_pass=full_pass
        )
        ready[index].set()

    async with trio.open_nursery() as nursery:
        if batches:
            nursery.start_soon(load, 0)
        for index, batch in enumerate(batches):
            await ready[index].wait()
            if index + 1 < len(batches):
                nursery.start_soon(load, index + 1)
            loaded = results[index]
            results[index] = None
            assert loaded is not None
            await verify(batch, loaded)


async def _load_steps(
    loader: RoleLoader,
    steps: list[WalkStep],
    changed: Mapping[str, RoleChange],
    published: Published,
    consistent: bool,
    *,
    full_pass: bool = False,
) -> list[tuple[bytes, bool, PublishedTargets | None]]:
    """For each step: the role's bytes (destination or upstream), whether they came
    from the destination, and for a changed role the targets of its published
    version (the diff base). The destination's copies and the diff bases are read
    concurrently; the roles the destination lacks are then asked of the upstream
    together (``MetadataSource.fetch_many``: one pipelined batch where the fetcher
    can), and any that did not come that way one by one, concurrently."""
    source = loader.source
    limit = source.limits.max_targets_length
    local: list[bytes | None] = [None] * len(steps)
    olds: list[PublishedTargets | None] = [None] * len(steps)

    async def read(index: int, step: WalkStep) -> None:
        change = changed.get(step.role)
        local[index] = await loader.local_bytes(
            step.role, step.version, changed=change is not None, consistent=consistent
        )
        if change is not None and not step.repeat and not full_pass:
            olds[index] = await loader.previous_targets(
                published, step.role, change.old_version, consistent
            )

    async with trio.open_nursery() as nursery:
        for index, step in enumerate(steps):
            nursery.start_soon(read, index, step)

    wanted = [index for index, data in enumerate(local) if data is None]
    names = {
        index: metadata_filename(steps[index].role, steps[index].version if consistent else None)
        for index in wanted
    }
    upstream: dict[int, bytes | None] = dict(
        zip(wanted, await source.fetch_many([names[index] for index in wanted], limit), strict=True)
    )

    async def fetch(index: int) -> None:
        upstream[index] = await source.fetch(names[index], limit)

    async with trio.open_nursery() as nursery:
        for index in wanted:
            if upstream[index] is None:
                nursery.start_soon(fetch, index)

    results: list[tuple[bytes, bool, PublishedTargets | None]] = []
    for index in range(len(steps)):
        data = local[index]
        fetched = upstream.get(index)
        if data is not None:
            results.append((data, True, olds[index]))
        else:
            assert fetched is not None
            results.append((fetched, False, olds[index]))
    return results
