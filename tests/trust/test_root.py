"""Root: the initial trusted root and the root chain (spec §5.3)."""

from __future__ import annotations

import pytest

from mirror.errors import (
    BadVersionError,
    ExpiredMetadataError,
    MalformedMetadataError,
    OversizeError,
    RootRotationLimitError,
    SignatureError,
)
from mirror.trust import Limits, TrustedSet

from ._repo import FAR, NOW, PAST, Repo, new_signer, raw_sign, tamper


def test_initial_root_must_be_self_signed() -> None:
    """A root not signed by a threshold of its own root keys is refused before anything."""
    repo = Repo()
    unsigned = raw_sign(repo.root, [])
    with pytest.raises(SignatureError, match="root v1"):
        TrustedSet(unsigned, now=NOW)


def test_initial_root_garbage_is_malformed() -> None:
    """Bytes that are not TUF metadata raise MalformedMetadataError naming the role."""
    with pytest.raises(MalformedMetadataError, match="root: not valid TUF metadata"):
        TrustedSet(b"{not json", now=NOW)


def test_initial_root_wrong_type() -> None:
    """A timestamp offered as root is refused for its _type."""
    repo = Repo()
    data = repo.publish()["timestamp"]
    with pytest.raises(MalformedMetadataError, match="_type is 'timestamp'"):
        TrustedSet(data, now=NOW)


def test_now_must_be_aware() -> None:
    """A naive reference time is a caller bug."""
    repo = Repo()
    with pytest.raises(ValueError, match="timezone-aware"):
        TrustedSet(repo.roots[1], now=NOW.replace(tzinfo=None))


def test_root_bytes_are_kept_exactly() -> None:
    """The verified root holds exactly the input bytes (here with trailing whitespace)."""
    repo = Repo()
    data = repo.roots[1] + b"  \n"
    trusted = TrustedSet(data, now=NOW)
    assert trusted.root.raw == data
    assert trusted.root.version == 1
    assert trusted.root.role == "root"


def test_root_update_chain() -> None:
    """Consecutive root versions are accepted one by one."""
    repo = Repo()
    v2 = repo.rotate_root()
    v3 = repo.rotate_root(new_keys={"root": [new_signer()]})
    trusted = TrustedSet(repo.roots[1], now=NOW)
    assert trusted.update_root(v2).version == 2
    assert trusted.update_root(v3).version == 3
    assert trusted.root.raw == v3


def test_root_version_must_be_next() -> None:
    """2.root.json holding version 3 is refused (BadVersionError)."""
    repo = Repo()
    repo.root.signed.version = 2  # rotate_root makes it 3
    v3 = repo.rotate_root()
    trusted = TrustedSet(repo.roots[1], now=NOW)
    with pytest.raises(BadVersionError, match="holds version 3, expected 2"):
        trusted.update_root(v3)
    assert trusted.root.version == 1


def test_root_rollback_refused() -> None:
    """Offering the same root version again as the next root is refused."""
    repo = Repo()
    trusted = TrustedSet(repo.roots[1], now=NOW)
    with pytest.raises(BadVersionError):
        trusted.update_root(repo.roots[1])


def test_new_root_needs_old_root_threshold() -> None:
    """A new root signed only by its new keys (not the trusted ones) is refused."""
    repo = Repo()
    data = repo.rotate_root(new_keys={"root": [new_signer()]}, sign_with_old=False)
    trusted = TrustedSet(repo.roots[1], now=NOW)
    with pytest.raises(SignatureError, match="trusted root v1"):
        trusted.update_root(data)


def test_new_root_needs_own_threshold() -> None:
    """A new root signed by the old keys but not a threshold of its own keys is refused."""
    repo = Repo()
    old = repo.signers["root"]
    new_keys = [new_signer(), new_signer()]
    repo.rotate_root(new_keys={"root": new_keys}, threshold={"root": 2})
    # re-sign with old key + only one of the two new keys
    data = raw_sign(repo.root, [*old, new_keys[0]])
    trusted = TrustedSet(repo.roots[1], now=NOW)
    with pytest.raises(SignatureError, match="root v2: 1 valid signature"):
        trusted.update_root(data)


