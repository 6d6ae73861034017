"""Operating a mirror unattended: transfer budget, partial mirrors, cheap no-op runs,
metrics and freshness warnings. Measured by counting requests and bytes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from mirror.errors import ExitStatus
from tests.sync.conftest import Env, tree


def target_requests(env: Env) -> list[str]:
    return [p for p in env.requested() if p.startswith("/targets/")]


def test_budget_stops_cleanly_and_next_run_continues(env: Env, tmp_path: Path) -> None:
    """--max-transfer stops starting transfers once the budget is spent (soft
    cut-off: small in-memory targets already started finish, so the overshoot is
    under one target): exit 5, nothing published; the next run completes without
    downloading a verified file again."""
    report = tmp_path / "report.json"
    status = env.run("sync", "--max-transfer", "2K", "--report", str(report))
    assert status == ExitStatus.BUDGET
    assert not (env.dest / "metadata" / "timestamp.json").exists()
    data = json.loads(report.read_text())
    assert 0 < data["targets_fetched"] < 40
    assert 2048 <= data["target_bytes"] < 2048 + 20 * len(b"content 00\n")
    written = {k for k in tree(env.dest) if k.startswith("targets/")}
    assert len(written) == data["targets_fetched"]

    assert env.run() == ExitStatus.OK
    assert tree(env.dest) == tree(env.upstream)
    second = {p.lstrip("/") for p in target_requests(env)}
    every = {k for k in tree(env.upstream) if k.startswith("targets/")}
    assert second == every - written, "a verified target was downloaded again"


def test_include_filter_leaves_metadata_whole(env: Env, tmp_path: Path) -> None:
    """--include copies only matching targets; every metadata file is mirrored; the
    report counts the targets left out on purpose. Dropping the filter later copies
    the rest."""
    report = tmp_path / "report.json"
    status = env.run("sync", "--include", "files/file-000*.txt", "--report", str(report))
    assert status == ExitStatus.OK
    upstream = tree(env.upstream)
    mirrored = tree(env.dest)
    metadata = {k: v for k, v in upstream.items() if k.startswith("metadata/")}
    assert {k: v for k, v in mirrored.items() if k.startswith("metadata/")} == metadata
    copied = [k for k in mirrored if k.startswith("targets/")]
    assert len(copied) == 10
    assert all(k.endswith(tuple(f".file-000{i}.txt" for i in range(10))) for k in copied)
    assert json.loads(report.read_text())["targets_filtered"] == 30

    assert env.run() == ExitStatus.OK
    assert tree(env.dest) == upstream
    assert len(target_requests(env)) == 30


def test_exclude_and_role_filters(env: Env) -> None:
    """--exclude drops matching targets; --role keeps only targets of matching roles."""
    bins = sorted({env.repo.role_for_target(f"files/file-{i:04d}.txt") for i in range(40)})
    chosen = bins[0]
    expected = {
        f"files/file-{i:04d}.txt"
        for i in range(40)
        if env.repo.role_for_target(f"files/file-{i:04d}.txt") == chosen
    } - {"files/file-0001.txt"}
    status = env.run("sync", "--role", chosen, "--exclude", "files/file-0001.txt")
    assert status == ExitStatus.OK
    names = {k.rsplit(".", 2)[-2] for k in tree(env.dest) if k.startswith("targets/")}
    assert names == {p.rsplit("/", 1)[-1].rsplit(".", 1)[0] for p in expected}


def test_noop_run_moves_under_2kb(env: Env) -> None:
    """A run with nothing new costs the root probe and a conditional timestamp GET:
    under 2 KB on the wire from the upstream."""
    assert env.run() == ExitStatus.OK
    assert env.run() == ExitStatus.OK
    records = env.server.requests
    assert [r.path for r in records][-1] == "/metadata/timestamp.json"
    assert records[-1].status == 304
    assert sum(r.bytes_sent for r in records) < 2048


def _samples(text: str) -> dict[str, float]:
    """``name{labels}`` -> value of every sample in a metrics file."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k != "dest")
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


