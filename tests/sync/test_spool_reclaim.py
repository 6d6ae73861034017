"""Spool space a killed run left in ``DEST/.tuf-mirror/spool`` is reclaimed by the
next run that holds the lock; a run locked out touches nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mirror.errors import ExitStatus
from mirror.storage.lock import LockInfo, ProcessIdentity
from tests.sync.conftest import Env, tree

LEFTOVERS = ("role-17-0badc0de", "target-3-00112233aabb", "partial-x.bin.partial.json.tmp")


def plant(env: Env) -> None:
    spool = env.dest / ".tuf-mirror" / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    for name in LEFTOVERS:
        (spool / name).write_bytes(b"x" * 4096)


def test_leftovers_of_a_killed_run_are_reclaimed(env: Env) -> None:
    """Spooled roles, targets and temporary files from a killed run are deleted by
    the next run; the mirror converges as usual."""
    assert env.run() == ExitStatus.OK
    plant(env)

    assert env.run() == ExitStatus.OK
    assert list((env.dest / ".tuf-mirror" / "spool").iterdir()) == []
    assert tree(env.dest) == tree(env.upstream)


def test_a_locked_out_run_leaves_the_holders_spool_alone(env: Env) -> None:
    """While another run holds a live lease, a run exits 4 without deleting anything
    in the spool (it may be the holder's work in progress)."""
    assert env.run() == ExitStatus.OK
    plant(env)
    now = datetime.now(UTC)
    holder = LockInfo(
        owner="cron",
        process=ProcessIdentity(host="elsewhere.example", pid=1),
        created=now,
        expires=now + timedelta(minutes=10),
        token="t" * 32,
    )
    (env.dest / ".tuf-mirror" / "lock").write_bytes(holder.to_json())

    assert env.run() == ExitStatus.LOCKED
    assert sorted(p.name for p in (env.dest / ".tuf-mirror" / "spool").iterdir()) == sorted(
        LEFTOVERS
    )
