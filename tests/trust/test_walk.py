"""The whole-graph delegation walk (mirror) and target authority."""

from __future__ import annotations

import pytest

from mirror.errors import DelegationError, LengthOrHashMismatchError, SignatureError
from mirror.trust import Authority, DelegationWalk, Limits, WalkStep, path_hash

from ._repo import PAST, Repo, new_signer


def walk_all(repo: Repo, walk: DelegationWalk) -> list[tuple[str, str, bool]]:
    """Handle steps one at a time, feeding published bytes or skipping; returns
    (role, delegator, repeat) per fed step, and "skip" steps as delegator "-"."""
    log: list[tuple[str, str, bool]] = []
    while (step := walk.next_step()) is not None:
        if step.skippable:
            walk.skip(step)
            log.append((step.role, "-", step.repeat))
        else:
            walk.feed(step, repo.published[step.role])
            log.append((step.role, step.delegator, step.repeat))
    assert walk.done
    return log


def test_walk_preorder_each_role_once() -> None:
    """Every reachable role is requested once, pre-order, in delegation order,
    regardless of paths and terminating flags."""
    repo = Repo()
    repo.delegate("targets", "A", paths=["*.py"])
    repo.delegate("targets", "B", terminating=True)
    repo.delegate("A", "C")
    repo.delegate("A", "D")
    repo.delegate("B", "E")
    repo.publish()
    walk = DelegationWalk(repo.trusted_set())
    log = walk_all(repo, walk)
    assert [role for role, _, _ in log] == ["A", "C", "D", "B", "E"]
    assert walk.versions == {"targets": 1, "A": 1, "B": 1, "C": 1, "D": 1, "E": 1}
    assert walk.leaves == {"C", "D", "E"}


def test_walk_diamond_repeats_for_each_delegator() -> None:
    """A role delegated by two delegators is requested again (repeat) for the second
    one and verified against its keys."""
    repo = Repo()
    repo.delegate("targets", "A")
    repo.delegate("targets", "B")
    repo.delegate("A", "C")
    repo.delegate("B", "C")
    repo.publish()
    log = walk_all(repo, DelegationWalk(repo.trusted_set()))
    assert log == [
        ("A", "targets", False),
        ("C", "A", False),
        ("B", "targets", False),
        ("C", "B", True),
    ]


def test_walk_diamond_with_different_keys_fails() -> None:
    """If C does not verify with the second delegator's keys, the walk fails."""
    repo = Repo()
    repo.delegate("targets", "A")
    repo.delegate("targets", "B")
    repo.delegate("A", "C", signers=[new_signer()])
    repo.delegate("B", "C", signers=[new_signer()])
    repo.publish()
    with pytest.raises(SignatureError, match="delegator B"):
        walk_all(repo, DelegationWalk(repo.trusted_set()))


def test_walk_repeat_needs_same_bytes() -> None:
    """A repeat feed with other (validly signed) bytes is refused."""
    repo = Repo()
    repo.delegate("targets", "A")
    repo.delegate("targets", "B")
    repo.delegate("A", "C")
    repo.delegate("B", "C")
    repo.publish()
    walk = DelegationWalk(repo.trusted_set())
    steps = {}
    while (step := walk.next_step()) is not None:
        steps[(step.role, step.delegator)] = step
        if step.repeat:
            break
        walk.feed(step, repo.published[step.role])
    repo.delegated["C"].signed.unrecognized_fields["x"] = 1
    other = repo.sign("C")
    with pytest.raises(LengthOrHashMismatchError, match="differ"):
        walk.feed(steps[("C", "B")], other, trusted=True)


def test_walk_cycle_ends() -> None:
    """A cycle A -> B -> A ends with one repeat verification of A via B."""
    repo = Repo()
    repo.delegate("targets", "A")
    repo.delegate("A", "B")
    repo.delegate("B", "A", signers=repo.signers["A"])
    repo.publish()
    log = walk_all(repo, DelegationWalk(repo.trusted_set()))
    assert log == [("A", "targets", False), ("B", "A", False), ("A", "B", True)]


