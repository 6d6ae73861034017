"""The ledger in sync runs against a generated upstream on 127.0.0.1: what a run
records, the tampered destination it refuses, and the alarms a validly signed
hostile upstream raises (exit status, the ALARM line, evidence, and on ``refuse`` a
destination and ledger left unchanged)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import trio

from mirror.errors import ExitStatus, StorageError
from mirror.ledger.log import Head, LedgerLog
from mirror.storage.local import LocalStore
from tests.sync.conftest import Env, tree
from tuf_mirror_testing.repo import metadata_file_name, tamper_published

PATH = "files/file-0003.txt"


def ledger_dir(env: Env) -> Path:
    return env.dest / ".tuf-mirror" / "ledger"


def ledger_head(env: Env) -> Head:
    async def read() -> Head:
        store = LocalStore(ledger_dir(env))
        try:
            return await LedgerLog(store, origin="x").head()
        finally:
            await store.aclose()

    return trio.run(read)


def lookup(env: Env, key: str) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        store = LocalStore(ledger_dir(env))
        try:
            ledger = LedgerLog(store, origin="x")
            return [r.entry.data for r in await ledger.lookup(key, await ledger.head())]
        finally:
            await store.aclose()

    return trio.run(read)


def evidence(env: Env, kind: str) -> list[Path]:
    return sorted((ledger_dir(env) / "evidence").glob(f"*-{kind}-*"))


def alarm_lines(text: str, kind: str) -> list[str]:
    return [line for line in text.splitlines() if f"ALARM {kind} " in line]


def test_sync_records_everything_it_published(env: Env) -> None:
    """A first sync appends one entry per published metadata file and target, each
    with its exact sha256 / hashes and where it was first seen; a no-op run appends
    nothing and leaves the checkpoint where it was."""
    assert env.run() == ExitStatus.OK
    head = ledger_head(env)
    published = tree(env.dest)
    metadata = [name for name in published if name.startswith("metadata/")]
    # timestamp.json and root.json are published once each, as versions of themselves
    assert head.size == 40 + len(metadata) - 1
    record = lookup(env, PATH)
    assert len(record) == 1
    assert (
        record[0]["hashes"]
        == env.repo.targets_role(env.repo.role_for_target(PATH)).signed.targets[PATH].hashes
    )
    assert record[0]["role"] == env.repo.role_for_target(PATH)
    assert record[0]["snapshot_version"] == 1
    assert record[0]["timestamp_version"] == 1
    ts = lookup(env, "meta:timestamp@1")
    assert ts[0]["sha256"] == hashlib.sha256(published["metadata/timestamp.json"]).hexdigest()
    assert env.run() == ExitStatus.OK
    assert ledger_head(env) == head


def test_tampered_diff_base_is_refused(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """One hex digit of a target hash flipped in a published bin (still valid JSON):
    the next incremental sync, reading that bin as its diff base, fails with
    TamperedDestinationError, exit 1, and writes nothing."""
    assert env.run() == ExitStatus.OK
    bin_name = env.repo.role_for_target(PATH)
    version = env.repo.version(bin_name)
    key = f"metadata/{metadata_file_name(bin_name, version)}"
    digest = env.repo.targets_role(bin_name).signed.targets[PATH].hashes["sha256"]
    flipped = digest[:10] + ("0" if digest[10] != "0" else "1") + digest[11:]
    tamper_published(env.dest, key, lambda data: data.replace(digest.encode(), flipped.encode()))
    # make sure the tampered bin changes upstream, so it is read as the diff base
    env.repo.add_target(_same_bin_path(env, bin_name), b"another")
    env.publish()
    before = tree(env.dest, internal=True)
    capsys.readouterr()
    assert env.run() == ExitStatus.VERIFICATION_FAILED
    err = capsys.readouterr().err
    assert "TamperedDestinationError" in err
    assert key in err
    after = tree(env.dest, internal=True)
    assert {k: v for k, v in after.items() if not k.startswith(".tuf-mirror/")} == {
        k: v for k, v in before.items() if not k.startswith(".tuf-mirror/")
    }
    assert ledger_head(env).size == len([k for k in before if k.startswith("metadata/")]) - 1 + 40


def _same_bin_path(env: Env, bin_name: str) -> str:
    for index in range(10000):
        candidate = f"files/same-bin-{index}.txt"
        if env.repo.role_for_target(candidate) == bin_name:
            return candidate
    raise AssertionError("no path in that bin")


def _mutate(env: Env, path: str = PATH, content: bytes = b"different content") -> None:
    """The upstream validly re-lists ``path`` with other content (re-signed)."""
    env.repo.add_target(path, content)
    env.publish()


def test_target_mutation_publish(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """--immutable '*': a recorded path validly re-listed with other hashes is a
    TARGET_MUTATION alarm: one ALARM line, evidence saved, the report lists it; the
    new state is published (default --on-alarm publish) and the run exits 6; the
    ledger records the new content as the path's next version."""
    assert env.run("sync", "--immutable", "*") == ExitStatus.OK
    _mutate(env)
    capsys.readouterr()
    report = env.dest.parent / "report.json"
    metrics = env.dest.parent / "metrics.prom"
    status = env.run(
        "sync", "--immutable", "*", "--report", str(report), "--metrics-file", str(metrics)
    )
    assert status == ExitStatus.WITNESS_ALARM == 6
    err = capsys.readouterr().err
    lines = alarm_lines(err, "TARGET_MUTATION")
    assert len(lines) == 1
    assert PATH in lines[0]
    [directory] = evidence(env, "TARGET_MUTATION")
    saved = json.loads((directory / "alarm.json").read_text())
    assert saved["subject"] == PATH
    assert saved["observed"]["hashes"]["sha256"] == hashlib.sha256(b"different content").hexdigest()
    assert (directory / "checkpoint").read_bytes()
    data = json.loads(report.read_text())
    assert data["exit_status"] == 6
    assert [a["type"] for a in data["alarms"]] == ["TARGET_MUTATION"]
    assert 'tuf_mirror_witness_alarms{dest="' in metrics.read_text()
    assert 'type="TARGET_MUTATION"} 1' in metrics.read_text()
    assert "tuf_mirror_last_run_exit_status" in metrics.read_text()
    assert tree(env.dest) == tree(env.upstream)
    assert len(lookup(env, PATH)) == 2


