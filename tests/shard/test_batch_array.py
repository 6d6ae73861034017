"""A local simulation of the AWS Batch array job: ``shard plan`` with N=4, the four
``shard copy`` children as separate processes in shuffled order (one index run
twice, one killed with SIGKILL mid-copy and rerun, one stopped with SIGTERM and
rerun), then ``shard publish`` — into a local directory and into a moto_server
bucket. The result is byte-identical to a single-process ``sync``, and the upstream
served every target once (the interrupted children's in-flight requests aside)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from mirror.errors import ExitStatus
from mirror.shard import shard_of
from tests.shard.conftest import INTERNAL, SHARDS, Dest, Upstream, local_dest, run_json
from tests.sync.conftest import tree
from tuf_mirror_testing.server import Fault

RUN = "batch-1"


def _path_of(name: str) -> str:
    """``targets/files/<sha256>.file-0001.txt`` -> ``files/file-0001.txt``."""
    directory, _, basename = name.removeprefix("targets/").rpartition("/")
    return f"{directory}/{basename.split('.', 1)[1]}"


def _shard_names(upstream: Upstream, index: int) -> set[str]:
    return {n for n in upstream.target_files() if shard_of(_path_of(n), SHARDS) == index}


def _interrupt(upstream: Upstream, dest: Dest, index: int, sig: signal.Signals) -> tuple[int, str]:
    """Start the copy of shard ``index`` with slow target answers and one transfer,
    send ``sig`` once it wrote at least one of its targets, and return its exit
    status and stderr."""
    names = _shard_names(upstream, index)
    rule = upstream.server.faults.add("/targets/*", Fault.delay(0.2))
    proc = subprocess.Popen(
        [
            *upstream.command(
                dest, "shard", "copy", "--run-id", RUN, "--index", str(index), "--count", "4"
            ),
            "--transfers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not dest.keys("targets/") & names:
            assert proc.poll() is None, "the shard finished before it could be interrupted"
            assert time.monotonic() < deadline, "the shard made no progress"
            time.sleep(0.01)
        os.kill(proc.pid, sig)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        upstream.server.faults.remove(rule)
    upstream.server.wait_idle()
    return proc.returncode, stderr


def test_batch_array_simulation_is_byte_identical_to_one_sync(
    upstream: Upstream, dest: Dest, tmp_path: Path
) -> None:
    """Plan N=4; copy the shards as separate processes in shuffled order, one twice,
    one SIGKILLed and rerun, one SIGTERMed (exit 143) and rerun; publish. The
    destination equals a single-process sync's byte for byte, each target was
    served once except at most one in-flight request per interrupted child, and
    publish fetched no target."""
    assert upstream.run(dest, "shard", "plan", "--shards", "4", "--run-id", RUN) == 0
    planned = run_json(dest, RUN)
    assert planned["shards"] == 4
    assert planned["targets"] == len(upstream.target_files())
    assert dest.keys("metadata/") == set(), "plan publishes nothing"

    order = list(range(SHARDS))
    random.Random(10).shuffle(order)
    twice, killed, termed = order[0], order[1], order[2]
    upstream.server.clear_log()

    for index in order:
        if index == killed:
            status, _ = _interrupt(upstream, dest, index, signal.SIGKILL)
            assert status == -signal.SIGKILL
        elif index == termed:
            status, stderr = _interrupt(upstream, dest, index, signal.SIGTERM)
            assert status == ExitStatus.TERMINATED, stderr
            assert "stopped by SIGTERM" in stderr
        else:
            done = upstream.spawn(
                dest, "shard", "copy", "--run-id", RUN, "--index", str(index), "--count", "4"
            )
            assert done.returncode == 0, done.stderr
        marker = f"{INTERNAL}runs/{RUN}/done/{index:04d}.json"
        assert (marker in dest.keys(INTERNAL)) == (index not in (killed, termed))
    assert dest.keys("metadata/") == set()

    # The reruns: the interrupted ones, and one that had finished already.
    for index in (killed, termed, twice):
        done = upstream.spawn(
            dest, "shard", "copy", "--run-id", RUN, "--index", str(index), "--count", "4"
        )
        assert done.returncode == 0, done.stderr
    requested = Counter(upstream.target_requests())

    upstream.server.clear_log()
    assert upstream.run(dest, "shard", "publish", "--run-id", RUN) == 0
    assert upstream.target_requests() == [], "publish fetched a target again"

    reference = local_dest(tmp_path, "reference")
    assert upstream.run(reference, "sync") == 0
    assert dest.files() == reference.files()
    assert dest.files() == tree(upstream.directory)

    expected = set(upstream.target_files())
    assert set(requested) == expected
    repeated = {name: n - 1 for name, n in requested.items() if n > 1}
    interrupted = _shard_names(upstream, killed) | _shard_names(upstream, termed)
    assert set(repeated) <= interrupted
    assert sum(repeated.values()) <= 2  # one transfer in flight per interrupted child


def test_two_pods_for_one_index_at_once_are_harmless(upstream: Upstream, local: Dest) -> None:
    """Two processes copy the same shard at the same time (a Kubernetes pod started
    twice for one index): both exit 0, the shard's targets are complete and
    verified, its marker is there, and publish gives the single-process result."""
    assert upstream.run(local, "shard", "plan", "--shards", "4", "--run-id", RUN) == 0
    upstream.server.faults.add("/targets/*", Fault.delay(0.02))
    command = upstream.command(
        local, "shard", "copy", "--run-id", RUN, "--index", "1", "--count", "4"
    )
    both = [
        subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outcomes = [(proc.wait(timeout=60), proc.communicate()[1]) for proc in both]
    upstream.server.faults.clear()
    assert [status for status, _ in outcomes] == [0, 0], outcomes
    upstream_files = upstream.target_files()
    assert {name: local.read(name) for name in local.keys("targets/")} == {
        name: upstream_files[name] for name in _shard_names(upstream, 1)
    }
    assert f"{INTERNAL}runs/{RUN}/done/0001.json" in local.keys(INTERNAL)
    for index in (0, 2, 3):
        done = upstream.spawn(
            local, "shard", "copy", "--run-id", RUN, "--index", str(index), "--count", "4"
        )
        assert done.returncode == 0, done.stderr
    assert upstream.run(local, "shard", "publish", "--run-id", RUN) == 0
    assert local.files() == tree(upstream.directory)


def test_sigterm_during_publish_releases_the_lock(upstream: Upstream, local: Dest) -> None:
    """A publish job stopped by SIGTERM (Spot reclaims it mid-run) exits 143, has
    published no timestamp and released the destination lock, so the retried job
    (in another container, where the old pid means nothing) publishes at once."""
    assert upstream.run(local, "shard", "plan", "--shards", "4", "--run-id", RUN) == 0
    assert upstream.run(local, "shard", "copy", "--run-id", RUN) == 0
    rule = upstream.server.faults.add("/metadata/*", Fault.delay(0.3))
    proc = subprocess.Popen(
        upstream.command(local, "shard", "publish", "--run-id", RUN),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while f"{INTERNAL}lock" not in local.keys(INTERNAL):
            assert proc.poll() is None, "publish finished before it took the lock"
            assert time.monotonic() < deadline, "publish never took the lock"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        upstream.server.faults.remove(rule)
    assert proc.returncode == ExitStatus.TERMINATED, stderr
    assert "shard publish of run batch-1 stopped by SIGTERM" in stderr
    assert f"{INTERNAL}lock" not in local.keys(INTERNAL)
    assert "metadata/timestamp.json" not in local.keys("metadata/")
    assert upstream.run(local, "shard", "publish", "--run-id", RUN) == 0
    assert local.files() == tree(upstream.directory)
