"""The retry policy: backoff schedule, jitter bounds, Retry-After parsing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mirror.fetch.retry import RetryPolicy, parse_retry_after


def test_backoff_doubles_up_to_the_maximum() -> None:
    """Without jitter the delays are initial * 2**n, capped at maximum."""
    policy = RetryPolicy(attempts=8, initial=0.5, maximum=5.0, jitter=False)

    assert [policy.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert policy.delay(10_000) == 5.0


def test_jitter_stays_in_the_upper_half() -> None:
    """With jitter a delay is drawn from [d/2, d] of the unjittered delay d."""
    policy = RetryPolicy(initial=4.0, maximum=100.0, jitter=True)

    delays = [policy.delay(2) for _ in range(200)]

    assert all(4.0 <= d <= 8.0 for d in delays)
    assert len(set(delays)) > 1


def test_retry_after_replaces_backoff_and_is_capped() -> None:
    """A Retry-After hint replaces the backoff, capped at max_retry_after, never < 0."""
    policy = RetryPolicy(initial=0.5, max_retry_after=60.0, jitter=True)

    assert policy.delay(1, retry_after=7.0) == 7.0
    assert policy.delay(1, retry_after=3600.0) == 60.0
    assert policy.delay(1, retry_after=-5.0) == 0.0


def test_policy_validation() -> None:
    """A policy without attempts or with negative delays is a programming error."""
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="delays"):
        RetryPolicy(initial=-1)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("7", 7.0),
        (" 120 ", 120.0),
        ("Wed, 01 Jan 2025 12:00:30 GMT", 30.0),
        ("Wed, 01 Jan 2025 11:00:00 GMT", 0.0),
        ("soon", None),
        ("-3", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    """Retry-After is delta-seconds or an HTTP date (relative to now, never negative);
    anything else is ignored."""
    now = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after(header, now=now) == expected
