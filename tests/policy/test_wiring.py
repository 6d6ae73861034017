"""The ``--policy`` repositories are fetched with the primary's wiring
(``mirror.endpoints``): the same ``--bwlimit`` cap, one bucket for the whole run."""

from __future__ import annotations

import pytest

from mirror.errors import ExitStatus
from mirror.fetch.ratelimit import TokenBucket
from tests.policy.conftest import PolicyEnv, weights_env


def test_policy_repositories_share_the_runs_bandwidth_cap(
    penv: PolicyEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sync --policy P --bwlimit R``: every byte of every file the server sends
    (200 or 206; not the text of a 404), to the primary and to each policy
    repository, passes through the one token bucket of
    the run (counted, not timed: a cap high enough not to slow the test). Before,
    the policy repositories' downloads were not capped at all."""
    weights_env(penv)
    buckets: set[int] = set()
    taken: list[int] = []
    real = TokenBucket.take

    async def take(self: TokenBucket, count: int) -> None:
        buckets.add(id(self))
        taken.append(count)
        await real(self, count)

    monkeypatch.setattr(TokenBucket, "take", take)
    assert penv.run("sync", "--bwlimit", "512M") == ExitStatus.OK
    requests = penv.server.requests
    for name in ("pypi", "curator", "team-a", "team-b"):
        assert any(r.path.startswith(f"/{name}/") and r.bytes_sent for r in requests), name
    served = sum(r.bytes_sent for r in requests if r.status in (200, 206))
    assert sum(taken) == served > 0
    assert len(buckets) == 1
