"""A real repository (tuf-on-ci 0.11, ECDSA keys) verified end to end."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from mirror.errors import ExpiredMetadataError
from mirror.trust import DelegationWalk, TargetSearch, TrustedSet

DATA = Path(__file__).parent / "data" / "tuf-on-ci-0.11"
VALID_AT = datetime(2025, 2, 9, 9, 17, 23, tzinfo=UTC)


def _read(name: str) -> bytes:
    return (DATA / name).read_bytes()


def _trusted(now: datetime = VALID_AT) -> TrustedSet:
    trusted = TrustedSet(_read("initial_root.json"), now=now)
    trusted.check_root_not_expired()
    trusted.update_timestamp(_read("timestamp.json"))
    trusted.update_snapshot(_read("2.snapshot.json"))
    trusted.update_targets(_read("1.targets.json"))
    return trusted


def test_refresh_and_search() -> None:
    """Top-level metadata verifies and the search finds delegatedrole/artifact in the
    terminating delegation, despite an empty signature by the second key."""
    trusted = _trusted()
    search = TargetSearch(trusted, "delegatedrole/artifact")
    step = search.next_role()
    assert step == ("delegatedrole", "targets")
    search.feed(_read("2.delegatedrole.json"))
    assert search.next_role() is None
    assert search.result is not None
    assert search.result.role == "delegatedrole"
    assert search.result.target.length == 34


def test_walk_and_authority() -> None:
    """The mirror walk visits the one delegated role and authorizes its target."""
    walk = DelegationWalk(_trusted())
    step = walk.next_step()
    assert step is not None
    walk.feed(step, _read("2.delegatedrole.json"))
    assert walk.done
    assert walk.is_authorized("delegatedrole/artifact", "delegatedrole")


def test_expired_in_the_far_future() -> None:
    """The same metadata is refused once the root expires (2044)."""
    trusted = TrustedSet(_read("initial_root.json"), now=datetime(2045, 1, 1, tzinfo=UTC))
    with pytest.raises(ExpiredMetadataError, match="root v1"):
        trusted.check_root_not_expired()
