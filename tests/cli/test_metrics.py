"""``mirror.metrics``: the textfile written with prometheus-client. Pinned down:
Prometheus-conventional names, ``build_info``, integers that keep every digit,
counters that add up across runs, published versions and expiries kept by a
failed run (the expiry keeps counting down), another destination's series left
alone, and the lock-out gauge when the report carries it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from mirror.errors import ExitStatus, FetchError
from mirror.metrics import read_previous, write_metrics
from mirror.report import RunReport

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def _samples(path: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


def _ok_report(dest: str = "/srv/m") -> RunReport:
    report = RunReport(command="sync", started=NOW)
    report.dest = dest
    report.bytes_received = 123_456_789_012
    report.requests = 7
    report.targets_fetched = 3
    report.versions_after = {"root": 2, "timestamp": 10_234_567, "snapshot": 9_007_199}
    report.upstream_versions = {"timestamp": 10_234_569}
    report.expires = {"timestamp": (NOW + timedelta(days=2)).isoformat()}
    report.finish()
    return report


def test_names_build_info_and_exact_integers(tmp_path: Path) -> None:
    """Names carry unit suffixes (_seconds, _bytes, _total); build_info is 1 with
    the version; large integers read back exactly (no %g rounding)."""
    path = tmp_path / "m.prom"
    write_metrics(path, _ok_report(), now=NOW)
    samples = _samples(path)
    d = "dest=/srv/m"
    assert samples[f"tuf_mirror_last_run_received_bytes{{{d}}}"] == 123_456_789_012
    assert samples[f"tuf_mirror_received_bytes_total{{{d}}}"] == 123_456_789_012
    assert samples[f"tuf_mirror_published_version{{{d},role=timestamp}}"] == 10_234_567
    assert samples[f"tuf_mirror_timestamp_versions_behind{{{d}}}"] == 2
    assert samples[f"tuf_mirror_expires_in_seconds{{{d},role=timestamp}}"] == 2 * 86400
    assert samples[f"tuf_mirror_last_run_exit_status{{{d}}}"] == 0
    build = [name for name in samples if name.startswith("tuf_mirror_build_info{")]
    assert len(build) == 1
    assert "version=" in build[0]
    assert samples[build[0]] == 1
    for name in samples:
        base = name.split("{")[0]
        assert base.startswith("tuf_mirror_")
        assert not base.endswith("_created"), name


def test_failed_run_keeps_versions_and_expiries_and_counts(tmp_path: Path) -> None:
    """A failed run an hour later keeps the published versions, the expiry time and
    the last success time; expires_in_seconds counted down by that hour; counters
    add the failed run; runs_total counts each exit status."""
    path = tmp_path / "m.prom"
    write_metrics(path, _ok_report(), now=NOW)
    failed = RunReport(command="sync", started=NOW + timedelta(hours=1))
    failed.dest = "/srv/m"
    failed.requests = 2
    failed.finish(FetchError("upstream down"))
    write_metrics(path, failed, now=NOW + timedelta(hours=1))
    samples = _samples(path)
    d = "dest=/srv/m"
    assert samples[f"tuf_mirror_last_run_exit_status{{{d}}}"] == ExitStatus.TRANSIENT
    assert samples[f"tuf_mirror_published_version{{{d},role=timestamp}}"] == 10_234_567
    assert samples[f"tuf_mirror_published_version{{{d},role=snapshot}}"] == 9_007_199
    assert samples[f"tuf_mirror_expiry_timestamp_seconds{{{d},role=timestamp}}"] == (
        (NOW + timedelta(days=2)).timestamp()
    )
    assert samples[f"tuf_mirror_expires_in_seconds{{{d},role=timestamp}}"] == 2 * 86400 - 3600
    assert samples[f"tuf_mirror_last_success_timestamp_seconds{{{d}}}"] == NOW.timestamp()
    assert samples[f"tuf_mirror_upstream_timestamp_version{{{d}}}"] == 10_234_569
    assert samples[f"tuf_mirror_requests_total{{{d}}}"] == 9
    assert samples[f"tuf_mirror_last_run_requests{{{d}}}"] == 2
    assert samples[f"tuf_mirror_runs_total{{{d},exit_status=0}}"] == 1
    assert samples[f"tuf_mirror_runs_total{{{d},exit_status=3}}"] == 1


def test_failed_run_without_previous_file_uses_the_published_state(tmp_path: Path) -> None:
    """Without a previous file, a failed run reports the versions it found
    published at its start, not the unpublished ones it verified upstream."""
    path = tmp_path / "m.prom"
    failed = RunReport(command="sync", started=NOW)
    failed.dest = "/srv/m"
    failed.versions_before = {"timestamp": 41}
    failed.upstream_versions = {"timestamp": 42}
    failed.expires = {"timestamp": (NOW + timedelta(days=9)).isoformat()}
    failed.finish(FetchError("target download failed"))
    write_metrics(path, failed, now=NOW)
    samples = _samples(path)
    assert samples["tuf_mirror_published_version{dest=/srv/m,role=timestamp}"] == 41
    assert samples["tuf_mirror_timestamp_versions_behind{dest=/srv/m}"] == 1
    assert not any("expiry_timestamp_seconds" in name for name in samples)


def test_previous_series_of_another_destination_are_ignored(tmp_path: Path) -> None:
    """A file written for another destination (a copied config) is not read back."""
    path = tmp_path / "m.prom"
    write_metrics(path, _ok_report(dest="/srv/other"), now=NOW)
    assert read_previous(path, "/srv/m") == {}
    assert read_previous(path, "/srv/other")


def test_unreadable_previous_file_is_ignored(tmp_path: Path) -> None:
    """A previous file that does not parse is not fatal: the new one replaces it."""
    path = tmp_path / "m.prom"
    path.write_text("this is { not prometheus\n")
    write_metrics(path, _ok_report(), now=NOW)
    assert _samples(path)["tuf_mirror_last_run_exit_status{dest=/srv/m}"] == 0


@dataclass(slots=True)
class _LeaseReport(RunReport):
    locked_out_seconds: float | None = None


def test_locked_out_gauge_when_the_report_carries_it(tmp_path: Path) -> None:
    """A report with ``locked_out_seconds`` (added by the lease work) is exported as
    tuf_mirror_locked_out_seconds; a run that was not locked out reports 0 (or none)."""
    path = tmp_path / "m.prom"
    report = _LeaseReport(command="sync", started=NOW, locked_out_seconds=5400.0)
    report.dest = "/srv/m"
    report.finish()
    write_metrics(path, report, now=NOW)
    assert _samples(path)["tuf_mirror_locked_out_seconds{dest=/srv/m}"] == 5400
    write_metrics(path, _ok_report(), now=NOW)
    assert _samples(path).get("tuf_mirror_locked_out_seconds{dest=/srv/m}", 0) == 0
