"""What an unattended run prints: nothing with ``-q`` on success, the summary as a
JSON object with ``--log-format json`` (set on the command line, after the command,
or in the environment), and periodic progress lines when stderr is not a terminal."""

from __future__ import annotations

import errno
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio
import trio.testing

from mirror.errors import ExitStatus
from mirror.progress import print_stats
from mirror.report import RunReport
from tests.sync.conftest import Env, tree
from tuf_mirror_testing.server import Fault


def test_quiet_prints_nothing_on_success(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """-q before or after the command: a successful sync prints nothing at all."""
    assert env.run("sync", "-q") == ExitStatus.OK
    assert capsys.readouterr() == ("", "")
    env.repo.add_target("files/new.txt", b"new")
    env.publish()
    assert env.run("sync", "--stats", "1m", "-q") == ExitStatus.OK
    assert capsys.readouterr() == ("", "")


def test_quiet_still_prints_a_failure(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """-q does not hide a run that needs a person: the error and its summary print."""
    env.server.faults.add("/metadata/*", Fault.status(500))
    assert env.run("sync", "-q") == ExitStatus.TRANSIENT
    err = capsys.readouterr().err
    assert "FAILED (exit 3)" in err


def test_json_summary(
    env: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --log-format json (after the command, or from TUF_MIRROR_LOG_FORMAT) the
    summary is one JSON object carrying the message and the report's counters."""
    assert env.run("sync", "--log-format", "json") == ExitStatus.OK
    lines = capsys.readouterr().err.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["event"] == "summary"
    assert summary["message"].startswith("tuf-mirror sync: copied 40 targets")
    assert summary["targets_fetched"] == 40
    assert summary["exit_status"] == 0
    assert summary["versions_after"]["timestamp"] >= 1

    monkeypatch.setenv("TUF_MIRROR_LOG_FORMAT", "json")
    assert env.run() == ExitStatus.OK
    every = [json.loads(line) for line in capsys.readouterr().err.strip().splitlines()]
    assert every[-1]["event"] == "summary"
    assert every[-1]["nothing_new"] is True


def test_stats_lines_without_a_terminal(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """stderr is not a terminal here: with a short --stats interval and a slow
    upstream, progress lines appear before the summary."""
    env.server.faults.add("/targets/*", Fault.delay(0.02))
    assert env.run("sync", "--stats", "0.05", "--transfers", "1") == ExitStatus.OK
    lines = capsys.readouterr().err.strip().splitlines()
    progress = [line for line in lines if "fetched at" in line]
    assert progress, lines
    assert lines[-1].startswith("tuf-mirror sync: copied 40 targets")


async def test_print_stats_every_interval(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """print_stats prints one line per interval and none before the first interval
    ends: a 150 s run with a 60 s interval prints two, as JSON when asked."""
    report = RunReport(command="sync", started=datetime.now(UTC))
    report.targets_new, report.targets_fetched, report.target_bytes = 10, 4, 4096
    with trio.move_on_after(150):
        await print_stats(report, interval=60, fmt="json")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["elapsed_seconds"] for line in lines] == [60, 120]
    assert lines[0]["event"] == "stats"
    assert lines[0]["targets_fetched"] == 4
    assert "4/10 targets" in lines[0]["message"]


def test_a_broken_configuration_still_writes_metrics(tmp_path: Path) -> None:
    """A usage error (here: no --root) still writes the metrics and the report when
    their paths are known, so monitoring sees a unit whose configuration broke."""
    from mirror.cli import main

    metrics = tmp_path / "m.prom"
    report = tmp_path / "r.json"
    argv = ["sync", "--metrics-file", str(metrics), "--report", str(report)]
    assert main(argv) == ExitStatus.USAGE
    assert json.loads(report.read_text())["exit_status"] == ExitStatus.USAGE
    assert "tuf_mirror_last_run_exit_status" in metrics.read_text()


def test_a_broken_configuration_keeps_the_destination_series(env: Env, tmp_path: Path) -> None:
    """After a good run, a run whose configuration broke (a bad value) writes its
    metrics under the same destination label and keeps the published versions and
    expiries: the expiry alert still fires for a unit that can no longer start."""
    from prometheus_client.parser import text_string_to_metric_families

    metrics = tmp_path / "m.prom"
    assert env.run("sync", "--metrics-file", str(metrics)) == ExitStatus.OK
    assert env.run("sync", "--metrics-file", str(metrics), "--retries", "many") == (
        ExitStatus.USAGE
    )
    samples = {
        (sample.name, sample.labels.get("role"), sample.labels["dest"]): sample.value
        for family in text_string_to_metric_families(metrics.read_text())
        for sample in family.samples
    }
    dest = str(env.dest)
    assert samples[("tuf_mirror_last_run_exit_status", None, dest)] == ExitStatus.USAGE
    assert ("tuf_mirror_published_version", "timestamp", dest) in samples
    assert ("tuf_mirror_expiry_timestamp_seconds", "timestamp", dest) in samples


def test_default_expiry_warning_is_quiet_for_a_two_day_timestamp(env: Env, tmp_path: Path) -> None:
    """A timestamp that lives 2 days and is re-signed daily always has more than a
    day left: the default --expiry-warning (12h) stays silent; one that has only
    6 hours left (the upstream is late re-signing) is warned about."""
    report = tmp_path / "report.json"
    env.repo.set_expiry("timestamp", datetime.now(UTC) + timedelta(hours=47))
    env.repo.add_target("files/a.txt", b"a")
    env.publish()
    assert env.run("sync", "--report", str(report)) == ExitStatus.OK
    assert not any("expires in" in w for w in json.loads(report.read_text())["warnings"])
    env.repo.set_expiry("timestamp", datetime.now(UTC) + timedelta(hours=6))
    env.repo.add_target("files/b.txt", b"b")
    env.publish()
    assert env.run("sync", "--report", str(report)) == ExitStatus.OK
    warnings = json.loads(report.read_text())["warnings"]
    assert any("timestamp expires in" in w for w in warnings)


def test_report_on_a_full_disk_is_transient(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """A ``--report`` (or metrics file) that cannot be written for lack of space
    (``/dev/full`` answers every write with ENOSPC) turns an otherwise good run into
    exit 3 with one line naming the path, no traceback; the mirror itself is
    published, and a rerun with room is exit 0 with nothing new to copy."""
    capsys.readouterr()
    assert env.run("sync", "--report", "/dev/full") == ExitStatus.TRANSIENT
    err = capsys.readouterr().err
    assert "cannot write --report /dev/full: No space left on device" in err
    assert "Traceback" not in err
    assert tree(env.dest) == tree(env.upstream)
    report = env.dest.parent / "report.json"
    assert env.run("sync", "--report", str(report)) == ExitStatus.OK
    assert json.loads(report.read_text())["exit_status"] == 0


def test_report_is_replaced_whole_or_not_at_all(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--report`` is written to a temporary file and renamed over the old report:
    a write that fails (ENOSPC here) leaves the previous report whole, no temporary
    file beside it, and exit 3 with the one usual line."""
    outputs = env.dest.parent / "outputs"
    outputs.mkdir()
    report = outputs / "report.json"
    assert env.run("sync", "--report", str(report)) == ExitStatus.OK
    previous = report.read_bytes()
    real_write = os.write

    def write(fd: int, data: bytes | memoryview) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(outputs)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    capsys.readouterr()
    monkeypatch.setattr(os, "write", write)
    assert env.run("sync", "--report", str(report)) == ExitStatus.TRANSIENT
    monkeypatch.undo()

    err = capsys.readouterr().err
    assert f"cannot write --report {report}: No space left on device" in err
    assert report.read_bytes() == previous
    assert os.listdir(outputs) == ["report.json"]
