"""End-to-end ``tuf-mirror sync --dest s3://bucket/prefix`` against moto_server on
127.0.0.1: byte identity, headers, checksums, publish order, incremental cost and
the S3 options."""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from typing import Any

import pytest

from mirror.errors import ExitStatus
from mirror.storage.headers import IMMUTABLE_CACHE_CONTROL
from tests.s3.conftest import BINS, TARGETS, S3Env
from tests.sync.conftest import tree


def b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def phase(key: str) -> str:
    """The publish phase of a key, in DESIGN.md invariant 4's terms."""
    if key.startswith("targets/"):
        return "target"
    name = key.removeprefix("metadata/")
    if name == "timestamp.json":
        return "timestamp"
    if name == "root.json" or name.endswith(".root.json"):
        return "root"
    if name.endswith(".snapshot.json"):
        return "snapshot"
    if name.endswith(".targets.json"):
        return "targets-role"
    return "delegated-role"


def test_first_sync_is_byte_identical(s3env: S3Env) -> None:
    """A first sync into an empty bucket leaves exactly the upstream's files under
    the prefix, byte for byte, and nothing else but the mirror's bookkeeping."""
    assert s3env.run() == ExitStatus.OK
    assert s3env.objects() == tree(s3env.upstream)
    internal = set(s3env.objects(internal=True)) - set(s3env.objects())
    ledger = {key for key in internal if key.startswith(".tuf-mirror/ledger/")}
    assert internal - ledger == {
        ".tuf-mirror/state.json",
        ".tuf-mirror/timestamps/1.timestamp.json",  # the publish history, for prune
    }, "the lock is released"
    # the ledger (mirror.ledger) lives beside it on S3: a checkpoint, entries, index
    assert {".tuf-mirror/ledger/head.json", ".tuf-mirror/ledger/states/000000000001.json"} <= ledger
    assert ".tuf-mirror/ledger/.tuf-mirror/lock" not in ledger, "the ledger's lock is released"


def test_headers_and_checksums(s3env: S3Env) -> None:
    """Every object carries its Content-Type, its Cache-Control (immutable when
    versioned or content-addressed, short for timestamp.json and root.json) and a
    SHA-256 checksum S3 stored; each target's upload sent the digest the mirror
    verified against the signed metadata, not one computed after the fact."""
    assert s3env.run() == ExitStatus.OK
    upstream = tree(s3env.upstream)
    for key, data in upstream.items():
        head = s3env.head(key)
        assert head["ChecksumSHA256"] == b64_sha256(data), key
        if key.startswith("metadata/"):
            assert head["ContentType"] == "application/json", key
        else:
            assert head["ContentType"] == "text/plain", key  # by extension: .txt
        if key in {"metadata/timestamp.json", "metadata/root.json"}:
            assert head["CacheControl"] == "public, max-age=60", key
        else:
            assert head["CacheControl"] == IMMUTABLE_CACHE_CONTROL, key

    sent = {c.key: c.params for c in s3env.recorder.started("PutObject")}
    for key, data in upstream.items():
        params = sent[key]
        assert params["ChecksumAlgorithm"] == "SHA256"
        if key.startswith("targets/"):
            assert params["ChecksumSHA256"] == b64_sha256(data), key


def test_first_sync_publish_order(s3env: S3Env) -> None:
    """PUTs happen in DESIGN.md order: every target upload has completed before the
    first metadata upload starts; then delegated roles, targets, snapshot, the
    pinned root (the bootstrap a client starts from) and timestamp.json last."""
    assert s3env.run() == ExitStatus.OK
    calls = [
        c
        for c in s3env.recorder.calls
        if c.operation == "PutObject" and c.key and not c.key.startswith(".tuf-mirror/")
    ]
    puts = [c.key for c in calls if c.event == "start"]
    first_meta = next(i for i, c in enumerate(calls) if c.key and c.key.startswith("metadata/"))
    assert all(c.key and c.key.startswith("targets/") for c in calls[:first_meta])
    target_done = [c for c in calls[:first_meta] if c.event == "done"]
    assert len(target_done) == TARGETS, "every target upload finished before any metadata"

    metadata = [k for k in puts if k and k.startswith("metadata/")]
    bins = sorted(f"metadata/1.bins-{i}.json" for i in range(BINS))
    assert sorted(metadata[:BINS]) == bins
    assert metadata[BINS:] == [
        "metadata/1.targets.json",
        "metadata/1.snapshot.json",
        "metadata/1.root.json",
        "metadata/root.json",
        "metadata/timestamp.json",
    ]
    assert puts[-1] == "metadata/timestamp.json"


