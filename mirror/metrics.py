"""``--metrics-file``: the run's figures in Prometheus text format, for
node_exporter's textfile collector (written atomically: temp file + rename).

What it exports (all gauges, prefix ``tuf_mirror_``): the last run's exit status,
start time and duration; the time of the last successful run (carried over from the
previous file when this run failed); bytes and files transferred; requests;
published and upstream versions; seconds until the published root, timestamp,
snapshot and targets expire (negative once expired); expired delegated roles; how
many timestamp versions the mirror lags behind the upstream; under ``--policy``
the held-back targets, alarms and conflicts; and, after a prune that deleted
(``prune --apply``, ``sync --prune``), files and bytes deleted and states retained.
"""

from __future__ import annotations

import os
import re
import tempfile
from datetime import datetime
from pathlib import Path

from mirror.errors import ExitStatus
from mirror.report import RunReport

_LAST_SUCCESS = "tuf_mirror_last_success_timestamp_seconds"


def _previous_success(path: Path) -> float | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    match = re.search(rf"^{_LAST_SUCCESS}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(report: RunReport, *, now: datetime, last_success: float | None) -> str:
    """The metrics text for ``report``."""
    labels = f'{{dest="{_escape(report.dest or "")}"}}'
    lines: list[str] = []

    def gauge(name: str, value: float, helptext: str, extra: str = "") -> None:
        full = f"tuf_mirror_{name}"
        if not any(line.startswith(f"# HELP {full} ") for line in lines):
            lines.append(f"# HELP {full} {helptext}")
            lines.append(f"# TYPE {full} gauge")
        label = labels if not extra else labels[:-1] + "," + extra + "}"
        lines.append(
            f"{full}{label} {value:g}" if isinstance(value, int) else f"{full}{label} {value}"
        )

    gauge("last_run_exit_status", int(report.exit_status), "exit status of the last run")
    gauge("last_run_start_timestamp_seconds", report.started.timestamp(), "start of the last run")
    gauge("last_run_duration_seconds", round(report.seconds, 3), "duration of the last run")
    if report.exit_status == ExitStatus.OK:
        last_success = report.started.timestamp()
    if last_success is not None:
        lines.append(f"# HELP {_LAST_SUCCESS} start of the last successful run")
        lines.append(f"# TYPE {_LAST_SUCCESS} gauge")
        lines.append(f"{_LAST_SUCCESS}{labels} {last_success}")
    gauge("bytes_received", report.bytes_received, "bytes received from upstreams, last run")
    gauge("requests", report.requests, "requests to upstreams, last run")
    gauge("targets_copied", report.targets_fetched, "targets downloaded and published, last run")
    gauge("targets_filtered", report.targets_filtered, "targets left out by filters, last run")
    if report.policy:
        gauge("targets_held_back", report.targets_held_back, "targets held back by --policy")
        gauge(
            "policy_alarms",
            len(report.policy.get("alarms", [])),
            "targets a --policy repository stopped vouching for, last run",
        )
        gauge(
            "policy_conflicts",
            len(report.policy.get("conflicts", [])),
            "targets --policy repositories disagree on, last run",
        )
    for role, version in sorted(report.versions_after.items()):
        gauge("published_version", version, "version of published metadata", f'role="{role}"')
    upstream_ts = report.upstream_versions.get("timestamp")
    if upstream_ts is not None:
        gauge("upstream_timestamp_version", upstream_ts, "timestamp version seen upstream")
        published_ts = report.versions_after.get("timestamp", 0)
        gauge(
            "timestamp_versions_behind",
            max(0, upstream_ts - published_ts),
            "timestamp versions the mirror lags behind the upstream",
        )
    for role, when in sorted(report.expires.items()):
        seconds = (datetime.fromisoformat(when) - now).total_seconds()
        gauge(
            "expires_in_seconds",
            round(seconds),
            "seconds until published metadata expires (negative: expired)",
            f'role="{role}"',
        )
    gauge(
        "expired_delegated_roles",
        len(report.expired_delegated_roles),
        "delegated roles mirrored although expired upstream",
    )
    prune = report.prune
    if prune is not None and prune.applied:
        gauge("prune_deleted_files", prune.deleted_files, "files deleted by prune, last run")
        gauge("prune_deleted_bytes", prune.deleted_bytes, "bytes deleted by prune, last run")
        gauge("prune_states_retained", len(prune.states_retained), "states prune kept, last run")
    # The ledger's witness (mirror.ledger): alarms of the last run, by type.
    for kind in sorted({alarm["type"] for alarm in report.alarms}):
        count = sum(1 for alarm in report.alarms if alarm["type"] == kind)
        gauge("witness_alarms", count, "witness alarms raised, last run", f'type="{kind}"')
    if not report.alarms:
        gauge("witness_alarms", 0, "witness alarms raised, last run")
    if report.ledger:
        gauge("ledger_size", report.ledger.get("checkpoint_size", 0), "entries in the ledger")
    return "\n".join(lines) + "\n"


def write_metrics(path: Path, report: RunReport, *, now: datetime) -> None:
    """Write the metrics file atomically (node_exporter never reads half a file)."""
    text = render_metrics(report, now=now, last_success=_previous_success(path))
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
