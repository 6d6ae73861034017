"""Timestamp (spec §5.4): signatures, rollback, equal versions, expiry, recovery."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mirror.errors import (
    ExpiredMetadataError,
    MalformedMetadataError,
    OversizeError,
    RollbackError,
    SignatureError,
)
from mirror.trust import EqualVersionError, Limits, TrustedSet

from ._repo import NOW, PAST, Repo, new_signer, raw_sign


def test_timestamp_accepted() -> None:
    """A correctly signed timestamp is returned with its exact bytes."""
    repo = Repo()
    data = repo.publish()["timestamp"] + b" "
    trusted = repo.trusted_set(through="root")
    verified = trusted.update_timestamp(data)
    assert verified.raw == data
    assert trusted.timestamp is verified


def test_timestamp_signed_by_wrong_key() -> None:
    """A timestamp signed by a key root does not list for timestamp is refused."""
    repo = Repo()
    repo.publish()
    data = raw_sign(repo.timestamp, [new_signer()])
    trusted = repo.trusted_set(through="root")
    with pytest.raises(SignatureError, match="timestamp v1: 0 valid signature"):
        trusted.update_timestamp(data)
    assert trusted.timestamp is None


def test_timestamp_signed_by_snapshot_key() -> None:
    """Another top-level role's key does not count for timestamp."""
    repo = Repo()
    repo.publish()
    data = raw_sign(repo.timestamp, repo.signers["snapshot"])
    trusted = repo.trusted_set(through="root")
    with pytest.raises(SignatureError):
        trusted.update_timestamp(data)


def test_timestamp_wrong_type() -> None:
    """A snapshot offered as timestamp is refused."""
    repo = Repo()
    data = repo.publish()["snapshot"]
    trusted = repo.trusted_set(through="root")
    with pytest.raises(MalformedMetadataError, match="_type is 'snapshot'"):
        trusted.update_timestamp(data)


def test_timestamp_rollback() -> None:
    """A lower timestamp version than the trusted one is a rollback."""
    repo = Repo()
    repo.timestamp.signed.version = 5
    local = repo.publish()["timestamp"]
    repo.timestamp.signed.version = 4
    older = repo.publish()["timestamp"]
    trusted = repo.trusted_set(through="root")
    trusted.update_timestamp(local)
    with pytest.raises(RollbackError, match="lower than trusted timestamp v5"):
        trusted.update_timestamp(older)
    assert trusted.timestamp is not None
    assert trusted.timestamp.version == 5


def test_timestamp_equal_version_keeps_trusted() -> None:
    """The same version again raises EqualVersionError and the trusted one stays,
    even when the new bytes differ."""
    repo = Repo()
    local = repo.publish()["timestamp"]
    repo.timestamp.signed.expires += timedelta(days=1)
    same_version = repo.publish()["timestamp"]
    assert same_version != local
    trusted = repo.trusted_set(through="root")
    trusted.update_timestamp(local)
    with pytest.raises(EqualVersionError):
        trusted.update_timestamp(same_version)
    assert trusted.timestamp is not None
    assert trusted.timestamp.raw == local


def test_equal_version_error_is_not_a_mirror_error() -> None:
    """EqualVersionError is a signal, not a MirrorError a person would see."""
    from mirror.errors import MirrorError

    assert not issubclass(EqualVersionError, MirrorError)


def test_snapshot_version_in_timestamp_rollback() -> None:
    """A newer timestamp listing a lower snapshot version is a rollback."""
    repo = Repo()
    repo.snapshot.signed.version = 3
    local = repo.publish()["timestamp"]
    repo.snapshot.signed.version = 2
    repo.timestamp.signed.version += 1
    newer = repo.publish()["timestamp"]
    trusted = repo.trusted_set(through="root")
    trusted.update_timestamp(local)
    with pytest.raises(RollbackError, match="lists snapshot v2, lower than v3"):
        trusted.update_timestamp(newer)


def test_new_timestamp_expired() -> None:
    """An expired new timestamp raises ExpiredMetadataError."""
    repo = Repo()
    repo.timestamp.signed.expires = PAST
    data = repo.publish()["timestamp"]
    trusted = repo.trusted_set(through="root")
    with pytest.raises(ExpiredMetadataError, match="timestamp v1: expired"):
        trusted.update_timestamp(data)


def test_expired_local_timestamp_is_rollback_floor_then_replaced() -> None:
    """An expired local timestamp still serves as the rollback reference (raising
    ExpiredMetadataError when loaded), and a valid newer one replaces it."""
    repo = Repo()
    repo.timestamp.signed.version = 7
    repo.timestamp.signed.expires = PAST
    local = repo.publish()["timestamp"]
    repo.timestamp.signed.expires = NOW + timedelta(days=1)
    repo.timestamp.signed.version = 6
    rollback = repo.publish()["timestamp"]
    repo.timestamp.signed.version = 8
    newer = repo.publish()["timestamp"]

    trusted = repo.trusted_set(through="root")
    with pytest.raises(ExpiredMetadataError):
        trusted.update_timestamp(local)
    with pytest.raises(RollbackError):
        trusted.update_timestamp(rollback)
    assert trusted.update_timestamp(newer).version == 8


def test_expired_trusted_timestamp_blocks_snapshot() -> None:
    """When the only timestamp is expired (equal version offered), snapshot cannot
    be loaded: the freeze check holds."""
    repo = Repo()
    repo.timestamp.signed.expires = PAST
    out = repo.publish()
    trusted = repo.trusted_set(through="root")
    with pytest.raises(ExpiredMetadataError):
        trusted.update_timestamp(out["timestamp"])
    with pytest.raises(EqualVersionError):
        trusted.update_timestamp(out["timestamp"])
    with pytest.raises(ExpiredMetadataError):
        trusted.update_snapshot(out["snapshot"])


def test_timestamp_size_cap() -> None:
    """A timestamp over max_timestamp_length is refused unparsed."""
    repo = Repo()
    data = repo.publish()["timestamp"]
    trusted = TrustedSet(repo.roots[1], now=NOW, limits=Limits(max_timestamp_length=50))
    with pytest.raises(OversizeError):
        trusted.update_timestamp(data)


def test_timestamp_fast_forward_recovery() -> None:
    """After root rotates the timestamp key, the local timestamp (v100) no longer
    verifies and is not accepted, so the repository may restart at version 1."""
    repo = Repo()
    repo.timestamp.signed.version = 100
    local = repo.publish()["timestamp"]
    repo.rotate_root(new_keys={"timestamp": [new_signer()]})
    repo.timestamp.signed.version = 1
    restarted = repo.publish()["timestamp"]

    trusted = repo.trusted_set(through="root")
    with pytest.raises(SignatureError):
        trusted.update_timestamp(local)  # caller ignores local failures
    assert trusted.update_timestamp(restarted).version == 1


def test_timestamp_needs_snapshot_not_loaded() -> None:
    """Updating timestamp after snapshot is a caller bug."""
    repo = Repo()
    trusted = repo.trusted_set(through="snapshot")
    with pytest.raises(RuntimeError):
        trusted.update_timestamp(repo.published["timestamp"])
