"""``TargetCopier.copy_batch``: ``copy`` for many targets, their downloads pipelined.

The promise is that a batch ends exactly as copying each target alone would: the
same results in the same order, the same bytes under the same names, the same
error at the same target, and nothing unverified written. Only the requests
differ: one per missing small target, sent together on one connection, and a
target the shortcut did not bring whole and right is fetched again by ``copy``.
Real parts: the loopback HTTP test server (with its fault injection and request
log) and a ``LocalStore``; counted: requests and writes, never time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tuf.api.metadata import TargetFile

from mirror.copier import SMALL_TARGET, CopyResult, Outcome, TargetCopier
from mirror.errors import LengthOrHashMismatchError, NotFoundError, OversizeError
from mirror.fetch.http import HttpFetcher
from mirror.fetch.local import LocalFetcher
from mirror.fetch.retry import RetryPolicy
from mirror.plan import TargetCopy, target_copy
from mirror.storage import PutOptions
from mirror.storage.local import LocalStore
from mirror.storage.memory import MemoryStore
from tuf_mirror_testing.server import Fault, RepoServer, serve_directory

FAST_RETRY = RetryPolicy(attempts=2, initial=0.001, maximum=0.001, jitter=False)
LARGE = bytes(range(256)) * (SMALL_TARGET // 256 + 3)


def data_of(index: int) -> bytes:
    return b"target %d\n" % index * (index + 1)


def copy_of(path: str, data: bytes, *, consistent: bool = True) -> TargetCopy:
    hashes = {"sha256": hashlib.sha256(data).hexdigest()}
    target = TargetFile(len(data), hashes, path)
    return target_copy(target, role="targets", consistent_snapshot=consistent)


def publish(root: Path, copy: TargetCopy, data: bytes) -> None:
    """The upstream serves ``data`` under every name of ``copy``."""
    for name in copy.names:
        path = root / "targets" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[tuple[Path, RepoServer]]:
    root = tmp_path / "upstream"
    (root / "targets").mkdir(parents=True)
    with serve_directory(root) as server:
        yield root, server


def http_fetcher(server: RepoServer) -> HttpFetcher:
    return HttpFetcher(
        f"{server.url}/metadata/", f"{server.url}/targets/", retry=FAST_RETRY, max_connections=2
    )


@dataclass(frozen=True)
class Case:
    id: str
    #: per target: what the upstream serves instead of the signed bytes (None:
    #: the signed bytes; b"": nothing, a 404)
    serves: dict[int, bytes]
    #: targets the destination already holds
    present: frozenset[int] = frozenset()
    #: the results before the error (all of them when ``error`` is None)
    done: int = 6
    error: type[Exception] | None = None


CASES = [
    Case("all-absent", {}),
    Case("some-present-are-not-fetched", {}, present=frozenset({0, 3})),
    Case("all-present", {}, present=frozenset(range(6))),
    Case(
        "other-bytes-fetched-again-then-the-error",
        {2: b"X" * len(data_of(2))},
        done=2,
        error=LengthOrHashMismatchError,
    ),
    Case("longer-fetched-again-then-oversize", {4: data_of(4) + b"!"}, done=4, error=OversizeError),
    Case("absent-upstream-then-not-found", {1: b""}, done=1, error=NotFoundError),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
async def test_a_batch_ends_as_copies_one_by_one_would(
    case: Case, upstream: tuple[Path, RepoServer], tmp_path: Path
) -> None:
    """Results in order, one request per missing target sent together, present ones
    neither fetched nor written; a target whose bytes do not verify (or that is
    absent) is fetched again by ``copy``, whose error the batch raises after the
    results of the targets before it, and nothing unverified is ever written."""
    root, server = upstream
    copies = [copy_of(f"pkg/{index}.bin", data_of(index)) for index in range(6)]
    for index, copy in enumerate(copies):
        served = case.serves.get(index)
        if served != b"":
            publish(root, copy, data_of(index) if served is None else served)
    store = LocalStore(tmp_path / "dest")
    for index in case.present:
        for name in copies[index].names:
            await store.put_bytes(f"targets/{name}", data_of(index), PutOptions())
    fetcher = http_fetcher(server)
    copier = TargetCopier(store=store, fetcher=fetcher, consistent_snapshot=True)
    done: list[tuple[int, CopyResult]] = []
    try:
        if case.error is None:
            await copier.copy_batch(copies, lambda index, result: done.append((index, result)))
        else:
            with pytest.raises(case.error):
                await copier.copy_batch(copies, lambda index, result: done.append((index, result)))
    finally:
        await fetcher.aclose()
        await store.aclose()
    expected = [
        (
            index,
            CopyResult(Outcome.PRESENT if index in case.present else Outcome.COPIED, copy.length),
        )
        for index, copy in enumerate(copies)
    ][: case.done]
    assert done == expected
    for index, copy in enumerate(copies):
        path = tmp_path / "dest" / "targets" / copy.names[0]
        stored = path.read_bytes() if path.exists() else None
        if index in case.present or index < case.done:
            assert stored == data_of(index)
        elif index in case.serves:
            assert stored is None  # never written unverified
    batch = len(copies) - len(case.present)
    retried = 0 if case.error is None else 1  # copy asks again for the bad one (no retry)
    assert len(server.paths()) == (batch + retried if batch else 0)
    assert fetcher.stats.requests == len(server.paths())
    assert not list((tmp_path / "dest").rglob(".tmp-*"))


async def _copy_all(
    root: Path, server: RepoServer, copies: list[TargetCopy], store: MemoryStore
) -> list[CopyResult]:
    """Publish each copy's ``data_of`` bytes upstream, then ``copy_batch`` them all
    into ``store`` over HTTP; the results in the order ``done`` got them."""
    for index, copy in enumerate(copies):
        publish(root, copy, data_of(index))
    fetcher = http_fetcher(server)
    copier = TargetCopier(store=store, fetcher=fetcher, consistent_snapshot=True)
    done: list[tuple[int, CopyResult]] = []
    try:
        await copier.copy_batch(copies, lambda index, result: done.append((index, result)))
    finally:
        await fetcher.aclose()
    assert [index for index, _ in done] == list(range(len(copies)))
    return [result for _, result in done]


async def test_the_batch_goes_out_pipelined_on_one_connection(
    upstream: tuple[Path, RepoServer], tmp_path: Path
) -> None:
    """Twenty small targets: twenty requests, every one written under its final
    name, with the options ``copy`` gives (deferred durability, its sha256)."""
    root, server = upstream
    copies = [copy_of(f"p/{index}", data_of(index)) for index in range(20)]
    store = MemoryStore()
    done = await _copy_all(root, server, copies, store)
    assert [result.outcome for result in done] == [Outcome.COPIED] * 20
    assert len(server.paths()) == 20
    assert sorted(store.writes) == sorted(f"targets/{copy.names[0]}" for copy in copies)
    for index, copy in enumerate(copies):
        stored = store.objects[f"targets/{copy.names[0]}"]
        assert stored.data == data_of(index)
        assert stored.options.durable is False
        assert stored.options.sha256 == copy.hashes["sha256"]


async def test_a_failing_answer_is_asked_again_by_copy(
    upstream: tuple[Path, RepoServer], tmp_path: Path
) -> None:
    """A 503 in the middle of the pipeline: the other targets come in the batch and
    the one that failed is fetched again (``copy``, with its retries): all copied."""
    root, server = upstream
    copies = [copy_of(f"q/{index}", data_of(index)) for index in range(5)]
    server.faults.add(f"/targets/{copies[2].names[0]}", Fault.status(503), times=1)
    done = await _copy_all(root, server, copies, MemoryStore())
    assert [result.outcome for result in done] == [Outcome.COPIED] * 5
    assert server.paths().count(f"/targets/{copies[2].names[0]}") == 2
    assert len(server.paths()) == 6


@pytest.mark.parametrize("kind", ["large", "local-fetcher", "dry-run", "one-target"])
async def test_what_is_not_pipelined_goes_the_way_of_copy(
    kind: str, upstream: tuple[Path, RepoServer], tmp_path: Path
) -> None:
    """A target past ``SMALL_TARGET``, a fetcher that cannot pipeline, a dry run
    and a batch of one are copied by ``copy`` itself: the same results."""
    root, server = upstream
    datas = [LARGE if kind == "large" else data_of(0), data_of(1)]
    if kind == "one-target":
        datas = datas[:1]
    copies = [copy_of(f"r/{index}", data) for index, data in enumerate(datas)]
    for copy, data in zip(copies, datas, strict=True):
        publish(root, copy, data)
    fetcher: HttpFetcher | LocalFetcher = (
        LocalFetcher(root) if kind == "local-fetcher" else http_fetcher(server)
    )
    store = MemoryStore()
    copier = TargetCopier(
        store=store, fetcher=fetcher, consistent_snapshot=True, dry_run=kind == "dry-run"
    )
    done: list[CopyResult] = []
    try:
        await copier.copy_batch(copies, lambda index, result: done.append(result))
    finally:
        await fetcher.aclose()
    outcome = Outcome.PLANNED if kind == "dry-run" else Outcome.COPIED
    assert done == [CopyResult(outcome, len(data)) for data in datas]
    assert fetcher.stats.requests == (0 if kind == "dry-run" else len(datas))
    if kind != "dry-run":
        for copy, data in zip(copies, datas, strict=True):
            assert store.objects[f"targets/{copy.names[0]}"].data == data


async def test_a_worker_frame_answers_every_job_after_a_failure(
    upstream: tuple[Path, RepoServer], tmp_path: Path
) -> None:
    """A worker process's frame (``mirror.workers._copy_frame``) over a pipelining
    fetcher: the job whose bytes do not verify gets its error answer, the jobs
    behind it are still copied and answered, each once, in order."""
    from mirror.workers import _copy_frame

    root, server = upstream
    copies = [copy_of(f"w/{index}", data_of(index)) for index in range(5)]
    for index, copy in enumerate(copies):
        publish(root, copy, b"Z" * copy.length if index == 1 else data_of(index))
    store = MemoryStore()
    fetcher = http_fetcher(server)
    copier = TargetCopier(store=store, fetcher=fetcher, consistent_snapshot=True)
    try:
        answers = await _copy_frame(
            copier, [(100 + index, copy) for index, copy in enumerate(copies)]
        )
    finally:
        await fetcher.aclose()
    assert [answer[:2] for answer in answers] == [
        ("ok", 100),
        ("error", 101),
        ("ok", 102),
        ("ok", 103),
        ("ok", 104),
    ]
    assert answers[1][2] == "LengthOrHashMismatchError"
    assert f"targets/{copies[1].names[0]}" not in store.objects
    # The batch, copy's second look at the bad one, and the batch of those behind it.
    assert len(server.paths()) == 5 + 1 + 3
