"""Delegations: which roles may list a target path, in which order they are searched,
and a walk over every role reachable from top-level targets.

Three consumers, three tools, all pure (the caller fetches bytes and feeds them in):

* ``TargetSearch`` — the specification's target lookup (§5.6.7) for one path, for a
  client such as the conformance adapter. Resumable: ``next_role()`` says which role
  to fetch next, ``feed(data)`` verifies it with the keys of the delegator on the
  current search path and continues.
* ``DelegationWalk`` — every role reachable from targets, for the mirror. Roles are
  requested once each in pre-order; a role delegated by several delegators is
  requested again once per further delegator (``WalkStep.repeat``) so that it is
  verified against each delegator's keys. Unchanged hash-bin leaves can be skipped
  without bytes, so the cost of a sync follows the change.
* ``authority`` / ``DelegationWalk.is_authorized`` — a target listed by a role counts
  only if that role is the first one in the path's search order that lists it.

Search semantics: pre-order depth-first, children in the order the delegator lists
them, a role visited at most once per search (cycles, diamonds), only delegations
whose ``paths`` (shell globs matched per ``/`` segment: ``*`` and ``?`` never cross a
``/``, segment counts must match, case-sensitive) or ``path_hash_prefixes`` (prefixes
of the hex SHA-256 of the path) match; after a matching *terminating* delegation its
role's subtree is still searched, but the search ends there. TAP 15
``succinct_roles`` delegate each path to exactly one bin, terminating. Visits are
capped (``Limits.delegation_visits``).

What this module does not do: fetch, read or write anything, or check target bytes
(``mirror.trust.targets``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from fnmatch import fnmatchcase
from typing import NamedTuple, Protocol

from mirror.errors import DelegationError, LengthOrHashMismatchError
from mirror.trust._tuf import DelegatedRole, Delegations, TargetFile, Targets
from mirror.trust.names import validate_role_name
from mirror.trust.trusted_set import TrustedSet
from mirror.trust.verified import Verified

__all__ = [
    "Authority",
    "DelegationMatcher",
    "DelegationWalk",
    "RoleGraph",
    "RoleStep",
    "TargetMatch",
    "TargetSearch",
    "WalkStep",
    "authority",
    "path_hash",
    "path_matches_pattern",
    "role_matches_path",
    "search_order",
]


# -- matching ----------------------------------------------------------------------


def path_hash(path: str) -> str:
    """Hex SHA-256 of a target path (UTF-8), as ``path_hash_prefixes`` match it."""
    return hashlib.sha256(path.encode("utf-8")).hexdigest()


def path_matches_pattern(path: str, pattern: str) -> bool:
    """Shell-glob match per ``/`` segment: same number of segments, each matching
    with ``fnmatchcase`` (``*``, ``?``, ``[...]``), so wildcards never cross ``/``."""
    path_parts = path.split("/")
    pattern_parts = pattern.split("/")
    if len(path_parts) != len(pattern_parts):
        return False
    return all(fnmatchcase(part, pat) for part, pat in zip(path_parts, pattern_parts, strict=True))


def role_matches_path(role: DelegatedRole, path: str, hashed: str | None = None) -> bool:
    """Whether ``role``'s ``paths`` or ``path_hash_prefixes`` cover ``path``."""
    if role.path_hash_prefixes is not None:
        digest = hashed if hashed is not None else path_hash(path)
        return any(digest.startswith(prefix) for prefix in role.path_hash_prefixes)
    if role.paths is not None:
        return any(path_matches_pattern(path, pattern) for pattern in role.paths)
    return False


