"""The destination lock, on every backend of the contract suite."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import trio

from mirror.errors import ExitStatus, LockHeldError
from mirror.storage.base import PutOptions, Store
from mirror.storage.lock import (
    LOCK_KEY,
    LockInfo,
    ProcessIdentity,
    _compare_and_swap,
    acquire_lock,
    claim_key,
)

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def foreign_lock(**changes: object) -> LockInfo:
    """A lock from another machine, taken at NOW for one hour."""
    info = LockInfo(
        owner="alice",
        process=ProcessIdentity(
            host="other-host", pid=4242, boot_id="b", pid_ns="pid:[1]", pid_start=7
        ),
        created=NOW,
        expires=NOW + timedelta(hours=1),
        token="f" * 32,
    )
    return replace(info, **changes)  # type: ignore[arg-type]


async def place(store: Store, info: LockInfo | bytes) -> None:
    data = info if isinstance(info, bytes) else info.to_json()
    assert await store.create_exclusive(LOCK_KEY, data)


async def exited_pid() -> int:
    process = await trio.lowlevel.open_process(["true"])
    await process.wait()
    return process.pid


async def test_lock_is_exclusive_and_released(store: Store) -> None:
    """While a run holds the lock a second acquire fails with LockHeldError (exit 4)
    naming owner, host and pid; after the block the lock is gone."""
    async with acquire_lock(store, owner="cron", now=NOW) as lock:
        assert await store.head(LOCK_KEY) is not None
        with pytest.raises(LockHeldError) as excinfo:
            async with acquire_lock(store, now=NOW + timedelta(minutes=5)):
                pytest.fail("second lock acquired")
        message = str(excinfo.value)
        assert excinfo.value.exit_status == ExitStatus.LOCKED
        assert "cron" in message
        assert lock.info.process.host in message
        assert f"pid {os.getpid()}" in message
        assert "5m ago" in message
        assert "lease expires in" in message
        assert excinfo.value.held_since == NOW

    assert await store.head(LOCK_KEY) is None
    async with acquire_lock(store):
        pass


async def test_lock_content_is_json_with_owner_and_expiry(store: Store) -> None:
    """The lock object records owner, host, pid, created and expires as JSON."""
    async with acquire_lock(store, owner="cron", ttl=timedelta(minutes=30), now=NOW):
        doc = json.loads(await store.get(LOCK_KEY, max_length=65536))

    assert doc["owner"] == "cron"
    assert doc["pid"] == os.getpid()
    assert doc["host"] == ProcessIdentity.current().host
    assert datetime.fromisoformat(doc["created"]) == NOW
    assert datetime.fromisoformat(doc["expires"]) == NOW + timedelta(minutes=30)


async def test_lock_is_released_on_exception(store: Store) -> None:
    """An exception in the block releases the lock and propagates unchanged."""
    with pytest.raises(ZeroDivisionError):
        async with acquire_lock(store):
            raise ZeroDivisionError

    assert await store.head(LOCK_KEY) is None


async def test_lock_is_released_on_cancellation(store: Store) -> None:
    """A cancelled run still releases its lock (release is shielded)."""
    with trio.CancelScope() as scope:
        async with acquire_lock(store):
            scope.cancel()
            await trio.sleep_forever()

    assert scope.cancelled_caught
    assert await store.head(LOCK_KEY) is None


async def test_live_foreign_lease_is_not_taken_over(store: Store) -> None:
    """An unexpired lease from another host is held: exit 4 naming the holder and
    when the lease expires, with the time it has been held; the lock is untouched."""
    await place(store, foreign_lock())

    with pytest.raises(LockHeldError, match=r"alice on other-host \(pid 4242\).*expires in") as e:
        async with acquire_lock(store, now=NOW + timedelta(minutes=10)):
            pytest.fail("acquired a live lock")

    assert e.value.held_since == NOW
    assert LockInfo.from_json(await store.get(LOCK_KEY, max_length=65536)) == foreign_lock()


async def test_break_stale_takes_over_a_live_lease(store: Store) -> None:
    """--break-stale-lock is for a lease that has not expired but whose run the
    operator knows is gone: it is replaced by ours, and ours is released."""
    await place(store, foreign_lock())

    async with acquire_lock(store, break_stale=True, now=NOW + timedelta(minutes=10)) as lock:
        held = LockInfo.from_json(await store.get(LOCK_KEY, max_length=65536))
        assert held.token == lock.info.token
        assert lock.took_over == foreign_lock()

    assert await store.head(LOCK_KEY) is None


async def test_expired_foreign_lease_is_taken_over(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """A lease from another host that was not renewed before it expired is taken
    over without any flag, with a warning naming the dead holder; no claim object
    is left behind."""
    await place(store, foreign_lock())

    async with acquire_lock(store, now=NOW + timedelta(hours=2)) as lock:
        held = LockInfo.from_json(await store.get(LOCK_KEY, max_length=65536))
        assert held.token == lock.info.token != foreign_lock().token
        assert lock.took_over == foreign_lock()
        assert await store.head(claim_key(foreign_lock().to_json())) is None

    assert "taking over the lock" in caplog.text
    assert "alice on other-host" in caplog.text
    assert "expired 1h0m ago" in caplog.text
    assert await store.head(LOCK_KEY) is None


async def test_concurrent_takers_of_an_expired_lease_have_one_winner(store: Store) -> None:
    """Several runs taking over the same expired lease at once: exactly one wins,
    every other gets LockHeldError naming the winner's live lease."""
    await place(store, foreign_lock())
    winners: list[str] = []
    losers: list[str] = []
    all_tried = trio.Event()

    async def taker(index: int) -> None:
        try:
            async with acquire_lock(store, owner=f"run-{index}", now=NOW + timedelta(hours=2)):
                winners.append(f"run-{index}")
                await all_tried.wait()
        except LockHeldError as exc:
            losers.append(str(exc))
            if len(losers) == 5:
                all_tried.set()

    async with trio.open_nursery() as nursery:
        for index in range(6):
            nursery.start_soon(taker, index)

    assert len(winners) == 1
    assert len(losers) == 5
    assert all("run-" in message for message in losers), losers
    assert await store.head(LOCK_KEY) is None


