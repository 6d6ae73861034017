"""Targets and delegated targets roles (spec §5.6): hashes/length from snapshot,
signatures by the delegator's keys, version, expiry, recovery, names."""

from __future__ import annotations

import pytest

from mirror.errors import (
    BadVersionError,
    DelegationError,
    ExpiredMetadataError,
    LengthOrHashMismatchError,
    MalformedMetadataError,
    OversizeError,
    SignatureError,
    UnsafeNameError,
)
from mirror.trust import Limits

from ._repo import PAST, Repo, new_signer, raw_sign


def test_targets_accepted_exact_bytes() -> None:
    """Top-level targets verified by root's targets keys, bytes kept."""
    repo = Repo(hashes_in_meta=True)
    out = repo.publish()
    trusted = repo.trusted_set(through="snapshot")
    verified = trusted.update_targets(out["targets"])
    assert verified.raw == out["targets"]
    assert trusted.targets is verified


def test_targets_hash_mismatch() -> None:
    """Targets bytes not matching snapshot's hash are refused."""
    repo = Repo(hashes_in_meta=True)
    out = repo.publish()
    trusted = repo.trusted_set(through="snapshot")
    other = out["targets"].replace(b'"version":1', b'"version":2')  # same length
    with pytest.raises(LengthOrHashMismatchError):
        trusted.update_targets(other)
    assert trusted.targets is None


def test_targets_length_mismatch() -> None:
    """Targets bytes shorter than snapshot's length are refused."""
    repo = Repo(hashes_in_meta=True)
    out = repo.publish()
    trusted = repo.trusted_set(through="snapshot")
    with pytest.raises(LengthOrHashMismatchError, match="length"):
        trusted.update_targets(out["targets"][:-1])


def test_targets_cap_without_length() -> None:
    """Without a declared length, max_targets_length caps the bytes."""
    repo = Repo()
    out = repo.publish()
    trusted = repo.trusted_set(through="snapshot", limits=Limits(max_targets_length=10))
    with pytest.raises(OversizeError):
        trusted.update_targets(out["targets"])


def test_targets_signature() -> None:
    """Targets signed by a non-targets key is refused."""
    repo = Repo()
    repo.publish()
    trusted = repo.trusted_set(through="snapshot")
    with pytest.raises(SignatureError, match="targets v1"):
        trusted.update_targets(raw_sign(repo.targets, repo.signers["snapshot"]))


def test_targets_wrong_type() -> None:
    """Snapshot bytes offered as targets are refused."""
    repo = Repo()
    out = repo.publish()
    trusted = repo.trusted_set(through="snapshot")
    with pytest.raises(MalformedMetadataError, match="_type is 'snapshot'"):
        trusted.update_targets(out["snapshot"])


def test_targets_version_must_match_snapshot() -> None:
    """A targets version other than the one snapshot lists: BadVersionError."""
    repo = Repo()
    repo.publish()
    repo.targets.signed.version = 2
    data = repo.sign("targets")
    trusted = repo.trusted_set(through="snapshot")
    with pytest.raises(BadVersionError, match="lists version 1"):
        trusted.update_targets(data, trusted=True)


def test_targets_expired_always_fails() -> None:
    """Expired top-level targets fails even in mirror mode."""
    repo = Repo()
    repo.targets.signed.expires = PAST
    out = repo.publish()
    trusted = repo.trusted_set(through="snapshot", expired_delegated_ok=True)
    with pytest.raises(ExpiredMetadataError, match="targets v1: expired"):
        trusted.update_targets(out["targets"])
    assert trusted.targets is None


def test_expired_local_targets_replaced() -> None:
    """An expired local targets copy fails to load; the valid new one is accepted."""
    repo = Repo()
    repo.targets.signed.expires = PAST
    old = repo.publish()
    repo.targets.signed.expires = repo.snapshot.signed.expires
    new = repo.publish(bump=["targets", "snapshot", "timestamp"])
    trusted = repo.trusted_set(through="snapshot")
    with pytest.raises(BadVersionError):
        trusted.update_targets(old["targets"], trusted=True)
    assert trusted.update_targets(new["targets"]).version == 2


def test_targets_fast_forward_recovery() -> None:
    """After the snapshot key rotates, the old snapshot (listing targets v100) is not
    accepted and targets may restart at a low version."""
    repo = Repo()
    repo.targets.signed.version = 100
    old = repo.publish()
    repo.rotate_root(new_keys={"snapshot": [new_signer()]})
    repo.targets.signed.version = 2
    new = repo.publish(bump=["snapshot", "timestamp"])
    trusted = repo.trusted_set(through="root")
    trusted.update_timestamp(old["timestamp"])  # timestamp key unchanged: fine
    trusted.update_timestamp(new["timestamp"])
    with pytest.raises(SignatureError):
        trusted.update_snapshot(old["snapshot"], trusted=True)
    trusted.update_snapshot(new["snapshot"])
    assert trusted.update_targets(new["targets"]).version == 2


def test_targets_before_snapshot_is_a_caller_bug() -> None:
    """Targets without a trusted snapshot: RuntimeError."""
    repo = Repo()
    out = repo.publish()
    trusted = repo.trusted_set(through="timestamp")
    with pytest.raises(RuntimeError):
        trusted.update_targets(out["targets"])


# -- delegated roles -------------------------------------------------------------------


