"""``tuf-mirror prune`` on an ``s3://`` destination (moto_server on 127.0.0.1): the
same exact listing as on a local disk after several upstream changes, the previous
state served to a client mid-update, dry run against apply, and deletion batched
in DeleteObjects requests of at most 1,000 keys over a streamed listing.

moto (like S3) lists LastModified to the second, and prune keeps anything that
may have been written after it started: these runs start "two seconds later"
(``now`` passed in) instead of the test sleeping.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trio

from mirror.cli import build_parser
from mirror.config import resolve
from mirror.errors import ExitStatus
from mirror.prune import run_prune
from mirror.report import RunReport
from mirror.storage import NotFoundInStoreError
from mirror.storage.s3 import S3Store, make_client
from tests.prune.conftest import ClientStart, Listing, change, client_fetch_all, state_listing
from tests.s3.conftest import PREFIX, S3Env

KEEP_ONE = ("--keep-states", "1", "--keep-for", "0")


def prune(s3env: S3Env, *extra: str) -> dict[str, Any]:
    """Run ``tuf-mirror prune`` in-process, started two seconds from now; returns
    the report (exit status included)."""
    args = ["prune", "--root", str(s3env.root_file), "--dest", s3env.dest]
    args += ["--s3-addressing-style", "path", *extra]
    settings = resolve("prune", build_parser().parse_args(args))
    s3env.recorder.clear()
    report = trio.run(
        lambda: run_prune(
            settings,
            now=datetime.now(UTC) + timedelta(seconds=2),
            report=RunReport(command="prune"),
        )
    )
    return report.to_dict()


def changed_bucket(s3env: S3Env, steps: int = 4) -> list[Listing]:
    assert s3env.run() == ExitStatus.OK
    listings = [state_listing(s3env.repo)]
    for step in range(steps):
        change(s3env.repo, step)
        s3env.publish()
        assert s3env.run() == ExitStatus.OK
        listings.append(state_listing(s3env.repo))
    return listings


def test_keep_one_leaves_exactly_the_current_state_and_every_root(s3env: S3Env) -> None:
    """After removed/replaced targets and roles and a new root, the bucket holds
    exactly the current state plus every root version; the deletions went out as
    one DeleteObjects request, never one DeleteObject per key."""
    listings = changed_bucket(s3env)
    before = set(s3env.objects())
    assert before > listings[-1].keys

    report = prune(s3env, *KEEP_ONE, "--apply")

    assert report["exit_status"] == ExitStatus.OK
    assert set(s3env.objects()) == listings[-1].keys
    assert sorted(report["prune"]["deleted"]) == sorted(before - listings[-1].keys)
    # Targets, then roles, then snapshots, then the swept states' timestamp copies.
    batches = [
        [obj["Key"].removeprefix(f"{PREFIX}/") for obj in call.params["Delete"]["Objects"]]
        for call in s3env.recorder.started("DeleteObjects")
    ]
    assert len(batches) == 4
    assert all(key.startswith("targets/") for key in batches[0])
    assert all(key.startswith("metadata/") for key in batches[1] + batches[2])
    assert all(key.endswith(".snapshot.json") for key in batches[2])
    assert all(key.startswith(".tuf-mirror/timestamps/") for key in batches[3])
    assert [call.key for call in s3env.recorder.started("DeleteObject")] == [".tuf-mirror/lock"]
    assert s3env.recorder.started("ListObjectsV2")
    assert s3env.run("verify") == ExitStatus.OK


def test_dry_run_deletes_nothing_and_lists_what_apply_deletes(s3env: S3Env) -> None:
    """The dry run sends no delete and names exactly what --apply deletes."""
    changed_bucket(s3env)
    before = s3env.objects(internal=True)

    dry = prune(s3env, *KEEP_ONE)["prune"]

    assert s3env.objects(internal=True) == before
    assert s3env.recorder.started("DeleteObjects") == []
    assert dry["deleted_files"] > 0
    applied = prune(s3env, *KEEP_ONE, "--apply")["prune"]
    assert sorted(applied["deleted"]) == sorted(dry["deleted"])
    assert applied["deleted_bytes"] == dry["deleted_bytes"]
    assert set(before) - set(s3env.objects(internal=True)) >= set(dry["deleted"])


async def _fetch(store_args: tuple[str, str], start: ClientStart) -> dict[str, bytes]:
    client = make_client(addressing_style="path")
    store = S3Store(*store_args, client=client)
    try:
        return await client_fetch_all(store, start)
    finally:
        await store.aclose()


def test_keep_two_serves_a_client_that_started_from_the_previous_state(s3env: S3Env) -> None:
    """With --keep-states 2 a client holding the previous timestamp and snapshot
    fetches every role and target of that state from the bucket; with 1 it cannot."""
    changed_bucket(s3env, steps=3)
    objects = s3env.objects()
    roots = tuple(
        objects[f"metadata/{v}.root.json"] for v in range(1, s3env.repo.version("root") + 1)
    )
    snapshot = objects[f"metadata/{s3env.repo.snapshot.signed.version}.snapshot.json"]
    previous = ClientStart(
        roots, objects["metadata/timestamp.json"], snapshot, state_listing(s3env.repo).paths
    )
    change(s3env.repo, 3)
    s3env.publish()
    assert s3env.run() == ExitStatus.OK

    assert prune(s3env, "--keep-states", "2", "--keep-for", "0", "--apply")["exit_status"] == 0
    fetched = trio.run(_fetch, (s3env.bucket, PREFIX), previous)
    assert set(fetched) == previous.paths

    assert prune(s3env, *KEEP_ONE, "--apply")["exit_status"] == 0
    with pytest.raises(NotFoundInStoreError):
        trio.run(_fetch, (s3env.bucket, PREFIX), previous)
    assert set(s3env.objects()) == state_listing(s3env.repo).keys


def test_more_than_1000_deletions_go_in_batches_of_1000(s3env: S3Env) -> None:
    """1,100 unreferenced objects (orphans, deleted with --orphans) are listed over
    several ListObjectsV2 pages and deleted in two DeleteObjects requests of at
    most 1,000 keys."""
    assert s3env.run() == ExitStatus.OK
    current = state_listing(s3env.repo).keys
    strays = [f"targets/stray/{index:05d}.bin" for index in range(1100)]
    for key in strays:
        s3env.raw.put_object(Bucket=s3env.bucket, Key=f"{PREFIX}/{key}", Body=b"x")

    report = prune(s3env, *KEEP_ONE, "--apply", "--orphans")["prune"]

    assert report["deleted_files"] == report["orphan_files"] == len(strays)
    calls = s3env.recorder.started("DeleteObjects")
    sizes = [len(call.params["Delete"]["Objects"]) for call in calls]
    assert sizes == [1000, 100]
    assert len(s3env.recorder.started("ListObjectsV2")) >= 2
    assert set(s3env.objects()) == current


_CHILD = """
import sys, trio
from pathlib import Path
from mirror.storage.s3 import S3Store
from mirror.cli import main

