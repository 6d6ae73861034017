"""``mirror.units``: the pure parsing of sizes, durations, times and ``--bwlimit``
timetables that ``mirror.config`` and ``mirror.fetch.ratelimit`` both use, and the
shortest spellings ``--help`` shows; every malformed value is a ``UsageError``
naming the text given."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from mirror import config, units
from mirror.errors import UsageError
from mirror.fetch import ratelimit
from mirror.units import (
    BandwidthSchedule,
    format_duration,
    format_rate,
    format_size,
    parse_duration,
    parse_rate,
    parse_size,
    parse_time,
)

K = 1024
M = 1024**2
G = 1024**3


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0", 0),
        ("1000", 1000),
        ("512k", 512 * K),
        ("512K", 512 * K),
        ("1M", M),
        ("10MiB", 10 * M),
        ("10MB", 10 * M),
        ("1.5G", int(1.5 * G)),
        ("2T", 2 * 1024 * G),
        (" 32M ", 32 * M),
    ],
    ids=["zero", "bytes", "k", "K", "1M", "MiB", "MB", "fraction", "T", "spaces"],
)
def test_sizes(text: str, size: int) -> None:
    """Sizes are bytes; K/M/G/T are powers of 1024 in either case, with an optional
    B or iB."""
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text",
    ["", "off", "10 Mbit", "1P", "-1M", "M", "1,5M", "1e6"],
    ids=["empty", "off", "bits", "peta", "negative", "no-number", "comma", "exponent"],
)
def test_malformed_sizes(text: str) -> None:
    """Anything else is a usage error that quotes the text (``off`` is a rate, not a
    size)."""
    with pytest.raises(UsageError, match="not a size") as caught:
        parse_size(text)
    assert repr(text) in str(caught.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("90s", 90.0),
        ("5m", 300.0),
        ("12h", 43200.0),
        ("3d", 259200.0),
        ("0.5s", 0.5),
        (" 2m ", 120.0),
    ],
    ids=["bare", "s", "m", "h", "d", "fraction", "spaces"],
)
def test_durations(text: str, seconds: float) -> None:
    """Durations are seconds with an optional s/m/h/d unit."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["", "soon", "12 hours", "1w", "-5m", "5M", "h"],
    ids=["empty", "word", "long-unit", "week", "negative", "upper-case", "no-number"],
)
def test_malformed_durations(text: str) -> None:
    """Anything else is a usage error that quotes the text."""
    with pytest.raises(UsageError, match="not a duration") as caught:
        parse_duration(text)
    assert repr(text) in str(caught.value)


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),
        (
            "2024-05-01T14:00:00+02:00",
            datetime(2024, 5, 1, 14, tzinfo=timezone(timedelta(hours=2))),
        ),
    ],
    ids=["zulu", "date-only", "offset"],
)
def test_times(text: str, moment: datetime) -> None:
    """ISO 8601 times; a time without a zone is UTC."""
    assert parse_time(text) == moment


@pytest.mark.parametrize("text", ["yesterday", "2024-13-01", ""], ids=["word", "month", "empty"])
def test_malformed_times(text: str) -> None:
    """A time that does not parse is a usage error quoting it."""
    with pytest.raises(UsageError, match="not a time") as caught:
        parse_time(text)
    assert repr(text) in str(caught.value)


@pytest.mark.parametrize(
    ("value", "text"),
    [(120.0, "2m"), (172800.0, "2d"), (90, "90s"), (3600.0, "1h"), (0.5, "0.5s")],
    ids=["minutes", "days", "seconds", "hour", "fraction"],
)
def test_format_duration_round_trips(value: float, text: str) -> None:
    """The shortest exact spelling, which parses back to the same value."""
    assert format_duration(value) == text
    assert parse_duration(text) == value


@pytest.mark.parametrize(
    ("value", "text"),
    [(32 * M, "32M"), (64 * M, "64M"), (1000, "1000"), (1536, "1536"), (2 * G, "2G")],
    ids=["32M", "64M", "bytes", "not-whole-K", "G"],
)
def test_format_size_round_trips(value: int, text: str) -> None:
    """The shortest exact spelling, which parses back to the same value."""
    assert format_size(value) == text
    assert parse_size(text) == value


