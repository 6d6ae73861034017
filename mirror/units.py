"""The units of the command line and the configuration file: byte sizes (``512K``,
``10M``), durations (``90s``, ``12h``), times (ISO 8601) and ``--bwlimit`` bandwidth
timetables (``"08:00,512K 19:00,10M 23:00,off"``), parsed into values and spelled
back the shortest exact way (``--help`` shows defaults as ``2m``, ``32M``).

Sizes and rates are *bytes*, never bits; K/M/G/T are powers of 1024. A malformed
value is a ``UsageError`` that names the text given.

This module is pure (``tests/trust/test_purity.py`` checks it): no I/O and no clock
reads. What it does not do: know which option a value belongs to (``mirror.config``
names the flag in its errors), or apply a rate (``mirror.fetch.ratelimit``'s token
bucket reads a ``BandwidthSchedule`` at the local time of day it is given).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from mirror.errors import UsageError

__all__ = [
    "BandwidthSchedule",
    "format_duration",
    "format_rate",
    "format_size",
    "parse_duration",
    "parse_rate",
    "parse_size",
    "parse_time",
]

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B?)?\s*$", re.IGNORECASE)
_DURATION_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*")
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_ENTRY = re.compile(r"^(\d{1,2}):(\d{2}),(.+)$")
_DAY = 24 * 60


def parse_size(text: str) -> int:
    """Parse a byte count with an optional binary suffix: ``512K``, ``10M``, ``5G``.

    Suffixes are powers of 1024 and always mean *bytes* (``10M`` is 10 MiB, not
    10 megabits).
    """
    match = _SIZE_RE.match(str(text))
    if not match:
        raise UsageError(f"not a size: {text!r} (expected e.g. 512K, 10M, 5G; bytes, not bits)")
    number, unit = match.group(1), match.group(2).upper()
    return int(float(number) * _UNITS[unit])


def parse_duration(text: str) -> float:
    """Parse seconds with an optional unit: ``30``, ``30s``, ``5m``, ``2h``, ``3d``."""
    match = _DURATION_RE.fullmatch(str(text))
    if not match:
        raise UsageError(f"not a duration: {text!r} (expected e.g. 30s, 5m, 2h, 3d)")
    return float(match.group(1)) * _SECONDS[match.group(2)]


def parse_time(text: str) -> datetime:
    """Parse an ISO 8601 time (``2024-05-01T12:00:00Z``, ``2024-05-01``); no zone means UTC."""
    try:
        moment = datetime.fromisoformat(str(text).strip())
    except ValueError as exc:
        raise UsageError(f"not a time: {text!r} (expected e.g. 2024-05-01T12:00:00Z)") from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of a duration in ``parse_duration``'s syntax:
    ``120.0`` -> ``2m``, ``172800.0`` -> ``2d``, ``90`` -> ``90s``."""
    for unit, scale in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= scale and float(seconds) % scale == 0:
            return f"{int(seconds // scale)}{unit}"
    return f"{int(seconds)}s" if float(seconds).is_integer() else f"{seconds}s"


def format_size(size: int) -> str:
    """The shortest exact spelling of a byte count in ``parse_size``'s syntax:
    ``33554432`` -> ``32M``."""
    for unit in ("T", "G", "M", "K"):
        scale = _UNITS[unit]
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit}"
    return str(size)


def parse_rate(text: str) -> int | None:
    """A bandwidth in bytes per second (``512K``, ``10M``), or None for ``off``."""
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


def format_rate(rate: int | None) -> str:
    """``parse_rate``'s syntax: ``1048576`` -> ``1M``, None -> ``off``."""
    if rate is None:
        return "off"
    for suffix, unit in (("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if rate % unit == 0:
            return f"{rate // unit}{suffix}"
    return str(rate)


@dataclass(frozen=True, slots=True)
class BandwidthSchedule:
    """A ``--bwlimit`` value: ``entries`` are (minute of the day, bytes per second or
    None for no cap), sorted by minute. A constant rate is one entry at minute 0.

    Parsed rclone style: ``10M`` (a constant rate), ``off`` (no cap), or a timetable
    of ``HH:MM,RATE`` entries separated by spaces, ``"08:00,512K 19:00,10M 23:00,off"``:
    at each time of day (local time) the rate becomes that entry's. The entry in
    force is the last one whose time has passed, wrapping around midnight (before
    08:00 the 23:00 entry above applies)."""

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
        """Parse ``--bwlimit`` text (see the class docstring); ``UsageError`` if bad."""
        words = str(text).split()
        if not words:
            raise UsageError(
                "empty bandwidth limit (expected e.g. 10M, off or '08:00,512K 19:00,off')"
            )
        if len(words) == 1 and "," not in words[0]:
            return cls.constant(parse_rate(words[0]))
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
            entries[minute] = parse_rate(match.group(3))
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
            return format_rate(self.entries[0][1])
        return " ".join(
            f"{minute // 60:02d}:{minute % 60:02d},{format_rate(rate)}"
            for minute, rate in self.entries
        )
