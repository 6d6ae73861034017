"""Pure planning: previous published state x newly verified state → what to copy.

The sync engine asks three questions here, all answered from metadata alone:

* which roles changed (``diff_snapshot``: the snapshot diff names them);
* which targets of a changed role are new or changed (``diff_targets``);
* in which order the metadata is published (``metadata_publish_order``: invariant 4,
  new delegated roles → targets → snapshot → new roots → ``timestamp.json`` last);
* what happens to each new or changed target of a role (``plan_role``, and
  ``decide_target`` for one target): copied, filtered out (``--include``,
  ``--exclude``, ``--role``), held back by a trust policy, not mirrored because the
  delegation search gives the path to another role, or undecided until the
  delegation walk is complete.

The planner asks the walk, the filters and the policy through the callables it is
given; it does not log, count, observe (the ledger witness) or send anything: the
engine acts on the ``TargetDecision`` values it yields.

It does no I/O and reads no clock (a test enforces it), and it holds nothing across
calls: memory stays bounded by the role being planned, not by the repository.
What is *already present* at the destination is the engine's question, not this
module's.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from mirror.trust import Authority, MetaFile, TargetFile, metadata_filename, target_filenames


@dataclass(frozen=True, slots=True)
class RoleChange:
    """A targets role whose version in the new snapshot differs from the published one."""

    name: str
    old_version: int | None
    new_version: int

    @property
    def is_new(self) -> bool:
        return self.old_version is None


@dataclass(frozen=True, slots=True)
class TargetCopy:
    """One target to make present at the destination, under every name it has."""

    path: str
    length: int
    hashes: Mapping[str, str]
    #: names relative to the targets prefix: one per listed hash with consistent snapshots
    names: tuple[str, ...]
    #: the role that lists it (authorised by the delegation search)
    role: str


@dataclass(frozen=True, slots=True)
class MetadataCopy:
    """One metadata file to publish, by name relative to the metadata prefix."""

    name: str
    role: str
    version: int | None


def role_of_meta_key(key: str) -> str:
    """``"bins-0a.json"`` (a snapshot meta key) → ``"bins-0a"``."""
    if not key.endswith(".json"):
        raise ValueError(f"snapshot meta key without .json: {key!r}")
    return key[: -len(".json")]


def diff_snapshot(
    old_meta: Mapping[str, MetaFile] | None, new_meta: Mapping[str, MetaFile]
) -> list[RoleChange]:
    """Roles whose version differs between the published and the new snapshot,
    in the new snapshot's order. A first sync (``old_meta`` None) changes every role.

    A role that disappeared from the new snapshot is not listed: the trust core
    refuses such a snapshot as a rollback before planning starts.
    """
    changes: list[RoleChange] = []
    for key, meta in new_meta.items():
        old = old_meta.get(key) if old_meta is not None else None
        if old is None or old.version != meta.version:
            changes.append(
                RoleChange(
                    role_of_meta_key(key), old.version if old is not None else None, meta.version
                )
            )
    return changes


@dataclass(frozen=True, slots=True)
class PublishedTargets:
    """The target list of a role's published version, as the diff needs it: for each
    path, the decoded entry's ``length`` and ``hashes`` (other fields ignored).

    Built from the decoded JSON with ``from_entries``, without a python-tuf
    ``TargetFile`` per target: the diff only compares each new target with the
    entry of its path.
    """

    entries: Mapping[str, Mapping[str, object]]

    @classmethod
    def from_entries(cls, entries: Any) -> PublishedTargets:
        """Check ``entries`` (the ``targets`` object of a decoded role) as python-tuf
        checks a target entry; raise ``ValueError``, ``TypeError``, ``KeyError`` or
        ``AttributeError`` where it would refuse the entry, with its message."""
        if _plain_entries(entries):
            return cls(entries)
        # Something unusual (a float length, hashes as pairs...) or refused: exactly
        # what building python-tuf's TargetFile objects accepts, normalized.
        listed: dict[str, TargetFile] = {
            path: TargetFile(int(info["length"]), dict(info["hashes"]), path)
            for path, info in entries.items()
        }
        return cls.from_targets(listed)

    @classmethod
    def from_targets(cls, targets: Mapping[str, TargetFile]) -> PublishedTargets:
        """From ``TargetFile`` objects (a role already parsed)."""
        return cls(
            {
                path: {"length": target.length, "hashes": dict(target.hashes)}
                for path, target in targets.items()
            }
        )


def _plain_entries(entries: Any) -> bool:
    """Whether python-tuf takes every target entry as it is: an object with a
    non-negative integer length and a non-empty object of string hashes. (One loop:
    a call per entry cost twice as much.)"""
    if type(entries) is not dict:
        return False
    for entry in entries.values():
        if type(entry) is not dict:
            return False
        length = entry.get("length")
        hashes = entry.get("hashes")
        if type(length) is not int or length < 0 or type(hashes) is not dict or not hashes:
            return False
        for value in hashes.values():
            if type(value) is not str:
                return False
    return True


def diff_targets(
    old_targets: PublishedTargets | None,
    new_targets: Mapping[str, TargetFile],
) -> Iterator[TargetFile]:
    """Targets of the new role version that are new or changed (by length and hashes)
    against the previous version. Unchanged targets were published with that version."""
    if old_targets is None:
        yield from new_targets.values()
        return
    entries = old_targets.entries
    for path, target in new_targets.items():
        entry = entries.get(path)
        if entry is None or entry["length"] != target.length or entry["hashes"] != target.hashes:
            yield target


def target_copy(target: TargetFile, *, role: str, consistent_snapshot: bool) -> TargetCopy:
    """The copy of one target: every name it is published under (validated names)."""
    names = target_filenames(
        target.path, dict(target.hashes), consistent_snapshot=consistent_snapshot
    )
    return TargetCopy(
        path=target.path,
        length=target.length,
        hashes=dict(target.hashes),
        names=tuple(names),
        role=role,
    )


def metadata_publish_order(
    *,
    changed_roles: list[RoleChange],
    snapshot_version: int | None,
    new_root_versions: list[int],
    timestamp_changed: bool,
    consistent_snapshot: bool,
    unversioned_root: bool = False,
) -> list[MetadataCopy]:
    """Metadata files in publish order (DESIGN.md invariant 4):
    delegated roles → targets → snapshot → new roots → ``timestamp.json``.

    ``snapshot_version`` None means the snapshot did not change; ``timestamp_changed``
    False means nothing but new root versions, if any, is published.
    ``unversioned_root``: the upstream serves a ``root.json`` too (then it follows
    the new root versions); a mirror never adds one of its own.
    """
    order: list[MetadataCopy] = []

    def name_for(role: str, version: int) -> MetadataCopy:
        return MetadataCopy(
            metadata_filename(role, version if consistent_snapshot else None), role, version
        )

    delegated = [c for c in changed_roles if c.name != "targets"]
    # Deepest-last delegators are irrelevant: nothing references a new role version
    # until the snapshot that names it is published.
    order.extend(name_for(c.name, c.new_version) for c in delegated)
    order.extend(name_for(c.name, c.new_version) for c in changed_roles if c.name == "targets")
    if snapshot_version is not None:
        order.append(name_for("snapshot", snapshot_version))
    order.extend(MetadataCopy(f"{v}.root.json", "root", v) for v in new_root_versions)
    if new_root_versions and unversioned_root:
        order.append(MetadataCopy("root.json", "root", new_root_versions[-1]))
    if timestamp_changed:
        order.append(MetadataCopy("timestamp.json", "timestamp", None))
    return order


class Decision(enum.Enum):
    """What the plan says about one new or changed target of a role."""

    COPY = "copy"
    """Authorised, selected and admitted: make it present at the destination."""
    FILTERED = "filtered"
    """Authorised, but outside the partial mirror's selection (counted as filtered)."""
    HELD = "held"
    """Authorised and selected, but the trust policy holds it back (not counted as
    filtered: the policy gate reports it)."""
    UNAUTHORIZED = "unauthorized"
    """The delegation search gives the path to another role, or never reaches this
    one: a client would not take it from this role, so it is not mirrored."""
    UNDECIDED = "undecided"
    """A role earlier in the path's search is not known yet (a diamond graph): ask
    again with ``decide_target`` once the walk is complete."""


