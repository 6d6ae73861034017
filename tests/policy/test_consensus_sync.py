"""End-to-end: a sync under a trust policy with several repositories on 127.0.0.1."""

from __future__ import annotations

from mirror.errors import ExitStatus
from tests.policy.conftest import AGREED, CONTENT, CONTESTED, PolicyEnv, weights_env
from tests.sync.conftest import tree
from tests.sync.test_hostile import assert_published_unchanged


def test_weights_boundary(penv: PolicyEnv) -> None:
    """0.5 + 1.0 + 2.0 = 3.5 is held back (absent, reported with score and missing
    votes, exit 0); 0.5 + 1.0 + 2.0 + 2.0 = 5.5 reaches min-score 5.5 and is
    published. The primary's metadata is mirrored whole, every other repository's
    under DEST/repositories/<name>/."""
    weights_env(penv)
    assert penv.run() == ExitStatus.OK
    assert penv.published(AGREED)
    assert not penv.published(CONTESTED)
    held = penv.held_back()
    assert set(held) == {CONTESTED}
    assert held[CONTESTED]["score"] == 3.5
    assert held[CONTESTED]["min_score"] == 5.5
    assert held[CONTESTED]["missing"] == ["team-b"]
    report = penv.report()
    assert report["targets_held_back"] == 1
    assert report["policy"]["mappings"][0]["published"] == 1
    assert report["policy"]["mappings"][0]["held_back"] == 1
    pypi_meta = penv.repos["pypi"].metadata_files()
    for name, data in pypi_meta.items():
        assert (penv.dest / name).read_bytes() == data, name
    for name in ("curator", "team-a", "team-b"):
        published = penv.dest / "repositories" / name / "metadata"
        for file, data in penv.repos[name].metadata_files().items():
            assert (published / file.removeprefix("metadata/")).read_bytes() == data
        assert not (penv.dest / "repositories" / name / "targets").exists()
    # Bookkeeping stays out of clients' sight.
    assert (penv.dest / ".tuf-mirror" / "repositories" / "curator" / "state.json").exists()
    assert not (penv.dest / "repositories" / "curator" / ".tuf-mirror").exists()


def test_held_back_published_when_curator_adds_it(penv: PolicyEnv) -> None:
    """A held-back target is published by the run in which team-b adds it (its
    score reaches 5.5), although the primary did not change; earlier runs with
    nothing new keep it held back."""
    weights_env(penv)
    assert penv.run() == ExitStatus.OK
    assert penv.run() == ExitStatus.OK
    assert not penv.published(CONTESTED)
    assert set(penv.held_back()) == {CONTESTED}
    penv.repos["team-b"].add_target(CONTESTED, CONTENT[CONTESTED])
    penv.publish("team-b")
    assert penv.run() == ExitStatus.OK
    assert penv.published(CONTESTED)
    assert penv.held_back() == {}
    assert penv.report()["targets_fetched"] == 1
    assert penv.report()["nothing_new"] is False
    metrics = penv.conf / "metrics.prom"
    assert penv.run("sync", "--metrics-file", str(metrics)) == ExitStatus.OK
    assert f'tuf_mirror_targets_held_back{{dest="{penv.dest}"}} 0.0' in metrics.read_text()
    # And the next run has nothing to do.
    assert penv.run() == ExitStatus.OK
    assert penv.report()["targets_fetched"] == 0


def test_one_operator_counts_once(penv: PolicyEnv) -> None:
    """team-a and team-b run by one operator cast one vote: with min-score 3.5, a
    target vouched for by pypi, team-a and team-b scores 0.5 + 2.0 = 2.5 (not 4.5)
    and is held back; with the curator too it scores 3.5 and is published."""
    penv.add_repo("pypi", CONTENT)
    penv.add_repo("curator", {AGREED: CONTENT[AGREED]})
    penv.add_repo("team-a", CONTENT)
    penv.add_repo("team-b", CONTENT)
    from tests.policy.conftest import WEIGHTS_POLICY

    penv.write_policy(
        WEIGHTS_POLICY.replace("{operator_a}", "acme")
        .replace("{operator_b}", "acme")
        .replace("{min_score}", "3.5")
    )
    assert penv.run() == ExitStatus.OK
    assert penv.published(AGREED)
    assert not penv.published(CONTESTED)
    held = penv.held_back()[CONTESTED]
    assert held["score"] == 2.5
    assert held["missing"] == ["curator"]


REQUIRED_POLICY = """
primary = "pypi"
[repositories.pypi]
weight = 0.5
[repositories.django-project]
upstream = "{url}/django-project"
root = "django-project-root.json"
[repositories.curator]
upstream = "{url}/curator"
root = "curator-root.json"
[[mapping]]
paths = ["django/*", "django-*/*"]
repositories = ["pypi", "django-project", "curator"]
min-score = 1.5
required = ["django-project"]
terminating = true
[[mapping]]
paths = ["*"]
repositories = ["pypi", "curator"]
min-score = 1.5
"""


