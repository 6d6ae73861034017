"""FailoverFetcher: which upstream is asked, when it moves on, what a 404 means
from the primary and from the others, what is never failed over, and the
per-upstream counters; plus open_fetcher with several upstreams and a real pair of
loopback servers."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from mirror.errors import (
    FetchError,
    LengthOrHashMismatchError,
    NotFoundError,
    StorageError,
    UsageError,
)
from mirror.fetch import open_fetcher
from mirror.fetch.base import FetchedBytes, FetchedFile, FetchStats, Namespace
from mirror.fetch.failover import FailoverFetcher
from mirror.fetch.http import HttpFetcher
from mirror.fetch.local import LocalFetcher
from tuf_mirror_testing.server import Fault, serve_directory

from .conftest import FAST_RETRY, TIMESTAMP

Outcome = bytes | BaseException | None


class FakeFetcher:
    """Answers from a table: name -> bytes, an exception to raise, or None (304).
    Unlisted names get ``default``. ``gate``, when set, is awaited before answering."""

    def __init__(self, default: Outcome = b"ok", **table: Outcome) -> None:
        self.stats = FetchStats()
        self.default = default
        self.table = table
        self.calls: list[str] = []
        self.closed = False
        self.gate: trio.Event | None = None

    async def _answer(self, name: str) -> Outcome:
        self.calls.append(name)
        self.stats.requests += 1
        if self.gate is not None:
            await self.gate.wait()
        outcome = self.table.get(name.replace(".", "_"), self.default)
        if isinstance(outcome, BaseException):
            raise outcome
        if outcome is not None:
            self.stats.bytes_received += len(outcome)
        return outcome

    async def fetch_bytes(
        self,
        namespace: Namespace,
        name: str,
        *,
        max_length: int,
        if_none_match: str | None = None,
        if_modified_since: str | None = None,
    ) -> FetchedBytes | None:
        outcome = await self._answer(name)
        if outcome is None:
            self.stats.not_modified += 1
            return None
        assert isinstance(outcome, bytes)
        return FetchedBytes(outcome, etag='"e"')

    async def fetch_to_file(
        self,
        namespace: Namespace,
        name: str,
        dest: Path,
        *,
        length: int,
        algorithms: tuple[str, ...],
    ) -> FetchedFile:
        outcome = await self._answer(name)
        assert isinstance(outcome, bytes)
        return FetchedFile(dest, len(outcome))

    async def aclose(self) -> None:
        self.closed = True


def failover(**fakes: FakeFetcher) -> FailoverFetcher:
    return FailoverFetcher(list(fakes.items()))


DOWN = FetchError("HTTP 503 (gave up after 4 attempts)")
GONE = NotFoundError("HTTP 404")


async def get(fetcher: FailoverFetcher, name: str, namespace: Namespace = "metadata") -> bytes:
    got = await fetcher.fetch_bytes(namespace, name, max_length=100)
    assert got is not None
    return got.data


async def test_primary_serves_while_it_works() -> None:
    """Every fetch goes to the primary while it answers; the others are never asked."""
    primary, secondary = FakeFetcher(b"p"), FakeFetcher(b"s")
    fetcher = failover(a=primary, b=secondary)

    assert [await get(fetcher, f"{i}.json") for i in range(3)] == [b"p"] * 3
    assert secondary.calls == []
    assert fetcher.current == "a"


async def test_transient_failure_moves_to_the_next_upstream_for_good() -> None:
    """A FetchError from the primary (after its own retries) sends that fetch to the
    secondary, and the secondary stays current: the dead primary is not asked again
    this run."""
    primary, secondary = FakeFetcher(DOWN), FakeFetcher(b"s")
    fetcher = failover(a=primary, b=secondary)

    assert await get(fetcher, "1.json") == b"s"
    assert await get(fetcher, "2.json") == b"s"

    assert primary.calls == ["1.json"]
    assert secondary.calls == ["1.json", "2.json"]
    assert fetcher.current == "b"
    stats = fetcher.stats
    assert stats.failovers == 1
    assert (stats.per_upstream["a"].served, stats.per_upstream["a"].failed) == (0, 1)
    assert (stats.per_upstream["b"].served, stats.per_upstream["b"].failed) == (2, 0)


async def test_metadata_404_from_the_primary_is_authoritative() -> None:
    """TUF reads a 404 as an answer ("no next root"): from the primary it is final and
    the others are not asked."""
    primary, secondary = FakeFetcher(b"p", **{"2_root_json": GONE}), FakeFetcher(b"s")
    fetcher = failover(a=primary, b=secondary)

    with pytest.raises(NotFoundError):
        await get(fetcher, "2.root.json")

    assert secondary.calls == []
    assert fetcher.current == "a"


async def test_metadata_404_from_a_lagging_secondary_is_checked() -> None:
    """With the primary passed over, a secondary's 404 for metadata may only mean it
    lags: the next upstream in service is asked and serves the file."""
    primary = FakeFetcher(DOWN)
    lagging = FakeFetcher(b"b", **{"2_root_json": GONE})
    fresh = FakeFetcher(b"c")
    fetcher = failover(a=primary, b=lagging, c=fresh)
    assert await get(fetcher, "timestamp.json") == b"b"

    assert await get(fetcher, "2.root.json") == b"c"
    assert fetcher.current == "b"  # a 404 is not a failure: b stays current


async def test_metadata_404_everywhere_in_service_is_not_found() -> None:
    """When every upstream still in service says 404 (the dead primary is not asked
    again), the answer is NotFoundError, so a dead primary does not turn every "no
    next root" into a failed run."""
    primary = FakeFetcher(DOWN)
    secondary = FakeFetcher(b"s", **{"2_root_json": GONE})
    fetcher = failover(a=primary, b=secondary)
    await get(fetcher, "timestamp.json")

    with pytest.raises(NotFoundError):
        await get(fetcher, "2.root.json")

    assert primary.calls == ["timestamp.json"]


