"""The worker-process protocol (``mirror.workers``): the frames a parent and a
``python -m mirror.workers`` child exchange, how a child's error reaches the parent,
and a small real ``ProcessPool`` run against a local upstream directory.

The protocol is written down in the module docstring; the first tests speak it to
a real child by hand (length-prefixed pickle frames), so the wire format itself is
pinned, not only what ``ProcessPool`` makes of it. Each child costs a process
start-up (a fraction of a second): the tests start five in all. Counted: jobs,
results, requests and bytes, never time.
"""

from __future__ import annotations

import hashlib
import pickle
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import trio
from tuf.api.metadata import TargetFile

from mirror import errors
from mirror.config import Settings
from mirror.copier import CopyResult, Outcome, TargetCopier
from mirror.errors import LengthOrHashMismatchError, MirrorError, StorageError
from mirror.fetch.local import LocalFetcher
from mirror.plan import TargetCopy, target_copy
from mirror.storage.local import LocalStore
from mirror.workers import BATCH, ProcessPool, _error_from

HEADER = struct.Struct("!I")


def frame(obj: object) -> bytes:
    """One frame as the module docstring describes it: a 4-byte big-endian length,
    then a pickle."""
    payload = pickle.dumps(obj)
    return HEADER.pack(len(payload)) + payload


def unframe(data: bytes) -> list[Any]:
    """Every frame of a complete stream, in order (a truncated frame fails)."""
    frames: list[Any] = []
    offset = 0
    while offset < len(data):
        (size,) = HEADER.unpack_from(data, offset)
        offset += HEADER.size
        assert offset + size <= len(data), "truncated frame"
        frames.append(pickle.loads(data[offset : offset + size]))
        offset += size
    return frames


class Repo:
    """An upstream directory of targets (plain names: no consistent snapshots) and
    a destination directory, with the ``Settings`` a child opens them from."""

    def __init__(self, tmp_path: Path) -> None:
        self.upstream = tmp_path / "upstream"
        self.dest = tmp_path / "dest"
        self.settings = Settings(command="sync", root=tmp_path / "root.json", dest=str(self.dest))

    def target(self, path: str, signed: bytes, *, serves: bytes | None = None) -> TargetCopy:
        """A target signed for ``signed`` whose upstream file holds ``serves``."""
        file = self.upstream / "targets" / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(signed if serves is None else serves)
        entry = TargetFile(len(signed), {"sha256": hashlib.sha256(signed).hexdigest()}, path)
        return target_copy(entry, role="targets", consistent_snapshot=False)

    def publish(self, copy: TargetCopy) -> None:
        """Make ``copy`` present at the destination already (a previous run did)."""
        file = self.dest / "targets" / copy.path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes((self.upstream / "targets" / copy.path).read_bytes())