def test_required_repository_missing(penv: PolicyEnv) -> None:
    """pypi + curator score 1.5 for django/x.tgz, but the required django-project
    does not list it: held back, while the catch-all mapping (a terminating first
    mapping stops the search) publishes files/agreed.txt. Once django-project signs
    the same file, it is published."""
    django = {"django/django-5.0.tgz": b"django release\n" * 30}
    penv.add_repo("pypi", {**django, AGREED: CONTENT[AGREED]})
    penv.add_repo("curator", {**django, AGREED: CONTENT[AGREED]})
    penv.add_repo("django-project", {"django/other.tgz": b"other"})
    penv.write_policy(REQUIRED_POLICY)
    assert penv.run() == ExitStatus.OK
    assert penv.published(AGREED)
    assert not penv.published("django/django-5.0.tgz")
    held = penv.held_back()["django/django-5.0.tgz"]
    assert held["mapping"] == 0
    assert held["score"] == 1.5
    assert "django-project" in held["reason"]
    assert held["missing"] == ["django-project"]
    penv.repos["django-project"].add_target(
        "django/django-5.0.tgz", django["django/django-5.0.tgz"]
    )
    penv.publish("django-project")
    assert penv.run() == ExitStatus.OK
    assert penv.published("django/django-5.0.tgz")


CONFLICT_POLICY = """
primary = "pypi"
[repositories.pypi]
[repositories.curator]
upstream = "{url}/curator"
root = "curator-root.json"
[repositories.team-a]
upstream = "{url}/team-a"
root = "team-a-root.json"
[repositories.team-b]
upstream = "{url}/team-b"
root = "team-b-root.json"
[[mapping]]
paths = ["*"]
repositories = ["pypi", "curator", "team-a", "team-b"]
min-score = 2
"""


def test_two_groups_reach_the_score(penv: PolicyEnv) -> None:
    """pypi + curator vouch for one file, team-a + team-b for another under the same
    path, both groups score 2: a conflict, exit 1, the conflict in the report, and
    nothing new published (the destination is unchanged)."""
    penv.add_repo("pypi", {AGREED: CONTENT[AGREED]})
    penv.add_repo("curator", {AGREED: CONTENT[AGREED]})
    penv.add_repo("team-a", {AGREED: CONTENT[AGREED]})
    penv.add_repo("team-b", {AGREED: CONTENT[AGREED]})
    penv.write_policy(CONFLICT_POLICY)
    assert penv.run() == ExitStatus.OK
    before = tree(penv.dest)
    new = CONTESTED
    penv.repos["pypi"].add_target(new, b"the index's file")
    penv.repos["curator"].add_target(new, b"the index's file")
    penv.repos["team-a"].add_target(new, b"another file")
    penv.repos["team-b"].add_target(new, b"another file")
    for name in ("pypi", "curator", "team-a", "team-b"):
        penv.publish(name)
    assert penv.run() == ExitStatus.VERIFICATION_FAILED
    assert_published_unchanged(before, tree(penv.dest))
    report = penv.report()
    assert "PolicyConflictError" in report["error"]
    assert "pypi+curator and team-a+team-b reach the score" in report["error"]
    (conflict,) = report["policy"]["conflicts"]
    assert conflict["path"] == new
    assert sorted(tuple(g["repositories"]) for g in conflict["groups"]) == [
        ("pypi", "curator"),
        ("team-a", "team-b"),
    ]
    assert not penv.published(new)


def test_curator_removes_its_vote(penv: PolicyEnv) -> None:
    """team-b stops vouching for a published target: an alarm in the report (and a
    warning), never a deletion: the target stays published. The ledger exists (it
    always does), so it is also a witness alarm, VOUCH_WITHDRAWN: exit 6, with its
    evidence in the ledger."""
    weights_env(penv)
    assert penv.run() == ExitStatus.OK
    assert penv.published(AGREED)
    penv.repos["team-b"].remove_target(AGREED)
    penv.repos["team-b"].add_target("files/unrelated.txt", b"x")
    penv.publish("team-b")
    assert penv.run() == ExitStatus.WITNESS_ALARM
    (witnessed,) = penv.report()["alarms"]
    assert witnessed["type"] == "VOUCH_WITHDRAWN"
    assert witnessed["subject"] == AGREED
    assert witnessed["ledger"] == ["team-b"]
    evidence = penv.dest / ".tuf-mirror" / "ledger" / "evidence"
    assert any(evidence.glob("*-VOUCH_WITHDRAWN-*/alarm.json"))
    assert penv.published(AGREED)
    report = penv.report()
    (alarm,) = report["policy"]["alarms"]
    assert alarm["path"] == AGREED
    assert alarm["repositories"] == ["team-b"]
    assert any("no longer vouches" in warning for warning in report["warnings"])
    assert AGREED not in penv.held_back()


def test_plan_counts_per_mapping(penv: PolicyEnv, capsys: object) -> None:
    """``plan`` says, per mapping, how many targets would be published and held
    back, and writes nothing."""
    weights_env(penv)
    assert penv.run("plan") == ExitStatus.OK
    assert not penv.dest.exists() or not any(penv.dest.rglob("*.txt"))
    report = penv.report()
    assert report["policy"]["mappings"] == [
        {"paths": ["*"], "published": 1, "held_back": 1, "conflicts": 0}
    ]
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert "mapping 0 (*): 1 published, 1 held back" in err


