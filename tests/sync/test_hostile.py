"""Hostile upstreams and faults: each case asserts the exit status AND that the
destination is byte-identical before and after (or converges after a rerun)."""

from __future__ import annotations

import hashlib
import shutil
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mirror.errors import ExitStatus
from tests.sync.conftest import Env, synced_then_one_added, tree
from tuf_mirror_testing.repo import generate_signer, metadata_file_name, tamper_published
from tuf_mirror_testing.server import Fault


def synced_then_changed(env: Env) -> tuple[dict[str, bytes], str, list[str]]:
    """Sync once, then add two targets upstream; returns (dest tree, a changed bin,
    the new target files)."""
    assert env.run() == ExitStatus.OK
    before = tree(env.dest)
    env.repo.add_target("files/extra-1.txt", b"extra one")
    env.repo.add_target("files/extra-2.txt", b"extra two")
    written = env.publish()
    changed_bin = env.repo.role_for_target("files/extra-1.txt")
    return before, changed_bin, [w for w in written if w.startswith("targets/")]


def assert_published_unchanged(before: dict[str, bytes], after: dict[str, bytes]) -> None:
    """The published state is byte-identical: every file is still there with the
    same bytes and no metadata was added. The only files a failed run may leave are
    verified, not yet referenced, content-addressed targets (kept so the next run
    does not download them again): each must hash to the digest in its name."""
    assert {k: v for k, v in after.items() if k in before} == before, "a file changed"
    assert before.keys() <= after.keys(), "a published file disappeared"
    for name in after.keys() - before.keys():
        assert name.startswith("targets/"), f"{name} was published by a failed run"
        digest = name.rsplit("/", 1)[-1].split(".", 1)[0]
        assert hashlib.sha256(after[name]).hexdigest() == digest, f"{name} is unverified"


def assert_refused(env: Env, before: dict[str, bytes], status: int) -> None:
    assert env.run() == status
    assert_published_unchanged(before, tree(env.dest))


def test_forged_target_bytes(env: Env) -> None:
    """A target whose bytes differ from the signed hashes: exit 1, nothing published."""
    before, _, new_targets = synced_then_changed(env)
    tamper_published(env.upstream, new_targets[0], lambda data: data[:-1] + b"X")
    assert_refused(env, before, ExitStatus.VERIFICATION_FAILED)


def test_forged_role(env: Env) -> None:
    """A delegated role signed by a key its delegator did not name: exit 1."""
    assert env.run() == ExitStatus.OK
    before = tree(env.dest)
    path = "files/extra-1.txt"
    env.repo.add_target(path, b"extra")
    changed_bin = env.repo.role_for_target(path)
    env.repo.sign_next_commit_with(changed_bin, [generate_signer()])
    env.publish()
    assert_refused(env, before, ExitStatus.VERIFICATION_FAILED)


def test_rollback_of_timestamp(env: Env) -> None:
    """An upstream serving an older timestamp than the mirror published: exit 1."""
    old_timestamp = env.repo.metadata_bytes("timestamp")
    env.repo.add_target("files/extra.txt", b"x")
    env.publish()
    assert env.run() == ExitStatus.OK
    before = tree(env.dest)
    (env.upstream / "metadata/timestamp.json").write_bytes(old_timestamp)
    assert_refused(env, before, ExitStatus.VERIFICATION_FAILED)


def test_freeze_expired_timestamp(env: Env) -> None:
    """An expired (but validly signed) new timestamp: exit 1, nothing published."""
    assert env.run() == ExitStatus.OK
    before = tree(env.dest)
    env.repo.add_target("files/extra.txt", b"x")
    env.repo.set_expiry("timestamp", datetime.now(UTC) - timedelta(days=1))
    env.publish()
    assert_refused(env, before, ExitStatus.VERIFICATION_FAILED)


def test_endless_timestamp(env: Env) -> None:
    """An endless timestamp.json is cut at the cap: exit 1, nothing published."""
    assert env.run() == ExitStatus.OK
    before = tree(env.dest)
    env.server.faults.add("/metadata/timestamp.json", Fault.endless())
    assert_refused(env, before, ExitStatus.VERIFICATION_FAILED)


def test_endless_target(env: Env) -> None:
    """A target served with more bytes than signed is cut at the signed length."""
    before, _, new_targets = synced_then_changed(env)
    env.server.faults.add("/" + new_targets[0], Fault.endless())
    assert_refused(env, before, ExitStatus.VERIFICATION_FAILED)


def test_mix_and_match_role_version(env: Env) -> None:
    """A snapshot naming bin version N while N.bin.json holds an older version: exit 1."""
    before, changed_bin, _ = synced_then_changed(env)
    version = env.repo.version(changed_bin)
    old = env.repo.metadata_bytes(changed_bin, version - 1)
    (env.upstream / "metadata" / metadata_file_name(changed_bin, version)).write_bytes(old)
    assert_refused(env, before, ExitStatus.VERIFICATION_FAILED)


def test_target_path_escaping_dest(env: Env) -> None:
    """A signed target path with ``..`` is a verification error, never a write outside
    the destination."""
    assert env.run() == ExitStatus.OK
    before = tree(env.dest)
    env.repo.add_target("../../escaped.txt", b"evil", role="targets")
    env.publish()
    assert_refused(env, before, ExitStatus.VERIFICATION_FAILED)
    assert not (env.dest.parent / "escaped.txt").exists()


