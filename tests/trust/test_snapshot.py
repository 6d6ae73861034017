"""Snapshot (spec §5.5): hashes/length from timestamp, signatures, rollback, version,
expiry, fast-forward recovery."""

from __future__ import annotations

import pytest

from mirror.errors import (
    BadVersionError,
    ExpiredMetadataError,
    LengthOrHashMismatchError,
    MalformedMetadataError,
    OversizeError,
    RollbackError,
    SignatureError,
)
from mirror.trust import Limits, TrustedSet

from ._repo import PAST, Repo, new_signer, raw_sign


def test_snapshot_accepted_with_hashes() -> None:
    """A snapshot matching timestamp's length and hashes is accepted."""
    repo = Repo(hashes_in_meta=True)
    out = repo.publish()
    trusted = repo.trusted_set(through="timestamp")
    assert trusted.update_snapshot(out["snapshot"]).raw == out["snapshot"]


def test_snapshot_hash_mismatch() -> None:
    """Bytes whose sha256 differs from timestamp's are refused (fresh download)."""
    repo = Repo(hashes_in_meta=True)
    out = repo.publish()
    trusted = repo.trusted_set(through="timestamp")
    altered = out["snapshot"].replace(b'"signed"', b'"signed" ', 1)
    altered = altered[: len(out["snapshot"])]  # same length, other bytes
    with pytest.raises(LengthOrHashMismatchError, match="sha256"):
        trusted.update_snapshot(altered)


def test_snapshot_length_mismatch() -> None:
    """Bytes longer than the length timestamp lists are refused as oversize."""
    repo = Repo(hashes_in_meta=True)
    out = repo.publish()
    trusted = repo.trusted_set(through="timestamp")
    with pytest.raises(OversizeError, match="exceeds the limit"):
        trusted.update_snapshot(out["snapshot"] + b" ")


def test_snapshot_cap_without_declared_length() -> None:
    """Without a declared length, max_snapshot_length applies."""
    repo = Repo()
    out = repo.publish()
    trusted = repo.trusted_set(through="timestamp", limits=Limits(max_snapshot_length=10))
    with pytest.raises(OversizeError):
        trusted.update_snapshot(out["snapshot"])


def test_trusted_local_snapshot_skips_hash_check() -> None:
    """A local snapshot (trusted=True) is not compared with timestamp's hashes, so it
    is the rollback reference even when timestamp lists hashes."""
    repo = Repo(hashes_in_meta=True)
    repo.targets.signed.version = 5
    local = repo.publish()
    repo.targets.signed.version = 4
    new = repo.publish(bump=["snapshot", "timestamp"])
    trusted = repo.trusted_set(through="root")
    trusted.update_timestamp(new["timestamp"])
    # BadVersionError (not a hash mismatch): v1 is local, timestamp lists v2
    with pytest.raises(BadVersionError):
        trusted.update_snapshot(local["snapshot"], trusted=True)
    with pytest.raises(RollbackError, match=r"targets\.json v4, lower than v5"):
        trusted.update_snapshot(new["snapshot"])


def test_snapshot_signature() -> None:
    """A snapshot not signed by the root's snapshot keys is refused."""
    repo = Repo()
    repo.publish()
    trusted = repo.trusted_set(through="timestamp")
    with pytest.raises(SignatureError, match="snapshot v1"):
        trusted.update_snapshot(raw_sign(repo.snapshot, [new_signer()]))


def test_snapshot_wrong_type() -> None:
    """A targets file offered as snapshot is refused."""
    repo = Repo()
    out = repo.publish()
    trusted = repo.trusted_set(through="timestamp")
    with pytest.raises(MalformedMetadataError, match="_type is 'targets'"):
        trusted.update_snapshot(out["targets"])


def test_snapshot_version_must_match_timestamp() -> None:
    """Snapshot v2 while timestamp lists v1: BadVersionError."""
    repo = Repo()
    out = repo.publish()
    repo.snapshot.signed.version = 2
    data = repo.sign("snapshot")
    trusted = repo.trusted_set(through="timestamp")
    del out
    with pytest.raises(BadVersionError, match="timestamp lists snapshot version 1"):
        trusted.update_snapshot(data)


