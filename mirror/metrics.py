"""``--metrics-file``: the run's figures in Prometheus text format, for
node_exporter's textfile collector, built with prometheus-client's registry and
written with its ``write_to_textfile`` (temp file + rename: a scrape never reads
half a file).

Every series carries a ``dest`` label. Names follow Prometheus conventions (base
units, ``_seconds``, ``_bytes``, ``_total`` for counters, ``_info``):

- ``tuf_mirror_build_info{version,python}`` 1;
- the last run: ``..._last_run_exit_status``, ``..._last_run_start_timestamp_seconds``,
  ``..._last_run_duration_seconds``, ``..._last_run_received_bytes``,
  ``..._last_run_requests``, ``..._last_run_targets_copied``,
  ``..._last_run_copied_bytes``, ``..._last_run_targets_filtered``, and under
  ``--policy`` ``..._targets_held_back``, ``..._policy_alarms``,
  ``..._policy_conflicts`` (of the last run); after a prune that deleted,
  ``..._prune_deleted_files``, ``..._prune_deleted_bytes``,
  ``..._prune_states_retained``; ``..._witness_alarms{type}`` and, with a ledger,
  ``..._ledger_size``;
- across runs (read back from the previous file and added to):
  ``..._runs_total{exit_status}``, ``..._received_bytes_total``,
  ``..._requests_total``, ``..._targets_copied_total``;
- the published state: ``..._last_success_timestamp_seconds``,
  ``..._published_version{role}``, ``..._expiry_timestamp_seconds{role}`` and
  ``..._expires_in_seconds{role}`` (negative once expired),
  ``..._upstream_timestamp_version``, ``..._timestamp_versions_behind``,
  ``..._expired_delegated_roles``;
- ``..._locked_out_seconds``: how long the destination has been held by another
  run, when the report carries ``locked_out_seconds``.

A failed run (any status but 0) published nothing new, so the published versions
and expiries are KEPT from the previous file (the expiry alert keeps working while
the mirror is stuck, and ``expires_in_seconds`` keeps counting down); without a
previous file, the versions the run found published at its start stand in.

Values are written as prometheus-client formats floats: integers up to 2**53 keep
every digit. What this module does not do: serve HTTP, or decide exit statuses.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Info,
    disable_created_metrics,
    generate_latest,
    write_to_textfile,
)
from prometheus_client.parser import text_string_to_metric_families

from mirror.errors import ExitStatus
from mirror.report import RunReport

PREFIX = "tuf_mirror_"

# A run's counters are created anew in each process: their ``_created`` series would
# say when the file was written, which the run's start gauge already says.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream

#: series read back from the previous file: name -> {frozen labels (without dest): value}
Previous = Mapping[str, Mapping[frozenset[tuple[str, str]], float]]


def read_previous(path: Path, dest: str) -> Previous:
    """The series of ``dest`` in the previous metrics file (empty when there is none
    or it does not parse: the file is ours, but a person may have edited it)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return {}
    found: dict[str, dict[frozenset[tuple[str, str]], float]] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = dict(sample.labels)
                if labels.pop("dest", None) != dest:
                    continue
                found.setdefault(sample.name, {})[frozenset(labels.items())] = sample.value
    except ValueError:
        return {}
    return found