def test_metrics_file(env: Env, tmp_path: Path) -> None:
    """--metrics-file writes Prometheus series; a failed run keeps the last success
    time, the published versions and the expiries (the expiry alert still works
    while the mirror is stuck)."""
    metrics = tmp_path / "tuf_mirror.prom"
    assert env.run("sync", "--metrics-file", str(metrics)) == ExitStatus.OK
    first = _samples(metrics.read_text())
    for name in (
        "tuf_mirror_last_run_exit_status{}",
        "tuf_mirror_last_success_timestamp_seconds{}",
        "tuf_mirror_last_run_received_bytes{}",
        "tuf_mirror_last_run_targets_copied{}",
        "tuf_mirror_upstream_timestamp_version{}",
        "tuf_mirror_timestamp_versions_behind{}",
        "tuf_mirror_published_version{role=timestamp}",
        "tuf_mirror_expiry_timestamp_seconds{role=targets}",
        "tuf_mirror_expires_in_seconds{role=timestamp}",
    ):
        assert name in first, name
    assert first["tuf_mirror_last_run_targets_copied{}"] == 40

    env.repo.add_target("files/extra.txt", b"x")
    env.repo.set_expiry("timestamp", datetime.now(UTC) - timedelta(days=1))
    env.publish()
    assert env.run("sync", "--metrics-file", str(metrics)) == ExitStatus.VERIFICATION_FAILED
    second = _samples(metrics.read_text())
    assert second["tuf_mirror_last_run_exit_status{}"] == 1
    for kept in (
        "tuf_mirror_last_success_timestamp_seconds{}",
        "tuf_mirror_published_version{role=timestamp}",
        "tuf_mirror_published_version{role=snapshot}",
        "tuf_mirror_expiry_timestamp_seconds{role=timestamp}",
    ):
        assert second[kept] == first[kept], kept
    assert "tuf_mirror_expires_in_seconds{role=timestamp}" in second
    assert second["tuf_mirror_runs_total{exit_status=0}"] == 1
    assert second["tuf_mirror_runs_total{exit_status=1}"] == 1


def test_freshness_warning(env: Env, tmp_path: Path) -> None:
    """Published metadata expiring within --expiry-warning is warned about."""
    env.repo.set_expiry("timestamp", datetime.now(UTC) + timedelta(hours=5))
    env.repo.add_target("files/extra.txt", b"x")
    env.publish()
    report = tmp_path / "report.json"
    assert env.run("sync", "--expiry-warning", "1d", "--report", str(report)) == ExitStatus.OK
    warnings = json.loads(report.read_text())["warnings"]
    assert any("timestamp expires in" in w for w in warnings)
    assert env.run("sync", "--expiry-warning", "1h", "--report", str(report)) == ExitStatus.OK
    assert not any("expires in" in w for w in json.loads(report.read_text())["warnings"])


def test_recorded_etag_only_stands_for_its_own_timestamp(env: Env) -> None:
    """The ETag kept in state.json is used only while the published timestamp is the
    one it was recorded with; otherwise the timestamp is fetched unconditionally."""
    assert env.run() == ExitStatus.OK
    state_file = env.dest / ".tuf-mirror" / "state.json"
    state = json.loads(state_file.read_text())
    assert state["timestamp_etag"]
    assert env.run() == ExitStatus.OK
    assert "if-none-match" in env.server.requests[-1].headers
    state["timestamp_sha256"] = "0" * 64
    state_file.write_text(json.dumps(state))
    assert env.run() == ExitStatus.OK
    last = env.server.requests[-1]
    assert last.path == "/metadata/timestamp.json"
    assert "if-none-match" not in last.headers
    assert "if-modified-since" not in last.headers
    assert last.status == 200
    # That run recorded the validators again: the next one is conditional.
    assert env.run() == ExitStatus.OK
    assert env.server.requests[-1].status == 304