def test_tampered_destination_is_detected(env: Env) -> None:
    """A destination whose published snapshot was altered: exit 1, nothing written."""
    assert env.run() == ExitStatus.OK
    snapshot = env.dest / "metadata" / f"{env.repo.version('snapshot')}.snapshot.json"
    snapshot.write_bytes(snapshot.read_bytes().replace(b'"version"', b'"version" '))
    before = tree(env.dest)
    env.repo.add_target("files/extra.txt", b"x")
    env.publish()
    assert_refused(env, before, ExitStatus.VERIFICATION_FAILED)


def test_upstream_500s_exit_3(env: Env) -> None:
    """Persistent 500s on a target: retried, then exit 3 with the destination intact;
    a rerun after the upstream recovers converges. The new targets go out in one
    pipelined batch first, whose failed answer is not an attempt of ``--retries``."""
    before, _, new_targets = synced_then_changed(env)
    env.server.faults.add("/" + new_targets[0], Fault.status(500))
    assert_refused(env, before, ExitStatus.TRANSIENT)
    hits = [p for p in env.requested() if p == "/" + new_targets[0]]
    assert len(hits) == 1 + 2  # the pipelined batch, then --retries 2 alone
    env.server.faults.clear()
    assert env.run() == ExitStatus.OK
    assert tree(env.dest) == tree(env.upstream)


def test_transient_500_then_success(env: Env) -> None:
    """One 500 then success: the run succeeds."""
    _, _, new_targets = synced_then_changed(env)
    env.server.faults.add("/" + new_targets[0], Fault.status(500), times=1)
    assert env.run() == ExitStatus.OK
    assert tree(env.dest) == tree(env.upstream)


def test_connection_reset_exit_3(env: Env) -> None:
    """Connection resets on the snapshot: exit 3, destination intact."""
    before, _, _ = synced_then_changed(env)
    env.server.faults.add("/metadata/*.snapshot.json", Fault.reset())
    assert_refused(env, before, ExitStatus.TRANSIENT)


def test_missing_role_version_restarts_then_exit_3(env: Env) -> None:
    """A snapshot naming a role file that is not there (404): the run restarts from a
    fresh timestamp a bounded number of times, then exits 3 with nothing published."""
    before, changed_bin, _ = synced_then_changed(env)
    version = env.repo.version(changed_bin)
    (env.upstream / "metadata" / metadata_file_name(changed_bin, version)).unlink()
    assert_refused(env, before, ExitStatus.TRANSIENT)
    assert env.requested().count("/metadata/timestamp.json") == 4


def test_unwritable_destination_exit_3(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """A destination that cannot be written (ENOSPC): exit 3, a clear error, nothing
    half-published; a rerun once space is back converges."""
    import errno
    import os

    before, _, _ = synced_then_changed(env)
    real_replace, real_link = os.replace, os.link

    def refusing(real: Any) -> Any:
        # The last step of a target's write: the rename of its temporary file, or
        # the link of its unnamed file (``atomic.write_new``).
        def call(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
            if "targets" in str(dst):
                raise OSError(errno.ENOSPC, "No space left on device")
            real(src, dst, *args, **kwargs)

        return call

    monkeypatch.setattr(os, "replace", refusing(real_replace))
    monkeypatch.setattr(os, "link", refusing(real_link))
    assert_refused(env, before, ExitStatus.TRANSIENT)
    monkeypatch.setattr(os, "replace", real_replace)
    monkeypatch.setattr(os, "link", real_link)
    assert env.run() == ExitStatus.OK
    assert tree(env.dest) == tree(env.upstream)


def test_second_run_is_locked_out(env: Env) -> None:
    """A run that finds the destination locked by a live run exits 4 and writes
    nothing."""
    import secrets

    from mirror.storage.lock import LOCK_KEY, LockInfo, ProcessIdentity

    now = datetime.now(UTC)
    held = LockInfo(
        owner="another run",
        process=ProcessIdentity.current(),  # this very (live) process
        created=now,
        expires=now + timedelta(hours=1),
        token=secrets.token_hex(8),
    )
    lock = env.dest / LOCK_KEY
    lock.parent.mkdir(parents=True)
    lock.write_bytes(held.to_json())
    assert env.run() == ExitStatus.LOCKED
    assert tree(env.dest) == {}
    assert lock.read_bytes() == held.to_json(), "the other run's lock was left alone"


def test_damaged_previous_role_only_costs_presence_checks(env: Env) -> None:
    """A published (old) role version that no longer parses, on a mirror whose
    ledger has no record of it (made before the ledger existed), is not trusted as
    the diff base: the run checks every target of the new version for presence
    instead, fetches only the new ones, and converges to the upstream's bytes. (With
    a record, it is TamperedDestinationError: tests/ledger/test_sync_ledger.py.)"""
    changed_bin, old_version, new_targets = synced_then_one_added(env)
    old_name = env.dest / "metadata" / metadata_file_name(changed_bin, old_version)
    old_name.write_bytes(b"not json")
    shutil.rmtree(env.dest / ".tuf-mirror" / "ledger")
    assert env.run() == ExitStatus.OK
    fetched = [p for p in env.requested() if p.startswith("/targets/")]
    assert fetched == ["/" + w for w in new_targets]
    upstream = tree(env.upstream)
    upstream[f"metadata/{metadata_file_name(changed_bin, old_version)}"] = b"not json"
    assert tree(env.dest) == upstream