class DelegationMatcher:
    """The delegations of one role, indexed so that finding the roles responsible for
    a path costs O(number of distinct prefix lengths + glob roles), not O(roles).

    Hash-bin delegations (thousands of roles with ``path_hash_prefixes``) become a
    dictionary lookup; ``succinct_roles`` a computation.
    """

    __slots__ = ("_by_prefix", "_globs", "_roles", "_succinct", "hashbin")

    def __init__(self, delegations: Delegations) -> None:
        self._succinct = delegations.succinct_roles
        self._roles: list[DelegatedRole] = (
            list(delegations.roles.values()) if delegations.roles is not None else []
        )
        self._globs: list[int] = []
        self._by_prefix: dict[int, dict[str, list[int]]] = {}
        for position, role in enumerate(self._roles):
            if role.path_hash_prefixes is not None:
                for prefix in dict.fromkeys(role.path_hash_prefixes):
                    by_length = self._by_prefix.setdefault(len(prefix), {})
                    by_length.setdefault(prefix, []).append(position)
            else:
                self._globs.append(position)
        self.hashbin: frozenset[str] = frozenset(
            role.name for role in self._roles if role.path_hash_prefixes is not None
        )
        """Roles delegated by hash prefix (not by glob paths)."""

    @property
    def succinct(self) -> bool:
        """Whether these are TAP 15 succinct hash-bin delegations."""
        return self._succinct is not None

    def children(self) -> Iterator[tuple[str, bool]]:
        """Every delegated role in order, with whether it is a hash-bin delegation."""
        if self._succinct is not None:
            for name in self._succinct.get_roles():
                yield name, True
            return
        for role in self._roles:
            yield role.name, role.path_hash_prefixes is not None

    def child_count(self) -> int:
        """How many roles are delegated."""
        if self._succinct is not None:
            return int(self._succinct.number_of_bins)
        return len(self._roles)

    def matching(self, path: str, hashed: str | None = None) -> list[tuple[str, bool]]:
        """The roles responsible for ``path``, in delegation order, with their
        ``terminating`` flag."""
        if self._succinct is not None:
            return [(self._succinct.get_role_for_target(path), True)]
        if not self._roles:
            return []
        positions = [p for p in self._globs if role_matches_path(self._roles[p], path)]
        if self._by_prefix:
            digest = hashed if hashed is not None else path_hash(path)
            for length, table in self._by_prefix.items():
                positions.extend(table.get(digest[:length], ()))
            positions = sorted(set(positions))
        return [(self._roles[p].name, self._roles[p].terminating) for p in positions]


# -- the search for one path ----------------------------------------------------------


class RoleStep(NamedTuple):
    """A role to visit, and the delegator whose keys verify it on this path."""

    role: str
    delegator: str


class _PathSearch:
    """Pre-order DFS state for one target path (no I/O, no verification)."""

    __slots__ = ("_hash", "_max_visits", "_stack", "_visited", "capped", "path")

    def __init__(self, path: str, *, max_visits: int) -> None:
        self.path = path
        self._hash = path_hash(path)
        self._max_visits = max_visits
        self._stack: list[RoleStep] = [RoleStep("targets", "root")]
        self._visited: set[str] = set()
        self.capped = False

    def pop(self) -> RoleStep | None:
        while self._stack:
            step = self._stack.pop()
            if step.role in self._visited:
                continue
            if len(self._visited) >= self._max_visits:
                self._stack.clear()
                self.capped = True
                return None
            self._visited.add(step.role)
            return step
        return None

    def expand(self, role: str, matcher: DelegationMatcher | None) -> None:
        if matcher is None:
            return
        children: list[RoleStep] = []
        for child, terminating in matcher.matching(self.path, self._hash):
            children.append(RoleStep(child, role))
            if terminating:
                # Nothing after this role's subtree is searched.
                self._stack.clear()
                break
        self._stack.extend(reversed(children))


def _matcher(delegations: Delegations | None) -> DelegationMatcher | None:
    return None if delegations is None else DelegationMatcher(delegations)


def search_order(
    path: str,
    delegations_of: Callable[[str], Delegations | None],
    *,
    max_visits: int,
) -> Iterator[RoleStep]:
    """Yield the roles a search for ``path`` visits, in order, starting at "targets".

    After each yielded role the generator asks ``delegations_of(role)`` to continue
    (``None`` for a role that delegates nothing). A consumer looking for the role that
    lists ``path`` stops iterating when it finds it.
    """
    search = _PathSearch(path, max_visits=max_visits)
    while (step := search.pop()) is not None:
        yield step
        search.expand(step.role, _matcher(delegations_of(step.role)))


