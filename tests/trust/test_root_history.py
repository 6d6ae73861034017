"""Root versions before the pin, accepted backwards (sigstore's real roots), and
roles the snapshot lists that no delegation reaches."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mirror.errors import BadVersionError, MalformedMetadataError, SignatureError
from mirror.trust import DelegationWalk, TrustedSet
from mirror.trust.root_history import link_older_root

from ._repo import Repo

# sigstore/root-signing roots as served (tests/realworld/data/README.md says where from)
SIGSTORE = Path(__file__).parents[1] / "realworld" / "data" / "sigstore"


def _root(state: str, version: int) -> bytes:
    return (SIGSTORE / state / f"{version}.root.json").read_bytes()


def test_sigstore_roots_link_back_from_the_pin() -> None:
    """Each of sigstore's roots 5..8 is accepted because its keys signed itself and
    the next one (the old ``ecdsa-sha2-nistp256`` key type included); version 9 as
    re-serialized at the move to tuf-on-ci links to 10 like the original did."""
    legacy = "01-fd59d848ff"
    for version in range(8, 4, -1):
        link_older_root(_root(legacy, version), version, _root(legacy, version + 1))
    moved = "02-f8ad745a8d"
    assert _root(moved, 9) != _root(legacy, 9)
    link_older_root(_root(moved, 9), 9, _root(moved, 10))
    link_older_root(_root(legacy, 9), 9, _root(moved, 10))


def test_sigstore_first_roots_cannot_be_shown_authentic_nor_parsed_strictly() -> None:
    """Root v3 has an expiry python-tuf cannot parse (so a strict parse fails as
    MalformedMetadataError); v4's hex-encoded keys verify nothing: the loose check
    says which signature check failed instead of a parse error."""
    legacy = "01-fd59d848ff"
    with pytest.raises(MalformedMetadataError, match="does not match format"):
        TrustedSet(_root(legacy, 3), now=datetime(2022, 1, 1, tzinfo=UTC))
    with pytest.raises(SignatureError, match=r"4\.root\.json: 0 valid signature\(s\) of its own"):
        link_older_root(_root(legacy, 4), 4, _root(legacy, 5))
    with pytest.raises(SignatureError, match=r"3\.root\.json: 0 valid"):
        link_older_root(_root(legacy, 3), 3, _root(legacy, 4))


def test_wrong_version_type_or_document_is_refused() -> None:
    """A root served under another version number, a document that is no root, and
    bytes that are no JSON are refused, each with its own error."""
    legacy = "01-fd59d848ff"
    with pytest.raises(BadVersionError, match="holds version 6"):
        link_older_root(_root(legacy, 6), 5, _root(legacy, 6))
    timestamp = (SIGSTORE / legacy / "timestamp.json").read_bytes()
    with pytest.raises(MalformedMetadataError, match="not 'root'"):
        link_older_root(timestamp, 5, _root(legacy, 6))
    with pytest.raises(MalformedMetadataError, match="not a readable root document"):
        link_older_root(b"<html></html>", 5, _root(legacy, 6))


def test_a_root_whose_keys_did_not_sign_the_next_is_refused() -> None:
    """A successor changed after signing (a forged 6.root.json) does not link to the
    genuine root 5: its keys never signed those bytes."""
    legacy = "01-fd59d848ff"
    forged = json.loads(_root(legacy, 6))
    forged["signed"]["expires"] = "2099-01-01T00:00:00Z"
    with pytest.raises(SignatureError, match=r"6\.root\.json: 0 valid signature\(s\) by the keys"):
        link_older_root(_root(legacy, 5), 5, json.dumps(forged).encode())


def test_walk_names_roles_no_delegation_reaches() -> None:
    """A role the snapshot lists after its delegation was removed is never a walk
    step, and ``unreachable()`` names it once the walk is done (not before)."""
    repo = Repo()
    repo.delegate("targets", "A")
    repo.delegate("targets", "orphan")
    delegations = repo.metadata("targets").signed.delegations
    assert delegations is not None
    assert delegations.roles is not None
    del delegations.roles["orphan"]
    repo.publish()
    walk = DelegationWalk(repo.trusted_set())
    with pytest.raises(RuntimeError):
        walk.unreachable()
    steps = []
    while (step := walk.next_step()) is not None:
        steps.append(step.role)
        walk.feed(step, repo.published[step.role])
    assert steps == ["A"]
    assert walk.unreachable() == ["orphan"]