def test_target_mutation_refuse(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """--on-alarm refuse: the same alarm, exit 1, nothing new published, and the
    ledger's checkpoint and records unchanged (evidence is still saved)."""
    assert env.run("sync", "--immutable", "files/*") == ExitStatus.OK
    before = tree(env.dest)
    head = ledger_head(env)
    _mutate(env)
    capsys.readouterr()
    status = env.run("sync", "--immutable", "files/*", "--on-alarm", "refuse")
    assert status == ExitStatus.VERIFICATION_FAILED
    err = capsys.readouterr().err
    assert len(alarm_lines(err, "TARGET_MUTATION")) == 1
    assert "WitnessAlarmError" in err
    after = tree(env.dest)
    assert {k: v for k, v in after.items() if not k.startswith("targets/")} == {
        k: v for k, v in before.items() if not k.startswith("targets/")
    }
    assert ledger_head(env) == head
    assert len(lookup(env, PATH)) == 1
    assert evidence(env, "TARGET_MUTATION")


def test_mutable_path_changes_without_alarm(env: Env) -> None:
    """A path no --immutable pattern matches may change (sigstore re-publishes
    trusted_root.json): no alarm, exit 0, and the ledger keeps both versions."""
    assert env.run("sync", "--immutable", "other/**") == ExitStatus.OK
    _mutate(env)
    assert env.run("sync", "--immutable", "other/**") == ExitStatus.OK
    history = lookup(env, PATH)
    assert [h["length"] for h in history] == [len(b"content 3\n" * 20), len(b"different content")]
    assert not (ledger_dir(env) / "evidence").exists()


def test_removed_then_readded_with_other_content(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    """An immutable path removed upstream and later re-added with other content is
    a TARGET_MUTATION too."""
    assert env.run("sync", "--immutable", "*") == ExitStatus.OK
    env.repo.remove_target(PATH)
    env.publish()
    assert env.run("sync", "--immutable", "*") == ExitStatus.OK
    _mutate(env)
    capsys.readouterr()
    assert env.run("sync", "--immutable", "*") == ExitStatus.WITNESS_ALARM
    assert len(alarm_lines(capsys.readouterr().err, "TARGET_MUTATION")) == 1


def test_rollback_when_the_floor_is_lost(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """The destination's timestamp restored from an old backup (bytes the ledger
    recorded, so no tampering) and the upstream serving an older, validly signed
    timestamp than the ledger recorded: TUF's floor is the old copy and accepts it,
    the ledger raises ROLLBACK for the timestamp and the snapshot it names
    (evidence: the served timestamp)."""
    assert env.run() == ExitStatus.OK
    ts1 = (env.dest / "metadata/timestamp.json").read_bytes()
    env.repo.add_target("files/two.txt", b"two")
    env.publish()
    ts2 = (env.upstream / "metadata/timestamp.json").read_bytes()
    env.repo.add_target("files/three.txt", b"three")
    env.publish()
    assert env.run() == ExitStatus.OK
    (env.dest / "metadata/timestamp.json").write_bytes(ts1)
    (env.upstream / "metadata/timestamp.json").write_bytes(ts2)
    capsys.readouterr()
    assert env.run() == ExitStatus.WITNESS_ALARM
    lines = alarm_lines(capsys.readouterr().err, "ROLLBACK")
    assert len(lines) == 2
    assert "timestamp v2" in lines[0]
    assert "snapshot v2" in lines[1]
    saved = [d / "upstream-timestamp.json" for d in evidence(env, "ROLLBACK")]
    assert [p.read_bytes() for p in saved if p.exists()] == [ts2]


def test_expected_hashes(env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--expect: a listed path the upstream serves with other hashes is
    EXPECTED_MISMATCH, one it lacks is WITHHELD, a matching one is silent."""
    good = env.repo.targets_role(env.repo.role_for_target(PATH)).signed.targets[PATH]
    lines = [
        {"path": PATH, "length": good.length, "hashes": good.hashes},
        {"path": "files/file-0004.txt", "length": 3, "hashes": {"sha256": "00" * 32}},
        {"path": "files/never.txt", "length": 3, "hashes": {"sha256": "11" * 32}},
    ]
    expect = tmp_path / "expect.jsonl"
    expect.write_text("".join(json.dumps(line) + "\n" for line in lines))
    capsys.readouterr()
    assert env.run("sync", "--expect", str(expect)) == ExitStatus.WITNESS_ALARM
    err = capsys.readouterr().err
    assert len(alarm_lines(err, "EXPECTED_MISMATCH")) == 1
    assert "files/file-0004.txt" in alarm_lines(err, "EXPECTED_MISMATCH")[0]
    assert len(alarm_lines(err, "WITHHELD")) == 1
    assert "files/never.txt" in alarm_lines(err, "WITHHELD")[0]
    assert not [line for line in err.splitlines() if "ALARM" in line and PATH in line]
    assert tree(env.dest) == tree(env.upstream)


def test_crash_between_publish_and_checkpoint(
    env: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that published (with an alarm) but failed before moving the checkpoint:
    the ledger is unchanged; the rerun, with nothing new upstream, re-checks the
    pending entries from the old checkpoint, raises the alarm again (not lost),
    and records them."""
    assert env.run("sync", "--immutable", "*") == ExitStatus.OK
    head = ledger_head(env)
    _mutate(env)
    original = LedgerLog.commit

    async def broken(self: LedgerLog, *args: Any, **kwargs: Any) -> Head:
        raise StorageError("disk full while committing the ledger")

    monkeypatch.setattr(LedgerLog, "commit", broken)
    capsys.readouterr()
    assert env.run("sync", "--immutable", "*") == ExitStatus.TRANSIENT
    assert len(alarm_lines(capsys.readouterr().err, "TARGET_MUTATION")) == 1
    assert tree(env.dest) == tree(env.upstream), "published before the commit"
    assert ledger_head(env) == head
    monkeypatch.setattr(LedgerLog, "commit", original)
    assert env.run("sync", "--immutable", "*") == ExitStatus.WITNESS_ALARM
    err = capsys.readouterr().err
    assert len(alarm_lines(err, "TARGET_MUTATION")) == 1
    assert ledger_head(env).size > head.size
    assert len(lookup(env, PATH)) == 2
    assert not list((ledger_dir(env) / "pending").glob("*"))
    assert env.run("sync", "--immutable", "*") == ExitStatus.OK


def test_rollback_refused_by_tuf_keeps_evidence(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    """An upstream serving an older (validly signed) timestamp than the mirror
    published: TUF refuses it (exit 1, destination and ledger unchanged) and the
    ledger keeps the evidence: an ALARM ROLLBACK line and the served file."""
    old_timestamp = env.repo.metadata_bytes("timestamp")
    env.repo.add_target("files/extra.txt", b"x")
    env.publish()
    assert env.run() == ExitStatus.OK
    before = tree(env.dest)
    head = ledger_head(env)
    (env.upstream / "metadata/timestamp.json").write_bytes(old_timestamp)
    capsys.readouterr()
    assert env.run() == ExitStatus.VERIFICATION_FAILED
    err = capsys.readouterr().err
    assert len(alarm_lines(err, "ROLLBACK")) == 1
    assert "RollbackError" in err
    [directory] = evidence(env, "ROLLBACK")
    assert (directory / "upstream-timestamp.json").read_bytes() == old_timestamp
    assert tree(env.dest) == before
    assert ledger_head(env) == head


def test_two_concurrent_runs_one_moves_the_checkpoint(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two mirrors sharing one --ledger publish at the same time: both reach their
    commit from the same checkpoint, exactly one moves it, the other exits 3 (or 4:
    the ledger's lock) with its entries pending; that mirror's next run checks them
    from the checkpoint (here: the same files the winner recorded, so nothing new)
    and clears them."""
    import threading

    from mirror.cli import main
    from mirror.ledger.witness import RunWitness

    shared = tmp_path / "shared-ledger"
    barrier = threading.Barrier(2, timeout=30)
    original = RunWitness.after_publish

    async def meet_then_commit(self: RunWitness) -> Head:
        await trio.to_thread.run_sync(barrier.wait)
        return await original(self)

    monkeypatch.setattr(RunWitness, "after_publish", meet_then_commit)
    dests = [tmp_path / "mirror-a", tmp_path / "mirror-b"]
    statuses: dict[int, int] = {}

    def run(index: int) -> None:
        args = env.args("sync", "--ledger", str(shared))
        args[args.index("--dest") + 1] = str(dests[index])
        statuses[index] = main(args)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(statuses.values())[0] == ExitStatus.OK
    assert sorted(statuses.values())[1] in (ExitStatus.TRANSIENT, ExitStatus.LOCKED)
    loser = next(i for i, status in statuses.items() if status != ExitStatus.OK)

    async def read_head() -> Head:
        store = LocalStore(shared)
        try:
            return await LedgerLog(store, origin="x").head()
        finally:
            await store.aclose()

    first = trio.run(read_head)
    assert first.seq == 1
    assert list((shared / "pending").glob("*.jsonl")), "the loser's entries wait"
    monkeypatch.setattr(RunWitness, "after_publish", original)
    args = env.args("sync", "--ledger", str(shared))
    args[args.index("--dest") + 1] = str(dests[loser])
    assert main(args) == ExitStatus.OK
    second = trio.run(read_head)
    assert second == first, "the same upstream: every file is already recorded"
    assert not list((shared / "pending").glob("*.jsonl"))


def test_signed_expected_hashes(
    env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--expect as a C2SP signed note verified with --expect-key (a PEM public key):
    a publisher's signed list is checked like a plain one; a list whose signature
    does not verify is a usage error (exit 2) before anything is fetched."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from mirror.ledger.note import Signer, sign_note

    private = Ed25519PrivateKey.generate()
    line = {"path": "files/file-0004.txt", "length": 3, "hashes": {"sha256": "00" * 32}}
    note = sign_note(
        (json.dumps(line) + "\n").encode(), [Signer("publisher.example/hashes", private)]
    )
    expect = tmp_path / "expect.note"
    expect.write_bytes(note.to_bytes())
    key = tmp_path / "publisher.pub"
    key.write_bytes(
        private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    capsys.readouterr()
    status = env.run("sync", "--expect", str(expect), "--expect-key", str(key))
    assert status == ExitStatus.WITNESS_ALARM
    assert len(alarm_lines(capsys.readouterr().err, "EXPECTED_MISMATCH")) == 1
    expect.write_bytes(note.to_bytes().replace(b"file-0004", b"file-0005"))
    before = tree(env.dest)
    assert env.run("sync", "--expect", str(expect), "--expect-key", str(key)) == ExitStatus.USAGE
    assert "does not verify" in capsys.readouterr().err
    assert tree(env.dest) == before


def test_restarted_cycle_records_once(env: Env) -> None:
    """A run that restarts from a fresh timestamp (a role file 404 once: the
    upstream moved on mid-run) records each published file once: the ledger grows
    by exactly the new target and the new metadata versions (bin, snapshot,
    timestamp)."""
    from tuf_mirror_testing.server import Fault

    assert env.run() == ExitStatus.OK
    size = ledger_head(env).size
    path = _same_bin_path(env, env.repo.role_for_target(PATH))
    env.repo.add_target(path, b"during a restart")
    written = env.publish()
    bin_name = env.repo.role_for_target(path)
    name = metadata_file_name(bin_name, env.repo.version(bin_name))
    env.server.faults.add(f"/metadata/{name}", Fault.status(404), times=1)
    report = env.dest.parent / "restart.json"
    assert env.run("sync", "--report", str(report)) == ExitStatus.OK
    assert json.loads(report.read_text())["restarts"] == 1
    new_metadata = [w for w in written if w.startswith("metadata/")]
    # one entry per new versioned file and the timestamp, one for the new target
    assert ledger_head(env).size == size + len(new_metadata) + 1
    assert len(lookup(env, path)) == 1


def test_fork_with_a_witness_peer_during_sync(
    env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``sync --witness-peer URL``: a peer serving, for a timestamp version the
    ledger holds, other (validly signed) bytes is a FORK alarm (the peer's file as
    evidence); with --on-alarm refuse nothing new is published."""
    import shutil
    from datetime import timedelta

    from tuf_mirror_testing.server import serve_directory

    assert env.run() == ExitStatus.OK
    peer_dir = tmp_path / "peer"
    shutil.copytree(env.dest, peer_dir, ignore=shutil.ignore_patterns(".tuf-mirror"))

    def later(metadata: Any) -> None:
        metadata.signed.expires += timedelta(days=1)

    forged = env.repo.forge("timestamp", later)
    (peer_dir / "metadata" / "timestamp.json").write_bytes(forged)
    env.repo.add_target("files/after-fork.txt", b"new")
    env.publish()
    before = tree(env.dest)
    with serve_directory(peer_dir) as peer:
        capsys.readouterr()
        flags = ["--witness-peer", peer.url]
        assert env.run("sync", *flags, "--on-alarm", "refuse") == ExitStatus.VERIFICATION_FAILED
        assert len(alarm_lines(capsys.readouterr().err, "FORK")) == 1
        assert {k: v for k, v in tree(env.dest).items() if k.startswith("metadata/")} == {
            k: v for k, v in before.items() if k.startswith("metadata/")
        }
        assert env.run("sync", *flags) == ExitStatus.WITNESS_ALARM
        assert len(alarm_lines(capsys.readouterr().err, "FORK")) == 1
    saved = [d / "peer-timestamp.json" for d in evidence(env, "FORK")]
    assert saved
    assert all(path.read_bytes() == forged for path in saved)
    assert tree(env.dest) == tree(env.upstream)


def test_the_walk_hands_the_ledger_each_roles_targets_in_one_call(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The walk reports targets to the ledger once per role (``observe_targets``),
    never once per target: a first sync makes one call for each role that lists
    targets, with all of that role's targets in the role's order."""
    from mirror.ledger.witness import RunWitness

    calls: list[tuple[str, list[str]]] = []
    batch = RunWitness.observe_targets

    async def counted(self: RunWitness, role: str, targets: Any) -> None:
        targets = list(targets)
        calls.append((role, [target.path for target, _ in targets]))
        await batch(self, role, targets)

    async def one_by_one(self: RunWitness, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("observe_target called by the walk")

    monkeypatch.setattr(RunWitness, "observe_targets", counted)
    monkeypatch.setattr(RunWitness, "observe_target", one_by_one)
    assert env.run() == ExitStatus.OK
    roles = [name.removesuffix(".json") for name in env.repo.snapshot.signed.meta]
    listing = {role: list(env.repo.targets_role(role).signed.targets) for role in roles}
    assert dict(calls) == {role: paths for role, paths in listing.items() if paths}
    assert len(calls) == len({role for role, _ in calls})