def _by_label(previous: Previous, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for labels, value in previous.get(PREFIX + name, {}).items():
        for key, label_value in labels:
            if key == label:
                out[label_value] = value
    return out


def _single(previous: Previous, name: str) -> float | None:
    return previous.get(PREFIX + name, {}).get(frozenset())


def build_registry(report: RunReport, *, now: datetime, previous: Previous) -> CollectorRegistry:
    """The registry holding every series for ``report`` (module docstring)."""
    from mirror import __version__

    registry = CollectorRegistry(auto_describe=True)
    dest = report.dest or ""
    ok = report.exit_status == ExitStatus.OK

    gauges: dict[str, Gauge] = {}

    def gauge(name: str, helptext: str, value: float, **labels: str) -> None:
        metric = gauges.get(name)
        if metric is None:
            metric = Gauge(PREFIX + name, helptext, ("dest", *labels), registry=registry)
            gauges[name] = metric
        metric.labels(dest, *labels.values()).set(value)

    info = Info(PREFIX + "build", "tuf-mirror version and Python", ["dest"], registry=registry)
    info.labels(dest).info({"version": __version__, "python": platform.python_version()})

    gauge("last_run_exit_status", "exit status of the last run", int(report.exit_status))
    gauge(
        "last_run_start_timestamp_seconds",
        "start of the last run (Unix time)",
        report.started.timestamp(),
    )
    gauge("last_run_duration_seconds", "duration of the last run", round(report.seconds, 3))
    gauge("last_run_received_bytes", "bytes received from upstreams", report.bytes_received)
    gauge("last_run_requests", "requests to upstreams", report.requests)
    gauge("last_run_targets_copied", "targets downloaded and written", report.targets_fetched)
    gauge("last_run_copied_bytes", "bytes of targets downloaded and written", report.target_bytes)
    gauge(
        "last_run_targets_filtered",
        "targets left out by --include/--exclude/--role",
        report.targets_filtered,
    )

    if report.policy:
        gauge("targets_held_back", "targets held back by --policy", report.targets_held_back)
        gauge(
            "policy_alarms",
            "targets a --policy repository stopped vouching for",
            len(report.policy.get("alarms", [])),
        )
        gauge(
            "policy_conflicts",
            "targets --policy repositories disagree on",
            len(report.policy.get("conflicts", [])),
        )

    # Counters: the previous file's totals plus this run.
    def counter(name: str, helptext: str, value: float, **labels: str) -> None:
        before = previous.get(PREFIX + name + "_total", {}).get(frozenset(labels.items()), 0.0)
        metric = Counter(PREFIX + name, helptext, ("dest", *labels), registry=registry)
        metric.labels(dest, *labels.values()).inc(before + value)

    runs = _by_label(previous, "runs_total", "exit_status")
    status = str(int(report.exit_status))
    runs[status] = runs.get(status, 0.0) + 1
    run_counter = Counter(
        PREFIX + "runs", "runs by exit status", ("dest", "exit_status"), registry=registry
    )
    for each, count in sorted(runs.items()):
        run_counter.labels(dest, each).inc(count)
    counter("received_bytes", "bytes received from upstreams", report.bytes_received)
    counter("requests", "requests to upstreams", report.requests)
    counter("targets_copied", "targets downloaded and written", report.targets_fetched)

    last_success = (
        report.started.timestamp() if ok else _single(previous, "last_success_timestamp_seconds")
    )
    if last_success is not None:
        gauge(
            "last_success_timestamp_seconds",
            "start of the last successful run (Unix time)",
            last_success,
        )

    versions = _published_versions(report, previous, ok=ok)
    for role, version in sorted(versions.items()):
        gauge("published_version", "version of published metadata", version, role=role)
    expiries = _published_expiries(report, previous, ok=ok)
    for role, when in sorted(expiries.items()):
        gauge(
            "expiry_timestamp_seconds",
            "when published metadata expires (Unix time)",
            when,
            role=role,
        )
    for role, when in sorted(expiries.items()):
        gauge(
            "expires_in_seconds",
            "seconds until published metadata expires (negative: expired)",
            round(when - now.timestamp()),
            role=role,
        )

    upstream_ts = report.upstream_versions.get("timestamp")
    if upstream_ts is None:
        kept = _single(previous, "upstream_timestamp_version")
        upstream_ts = int(kept) if kept is not None else None
    if upstream_ts is not None:
        gauge("upstream_timestamp_version", "timestamp version seen upstream", upstream_ts)
        gauge(
            "timestamp_versions_behind",
            "timestamp versions the mirror lags behind the upstream",
            max(0, upstream_ts - int(versions.get("timestamp", 0))),
        )
    gauge(
        "expired_delegated_roles",
        "delegated roles mirrored although expired upstream",
        len(report.expired_delegated_roles),
    )
    prune = report.prune
    if prune is not None and prune.applied:
        gauge("prune_deleted_files", "files deleted by prune, last run", prune.deleted_files)
        gauge("prune_deleted_bytes", "bytes deleted by prune, last run", prune.deleted_bytes)
        gauge("prune_states_retained", "states prune kept, last run", len(prune.states_retained))
    # The ledger's witness (mirror.ledger): alarms of the last run, by type.
    kinds = sorted({alarm["type"] for alarm in report.alarms})
    for kind in kinds:
        count = sum(1 for alarm in report.alarms if alarm["type"] == kind)
        gauge("witness_alarms", "witness alarms raised, last run", count, type=kind)
    if not kinds:
        gauge("witness_alarms", "witness alarms raised, last run", 0, type="")
    if report.ledger:
        gauge("ledger_size", "entries in the ledger", report.ledger.get("checkpoint_size", 0))
    locked_out = getattr(report, "locked_out_seconds", None)
    if isinstance(locked_out, int | float):
        gauge(
            "locked_out_seconds",
            "how long the destination has been held by another run",
            locked_out,
        )
    return registry


def _published_versions(report: RunReport, previous: Previous, *, ok: bool) -> dict[str, float]:
    kept = _by_label(previous, "published_version", "role")
    if ok:
        return {**kept, **{role: float(v) for role, v in report.versions_after.items()}}
    if kept:
        return kept
    return {role: float(v) for role, v in report.versions_before.items()}


def _published_expiries(report: RunReport, previous: Previous, *, ok: bool) -> dict[str, float]:
    kept = _by_label(previous, "expiry_timestamp_seconds", "role")
    if not ok:
        # Expiries a failed run verified upstream were not published: keep the old.
        return kept
    current = {
        role: datetime.fromisoformat(when).timestamp() for role, when in report.expires.items()
    }
    return {**kept, **current}


def render_metrics(report: RunReport, *, now: datetime, previous: Previous | None = None) -> str:
    """The metrics text for ``report`` (``previous``: series read back)."""
    registry = build_registry(report, now=now, previous=previous or {})
    return generate_latest(registry).decode()


def write_metrics(path: Path, report: RunReport, *, now: datetime) -> None:
    """Write the metrics file atomically, keeping what a failed run cannot know from
    the previous file."""
    previous = read_previous(path, report.dest or "")
    registry = build_registry(report, now=now, previous=previous)
    write_to_textfile(str(path), registry)
