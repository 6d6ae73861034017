"""Hostile secondary repositories, TAP 4 map files, and every bad policy."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mirror.errors import ExitStatus
from tests.policy.conftest import AGREED, CONTENT, CONTESTED, PolicyEnv, weights_env
from tests.sync.conftest import tree
from tests.sync.test_hostile import assert_published_unchanged
from tuf_mirror_testing.repo import generate_signer


def _synced_then_curator_changes(penv: PolicyEnv) -> dict[str, bytes]:
    weights_env(penv)
    assert penv.run() == ExitStatus.OK
    return tree(penv.dest)


def test_curator_forged_signature(penv: PolicyEnv) -> None:
    """A curator's new targets role signed by a key its root does not name: exit 1,
    the error names the repository, the destination is unchanged."""
    before = _synced_then_curator_changes(penv)
    penv.repos["curator"].add_target("files/new.txt", b"new")
    penv.repos["curator"].sign_next_commit_with("targets", [generate_signer()])
    penv.publish("curator")
    assert penv.run() == ExitStatus.VERIFICATION_FAILED
    assert_published_unchanged(before, tree(penv.dest))
    error = penv.report()["error"]
    assert "SignatureError" in error
    assert "policy repository 'curator'" in error


def test_curator_rollback(penv: PolicyEnv) -> None:
    """A curator serving an older timestamp than the one the mirror verified and
    published under repositories/curator/: exit 1 (rollback), destination unchanged."""
    weights_env(penv)
    old_timestamp = (penv.base / "curator/metadata/timestamp.json").read_bytes()
    penv.repos["curator"].add_target("files/new.txt", b"new")
    penv.publish("curator")
    assert penv.run() == ExitStatus.OK
    before = tree(penv.dest)
    (penv.base / "curator/metadata/timestamp.json").write_bytes(old_timestamp)
    assert penv.run() == ExitStatus.VERIFICATION_FAILED
    assert_published_unchanged(before, tree(penv.dest))
    error = penv.report()["error"]
    assert "RollbackError" in error
    assert "'curator'" in error


def test_curator_freeze(penv: PolicyEnv) -> None:
    """A curator's new timestamp that has already expired (freeze attack): exit 1,
    destination unchanged."""
    before = _synced_then_curator_changes(penv)
    penv.repos["curator"].set_expiry("timestamp", datetime.now(UTC) - timedelta(days=1))
    penv.repos["curator"].add_target("files/new.txt", b"new")
    penv.publish("curator")
    assert penv.run() == ExitStatus.VERIFICATION_FAILED
    assert_published_unchanged(before, tree(penv.dest))
    assert "ExpiredMetadataError" in penv.report()["error"]


def test_tampered_secondary_copy_at_destination(penv: PolicyEnv) -> None:
    """A destination copy of a secondary's metadata that no longer verifies is a
    tampered destination (exit 1), not a trusted state."""
    before = _synced_then_curator_changes(penv)
    snapshot = penv.dest / "repositories/team-a/metadata/1.snapshot.json"
    snapshot.write_bytes(snapshot.read_bytes().replace(b'"version": 1', b'"version": 7', 1))
    before["repositories/team-a/metadata/1.snapshot.json"] = snapshot.read_bytes()
    assert penv.run() == ExitStatus.VERIFICATION_FAILED
    assert_published_unchanged(before, tree(penv.dest))
    assert "TamperedDestinationError" in penv.report()["error"]


def test_tap4_map_json_threshold_two(penv: PolicyEnv) -> None:
    """A TAP 4 map.json (roots in NAME/root.json beside it, the primary found by
    --upstream): threshold 2 publishes what pypi and the curator both sign and holds
    back what only pypi signs."""
    penv.add_repo("pypi", CONTENT)
    penv.add_repo("curator", {AGREED: CONTENT[AGREED]})
    penv.add_repo("other", {"files/elsewhere.txt": b"x"})
    for name in ("pypi", "curator", "other"):
        (penv.conf / name).mkdir()
        (penv.conf / name / "root.json").write_bytes(penv.repos[name].root_bytes(1))
    penv.write_policy(
        json.dumps(
            {
                "repositories": {
                    name: [penv.url(name) + "/"] for name in ("pypi", "curator", "other")
                },
                "mapping": [
                    {
                        "paths": ["*"],
                        "repositories": ["pypi", "curator", "other"],
                        "threshold": 2,
                        "terminating": True,
                    }
                ],
            }
        ),
        filename="map.json",
    )
    assert penv.run() == ExitStatus.OK
    assert penv.published(AGREED)
    assert not penv.published(CONTESTED)
    held = penv.held_back()[CONTESTED]
    assert held["score"] == 1
    assert held["min_score"] == 2
    assert held["missing"] == ["curator", "other"]
    assert (penv.dest / "repositories/other/metadata/timestamp.json").exists()


GOOD = """
primary = "pypi"
[repositories.pypi]
weight = 1
[repositories.curator]
upstream = "{url}/curator"
root = "curator-root.json"
weight = 1
[[mapping]]
paths = ["*"]
repositories = ["pypi", "curator"]
min-score = 2
"""

BAD_POLICIES = [
    (
        "unknown repository",
        GOOD.replace('["pypi", "curator"]', '["pypi", "nobody"]'),
        "mapping[0].repositories: unknown repository 'nobody'",
    ),
    (
        "unknown required repository",
        GOOD.replace("min-score = 2", 'min-score = 2\nrequired = ["ghost"]'),
        "mapping[0].required: unknown repository 'ghost'",
    ),
    (
        "dot-dot name",
        GOOD + '[repositories."../x"]\nupstream = "{url}/x"\nroot = "x.json"\n',
        "repositories.../x: repository name '../x' could escape a path",
    ),
    (
        "slash name",
        GOOD + '[repositories."/"]\nupstream = "{url}/x"\nroot = "x.json"\n',
        "repository name '/' could escape a path",
    ),
    (
        "drive name",
        GOOD + '[repositories.\'C:\\\']\nupstream = "{url}/x"\nroot = "x.json"\n',
        "repository name 'C:\\\\' could escape a path",
    ),
    (
        "unreachable min-score",
        GOOD.replace("min-score = 2", "min-score = 2.5"),
        "mapping[0].min-score: 2.5 is unreachable",
    ),
    (
        "empty repository list",
        GOOD.replace('["pypi", "curator"]', "[]"),
        "mapping[0].repositories: empty repository list",
    ),
    (
        "zero weight",
        GOOD.replace("weight = 1\n[[", "weight = 0\n[["),
        "repositories.curator.weight: must be greater than 0",
    ),
    (
        "negative weight",
        GOOD.replace("[repositories.pypi]\nweight = 1", "[repositories.pypi]\nweight = -1"),
        "repositories.pypi.weight: must be greater than 0",
    ),
    (
        "primary upstream disagrees",
        GOOD.replace(
            "[repositories.pypi]\n", '[repositories.pypi]\nupstream = "{url}/elsewhere"\n'
        ),
        "disagrees with the policy's repositories.pypi.upstream",
    ),
    (
        "primary root disagrees",
        GOOD.replace("[repositories.pypi]\n", '[repositories.pypi]\nroot = "curator-root.json"\n'),
        "disagrees with the policy's repositories.pypi.root",
    ),
    (
        "misspelt key",
        GOOD.replace("min-score", "min_score"),
        "mapping[0].min_score: unknown key",
    ),
    (
        "root file missing",
        GOOD.replace('root = "curator-root.json"', 'root = "absent.json"'),
        "repositories.curator.root: cannot read",
    ),
    (
        "root pin mismatch",
        GOOD.replace(
            'root = "curator-root.json"', f'root = "curator-root.json"\nroot-sha256 = "{"0" * 64}"'
        ),
        "repositories.curator.root-sha256: ",
    ),
    ("no mapping", GOOD.split("[[mapping]]", maxsplit=1)[0], "mapping: no mapping"),
]


@pytest.mark.parametrize(
    ("text", "message"), [case[1:] for case in BAD_POLICIES], ids=[c[0] for c in BAD_POLICIES]
)
def test_bad_policy(
    penv: PolicyEnv, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    """Every bad policy is a configuration error (exit 2) whose one line names the
    key, before anything is fetched or written."""
    penv.add_repo("pypi", CONTENT)
    penv.add_repo("curator", CONTENT)
    penv.write_policy(text)
    penv.server.clear_log()
    assert penv.run() == ExitStatus.USAGE
    lines = [line for line in capsys.readouterr().err.splitlines() if "FAILED" in line]
    assert len(lines) == 1
    assert message in lines[0]
    assert not penv.dest.exists()
    assert penv.server.requests == []


def test_bad_map_json_threshold(penv: PolicyEnv, capsys: pytest.CaptureFixture[str]) -> None:
    """A map.json threshold above the number of repositories is unreachable: exit 2."""
    penv.add_repo("pypi", CONTENT)
    penv.write_policy(
        json.dumps(
            {
                "repositories": {"pypi": [penv.url("pypi")]},
                "mapping": [{"paths": ["*"], "repositories": ["pypi"], "threshold": 2}],
            }
        ),
        filename="map.json",
    )
    assert penv.run() == ExitStatus.USAGE
    assert "mapping[0].threshold: 2 is unreachable" in capsys.readouterr().err


def test_transient_failure_at_a_curator_converges(penv: PolicyEnv) -> None:
    """A curator answering 503 for its new snapshot: exit 3, nothing published (not
    even the other repositories' metadata); the next run publishes what the first
    would have, and the target the curator's change unlocks."""
    from tuf_mirror_testing.server import Fault

    weights_env(penv)
    assert penv.run() == ExitStatus.OK
    before = tree(penv.dest)
    penv.repos["team-b"].add_target(CONTESTED, CONTENT[CONTESTED])
    penv.publish("team-b")
    penv.repos["curator"].add_target("files/unrelated.txt", b"x")
    penv.publish("curator")
    penv.server.faults.add("/team-b/metadata/2.snapshot.json", Fault.status(503))
    assert penv.run() == ExitStatus.TRANSIENT
    assert_published_unchanged(before, tree(penv.dest))
    penv.server.faults.clear()
    assert penv.run() == ExitStatus.OK
    assert penv.published(CONTESTED)
    for name in ("curator", "team-b"):
        published = penv.dest / "repositories" / name / "metadata"
        assert (published / "timestamp.json").read_bytes() == (
            penv.base / name / "metadata/timestamp.json"
        ).read_bytes()


def test_failure_after_the_secondaries_published_converges(
    penv: PolicyEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that fails after publishing the curators' metadata but before the
    primary's (here a storage failure; a kill at that instant alike) leaves the
    primary's published state whole; the rerun, which finds the curators' metadata
    already up to date, still re-decides the paths their votes touched."""
    from mirror.errors import StorageError
    from mirror.sync import Synchronizer

    weights_env(penv)
    assert penv.run() == ExitStatus.OK
    primary_before = {k: v for k, v in tree(penv.dest).items() if k.startswith("metadata/")}
    penv.repos["team-b"].add_target(CONTESTED, CONTENT[CONTESTED])
    penv.publish("team-b")
    original = Synchronizer._publish
    calls: list[str] = []

    async def failing(self: Synchronizer, *args: Any) -> None:
        if type(self) is Synchronizer and not calls:
            calls.append("failed")
            raise StorageError("disk full (injected)")
        await original(self, *args)

    monkeypatch.setattr(Synchronizer, "_publish", failing)
    assert penv.run() == ExitStatus.TRANSIENT
    after = tree(penv.dest)
    assert {k: v for k, v in after.items() if k.startswith("metadata/")} == primary_before
    assert (
        after["repositories/team-b/metadata/timestamp.json"]
        == (penv.base / "team-b/metadata/timestamp.json").read_bytes()
    )
    assert penv.run() == ExitStatus.OK
    assert penv.published(CONTESTED)
    assert penv.held_back() == {}


def test_primary_from_the_policy_alone(penv: PolicyEnv) -> None:
    """The primary's upstream and pinned root may come from the policy instead of
    --upstream / --root (and agree with them when both are given)."""
    from mirror.cli import main

    penv.add_repo("pypi", CONTENT)
    penv.add_repo("curator", {AGREED: CONTENT[AGREED]})
    penv.write_policy(
        GOOD.replace(
            "[repositories.pypi]\n",
            '[repositories.pypi]\nupstream = "{url}/pypi/"\nroot = "pypi-root.json"\n',
        )
    )
    assert penv.policy is not None
    args = ["sync", "--dest", str(penv.dest), "--policy", str(penv.policy)]
    assert main([*args, "--report", str(penv.conf / "report.json")]) == ExitStatus.OK
    assert penv.published(AGREED)
    assert not penv.published(CONTESTED)
    assert penv.run() == ExitStatus.OK  # with --root and --upstream as well: they agree
