"""Tests of tuf_mirror_testing.repo: the TUF repository generator used by the other tests."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import (  # type: ignore[attr-defined]  # public, no __all__
    DelegatedRole,
    Metadata,
    Root,
    Snapshot,
    Targets,
    Timestamp,
)

from tuf_mirror_testing.repo import (
    Repository,
    generate_bins_repository,
    generate_signer,
    metadata_file_name,
    tamper_published,
    target_file_names,
)
from tuf_mirror_testing.server import serve_directory

EXPIRES = datetime(2030, 1, 1, tzinfo=UTC)


def files_under(directory: Path) -> set[str]:
    return {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}


def load(directory: Path, relpath: str) -> Metadata[Any]:
    return Metadata.from_bytes((directory / "metadata" / relpath).read_bytes())


def verify_published(directory: Path) -> None:
    """Check a consistent-snapshot publication from its latest root down: signatures,
    versions, snapshot/timestamp meta and every listed target's bytes."""
    root: Metadata[Root] = load(directory, "root.json")
    for version in range(1, root.signed.version + 1):
        older = load(directory, f"{version}.root.json")
        assert older.signed.version == version
    timestamp_bytes = (directory / "metadata" / "timestamp.json").read_bytes()
    timestamp: Metadata[Timestamp] = Metadata.from_bytes(timestamp_bytes)
    root.signed.verify_delegate("timestamp", timestamp.signed_bytes, timestamp.signatures)
    snapshot_meta = timestamp.signed.snapshot_meta
    snapshot_bytes = (
        directory / "metadata" / f"{snapshot_meta.version}.snapshot.json"
    ).read_bytes()
    snapshot_meta.verify_length_and_hashes(snapshot_bytes)
    snapshot: Metadata[Snapshot] = Metadata.from_bytes(snapshot_bytes)
    root.signed.verify_delegate("snapshot", snapshot.signed_bytes, snapshot.signatures)
    roles: dict[str, Metadata[Targets]] = {}
    for name, meta in snapshot.signed.meta.items():
        role = name.removesuffix(".json")
        data = (directory / "metadata" / metadata_file_name(role, meta.version)).read_bytes()
        meta.verify_length_and_hashes(data)
        roles[role] = Metadata.from_bytes(data)
        assert roles[role].signed.version == meta.version
    targets = roles["targets"]
    root.signed.verify_delegate("targets", targets.signed_bytes, targets.signatures)
    for name, metadata in roles.items():
        delegations = metadata.signed.delegations
        if delegations is None:
            continue
        if delegations.roles is not None:
            children = list(delegations.roles)
        else:
            assert delegations.succinct_roles is not None
            children = list(delegations.succinct_roles.get_roles())
        for child in children:
            delegated = roles[child]
            metadata.signed.verify_delegate(child, delegated.signed_bytes, delegated.signatures)
        assert name in roles
    for metadata in roles.values():
        for path, target in metadata.signed.targets.items():
            for relpath in target_file_names(path, target.hashes):
                target.verify_length_and_hashes((directory / "targets" / relpath).read_bytes())


@pytest.fixture
def repo() -> Repository:
    return Repository(expires=EXPIRES)


def test_first_publish_layout(repo: Repository, tmp_path: Path) -> None:
    """The first publication has version 1 of everything under the published names:
    percent-encoded role names, one content-addressed copy per listed hash."""
    repo = Repository(expires=EXPIRES, hash_algorithms=("sha256", "sha512"))
    repo.add_delegation("targets", "../x?", paths=["dir/*"])
    repo.add_target("dir/file.txt", b"data", role="../x?")
    repo.add_target("top.txt", b"top")
    written = repo.publish(tmp_path)
    sha256 = hashlib.sha256(b"data").hexdigest()
    sha512 = hashlib.sha512(b"data").hexdigest()
    top256 = hashlib.sha256(b"top").hexdigest()
    top512 = hashlib.sha512(b"top").hexdigest()
    expected = {
        "metadata/1.root.json",
        "metadata/root.json",
        "metadata/timestamp.json",
        "metadata/1.snapshot.json",
        "metadata/1.targets.json",
        f"metadata/1.{quote('../x?', safe='')}.json",
        f"targets/dir/{sha256}.file.txt",
        f"targets/dir/{sha512}.file.txt",
        f"targets/{top256}.top.txt",
        f"targets/{top512}.top.txt",
    }
    assert files_under(tmp_path) == expected
    assert "metadata/1...%2Fx%3F.json" in expected
    assert set(written) == expected
    assert written[-1] == "metadata/timestamp.json"
    assert written.index("metadata/1.snapshot.json") > written.index("metadata/1.targets.json")
    verify_published(tmp_path)


