"""``TargetCopier.copy``: one verified target made present at the destination.

Table tests over what the copier finds (absent, present, present with other bytes,
in the previous state) and what the upstream serves (the signed bytes, other bytes,
more or fewer bytes), small targets (in memory) and large ones (through a spool
file), with and without consistent snapshots, dry runs and a transfer budget. Real
parts: a ``LocalFetcher`` on an upstream directory (the loopback HTTP test server
where a download must pause and resume), a ``MemoryStore`` (which records
its writes and their options) or a ``LocalStore``. Counted: upstream requests and
store writes, never time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tuf.api.metadata import TargetFile

from mirror.copier import SMALL_TARGET, CopyResult, Outcome, TargetCopier, stored_state
from mirror.errors import LengthOrHashMismatchError, OversizeError, VerificationError
from mirror.fetch.budget import TransferBudget
from mirror.fetch.http import HttpFetcher
from mirror.fetch.local import LocalFetcher
from mirror.fetch.retry import RetryPolicy
from mirror.plan import TargetCopy, target_copy
from mirror.storage import PutOptions, Store
from mirror.storage.headers import IMMUTABLE_CACHE_CONTROL
from mirror.storage.local import LocalStore
from mirror.storage.memory import MemoryStore, StoredObject
from tuf_mirror_testing.server import serve_directory

SMALL = b"small target bytes\n"
LARGE = bytes(range(256)) * (SMALL_TARGET // 256 + 7)  # past the in-memory limit
OTHER_SMALL = SMALL.upper()  # same length, other bytes
SHORT_MAX_AGE = 30

assert len(LARGE) > SMALL_TARGET


def entry(path: str, data: bytes, *algorithms: str) -> TargetFile:
    hashes = {alg: hashlib.new(alg, data).hexdigest() for alg in algorithms or ("sha256",)}
    return TargetFile(len(data), hashes, path)


def upstream_dir(root: Path, files: Mapping[str, bytes]) -> LocalFetcher:
    """An upstream directory holding ``files`` (names under ``targets/``)."""
    for name, data in files.items():
        path = root / "targets" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return LocalFetcher(root)


def served(copy: TargetCopy, data: bytes) -> dict[str, bytes]:
    """The upstream serves ``data`` under every name of ``copy``."""
    return dict.fromkeys(copy.names, data)


@dataclass(frozen=True)
class Case:
    id: str
    #: the signed entry (its path, length and hashes) and what the upstream serves
    signed: bytes
    serves: bytes | None = None
    algorithms: tuple[str, ...] = ("sha256",)
    consistent: bool = True
    #: indexes into the copy's names the destination already holds, and with what
    present: Mapping[int, bytes] = field(default_factory=dict)
    dry_run: bool = False
    outcome: Outcome = Outcome.COPIED
    requests: int = 1
    #: indexes into the copy's names written, in order
    written: tuple[int, ...] = (0,)


CASES = [
    Case("absent-small-fetched-and-written", SMALL),
    Case("absent-large-through-a-spool-file", LARGE),
    Case("absent-plain-name", SMALL, consistent=False),
    Case("absent-every-hash-prefixed-name", SMALL, algorithms=("sha256", "sha512"), written=(0, 1)),
    Case("absent-large-every-name", LARGE, algorithms=("sha256", "sha512"), written=(0, 1)),
    Case(
        "present-not-fetched",
        SMALL,
        present={0: SMALL},
        outcome=Outcome.PRESENT,
        requests=0,
        written=(),
    ),
    Case(
        "present-under-every-name",
        SMALL,
        algorithms=("sha256", "sha512"),
        present={0: SMALL, 1: SMALL},
        outcome=Outcome.PRESENT,
        requests=0,
        written=(),
    ),
    Case(
        "present-under-one-name-only-the-other-written",
        SMALL,
        algorithms=("sha256", "sha512"),
        present={1: SMALL},
        written=(0,),
    ),
    Case("present-with-other-bytes-replaced", SMALL, present={0: OTHER_SMALL}),
    Case("present-with-other-length-replaced", SMALL, present={0: SMALL + b"!"}),
    Case(
        "present-plain-name-not-fetched",
        SMALL,
        consistent=False,
        present={0: SMALL},
        outcome=Outcome.PRESENT,
        requests=0,
        written=(),
    ),
    Case(
        "dry-run-absent-planned",
        SMALL,
        dry_run=True,
        outcome=Outcome.PLANNED,
        requests=0,
        written=(),
    ),
    Case(
        "dry-run-present",
        SMALL,
        dry_run=True,
        present={0: SMALL},
        outcome=Outcome.PRESENT,
        requests=0,
        written=(),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
async def test_copy_outcomes(case: Case, tmp_path: Path) -> None:
    """What ``copy`` returns, how many requests it makes and which final names it
    writes: nothing is fetched for a target present with the signed length and
    hashes, one request serves every missing name, names holding other bytes are
    replaced, a dry run writes nothing; every write carries the headers of its name
    and the verified sha256, and waits for the flush before metadata (not durable)."""
    target = entry("pkgs/a.tgz", case.signed, *case.algorithms)
    copy = target_copy(target, role="targets", consistent_snapshot=case.consistent)
    fetcher = upstream_dir(tmp_path / "up", served(copy, case.serves or case.signed))
    store = MemoryStore()
    for index, data in case.present.items():
        await store.put_bytes(f"targets/{copy.names[index]}", data, PutOptions())
    store.writes.clear()
    copier = TargetCopier(
        store=store,
        fetcher=fetcher,
        consistent_snapshot=case.consistent,
        dry_run=case.dry_run,
        short_max_age=SHORT_MAX_AGE,
    )
    try:
        result = await copier.copy(copy)
        assert result == CopyResult(case.outcome, len(case.signed))
        assert fetcher.stats.requests == case.requests
        written = [f"targets/{copy.names[index]}" for index in case.written]
        assert store.writes == written
        for index in range(len(copy.names)):
            key = f"targets/{copy.names[index]}"
            if case.dry_run and index not in case.present:
                assert key not in store.objects
            else:
                assert store.objects[key].data == case.signed
        for key in written:
            options = store.objects[key].options
            assert options.sha256 == target.hashes["sha256"]
            assert options.durable is False
            assert options.content_type == "application/gzip"
            assert options.cache_control == (
                IMMUTABLE_CACHE_CONTROL if case.consistent else f"public, max-age={SHORT_MAX_AGE}"
            )
        assert list(store.spool_dir().iterdir()) == []
    finally:
        await store.aclose()


@dataclass(frozen=True)
class Bad:
    id: str
    signed: bytes
    serves: bytes
    error: type[VerificationError]


BAD = [
    Bad("small-other-bytes", SMALL, OTHER_SMALL, LengthOrHashMismatchError),
    Bad("small-longer", SMALL, SMALL + b"tail", OversizeError),
    Bad("small-shorter", SMALL, SMALL[:-1], LengthOrHashMismatchError),
    Bad("large-other-bytes", LARGE, LARGE[:-1] + b"\x00", LengthOrHashMismatchError),
    Bad("large-longer", LARGE, LARGE + b"tail", OversizeError),
    Bad("large-shorter", LARGE, LARGE[:-1], LengthOrHashMismatchError),
]


def _store(kind: str, tmp_path: Path) -> Store:
    return MemoryStore() if kind == "memory" else LocalStore(tmp_path / "dest")


@pytest.mark.parametrize("store_kind", ["memory", "local"])
@pytest.mark.parametrize("bad", BAD, ids=lambda bad: bad.id)
async def test_bytes_that_do_not_verify_are_never_published(
    bad: Bad, store_kind: str, tmp_path: Path
) -> None:
    """Upstream bytes of another length or hash raise ``LengthOrHashMismatchError``
    (a verification error: exit 1), and nothing appears under any final name, nor
    stays in the spool directory."""
    target = entry("pkgs/a.tgz", bad.signed, "sha256", "sha512")
    copy = target_copy(target, role="targets", consistent_snapshot=True)
    fetcher = upstream_dir(tmp_path / "up", served(copy, bad.serves))
    store = _store(store_kind, tmp_path)
    copier = TargetCopier(store=store, fetcher=fetcher, consistent_snapshot=True)
    try:
        with pytest.raises(bad.error) as raised:
            await copier.copy(copy)
        assert isinstance(raised.value, LengthOrHashMismatchError)
        assert fetcher.stats.requests == 1
        assert [info.key async for info in store.list("targets/")] == []
        for name in copy.names:
            assert await store.head(f"targets/{name}") is None
        assert list(store.spool_dir().iterdir()) == []
        if isinstance(store, MemoryStore):
            assert store.writes == []
    finally:
        await store.aclose()


async def test_local_store_holds_every_name_and_no_temporary_file(tmp_path: Path) -> None:
    """On a local directory, a copied target exists under each hash-prefixed name with
    the signed bytes, and the destination holds nothing else outside the tool's own
    ``.tuf-mirror`` directory."""
    copies = [
        target_copy(entry(path, data, "sha256", "sha512"), role="targets", consistent_snapshot=True)
        for path, data in (("a/small.bin", SMALL), ("b/large.bin", LARGE))
    ]
    files: dict[str, bytes] = {}
    for copy, data in zip(copies, (SMALL, LARGE), strict=True):
        files.update(served(copy, data))
    fetcher = upstream_dir(tmp_path / "up", files)
    store = LocalStore(tmp_path / "dest")
    copier = TargetCopier(store=store, fetcher=fetcher, consistent_snapshot=True)
    try:
        results = [await copier.copy(copy) for copy in copies]
        assert [r.outcome for r in results] == [Outcome.COPIED, Outcome.COPIED]
        assert fetcher.stats.requests == 2
        on_disk = {
            str(path.relative_to(tmp_path / "dest")): path.read_bytes()
            for path in (tmp_path / "dest").rglob("*")
            if path.is_file() and ".tuf-mirror" not in path.parts
        }
        assert on_disk == {f"targets/{name}": data for name, data in files.items()}
        again = [await copier.copy(copy) for copy in copies]
        assert [r.outcome for r in again] == [Outcome.PRESENT, Outcome.PRESENT]
        assert fetcher.stats.requests == 2
    finally:
        await store.aclose()


@pytest.mark.parametrize(
    ("limit", "outcomes", "requests"),
    [
        pytest.param(3 * len(SMALL), [Outcome.COPIED] * 3, 3, id="budget-fits-everything"),
        pytest.param(
            2 * len(SMALL), [Outcome.COPIED, Outcome.COPIED, Outcome.DEFERRED], 2, id="budget-spent"
        ),
        pytest.param(
            len(SMALL) + 1,
            [Outcome.COPIED, Outcome.COPIED, Outcome.DEFERRED],
            2,
            id="small-target-granted-whole-when-anything-is-left",
        ),
        pytest.param(
            1, [Outcome.COPIED, Outcome.DEFERRED, Outcome.DEFERRED], 1, id="one-byte-budget"
        ),
    ],
)
async def test_budget_defers_what_does_not_start(
    limit: int, outcomes: list[Outcome], requests: int, tmp_path: Path
) -> None:
    """Under ``--max-transfer`` a target starts while anything is left (a small one
    is granted whole); once the budget is spent the next ones are DEFERRED without
    a request or a write, and counted by the budget."""
    copies = [
        target_copy(
            entry(f"t{index}.bin", SMALL[:-1] + bytes([index])),
            role="targets",
            consistent_snapshot=False,
        )
        for index in range(3)
    ]
    files: dict[str, bytes] = {}
    for index, copy in enumerate(copies):
        files.update(served(copy, SMALL[:-1] + bytes([index])))
    fetcher = upstream_dir(tmp_path / "up", files)
    store = MemoryStore()
    budget = TransferBudget(limit)
    copier = TargetCopier(store=store, fetcher=fetcher, consistent_snapshot=False, budget=budget)
    results = [await copier.copy(copy) for copy in copies]
    assert [r.outcome for r in results] == outcomes
    assert fetcher.stats.requests == requests
    assert store.writes == [
        f"targets/{c.path}"
        for c, r in zip(copies, results, strict=True)
        if r.outcome is Outcome.COPIED
    ]
    assert budget.deferred == outcomes.count(Outcome.DEFERRED)
    assert budget.reached is (Outcome.DEFERRED in outcomes)


async def test_present_target_is_not_charged_to_the_budget(tmp_path: Path) -> None:
    """A target already present costs no budget: with nothing left, it is still
    PRESENT, not DEFERRED."""
    copy = target_copy(entry("a.bin", SMALL), role="targets", consistent_snapshot=True)
    store = MemoryStore()
    await store.put_bytes(f"targets/{copy.names[0]}", SMALL, PutOptions())
    budget = TransferBudget(1)
    with budget.transfer(1, resumable=False):
        pass  # spend it
    copier = TargetCopier(
        store=store,
        fetcher=upstream_dir(tmp_path / "up", {}),
        consistent_snapshot=True,
        budget=budget,
    )
    assert await copier.copy(copy) == CopyResult(Outcome.PRESENT, len(SMALL))
    assert budget.deferred == 0


@pytest.mark.parametrize(
    "in_base", [True, False], ids=["in-previous-state", "not-in-previous-state"]
)
async def test_previous_state_counts_as_present(in_base: bool, tmp_path: Path) -> None:
    """A target the previous state (``base``) already holds with the signed bytes is
    PRESENT without a fetch or a write to the destination; otherwise it is copied
    into the destination, never into the base."""
    copy = target_copy(entry("a.bin", SMALL), role="targets", consistent_snapshot=True)
    key = f"targets/{copy.names[0]}"
    base = MemoryStore()
    if in_base:
        await base.put_bytes(key, SMALL, PutOptions())
    base.writes.clear()
    store = MemoryStore()
    fetcher = upstream_dir(tmp_path / "up", served(copy, SMALL))
    copier = TargetCopier(store=store, fetcher=fetcher, consistent_snapshot=True, base=base)
    result = await copier.copy(copy)
    assert result.outcome is (Outcome.PRESENT if in_base else Outcome.COPIED)
    assert fetcher.stats.requests == (0 if in_base else 1)
    assert store.writes == ([] if in_base else [key])
    assert base.writes == []


@pytest.mark.parametrize(
    ("stored", "recorded_sha256", "trust_checksum", "state"),
    [
        pytest.param(None, None, True, None, id="absent"),
        pytest.param(SMALL, None, True, True, id="same-bytes"),
        pytest.param(OTHER_SMALL, None, True, False, id="same-length-other-bytes"),
        pytest.param(SMALL + b"!", None, True, False, id="other-length"),
        pytest.param(SMALL, "0" * 64, True, False, id="recorded-checksum-trusted"),
        pytest.param(SMALL, "0" * 64, False, True, id="audit-reads-the-bytes"),
    ],
)
async def test_stored_state(
    stored: bytes | None, recorded_sha256: str | None, trust_checksum: bool, state: bool | None
) -> None:
    """``stored_state``: None when absent, False for another length or other bytes,
    True for the signed bytes; a checksum the store recorded at upload stands for
    reading the object unless the caller (an audit) asks for the bytes."""
    store = MemoryStore()
    key = "targets/a.bin"
    if stored is not None:
        obj = StoredObject.of(stored, PutOptions())
        if recorded_sha256 is not None:
            obj = StoredObject(obj.data, obj.options, recorded_sha256)
        store.objects[key] = obj
    signed = entry("a.bin", SMALL)
    assert (
        await stored_state(store, key, signed.length, signed.hashes, trust_checksum=trust_checksum)
        is state
    )


async def test_large_target_paused_at_the_budget_resumes_next_run(tmp_path: Path) -> None:
    """Over HTTP, a large target granted less than its length asks for just the
    grant and stops there: DEFERRED, nothing written, its partial file kept; the
    next run (a new copier, fetcher and budget) asks only for the rest with a Range
    request, is charged only those bytes, and publishes the verified whole."""
    copy = target_copy(entry("big.bin", LARGE), role="targets", consistent_snapshot=False)
    upstream_dir(tmp_path / "up", served(copy, LARGE))
    partials = tmp_path / "partials"
    partials.mkdir()
    store = MemoryStore()
    grant = 100_000
    try:
        with serve_directory(tmp_path / "up") as server:
            for run, limit in enumerate((grant, len(LARGE))):
                fetcher = HttpFetcher(
                    server.url + "/metadata",
                    server.url + "/targets",
                    retry=RetryPolicy(attempts=1),
                    partial_dir=partials,
                )
                budget = TransferBudget(limit)
                copier = TargetCopier(
                    store=store, fetcher=fetcher, consistent_snapshot=False, budget=budget
                )
                try:
                    result = await copier.copy(copy)
                finally:
                    await fetcher.aclose()
                if run == 0:
                    assert result == CopyResult(Outcome.DEFERRED, len(LARGE))
                    assert (budget.paused, budget.deferred) == (1, 0)
                    assert budget.spent == grant
                    assert store.writes == []
                    assert list(partials.iterdir()) != []
                else:
                    assert result == CopyResult(Outcome.COPIED, len(LARGE))
                    assert budget.spent == len(LARGE) - grant
                    assert not budget.reached
            first, second = server.requests
            assert (first.headers["range"], first.bytes_sent) == (f"bytes=0-{grant - 1}", grant)
            assert second.headers["range"] == f"bytes={grant}-"
            assert second.bytes_sent == len(LARGE) - grant
        assert store.writes == ["targets/big.bin"]
        assert store.objects["targets/big.bin"].data == LARGE
    finally:
        await store.aclose()