def test_threshold_changes_between_versions() -> None:
    """Thresholds of old and new root apply separately: old 1-of-1, new 2-of-3."""
    repo = Repo()
    new_keys = [new_signer(), new_signer(), new_signer()]
    data = repo.rotate_root(new_keys={"root": new_keys}, threshold={"root": 2})
    trusted = TrustedSet(repo.roots[1], now=NOW)
    assert trusted.update_root(data).version == 2


def test_intermediate_expired_root_is_fine_final_is_checked() -> None:
    """An expired intermediate root is accepted; only the final one is freeze-checked."""
    repo = Repo()
    repo.root.signed.expires = PAST
    v2 = repo.rotate_root()
    repo.root.signed.expires = FAR
    v3 = repo.rotate_root()
    trusted = TrustedSet(repo.roots[1], now=NOW)
    trusted.update_root(v2)
    with pytest.raises(ExpiredMetadataError, match="root v2: expired"):
        trusted.check_root_not_expired()
    trusted.update_root(v3)
    trusted.check_root_not_expired()


def test_final_root_expired_is_kept_then_fails() -> None:
    """An expired final root is accepted by update_root (the caller persists it) and
    then check_root_not_expired and update_timestamp fail."""
    repo = Repo()
    repo.root.signed.expires = PAST
    v2 = repo.rotate_root()
    trusted = TrustedSet(repo.roots[1], now=NOW)
    assert trusted.update_root(v2).version == 2
    with pytest.raises(ExpiredMetadataError):
        trusted.check_root_not_expired()
    with pytest.raises(ExpiredMetadataError):
        trusted.update_timestamp(repo.publish()["timestamp"])


def test_local_root_expired_replaced_by_newer() -> None:
    """An expired trusted root is no problem when a valid newer one follows."""
    repo = Repo()
    repo.root.signed.expires = PAST
    repo.roots[1] = repo.sign_root()
    repo.root.signed.expires = FAR
    v2 = repo.rotate_root()
    trusted = TrustedSet(repo.roots[1], now=NOW)
    trusted.update_root(v2)
    trusted.check_root_not_expired()


def test_rotation_cap() -> None:
    """More root updates than Limits.max_root_rotations raise RootRotationLimitError."""
    repo = Repo()
    chain = [repo.rotate_root() for _ in range(3)]
    trusted = TrustedSet(repo.roots[1], now=NOW, limits=Limits(max_root_rotations=2))
    trusted.update_root(chain[0])
    trusted.update_root(chain[1])
    with pytest.raises(RootRotationLimitError):
        trusted.update_root(chain[2])


def test_root_size_cap() -> None:
    """A root larger than max_root_length is refused before parsing."""
    repo = Repo()
    with pytest.raises(OversizeError):
        TrustedSet(repo.roots[1], now=NOW, limits=Limits(max_root_length=100))


def test_root_wrong_type_in_chain() -> None:
    """A targets file offered as the next root is refused for its _type."""
    repo = Repo()
    data = repo.publish()["targets"]
    trusted = TrustedSet(repo.roots[1], now=NOW)
    with pytest.raises(MalformedMetadataError, match="_type is 'targets', expected 'root'"):
        trusted.update_root(data)


def test_update_root_after_timestamp_is_a_caller_bug() -> None:
    """The root chain must be complete before timestamp: RuntimeError otherwise."""
    repo = Repo()
    trusted = repo.trusted_set(through="timestamp")
    with pytest.raises(RuntimeError):
        trusted.update_root(repo.rotate_root())


def test_tampered_root_signature_fails() -> None:
    """Changing a signed field after signing invalidates the signature."""
    repo = Repo()
    v2 = repo.rotate_root()
    bad = tamper(v2, lambda d: d["signed"].update(consistent_snapshot=False))
    trusted = TrustedSet(repo.roots[1], now=NOW)
    with pytest.raises(SignatureError):
        trusted.update_root(bad)
