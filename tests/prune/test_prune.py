"""``tuf-mirror prune`` and ``sync --prune`` end to end on a local destination: a
mirror synced through several upstream changes, pruned, compared with the listing
computed from the upstream's metadata; dry runs, retention of the previous state
for a client in the middle of an update, orphans, and the lock."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest

from mirror.errors import ExitStatus
from mirror.storage.local import LocalStore
from mirror.storage.lock import acquire_lock
from tests.prune.conftest import (
    change,
    changed_mirror,
    client_fetch_all,
    client_start,
    files,
    run_local,
    state_listing,
)
from tests.sync.conftest import Env, tree

KEEP_ONE = ("--keep-states", "1", "--keep-for", "0")


def _report(capsys: pytest.CaptureFixture[str]) -> dict:
    out = capsys.readouterr().out
    return json.loads(out)


def test_keep_one_leaves_exactly_the_current_state_and_every_root(
    penv: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    """After removed/replaced targets, a new root, a role added, replaced and
    undelegated, ``prune --apply --keep-states 1 --keep-for 0`` leaves exactly the
    files of the current state plus every root version."""
    listings = changed_mirror(penv)
    before = files(penv.dest)
    assert before > listings[-1].keys  # there is something to prune
    capsys.readouterr()

    assert run_local(penv, "prune", *KEEP_ONE, "--apply", "--json") == ExitStatus.OK

    assert files(penv.dest) == listings[-1].keys
    report = _report(capsys)["prune"]
    assert report["applied"] is True
    assert report["states_retained"] == [penv.repo.version("timestamp")]
    assert sorted(report["deleted"]) == sorted(before - listings[-1].keys)
    assert report["deleted_files"] == len(before - listings[-1].keys)
    assert report["orphan_files"] == 0
    assert run_local(penv, "verify") == ExitStatus.OK


def test_dry_run_deletes_nothing_and_lists_what_apply_deletes(
    penv: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    """The dry run changes no file and names (with counts and bytes) exactly the
    files ``--apply`` then deletes; its text form prints them one a line."""
    changed_mirror(penv)
    before = tree(penv.dest, internal=True)
    capsys.readouterr()

    assert run_local(penv, "prune", *KEEP_ONE) == ExitStatus.OK
    printed = capsys.readouterr().out.splitlines()
    assert run_local(penv, "prune", *KEEP_ONE, "--json") == ExitStatus.OK
    dry = _report(capsys)["prune"]
    assert tree(penv.dest, internal=True) == before
    assert dry["applied"] is False
    assert dry["deleted_files"] == len(dry["deleted"]) > 0
    assert dry["deleted_bytes"] == sum(len(before[key]) for key in dry["deleted"])
    assert printed == [f"would delete {key}" for key in dry["deleted"]]

    assert run_local(penv, "prune", *KEEP_ONE, "--apply", "--json") == ExitStatus.OK
    applied = _report(capsys)["prune"]
    assert sorted(applied["deleted"]) == sorted(dry["deleted"])
    assert applied["deleted_bytes"] == dry["deleted_bytes"]
    gone = set(before) - set(tree(penv.dest, internal=True))
    assert gone - {k for k in gone if k.startswith(".tuf-mirror/")} == set(dry["deleted"])


async def test_keep_two_serves_a_client_that_started_from_the_previous_state(
    penv: Env,
) -> None:
    """With ``--keep-states 2`` a client that verified the previous timestamp and
    snapshot still fetches every role and target of that state from the pruned
    mirror; with ``--keep-states 1`` the same client hits missing files."""
    import trio

    await trio.to_thread.run_sync(changed_mirror, penv, 3)
    previous = client_start(penv)
    change(penv.repo, 3)
    penv.publish()
    assert await trio.to_thread.run_sync(penv.run) == 0
    current = state_listing(penv.repo)

    status = await trio.to_thread.run_sync(
        run_local, penv, "prune", "--keep-states", "2", "--keep-for", "0", "--apply"
    )
    assert status == ExitStatus.OK
    store = LocalStore(penv.dest)
    fetched = await client_fetch_all(store, previous)
    assert set(fetched) == previous.paths
    assert files(penv.dest) > current.keys  # the previous state's own files stayed

    status = await trio.to_thread.run_sync(run_local, penv, "prune", *KEEP_ONE, "--apply")
    assert status == ExitStatus.OK
    from mirror.storage import NotFoundInStoreError

    with pytest.raises(NotFoundInStoreError):
        await client_fetch_all(store, previous)
    assert files(penv.dest) == current.keys


def test_sync_prune_prunes_after_a_successful_publish(
    penv: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    """``sync --prune`` publishes, then prunes with the given retention under the
    same lock; the report carries both."""
    listings = changed_mirror(penv, steps=3)
    change(penv.repo, 3)
    penv.publish()
    capsys.readouterr()

    assert penv.run("sync", "--prune", *KEEP_ONE, "--json") == ExitStatus.OK

    report = _report(capsys)
    assert report["versions_after"]["timestamp"] == penv.repo.version("timestamp")
    assert report["prune"]["applied"] is True
    assert report["prune"]["deleted_files"] > 0
    assert files(penv.dest) == state_listing(penv.repo).keys
    assert len(listings) == 4


def test_defaults_keep_every_state_of_the_last_hour(penv: Env) -> None:
    """Without retention options nothing published in the last hour is deleted."""
    changed_mirror(penv)
    before = tree(penv.dest)

    assert run_local(penv, "prune", "--apply") == ExitStatus.OK

    assert tree(penv.dest) == before


def test_orphans_are_reported_and_deleted_only_with_orphans(
    penv: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file no known state references is reported and kept; ``--orphans``
    deletes it. Roots and files outside metadata/ and targets/ stay."""
    listings = changed_mirror(penv, steps=1)
    stray = penv.dest / "targets" / "stray.bin"
    stray.write_bytes(b"left by someone")
    os.utime(stray, (0, 0))  # long before the prune
    (penv.dest / "index.html").write_bytes(b"<html/>")
    capsys.readouterr()

    assert run_local(penv, "prune", *KEEP_ONE, "--apply", "--json") == ExitStatus.OK
    report = _report(capsys)["prune"]
    assert report["orphans"] == ["targets/stray.bin"]
    assert report["orphan_bytes"] == len(b"left by someone")
    assert stray.exists()

    assert run_local(penv, "prune", *KEEP_ONE, "--apply", "--orphans", "--json") == ExitStatus.OK
    report = _report(capsys)["prune"]
    assert report["deleted"] == ["targets/stray.bin"]
    assert files(penv.dest) == listings[-1].keys | {"index.html"}


