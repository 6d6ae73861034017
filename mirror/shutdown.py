"""Stopping a run cleanly on SIGINT or SIGTERM.

``run_stoppable(command, grace=...)`` runs one command (``sync``, ``plan``,
``verify``, ``export``, ``import``) with SIGINT and SIGTERM routed to a watcher task
instead of the default handlers. On the first signal:

1. no new work starts: ``stop_point()`` and ``transfer()`` park the task that
   calls them (a worker about to start a target download, the pool handing a job
   to a worker process) and ``finishing()`` refuses to start a publish;
2. target transfers already in flight get up to ``grace`` seconds to finish and
   be written; then whatever is left is cancelled, which keeps partial downloads
   resumable (``mirror.fetch.spool``);
3. a publish already under way (``finishing()``) is completed: the metadata set
   is never left half-replaced by the first signal;
4. the command's scope is cancelled and ``Interrupted`` (exit 130 for SIGINT,
   143 for SIGTERM) names what state the destination was left in. Cleanup (the
   lock release, partial-download checkpoints) runs in shielded scopes as usual.

A second signal cancels at once, publish included; the destination stays
consistent for clients because ``timestamp.json`` is written last, and the next
run completes what was cut short.

The hooks are no-ops outside ``run_stoppable`` (tests calling the engine
directly, worker processes, which ignore both signals: their parent decides).
What this module does not do: decide what is published or in which order
(``mirror.sync``), release locks (``mirror.storage.lock``), write the report or
metrics (``mirror.cli``).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import TypeVar

import trio

from mirror.errors import Interrupted, MirrorError, VerificationError
from mirror.log import log

__all__ = [
    "STOP_SIGNALS",
    "Shutdown",
    "finishing",
    "ignore_stop_signals",
    "run_stoppable",
    "stop_point",
    "transfer",
    "transfers_done",
    "transfers_started",
]

_T = TypeVar("_T")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_current: ContextVar[Shutdown | None] = ContextVar("tuf_mirror_shutdown", default=None)


class Shutdown:
    """The stop state of one run: which signal arrived, what is in flight, and
    whether a publish is under way. Driven by ``run_stoppable``'s watcher."""

    def __init__(self, *, grace: float) -> None:
        self.grace = grace
        #: the first stop signal received, or None
        self.signum: int | None = None
        #: a second signal arrived: everything was cancelled at once
        self.forced = False
        #: target transfers started and not yet finished
        self.in_flight = 0
        #: a publish section is running / has completed in this run
        self.publishing = False
        self.published = False
        self._scope = trio.CancelScope()
        self._changed = trio.Event()

    @property
    def stopping(self) -> bool:
        """Whether a stop was requested."""
        return self.signum is not None

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _wait_change(self) -> None:
        await self._changed.wait()

    async def _park(self) -> None:
        """Wait for the cancellation that a requested stop brings."""
        await trio.sleep_forever()

    async def _watch(self, signals: AsyncIterator[int], nursery: trio.Nursery) -> None:
        async for signum in signals:
            name = signal.Signals(signum).name
            if self.signum is None:
                self.signum = signum
                self._notify()
                log.warning(
                    "%s received: no new work starts; %d transfer(s) in flight get up to "
                    "%gs%s; a second signal stops at once",
                    name,
                    self.in_flight,
                    self.grace,
                    ", the publish under way completes" if self.publishing else "",
                )
                nursery.start_soon(self._wind_down)
            else:
                log.warning("second signal (%s): stopping at once", name)
                self.forced = True
                self._scope.cancel()

    async def _wind_down(self) -> None:
        # A publish under way completes (it is short: metadata only); in-flight
        # transfers get the grace; then the command is cancelled.
        while self.publishing:
            await self._wait_change()
        if not self.published:
            with trio.move_on_after(self.grace):
                while self.in_flight > 0:
                    await self._wait_change()
        self._scope.cancel()

    def interrupted(self) -> Interrupted:
        """The error that reports this stop."""
        assert self.signum is not None
        name = signal.Signals(self.signum).name
        if self.published:
            state = "stopped after publishing the new state"
        elif self.publishing:
            state = (
                "publish cut short by a second signal; clients still see a consistent "
                "state (timestamp.json is written last) and the next run completes it"
            )
        else:
            state = "stopped before publishing: the published state is unchanged"
        return Interrupted(
            self.signum, f"interrupted by {name}: {state}; targets already written are kept"
        )