def test_published_metadata_parses_and_verifies(repo: Repository, tmp_path: Path) -> None:
    """Every role parses with tuf.api.metadata, has the right type and version, and
    is signed by the keys its delegator lists; timestamp lists snapshot's hashes."""
    repo.add_delegation("targets", "a", paths=["a/*"], threshold=2, key_count=3)
    repo.add_delegation("a", "b", paths=["a/b*"], terminating=True)
    repo.add_target("a/b1", b"1", role="b")
    repo.publish(tmp_path)
    verify_published(tmp_path)
    root: Metadata[Root] = load(tmp_path, "1.root.json")
    root.signed.verify_delegate("root", root.signed_bytes, root.signatures)
    assert root.signed.consistent_snapshot is True
    assert root.signed.expires == EXPIRES
    timestamp: Metadata[Timestamp] = load(tmp_path, "timestamp.json")
    assert timestamp.signed.type == "timestamp"
    assert set(timestamp.signed.snapshot_meta.hashes or {}) == {"sha256"}
    a: Metadata[Targets] = load(tmp_path, "1.a.json")
    assert a.signed.delegations is not None
    assert a.signed.delegations.roles is not None
    delegated = a.signed.delegations.roles["b"]
    assert (delegated.terminating, delegated.paths) == (True, ["a/b*"])
    assert len(a.signatures) == 3
    assert (tmp_path / "metadata" / "root.json").read_bytes() == repo.root_bytes(1)


def test_signature_threshold_is_enforced_by_tuf(repo: Repository, tmp_path: Path) -> None:
    """A role signed with a wrong key does not verify against its delegator."""
    repo.sign_next_commit_with("targets", [generate_signer()])
    repo.publish(tmp_path)
    root: Metadata[Root] = load(tmp_path, "root.json")
    targets: Metadata[Targets] = load(tmp_path, "1.targets.json")
    with pytest.raises(UnsignedMetadataError):
        root.signed.verify_delegate("targets", targets.signed_bytes, targets.signatures)
    repo.mark_changed("targets")
    repo.publish(tmp_path)
    verify_published(tmp_path)


def test_without_consistent_snapshot(tmp_path: Path) -> None:
    """Without consistent snapshots roles and targets are published unversioned (root
    stays versioned) and rewritten in place."""
    repo = Repository(consistent_snapshot=False, expires=EXPIRES)
    repo.add_delegation("targets", "role", paths=["d/*"])
    repo.add_target("d/t.txt", b"v1", role="role")
    repo.publish(tmp_path)
    assert files_under(tmp_path) == {
        "metadata/1.root.json",
        "metadata/root.json",
        "metadata/timestamp.json",
        "metadata/snapshot.json",
        "metadata/targets.json",
        "metadata/role.json",
        "targets/d/t.txt",
    }
    repo.add_target("d/t.txt", b"v2", role="role")
    written = repo.publish(tmp_path)
    assert written == [
        "targets/d/t.txt",
        "metadata/role.json",
        "metadata/snapshot.json",
        "metadata/timestamp.json",
    ]
    assert (tmp_path / "targets" / "d" / "t.txt").read_bytes() == b"v2"
    assert load(tmp_path, "role.json").signed.version == 2


def test_incremental_publish_writes_only_new_versions(repo: Repository, tmp_path: Path) -> None:
    """After one change, publishing writes the new target, the new version of the
    role that lists it, snapshot and timestamp; old versions stay; an unchanged
    repository publishes nothing."""
    repo.add_delegation("targets", "role", paths=["*"])
    repo.add_target("one", b"1", role="role")
    repo.publish(tmp_path)
    before = {p: (tmp_path / p).read_bytes() for p in files_under(tmp_path)}
    repo.add_target("two", b"2", role="role")
    written = repo.publish(tmp_path)
    assert written == [
        f"targets/{hashlib.sha256(b'2').hexdigest()}.two",
        "metadata/2.role.json",
        "metadata/2.snapshot.json",
        "metadata/timestamp.json",
    ]
    for relpath, data in before.items():
        if relpath != "metadata/timestamp.json":
            assert (tmp_path / relpath).read_bytes() == data
    snapshot: Metadata[Snapshot] = load(tmp_path, "2.snapshot.json")
    assert {k: v.version for k, v in snapshot.signed.meta.items()} == {
        "targets.json": 1,
        "role.json": 2,
    }
    assert repo.publish(tmp_path) == []
    verify_published(tmp_path)


def test_commit_without_changes_bumps_only_timestamp(repo: Repository, tmp_path: Path) -> None:
    """An explicit commit with nothing changed publishes a new timestamp only."""
    repo.publish(tmp_path)
    assert repo.commit() == ["timestamp"]
    assert repo.publish(tmp_path) == ["metadata/timestamp.json"]
    assert load(tmp_path, "timestamp.json").signed.version == 2
    assert load(tmp_path, "timestamp.json").signed.snapshot_meta.version == 1