async def talk_to_child(frames: Sequence[bytes]) -> tuple[int, list[Any]]:
    """Start ``python -m mirror.workers``, write ``frames`` (each ``bytes`` in as
    many writes as given), close its stdin and read everything it answers."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "mirror.workers"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    received = bytearray()

    async def read() -> None:
        assert process.stdout is not None
        while chunk := await process.stdout.receive_some():
            received.extend(chunk)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            for data in frames:
                await process.stdin.send_all(data)
            await process.stdin.aclose()
        code = await process.wait()
    return code, unframe(bytes(received))


async def test_a_child_speaks_the_documented_protocol(tmp_path: Path) -> None:
    """Parent → child: the settings tuple, then frames of ``(job_id, TargetCopy)``
    lists (a frame may arrive in pieces). Child → parent: frames of at most BATCH
    results, ``("ok", id, outcome, length)`` or ``("error", id, class name,
    message)``, one per job, then one last ``[("stats", requests, bytes, retries,
    peak_rss)]`` frame; the child exits 0 when its stdin closes. A present target
    costs no request; a bad one is an error for that job only."""
    repo = Repo(tmp_path)
    good = repo.target("a/good.bin", b"good bytes")
    bad = repo.target("a/bad.bin", b"signed bytes", serves=b"served bytes")
    present = repo.target("b/present.bin", b"already there")
    repo.publish(present)
    jobs = frame([(1, good), (2, bad)])
    code, answers = await talk_to_child(
        [
            frame((repo.settings, str(repo.upstream), False, 2)),
            jobs[:3],  # a header split across writes
            jobs[3:],
            frame([(3, present)]),
        ]
    )
    assert code == 0
    assert all(isinstance(each, list) and 1 <= len(each) <= BATCH for each in answers)
    *results, stats = [item for each in answers for item in each]
    assert answers[-1] == [stats]
    by_job = {result[1]: result for result in results}
    assert len(by_job) == len(results) == 3
    assert by_job[1] == ("ok", 1, "copied", len(b"good bytes"))
    assert by_job[3] == ("ok", 3, "present", len(b"already there"))
    kind, job, name, message = by_job[2]
    assert (kind, job, name) == ("error", 2, "LengthOrHashMismatchError")
    assert "a/bad.bin" in message
    label, requests, received, retries, peak_rss = stats
    assert label == "stats"
    assert (requests, received, retries) == (2, len(b"good bytes") + len(b"served bytes"), 0)
    assert peak_rss > 0
    assert (repo.dest / "targets" / "a" / "good.bin").read_bytes() == b"good bytes"
    assert not (repo.dest / "targets" / "a" / "bad.bin").exists()


async def test_a_child_without_settings_exits_quietly() -> None:
    """A child whose stdin closes before the settings arrive (the parent stopped
    during its start-up) exits 0 and writes nothing."""
    assert await talk_to_child([]) == (0, [])


@pytest.mark.parametrize(
    ("name", "message", "expected", "text"),
    [
        pytest.param(
            "LengthOrHashMismatchError",
            "target 'a': sha256 mismatch",
            LengthOrHashMismatchError,
            "target 'a': sha256 mismatch",
            id="verification-error",
        ),
        pytest.param("StorageError", "disk full", StorageError, "disk full", id="transient-error"),
        pytest.param("MirrorError", "base", MirrorError, "base", id="base-class"),
        pytest.param(
            "ValueError",
            "ValueError('x')",
            RuntimeError,
            "worker process: ValueError: ValueError('x')",
            id="bug-is-runtime-error",
        ),
        pytest.param(
            "ExitStatus",
            "1",
            RuntimeError,
            "worker process: ExitStatus: 1",
            id="not-an-error-class",
        ),
        pytest.param(
            "NoSuchError", "m", RuntimeError, "worker process: NoSuchError: m", id="unknown-name"
        ),
    ],
)
def test_error_names_map_back_to_the_same_class(
    name: str, message: str, expected: type[BaseException], text: str
) -> None:
    """An ``error`` frame names a class of ``mirror.errors``: the parent raises that
    very class (so the exit status is the one the in-process path gives); any other
    name is a bug in the child, a ``RuntimeError`` (exit 70) naming it."""
    error = _error_from(name, message)
    assert type(error) is expected
    assert str(error) == text
    if isinstance(error, MirrorError):
        assert error.exit_status == getattr(errors, name).exit_status


def _leaves(group: BaseException) -> list[BaseException]:
    if isinstance(group, BaseExceptionGroup):
        return [leaf for each in group.exceptions for leaf in _leaves(each)]
    return [group]


async def _run_pool(
    repo: Repo, jobs: Sequence[TargetCopy], *, processes: int
) -> tuple[ProcessPool, list[CopyResult]]:
    results: list[CopyResult] = []
    pool = ProcessPool(
        settings=repo.settings,
        upstream=str(repo.upstream),
        consistent_snapshot=False,
        processes=processes,
        concurrency=2,
        on_result=results.append,
    )
    send, receive = trio.open_memory_channel[TargetCopy](len(jobs))
    async with send:
        for job in jobs:
            send.send_nowait(job)
    with trio.fail_after(60):
        await pool.run(receive)
    return pool, results


async def test_a_pool_copies_every_job_and_counts_its_children(tmp_path: Path) -> None:
    """Two children share the jobs: one result per job reaches ``on_result``, the
    targets are at the destination, and the pool adds up its children's request and
    byte counters (present targets cost none)."""
    repo = Repo(tmp_path)
    contents = {
        f"t/{index:02d}.bin": f"target {index}".encode() * (index + 1) for index in range(12)
    }
    copies = [repo.target(path, data) for path, data in contents.items()]
    for copy in copies[:4]:
        repo.publish(copy)
    pool, results = await _run_pool(repo, copies, processes=2)
    assert sorted((r.outcome.value, r.length) for r in results) == sorted(
        [(Outcome.PRESENT.value, c.length) for c in copies[:4]]
        + [(Outcome.COPIED.value, c.length) for c in copies[4:]]
    )
    assert pool.requests == 8
    assert pool.bytes_received == sum(c.length for c in copies[4:])
    assert pool.retries == 0
    assert pool.peak_rss > 0
    assert {
        str(path.relative_to(repo.dest / "targets")): path.read_bytes()
        for path in (repo.dest / "targets").rglob("*.bin")
    } == contents


async def test_the_parent_counts_ended_transfers_once_per_answer_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The jobs a child answers in one frame end together for the stop logic
    (``shutdown.transfers_done``): every job is counted once, in fewer calls than
    there are jobs, none of them for nothing."""
    from mirror import shutdown

    calls: list[int] = []
    monkeypatch.setattr(shutdown, "transfers_done", calls.append)
    repo = Repo(tmp_path)
    copies = [repo.target(f"d/{index:02d}.bin", b"x" * (index + 1)) for index in range(40)]
    _, results = await _run_pool(repo, copies, processes=1)
    assert len(results) == 40
    assert sum(calls) == 40
    assert 0 not in calls
    assert len(calls) < 40


