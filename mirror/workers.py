"""Worker processes for copying targets, when one process's CPU is the bottleneck.

A first sync of a large repository is bound by client CPU per file (HTTP parsing,
hashing, writing), not by the network: a handful of connections per process and
more processes beat more connections in one process. ``ProcessPool`` starts N
``python -m mirror.workers`` children, sends each a share of the ``TargetCopy``
jobs the delegation walk produces, and collects one result per job. Every child
runs the same ``TargetCopier`` as the in-process path: presence check, download
with a hard length cap, check against the signed length and every signed hash,
atomic write under the final names.

The parent verified the metadata that lists the targets and checked each target's
authority; children only receive jobs from it. Children hold no lock and publish
no metadata; they exit when their stdin closes (also when the parent dies, even by
SIGKILL, since the pipe then closes). They run in their own session and ignore
SIGINT and SIGTERM: stopping is the parent's decision (``mirror.shutdown``).

Protocol: length-prefixed pickle frames on stdin/stdout between our own two
processes (never from the network). Parent → child: first ``(settings, upstream,
consistent_snapshot, concurrency)``, then frames holding lists of ``(job_id,
TargetCopy)``, each copied together by one of ``concurrency`` tasks
(``TargetCopier.copy_batch``: the downloads of a frame's small targets pipelined
on one connection). Child → parent: frames holding lists of ``("ok", job_id, outcome,
length)`` and ``("error", job_id, class_name, message)``, and last
``[("stats", requests, bytes_received, retries, peak_rss)]``. Batching keeps pipe
writes (a fifth of a millisecond each here) well below one per file.
"""

from __future__ import annotations

import copyreg
import os
import struct
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import trio

from mirror import errors, shutdown
from mirror.config import Settings
from mirror.copier import COPY_BATCH, CopyResult, Outcome, TargetCopier
from mirror.errors import MirrorError
from mirror.plan import TargetCopy
from mirror.report import peak_rss_bytes

_T = TypeVar("_T")
_HEADER = struct.Struct("!I")
#: frames of jobs handed to one child and not yet all answered (bounds memory in
#: both processes: at most FRAMES_IN_FLIGHT x BATCH jobs)
FRAMES_IN_FLIGHT = 4
#: jobs or results sent in one frame at most
BATCH = COPY_BATCH


def _reduce_copy(copy: TargetCopy) -> tuple[type[TargetCopy], tuple[Any, ...]]:
    """A job's ``TargetCopy`` pickled as its fields in one tuple: half the cost of
    a slotted dataclass's generic state, on the parent's critical path."""
    return TargetCopy, (copy.path, copy.length, copy.hashes, copy.names, copy.role)


copyreg.pickle(TargetCopy, _reduce_copy)


class _Frames:
    """Length-prefixed frames over a trio stream."""

    def __init__(self, receive: trio.abc.ReceiveStream | None, send: trio.abc.SendStream | None):
        self._receive = receive
        self._send = send
        self._buffer = bytearray()

    async def write(self, obj: object) -> None:
        assert self._send is not None
        import pickle  # here: only worker processes need it, not every run

        payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        await self._send.send_all(_HEADER.pack(len(payload)) + payload)

    async def read(self) -> Any:
        """The next frame, or raise EOFError at the end of the stream."""
        assert self._receive is not None
        import pickle

        size = _HEADER.unpack(await self._exactly(_HEADER.size))[0]
        return pickle.loads(await self._exactly(size))  # noqa: S301 - our own child

    async def _exactly(self, size: int) -> bytes:
        assert self._receive is not None
        while len(self._buffer) < size:
            chunk = await self._receive.receive_some(1 << 16)
            if not chunk:
                raise EOFError
            self._buffer += chunk
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data


def take_ready(first: _T, channel: trio.MemoryReceiveChannel[_T], limit: int) -> list[_T]:
    """``first`` and the items ``channel`` holds ready, ``limit`` in all at most
    (without waiting: what is there now goes together)."""
    batch = [first]
    while len(batch) < limit:
        try:
            batch.append(channel.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            break
    return batch


class _FrameSlots:
    """The frames handed to one child: ``free`` counts the slots for more, ``left``
    the jobs of each frame (by number) not answered yet."""

    __slots__ = ("free", "left")

    def __init__(self) -> None:
        self.free = trio.Semaphore(FRAMES_IN_FLIGHT)
        self.left: dict[int, int] = {}

    def answered(self, frame_no: int) -> None:
        """One job of frame ``frame_no`` was answered."""
        left = self.left[frame_no] - 1
        if left:
            self.left[frame_no] = left
        else:
            del self.left[frame_no]
            self.free.release()


def _error_from(name: str, message: str) -> BaseException:
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, MirrorError):
        return cls(message)
    return RuntimeError(f"worker process: {name}: {message}")