@pytest.mark.parametrize("succinct", [False, True])
def test_hash_bins_route_targets_by_path_hash(tmp_path: Path, succinct: bool) -> None:
    """Each target lands in the bin its path's sha256 selects, which the delegation
    (path_hash_prefixes or SuccinctRoles) authorises, and in no other."""
    repo = Repository(expires=EXPIRES)
    bins = repo.add_hash_bins(32, succinct=succinct)
    assert len(bins.names()) == 32
    assert bins.names()[10] == "bins-0a"
    paths = [f"pkg/file-{i}.txt" for i in range(200)]
    for path in paths:
        repo.add_target(path, path.encode())
    repo.publish(tmp_path)
    verify_published(tmp_path)
    snapshot: Metadata[Snapshot] = load(tmp_path, "1.snapshot.json")
    assert len(snapshot.signed.meta) == 33
    targets: Metadata[Targets] = load(tmp_path, "1.targets.json")
    delegations = targets.signed.delegations
    assert delegations is not None
    for path in paths:
        name = bins.bin_for(path)
        listed: Metadata[Targets] = load(tmp_path, f"1.{name}.json")
        assert path in listed.signed.targets
        if succinct:
            assert delegations.succinct_roles is not None
            assert delegations.succinct_roles.get_role_for_target(path) == name
        else:
            assert delegations.roles is not None
            role: DelegatedRole = delegations.roles[name]
            assert role.is_delegated_path(path)
            digest = hashlib.sha256(path.encode()).hexdigest()
            assert any(digest.startswith(p) for p in role.path_hash_prefixes or [])
            others = [r for r in delegations.roles.values() if r.is_delegated_path(path)]
            assert others == [role]
    assert sum(len(load(tmp_path, f"1.{n}.json").signed.targets) for n in bins.names()) == 200


def test_hash_bin_prefixes_cover_all_prefixes_once() -> None:
    """Non-succinct bins split the hex prefix space evenly, without overlap."""
    repo = Repository(expires=EXPIRES)
    bins = repo.add_hash_bins(1024)
    prefixes = [p for i in range(1024) for p in bins.path_hash_prefixes(i)]
    assert prefixes == [f"{i:03x}" for i in range(4096)]
    assert bins.bit_length == 10


def test_root_rotation_signed_by_old_and_new_keys(repo: Repository, tmp_path: Path) -> None:
    """Rotating root keys yields root v2 that verifies with v1's root keys and its
    own; rotating timestamp's keys makes new timestamps verify only with the new root."""
    repo.publish(tmp_path)
    repo.rotate_keys("root", key_count=2, threshold=2)
    repo.rotate_keys("timestamp")
    written = repo.publish(tmp_path)
    assert "metadata/2.root.json" in written
    v1: Metadata[Root] = load(tmp_path, "1.root.json")
    v2: Metadata[Root] = load(tmp_path, "2.root.json")
    v1.signed.verify_delegate("root", v2.signed_bytes, v2.signatures)
    v2.signed.verify_delegate("root", v2.signed_bytes, v2.signatures)
    assert len(v2.signatures) == 3
    assert not set(v1.signed.roles["root"].keyids) & set(v2.signed.roles["root"].keyids)
    timestamp: Metadata[Timestamp] = load(tmp_path, "timestamp.json")
    v2.signed.verify_delegate("timestamp", timestamp.signed_bytes, timestamp.signatures)
    with pytest.raises(UnsignedMetadataError):
        v1.signed.verify_delegate("timestamp", timestamp.signed_bytes, timestamp.signatures)
    repo.bump_root()
    repo.publish(tmp_path)
    v3: Metadata[Root] = load(tmp_path, "3.root.json")
    assert len(v3.signatures) == 2
    assert repo.root_bytes() == (tmp_path / "metadata" / "root.json").read_bytes()
    verify_published(tmp_path)


def test_delegated_and_bin_key_rotation(tmp_path: Path) -> None:
    """Rotating a delegated role's keys (or the bins' shared key) re-signs the
    delegator and the role(s) with the new keys."""
    repo = Repository(expires=EXPIRES)
    bins = repo.add_hash_bins(4, succinct=True)
    repo.publish(tmp_path)
    repo.rotate_keys(bins.name(2))
    written = repo.publish(tmp_path)
    assert {"metadata/2.targets.json", "metadata/2.bins-0.json"} <= set(written)
    verify_published(tmp_path)

    other = Repository(expires=EXPIRES)
    other.add_delegation("targets", "role", paths=["*"])
    other.publish(tmp_path / "other")
    other.rotate_keys("role")
    other.publish(tmp_path / "other")
    verify_published(tmp_path / "other")
    old_targets: Metadata[Targets] = load(tmp_path / "other", "1.targets.json")
    new_role: Metadata[Targets] = load(tmp_path / "other", "2.role.json")
    with pytest.raises(UnsignedMetadataError):
        old_targets.signed.verify_delegate("role", new_role.signed_bytes, new_role.signatures)