marker = Path(sys.argv[1])
real = S3Store.delete_many
calls = 0

async def delete_many(self, keys):
    global calls
    calls += 1
    await real(self, keys)
    if calls == 1:
        marker.write_text("1")
        await trio.sleep_forever()

S3Store.delete_many = delete_many
sys.exit(main(sys.argv[2:]))
"""


def test_sigkill_mid_apply_then_rerun_converges(s3env: S3Env, tmp_path: Path) -> None:
    """A real ``prune --apply`` process killed -9 after its first DeleteObjects: the
    bucket verifies, and the rerun leaves exactly the current state and the roots."""
    listings = changed_bucket(s3env)
    before = set(s3env.objects())
    marker = tmp_path / "stopped"
    args = ["prune", "--root", str(s3env.root_file), "--dest", s3env.dest]
    args += ["--s3-addressing-style", "path", *KEEP_ONE, "--apply"]
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(marker), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, "the prune ended before it could be killed"
            assert time.monotonic() < deadline, "the prune made no progress"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    assert listings[-1].keys <= set(s3env.objects()) < before
    assert s3env.run("verify") == ExitStatus.OK
    assert prune(s3env, *KEEP_ONE, "--apply")["exit_status"] == ExitStatus.OK
    assert set(s3env.objects()) == listings[-1].keys
    assert s3env.run("verify") == ExitStatus.OK


def test_cli_prune_right_after_a_sync_keeps_what_may_be_newer_than_its_start(
    s3env: S3Env, tmp_path: Path
) -> None:
    """``tuf-mirror prune`` started at once after the syncs: every unreferenced
    object is either deleted or, when its second-granular LastModified does not
    prove it older than the prune's start, kept and counted (``kept_new``); a
    later prune deletes the rest."""
    from mirror.cli import main

    listings = changed_bucket(s3env)
    doomed = set(s3env.objects()) - listings[-1].keys
    report_file = tmp_path / "report.json"
    args = ["prune", "--root", str(s3env.root_file), "--dest", s3env.dest]
    args += ["--s3-addressing-style", "path", *KEEP_ONE, "--apply"]

    assert main([*args, "--report", str(report_file)]) == ExitStatus.OK

    report = json.loads(report_file.read_text())["prune"]
    assert set(report["deleted"]) <= doomed
    assert len(report["deleted"]) + report["kept_new"] == len(doomed)
    assert prune(s3env, *KEEP_ONE, "--apply")["exit_status"] == ExitStatus.OK
    assert set(s3env.objects()) == listings[-1].keys