class ProcessPool:
    """Copies targets in ``processes`` child processes; see the module docstring."""

    def __init__(
        self,
        *,
        settings: Settings,
        upstream: str,
        consistent_snapshot: bool,
        processes: int,
        concurrency: int,
        on_result: Callable[[CopyResult], None],
    ) -> None:
        self.settings = settings
        self.upstream = upstream
        self.consistent_snapshot = consistent_snapshot
        self.processes = processes
        self.concurrency = concurrency
        self.on_result = on_result
        self.requests = 0
        self.bytes_received = 0
        self.retries = 0
        self.peak_rss = 0

    async def run(self, jobs: trio.MemoryReceiveChannel[TargetCopy]) -> None:
        """Copy every job received on ``jobs``; raise the first failure."""
        async with jobs, trio.open_nursery() as nursery:
            for _ in range(self.processes):
                nursery.start_soon(self._child, jobs.clone())

    async def _child(self, jobs: trio.MemoryReceiveChannel[TargetCopy]) -> None:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "mirror.workers"],
            stdin=-1,  # subprocess.PIPE
            stdout=-1,
            # Its own session: a terminal's Ctrl-C reaches the parent only, which
            # stops its workers itself (mirror.shutdown), also during their start-up.
            start_new_session=True,
        )
        assert process.stdin is not None
        assert process.stdout is not None
        to_child = _Frames(None, process.stdin)
        from_child = _Frames(process.stdout, None)
        slots = _FrameSlots()
        try:
            await to_child.write(
                (self.settings, self.upstream, self.consistent_snapshot, self.concurrency)
            )
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._collect, from_child, slots)
                async with jobs:
                    frame_no = 0
                    async for copy in jobs:
                        await shutdown.stop_point()  # a stop request hands out no more
                        # A frame slot first, then what is ready by then: one frame
                        # (one pipe write, one pipelined batch) for many jobs.
                        await slots.free.acquire()
                        batch = take_ready(copy, jobs, BATCH)
                        frame_no += 1
                        first = frame_no * BATCH  # job ids say their frame (// BATCH)
                        frame = [(first + index, item) for index, item in enumerate(batch)]
                        slots.left[frame_no] = len(frame)
                        await to_child.write(frame)
                        shutdown.transfers_started(len(frame))
                await process.stdin.aclose()  # EOF: the child finishes and reports stats
            code = await process.wait()
            if code != 0:
                raise RuntimeError(f"worker process exited with status {code}")
        finally:
            if process.returncode is None:
                process.kill()
                with trio.CancelScope(shield=True):
                    await process.wait()

    async def _collect(self, from_child: _Frames, slots: _FrameSlots) -> None:
        while True:
            try:
                frames = await from_child.read()
            except EOFError:
                return
            done = 0
            try:
                for frame in frames:
                    done += self._handle(frame, slots)
            finally:
                if done:  # once per read, not once per job
                    shutdown.transfers_done(done)

    def _handle(self, frame: tuple[Any, ...], slots: _FrameSlots) -> int:
        """Act on one answer; the number of jobs it ended (0 or 1)."""
        kind = frame[0]
        if kind == "ok":
            _, job_id, outcome, length = frame
            self.on_result(CopyResult(Outcome(outcome), length))
            slots.answered(job_id // BATCH)
            return 1
        if kind == "error":
            _, _, name, message = frame
            raise _error_from(name, message)
        if kind == "stats":
            _, requests, received, retries, rss = frame
            self.requests += requests
            self.bytes_received += received
            self.retries += retries
            self.peak_rss = max(self.peak_rss, rss)
        return 0


# -- the child --------------------------------------------------------------------------


async def _serve() -> None:
    from mirror.endpoints import open_endpoints

    frames = _Frames(trio.lowlevel.FdStream(os.dup(0)), trio.lowlevel.FdStream(os.dup(1)))
    try:
        settings, upstream, consistent, concurrency = await frames.read()
    except EOFError:
        return
    results_send, results_receive = trio.open_memory_channel[tuple[Any, ...]](concurrency)
    jobs_send, jobs_receive = trio.open_memory_channel[list[tuple[int, TargetCopy]]](0)

    async with open_endpoints(settings, upstream) as (store, fetcher):
        copier = TargetCopier(
            store=store,
            fetcher=fetcher,
            consistent_snapshot=consistent,
            short_max_age=settings.timestamp_max_age,
        )

        async def work(
            jobs: trio.MemoryReceiveChannel[list[tuple[int, TargetCopy]]],
            results: trio.MemorySendChannel[tuple[Any, ...]],
        ) -> None:
            async with jobs, results:
                async for batch in jobs:
                    for answer in await _copy_frame(copier, batch):
                        await results.send(answer)

        async def answer(results: trio.MemoryReceiveChannel[tuple[Any, ...]]) -> None:
            async with results:
                async for frame in results:
                    await frames.write(take_ready(frame, results, BATCH))
            stats = fetcher.stats
            await frames.write(
                [("stats", stats.requests, stats.bytes_received, stats.retries, peak_rss_bytes())]
            )

        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer, results_receive)
            async with results_send, jobs_receive:
                for _ in range(concurrency):
                    nursery.start_soon(work, jobs_receive.clone(), results_send.clone())
            async with jobs_send:
                while True:
                    try:
                        batch = await frames.read()
                    except EOFError:
                        break
                    await jobs_send.send(batch)


async def _copy_frame(
    copier: TargetCopier, frame: list[tuple[int, TargetCopy]]
) -> list[tuple[Any, ...]]:
    """The answers to one frame of jobs, copied together (``copy_batch``: their
    downloads pipelined); after a failure, the jobs behind it still get their own
    answer, as if each had been copied alone."""
    answers: list[tuple[Any, ...]] = []
    while len(answers) < len(frame):
        left = frame[len(answers) :]

        def done(index: int, result: CopyResult, left: list[tuple[int, TargetCopy]] = left) -> None:
            answers.append(("ok", left[index][0], result.outcome.value, result.length))

        try:
            await copier.copy_batch([copy for _, copy in left], done)
        except MirrorError as exc:
            answers.append(("error", frame[len(answers)][0], type(exc).__name__, str(exc)))
        except Exception as exc:  # noqa: BLE001 - reported to the parent as a bug
            answers.append(("error", frame[len(answers)][0], type(exc).__name__, repr(exc)))
    return answers


def main() -> None:
    """Entry point of a worker process (``python -m mirror.workers``)."""
    shutdown.ignore_stop_signals()
    trio.run(_serve)


if __name__ == "__main__":
    main()