def test_walk_records_missing_roles() -> None:
    """A delegated role missing from snapshot is recorded, not requested."""
    repo = Repo()
    repo.delegate("targets", "A")
    repo.delegate("targets", "B")
    repo.publish()
    del repo.snapshot.signed.meta["A.json"]
    repo.published["snapshot"] = repo.sign("snapshot")
    repo.published["timestamp"] = repo.sign("timestamp")
    walk = DelegationWalk(repo.trusted_set())
    assert [r for r, _, _ in walk_all(repo, walk)] == ["B"]
    assert walk.missing == ["A"]


def test_walk_visit_cap() -> None:
    """More reachable roles than the cap raise DelegationError."""
    repo = Repo()
    for name in "ABC":
        repo.delegate("targets", name)
    repo.publish()
    walk = DelegationWalk(repo.trusted_set(limits=Limits(max_delegation_visits=10)))
    walk_all(repo, walk)
    with pytest.raises(DelegationError, match="more than the 2"):
        DelegationWalk(repo.trusted_set(limits=Limits(max_delegation_visits=2)))
    repo.delegate("A", "D")
    repo.publish(bump=["A", "snapshot", "timestamp"])
    deep = DelegationWalk(repo.trusted_set(limits=Limits(max_delegation_visits=4)))
    with pytest.raises(DelegationError, match="more than 4"):
        walk_all(repo, deep)


def test_walk_concurrent_steps_any_order() -> None:
    """ready() hands out every known step; feeding them in reverse works and
    children appear once their delegator is fed."""
    repo = Repo()
    repo.delegate("targets", "A")
    repo.delegate("targets", "B")
    repo.delegate("B", "C")
    repo.publish()
    walk = DelegationWalk(repo.trusted_set())
    first = walk.ready()
    assert [s.role for s in first] == ["A", "B"]
    assert walk.ready() == []
    assert not walk.done
    for step in reversed(first):
        walk.feed(step, repo.published[step.role])
    assert [s.role for s in walk.ready()] == ["C"]
    assert not walk.done
    walk.feed(walk.outstanding[0], repo.published["C"])
    assert walk.done


def test_walk_expired_delegated_recorded_in_mirror_mode() -> None:
    """The walk in mirror mode accepts an expired delegated role and records it."""
    repo = Repo()
    repo.delegate("targets", "A").signed.expires = PAST
    repo.publish()
    trusted = repo.trusted_set(expired_delegated_ok=True)
    walk_all(repo, DelegationWalk(trusted))
    assert trusted.expired_delegated == ["A"]


def test_walk_protocol_errors() -> None:
    """Feeding a step that is not outstanding, or skipping a non-skippable one, is a
    caller bug."""
    repo = Repo()
    repo.delegate("targets", "A")
    repo.publish()
    walk = DelegationWalk(repo.trusted_set())
    fake = WalkStep("A", "targets", 1, repeat=False, skippable=False, hashbin=False)
    with pytest.raises(RuntimeError):
        walk.feed(fake, repo.published["A"])
    step = walk.next_step()
    assert step is not None
    with pytest.raises(RuntimeError, match="not skippable"):
        walk.skip(step)


# -- skipping unchanged hash bins -----------------------------------------------------


def _bins(repo: Repo, count: int) -> list[str]:
    """Delegate from targets to ``count`` (power of 16) bins by path_hash_prefixes."""
    width = len(f"{count - 1:x}")
    names = []
    for index in range(count):
        prefix = f"{index:0{width}x}"
        name = f"bins-{prefix}"
        repo.delegate("targets", name, hash_prefixes=[prefix], signers=[repo.bin_signer])
        names.append(name)
    return names


@pytest.fixture
def binned() -> Repo:
    repo = Repo()
    repo.bin_signer = new_signer()  # type: ignore[attr-defined]
    _bins(repo, 256)
    for path in ("a.txt", "b.txt", "c.txt"):
        digest = path_hash(path)
        repo.add_target(f"bins-{digest[:2]}", path, path.encode())
    repo.publish()
    return repo


def test_first_walk_feeds_everything(binned: Repo) -> None:
    """Without previous state nothing is skippable."""
    trusted = binned.trusted_set(expired_delegated_ok=True)
    walk = DelegationWalk(trusted)
    log = walk_all(binned, walk)
    assert len(log) == 256
    assert all(delegator == "targets" for _, delegator, _ in log)
    assert len(walk.leaves) == 256


