"""``prune`` holds the destination's lease from ``mirror.endpoints`` like every
command that writes: ``--lock-lease`` long, renewed while the prune goes on, so a
long sweep never looks dead to the next cron sync."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial

import pytest
import trio

from mirror.cli import build_parser
from mirror.config import resolve
from mirror.errors import ExitStatus
from mirror.prune import run_prune
from mirror.report import RunReport
from mirror.storage.local import LocalStore
from mirror.storage.lock import LockInfo
from tests.prune.conftest import change, changed_mirror, files
from tests.sync.conftest import Env

KEEP_ONE = ("--keep-states", "1", "--keep-for", "0")


async def test_a_prune_held_past_its_lease_keeps_it(
    penv: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A prune paused in its sweep for longer than ``--lock-lease`` still holds a
    live lease (same holder, expiry moved forward): a sync started meanwhile exits 4
    and does not take it over; the prune then finishes and releases the lock."""
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
    settings = resolve("prune", build_parser().parse_args([*args, "--apply", "--lock-lease", "3s"]))
    lock = penv.dest / ".tuf-mirror" / "lock"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            partial(run_prune, settings, now=datetime.now(UTC), report=RunReport("prune"))
        )
        with trio.fail_after(120):
            await paused.wait()
        first = LockInfo.from_json(lock.read_bytes())
        await trio.sleep((first.expires - datetime.now(UTC)).total_seconds() + 0.1)
        later = LockInfo.from_json(lock.read_bytes())
        assert datetime.now(UTC) > first.expires
        assert later.token == first.token
        assert later.expires > first.expires
        assert await trio.to_thread.run_sync(penv.run) == ExitStatus.LOCKED
        assert LockInfo.from_json(lock.read_bytes()).token == first.token
        resume.set()
    assert not await trio.to_thread.run_sync(lock.exists)
    assert files(penv.dest) == listings[-1].keys  # the prune finished its sweep