async def test_required_metadata_404_from_a_lagging_primary_fails_over(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 404 from the primary for metadata that verified metadata names (a snapshot
    version the timestamp requires, a role version, timestamp.json itself) only
    means the primary lags: the next upstream serves it, with a warning naming both;
    the primary stays current (a 404 is not a failure)."""
    primary = FakeFetcher(b"p", **{"7_snapshot_json": GONE, "3_bins-1_json": GONE})
    secondary = FakeFetcher(b"s")
    fetcher = failover(a=primary, b=secondary)

    assert await get(fetcher, "7.snapshot.json") == b"s"
    assert await get(fetcher, "3.bins-1.json") == b"s"
    assert await get(fetcher, "timestamp.json") == b"p"

    assert secondary.calls == ["7.snapshot.json", "3.bins-1.json"]
    assert fetcher.current == "a"
    assert "upstream a does not have metadata/7.snapshot.json" in caplog.text
    assert "asking b" in caplog.text
    stats = fetcher.stats.per_upstream
    assert (stats["a"].metadata_served, stats["b"].metadata_served) == (1, 2)


async def test_a_skipped_upstream_is_named_in_a_warning_and_the_counters(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Passing over a failed upstream logs one warning naming it, the failure and the
    upstream used instead; the counters say it was passed over, why, and which
    upstream served how many metadata and target files."""
    primary, secondary = FakeFetcher(DOWN), FakeFetcher(b"s")
    fetcher = failover(a=primary, b=secondary)
    await get(fetcher, "timestamp.json")
    await get(fetcher, "x.bin", "targets")
    await get(fetcher, "y.bin", "targets")

    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "upstream a failed (HTTP 503 (gave up after 4 attempts))" in warnings[0]
    assert "skipping it for the rest of this run, using b" in warnings[0]
    stats = fetcher.stats.per_upstream
    assert stats["a"].passed_over
    assert stats["a"].error == str(DOWN)
    assert (stats["a"].metadata_served, stats["a"].targets_served) == (0, 0)
    assert not stats["b"].passed_over
    assert (stats["b"].metadata_served, stats["b"].targets_served) == (1, 2)


async def test_target_404_is_asked_of_every_upstream() -> None:
    """Signed metadata says a target exists: a 404 from any upstream, the primary
    included, sends the fetch on; NotFoundError only when none has it."""
    primary = FakeFetcher(b"p", a_bin=GONE, b_bin=GONE)
    secondary = FakeFetcher(b"s", b_bin=GONE)
    fetcher = failover(a=primary, b=secondary)

    assert await get(fetcher, "a.bin", "targets") == b"s"
    with pytest.raises(NotFoundError):
        await get(fetcher, "b.bin", "targets")
    assert fetcher.current == "a"


async def test_every_upstream_failing_names_each_failure() -> None:
    """When all upstreams fail, one FetchError names each upstream and its error; the
    next fetch tries them all again (none is left in service), and one that answers
    becomes current again."""
    first, second = FakeFetcher(DOWN), FakeFetcher(FetchError("connection refused"))
    fetcher = failover(a=first, b=second)

    with pytest.raises(FetchError, match=r"every upstream failed: a: HTTP 503.*b: connection"):
        await get(fetcher, "timestamp.json")

    first.default = b"back"
    assert await get(fetcher, "timestamp.json") == b"back"
    assert fetcher.current == "a"
    assert await get(fetcher, "1.json") == b"back"
    assert first.calls == ["timestamp.json", "timestamp.json", "1.json"]
    assert second.calls == ["timestamp.json", "timestamp.json"]


@pytest.mark.parametrize(
    "error",
    [
        LengthOrHashMismatchError("more than 100 bytes"),
        StorageError("disk full"),
    ],
)
async def test_bad_bytes_and_local_errors_are_not_failed_over(error: Exception) -> None:
    """Too many bytes or a spool error are not the upstream being unreachable: they
    leave at once (the engine's verification, not the fetcher, judges upstreams)."""
    primary, secondary = FakeFetcher(error), FakeFetcher(b"s")
    fetcher = failover(a=primary, b=secondary)

    with pytest.raises(type(error)):
        await get(fetcher, "timestamp.json")

    assert secondary.calls == []
    assert fetcher.current == "a"


async def test_concurrent_failures_move_on_by_one() -> None:
    """Several fetches failing on the primary at once move the current upstream to
    the next one, not past it."""
    primary = FakeFetcher(DOWN)
    primary.gate = trio.Event()
    fetcher = failover(a=primary, b=FakeFetcher(b"b"), c=FakeFetcher(b"c"))
    results: list[bytes] = []

    async def one(name: str) -> None:
        results.append(await get(fetcher, name))

    async with trio.open_nursery() as nursery:
        for index in range(3):
            nursery.start_soon(one, f"{index}.json")
        await trio.testing.wait_all_tasks_blocked()
        primary.gate.set()

    assert results == [b"b"] * 3
    assert fetcher.current == "b"


async def test_upstream_label_and_not_modified() -> None:
    """FetchedBytes say which upstream served them (validators are per server); a 304
    (None) passes through."""
    fetcher = failover(a=FakeFetcher(DOWN), b=FakeFetcher(None, one_json=b"1"))

    got = await fetcher.fetch_bytes("metadata", "one.json", max_length=10)
    assert got is not None
    assert (got.data, got.upstream, got.etag) == (b"1", "b", '"e"')
    assert (
        await fetcher.fetch_bytes("metadata", "t.json", max_length=10, if_none_match='"e"') is None
    )
    assert fetcher.stats.not_modified == 1


async def test_fetch_to_file_fails_over(tmp_path: Path) -> None:
    """fetch_to_file follows the same rules as fetch_bytes."""
    primary, secondary = FakeFetcher(DOWN), FakeFetcher(b"12345")
    fetcher = failover(a=primary, b=secondary)

    fetched = await fetcher.fetch_to_file(
        "targets", "t.bin", tmp_path / "spool", length=5, algorithms=()
    )

    assert fetched.length == 5
    assert secondary.calls == ["t.bin"]


async def test_stats_sum_the_upstreams() -> None:
    """stats adds up the upstreams' counters and keeps each one's in per_upstream."""
    primary, secondary = FakeFetcher(DOWN), FakeFetcher(b"abc")
    fetcher = failover(a=primary, b=secondary)
    await get(fetcher, "x.json")
    await get(fetcher, "y.json")

    stats = fetcher.stats
    assert (stats.requests, stats.bytes_received) == (3, 6)
    assert stats.per_upstream["a"].requests == 1
    assert (stats.per_upstream["b"].requests, stats.per_upstream["b"].bytes_received) == (2, 6)


async def test_aclose_closes_every_upstream() -> None:
    """aclose closes all fetchers, even after one of them fails to close."""

    class Failing(FakeFetcher):
        async def aclose(self) -> None:
            raise RuntimeError("close failed")

    last = FakeFetcher()
    fetcher = FailoverFetcher([("a", Failing()), ("b", last)])

    with pytest.raises(RuntimeError, match="close failed"):
        await fetcher.aclose()
    assert last.closed


def test_construction_checks() -> None:
    """At least one upstream, and distinct labels."""
    with pytest.raises(ValueError, match="at least one"):
        FailoverFetcher([])
    with pytest.raises(ValueError, match="distinct"):
        FailoverFetcher([("a", FakeFetcher()), ("a", FakeFetcher())])


# -- open_fetcher and real servers ------------------------------------------------------


async def test_open_fetcher_with_several_upstreams(upstream: Path) -> None:
    """Several upstreams make a FailoverFetcher labelled with each, primary first;
    HTTP options reach the HTTP ones only; one upstream in a list is that upstream."""
    fetcher = open_fetcher(
        ["http://a.test/repo", str(upstream), "https://b.test"], transfer_timeout=7.0
    )
    assert isinstance(fetcher, FailoverFetcher)
    children = fetcher.fetchers
    assert list(children) == ["http://a.test/repo", str(upstream), "https://b.test"]
    first, local, last = children.values()
    assert isinstance(first, HttpFetcher)
    assert first.transfer_timeout == 7.0
    assert first.url_for("metadata", "1.root.json") == "http://a.test/repo/metadata/1.root.json"
    assert isinstance(local, LocalFetcher)
    assert isinstance(last, HttpFetcher)
    await fetcher.aclose()

    single = open_fetcher(["http://a.test"], transfer_timeout=7.0)
    assert isinstance(single, HttpFetcher)
    await single.aclose()


@pytest.mark.parametrize(
    ("upstreams", "options", "message"),
    [
        (["http://a.test", "http://b.test"], {"metadata_url": "http://m.test"}, "metadata-url"),
        (["http://a.test", "http://a.test"], {}, "twice"),
        ([], {}, "no upstream"),
    ],
)
def test_open_fetcher_refuses(upstreams: list[str], options: dict[str, str], message: str) -> None:
    """URL overrides cannot apply to several upstreams; an upstream given twice and an
    empty list are usage errors."""
    with pytest.raises(UsageError, match=message):
        open_fetcher(upstreams, **options)  # type: ignore[arg-type]


async def test_failover_between_real_servers(upstream: Path) -> None:
    """A primary answering 503 to everything: each of its attempts is made, then the
    secondary serves, and the per-upstream counters say so."""
    with serve_directory(upstream) as primary, serve_directory(upstream) as secondary:
        primary.faults.add("/*", Fault.status(503))
        fetcher = open_fetcher([primary.url, secondary.url], retry=FAST_RETRY)
        try:
            got = await fetcher.fetch_bytes("metadata", "timestamp.json", max_length=1000)
            again = await fetcher.fetch_bytes("metadata", "timestamp.json", max_length=1000)
        finally:
            await fetcher.aclose()

        assert got is not None
        assert again is not None
        assert got.data == again.data == TIMESTAMP
        assert got.upstream == secondary.url
        assert len(primary.requests) == FAST_RETRY.attempts
        assert len(secondary.requests) == 2
        per = fetcher.stats.per_upstream
        assert (per[primary.url].failed, per[primary.url].requests) == (1, FAST_RETRY.attempts)
        assert (per[secondary.url].served, per[secondary.url].bytes_received) == (
            2,
            2 * len(TIMESTAMP),
        )