def test_a_state_file_without_history_knows_only_the_current_state(
    penv: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    """An old state.json (no history): only the current state is known, so the
    files of earlier states are orphans, kept unless --orphans."""
    listings = changed_mirror(penv, steps=2)
    state_file = penv.dest / ".tuf-mirror" / "state.json"
    state = json.loads(state_file.read_bytes())
    del state["history"]
    state_file.write_text(json.dumps(state))
    before = tree(penv.dest)
    capsys.readouterr()

    assert run_local(penv, "prune", *KEEP_ONE, "--apply", "--json") == ExitStatus.OK
    report = _report(capsys)["prune"]
    assert tree(penv.dest) == before
    assert report["deleted_files"] == 0
    assert set(report["orphans"]) == set(before) - listings[-1].keys
    assert report["states_known"] == 1

    assert run_local(penv, "prune", *KEEP_ONE, "--apply", "--orphans") == ExitStatus.OK
    assert files(penv.dest) == listings[-1].keys


def test_files_written_after_the_prune_started_are_kept(
    penv: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unreferenced file whose listing time is after the prune's start (here:
    an expired state's target touched into the future) is kept and counted, and
    the expired states' metadata stays so that the next prune still attributes it
    and finishes the job."""
    listings = changed_mirror(penv, steps=2)
    doomed = sorted(files(penv.dest) - listings[-1].keys)
    target = next(k for k in doomed if k.startswith("targets/"))
    late = penv.dest / target
    future = late.stat().st_mtime + 3600
    os.utime(late, (future, future))
    capsys.readouterr()

    assert run_local(penv, "prune", *KEEP_ONE, "--apply", "--json") == ExitStatus.OK

    report = _report(capsys)["prune"]
    assert report["kept_new"] == 1
    metadata = {k for k in doomed if k.startswith("metadata/")}
    assert files(penv.dest) == listings[-1].keys | {target} | metadata

    os.utime(late, (future - 7200, future - 7200))  # it was old after all
    assert run_local(penv, "prune", *KEEP_ONE, "--apply") == ExitStatus.OK
    assert files(penv.dest) == listings[-1].keys


async def test_a_sync_is_blocked_while_a_prune_holds_the_lock(
    penv: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A prune paused in the middle of its sweep holds the destination lock: a sync
    then exits 4 and writes nothing; once the prune finishes, the sync runs."""
    import trio

    from mirror.cli import build_parser
    from mirror.config import resolve
    from mirror.prune import run_prune
    from mirror.report import RunReport

    listings = await trio.to_thread.run_sync(changed_mirror, penv, 2)
    change(penv.repo, 2)
    penv.publish()
    paused, resume = trio.Event(), trio.Event()
    real = LocalStore.delete_many

    async def delete_many(self: LocalStore, keys: Sequence[str]) -> None:
        paused.set()
        await resume.wait()
        await real(self, keys)

    monkeypatch.setattr(LocalStore, "delete_many", delete_many)
    args = ["prune", "--root", str(penv.root_file), "--dest", str(penv.dest), *KEEP_ONE]
    settings = resolve("prune", build_parser().parse_args([*args, "--apply"]))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            partial(run_prune, settings, now=datetime.now(UTC), report=RunReport("prune"))
        )
        await paused.wait()
        before = tree(penv.dest, internal=True)
        assert await trio.to_thread.run_sync(penv.run) == ExitStatus.LOCKED
        assert tree(penv.dest, internal=True) == before
        resume.set()
    assert files(penv.dest) == listings[-1].keys  # the prune finished its sweep
    assert await trio.to_thread.run_sync(penv.run) == ExitStatus.OK
    assert files(penv.dest) >= state_listing(penv.repo).keys


async def test_a_prune_is_blocked_while_a_sync_holds_the_lock(penv: Env) -> None:
    """A prune against a destination locked by a live run exits 4, deleting nothing."""
    import trio

    await trio.to_thread.run_sync(changed_mirror, penv, 1)
    before = tree(penv.dest)
    async with acquire_lock(LocalStore(penv.dest), owner="tuf-mirror sync"):
        status = await trio.to_thread.run_sync(run_local, penv, "prune", *KEEP_ONE, "--apply")
    assert status == ExitStatus.LOCKED
    assert tree(penv.dest) == before


def test_a_selection_other_than_the_synced_one_is_refused(penv: Env) -> None:
    """Pruning a partial mirror with other --include/--exclude/--role options than
    its sync used would take the selected targets for garbage: exit 2, nothing
    deleted."""
    changed_mirror(penv, steps=1)
    before = tree(penv.dest)

    status = run_local(penv, "prune", *KEEP_ONE, "--apply", "--include", "files/file-001*")

    assert status == ExitStatus.USAGE
    assert tree(penv.dest) == before


def test_filtered_out_targets_are_unreferenced_files(penv: Env) -> None:
    """Targets a narrower selection leaves out are pruned like any unreferenced file."""
    assert penv.run() == 0
    assert penv.run("sync", "--include", "files/file-000*") == 0
    listing = state_listing(penv.repo)

    assert run_local(penv, "prune", *KEEP_ONE, "--apply", "--include", "files/file-000*") == 0

    kept_targets = {k for k in files(penv.dest) if k.startswith("targets/")}
    assert kept_targets == {
        k for k in listing.keys if k.startswith("targets/files/") and "file-000" in k
    }


def test_a_timestamp_replaced_while_marking_stops_the_prune_before_any_delete(
    penv: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another writer publishing a new timestamp.json while the prune marks: the
    re-check before the sweep stops it with exit 3 and a one-line reason, and
    nothing is deleted."""
    changed_mirror(penv, steps=2)
    timestamp = penv.dest / "metadata" / "timestamp.json"
    before = files(penv.dest)
    real_get = LocalStore.get
    replaced: list[str] = []

    async def get(self: LocalStore, key: str, *, max_length: int) -> bytes:
        if key.endswith(".targets.json") and not replaced:
            replaced.append(key)
            timestamp.write_bytes(timestamp.read_bytes() + b" ")
        return await real_get(self, key, max_length=max_length)

    monkeypatch.setattr(LocalStore, "get", get)
    capsys.readouterr()

    status = run_local(penv, "prune", *KEEP_ONE, "--apply")

    assert status == ExitStatus.TRANSIENT
    assert "timestamp.json changed while pruning" in capsys.readouterr().err
    assert files(penv.dest) == before


def test_a_retained_state_that_does_not_verify_stops_the_prune(
    penv: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tampered role of the retained previous state: exit 1 naming it, nothing
    deleted (a prune never trusts what it cannot verify)."""
    listings = changed_mirror(penv, steps=3)
    previous_only = sorted(k for k in listings[-2].keys - listings[-1].keys if k.endswith(".json"))
    victim = next(k for k in previous_only if "snapshot" not in k)
    path = penv.dest / victim
    document = json.loads(path.read_bytes())
    for target in document["signed"]["targets"].values():
        target["length"] += 1  # what the signature covers changes
    path.write_bytes(json.dumps(document).encode())
    before = tree(penv.dest)
    capsys.readouterr()

    status = run_local(penv, "prune", "--keep-states", "2", "--keep-for", "0", "--apply")

    assert status == ExitStatus.VERIFICATION_FAILED
    err = capsys.readouterr().err
    assert "retained published state" in err
    assert "does not verify" in err
    assert tree(penv.dest) == before


def test_a_current_state_with_a_missing_role_is_not_pruned(
    penv: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    """The current state must be complete: a missing role is a damaged mirror, exit
    1, nothing deleted."""
    listings = changed_mirror(penv, steps=1)
    roles = ("root", "timestamp", "snapshot", "targets")
    victim = next(
        k
        for k in sorted(listings[-1].keys)
        if k.startswith("metadata/") and not k.removesuffix(".json").endswith(roles)
    )
    (penv.dest / victim).unlink()
    before = tree(penv.dest)
    capsys.readouterr()

    status = run_local(penv, "prune", *KEEP_ONE, "--apply")

    assert status == ExitStatus.VERIFICATION_FAILED
    assert "missing" in capsys.readouterr().err
    assert tree(penv.dest) == before


def test_metrics_and_summary_line_carry_the_prune_figures(
    penv: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--metrics-file gets files and bytes deleted and states retained; the summary
    line says what was deleted and kept."""
    changed_mirror(penv, steps=2)
    metrics = tmp_path / "prune.prom"
    capsys.readouterr()

    assert run_local(penv, "prune", *KEEP_ONE, "--apply", "--metrics-file", str(metrics)) == 0

    text = metrics.read_text()
    err = capsys.readouterr().err
    deleted = int(float(text.split("tuf_mirror_prune_deleted_files{")[1].split()[1]))
    assert deleted > 0
    assert "tuf_mirror_prune_deleted_bytes{" in text
    assert f'tuf_mirror_prune_states_retained{{dest="{penv.dest}"}} 1.0' in text
    assert f"tuf-mirror prune: deleted {deleted} files" in err


def test_without_consistent_snapshots_only_the_current_state_is_known(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An upstream without consistent snapshots replaces its files in place: earlier
    states cannot be walked, so a target it stopped listing is an orphan, deleted
    only with --orphans; the mirror still verifies."""
    from tests.sync.conftest import make_repo
    from tuf_mirror_testing.server import serve_directory

    repo = make_repo(bins=2, targets=6, consistent=False)
    upstream = tmp_path / "upstream"
    repo.publish(upstream)
    root_file = tmp_path / "root.json"
    root_file.write_bytes(repo.root_bytes(1))
    with serve_directory(upstream) as server:
        env = Env(repo, upstream, server, root_file, tmp_path / "dest")
        assert env.run() == 0
        repo.remove_target("files/file-0000.txt")
        env.publish()
        assert env.run() == 0
    before = files(env.dest)
    capsys.readouterr()

    assert run_local(env, "prune", *KEEP_ONE, "--apply", "--json") == ExitStatus.OK
    report = _report(capsys)["prune"]
    assert report["orphans"] == ["targets/files/file-0000.txt"]
    assert files(env.dest) == before

    assert run_local(env, "prune", *KEEP_ONE, "--apply", "--orphans") == ExitStatus.OK
    assert files(env.dest) == before - {"targets/files/file-0000.txt"}
    assert run_local(env, "verify") == ExitStatus.OK


def test_targets_held_back_by_the_trust_policy_are_unreferenced(
    penv: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    """Under --policy, sync records held-back targets in .tuf-mirror/policy.json and
    appends the policy to the selection's fingerprint: prune accepts that
    selection and treats a held-back target's file like any unreferenced one."""
    listings = changed_mirror(penv, steps=1)
    internal = penv.dest / ".tuf-mirror"
    state = json.loads((internal / "state.json").read_bytes())
    state["filter"] += "+policy:0123abcd"
    (internal / "state.json").write_text(json.dumps(state))
    held = "files/file-0008.txt"
    (internal / "policy.json").write_text(json.dumps({"held_back": {held: {}}}))
    held_files = {k for k in listings[-1].keys if k.endswith(".file-0008.txt")}
    assert held_files
    capsys.readouterr()

    assert run_local(penv, "prune", *KEEP_ONE, "--apply", "--json") == ExitStatus.OK

    assert held_files <= set(_report(capsys)["prune"]["deleted"])
    assert files(penv.dest) == listings[-1].keys - held_files