def test_incremental_publish_order_with_a_new_root(s3env: S3Env) -> None:
    """An update with new targets, a changed bin, a new targets role and a new root
    publishes exactly: targets -> delegated roles -> targets role -> snapshot ->
    roots -> timestamp.json, each phase complete before the next starts."""
    assert s3env.run() == ExitStatus.OK
    s3env.repo.add_target("files/new-a.txt", b"new a")
    s3env.repo.add_target("files/new-b.txt", b"new b")
    s3env.repo.mark_changed("targets")
    s3env.repo.rotate_keys("timestamp")
    written = s3env.publish()

    assert s3env.run() == ExitStatus.OK
    puts = s3env.recorder.puts()
    phases = [phase(k) for k in puts]
    order = ["target", "delegated-role", "targets-role", "snapshot", "root", "timestamp"]
    assert phases == sorted(phases, key=order.index), puts
    assert sorted(set(phases), key=order.index) == order
    assert puts[-3:] == ["metadata/2.root.json", "metadata/root.json", "metadata/timestamp.json"]
    assert set(puts) == set(written)
    assert s3env.objects() == tree(s3env.upstream)


def test_incremental_sync_uploads_only_the_change(s3env: S3Env) -> None:
    """After upstream adds two targets, the next sync uploads exactly the new
    targets, the changed bins, snapshot and timestamp (one PUT each), downloads only
    the new targets, and rewrites nothing already published."""
    assert s3env.run() == ExitStatus.OK
    before = s3env.objects()
    s3env.repo.add_target("files/new-a.txt", b"new a")
    s3env.repo.add_target("files/new-b.txt", b"new b")
    written = s3env.publish()

    assert s3env.run() == ExitStatus.OK
    puts = s3env.recorder.puts()
    assert sorted(puts) == sorted(written), "one PUT per changed file, nothing else"
    assert s3env.requested_targets() == {w for w in written if w.startswith("targets/")}
    after = s3env.objects()
    assert after == tree(s3env.upstream)
    changed = {k for k in before if after[k] != before[k]}
    assert changed == {"metadata/timestamp.json"}


def test_noop_sync_uploads_nothing(s3env: S3Env) -> None:
    """With nothing new upstream, a run writes no published object (only takes and
    releases its lock)."""
    assert s3env.run() == ExitStatus.OK
    before = s3env.objects()
    assert s3env.run() == ExitStatus.OK
    assert s3env.recorder.puts() == []
    assert s3env.recorder.puts(internal=True) == [".tuf-mirror/lock"] * 2  # lock + its check
    assert s3env.objects() == before


def test_s3_options(s3env: S3Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """--s3-endpoint-url works without AWS_ENDPOINT_URL; --timestamp-max-age sets the
    short max-age; --s3-storage-class reaches every object; --uploads 1 keeps a
    single S3 request in flight however many transfers run."""
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    in_flight = 0
    most = 0
    lock = threading.Lock()
    rec = s3env.recorder

    def started(**_: Any) -> None:
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            most = max(most, in_flight)

    def finished(**_: Any) -> None:
        nonlocal in_flight
        with lock:
            in_flight -= 1

    real_install = rec.install

    def install(client: Any) -> Any:
        client.meta.events.register("before-call.s3", started)
        client.meta.events.register("after-call.s3", finished)
        client.meta.events.register("after-call-error.s3", finished)
        return real_install(client)

    monkeypatch.setattr(rec, "install", install)
    status = s3env.run(
        "sync",
        "--s3-endpoint-url",
        endpoint,
        "--s3-region",
        "us-east-1",
        "--timestamp-max-age",
        "15s",
        "--s3-storage-class",
        "STANDARD_IA",
        "--uploads",
        "1",
        "--transfers",
        "8",
    )
    assert status == ExitStatus.OK
    assert s3env.objects() == tree(s3env.upstream)
    assert s3env.head("metadata/timestamp.json")["CacheControl"] == "public, max-age=15"
    for key in tree(s3env.upstream):
        assert s3env.head(key).get("StorageClass") == "STANDARD_IA", key
    assert most == 1