@dataclass(frozen=True, slots=True)
class TargetMatch:
    """The outcome of a successful lookup: the target and the role that listed it."""

    path: str
    target: TargetFile
    role: str


class TargetSearch:
    """The specification's target lookup for one path, resumable around fetching.

    ::

        search = TargetSearch(trusted_set, "path/to/file")
        while (step := search.next_role()) is not None:
            data = fetch(step.role, trusted_set.role_meta(step.role).version)
            search.feed(data)             # or feed(local_bytes, trusted=True)
        match = search.result             # TargetMatch, or None: not found

    Top-level targets must already be trusted. Each fed role is verified by
    ``TrustedSet.update_delegated_targets`` with the keys of ``step.delegator`` (the
    delegator on the current search path), so a role reachable from two delegators
    is verified against the one this search came through. ``next_role`` raises
    ``DelegationError`` for a role the snapshot does not list (it must not be
    fetched). A verification failure leaves the search stopped on that role; feeding
    other bytes for it (another mirror) is allowed.
    """

    def __init__(self, trusted_set: TrustedSet, path: str) -> None:
        targets = trusted_set.targets
        snapshot = trusted_set.snapshot
        if targets is None or snapshot is None:
            raise RuntimeError("target search needs trusted snapshot and targets")
        self._trusted_set = trusted_set
        self._search = _PathSearch(
            path, max_visits=trusted_set.limits.delegation_visits(snapshot.signed)
        )
        self._pending: RoleStep | None = None
        self.result: TargetMatch | None = None
        self.visited: list[str] = []
        first = self._search.pop()
        assert first is not None
        self._process(first.role, targets.signed)

    @property
    def path(self) -> str:
        """The target path searched for."""
        return self._search.path

    @property
    def capped(self) -> bool:
        """Whether the search stopped at the visit cap."""
        return self._search.capped

    def next_role(self) -> RoleStep | None:
        """The next role to fetch and ``feed``, or ``None`` when the search is over
        (then ``result`` tells whether the path was found)."""
        if self._pending is not None:
            return self._pending
        if self.result is not None:
            return None
        step = self._search.pop()
        if step is None:
            return None
        validate_role_name(step.role)
        if self._trusted_set.role_meta(step.role) is None:
            raise DelegationError(
                f"{step.role}: delegated by {step.delegator} but not listed in snapshot"
            )
        self._pending = step
        return step

    def feed(self, data: bytes, *, trusted: bool = False) -> Verified[Targets]:
        """Verify the bytes of the role ``next_role`` asked for, and continue."""
        step = self._pending
        if step is None:
            raise RuntimeError("feed() without a pending role: call next_role() first")
        verified = self._trusted_set.update_delegated_targets(
            data, step.role, step.delegator, trusted=trusted
        )
        self._pending = None
        self._process(step.role, verified.signed)
        return verified

    def _process(self, role: str, targets: Targets) -> None:
        self.visited.append(role)
        found = targets.targets.get(self._search.path)
        if found is not None:
            self.result = TargetMatch(self._search.path, found, role)
            return
        self._search.expand(role, _matcher(targets.delegations))


# -- authority ---------------------------------------------------------------------


class Authority(Enum):
    """Whether a role's listing of a path is the one a client's search would use."""

    AUTHORIZED = "authorized"
    """The role is the first in the path's search order that lists the path."""
    SHADOWED = "shadowed"
    """An earlier role in the search order lists the path."""
    UNREACHABLE = "unreachable"
    """The search never reaches the role (paths, terminating, cap, missing role)."""
    UNDECIDED = "undecided"
    """An earlier role's target list or delegations are not known."""


