"""The planner's other pure functions: the snapshot diff (which roles changed), the
target diff (which targets of a role are new or changed), a target's copy and its
names, and the metadata publish order (DESIGN.md invariant 4)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from tuf.api.metadata import MetaFile, TargetFile

from mirror import plan as plan_module
from mirror.plan import (
    MetadataCopy,
    PublishedTargets,
    RoleChange,
    diff_snapshot,
    diff_targets,
    metadata_publish_order,
    role_of_meta_key,
    target_copy,
)

H1 = "1" * 64
H2 = "2" * 64
H512 = "5" * 128


def meta(**versions: int) -> dict[str, MetaFile]:
    """Snapshot meta keyed by ``<role>.json`` (``_`` in a keyword stands for ``-``)."""
    return {
        f"{role.replace('_', '-')}.json": MetaFile(version) for role, version in versions.items()
    }


# -- diff_snapshot -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(
            None,
            meta(targets=1, bins_0=1, bins_1=1),
            [
                RoleChange("targets", None, 1),
                RoleChange("bins-0", None, 1),
                RoleChange("bins-1", None, 1),
            ],
            id="first-sync-changes-every-role",
        ),
        pytest.param(meta(targets=3, bins_0=2), meta(targets=3, bins_0=2), [], id="same-versions"),
        pytest.param(
            meta(targets=3, bins_0=2, bins_1=7),
            meta(targets=4, bins_0=2, bins_1=8),
            [RoleChange("targets", 3, 4), RoleChange("bins-1", 7, 8)],
            id="bumped-roles-only",
        ),
        pytest.param(
            meta(targets=3),
            meta(targets=4, bins_0=1),
            [RoleChange("targets", 3, 4), RoleChange("bins-0", None, 1)],
            id="role-added",
        ),
        pytest.param(
            meta(targets=3, bins_0=1, bins_1=1),
            meta(targets=4, bins_1=1),
            [RoleChange("targets", 3, 4)],
            id="role-removed-not-listed",
        ),
        pytest.param(
            meta(b=1, a=1),
            meta(a=2, b=2),
            [RoleChange("a", 1, 2), RoleChange("b", 1, 2)],
            id="new-snapshot-order",
        ),
        pytest.param(
            meta(targets=5), meta(targets=4), [RoleChange("targets", 5, 4)], id="any-difference"
        ),
        pytest.param({}, {}, [], id="empty"),
    ],
)
def test_diff_snapshot(
    old: Mapping[str, MetaFile] | None, new: Mapping[str, MetaFile], expected: list[RoleChange]
) -> None:
    """The roles whose version differs, in the new snapshot's order, with both
    versions; a first sync changes every role; a dropped role is not listed (the
    trust core refuses that snapshot before planning); rollback is not the diff's
    business (the trust core refuses it too)."""
    assert diff_snapshot(old, new) == expected
    assert [change.is_new for change in diff_snapshot(old, new)] == [
        change.old_version is None for change in expected
    ]


@pytest.mark.parametrize(
    ("key", "role"),
    [
        pytest.param("bins-0a.json", "bins-0a", id="plain"),
        pytest.param("targets.json", "targets", id="targets"),
        pytest.param("a.json.json", "a.json", id="only-last-suffix"),
        pytest.param("a%2Fb.json", "a%2Fb", id="kept-as-is"),
    ],
)
def test_role_of_meta_key(key: str, role: str) -> None:
    """A snapshot meta key names its role without the ``.json`` suffix."""
    assert role_of_meta_key(key) == role


@pytest.mark.parametrize(
    "key", ["bins-0a", "targets.JSON", ""], ids=["no-suffix", "upper", "empty"]
)
def test_role_of_meta_key_refuses_other_keys(key: str) -> None:
    """A key without ``.json`` is refused (ValueError: the trust core validated it)."""
    with pytest.raises(ValueError, match=r"without \.json"):
        role_of_meta_key(key)


# -- diff_targets --------------------------------------------------------------------


def entry(
    path: str, length: int = 5, hashes: Mapping[str, str] | None = None, **custom: object
) -> TargetFile:
    return TargetFile(
        length, dict(hashes or {"sha256": H1}), path, unrecognized_fields=dict(custom)
    )


DIFF_CASES = [
    pytest.param(None, [entry("a"), entry("b")], ["a", "b"], id="no-previous-version"),
    pytest.param([], [entry("a")], ["a"], id="previous-empty"),
    pytest.param([entry("a"), entry("b")], [entry("a"), entry("b")], [], id="unchanged"),
    pytest.param([entry("a")], [entry("a", length=6)], ["a"], id="length"),
    pytest.param([entry("a")], [entry("a", hashes={"sha256": H2})], ["a"], id="hash-value"),
    pytest.param(
        [entry("a")],
        [entry("a", hashes={"sha256": H1, "sha512": H512})],
        ["a"],
        id="hash-added",
    ),
    pytest.param(
        [entry("a", hashes={"sha256": H1, "sha512": H512})],
        [entry("a")],
        ["a"],
        id="hash-dropped",
    ),
    pytest.param([entry("a")], [entry("a", custom="x")], [], id="custom-fields-ignored"),
    pytest.param([entry("a"), entry("b")], [entry("b")], [], id="removed-not-yielded"),
    pytest.param([entry("a")], [entry("c"), entry("a"), entry("b")], ["c", "b"], id="new-order"),
]


@pytest.mark.parametrize(("old", "new", "expected"), DIFF_CASES)
def test_diff_targets(
    old: Sequence[TargetFile] | None, new: Sequence[TargetFile], expected: list[str]
) -> None:
    """New or changed targets, by length and the whole hash dictionary only, in the
    new role's order; unchanged, removed and merely re-annotated targets are not
    fetched again (cost follows the change)."""
    old_map = PublishedTargets.from_targets({t.path: t for t in old}) if old is not None else None
    new_map = {t.path: t for t in new}
    changed = list(diff_targets(old_map, new_map))
    assert [t.path for t in changed] == expected
    assert all(t is new_map[t.path] for t in changed)


@pytest.mark.parametrize(("old", "new", "expected"), DIFF_CASES)
def test_diff_targets_against_decoded_entries(
    old: Sequence[TargetFile] | None, new: Sequence[TargetFile], expected: list[str]
) -> None:
    """The same diff against the published version as the walk reads it: its decoded
    JSON entries (custom fields included), with no ``TargetFile`` per entry."""
    old_entries = (
        PublishedTargets.from_entries(json.loads(json.dumps({t.path: t.to_dict() for t in old})))
        if old is not None
        else None
    )
    new_map = {t.path: t for t in new}
    changed = list(diff_targets(old_entries, new_map))
    assert [t.path for t in changed] == expected
    assert all(t is new_map[t.path] for t in changed)


def _as_target_files(entries: Any) -> dict[str, tuple[int, dict[str, str]]]:
    """The diff base as it was built before ``PublishedTargets``: a python-tuf
    ``TargetFile`` per entry (the reference for what is accepted or refused)."""
    built = {
        path: TargetFile(int(info["length"]), dict(info["hashes"]), path)
        for path, info in entries.items()
    }
    return {path: (target.length, target.hashes) for path, target in built.items()}


def _entries_of(published: PublishedTargets) -> dict[str, tuple[object, object]]:
    return {path: (e["length"], e["hashes"]) for path, e in published.entries.items()}


@pytest.mark.parametrize(
    "entries",
    [
        pytest.param({}, id="empty"),
        pytest.param({"a": {"length": 5, "hashes": {"sha256": H1}}}, id="plain"),
        pytest.param({"a": {"length": 0, "hashes": {"sha256": H1}, "custom": 1}}, id="custom"),
        pytest.param({"a": {"length": 5.0, "hashes": {"sha256": H1}}}, id="float-length"),
        pytest.param({"a": {"length": 5.7, "hashes": {"sha256": H1}}}, id="fraction-length"),
        pytest.param({"a": {"length": True, "hashes": {"sha256": H1}}}, id="bool-length"),
        pytest.param({"a": {"length": "12", "hashes": {"sha256": H1}}}, id="string-length"),
        pytest.param({"a": {"length": 5, "hashes": [["sha256", H1]]}}, id="hash-pairs"),
        pytest.param({"a": {"length": -1, "hashes": {"sha256": H1}}}, id="negative-length"),
        pytest.param({"a": {"length": "x", "hashes": {"sha256": H1}}}, id="length-not-number"),
        pytest.param({"a": {"length": None, "hashes": {"sha256": H1}}}, id="length-null"),
        pytest.param({"a": {"hashes": {"sha256": H1}}}, id="no-length"),
        pytest.param({"a": {"length": 5}}, id="no-hashes"),
        pytest.param({"a": {"length": 5, "hashes": {}}}, id="empty-hashes"),
        pytest.param({"a": {"length": 5, "hashes": {"sha256": 1}}}, id="hash-not-string"),
        pytest.param({"a": {"length": 5, "hashes": "ab"}}, id="hashes-string"),
        pytest.param({"a": {"length": 5, "hashes": [["sha256"]]}}, id="hash-pair-short"),
        pytest.param({"a": {"length": 5, "hashes": [[1, "x"]]}}, id="hash-key-not-string"),
        pytest.param({"a": [5]}, id="entry-list"),
        pytest.param({"a": "entry"}, id="entry-string"),
        pytest.param({"a": None}, id="entry-null"),
        pytest.param([["a", {"length": 5, "hashes": {"sha256": H1}}]], id="targets-list"),
        pytest.param("targets", id="targets-string"),
    ],
)
def test_published_targets_accept_and_refuse_as_python_tuf(entries: Any) -> None:
    """A previous version's entries are taken, normalized, or refused (same exception
    type and message, for the "not diffing against" warning) exactly as building a
    python-tuf ``TargetFile`` per entry takes, normalizes or refuses them."""
    try:
        expected: Any = _as_target_files(entries)
    except Exception as exc:
        expected = (type(exc), str(exc))
    try:
        got: Any = _entries_of(PublishedTargets.from_entries(entries))
    except Exception as exc:
        got = (type(exc), str(exc))
    assert got == expected


def test_plain_entries_build_no_target_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """The usual previous version (integer lengths, string hashes) is used as decoded:
    no python-tuf ``TargetFile`` is built for it; an unusual one (a float length)
    goes through them."""
    built: list[str] = []
    original = plan_module.TargetFile

    def counting(length: int, hashes: dict[str, str], path: str) -> TargetFile:
        built.append(path)
        return original(length, hashes, path)

    monkeypatch.setattr(plan_module, "TargetFile", counting)
    plain = {f"f{i}": {"length": i, "hashes": {"sha256": H1, "sha512": H512}} for i in range(50)}
    PublishedTargets.from_entries(plain)
    assert built == []
    PublishedTargets.from_entries({"f": {"length": 1.0, "hashes": {"sha256": H1}}})
    assert built == ["f"]


# -- target_copy ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "hashes", "consistent", "names"),
    [
        pytest.param("a/b/c.tgz", {"sha256": H1}, False, ("a/b/c.tgz",), id="plain"),
        pytest.param("a/b/c.tgz", {"sha256": H1}, True, (f"a/b/{H1}.c.tgz",), id="hash-prefixed"),
        pytest.param("c.tgz", {"sha256": H1}, True, (f"{H1}.c.tgz",), id="top-level"),
        pytest.param(
            "d/c.tgz",
            {"sha512": H512, "sha256": H1},
            True,
            (f"d/{H1}.c.tgz", f"d/{H512}.c.tgz"),
            id="sorted-by-algorithm",
        ),
        pytest.param(
            "d/c.tgz",
            {"blake2b": H1, "sha256": H1},
            True,
            (f"d/{H1}.c.tgz",),
            id="same-digest-once",
        ),
    ],
)
def test_target_copy(
    path: str, hashes: dict[str, str], consistent: bool, names: tuple[str, ...]
) -> None:
    """A copy carries the path, length, hashes, listing role and every name it is
    published under: one per distinct digest, sorted by algorithm, with
    consistent snapshots; the path itself without."""
    copy = target_copy(TargetFile(7, hashes, path), role="bins-3", consistent_snapshot=consistent)
    assert (copy.path, copy.length, dict(copy.hashes), copy.names, copy.role) == (
        path,
        7,
        hashes,
        names,
        "bins-3",
    )


def test_target_copy_keeps_its_own_hashes() -> None:
    """The copy's hashes are its own dictionary: a later change to the metadata
    object does not change what the copier checks."""
    hashes = {"sha256": H1}
    target = TargetFile(7, hashes, "a")
    copy = target_copy(target, role="targets", consistent_snapshot=True)
    target.hashes["sha256"] = H2
    assert copy.hashes == {"sha256": H1}


# -- metadata_publish_order ----------------------------------------------------------


def changes(*pairs: tuple[str, int]) -> list[RoleChange]:
    return [RoleChange(name, None, version) for name, version in pairs]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param(
            {
                "changed_roles": changes(("targets", 1), ("bins-0", 1), ("bins-1", 1)),
                "snapshot_version": 1,
                "new_root_versions": [1],
                "timestamp_changed": True,
                "consistent_snapshot": True,
            },
            [
                ("1.bins-0.json", "bins-0", 1),
                ("1.bins-1.json", "bins-1", 1),
                ("1.targets.json", "targets", 1),
                ("1.snapshot.json", "snapshot", 1),
                ("1.root.json", "root", 1),
                ("timestamp.json", "timestamp", None),
            ],
            id="first-sync-consistent",
        ),
        pytest.param(
            {
                "changed_roles": changes(("targets", 4), ("bins-1", 9)),
                "snapshot_version": 12,
                "new_root_versions": [],
                "timestamp_changed": True,
                "consistent_snapshot": False,
            },
            [
                ("bins-1.json", "bins-1", 9),
                ("targets.json", "targets", 4),
                ("snapshot.json", "snapshot", 12),
                ("timestamp.json", "timestamp", None),
            ],
            id="plain-names-without-consistent-snapshot",
        ),
        pytest.param(
            {
                "changed_roles": changes(("a/b", 2), ("targets", 3)),
                "snapshot_version": 5,
                "new_root_versions": [],
                "timestamp_changed": True,
                "consistent_snapshot": True,
            },
            [
                ("2.a%2Fb.json", "a/b", 2),
                ("3.targets.json", "targets", 3),
                ("5.snapshot.json", "snapshot", 5),
                ("timestamp.json", "timestamp", None),
            ],
            id="role-name-percent-encoded",
        ),
        pytest.param(
            {
                "changed_roles": changes(("bins-1", 3)),
                "snapshot_version": 8,
                "new_root_versions": [2, 3],
                "timestamp_changed": True,
                "consistent_snapshot": True,
            },
            [
                ("3.bins-1.json", "bins-1", 3),
                ("8.snapshot.json", "snapshot", 8),
                ("2.root.json", "root", 2),
                ("3.root.json", "root", 3),
                ("timestamp.json", "timestamp", None),
            ],
            id="delegated-only-and-root-rotation",
        ),
        pytest.param(
            {
                "changed_roles": [],
                "snapshot_version": None,
                "new_root_versions": [2],
                "timestamp_changed": False,
                "consistent_snapshot": True,
            },
            [("2.root.json", "root", 2)],
            id="only-a-new-root",
        ),
        pytest.param(
            {
                "changed_roles": [],
                "snapshot_version": None,
                "new_root_versions": [],
                "timestamp_changed": True,
                "consistent_snapshot": True,
            },
            [("timestamp.json", "timestamp", None)],
            id="only-the-timestamp",
        ),
        pytest.param(
            {
                "changed_roles": [],
                "snapshot_version": None,
                "new_root_versions": [],
                "timestamp_changed": False,
                "consistent_snapshot": True,
            },
            [],
            id="nothing",
        ),
        pytest.param(
            {
                "changed_roles": changes(("targets", 2)),
                "snapshot_version": 2,
                "new_root_versions": [1, 2],
                "timestamp_changed": True,
                "consistent_snapshot": True,
                "unversioned_root": True,
            },
            [
                ("2.targets.json", "targets", 2),
                ("2.snapshot.json", "snapshot", 2),
                ("1.root.json", "root", 1),
                ("2.root.json", "root", 2),
                ("root.json", "root", 2),
                ("timestamp.json", "timestamp", None),
            ],
            id="unversioned-root-after-the-newest-root",
        ),
        pytest.param(
            {
                "changed_roles": [],
                "snapshot_version": None,
                "new_root_versions": [],
                "timestamp_changed": True,
                "consistent_snapshot": True,
                "unversioned_root": True,
            },
            [("timestamp.json", "timestamp", None)],
            id="no-unversioned-root-without-a-new-root",
        ),
    ],
)
def test_metadata_publish_order(
    kwargs: dict[str, Any], expected: list[tuple[str, str, int | None]]
) -> None:
    """Invariant 4: delegated roles, then targets, then the snapshot, then new roots
    (oldest first; an upstream's own ``root.json`` after them), ``timestamp.json``
    last; versioned names with consistent snapshots (roots always versioned)."""
    order = metadata_publish_order(**kwargs)
    assert order == [MetadataCopy(name, role, version) for name, role, version in expected]
    names = [copy.name for copy in order]
    if "timestamp.json" in names:
        assert names[-1] == "timestamp.json"