@dataclass(frozen=True, slots=True)
class TargetDecision:
    """The plan for one target listed by ``role``.

    ``authority`` is the walk's verdict the decision was made from (messages name
    it); ``copy`` is set exactly when the decision is ``COPY``.
    """

    role: str
    target: TargetFile
    decision: Decision
    authority: Authority
    copy: TargetCopy | None = None

    def __post_init__(self) -> None:
        if (self.copy is not None) != (self.decision is Decision.COPY):
            raise ValueError(f"a TargetDecision carries a copy iff it is COPY: {self!r}")

    @property
    def authorized(self) -> bool:
        """The role is the one a client's search uses for this path: the ledger
        witness observes the target whether or not it is copied."""
        return self.authority is Authority.AUTHORIZED

    @property
    def published(self) -> bool:
        """The target is copied (what the witness records as published)."""
        return self.decision is Decision.COPY


def decide_target(
    *,
    role: str,
    target: TargetFile,
    verdict: Authority,
    selects: Callable[[str, str], bool],
    admits: Callable[[str, TargetFile], bool] | None,
    consistent_snapshot: bool,
) -> TargetDecision:
    """The final decision for one ``target`` listed by ``role``, from the walk's
    ``verdict`` for it.

    Anything but ``AUTHORIZED`` is ``UNAUTHORIZED``, including ``UNDECIDED``: this is
    the answer after the walk, when an undecided path is asked again (``plan_role``
    keeps undecided targets apart itself). An authorised target is then asked to
    the filter (``selects(path, role)``) and, only when selected, to the policy
    (``admits(role, target)``; None: no policy, everything selected is admitted),
    so a policy never sees a filtered target. A copy's names are validated here:
    an unsafe path or hash raises ``UnsafeNameError`` (a ``VerificationError``).
    """
    if verdict is not Authority.AUTHORIZED:
        return TargetDecision(role, target, Decision.UNAUTHORIZED, verdict)
    if not selects(target.path, role):
        return TargetDecision(role, target, Decision.FILTERED, verdict)
    if admits is not None and not admits(role, target):
        return TargetDecision(role, target, Decision.HELD, verdict)
    copy = target_copy(target, role=role, consistent_snapshot=consistent_snapshot)
    return TargetDecision(role, target, Decision.COPY, verdict, copy)