async def test_a_taker_that_read_the_dead_lease_late_loses(store: Store) -> None:
    """Interleaving pinned step by step: run B read the dead lease, then run A took
    it over and finished; B's compare-and-swap on what it read fails and the lock
    stays A's."""
    dead = foreign_lock().to_json()
    await place(store, dead)
    a = foreign_lock(owner="a", token="a" * 32).to_json()
    b = foreign_lock(owner="b", token="b" * 32).to_json()
    later = NOW + timedelta(hours=2)

    assert await _compare_and_swap(store, LOCK_KEY, dead, a, a, now=later)
    assert not await _compare_and_swap(store, LOCK_KEY, dead, b, b, now=later)
    assert await store.get(LOCK_KEY, max_length=65536) == a
    assert await store.head(claim_key(dead)) is None


async def test_a_live_claim_blocks_and_an_abandoned_one_is_taken_over(store: Store) -> None:
    """A takeover in progress (a live claim on the dead lease) makes other takers
    give up and leaves the lock alone; a claim whose taker died (expired claim) is
    itself taken over and the lease replaced."""
    dead = foreign_lock().to_json()
    await place(store, dead)
    later = NOW + timedelta(hours=2)
    claim = foreign_lock(owner="claimer", expires=later + timedelta(minutes=1)).to_json()
    assert await store.create_exclusive(claim_key(dead), claim)
    b = foreign_lock(owner="b", token="b" * 32).to_json()

    assert not await _compare_and_swap(store, LOCK_KEY, dead, b, b, now=later)
    assert await store.get(LOCK_KEY, max_length=65536) == dead

    much_later = later + timedelta(minutes=5)
    assert await _compare_and_swap(store, LOCK_KEY, dead, b, b, now=much_later)
    assert await store.get(LOCK_KEY, max_length=65536) == b
    assert await store.head(claim_key(dead)) is None
    assert await store.head(claim_key(claim)) is None


async def test_a_renewed_lease_is_not_taken_over(store: Store) -> None:
    """A taker that judged a lease expired from an old read loses if the holder
    renewed it meanwhile (the bytes it read are no longer the lock)."""
    dead = foreign_lock().to_json()
    await place(store, dead)
    renewed = foreign_lock(expires=NOW + timedelta(hours=5)).to_json()
    await store.put_bytes(LOCK_KEY, renewed, PutOptions())
    b = foreign_lock(owner="b", token="b" * 32).to_json()

    assert not await _compare_and_swap(store, LOCK_KEY, dead, b, b, now=NOW + timedelta(hours=2))
    assert await store.get(LOCK_KEY, max_length=65536) == renewed


async def test_break_stale_replaces_an_expired_lock(store: Store) -> None:
    """With break_stale too an expired lock is replaced by ours, and ours is released."""
    await place(store, foreign_lock())

    async with acquire_lock(store, break_stale=True, now=NOW + timedelta(hours=2)) as lock:
        held = LockInfo.from_json(await store.get(LOCK_KEY, max_length=65536))
        assert held.token == lock.info.token != foreign_lock().token

    assert await store.head(LOCK_KEY) is None


async def test_unreadable_lock_is_stale(store: Store) -> None:
    """A lock object that is not a lock (garbage, truncated) has no lease to expire:
    reported, and broken only with break_stale."""
    await place(store, b'{"owner": "trunc')

    with pytest.raises(LockHeldError, match="unreadable"):
        async with acquire_lock(store):
            pytest.fail("acquired over an unreadable lock")
    async with acquire_lock(store, break_stale=True):
        pass