def test_delegated_role_verified_with_delegator_keys() -> None:
    """A delegated role verifies with the keys its delegator lists, not others."""
    repo = Repo()
    repo.delegate("targets", "A")
    out = repo.publish()
    trusted = repo.trusted_set()
    assert trusted.update_delegated_targets(out["A"], "A", "targets").version == 1
    assert trusted.role_version("A") == 1
    bad = raw_sign(repo.delegated["A"], repo.signers["targets"])
    with pytest.raises(SignatureError, match="delegator targets"):
        trusted.update_delegated_targets(bad, "A", "targets", trusted=True)


def test_delegated_hash_mismatch() -> None:
    """A delegated role's bytes must match snapshot's hashes."""
    repo = Repo(hashes_in_meta=True)
    repo.delegate("targets", "A")
    repo.publish()
    trusted = repo.trusted_set()
    altered = repo.published["A"].replace(b'"version":1', b'"version":2')
    with pytest.raises(LengthOrHashMismatchError):
        trusted.update_delegated_targets(altered, "A", "targets")


def test_delegated_role_missing_from_snapshot() -> None:
    """A delegated role that snapshot does not list: DelegationError."""
    repo = Repo()
    repo.delegate("targets", "A")
    out = repo.publish()
    del repo.snapshot.signed.meta["A.json"]
    repo.published["snapshot"] = repo.sign("snapshot")
    repo.timestamp.signed.snapshot_meta = repo.meta_for(repo.published["snapshot"], 1)
    repo.published["timestamp"] = repo.sign("timestamp")
    trusted = repo.trusted_set()
    with pytest.raises(DelegationError, match="not listed in snapshot"):
        trusted.update_delegated_targets(out["A"], "A", "targets")


def test_role_not_delegated_by_that_delegator() -> None:
    """Asking to verify a role via a delegator that does not delegate it fails."""
    repo = Repo()
    repo.delegate("targets", "A")
    repo.delegate("A", "B")
    out = repo.publish()
    trusted = repo.trusted_set()
    with pytest.raises(DelegationError, match="B: not delegated by targets"):
        trusted.update_delegated_targets(out["B"], "B", "targets")


def test_unverified_delegator_is_a_caller_bug() -> None:
    """The delegator must have been verified first."""
    repo = Repo()
    repo.delegate("targets", "A")
    repo.delegate("A", "B")
    out = repo.publish()
    trusted = repo.trusted_set()
    with pytest.raises(RuntimeError, match="delegator 'A'"):
        trusted.update_delegated_targets(out["B"], "B", "A")


def test_expired_delegated_role_client_mode_fails() -> None:
    """In client mode an expired delegated role raises ExpiredMetadataError."""
    repo = Repo()
    repo.delegate("targets", "A").signed.expires = PAST
    out = repo.publish()
    trusted = repo.trusted_set()
    with pytest.raises(ExpiredMetadataError, match="A v1: expired"):
        trusted.update_delegated_targets(out["A"], "A", "targets")
    assert trusted.expired_delegated == []


def test_expired_delegated_role_mirror_mode_recorded() -> None:
    """In mirror mode an expired delegated role is accepted and recorded."""
    repo = Repo()
    repo.delegate("targets", "A").signed.expires = PAST
    out = repo.publish()
    trusted = repo.trusted_set(expired_delegated_ok=True)
    assert trusted.update_delegated_targets(out["A"], "A", "targets").raw == out["A"]
    assert trusted.expired_delegated == ["A"]


def test_expired_delegated_still_needs_signature_in_mirror_mode() -> None:
    """Mirror mode forgives only expiry: a bad signature still fails."""
    repo = Repo()
    repo.delegate("targets", "A").signed.expires = PAST
    repo.publish()
    trusted = repo.trusted_set(expired_delegated_ok=True)
    bad = raw_sign(repo.delegated["A"], [new_signer()])
    with pytest.raises(SignatureError):
        trusted.update_delegated_targets(bad, "A", "targets", trusted=True)


@pytest.mark.parametrize("name", ["../x", "/", "a/b", "?", "#", "..", "é"])
def test_hostile_but_encodable_role_names_work(name: str) -> None:
    """Role names with '/', '..', '?' are fine: they are percent-encoded into one
    file name by the caller."""
    repo = Repo()
    repo.delegate("targets", name)
    out = repo.publish()
    trusted = repo.trusted_set()
    assert trusted.update_delegated_targets(out[name], name, "targets").role == name


def test_role_name_with_nul_refused() -> None:
    """A role name with NUL is refused as unsafe."""
    repo = Repo()
    repo.delegate("targets", "a\x00b")
    out = repo.publish()
    trusted = repo.trusted_set()
    with pytest.raises(UnsafeNameError, match="NUL"):
        trusted.update_delegated_targets(out["a\x00b"], "a\x00b", "targets")


def test_forget_role_releases_delegator() -> None:
    """forget_role drops what the set keeps for a role."""
    repo = Repo()
    repo.delegate("targets", "A")
    repo.delegate("A", "B")
    out = repo.publish()
    trusted = repo.trusted_set()
    trusted.update_delegated_targets(out["A"], "A", "targets")
    assert trusted.delegator("A") is not None
    trusted.forget_role("A")
    assert trusted.delegator("A") is None
    assert trusted.role_version("A") is None


def test_leaf_roles_are_not_kept() -> None:
    """Only delegators' Targets are kept; leaves keep just their version."""
    repo = Repo()
    repo.delegate("targets", "A")
    out = repo.publish()
    trusted = repo.trusted_set()
    trusted.update_delegated_targets(out["A"], "A", "targets")
    assert trusted.delegator("A") is None
    assert trusted.role_version("A") == 1
