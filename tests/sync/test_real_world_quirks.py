"""What real upstreams do that generated ones did not (issue 9): roles the snapshot
lists but nobody delegates to, old roots that cannot be parsed strictly, a
``root.json`` the upstream may or may not serve, 403 for absent files, HTML instead
of metadata, a wrong ``--root``, and replays at a chosen ``--reference-time``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mirror.errors import ExitStatus
from mirror.trust._verify import fast_canonical_signed
from tests.sync.conftest import Env, make_repo, tree
from tuf_mirror_testing.repo import Repository
from tuf_mirror_testing.server import Fault, serve_directory


def _report(env: Env, command: str = "sync", *extra: str) -> tuple[int, dict[str, Any]]:
    path = env.dest.parent / "report.json"
    status = env.run(command, "--report", str(path), *extra)
    return status, json.loads(path.read_text())


def test_roles_no_delegation_reaches_are_counted_never_fetched(env: Env) -> None:
    """A role the snapshot lists after its delegation was removed (and that the
    upstream no longer serves) is neither fetched nor published; the run succeeds and
    the report names it in ``unreachable_roles``. Incremental runs stay quiet too."""
    env.repo.add_delegation("targets", "orphan", paths=["orphan/*"])
    env.publish()
    delegations = env.repo.targets.signed.delegations
    assert delegations is not None
    assert delegations.roles is not None
    del delegations.roles["orphan"]
    env.repo.mark_changed("targets")
    env.publish()
    for path in (env.upstream / "metadata").glob("*.orphan.json"):
        path.unlink()
    assert "orphan.json" in env.repo.snapshot.signed.meta

    status, report = _report(env)
    assert status == ExitStatus.OK, report["error"]
    assert report["unreachable_roles"] == ["orphan"]
    assert not [p for p in env.requested() if "orphan" in p]
    assert not [name for name in tree(env.dest) if "orphan" in name]

    env.repo.add_target("files/new.txt", b"new\n")
    env.publish()
    status, report = _report(env)
    assert status == ExitStatus.OK, report["error"]
    assert report["unreachable_roles"] == ["orphan"]
    assert not [p for p in env.requested() if "orphan" in p]


def _resign_with_expiry(repo: Repository, version: int, expires: str) -> bytes:
    """Root ``version`` with an ``expires`` value python-tuf cannot parse (as in
    sigstore's first roots), signed again by that version's own root keys."""
    document = json.loads(repo.root_bytes(version))
    document["signed"]["expires"] = expires
    unsigned = json.dumps({"signed": document["signed"], "signatures": []}).encode()
    payload = fast_canonical_signed(unsigned)
    assert payload is not None
    document["signatures"] = [signer.sign(payload).to_dict() for signer in repo.signers["root"]]
    return json.dumps(document, indent=1).encode()


def test_pre_pin_root_that_python_tuf_cannot_parse_is_mirrored_when_authentic(
    tmp_path: Path,
) -> None:
    """Pinning root v3 of an upstream whose 1.root.json has sigstore's fractional,
    offset expiry: the first sync succeeds and mirrors it byte-identical, since its
    keys signed itself and v2. An old root that cannot be shown authentic (here v1
    re-signed by a stranger) is skipped with a warning, counted, and the run still
    succeeds with v2 and v3."""
    repo = make_repo()
    upstream = tmp_path / "up"
    repo.publish(upstream)
    repo.bump_root()
    repo.publish(upstream)
    repo.bump_root()
    repo.publish(upstream)
    odd = _resign_with_expiry(repo, 1, "2021-12-18T13:28:12.99008-06:00")
    (upstream / "metadata" / "1.root.json").write_bytes(odd)
    root_file = tmp_path / "root.json"
    root_file.write_bytes(repo.root_bytes(3))
    with serve_directory(upstream) as server:
        env = Env(repo, upstream, server, root_file, tmp_path / "dest")
        status, report = _report(env)
        assert status == ExitStatus.OK, report["error"]
        assert report["root_history_skipped"] == 0
        assert (env.dest / "metadata" / "1.root.json").read_bytes() == odd

        stranger = Repository()
        document = json.loads(odd)
        payload = fast_canonical_signed(odd)
        assert payload is not None
        document["signatures"] = [s.sign(payload).to_dict() for s in stranger.signers["root"]]
        (upstream / "metadata" / "1.root.json").write_bytes(json.dumps(document).encode())
        env2 = Env(repo, upstream, server, root_file, tmp_path / "dest2")
        status, report = _report(env2)
        assert status == ExitStatus.OK, report["error"]
        assert report["root_history_skipped"] == 1
        assert any("root versions 1..1 not mirrored" in w for w in report["warnings"])
        assert not (env2.dest / "metadata" / "1.root.json").exists()
        assert (env2.dest / "metadata" / "2.root.json").read_bytes() == repo.root_bytes(2)


def test_no_root_json_unless_the_upstream_serves_that_verified_root(env: Env) -> None:
    """The destination gets ``metadata/root.json`` only when the upstream serves one
    whose bytes are a verified root version; an upstream without it (tuf-on-ci
    sites) gets none invented, and one serving other bytes gets none copied."""
    (env.upstream / "metadata" / "root.json").unlink()
    assert env.run() == ExitStatus.OK
    assert not (env.dest / "metadata" / "root.json").exists()

    env.repo.bump_root()
    env.publish()
    (env.upstream / "metadata" / "root.json").write_bytes(env.repo.root_bytes(1))
    status, report = _report(env)
    assert status == ExitStatus.OK, report["error"]
    # v1 is a verified root version: it is what this upstream serves as root.json
    assert (env.dest / "metadata" / "root.json").read_bytes() == env.repo.root_bytes(1)

    env.repo.bump_root()
    env.publish()
    (env.upstream / "metadata" / "root.json").write_bytes(b'{"signed": {}, "signatures": []}')
    status, report = _report(env)
    assert status == ExitStatus.OK, report["error"]
    assert (env.dest / "metadata" / "root.json").read_bytes() == env.repo.root_bytes(1)
    assert any("root.json is no verified root version" in w for w in report["warnings"])


def test_403_for_the_next_root_means_no_newer_root(env: Env) -> None:
    """CloudFront with origin access control (and S3 without ListBucket) answer 403
    for a key that does not exist: probing N+1.root.json, that is "no newer root"
    (as python-tuf treats it), so a mirror chained off such a mirror works."""
    env.server.faults.add("/metadata/*.root.json", Fault.status(403))
    assert env.run() == ExitStatus.OK
    assert (env.dest / "metadata" / "timestamp.json").exists()
    env.repo.add_target("files/more.txt", b"more\n")
    env.publish()
    assert env.run() == ExitStatus.OK
    assert env.requested()[0] == "/metadata/2.root.json"


def test_html_instead_of_metadata_says_so(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """An upstream that answers 200 with an HTML page for timestamp.json (a wrong
    --upstream, a CDN error page) is named as such: on a first sync a configuration
    error (exit 2), once something is published bytes nobody signed (exit 1); the
    destination is unchanged either way."""
    page = b"<!DOCTYPE html><html><body>Not here</body></html>"
    rule = env.server.faults.add("/metadata/timestamp.json", Fault.replace(page))
    assert env.run() == ExitStatus.USAGE
    err = capsys.readouterr().err
    assert "/metadata/timestamp.json returned HTML, not TUF metadata: check --upstream" in err
    assert tree(env.dest) == {}
    env.server.faults.remove(rule)
    assert env.run() == ExitStatus.OK
    before = tree(env.dest, internal=True)
    env.repo.add_target("files/more.txt", b"more\n")
    env.publish()
    env.server.faults.add("/metadata/2.snapshot.json", Fault.replace(page))
    assert env.run() == ExitStatus.VERIFICATION_FAILED
    assert "/metadata/2.snapshot.json returned HTML, not TUF metadata" in capsys.readouterr().err
    assert tree(env.dest, internal=True) == before


def test_exit_classes_of_configuration_mistakes(
    env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --root that is not JSON, or JSON that is no TUF root, and an upstream with no
    timestamp.json on a first sync are configuration errors (exit 2), each naming
    what is wrong; a timestamp.json gone from an upstream already mirrored is
    transient (exit 3)."""
    good = env.root_file.read_bytes()
    env.root_file.write_bytes(b"<html>not a root</html>")
    assert env.run() == ExitStatus.USAGE
    assert f"--root {env.root_file}: not valid TUF metadata" in capsys.readouterr().err
    env.root_file.write_bytes(env.repo.metadata_bytes("timestamp"))
    assert env.run() == ExitStatus.USAGE
    assert "_type is 'timestamp', expected 'root'" in capsys.readouterr().err
    env.root_file.write_bytes(good)

    rule = env.server.faults.add("/metadata/timestamp.json", Fault.status(404))
    assert env.run() == ExitStatus.USAGE
    assert "the upstream has no timestamp.json" in capsys.readouterr().err
    assert tree(env.dest) == {}
    env.server.faults.remove(rule)
    assert env.run() == ExitStatus.OK
    env.server.faults.add("/metadata/timestamp.json", Fault.status(404))
    assert env.run() == ExitStatus.TRANSIENT


def test_verification_errors_name_the_url(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """A snapshot that does not verify is reported with its URL and the check that
    failed (here: the length the timestamp signed)."""
    forged = env.repo.forge("snapshot", lambda m: setattr(m.signed, "version", 1), signers=[])
    env.server.faults.add("/metadata/1.snapshot.json", Fault.replace(forged))
    assert env.run() == ExitStatus.VERIFICATION_FAILED
    err = capsys.readouterr().err
    assert f"{env.server.url}/metadata/1.snapshot.json: snapshot" in err
    assert "differs from signed length" in err


@pytest.fixture
def expired(tmp_path: Path) -> Any:
    """A repository whose every file expired on 2020-01-01, served on 127.0.0.1."""
    repo = Repository(expires=datetime(2020, 1, 1, tzinfo=UTC))
    repo.add_target("files/a.txt", b"a\n")
    upstream = tmp_path / "up"
    repo.publish(upstream)
    root_file = tmp_path / "root.json"
    root_file.write_bytes(repo.root_bytes(1))
    with serve_directory(upstream) as server:
        yield Env(repo, upstream, server, root_file, tmp_path / "dest")


def test_reference_time_on_sync_plan_verify_and_export(
    expired: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--reference-time`` (or ``TUF_MIRROR_REFERENCE_TIME``) is the clock of every
    expiry check of sync, plan, verify and export: a repository that expired in 2020
    fails each of them today and passes at a time it was valid."""
    then = "2019-12-01T00:00:00Z"
    assert expired.run("plan") == ExitStatus.VERIFICATION_FAILED
    assert expired.run("plan", "--reference-time", then) == ExitStatus.OK
    assert expired.run("sync") == ExitStatus.VERIFICATION_FAILED
    assert tree(expired.dest) == {}
    monkeypatch.setenv("TUF_MIRROR_REFERENCE_TIME", then)
    assert expired.run("sync") == ExitStatus.OK
    monkeypatch.delenv("TUF_MIRROR_REFERENCE_TIME")
    assert "metadata/timestamp.json" in tree(expired.dest)

    from mirror.cli import main

    report = tmp_path / "verify.json"
    verify = ["verify", "--root", str(expired.root_file), "--dest", str(expired.dest)]
    # Clients refuse expired top-level metadata: verify fails (exit 1) and says so.
    assert main([*verify, "--report", str(report)]) == ExitStatus.VERIFICATION_FAILED
    assert any("expired at" in e for e in json.loads(report.read_text())["expired_top_level"])
    assert main([*verify, "--report", str(report), "--reference-time", then]) == ExitStatus.OK
    assert json.loads(report.read_text())["warnings"] == []

    export = [
        "export",
        "--root", str(expired.root_file),
        "--upstream", expired.server.url,
        "--state-dir", str(tmp_path / "state"),
        "--full",
    ]  # fmt: skip
    assert main([*export, "--to", str(tmp_path / "b1")]) == ExitStatus.VERIFICATION_FAILED
    assert main([*export, "--to", str(tmp_path / "b2"), "--reference-time", then]) == 0


def test_reference_time_is_refused_when_not_a_time(env: Env) -> None:
    """A --reference-time that is not ISO 8601 is a usage error."""
    assert env.run("sync", "--reference-time", "yesterday") == ExitStatus.USAGE


def _oidc_key() -> Any:
    from mirror.trust._tuf import Key

    return Key.from_dict(
        "c0ffee" * 10 + "c0ff",
        {
            "keytype": "sigstore-oidc",
            "scheme": "Fulcio",
            "keyval": {"identity": "signer@example.org", "issuer": "https://example.org"},
        },
    )


def test_sigstore_oidc_keys_pass_through_where_the_threshold_does_not_need_them(
    env: Env,
) -> None:
    """A root listing a ``sigstore-oidc`` key besides the key that reaches its
    threshold (tuf-on-ci repositories do) parses and verifies: it is mirrored."""
    assert env.run() == ExitStatus.OK
    env.repo.root.signed.add_key(_oidc_key(), "root")
    env.repo.bump_root()
    env.publish()
    status, report = _report(env)
    assert status == ExitStatus.OK, report["error"]
    assert (env.dest / "metadata" / "2.root.json").read_bytes() == env.repo.root_bytes(2)


def test_a_role_only_sigstore_oidc_keys_can_sign_fails_closed(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    """A delegated role whose only key is ``sigstore-oidc`` cannot be verified
    without the sigstore library: exit 1 naming the role's URL, no metadata
    published (verified targets of other roles stay, unreferenced, for the rerun)."""
    role = env.repo.add_delegation("targets", "oidc", paths=["oidc/*"])
    key = _oidc_key()
    delegations = env.repo.targets.signed.delegations
    assert delegations is not None
    role.keyids = [key.keyid]
    delegations.keys[key.keyid] = key
    env.publish()
    assert env.run() == ExitStatus.VERIFICATION_FAILED
    assert "/metadata/1.oidc.json: oidc" in capsys.readouterr().err
    assert not [name for name in tree(env.dest) if name.startswith("metadata/")]


def test_a_re_serialized_old_root_keeps_the_published_bytes(tmp_path: Path) -> None:
    """The operator moves the pin to a newer root while the upstream has rewritten
    an old root file (sigstore re-serialized 9.root.json): the first sync of the new
    pin fetches the old versions again, keeps the published, verified bytes of the
    one it holds (invariant 9) and reports the difference."""
    repo = make_repo()
    upstream = tmp_path / "up"
    repo.publish(upstream)
    repo.bump_root()
    repo.publish(upstream)
    root_file = tmp_path / "root.json"
    root_file.write_bytes(repo.root_bytes(1))
    with serve_directory(upstream) as server:
        env = Env(repo, upstream, server, root_file, tmp_path / "dest")
        assert env.run() == ExitStatus.OK
        published_one = (env.dest / "metadata" / "1.root.json").read_bytes()
        # The upstream re-serializes 1.root.json (same signed content, new layout),
        # a new root appears, and the operator pins it without the mirror holding it.
        rewritten = json.dumps(json.loads(published_one), indent=4).encode()
        assert rewritten != published_one
        (upstream / "metadata" / "1.root.json").write_bytes(rewritten)
        repo.bump_root()
        repo.publish(upstream)
        (env.dest / "metadata" / "2.root.json").unlink()
        root_file.write_bytes(repo.root_bytes(3))
        status, report = _report(env)
        assert status == ExitStatus.OK, report["error"]
        assert (env.dest / "metadata" / "1.root.json").read_bytes() == published_one
        assert (env.dest / "metadata" / "2.root.json").read_bytes() == repo.root_bytes(2)
        assert any("other bytes for 1.root.json" in w for w in report["warnings"])