async def test_dead_process_on_this_machine_is_broken_automatically(store: Store) -> None:
    """A lock whose process ran on this machine, boot and PID namespace and has exited
    is broken without break_stale (the crash/SIGKILL case)."""
    here = ProcessIdentity.current()
    if here.boot_id is None or here.pid_ns is None:
        pytest.fail("this test needs Linux /proc")
    dead = replace(here, pid=await exited_pid(), pid_start=None)
    await place(store, foreign_lock(process=dead))

    async with acquire_lock(store, now=NOW + timedelta(minutes=1)) as lock:
        assert lock.info.process == here


async def test_reused_pid_on_this_machine_is_broken_automatically(store: Store) -> None:
    """A lock naming a live pid whose start time differs (the pid was reused by
    another process) is a dead owner too."""
    here = ProcessIdentity.current()
    assert here.pid_start is not None
    reused = replace(here, pid_start=here.pid_start + 1)
    await place(store, foreign_lock(process=reused))

    async with acquire_lock(store, now=NOW + timedelta(minutes=1)):
        pass


async def test_dead_pid_from_another_container_is_not_broken(store: Store) -> None:
    """Same host name but another PID namespace or boot: the pid means nothing here,
    so an unexpired lock stays held."""
    here = ProcessIdentity.current()
    pid = await exited_pid()
    for other in (replace(here, pid=pid, pid_ns="pid:[0]"), replace(here, pid=pid, boot_id="x")):
        await place(store, foreign_lock(process=other))
        with pytest.raises(LockHeldError, match="expires in"):
            async with acquire_lock(store, now=NOW + timedelta(minutes=1)):
                pytest.fail("broke a lock from another container")
        await store.delete(LOCK_KEY)


async def test_refresh_extends_the_expiry(store: Store) -> None:
    """refresh pushes the lock's expiry to now + ttl."""
    async with acquire_lock(store, ttl=timedelta(minutes=10), now=NOW) as lock:
        await lock.refresh(now=NOW + timedelta(minutes=8))
        held = LockInfo.from_json(await store.get(LOCK_KEY, max_length=65536))

    assert held.expires == NOW + timedelta(minutes=18)


async def test_a_broken_lock_is_detected_and_not_deleted(store: Store) -> None:
    """If another run broke and retook our lock, refresh raises LockHeldError and
    release leaves the other run's lock alone."""
    successor = foreign_lock(token="s" * 32)
    async with acquire_lock(store, now=NOW) as lock:
        await store.put_bytes(LOCK_KEY, successor.to_json(), PutOptions())
        with pytest.raises(LockHeldError, match="broken"):
            await lock.refresh(now=NOW)

    assert LockInfo.from_json(await store.get(LOCK_KEY, max_length=65536)) == successor


async def test_concurrent_acquires_have_one_winner(store: Store) -> None:
    """Of several runs racing for the lock, exactly one gets it; the others get
    LockHeldError."""
    winners: list[int] = []
    losers: list[int] = []
    all_tried = trio.Event()

    async def contender(index: int) -> None:
        try:
            async with acquire_lock(store, owner=f"run-{index}"):
                winners.append(index)
                await all_tried.wait()
        except LockHeldError:
            losers.append(index)
            if len(losers) == 4:
                all_tried.set()

    async with trio.open_nursery() as nursery:
        for index in range(5):
            nursery.start_soon(contender, index)

    assert len(winners) == 1
    assert sorted(winners + losers) == list(range(5))
    assert await store.head(LOCK_KEY) is None


async def test_a_late_renewal_loses_to_a_takeover_in_progress(store: Store) -> None:
    """A holder renewing its expired lease while another run holds the claim to take
    it over: the renewal fails with LockHeldError and writes nothing; the taker's
    compare-and-swap then succeeds."""
    async with acquire_lock(store, ttl=timedelta(minutes=10), now=NOW) as lock:
        seen = await store.get(LOCK_KEY, max_length=65536)
        later = NOW + timedelta(minutes=11)
        taker = foreign_lock(owner="taker", token="t" * 32, created=later).to_json()
        assert await store.create_exclusive(
            claim_key(seen),
            foreign_lock(owner="taker", expires=later + timedelta(minutes=1)).to_json(),
        )
        with pytest.raises(LockHeldError, match="taken over"):
            await lock.refresh(now=later)
        assert await store.get(LOCK_KEY, max_length=65536) == seen
        await store.delete(claim_key(seen))
        assert await _compare_and_swap(store, LOCK_KEY, seen, taker, taker, now=later)

    assert LockInfo.from_json(await store.get(LOCK_KEY, max_length=65536)).owner == "taker"
