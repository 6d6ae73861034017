"""``--max-transfer``: a per-run budget of target bytes, with a soft cut-off.

Like rclone's ``--cutoff-mode soft``: once the budget is spent, no new transfer
starts; transfers in flight finish and are written. What is charged is what moves:
a resumed download pays only for the bytes it fetches in this run, not its length.

Each transfer is granted a share of what is left when it starts
(``TransferBudget.start``): its whole length if that fits, else the rest of the
budget. A download granted less than its length (a target larger than what is
left, possibly larger than the whole budget) fetches that many bytes, then stops
and keeps its resumable partial file (``TransferPaused``); the next run resumes it,
a budget's worth at a time, so repeated runs always converge. A small target
fetched into memory cannot be paused: it is granted its whole length whenever
anything is left. The total a run fetches therefore exceeds the budget by at most
one small target, a body chunk, and retried bytes.

The grant travels to the fetcher in a context variable (``current_allowance``)
set by the copier around one target's fetch, so the ``Fetcher`` interface stays
unchanged; a fetcher that ignores it (a local directory, a bundle) is charged the
target's length.

What it does not do: decide what to do with deferred targets (``mirror.sync``
publishes nothing and exits 5), or count metadata: only targets are budgeted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from mirror.errors import BudgetExhaustedError, UsageError

__all__ = ["Allowance", "TransferBudget", "TransferPaused", "current_allowance"]

_CURRENT: ContextVar[Allowance | None] = ContextVar("tuf_mirror_allowance", default=None)


class TransferPaused(Exception):
    """A download stopped at its grant with its partial file kept; never leaves
    ``mirror.copier`` (which counts the target as deferred)."""


@dataclass(slots=True)
class Allowance:
    """What one transfer may move (``stop_after``: None = until complete) and what
    it did move (``moved``; ``counted`` once a fetcher reported bytes)."""

    grant: int
    stop_after: int | None
    moved: int = 0
    counted: bool = False

    def received(self, count: int) -> None:
        """A fetcher received ``count`` body bytes of this transfer."""
        self.moved += count
        self.counted = True

    @property
    def exhausted(self) -> bool:
        """True when the transfer must stop now (and may, if it can resume later)."""
        return self.stop_after is not None and self.moved >= self.stop_after


def current_allowance() -> Allowance | None:
    """The allowance of the transfer this task is running, if it is budgeted."""
    return _CURRENT.get()


class TransferBudget:
    """The budget of one run; see the module docstring."""

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise UsageError(f"--max-transfer must be positive, got {limit}")
        self.limit = limit
        #: bytes moved by finished (or paused) transfers
        self.spent = 0
        #: grants of the transfers in flight
        self.reserved = 0
        #: transfers not started because the budget was spent, and paused ones
        self.deferred = 0
        self.paused = 0

    @property
    def left(self) -> int:
        return self.limit - self.spent - self.reserved

    @contextlib.contextmanager
    def transfer(self, length: int, *, resumable: bool) -> Iterator[Allowance | None]:
        """Run one transfer of a ``length``-byte target under the budget: yields its
        allowance, or None when it must not start (counted as deferred)."""
        left = self.left
        if left <= 0:
            self.deferred += 1
            yield None
            return
        grant = min(length, left) if resumable else length
        allowance = Allowance(grant=grant, stop_after=grant if grant < length else None)
        self.reserved += grant
        token = _CURRENT.set(allowance)
        try:
            yield allowance
        except TransferPaused:
            self.paused += 1
            raise
        finally:
            _CURRENT.reset(token)
            self.reserved -= grant
            self.spent += allowance.moved if allowance.counted else grant

    @property
    def reached(self) -> bool:
        """Some target was deferred or paused: the run is not complete."""
        return bool(self.deferred or self.paused)

    def check(self) -> None:
        """Raise ``BudgetExhaustedError`` (exit 5) if the budget stopped this run.

        Called after every transfer in flight has finished; the message says how
        much was fetched and what is left for the next run."""
        if not self.reached:
            return
        raise BudgetExhaustedError(
            f"transfer budget reached: {self.spent} bytes of {self.limit} fetched; "
            f"{self.deferred} target(s) not started, {self.paused} paused with their "
            "partial downloads kept; run again to continue"
        )