@pytest.mark.parametrize(
    ("text", "rate"),
    [("off", None), ("OFF", None), ("1M", M), ("512k", 512 * K), ("1", 1)],
    ids=["off", "OFF", "1M", "512k", "one-byte"],
)
def test_rates(text: str, rate: int | None) -> None:
    """A bandwidth is a size per second, or ``off``; it spells back the same."""
    assert parse_rate(text) == rate
    assert parse_rate(format_rate(rate)) == rate


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10Mbit", "not a bandwidth: '10Mbit'"),
        ("0", "bandwidth '0' must be at least 1 byte"),
        ("0.5", "bandwidth '0.5' must be at least 1 byte"),
    ],
    ids=["bits", "zero", "under-a-byte"],
)
def test_malformed_rates(text: str, message: str) -> None:
    """A rate in bits, or below one byte per second, is refused by name."""
    with pytest.raises(UsageError, match=message):
        parse_rate(text)


@pytest.mark.parametrize(
    ("text", "entries"),
    [
        ("1M", ((0, M),)),
        ("off", ((0, None),)),
        ("08:00,512K 19:00,10M 23:00,off", ((480, 512 * K), (1140, 10 * M), (1380, None))),
        ("23:00,off 08:00,512K", ((480, 512 * K), (1380, None))),
        ("0:05,1K", ((5, K),)),
    ],
    ids=["constant", "off", "office-hours", "unsorted", "one-digit-hour"],
)
def test_timetables(text: str, entries: tuple[tuple[int, int | None], ...]) -> None:
    """A constant rate is one entry at midnight; a timetable's entries are kept in
    time-of-day order and print back to text that parses to the same schedule."""
    schedule = BandwidthSchedule.parse(text)
    assert schedule.entries == entries
    assert BandwidthSchedule.parse(str(schedule)) == schedule


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty bandwidth limit"),
        ("08:00 512K", "bad bandwidth timetable entry '08:00'"),
        ("8h,1M", "bad bandwidth timetable entry '8h,1M'"),
        ("24:00,1M", "bad time of day in bandwidth timetable entry '24:00,1M'"),
        ("08:60,1M", "bad time of day in bandwidth timetable entry '08:60,1M'"),
        ("08:00,1M 08:00,2M", "names 08:00 twice"),
        ("08:00,fast", "not a bandwidth: 'fast'"),
        ("08:00,0", "bandwidth '0' must be at least 1 byte"),
    ],
    ids=["empty", "no-comma", "not-a-time", "hour-24", "minute-60", "twice", "rate", "zero"],
)
def test_malformed_timetables(text: str, message: str) -> None:
    """Each malformed timetable is a usage error naming the entry at fault."""
    with pytest.raises(UsageError, match=message):
        BandwidthSchedule.parse(text)


@pytest.mark.parametrize(
    ("hour", "minute", "rate"),
    [(7, 59, None), (8, 0, 512 * K), (18, 59, 512 * K), (19, 0, 10 * M), (23, 30, None)],
    ids=["before-first-wraps", "at-first", "before-second", "at-second", "last"],
)
def test_rate_at_a_time_of_day(hour: int, minute: int, rate: int | None) -> None:
    """The entry in force is the last one whose time has passed, wrapping around
    midnight."""
    schedule = BandwidthSchedule.parse("08:00,512K 19:00,10M 23:00,off")
    assert schedule.rate_at(datetime(2026, 1, 1, hour, minute)) == rate


def test_one_parser_for_config_and_ratelimit() -> None:
    """``mirror.config`` and ``mirror.fetch.ratelimit`` use these very functions (no
    copy, no import of each other)."""
    assert config.parse_size is units.parse_size
    assert config.parse_duration is units.parse_duration
    assert config.BandwidthSchedule is ratelimit.BandwidthSchedule is units.BandwidthSchedule