async def stop_point() -> None:
    """Call before starting new work: returns at once unless a stop was requested,
    in which case it waits for the cancellation that follows."""
    shutdown = _current.get()
    if shutdown is not None and shutdown.stopping:
        await shutdown._park()


@asynccontextmanager
async def transfer(count: int = 1) -> AsyncIterator[None]:
    """Around ``count`` target transfers made together: not started once a stop was
    requested; counted as in flight (the grace waits for them) while they run."""
    shutdown = _current.get()
    if shutdown is None:
        yield
        return
    await stop_point()
    transfers_started(count)
    try:
        yield
    finally:
        transfers_done(count)


def transfers_started(count: int) -> None:
    """``count`` transfers were handed to someone else (a worker process)."""
    shutdown = _current.get()
    if shutdown is not None and count:
        shutdown.in_flight += count
        shutdown._notify()


def transfers_done(count: int) -> None:
    """``count`` transfers counted by ``transfers_started`` ended."""
    shutdown = _current.get()
    if shutdown is not None and count:
        shutdown.in_flight = max(0, shutdown.in_flight - count)
        shutdown._notify()


@asynccontextmanager
async def finishing() -> AsyncIterator[None]:
    """Around a publish (and the bookkeeping right after it): not started once a
    stop was requested; once started, a first signal lets it complete."""
    shutdown = _current.get()
    if shutdown is None:
        yield
        return
    await stop_point()
    shutdown.publishing = True
    shutdown._notify()
    try:
        yield
        shutdown.published = True
    finally:
        # No checkpoint here: the code after the section runs before the watcher
        # (woken by this notification) can cancel the command.
        if not shutdown.forced:
            shutdown.publishing = False
        shutdown._notify()


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


async def run_stoppable(
    command: Callable[[], Awaitable[_T]],
    *,
    grace: float,
    companions: Sequence[Callable[[], Awaitable[None]]] = (),
) -> _T:
    """Run ``command`` so that SIGINT and SIGTERM stop it cleanly (module docstring);
    ``companions`` (a progress printer) run beside it until it ends.

    Raises ``Interrupted`` when a signal arrived, also when the command managed to
    complete in the meantime (a supervisor that asked for a stop sees 130/143). A
    ``VerificationError`` raised meanwhile wins over the signal: a security event
    is never reported as an interruption. Anything that is not a ``MirrorError``
    (a bug) propagates unchanged. Outside the main thread (where signals cannot be
    received) the command just runs.
    """
    shutdown = Shutdown(grace=grace)
    token = _current.set(shutdown)
    failure: BaseException | None = None
    try:
        with contextlib.ExitStack() as stack:
            signals = None
            if threading.current_thread() is threading.main_thread():
                signals = stack.enter_context(trio.open_signal_receiver(*STOP_SIGNALS))
            async with trio.open_nursery() as nursery:
                if signals is not None:
                    nursery.start_soon(shutdown._watch, signals, nursery)
                for companion in companions:
                    nursery.start_soon(companion)
                try:
                    with shutdown._scope:
                        result = await command()
                except BaseException as exc:  # noqa: BLE001 - re-raised below, outside the nursery
                    failure = exc
                finally:
                    nursery.cancel_scope.cancel()
    finally:
        _current.reset(token)
    if failure is not None:
        if shutdown.signum is None:
            raise failure
        leaves = list(_leaves(failure))
        security = [leaf for leaf in leaves if isinstance(leaf, VerificationError)]
        if security:
            raise security[0] from None
        if not all(isinstance(leaf, MirrorError | trio.Cancelled) for leaf in leaves):
            raise failure
        raise shutdown.interrupted() from None
    if shutdown.signum is not None:
        raise shutdown.interrupted()
    return result


def ignore_stop_signals() -> None:
    """For worker processes: SIGINT (a terminal's Ctrl-C reaches the whole process
    group) and SIGTERM (systemd's default KillMode signals every process) are the
    parent's to handle; it stops or kills its workers itself."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
