"""What an incremental sync of many changed roles into a local destination costs in
worker-thread calls, counted on real files against the generated upstream on
127.0.0.1: the ledger reads each index shard once, the changed roles are kept in
memory until their publish (no spool file) and written in shared thread calls, and
the new version of a changed role, not at the destination yet, is never read."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from mirror.errors import ExitStatus
from mirror.storage import local
from mirror.storage.listing import ListingStore
from tests.sync.conftest import Env, make_repo, serving
from tuf_mirror_testing.repo import metadata_file_name

BINS = 32
NEW_TARGETS = 48


class ThreadCalls:
    """Every ``trio.to_thread.run_sync`` of a run: the function's name and, for the
    local store's reads (batched or not) and file moves, the key; for its batched
    writes, the keys written."""

    def __init__(self) -> None:
        self.functions: Counter[str] = Counter()
        self.reads: list[str] = []
        self.moved: list[str] = []
        self.batched: list[list[str]] = []

    def record(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        name = getattr(fn, "__name__", repr(fn))
        self.functions[name] += 1
        if name == "_get_sync":
            self.reads.append(str(args[0]))
        elif name == "_put_file_sync":
            self.moved.append(str(args[0]))
        elif fn is local._run_jobs:
            # Small reads share thread calls too: they count as reads.
            jobs = args[0]
            self.reads += [str(job.args[0]) for job in jobs if job.fn.__name__ == "_get_small_sync"]
            writes = [str(job.args[0]) for job in jobs if job.fn.__name__ != "_get_small_sync"]
            if writes:
                self.batched.append(writes)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> ThreadCalls:
    recorded = ThreadCalls()
    real = trio.to_thread.run_sync

    async def counting(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        recorded.record(fn, args)
        return await real(fn, *args, **kwargs)

    monkeypatch.setattr(trio.to_thread, "run_sync", counting)
    return recorded


@pytest.fixture
def big_env(tmp_path: Path) -> Iterator[Env]:
    with serving(make_repo(bins=BINS, targets=200), tmp_path) as served:
        yield served


def test_incremental_sync_thread_calls(
    big_env: Env, calls: ThreadCalls, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a first sync, ``NEW_TARGETS`` new targets change most of the ``BINS``
    bins. The incremental run reads each index shard of the ledger at most once;
    reads no changed role's new version from the destination (it is not there),
    nor lists the metadata directory to find that out; writes no spool file for
    the changed roles; and writes them in fewer thread calls than roles (batched
    with each other)."""
    env = big_env
    listed: list[str] = []
    real_list = ListingStore._list

    async def recording_list(self: ListingStore, prefix: str) -> set[str] | None:
        listed.append(prefix)
        return await real_list(self, prefix)

    monkeypatch.setattr(ListingStore, "_list", recording_list)
    assert env.run() == ExitStatus.OK
    for index in range(NEW_TARGETS):
        env.repo.add_target(f"files/new-{index:04d}.txt", b"new %d\n" % index)
    changed = sorted(env.repo.changed - {"targets"})
    env.publish()
    assert len(changed) > BINS // 2
    calls.functions.clear()
    calls.reads.clear()
    calls.moved.clear()
    calls.batched.clear()

    assert env.run() == ExitStatus.OK

    shard_reads = Counter(key for key in calls.reads if key.startswith(".tuf-mirror/ledger/index/"))
    assert shard_reads, "the ledger's index is read"
    assert set(shard_reads.values()) == {1}, "each index shard is read once"
    new_names = {f"metadata/{metadata_file_name(role, env.repo.version(role))}" for role in changed}
    assert not new_names & set(calls.reads), "a changed role's new version is not read"
    assert "metadata/" not in listed
    assert calls.functions["_write_new_file"] == 0, "no spool file for a role"
    assert not [key for key in calls.moved if key.startswith("metadata/")]
    role_writes = [batch for batch in calls.batched if any(key in new_names for key in batch)]
    assert sorted(key for batch in role_writes for key in batch if key in new_names) == sorted(
        new_names
    )
    assert len(role_writes) < len(new_names)
