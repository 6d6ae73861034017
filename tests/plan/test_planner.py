"""The pure target planner (``mirror.plan.plan_role`` and ``decide_target``): which
new or changed targets of a role are copied, filtered, held back, not mirrored, or
left undecided until the delegation walk is complete.

Real parts: the filters are ``TargetFilter``, and the hash-bin table asks the trust
core's own ``authority`` search; only the walk's verdicts of the main table and the
policy are small recording functions (they are callables in the planner's API).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pytest
from tuf.api.metadata import Delegations, SuccinctRoles, TargetFile

from mirror.errors import UnsafeNameError, VerificationError
from mirror.filters import TargetFilter
from mirror.plan import (
    Decision,
    PublishedTargets,
    TargetCopy,
    TargetDecision,
    decide_target,
    plan_role,
)
from mirror.trust import Authority, DelegationMatcher, authority

SHA256 = "sha256"
SHA512 = "sha512"


def target(path: str, data: bytes, *algorithms: str) -> TargetFile:
    """A target entry for ``data`` with the listed hashes (sha256 by default)."""
    hashes = {alg: hashlib.new(alg, data).hexdigest() for alg in algorithms or (SHA256,)}
    return TargetFile(len(data), hashes, path)


def listing(*targets: TargetFile) -> dict[str, TargetFile]:
    return {each.path: each for each in targets}


A = target("a.txt", b"alpha")
A_LONGER = target("a.txt", b"alpha!")
A_OTHER_BYTES = target("a.txt", b"alphA")  # same length, other hash
A_TWO_HASHES = target("a.txt", b"alpha", SHA256, SHA512)
B = target("pkgs/b.tar.gz", b"bravo")
C = target("pkgs/c.whl", b"charlie")


@dataclass
class Asked:
    """Recording stand-ins for the walk and the policy: verdicts by path (default
    AUTHORIZED), held paths, and every question asked, in order."""

    verdicts: Mapping[str, Authority] = field(default_factory=dict)
    held: frozenset[str] = frozenset()
    authority_calls: list[tuple[str, str]] = field(default_factory=list)
    admit_calls: list[tuple[str, str]] = field(default_factory=list)

    def authority(self, path: str, role: str) -> Authority:
        self.authority_calls.append((path, role))
        return self.verdicts.get(path, Authority.AUTHORIZED)

    def admits(self, role: str, target: TargetFile) -> bool:
        self.admit_calls.append((role, target.path))
        return target.path not in self.held


class CountingFilter:
    """A real ``TargetFilter`` whose questions are counted."""

    def __init__(self, selection: TargetFilter) -> None:
        self.selection = selection
        self.calls: list[tuple[str, str]] = []

    def selects(self, path: str, role: str) -> bool:
        self.calls.append((path, role))
        return self.selection.selects(path, role)


@dataclass(frozen=True)
class Case:
    id: str
    targets: Sequence[TargetFile]
    previous: Sequence[TargetFile] | None = None
    role: str = "targets"
    verdicts: Mapping[str, Authority] = field(default_factory=dict)
    selection: TargetFilter = field(default_factory=TargetFilter)
    held: frozenset[str] = frozenset()
    policy: bool = True
    #: (path, decision) in the order yielded
    expected: Sequence[tuple[str, Decision]] = ()


CASES = [
    # -- new, changed, unchanged, removed -------------------------------------------
    Case(
        "first-sync-every-target-new",
        targets=[A, B, C],
        expected=[
            ("a.txt", Decision.COPY),
            ("pkgs/b.tar.gz", Decision.COPY),
            ("pkgs/c.whl", Decision.COPY),
        ],
    ),
    Case("unchanged-targets-skipped", targets=[A, B], previous=[A, B], expected=[]),
    Case(
        "new-target-beside-unchanged",
        targets=[A, B, C],
        previous=[A, B],
        expected=[("pkgs/c.whl", Decision.COPY)],
    ),
    Case("changed-length", targets=[A_LONGER], previous=[A], expected=[("a.txt", Decision.COPY)]),
    Case(
        "changed-hash-same-length",
        targets=[A_OTHER_BYTES],
        previous=[A],
        expected=[("a.txt", Decision.COPY)],
    ),
    Case(
        "hash-algorithm-added",
        targets=[A_TWO_HASHES],
        previous=[A],
        expected=[("a.txt", Decision.COPY)],
    ),
    Case("removed-target-not-planned", targets=[A], previous=[A, B], expected=[]),
    Case("empty-role", targets=[], previous=[A], expected=[]),
    # -- the walk's verdict ----------------------------------------------------------
    Case(
        "shadowed-not-mirrored",
        targets=[A, B],
        verdicts={"a.txt": Authority.SHADOWED},
        expected=[("a.txt", Decision.UNAUTHORIZED), ("pkgs/b.tar.gz", Decision.COPY)],
    ),
    Case(
        "unreachable-not-mirrored",
        targets=[A],
        verdicts={"a.txt": Authority.UNREACHABLE},
        expected=[("a.txt", Decision.UNAUTHORIZED)],
    ),
    Case(
        "undecided-left-for-after-the-walk",
        targets=[A, B],
        verdicts={"pkgs/b.tar.gz": Authority.UNDECIDED},
        expected=[("a.txt", Decision.COPY), ("pkgs/b.tar.gz", Decision.UNDECIDED)],
    ),
    Case(
        "unauthorized-even-if-filtered-out",
        targets=[A],
        verdicts={"a.txt": Authority.SHADOWED},
        selection=TargetFilter(exclude=("a.txt",)),
        expected=[("a.txt", Decision.UNAUTHORIZED)],
    ),
    # -- filters ---------------------------------------------------------------------
    Case(
        "include-selects",
        targets=[A, B, C],
        selection=TargetFilter(include=("pkgs/*.whl",)),
        expected=[
            ("a.txt", Decision.FILTERED),
            ("pkgs/b.tar.gz", Decision.FILTERED),
            ("pkgs/c.whl", Decision.COPY),
        ],
    ),
    Case(
        "exclude-drops",
        targets=[A, B, C],
        selection=TargetFilter(exclude=("**.gz",)),
        expected=[
            ("a.txt", Decision.COPY),
            ("pkgs/b.tar.gz", Decision.FILTERED),
            ("pkgs/c.whl", Decision.COPY),
        ],
    ),
    Case(
        "exclude-wins-over-include",
        targets=[B, C],
        selection=TargetFilter(include=("pkgs/**",), exclude=("pkgs/c.*",)),
        expected=[("pkgs/b.tar.gz", Decision.COPY), ("pkgs/c.whl", Decision.FILTERED)],
    ),
    Case(
        "role-not-selected",
        targets=[A, B],
        role="bins-0",
        selection=TargetFilter(roles=("targets",)),
        expected=[("a.txt", Decision.FILTERED), ("pkgs/b.tar.gz", Decision.FILTERED)],
    ),
    Case(
        "role-selected-by-glob",
        targets=[A],
        role="bins-0",
        selection=TargetFilter(roles=("bins-*",)),
        expected=[("a.txt", Decision.COPY)],
    ),
    # -- the trust policy ------------------------------------------------------------
    Case(
        "policy-holds-back",
        targets=[A, B],
        held=frozenset({"a.txt"}),
        expected=[("a.txt", Decision.HELD), ("pkgs/b.tar.gz", Decision.COPY)],
    ),
    Case(
        "filtered-before-the-policy",
        targets=[A],
        held=frozenset({"a.txt"}),
        selection=TargetFilter(exclude=("a.txt",)),
        expected=[("a.txt", Decision.FILTERED)],
    ),
    Case(
        "no-policy-admits-everything-selected",
        targets=[A, B],
        policy=False,
        expected=[("a.txt", Decision.COPY), ("pkgs/b.tar.gz", Decision.COPY)],
    ),
]


def _run(case: Case, *, consistent: bool) -> tuple[list[TargetDecision], Asked, CountingFilter]:
    asked = Asked(verdicts=case.verdicts, held=case.held)
    selection = CountingFilter(case.selection)
    decisions = list(
        plan_role(
            role=case.role,
            targets=listing(*case.targets),
            previous=(
                PublishedTargets.from_targets(listing(*case.previous))
                if case.previous is not None
                else None
            ),
            authority=asked.authority,
            selects=selection.selects,
            admits=asked.admits if case.policy else None,
            consistent_snapshot=consistent,
        )
    )
    return decisions, asked, selection


@pytest.mark.parametrize("consistent", [True, False], ids=["consistent", "plain"])
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_plan_role_decides_each_new_or_changed_target(case: Case, consistent: bool) -> None:
    """One decision per new or changed target, in the role's order; a copy exactly
    for COPY, carrying the role and the walk's verdict; unchanged and removed targets
    are neither decided nor asked about."""
    decisions, _, _ = _run(case, consistent=consistent)
    assert [(d.target.path, d.decision) for d in decisions] == list(case.expected)
    by_path = {each.path: each for each in case.targets}
    for decision in decisions:
        assert decision.role == case.role
        assert decision.target is by_path[decision.target.path]
        assert decision.authority is case.verdicts.get(decision.target.path, Authority.AUTHORIZED)
        assert (decision.copy is not None) is (decision.decision is Decision.COPY)
        assert decision.published is (decision.decision is Decision.COPY)
        assert decision.authorized is (decision.authority is Authority.AUTHORIZED)
        if decision.copy is not None:
            assert decision.copy.role == case.role
            assert decision.copy.path == decision.target.path
            assert decision.copy.length == decision.target.length
            assert dict(decision.copy.hashes) == dict(decision.target.hashes)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_plan_role_asks_only_what_it_needs(case: Case) -> None:
    """The walk is asked once per new or changed target (never about unchanged
    ones); the filter only about authorised targets; the policy only about selected
    ones — so the policy gate never records a decision for a filtered target."""
    decisions, asked, selection = _run(case, consistent=True)
    previous = listing(*case.previous) if case.previous is not None else {}
    changed = [each.path for each in case.targets if previous.get(each.path) != each]
    assert asked.authority_calls == [(path, case.role) for path in changed]
    authorized = [d.target.path for d in decisions if d.authorized]
    assert selection.calls == [(path, case.role) for path in authorized]
    selected = [d.target.path for d in decisions if d.decision in (Decision.COPY, Decision.HELD)]
    assert asked.admit_calls == ([(case.role, path) for path in selected] if case.policy else [])


@pytest.mark.parametrize(
    ("consistent", "entry", "names"),
    [
        pytest.param(False, B, ("pkgs/b.tar.gz",), id="plain-path"),
        pytest.param(True, B, (f"pkgs/{B.hashes[SHA256]}.b.tar.gz",), id="hash-prefixed-in-dir"),
        pytest.param(True, A, (f"{A.hashes[SHA256]}.a.txt",), id="hash-prefixed-top-level"),
        pytest.param(
            True,
            A_TWO_HASHES,
            (
                f"{A_TWO_HASHES.hashes[SHA256]}.a.txt",
                f"{A_TWO_HASHES.hashes[SHA512]}.a.txt",
            ),
            id="one-name-per-hash-sorted-by-algorithm",
        ),
        pytest.param(False, A_TWO_HASHES, ("a.txt",), id="plain-ignores-hashes"),
    ],
)
def test_copy_names_follow_consistent_snapshot(
    consistent: bool, entry: TargetFile, names: tuple[str, ...]
) -> None:
    """A COPY decision's copy is published under every hash-prefixed name with
    consistent snapshots, under the plain path without."""
    (decision,) = plan_role(
        role="targets",
        targets=listing(entry),
        previous=None,
        authority=lambda path, role: Authority.AUTHORIZED,
        selects=TargetFilter().selects,
        admits=None,
        consistent_snapshot=consistent,
    )
    assert decision.copy == TargetCopy(
        path=entry.path,
        length=entry.length,
        hashes=dict(entry.hashes),
        names=names,
        role="targets",
    )


def test_plan_role_is_lazy() -> None:
    """A generator: nothing is asked before the caller iterates, and each step asks
    about one target only (memory and work follow the caller's pace)."""
    asked = Asked()
    plan = plan_role(
        role="targets",
        targets=listing(A, B, C),
        previous=None,
        authority=asked.authority,
        selects=TargetFilter().selects,
        admits=asked.admits,
        consistent_snapshot=True,
    )
    assert asked.authority_calls == []
    first = next(plan)
    assert first.target is A
    assert asked.authority_calls == [("a.txt", "targets")]
    assert asked.admit_calls == [("targets", "a.txt")]
    assert [each.target for each in plan] == [B, C]
    assert len(asked.authority_calls) == 3


@pytest.mark.parametrize(
    ("verdict", "held", "expected"),
    [
        pytest.param(Authority.AUTHORIZED, False, Decision.COPY, id="authorized-copy"),
        pytest.param(Authority.AUTHORIZED, True, Decision.HELD, id="authorized-held"),
        pytest.param(Authority.SHADOWED, False, Decision.UNAUTHORIZED, id="shadowed"),
        pytest.param(Authority.UNREACHABLE, False, Decision.UNAUTHORIZED, id="unreachable"),
        pytest.param(Authority.UNDECIDED, False, Decision.UNAUTHORIZED, id="still-undecided"),
    ],
)
def test_undecided_target_is_decided_after_the_walk(
    verdict: Authority, held: bool, expected: Decision
) -> None:
    """An UNDECIDED target carries no copy; asked again with ``decide_target`` once
    the walk is complete, it gets a final decision: a verdict that is still not
    AUTHORIZED (even still undecided) is not mirrored, and the decision keeps the
    verdict for the warning."""
    (pending,) = plan_role(
        role="bins-1",
        targets=listing(B),
        previous=None,
        authority=lambda path, role: Authority.UNDECIDED,
        selects=TargetFilter().selects,
        admits=None,
        consistent_snapshot=True,
    )
    assert (pending.decision, pending.copy, pending.authorized) == (
        Decision.UNDECIDED,
        None,
        False,
    )
    asked = Asked(held=frozenset({B.path}) if held else frozenset())
    final = decide_target(
        role=pending.role,
        target=pending.target,
        verdict=verdict,
        selects=TargetFilter().selects,
        admits=asked.admits,
        consistent_snapshot=True,
    )
    assert final.decision is expected
    assert final.authority is verdict
    assert (final.role, final.target) == ("bins-1", B)
    assert (final.copy is not None) is (expected is Decision.COPY)
    assert asked.admit_calls == ([("bins-1", B.path)] if verdict is Authority.AUTHORIZED else [])


@pytest.mark.parametrize(
    ("path", "hashes", "consistent", "error"),
    [
        pytest.param("../escape", {SHA256: "ab" * 32}, False, UnsafeNameError, id="dot-dot"),
        pytest.param("/abs", {SHA256: "ab" * 32}, True, UnsafeNameError, id="absolute"),
        pytest.param("a.txt", {SHA256: "AB" * 32}, True, UnsafeNameError, id="upper-case-hash"),
        pytest.param("a.txt", {SHA256: "zz" * 32}, True, UnsafeNameError, id="non-hex-hash"),
        pytest.param("a//b", {SHA256: "ab" * 32}, False, UnsafeNameError, id="empty-segment"),
    ],
)
def test_copy_with_unsafe_name_is_a_verification_error(
    path: str, hashes: dict[str, str], consistent: bool, error: type[VerificationError]
) -> None:
    """A target the planner would copy under a name that could escape, or whose
    content address is not lower-case hex, fails verification (exit 1) instead of
    being planned; a filtered-out one is not named at all, so it does not fail."""
    entry = TargetFile(5, hashes, path)
    with pytest.raises(error):
        decide_target(
            role="targets",
            target=entry,
            verdict=Authority.AUTHORIZED,
            selects=TargetFilter().selects,
            admits=None,
            consistent_snapshot=consistent,
        )
    filtered = decide_target(
        role="targets",
        target=entry,
        verdict=Authority.AUTHORIZED,
        selects=lambda path, role: False,
        admits=None,
        consistent_snapshot=consistent,
    )
    assert filtered.decision is Decision.FILTERED


@pytest.mark.parametrize(
    ("decision", "with_copy"),
    [
        pytest.param(Decision.COPY, False, id="copy-without-copy"),
        pytest.param(Decision.FILTERED, True, id="filtered-with-copy"),
        pytest.param(Decision.UNDECIDED, True, id="undecided-with-copy"),
    ],
)
def test_decision_carries_a_copy_iff_copy(decision: Decision, with_copy: bool) -> None:
    """A ``TargetDecision`` whose copy does not match its decision is refused (a
    caller bug, not data)."""
    copy = TargetCopy("a.txt", A.length, dict(A.hashes), ("a.txt",), "targets")
    with pytest.raises(ValueError, match="iff it is COPY"):
        TargetDecision("targets", A, decision, Authority.AUTHORIZED, copy if with_copy else None)


# -- hash-bin style roles, with the trust core's own search ------------------------------


class _HashBinGraph:
    """``targets`` delegates to four succinct hash bins (bins-0 … bins-3); each bin
    lists the paths given. A ``RoleGraph`` for ``mirror.trust.authority``."""

    def __init__(self, listed: Mapping[str, Sequence[str]]) -> None:
        self.succinct = SuccinctRoles(keyids=[], threshold=1, bit_length=2, name_prefix="bins")
        self._matcher = DelegationMatcher(
            Delegations(keys={}, roles=None, succinct_roles=self.succinct)
        )
        self._listed = {role: set(paths) for role, paths in listed.items()}

    def matcher(self, role: str) -> DelegationMatcher | None:
        return self._matcher if role == "targets" else None

    def lists(self, role: str, path: str) -> bool | None:
        return path in self._listed.get(role, set())

    def in_snapshot(self, role: str) -> bool:
        return role == "targets" or self.succinct.is_delegated_role(role)

    def authority(self, path: str, role: str) -> Authority:
        return authority(path, role, self, max_visits=32)


PATHS = [f"files/{index:03d}.bin" for index in range(16)]


@pytest.mark.parametrize("wrong_bin", [False, True], ids=["own-bin", "other-bin"])
def test_hash_bin_roles_copy_only_their_own_paths(wrong_bin: bool) -> None:
    """With succinct hash bins, each bin's targets are copied when the path hashes to
    that bin; a bin that lists a path hashing to another bin is not mirrored for it
    (a client's search never reaches that bin for that path)."""
    entries = {path: target(path, path.encode()) for path in PATHS}
    graph_probe = _HashBinGraph({})
    own = {path: graph_probe.succinct.get_role_for_target(path) for path in PATHS}
    bins = sorted(set(own.values()))
    assert len(bins) > 1  # the paths spread over several bins
    listed: dict[str, list[str]] = {name: [] for name in graph_probe.succinct.get_roles()}
    for path, name in own.items():
        listing_bin = bins[(bins.index(name) + 1) % len(bins)] if wrong_bin else name
        listed[listing_bin].append(path)
    graph = _HashBinGraph(listed)
    decisions = [
        decision
        for role, paths in listed.items()
        for decision in plan_role(
            role=role,
            targets={path: entries[path] for path in paths},
            previous=None,
            authority=graph.authority,
            selects=TargetFilter().selects,
            admits=None,
            consistent_snapshot=True,
        )
    ]
    assert sorted(d.target.path for d in decisions) == PATHS
    expected = Decision.UNAUTHORIZED if wrong_bin else Decision.COPY
    assert {d.decision for d in decisions} == {expected}
    if wrong_bin:
        assert {d.authority for d in decisions} == {Authority.UNREACHABLE}
    else:
        assert all(d.copy is not None and d.copy.role == own[d.target.path] for d in decisions)


def test_hash_bin_incremental_plans_only_the_changed_bin() -> None:
    """An incremental sync of hash bins: only the bin whose listing changed is
    planned, and only its new target is decided (cost follows the change)."""
    graph_probe = _HashBinGraph({})
    own = {path: graph_probe.succinct.get_role_for_target(path) for path in PATHS}
    old = {
        name: {p: target(p, p.encode()) for p in PATHS if own[p] == name}
        for name in set(own.values())
    }
    added = "files/new.bin"
    changed_bin = graph_probe.succinct.get_role_for_target(added)
    new = {name: dict(entries) for name, entries in old.items()}
    new.setdefault(changed_bin, {})[added] = target(added, b"new")
    graph = _HashBinGraph({name: list(entries) for name, entries in new.items()})
    asked: list[str] = []

    def walk(path: str, role: str) -> Authority:
        asked.append(path)
        return graph.authority(path, role)

    decisions = [
        decision
        for name in sorted(new)
        for decision in plan_role(
            role=name,
            targets=new[name],
            previous=PublishedTargets.from_targets(old[name]) if name in old else None,
            authority=walk,
            selects=TargetFilter().selects,
            admits=None,
            consistent_snapshot=True,
        )
    ]
    assert [(d.role, d.target.path, d.decision) for d in decisions] == [
        (changed_bin, added, Decision.COPY)
    ]
    assert asked == [added]
