"""``mirror.shutdown``: what a stop signal does to a running command, in virtual time
(trio's ``autojump_clock``) with real signals sent to this process.

Pinned down: no new work starts after the first signal; transfers in flight get the
grace and no more; a publish under way completes; a second signal cancels at once;
a security event raised meanwhile is not hidden behind the interruption; a bug
keeps its type; the hooks do nothing outside ``run_stoppable``.
"""

from __future__ import annotations

import os
import signal

import pytest
import trio
import trio.testing

from mirror import shutdown
from mirror.errors import ExitStatus, Interrupted, SignatureError
from mirror.shutdown import run_stoppable


async def _signal(signum: int = signal.SIGINT) -> None:
    """Send ``signum`` to this process and let the watcher see it."""
    os.kill(os.getpid(), signum)
    await trio.testing.wait_all_tasks_blocked()


async def test_grace_lets_transfers_in_flight_finish_and_no_new_one_start(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """SIGINT at t=1 with a 5 s and a 100 s transfer in flight and a 10 s grace: the
    short one finishes, the long one is abandoned at t=11, a transfer asked for
    after the signal never starts; exit status 130."""
    finished: list[str] = []
    started: list[str] = []

    async def copy(name: str, seconds: float) -> None:
        async with shutdown.transfer():
            started.append(name)
            await trio.sleep(seconds)
            finished.append(name)

    async def command() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(copy, "short", 5)
            nursery.start_soon(copy, "long", 100)
            await trio.sleep(1)
            await _signal()
            nursery.start_soon(copy, "late", 1)

    with pytest.raises(Interrupted) as info:
        await run_stoppable(command, grace=10)
    assert finished == ["short"]
    assert sorted(started) == ["long", "short"]
    assert info.value.exit_status == ExitStatus.SIGINT
    assert "the published state is unchanged" in info.value.diagnostics()
    assert trio.current_time() == pytest.approx(11)


async def test_nothing_in_flight_stops_at_once(autojump_clock: trio.testing.MockClock) -> None:
    """With no transfer in flight, SIGTERM cancels the command without waiting for
    the grace; a stop point parks the work that would come next; status 143."""
    reached: list[str] = []

    async def command() -> None:
        await trio.sleep(2)
        await _signal(signal.SIGTERM)
        await shutdown.stop_point()
        reached.append("after the stop point")

    with pytest.raises(Interrupted) as info:
        await run_stoppable(command, grace=600)
    assert reached == []
    assert info.value.exit_status == ExitStatus.SIGTERM
    assert trio.current_time() == pytest.approx(2)


async def test_a_publish_under_way_completes(autojump_clock: trio.testing.MockClock) -> None:
    """A first signal during ``finishing()`` lets the section run to its end (even
    past the grace), then stops the command before anything after it."""
    steps: list[str] = []

    async def command() -> None:
        async with shutdown.finishing():
            await trio.sleep(1)
            await _signal()
            await trio.sleep(30)  # longer than the grace
            steps.append("timestamp.json written")
        await trio.sleep(1)
        steps.append("after the publish")

    with pytest.raises(Interrupted) as info:
        await run_stoppable(command, grace=5)
    assert steps == ["timestamp.json written"]
    assert "stopped after publishing" in info.value.diagnostics()


async def test_no_publish_starts_after_a_signal(autojump_clock: trio.testing.MockClock) -> None:
    """A signal before the publish: ``finishing()`` never enters its body."""
    steps: list[str] = []

    async def command() -> None:
        await _signal()
        async with shutdown.finishing():
            steps.append("publish")

    with pytest.raises(Interrupted):
        await run_stoppable(command, grace=5)
    assert steps == []


async def test_second_signal_cancels_the_publish(autojump_clock: trio.testing.MockClock) -> None:
    """A second signal cancels at once, a publish under way included; the message
    says the publish was cut short and the next run completes it."""
    steps: list[str] = []

    async def command() -> None:
        async with shutdown.finishing():
            await _signal()
            await trio.sleep(1)
            await _signal()
            await trio.sleep(30)
            steps.append("timestamp.json written")

    with pytest.raises(Interrupted) as info:
        await run_stoppable(command, grace=5)
    assert steps == []
    assert "cut short by a second signal" in info.value.diagnostics()
    assert trio.current_time() == pytest.approx(1)


async def test_a_security_event_wins_over_the_signal(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A verification failure raised while stopping is reported as such (exit 1),
    never as an interruption."""

    async def command() -> None:
        async with shutdown.transfer():
            await _signal()
            raise SignatureError("forged snapshot")

    with pytest.raises(SignatureError):
        await run_stoppable(command, grace=5)


async def test_a_bug_keeps_its_type(autojump_clock: trio.testing.MockClock) -> None:
    """A programming error while stopping propagates unchanged (exit 70 upstream)."""

    async def command() -> None:
        async with shutdown.transfer():
            await _signal()
            raise RuntimeError("steps called out of order")

    with pytest.raises(RuntimeError, match="out of order"):
        await run_stoppable(command, grace=5)


async def test_hooks_do_nothing_outside_a_stoppable_run() -> None:
    """Outside ``run_stoppable`` (tests driving the engine, worker processes) the
    hooks neither park nor count."""
    async with shutdown.transfer(), shutdown.finishing():
        await shutdown.stop_point()
    shutdown.transfers_started(3)
    shutdown.transfers_done(3)


async def test_a_completed_run_without_signal_returns_its_result() -> None:
    """No signal: the command's result comes back unchanged."""

    async def command() -> str:
        async with shutdown.transfer():
            return "done"

    assert await run_stoppable(command, grace=5) == "done"
