"""The one retry policy of upstream fetches, on tenacity with trio's sleep.

An attempt signals "this failure is transient, try again" by raising ``RetryLater``
carrying the ``FetchError`` to report if attempts run out, and optionally the
server's ``Retry-After`` hint. Anything else an attempt raises (``NotFoundError``,
a 4xx ``FetchError``, ``OversizeError``, ``LengthOrHashMismatchError``, cancellation)
is not retried and propagates unchanged. ``run_with_retries`` turns exhausted
attempts into one ``FetchError`` naming the last failure and the attempt count.

What it does not do: decide which failures are transient (the fetcher that
understands the protocol does) or bound the whole run (the caller's deadline).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import trio
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
)

from mirror.errors import FetchError

__all__ = ["RetryLater", "RetryPolicy", "parse_retry_after", "run_with_retries"]

_T = TypeVar("_T")


class RetryLater(Exception):
    """Raised by an attempt for a transient failure; never leaves ``mirror.fetch``.

    ``error`` is what to report if no attempt succeeds; ``retry_after`` the delay
    the server asked for, in seconds."""

    def __init__(self, error: FetchError, *, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently to retry a transient failure.

    ``attempts`` counts the first try. Backoff before retry *n* (1-based) is
    ``initial * 2**(n-1)`` capped at ``maximum`` seconds; with ``jitter`` it is drawn
    uniformly from its upper half. A ``Retry-After`` hint replaces the backoff, capped
    at ``max_retry_after`` seconds.
    """

    attempts: int = 4
    initial: float = 0.5
    maximum: float = 30.0
    jitter: bool = True
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be >= 1")
        if self.initial < 0 or self.maximum < 0 or self.max_retry_after < 0:
            raise ValueError("delays must be >= 0")

    def delay(self, retry: int, *, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the second attempt)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        delay = min(self.maximum, self.initial * 2.0 ** min(retry - 1, 64))
        if self.jitter:
            # Not security-relevant: spreading retries of many clients over time.
            delay = random.uniform(delay / 2, delay)  # noqa: S311
        return delay

    def retrying(
        self,
        *,
        before_sleep: Callable[[RetryCallState], None] | None = None,
        done: int = 0,
    ) -> AsyncRetrying:
        """A tenacity ``AsyncRetrying`` for this policy: retries ``RetryLater`` only,
        sleeps with ``trio.sleep`` and re-raises the last ``RetryLater`` when done.
        ``done`` attempts were already made (and waited for) outside it."""

        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome is not None else None
            retry_after = error.retry_after if isinstance(error, RetryLater) else None
            return self.delay(state.attempt_number + done, retry_after=retry_after)

        return AsyncRetrying(
            sleep=trio.sleep,
            stop=stop_after_attempt(self.attempts - done),
            wait=wait,
            retry=retry_if_exception_type(RetryLater),
            before_sleep=before_sleep,
            reraise=True,
        )


async def run_with_retries(
    policy: RetryPolicy,
    attempt: Callable[[], Awaitable[_T]],
    *,
    on_retry: Callable[[], None] | None = None,
) -> _T:
    """Run ``attempt`` under ``policy``. ``on_retry`` is called before each retry
    (for counters). Exhausted attempts raise ``FetchError`` with the last failure's
    message (which names the URL and status) and the number of attempts.

    The first attempt runs outside tenacity: nearly every request succeeds at once,
    and building the retry state costs a tenth of a small request's CPU
    (scripts/bench). After a first failure, tenacity runs the whole retry loop: the
    failure is replayed as its first attempt, so every wait (the first included),
    the stop condition and the ``on_retry`` hook are tenacity's.
    """
    try:
        return await attempt()
    except RetryLater as exc:
        if policy.attempts <= 1:
            raise FetchError(f"{exc.error} (gave up after 1 attempt)") from exc.error
        replay: RetryLater | None = exc
    attempts = 1

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None:
            on_retry()

    try:
        async for attempt_manager in policy.retrying(before_sleep=before_sleep):
            with attempt_manager:
                if replay is not None:
                    failure, replay = replay, None
                    raise failure
                attempts += 1
                return await attempt()
    except RetryLater as exc:
        plural = "s" if attempts != 1 else ""
        raise FetchError(f"{exc.error} (gave up after {attempts} attempt{plural})") from exc.error
    raise AssertionError("tenacity ended without an outcome")  # pragma: no cover


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date (relative
    to ``now``, default the wall clock). None when absent or unparseable; never
    negative."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    import email.utils  # only here: a Retry-After date is rare, its import is not free

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())
