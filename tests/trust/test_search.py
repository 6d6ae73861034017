"""Target search through delegations (spec §5.6.7): order, paths, terminating,
hash prefixes, succinct bins, cycles, diamonds, missing roles."""

from __future__ import annotations

import pytest
from tuf.api.metadata import DelegatedRole, Delegations

from mirror.errors import DelegationError, SignatureError
from mirror.trust import (
    DelegationMatcher,
    Limits,
    TargetSearch,
    TrustedSet,
    path_hash,
    path_matches_pattern,
    search_order,
)

from ._repo import Repo, new_signer


def run(repo: Repo, trusted: TrustedSet, path: str) -> tuple[str | None, list[str]]:
    """Search ``path`` feeding published bytes; returns (listing role, fetched roles)."""
    search = TargetSearch(trusted, path)
    fetched: list[str] = []
    while (step := search.next_role()) is not None:
        fetched.append(step.role)
        search.feed(repo.published[step.role])
    return (search.result.role if search.result else None), fetched


@pytest.mark.parametrize(
    ("path", "pattern", "expected"),
    [
        ("a.py", "*.py", True),
        ("dir/a.py", "*.py", False),
        ("dir/a.py", "*/*.py", True),
        ("dir/sub/a.py", "dir/*", False),
        ("dir/a", "dir/?", True),
        ("dir/ab", "dir/?", False),
        ("A.py", "*.py", True),
        ("a.PY", "*.py", False),
        ("releases/x/x_v1", "releases/*/*", True),
        ("releases/y/y_v1.zip", "releases/y/*.zip", True),
        ("b", "[abc]", True),
        ("d", "[abc]", False),
        ("x/y", "x*y", False),
        ("x/y", "*", False),
        ("targetfile", "*", True),
    ],
)
def test_path_patterns(path: str, pattern: str, expected: bool) -> None:
    """Globs match per '/' segment: '*' and '?' never cross '/', case-sensitive."""
    assert path_matches_pattern(path, pattern) is expected


# Expected visit orders for a search of a path no role lists (facts from the
# conformance suite's delegation graph cases).
GRAPHS: dict[str, tuple[list[tuple[str, str, dict[str, object]]], list[str]]] = {
    "basic": ([("targets", "A", {})], ["A"]),
    "single-level": ([("targets", "A", {}), ("targets", "B", {})], ["A", "B"]),
    "two-level": (
        [("targets", "A", {}), ("targets", "B", {}), ("B", "C", {})],
        ["A", "B", "C"],
    ),
    "dfs-order": (
        [("targets", "A", {}), ("targets", "B", {}), ("A", "C", {}), ("A", "D", {})],
        ["A", "C", "D", "B"],
    ),
    "three-level-dfs": (
        [("targets", "A", {}), ("targets", "B", {}), ("A", "C", {}), ("C", "D", {})],
        ["A", "C", "D", "B"],
    ),
    "terminating-two-level": (
        [
            ("targets", "A", {}),
            ("targets", "B", {}),
            ("A", "C", {"terminating": True}),
            ("A", "D", {}),
        ],
        ["A", "C"],
    ),
    "terminating-three-level": (
        [
            ("targets", "A", {}),
            ("targets", "B", {}),
            ("A", "C", {"terminating": True}),
            ("C", "D", {}),
        ],
        ["A", "C", "D"],
    ),
    "paths-not-matching": (
        [("targets", "A", {"paths": ["*.py"]}), ("targets", "B", {}), ("A", "C", {})],
        ["B"],
    ),
    "paths-not-matching-deeper": (
        [
            ("targets", "A", {}),
            ("targets", "B", {}),
            ("A", "C", {"paths": ["*.py"]}),
            ("C", "D", {}),
        ],
        ["A", "B"],
    ),
    "cycle": (
        [
            ("targets", "A", {}),
            ("targets", "B", {}),
            ("B", "C", {}),
            ("C", "D", {}),
            ("D", "B", {}),
        ],
        ["A", "B", "C", "D"],
    ),
    "diamond": (
        [("targets", "A", {}), ("targets", "B", {}), ("B", "C", {}), ("A", "C", {})],
        ["A", "C", "B"],
    ),
    "diamond-different-paths": (
        [
            ("targets", "A", {}),
            ("targets", "B", {}),
            ("B", "C", {}),
            ("A", "C", {"paths": ["*.py"]}),
        ],
        ["A", "B", "C"],
    ),
}