def test_incremental_walk_cost_follows_change(binned: Repo) -> None:
    """With previous versions/leaves, only the changed bin is fed: unchanged bins are
    skipped without bytes."""
    trusted = binned.trusted_set(expired_delegated_ok=True)
    first = DelegationWalk(trusted)
    walk_all(binned, first)

    changed = f"bins-{path_hash('a.txt')[:2]}"
    binned.add_target(changed, "a.txt", b"new content")
    binned.publish(bump=[changed, "snapshot", "timestamp"])
    trusted2 = binned.trusted_set(expired_delegated_ok=True)
    walk = DelegationWalk(trusted2, previous_versions=first.versions, previous_leaves=first.leaves)
    log = walk_all(binned, walk)
    fed = [role for role, delegator, _ in log if delegator != "-"]
    assert fed == [changed]
    assert walk.versions[changed] == 2
    assert len(walk.leaves) == 256


def test_changed_delegator_makes_bins_unskippable(binned: Repo) -> None:
    """When targets (the bins' delegator) changes, its keys for the bins may have
    changed: every bin is verified again."""
    trusted = binned.trusted_set(expired_delegated_ok=True)
    first = DelegationWalk(trusted)
    walk_all(binned, first)
    binned.publish(bump=["targets", "snapshot", "timestamp"])
    walk = DelegationWalk(
        binned.trusted_set(expired_delegated_ok=True),
        previous_versions=first.versions,
        previous_leaves=first.leaves,
    )
    assert not any(step.skippable for step in walk.ready())


def test_no_skipping_in_client_mode(binned: Repo) -> None:
    """Skipping needs mirror mode (an expiry that passed since must not matter)."""
    first = DelegationWalk(binned.trusted_set(expired_delegated_ok=True))
    walk_all(binned, first)
    walk = DelegationWalk(
        binned.trusted_set(),
        previous_versions=first.versions,
        previous_leaves=first.leaves,
    )
    assert not any(step.skippable for step in walk.ready())


def test_glob_leaves_are_never_skipped() -> None:
    """Leaves delegated by glob paths are fed even when unchanged (their target
    lists are needed for authority)."""
    repo = Repo()
    repo.delegate("targets", "A")
    repo.publish()
    walk = DelegationWalk(
        repo.trusted_set(expired_delegated_ok=True),
        previous_versions={"targets": 1, "A": 1},
        previous_leaves={"A"},
    )
    step = walk.next_step()
    assert step is not None
    assert not step.skippable


def test_authority_for_hash_bins(binned: Repo) -> None:
    """In a hash-bin repository a bin is authoritative for its own paths and not
    for others, without other bins' target lists."""
    trusted = binned.trusted_set(expired_delegated_ok=True)
    walk = DelegationWalk(trusted)
    own = f"bins-{path_hash('a.txt')[:2]}"
    other = f"bins-{path_hash('b.txt')[:2]}"
    walk.feed(next(s for s in walk.ready() if s.role == own), binned.published[own])
    assert walk.authority("a.txt", own) is Authority.AUTHORIZED
    assert walk.is_authorized("a.txt", own)
    assert walk.authority("a.txt", other) is Authority.UNREACHABLE


def test_authority_top_level_listing_shadows_bin(binned: Repo) -> None:
    """A path listed by targets itself belongs to targets, not to the bin."""
    binned.add_target("targets", "a.txt", b"top")
    binned.publish(bump=["targets", "snapshot", "timestamp"])
    walk = DelegationWalk(binned.trusted_set(expired_delegated_ok=True))
    own = f"bins-{path_hash('a.txt')[:2]}"
    assert walk.authority("a.txt", own) is Authority.SHADOWED
    assert walk.authority("a.txt", "targets") is Authority.AUTHORIZED


def test_authority_outside_delegation() -> None:
    """A role listing a target outside its delegated paths is not authorized."""
    repo = Repo()
    repo.delegate("targets", "A", paths=["a/*"])
    repo.add_target("A", "b/evil", b"x")
    repo.publish()
    walk = DelegationWalk(repo.trusted_set())
    walk_all(repo, walk)
    assert walk.authority("b/evil", "A") is Authority.UNREACHABLE