def test_expiry_and_forged_variants(repo: Repository, tmp_path: Path) -> None:
    """set_expiry changes one role's expiry; forge() signs a modified copy (e.g. a
    rollback) with the role's keys or others, leaving the repository unchanged."""
    past = datetime(2001, 1, 1, tzinfo=UTC)
    repo.set_expiry("snapshot", past)
    repo.publish(tmp_path)
    assert load(tmp_path, "1.snapshot.json").signed.is_expired(datetime(2020, 1, 1, tzinfo=UTC))
    assert not load(tmp_path, "1.targets.json").signed.is_expired(datetime(2020, 1, 1, tzinfo=UTC))

    def to_version_7(metadata: Metadata[Any]) -> None:
        metadata.signed.version = 7

    forged = Metadata.from_bytes(repo.forge("timestamp", to_version_7))
    assert forged.signed.version == 7
    root: Metadata[Root] = Metadata.from_bytes(repo.root_bytes())
    root.signed.verify_delegate("timestamp", forged.signed_bytes, forged.signatures)
    assert repo.version("timestamp") == 1
    wrong = Metadata.from_bytes(repo.forge("timestamp", signers=[generate_signer("ecdsa")]))
    with pytest.raises(UnsignedMetadataError):
        root.signed.verify_delegate("timestamp", wrong.signed_bytes, wrong.signatures)


def test_tamper_published(repo: Repository, tmp_path: Path) -> None:
    """tamper_published rewrites one published file through a function."""
    repo.publish(tmp_path)
    new = tamper_published(tmp_path, "metadata/1.targets.json", lambda b: b.replace(b"1", b"2"))
    assert (tmp_path / "metadata" / "1.targets.json").read_bytes() == new
    assert new != repo.metadata_bytes("targets", 1)


def test_bytes_accessors(repo: Repository, tmp_path: Path) -> None:
    """metadata_files/target_files give the bytes of exactly what publish writes."""
    repo.add_target("t", b"content")
    repo.publish(tmp_path)
    published = {p: (tmp_path / p).read_bytes() for p in files_under(tmp_path)}
    assert {**repo.metadata_files(), **repo.target_files()} == published
    assert repo.target_data("t") == b"content"
    assert json.loads(repo.metadata_bytes("targets"))["signed"]["targets"]["t"]["length"] == 7


@pytest.mark.parametrize("key_type", ["ecdsa", "rsa"])
def test_other_key_types(tmp_path: Path, key_type: Any) -> None:
    """ecdsa (P-256) and rsassa-pss keys sign verifiable metadata."""
    repo = Repository(key_type=key_type, expires=EXPIRES)
    repo.publish(tmp_path)
    verify_published(tmp_path)
    root: Metadata[Root] = load(tmp_path, "root.json")
    schemes = {key.scheme for key in root.signed.keys.values()}
    assert schemes == {"ecdsa-sha2-nistp256" if key_type == "ecdsa" else "rsassa-pss-sha256"}


def test_generate_bins_repository_is_deterministic(tmp_path: Path) -> None:
    """The bench/demo generator publishes a verifiable bins repository whose target
    names and contents depend only on the seed."""
    first = generate_bins_repository(tmp_path / "a", bins=8, targets=30, size=64, seed=5)
    generate_bins_repository(tmp_path / "b", bins=8, targets=30, size=64, seed=5)
    verify_published(tmp_path / "a")
    targets_a = files_under(tmp_path / "a" / "targets")
    assert len(targets_a) == 30
    assert targets_a == files_under(tmp_path / "b" / "targets")
    assert first.target_data("files/0000/file-0000007.bin") != first.target_data(
        "files/0000/file-0000008.bin"
    )
    other = generate_bins_repository(tmp_path / "c", bins=8, targets=30, size=64, seed=6)
    assert other.target_data("files/0000/file-0000007.bin") != first.target_data(
        "files/0000/file-0000007.bin"
    )


def test_served_repository(repo: Repository, tmp_path: Path) -> None:
    """A published repository served by the test server gives back the signed bytes."""
    repo.publish(tmp_path)
    with serve_directory(tmp_path) as server:
        response = httpx.get(f"{server.url}/metadata/1.root.json")
    assert response.content == repo.root_bytes(1)
