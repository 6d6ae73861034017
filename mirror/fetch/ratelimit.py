"""The bandwidth cap of downloads (``--bwlimit``): a rate or a daily timetable, and
the one token bucket that every concurrent download of a fetcher draws from.

A ``BandwidthSchedule`` is parsed from ``--bwlimit`` text, rclone style: ``10M`` (a
constant rate in *bytes* per second; K/M/G/T suffixes are powers of 1024), ``off``
(no cap), or a timetable of ``HH:MM,RATE`` entries separated by spaces,
``"08:00,512K 19:00,10M 23:00,off"``: at each time of day (local time) the rate
becomes that entry's. The entry in force is the last one whose time has passed,
wrapping around midnight (before 08:00 the 23:00 entry above applies).

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

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import trio

from mirror.errors import UsageError

__all__ = ["BandwidthSchedule", "TokenBucket", "burst_for"]

_ENTRY = re.compile(r"^(\d{1,2}):(\d{2}),(.+)$")
_MIN_BURST = 4 * 1024
_MAX_BURST = 256 * 1024
_DAY = 24 * 60


@dataclass(frozen=True, slots=True)
class BandwidthSchedule:
    """A ``--bwlimit`` value: ``entries`` are (minute of the day, bytes per second or
    None for no cap), sorted by minute. A constant rate is one entry at minute 0."""

    entries: tuple[tuple[int, int | None], ...]

    def __post_init__(self) -> None:
        if not self.entries:
            raise ValueError("a schedule needs at least one entry")
        minutes = [minute for minute, _ in self.entries]
        if minutes != sorted(set(minutes)) or not all(0 <= m < _DAY for m in minutes):
            raise ValueError(f"entries must have distinct minutes of the day, sorted: {minutes}")
        if any(rate is not None and rate < 1 for _, rate in self.entries):
            raise ValueError("rates must be at least 1 byte per second")

    @classmethod
    def constant(cls, rate: int | None) -> BandwidthSchedule:
        """The same rate (bytes/s; None: no cap) all day."""
        return cls(((0, rate),))

    @classmethod
    def parse(cls, text: str) -> BandwidthSchedule:
        """Parse ``--bwlimit`` text (see the module docstring); ``UsageError`` if bad."""
        words = str(text).split()
        if not words:
            raise UsageError(
                "empty bandwidth limit (expected e.g. 10M, off or '08:00,512K 19:00,off')"
            )
        if len(words) == 1 and "," not in words[0]:
            return cls.constant(_parse_rate(words[0]))
        entries: dict[int, int | None] = {}
        for word in words:
            match = _ENTRY.match(word)
            if match is None:
                raise UsageError(
                    f"bad bandwidth timetable entry {word!r} (expected HH:MM,RATE like 08:00,512K)"
                )
            hours, minutes = int(match.group(1)), int(match.group(2))
            if hours > 23 or minutes > 59:
                raise UsageError(f"bad time of day in bandwidth timetable entry {word!r}")
            minute = hours * 60 + minutes
            if minute in entries:
                raise UsageError(f"bandwidth timetable names {word.partition(',')[0]} twice")
            entries[minute] = _parse_rate(match.group(3))
        return cls(tuple(sorted(entries.items())))

    def rate_at(self, moment: datetime) -> int | None:
        """The rate in force at ``moment`` (its time of day, as given: pass local
        time): the last entry at or before it, else the day's last entry."""
        minute = moment.hour * 60 + moment.minute
        rate = self.entries[-1][1]
        for start, entry_rate in self.entries:
            if start > minute:
                break
            rate = entry_rate
        return rate

    @property
    def unlimited(self) -> bool:
        """Whether no entry caps the rate (``off`` all day)."""
        return all(rate is None for _, rate in self.entries)

    def __str__(self) -> str:
        if len(self.entries) == 1 and self.entries[0][0] == 0:
            return _format_rate(self.entries[0][1])
        return " ".join(
            f"{minute // 60:02d}:{minute % 60:02d},{_format_rate(rate)}"
            for minute, rate in self.entries
        )


def _parse_rate(text: str) -> int | None:
    from mirror.config import parse_size  # here: mirror.config imports this module lazily

    if text.strip().lower() == "off":
        return None
    try:
        rate = parse_size(text)
    except UsageError as exc:
        raise UsageError(
            f"not a bandwidth: {text!r} (bytes per second, not bits: e.g. 512K, 10M, or off)"
        ) from exc
    if rate < 1:
        raise UsageError(f"bandwidth {text!r} must be at least 1 byte per second (or off)")
    return rate


def _format_rate(rate: int | None) -> str:
    if rate is None:
        return "off"
    for suffix, unit in (("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if rate % unit == 0:
            return f"{rate // unit}{suffix}"
    return str(rate)


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