def test_authority_earlier_glob_leaf_shadows() -> None:
    """When two glob-delegated leaves list a path, only the first is authorized."""
    repo = Repo()
    repo.delegate("targets", "A")
    repo.delegate("targets", "B")
    repo.add_target("A", "f", b"a")
    repo.add_target("B", "f", b"b")
    repo.add_target("B", "g", b"b")
    repo.publish()
    walk = DelegationWalk(repo.trusted_set())
    walk_all(repo, walk)
    assert walk.authority("f", "A") is Authority.AUTHORIZED
    assert walk.authority("f", "B") is Authority.SHADOWED
    assert walk.authority("g", "B") is Authority.AUTHORIZED


def test_authority_terminating_cuts_later_roles() -> None:
    """After a matching terminating delegation, later roles are unreachable."""
    repo = Repo()
    repo.delegate("targets", "A", terminating=True)
    repo.delegate("targets", "B")
    repo.add_target("B", "f", b"b")
    repo.publish()
    walk = DelegationWalk(repo.trusted_set())
    walk_all(repo, walk)
    assert walk.authority("f", "B") is Authority.UNREACHABLE


def test_authority_undecided_before_role_is_fed() -> None:
    """A path whose search needs a role not fed yet is undecided."""
    repo = Repo()
    repo.delegate("targets", "A")
    repo.delegate("targets", "B")
    repo.publish()
    walk = DelegationWalk(repo.trusted_set())
    steps = walk.ready()
    walk.feed(steps[1], repo.published["B"])
    assert walk.authority("f", "B") is Authority.UNDECIDED
    walk.feed(steps[0], repo.published["A"])
    assert walk.authority("f", "B") is Authority.AUTHORIZED


def test_authority_missing_role_on_path() -> None:
    """A search passing a role missing from snapshot fails for clients: unreachable."""
    repo = Repo()
    repo.delegate("targets", "A")
    repo.delegate("targets", "B")
    repo.publish()
    del repo.snapshot.signed.meta["A.json"]
    repo.published["snapshot"] = repo.sign("snapshot")
    repo.published["timestamp"] = repo.sign("timestamp")
    walk = DelegationWalk(repo.trusted_set())
    walk_all(repo, walk)
    assert walk.authority("f", "B") is Authority.UNREACHABLE


def test_walk_succinct_bins() -> None:
    """Succinct bins are all requested, as hash-bin (skippable-kind) steps."""
    repo = Repo()
    names = repo.delegate_succinct("targets", bit_length=3)
    repo.publish()
    walk = DelegationWalk(repo.trusted_set())
    steps = walk.ready()
    assert [s.role for s in steps] == names
    assert all(s.hashbin for s in steps)


def test_walk_refuses_huge_succinct_delegation() -> None:
    """A succinct delegation with more bins than the snapshot lists is refused before
    generating names (2**32 bins would never end)."""
    repo = Repo()
    repo.delegate_succinct("targets", bit_length=3)
    assert repo.targets.signed.delegations is not None
    assert repo.targets.signed.delegations.succinct_roles is not None
    repo.targets.signed.delegations.succinct_roles.bit_length = 32
    repo.publish()
    with pytest.raises(DelegationError, match="delegates 4294967296 roles"):
        DelegationWalk(repo.trusted_set())


def test_authority_undecided_with_overlapping_hash_bins() -> None:
    """Overlapping hash prefixes: a bin after another matching (unkept) bin cannot be
    decided without the first bin's list."""
    repo = Repo()
    digest = path_hash("p")
    repo.delegate("targets", "wide", hash_prefixes=[digest[:1]])
    repo.delegate("targets", "narrow", hash_prefixes=[digest[:2]])
    repo.add_target("narrow", "p", b"x")
    repo.publish()
    walk = DelegationWalk(repo.trusted_set())
    walk_all(repo, walk)
    assert walk.authority("p", "wide") is Authority.AUTHORIZED
    assert walk.authority("p", "narrow") is Authority.UNDECIDED