def plan_role(
    *,
    role: str,
    targets: Mapping[str, TargetFile],
    previous: PublishedTargets | None,
    authority: Callable[[str, str], Authority],
    selects: Callable[[str, str], bool],
    admits: Callable[[str, TargetFile], bool] | None,
    consistent_snapshot: bool,
) -> Iterator[TargetDecision]:
    """The decisions for the targets of one changed ``role``: one per target that is
    new or changed against ``previous`` (the published version's target list, None
    when there is none), in the role's order. Unchanged targets are skipped without
    asking anything.

    ``authority(path, role)`` is the walk's verdict (``DelegationWalk.authority``);
    an ``UNDECIDED`` one yields an ``UNDECIDED`` decision, for the caller to ask
    again with ``decide_target`` after the walk. Every other verdict is decided at
    once by ``decide_target``. A generator: nothing is kept beyond the target being
    decided, and the callables run only as the caller iterates.
    """
    for target in diff_targets(previous, targets):
        verdict = authority(target.path, role)
        if verdict is Authority.UNDECIDED:
            yield TargetDecision(role, target, Decision.UNDECIDED, verdict)
            continue
        yield decide_target(
            role=role,
            target=target,
            verdict=verdict,
            selects=selects,
            admits=admits,
            consistent_snapshot=consistent_snapshot,
        )


__all__ = [
    "Decision",
    "MetadataCopy",
    "PublishedTargets",
    "RoleChange",
    "TargetCopy",
    "TargetDecision",
    "decide_target",
    "diff_snapshot",
    "diff_targets",
    "metadata_publish_order",
    "plan_role",
    "role_of_meta_key",
    "target_copy",
]