def _next_run(repo: Repo, old: dict[str, bytes], new: dict[str, bytes]) -> TrustedSet:
    """A set as the next run builds it: local timestamp, then the new timestamp, then
    the local snapshot (older version: BadVersionError, kept as rollback reference)."""
    trusted = repo.trusted_set(through="root")
    trusted.update_timestamp(old["timestamp"])
    trusted.update_timestamp(new["timestamp"])
    with pytest.raises(BadVersionError):
        trusted.update_snapshot(old["snapshot"], trusted=True)
    return trusted


def test_snapshot_role_version_rollback() -> None:
    """A new snapshot listing a lower targets version than the trusted one is refused."""
    repo = Repo()
    repo.targets.signed.version = 3
    old = repo.publish()
    repo.targets.signed.version = 2
    new = repo.publish(bump=["snapshot", "timestamp"])
    trusted = _next_run(repo, old, new)
    with pytest.raises(RollbackError, match=r"targets\.json v2, lower than v3"):
        trusted.update_snapshot(new["snapshot"])


def test_snapshot_role_dropped() -> None:
    """A new snapshot that drops a role listed in the trusted snapshot is refused."""
    repo = Repo()
    repo.delegate("targets", "A")
    old = repo.publish()
    del repo.delegated["A"]
    repo.targets.signed.delegations = None
    new = repo.publish(bump=["snapshot", "timestamp"])
    trusted = _next_run(repo, old, new)
    with pytest.raises(RollbackError, match=r"drops A\.json"):
        trusted.update_snapshot(new["snapshot"])


def test_snapshot_role_version_up_and_new_roles_fine() -> None:
    """Higher role versions and added roles are normal updates."""
    repo = Repo()
    old = repo.publish()
    repo.delegate("targets", "B")
    new = repo.publish(bump=["targets", "snapshot", "timestamp"])
    trusted = _next_run(repo, old, new)
    assert trusted.update_snapshot(new["snapshot"]).version == 2


def test_snapshot_expired() -> None:
    """An expired new snapshot raises ExpiredMetadataError."""
    repo = Repo()
    repo.snapshot.signed.expires = PAST
    out = repo.publish()
    trusted = repo.trusted_set(through="timestamp")
    with pytest.raises(ExpiredMetadataError, match="snapshot v1: expired"):
        trusted.update_snapshot(out["snapshot"])


def test_expired_local_snapshot_replaced() -> None:
    """An expired local snapshot fails to load but a valid new one is accepted."""
    repo = Repo()
    repo.snapshot.signed.expires = PAST
    old = repo.publish()
    repo.snapshot.signed.expires = repo.timestamp.signed.expires
    new = repo.publish(bump=["snapshot", "timestamp"])
    trusted = repo.trusted_set(through="root")
    trusted.update_timestamp(new["timestamp"])
    with pytest.raises(ExpiredMetadataError):
        trusted.update_snapshot(old["snapshot"], trusted=True)
    assert trusted.update_snapshot(new["snapshot"]).version == 2


def test_snapshot_fast_forward_recovery() -> None:
    """After rotating snapshot and timestamp keys, local copies (snapshot v99999) no
    longer verify, and the repository restarts at snapshot v1."""
    repo = Repo()
    repo.snapshot.signed.version = 99999
    repo.targets.signed.version = 50
    old = repo.publish()
    repo.rotate_root(new_keys={"snapshot": [new_signer()], "timestamp": [new_signer()]})
    repo.snapshot.signed.version = 1
    repo.targets.signed.version = 1
    new = repo.publish()
    trusted = repo.trusted_set(through="root")
    with pytest.raises(SignatureError):
        trusted.update_timestamp(old["timestamp"])
    trusted.update_timestamp(new["timestamp"])
    with pytest.raises(SignatureError):
        trusted.update_snapshot(old["snapshot"], trusted=True)
    assert trusted.update_snapshot(new["snapshot"]).version == 1
    assert trusted.update_targets(new["targets"]).version == 1


def test_snapshot_before_timestamp_is_a_caller_bug() -> None:
    """Snapshot without a trusted timestamp: RuntimeError."""
    repo = Repo()
    out = repo.publish()
    trusted = repo.trusted_set(through="root")
    with pytest.raises(RuntimeError):
        trusted.update_snapshot(out["snapshot"])