def test_cost_follows_the_change(penv: PolicyEnv) -> None:
    """A run with nothing new anywhere costs, per repository, the probe for a next
    root version (404) and one conditional timestamp request (304). A change at one
    curator fetches that curator's new metadata only and re-decides only the paths
    it touches: no walk of the primary (its roles are read from the destination for
    the touched paths' lookups only), nothing from the primary's upstream."""
    weights_env(penv)
    assert penv.run() == ExitStatus.OK
    penv.server.clear_log()
    assert penv.run() == ExitStatus.OK
    requested = sorted((record.path, record.status) for record in penv.server.requests)
    assert requested == sorted(
        (f"/{name}/metadata/{file}", status)
        for name in ("pypi", "curator", "team-a", "team-b")
        for file, status in (("2.root.json", 404), ("timestamp.json", 304))
    )
    assert penv.report()["requests"] == len(requested)
    penv.repos["team-b"].add_target("files/unrelated.txt", b"x")
    penv.publish("team-b")
    penv.server.clear_log()
    assert penv.run() == ExitStatus.OK
    fetched = {record.path for record in penv.server.requests if record.status == 200}
    assert fetched == {
        "/team-b/metadata/timestamp.json",
        "/team-b/metadata/2.snapshot.json",
        "/team-b/metadata/2.targets.json",
    }
    assert not any(path.startswith("/pypi/targets/") for path in fetched)
    assert penv.report()["roles_verified"] == 0


def test_policy_change_re_decides_every_target(penv: PolicyEnv) -> None:
    """Lowering min-score in the policy file re-decides every target of the primary
    (nothing changed upstream): the held-back one is published."""
    weights_env(penv)
    assert penv.run() == ExitStatus.OK
    assert not penv.published(CONTESTED)
    assert penv.policy is not None
    penv.policy.write_text(penv.policy.read_text().replace("min-score = 5.5", "min-score = 3.5"))
    assert penv.run() == ExitStatus.OK
    assert penv.published(CONTESTED)
    assert penv.held_back() == {}
    assert penv.report()["targets_fetched"] == 1


def test_primary_change_decided_on_the_way(penv: PolicyEnv) -> None:
    """A new target of the primary is decided when the sync walks it: published when
    every party lists it, held back (and kept in the held-back list with the older
    one) otherwise. In the same run, a curator's new vote for an older held-back
    target (in a role the primary did or did not change) publishes it."""
    weights_env(penv)
    assert penv.run() == ExitStatus.OK
    for name in ("pypi", "curator", "team-a", "team-b"):
        penv.repos[name].add_target("files/new-1.txt", b"one")
        if name != "team-b":
            penv.repos[name].add_target("files/new-2.txt", b"two")
        penv.publish(name)
    assert penv.run() == ExitStatus.OK
    assert penv.published("files/new-1.txt")
    assert not penv.published("files/new-2.txt")
    assert set(penv.held_back()) == {CONTESTED, "files/new-2.txt"}
    penv.repos["pypi"].add_target("files/new-3.txt", b"three")
    penv.publish("pypi")
    penv.repos["team-b"].add_target(CONTESTED, CONTENT[CONTESTED])
    penv.repos["team-b"].add_target("files/new-2.txt", b"two")
    penv.publish("team-b")
    assert penv.run() == ExitStatus.OK
    assert penv.published(CONTESTED)
    assert penv.published("files/new-2.txt")
    assert not penv.published("files/new-3.txt")
    assert set(penv.held_back()) == {"files/new-3.txt"}


def test_conflict_publishes_no_held_back_target(penv: PolicyEnv) -> None:
    """A held-back target whose score is reached in a run that also finds a conflict
    is not copied: its copy alone would publish it (the primary's published metadata
    already lists it), and a conflict publishes nothing new. Once the conflict is
    resolved, the next run publishes it."""
    penv.add_repo("pypi", CONTENT)
    penv.add_repo("curator", {AGREED: CONTENT[AGREED]})
    penv.add_repo("team-a", {AGREED: CONTENT[AGREED]})
    penv.add_repo("team-b", {AGREED: CONTENT[AGREED]})
    penv.write_policy(CONFLICT_POLICY)
    assert penv.run() == ExitStatus.OK
    assert set(penv.held_back()) == {CONTESTED}
    before = tree(penv.dest)
    penv.repos["curator"].add_target(CONTESTED, CONTENT[CONTESTED])
    disputed = "files/disputed.txt"
    for name, data in (("pypi", b"x"), ("curator", b"x"), ("team-a", b"y"), ("team-b", b"y")):
        penv.repos[name].add_target(disputed, data)
        penv.publish(name)
    assert penv.run() == ExitStatus.VERIFICATION_FAILED
    assert_published_unchanged(before, tree(penv.dest))
    assert not penv.published(CONTESTED)
    for name in ("team-a", "team-b"):
        penv.repos[name].add_target(disputed, b"x")
        penv.publish(name)
    assert penv.run() == ExitStatus.OK
    assert penv.published(CONTESTED)
    assert penv.published(disputed)