class RoleGraph(Protocol):
    """What ``authority`` needs to know about the verified roles."""

    def matcher(self, role: str) -> DelegationMatcher | None:
        """The role's delegations (``None``: delegates nothing); ``KeyError`` if unknown."""
        ...

    def lists(self, role: str, path: str) -> bool | None:
        """Whether ``role`` lists ``path``; ``None`` if its target list is not known."""
        ...

    def in_snapshot(self, role: str) -> bool:
        """Whether the snapshot lists ``role``."""
        ...


def authority(path: str, listing_role: str, graph: RoleGraph, *, max_visits: int) -> Authority:
    """Decide whether ``listing_role`` (which lists ``path``) is authoritative for it.

    Runs the search for ``path``; the answer is ``AUTHORIZED`` iff ``listing_role`` is
    reached before any other role that lists the path. A role on the way whose target
    list is unknown makes a later ``AUTHORIZED`` ``UNDECIDED`` (it might list the
    path); a role whose delegations are unknown makes the search ``UNDECIDED``.
    """
    search = _PathSearch(path, max_visits=max_visits)
    uncertain = False
    while (step := search.pop()) is not None:
        if step.role == listing_role:
            return Authority.UNDECIDED if uncertain else Authority.AUTHORIZED
        if step.role != "targets" and not graph.in_snapshot(step.role):
            return Authority.UNREACHABLE  # a client's search fails at this role
        listed = graph.lists(step.role, path)
        if listed:
            return Authority.SHADOWED
        if listed is None:
            uncertain = True  # if it lists the path, the search ends here anyway
        try:
            matcher = graph.matcher(step.role)
        except KeyError:
            return Authority.UNDECIDED
        search.expand(step.role, matcher)
    return Authority.UNREACHABLE


# -- the whole-graph walk ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WalkStep:
    """One role the walk needs: fetch (or load) its bytes and ``feed`` them, or
    ``skip`` it when ``skippable``.

    ``repeat`` means the role was already requested through another delegator: feed
    the *same bytes* again so they are verified with this delegator's keys too.
    ``version`` is the version the snapshot lists (for the file name).
    """

    role: str
    delegator: str
    version: int
    repeat: bool
    skippable: bool
    hashbin: bool


