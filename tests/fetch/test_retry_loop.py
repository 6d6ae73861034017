"""``run_with_retries``: after a first failure tenacity runs the whole loop. Pinned
down in virtual time: every wait (the first included) follows the policy or the
server's Retry-After, ``on_retry`` counts each retry, exhausted attempts become one
FetchError naming the count, and other errors are not retried."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from mirror.errors import FetchError, NotFoundError
from mirror.fetch.retry import RetryLater, RetryPolicy, run_with_retries


def _flaky(
    failures: int, *, retry_after: float | None = None
) -> tuple[list[float], Callable[[], Awaitable[str]]]:
    calls: list[float] = []

    async def attempt() -> str:
        calls.append(trio.current_time())
        if len(calls) <= failures:
            raise RetryLater(FetchError(f"503 #{len(calls)}"), retry_after=retry_after)
        return "ok"

    return calls, attempt


async def test_backoff_between_every_attempt(autojump_clock: trio.testing.MockClock) -> None:
    """Two failures then success: three attempts, waits of 0.5 s then 1 s (no jitter),
    on_retry called twice."""
    calls, attempt = _flaky(2)
    retries: list[int] = []
    policy = RetryPolicy(attempts=4, initial=0.5, jitter=False)
    result = await run_with_retries(policy, attempt, on_retry=lambda: retries.append(1))
    assert result == "ok"
    start = calls[0]
    assert [round(t - start, 3) for t in calls] == [0, 0.5, 1.5]
    assert len(retries) == 2


async def test_retry_after_replaces_the_first_wait(autojump_clock: trio.testing.MockClock) -> None:
    """The server's Retry-After sets the wait before the first retry too."""
    calls, attempt = _flaky(1, retry_after=7)
    await run_with_retries(RetryPolicy(attempts=3, jitter=False), attempt)
    assert calls[1] - calls[0] == pytest.approx(7)


async def test_exhausted_attempts_name_the_count(autojump_clock: trio.testing.MockClock) -> None:
    """Four failures under a 4-attempt policy: one FetchError naming the last failure
    and the count; exactly four attempts made."""
    calls, attempt = _flaky(10)
    with pytest.raises(FetchError, match=r"503 #4 \(gave up after 4 attempts\)"):
        await run_with_retries(RetryPolicy(attempts=4), attempt)
    assert len(calls) == 4


async def test_other_errors_are_not_retried(autojump_clock: trio.testing.MockClock) -> None:
    """A 404 raised by the second attempt propagates unchanged, no third attempt."""
    calls: list[int] = []

    async def attempt() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise RetryLater(FetchError("503"))
        raise NotFoundError("gone")

    with pytest.raises(NotFoundError):
        await run_with_retries(RetryPolicy(attempts=5), attempt)
    assert len(calls) == 2