@pytest.mark.parametrize("name", list(GRAPHS))
def test_visit_order(name: str) -> None:
    """Pre-order DFS in delegation order, each role once, terminating and paths
    honoured; a role reached again (cycle, diamond) is not fetched again."""
    edges, expected = GRAPHS[name]
    repo = Repo()
    for delegator, role, options in edges:
        repo.delegate(delegator, role, **options)  # type: ignore[arg-type]
    repo.publish()
    found, fetched = run(repo, repo.trusted_set(), "missingpath")
    assert found is None
    assert fetched == expected


def _tree() -> Repo:
    repo = Repo()
    repo.delegate("targets", "A", paths=["*.doc", "*.md"])
    repo.delegate("targets", "B", paths=["releases/*/*"])
    repo.delegate("B", "C", paths=["releases/x/*"])
    repo.delegate("B", "D", paths=["releases/y/*.zip"])
    repo.add_target("targets", "targetfile", b"targetfile content")
    repo.add_target("A", "README.md", b"README by A")
    repo.add_target("C", "releases/x/x_v1", b"x release by C")
    repo.add_target("D", "releases/y/y_v1.zip", b"y release by D")
    repo.add_target("D", "releases/z/z_v1.zip", b"z release by D")
    repo.publish()
    return repo


@pytest.mark.parametrize(
    ("path", "role", "fetched"),
    [
        ("targetfile", "targets", []),
        ("README.md", "A", ["A"]),
        ("releases/x/x_v1", "C", ["B", "C"]),
        ("releases/y/y_v1.zip", "D", ["B", "D"]),
        ("releases/z/z_v1.zip", None, ["B"]),
    ],
)
def test_target_search(path: str, role: str | None, fetched: list[str]) -> None:
    """Targets are found in the role the search reaches; a target listed by a role
    whose delegation does not cover it (D lists releases/z) is not found."""
    repo = _tree()
    assert run(repo, repo.trusted_set(), path) == (role, fetched)


def test_search_result_holds_target_and_stops() -> None:
    """The result names the listing role and its TargetFile; no further roles."""
    repo = _tree()
    search = TargetSearch(repo.trusted_set(), "targetfile")
    assert search.next_role() is None
    assert search.result is not None
    assert search.result.target.length == len(b"targetfile content")
    assert search.result.role == "targets"


def test_first_listing_role_wins() -> None:
    """When two roles list a path, the one visited first is used."""
    repo = Repo()
    repo.delegate("targets", "A")
    repo.delegate("targets", "B")
    repo.add_target("A", "f", b"from A")
    repo.add_target("B", "f", b"from B")
    repo.publish()
    assert run(repo, repo.trusted_set(), "f") == ("A", ["A"])


def test_terminating_found_inside_subtree() -> None:
    """A terminating role's own delegations are still searched."""
    repo = Repo()
    repo.delegate("targets", "A", terminating=True)
    repo.delegate("targets", "B")
    repo.delegate("A", "C")
    repo.add_target("C", "f", b"c")
    repo.add_target("B", "f", b"b")
    repo.publish()
    assert run(repo, repo.trusted_set(), "f") == ("C", ["A", "C"])


def test_hash_prefix_delegation() -> None:
    """path_hash_prefixes delegate by the hex SHA-256 of the path."""
    repo = Repo()
    digest = path_hash("some/file")
    repo.delegate("targets", "other", hash_prefixes=[_other_prefix(digest[0])])
    repo.delegate("targets", "bin", hash_prefixes=[digest[:2]])
    repo.add_target("bin", "some/file", b"x")
    repo.publish()
    assert run(repo, repo.trusted_set(), "some/file") == ("bin", ["bin"])


def _other_prefix(first: str) -> str:
    return "0" if first != "0" else "1"


def test_succinct_bins() -> None:
    """TAP 15 succinct roles: exactly the one bin for the path is fetched."""
    repo = Repo()
    names = repo.delegate_succinct("targets", bit_length=4)
    assert len(names) == 16
    path = "pkg/file.tar.gz"
    bin_name = f"bin-{int(path_hash(path)[0], 16):x}"
    repo.add_target(bin_name, path, b"content")
    repo.publish()
    assert run(repo, repo.trusted_set(), path) == (bin_name, [bin_name])


def test_succinct_bin_is_terminating() -> None:
    """A path missing from its bin is not searched elsewhere."""
    repo = Repo()
    repo.delegate_succinct("targets", bit_length=1)
    repo.publish()
    found, fetched = run(repo, repo.trusted_set(), "nothing")
    assert found is None
    assert len(fetched) == 1