class DelegationWalk:
    """Visits every role reachable from the trusted top-level targets, for the mirror.

    Protocol (steps may be fetched concurrently; feed them in any order)::

        walk = DelegationWalk(trusted_set, previous_versions=..., previous_leaves=...)
        while not walk.done:
            for step in walk.ready():           # every step known right now
                if step.skippable:
                    walk.skip(step)
                else:
                    verified = walk.feed(step, fetch(step.role, step.version))
                    ...  # use verified.signed.targets with walk.is_authorized()
        walk.versions, walk.leaves               # remember for the next sync

    * Every reachable role is requested exactly once with ``repeat=False``, in
      pre-order when steps are handled one at a time. Children become known when
      their delegator is fed, so ``ready()`` may return nothing while fed steps are
      outstanding — ``done`` is true only when nothing is pending or outstanding.
    * A role also delegated by other delegators is requested again with
      ``repeat=True`` for each of them; the walk verifies the bytes against that
      delegator's keys and checks they are the same bytes (SHA-256) as the first feed.
      A cycle ends there: children are only expanded on the first feed.
    * A delegated role missing from snapshot is not requested; it is recorded in
      ``missing``.
    * Roles the snapshot lists that no delegation reaches are never requested: a
      client never fetches them and the upstream need not serve them.
      ``unreachable()`` names them once the walk is done.
    * ``feed(..., trusted=True)`` is for previously published bytes of an unchanged
      role: signatures, version and expiry are still verified (the destination may
      have been tampered with), only the length/hash comparison is skipped.
    * ``skippable`` steps need no bytes at all. A step is skippable when the trusted
      set is in mirror mode (``expired_delegated_ok``: an expiry that passed since
      cannot matter), the role was reached through a hash-bin delegation
      (``path_hash_prefixes`` or ``succinct_roles``), the role's snapshot version
      equals ``previous_versions[role]``, the role is in ``previous_leaves`` (it
      delegated nothing at that version), and the delegator's version is also
      unchanged (so it still gives the role the same keys). ``previous_versions`` and
      ``previous_leaves`` must come from a completed earlier walk (``versions`` and
      ``leaves``) whose result was published: their meaning is "verified before".

    Authority (``is_authorized``) uses the top-level targets and every delegator's
    targets (kept by the trusted set) and the path sets of leaves reached through
    glob delegations (kept here). Hash-bin leaves' lists are not kept: a path
    whose search passes through another hash-bin leaf before reaching the listing
    role (overlapping prefixes) is ``UNDECIDED``, as is a path whose search needs a
    role not fed yet (in a diamond graph, ask again after the walk).

    The visit count is capped by ``Limits.delegation_visits`` (``DelegationError``).
    """

    def __init__(
        self,
        trusted_set: TrustedSet,
        *,
        previous_versions: Mapping[str, int] | None = None,
        previous_leaves: Collection[str] = frozenset(),
    ) -> None:
        targets = trusted_set.targets
        snapshot = trusted_set.snapshot
        if targets is None or snapshot is None:
            raise RuntimeError("delegation walk needs trusted snapshot and targets")
        self._ts = trusted_set
        self._previous = dict(previous_versions or {})
        self._previous_leaves = frozenset(previous_leaves)
        self._max_visits = trusted_set.limits.delegation_visits(snapshot.signed)
        self._stack: list[tuple[str, str, bool]] = []
        self._claimed: set[str] = {"targets"}
        self._outstanding: dict[tuple[str, str], WalkStep] = {}
        self._digests: dict[str, bytes] = {}
        self._matchers: dict[str, DelegationMatcher] = {}
        self._leaf_paths: dict[str, frozenset[str]] = {}
        self.missing: list[str] = []
        self.versions: dict[str, int] = {"targets": targets.version}
        """Version of every role verified or skipped by this walk (and "targets")."""
        self.leaves: set[str] = set()
        """Roles that delegate nothing (fed without delegations, or skipped)."""
        self._push_children("targets", targets.signed)

    # -- protocol --------------------------------------------------------------

    @property
    def done(self) -> bool:
        """Nothing left to request and nothing outstanding."""
        return not self._stack and not self._outstanding

    @property
    def outstanding(self) -> list[WalkStep]:
        """Steps handed out and not yet fed or skipped."""
        return list(self._outstanding.values())

    def next_step(self) -> WalkStep | None:
        """The next step to handle, or ``None`` if none is known right now."""
        snapshot = self._ts.snapshot
        assert snapshot is not None
        while self._stack:
            role, delegator, hashbin = self._stack.pop()
            validate_role_name(role)
            meta = snapshot.signed.meta.get(f"{role}.json")
            if meta is None:
                if role not in self.missing:
                    self.missing.append(role)
                continue
            repeat = role in self._claimed
            if not repeat:
                if len(self._claimed) >= self._max_visits:
                    raise DelegationError(
                        f"{role}: more than {self._max_visits} delegated roles reachable"
                    )
                self._claimed.add(role)
            step = WalkStep(
                role=role,
                delegator=delegator,
                version=meta.version,
                repeat=repeat,
                skippable=self._skippable(role, delegator, hashbin, meta.version),
                hashbin=hashbin,
            )
            self._outstanding[(role, delegator)] = step
            return step
        return None

    def unreachable(self) -> list[str]:
        """Roles the trusted snapshot lists that this walk never reached (sorted):
        nothing delegates to them from ``targets``. Only meaningful once ``done``."""
        if not self.done:
            raise RuntimeError("unreachable roles are known only when the walk is done")
        snapshot = self._ts.snapshot
        assert snapshot is not None
        roles = (name.removesuffix(".json") for name in snapshot.signed.meta)
        return sorted(role for role in roles if role not in self._claimed)

    def ready(self) -> list[WalkStep]:
        """Every step known right now (see ``next_step``)."""
        steps: list[WalkStep] = []
        while (step := self.next_step()) is not None:
            steps.append(step)
        return steps

    def feed(self, step: WalkStep, data: bytes, *, trusted: bool = False) -> Verified[Targets]:
        """Verify the bytes for ``step`` (against ``step.delegator``'s keys); on the
        first feed of a role, queue its children. Returns the verified role."""
        if self._outstanding.get((step.role, step.delegator)) != step:
            raise RuntimeError(f"{step.role}: not an outstanding walk step")
        verified = self._ts.update_delegated_targets(
            data, step.role, step.delegator, trusted=trusted
        )
        digest = hashlib.sha256(data).digest()
        first = self._digests.setdefault(step.role, digest)
        if first != digest:
            raise LengthOrHashMismatchError(
                f"{step.role}: bytes fed via {step.delegator} differ from the bytes "
                "verified via another delegator"
            )
        del self._outstanding[(step.role, step.delegator)]
        self.versions[step.role] = verified.version
        targets = verified.signed
        if targets.delegations is None:
            self.leaves.add(step.role)
            if not step.hashbin:
                self._leaf_paths[step.role] = frozenset(targets.targets)
        elif not step.repeat:
            self._push_children(step.role, targets)
        return verified

    def skip(self, step: WalkStep) -> None:
        """Accept a ``skippable`` step without bytes (unchanged, verified before)."""
        if self._outstanding.get((step.role, step.delegator)) != step:
            raise RuntimeError(f"{step.role}: not an outstanding walk step")
        if not step.skippable:
            raise RuntimeError(f"{step.role}: step is not skippable")
        del self._outstanding[(step.role, step.delegator)]
        self.versions[step.role] = step.version
        self.leaves.add(step.role)

    # -- authority -------------------------------------------------------------

    def authority(self, path: str, role: str) -> Authority:
        """Whether ``role``'s listing of ``path`` is what a client's search uses."""
        return authority(path, role, self, max_visits=self._max_visits)

    def is_authorized(self, path: str, role: str) -> bool:
        """``authority(path, role) is Authority.AUTHORIZED``."""
        return self.authority(path, role) is Authority.AUTHORIZED

    # RoleGraph
    def matcher(self, role: str) -> DelegationMatcher | None:
        """The role's delegation matcher; ``KeyError`` if the role is not known yet."""
        cached = self._matchers.get(role)
        if cached is not None:
            return cached
        delegator = self._ts.delegator(role)
        if delegator is not None and delegator.delegations is not None:
            matcher = DelegationMatcher(delegator.delegations)
            self._matchers[role] = matcher
            return matcher
        if role in self.leaves:
            return None
        raise KeyError(role)

    def lists(self, role: str, path: str) -> bool | None:
        """Whether ``role`` lists ``path`` (``None``: its list is not kept)."""
        delegator = self._ts.delegator(role)
        if delegator is not None:
            return path in delegator.targets
        kept = self._leaf_paths.get(role)
        if kept is not None:
            return path in kept
        return None

    def in_snapshot(self, role: str) -> bool:
        """Whether the trusted snapshot lists ``role``."""
        return self._ts.role_meta(role) is not None

    # -- internals ---------------------------------------------------------------

    def _skippable(self, role: str, delegator: str, hashbin: bool, version: int) -> bool:
        if not (self._ts.expired_delegated_ok and hashbin):
            return False
        if role not in self._previous_leaves or self._previous.get(role) != version:
            return False
        delegator_version = self.versions.get(delegator)
        return delegator_version is not None and self._previous.get(delegator) == (
            delegator_version
        )

    def _push_children(self, role: str, targets: Targets) -> None:
        if targets.delegations is None:
            return
        matcher = DelegationMatcher(targets.delegations)
        self._matchers[role] = matcher
        if matcher.child_count() > self._max_visits:
            raise DelegationError(
                f"{role}: delegates {matcher.child_count()} roles, more than the "
                f"{self._max_visits} the snapshot allows"
            )
        children = list(matcher.children())
        self._stack.extend((child, role, hashbin) for child, hashbin in reversed(children))
