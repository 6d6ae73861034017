"""The bandwidth cap of downloads (``--bwlimit``): a rate or a daily timetable, and
the one token bucket that every concurrent download of a fetcher draws from.

A ``BandwidthSchedule`` (``mirror.units``, where it is parsed from ``--bwlimit``
text: ``10M``, ``off`` or a timetable such as ``"08:00,512K 19:00,10M 23:00,off"``)
says which rate is in force at each local time of day.

A ``TokenBucket`` admits bytes at the scheduled rate: ``await bucket.take(n)`` returns
once ``n`` bytes may be received. Tokens accrue continuously up to a small ``burst``
(a tenth of a second's worth, between 4 KiB and 256 KiB); a request for more than
``burst`` is admitted in ``burst``-sized pieces, and waiters are served first come,
first served (a fair ``trio.Lock``). So over any interval of ``t`` seconds the bucket
admits at most ``rate * t + burst`` bytes, and it starts empty, so over a whole run
it admits at most ``rate * elapsed``; a busy bucket admits exactly its rate. The rate
is looked up again at each refill, so a timetable change takes effect within one
refill. ``take`` sleeps with ``trio.sleep``, so tests run it on trio's autojump clock.

What it does not do: count bytes against a budget, or share a rate between
processes (each process has its own bucket; the engine runs no worker processes
under a cap).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import trio

from mirror.units import BandwidthSchedule

__all__ = ["BandwidthSchedule", "TokenBucket", "burst_for"]

_MIN_BURST = 4 * 1024
_MAX_BURST = 256 * 1024


def burst_for(rate: int) -> int:
    """The bucket size at ``rate``: a tenth of a second's bytes, within 4-256 KiB."""
    return max(_MIN_BURST, min(rate // 10, _MAX_BURST))


def _local_now() -> datetime:
    return datetime.now()


class TokenBucket:
    """Admits bytes at the rate of ``schedule`` (or a constant ``int`` rate); see the
    module docstring. ``wall`` gives the local time of day the timetable is read
    at (tests pass a clock that follows trio's)."""

    def __init__(
        self,
        schedule: BandwidthSchedule | int,
        *,
        wall: Callable[[], datetime] = _local_now,
    ) -> None:
        if isinstance(schedule, int):
            schedule = BandwidthSchedule.constant(schedule)
        self.schedule = schedule
        self._wall = wall
        self._fixed = len(schedule.entries) == 1
        self._lock = trio.Lock()
        self._tokens = 0.0
        self._rate: int | None = self._current_rate()
        self._stamp: float | None = None  # trio time of the last refill
        #: bytes admitted so far
        self.admitted = 0

    def __repr__(self) -> str:
        return f"TokenBucket({str(self.schedule)!r})"

    @property
    def rate(self) -> int | None:
        """The rate in force at the last refill (bytes/s; None: no cap)."""
        return self._rate

    @property
    def burst(self) -> int:
        """The most bytes admitted at once at the current rate."""
        return burst_for(self._rate) if self._rate is not None else 0

    async def take(self, count: int) -> None:
        """Return once ``count`` more bytes may be received (at once when there is no
        cap). Cancellation while waiting takes nothing."""
        if count <= 0:
            return
        if self._fixed and self._rate is None:
            self.admitted += count
            return
        async with self._lock:
            while count > 0:
                self._refill()
                if self._rate is None:
                    self.admitted += count
                    return
                piece = min(count, burst_for(self._rate))
                missing = piece - self._tokens
                if missing > 0.5:  # half a byte: float rounding must not loop forever
                    await trio.sleep(missing / self._rate)
                    continue  # refill and look again: the rate may have changed
                self._tokens -= piece
                self.admitted += piece
                count -= piece

    def _current_rate(self) -> int | None:
        if self._fixed:
            return self.schedule.entries[0][1]
        return self.schedule.rate_at(self._wall())

    def _refill(self) -> None:
        """Credit the time since the last refill at the rate that was in force, then
        look the rate up again."""
        now = trio.current_time()
        if self._stamp is not None and self._rate is not None:
            elapsed = max(0.0, now - self._stamp)
            self._tokens = min(float(burst_for(self._rate)), self._tokens + elapsed * self._rate)
        self._stamp = now
        rate = self._current_rate()
        if rate != self._rate:
            self._rate = rate
            self._tokens = 0.0 if rate is None else min(self._tokens, float(burst_for(rate)))