def test_missing_role_raises_before_fetch() -> None:
    """A delegated role the snapshot does not list is an error, and not fetched."""
    repo = Repo()
    repo.delegate("targets", "A")
    repo.publish()
    del repo.snapshot.signed.meta["A.json"]
    repo.published["snapshot"] = repo.sign("snapshot")
    repo.published["timestamp"] = repo.sign("timestamp")
    search = TargetSearch(repo.trusted_set(), "x")
    with pytest.raises(DelegationError, match="not listed in snapshot"):
        search.next_role()


def test_diamond_with_different_keys_verifies_per_path() -> None:
    """C is delegated by A and B with different keys; C is signed only by B's key for
    it. Reached through A (first), verification with A's keys fails; a search for a
    path only B delegates reaches C through B and succeeds."""
    repo = Repo()
    key_a, key_b = new_signer(), new_signer()
    repo.delegate("targets", "A", paths=["*", "*/*"])
    repo.delegate("targets", "B", paths=["*", "*/*"])
    repo.delegate("A", "C", paths=["a/*"], signers=[key_a])
    repo.delegate("B", "C", paths=["*"], signers=[key_b])
    repo.signers["C"] = [key_b]
    repo.add_target("C", "a/f", b"x")
    repo.add_target("C", "f", b"y")
    repo.publish()
    trusted = repo.trusted_set()
    assert run(repo, trusted, "f") == ("C", ["A", "B", "C"])
    with pytest.raises(SignatureError, match=r"C v1: 0 valid .* delegator A"):
        run(repo, trusted, "a/f")


def test_visit_cap_stops_search() -> None:
    """The visit cap ends a search without finding the target."""
    repo = Repo()
    for name in "ABCD":
        repo.delegate("targets", name)
    repo.add_target("D", "f", b"x")
    repo.publish()
    trusted = repo.trusted_set(limits=Limits(max_delegation_visits=3))
    search = TargetSearch(trusted, "f")
    fetched = []
    while (step := search.next_role()) is not None:
        fetched.append(step.role)
        search.feed(repo.published[step.role])
    assert fetched == ["A", "B"]
    assert search.result is None
    assert search.capped


def test_failed_feed_can_be_retried() -> None:
    """After a verification failure the same role can be fed other bytes."""
    repo = Repo()
    repo.delegate("targets", "A")
    repo.add_target("A", "f", b"x")
    repo.publish()
    search = TargetSearch(repo.trusted_set(), "f")
    assert search.next_role() == ("A", "targets")
    with pytest.raises(SignatureError):
        search.feed(repo.published["targets"].replace(b'"targets"', b'"targets"'))
    search.feed(repo.published["A"])
    assert search.result is not None


def test_feed_without_step_is_a_caller_bug() -> None:
    """feed() before next_role() is a RuntimeError."""
    repo = Repo()
    repo.delegate("targets", "A")
    repo.publish()
    search = TargetSearch(repo.trusted_set(), "x")
    with pytest.raises(RuntimeError):
        search.feed(repo.published["A"])


def test_search_order_generator() -> None:
    """search_order yields roles in visit order from delegation data alone."""
    key = new_signer().public_key
    delegations = {
        "targets": Delegations(
            {key.keyid: key},
            {
                "A": DelegatedRole("A", [key.keyid], 1, False, ["*"]),
                "B": DelegatedRole("B", [key.keyid], 1, True, ["x*"]),
                "C": DelegatedRole("C", [key.keyid], 1, False, ["*"]),
            },
        ),
        "A": Delegations({key.keyid: key}, {"D": DelegatedRole("D", [key.keyid], 1, False, ["*"])}),
    }
    order = [s.role for s in search_order("xy", delegations.get, max_visits=10)]
    assert order == ["targets", "A", "D", "B"]
    order = [s.role for s in search_order("zz", delegations.get, max_visits=10)]
    assert order == ["targets", "A", "D", "C"]


def test_matcher_indexes_hash_prefixes_in_order() -> None:
    """The matcher returns hash-prefix and glob roles in delegation order."""
    key = new_signer().public_key
    digest = path_hash("p")
    roles = {
        "glob": DelegatedRole("glob", [key.keyid], 1, False, ["p"]),
        "short": DelegatedRole("short", [key.keyid], 1, False, None, [digest[:1]]),
        "miss": DelegatedRole("miss", [key.keyid], 1, False, None, [_other_prefix(digest[0])]),
        "long": DelegatedRole("long", [key.keyid], 1, True, None, [digest[:3], digest[:1]]),
    }
    matcher = DelegationMatcher(Delegations({key.keyid: key}, roles))
    assert matcher.matching("p") == [("glob", False), ("short", False), ("long", True)]
    assert matcher.hashbin == frozenset({"short", "miss", "long"})