def test_a_job_crosses_the_pipe_unchanged() -> None:
    """The wire form of a ``TargetCopy`` (its fields as one tuple, ``copyreg``)
    gives back an equal job, hashes and every consistent-snapshot name included."""
    copy = TargetCopy(
        path="a/b.tar.gz",
        length=7,
        hashes={"sha256": "0" * 64, "sha512": "1" * 128},
        names=("a/" + "0" * 64 + ".b.tar.gz", "a/" + "1" * 128 + ".b.tar.gz"),
        role="bins-3",
    )
    again = pickle.loads(pickle.dumps([(9, copy)], protocol=pickle.HIGHEST_PROTOCOL))
    assert again == [(9, copy)]
    assert type(again[0][1]) is TargetCopy


async def test_a_childs_error_is_the_same_error_in_the_parent(tmp_path: Path) -> None:
    """A target that fails verification in a child fails the pool with the error the
    in-process copier raises for it: same class, same message (so the same exit
    status and the same one-line report)."""
    repo = Repo(tmp_path)
    bad = repo.target("x/bad.bin", b"signed", serves=b"forged")
    in_process = LocalStore(tmp_path / "in-process")
    copier = TargetCopier(
        store=in_process, fetcher=LocalFetcher(repo.upstream), consistent_snapshot=False
    )
    with pytest.raises(LengthOrHashMismatchError) as expected:
        await copier.copy(bad)
    await in_process.aclose()
    with pytest.raises(BaseExceptionGroup) as raised:
        await _run_pool(repo, [bad], processes=1)
    mirror_errors = [leaf for leaf in _leaves(raised.value) if isinstance(leaf, MirrorError)]
    assert [(type(e), str(e)) for e in mirror_errors] == [
        (LengthOrHashMismatchError, str(expected.value))
    ]
    assert not (repo.dest / "targets" / "x" / "bad.bin").exists()


def test_frame_slots_free_a_slot_when_a_frame_is_answered_in_full() -> None:
    """The parent hands a child at most ``FRAMES_IN_FLIGHT`` frames: a slot comes
    back only when the last job of its frame was answered, whatever the order of
    the answers across frames."""
    from mirror.workers import FRAMES_IN_FLIGHT, _FrameSlots

    slots = _FrameSlots()
    for _ in range(FRAMES_IN_FLIGHT):
        slots.free.acquire_nowait()
    slots.left.update({1: 2, 2: 1})
    slots.answered(1)
    assert slots.free.value == 0
    slots.answered(2)
    assert slots.free.value == 1
    slots.answered(1)
    assert slots.free.value == 2
    assert slots.left == {}
