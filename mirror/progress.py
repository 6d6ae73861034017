"""The progress display of an interactive run: files and bytes done out of those
found so far, rate and ETA, on stderr, refreshed a few times a second.

Shown only when stderr is a terminal (and logs are not JSON). Without a terminal
(cron, systemd, a container) ``print_stats`` prints one plain progress line every
``--stats`` interval instead (default 1m, like rclone's ``--stats``): a six-hour
first sync says how far it got, a run shorter than the interval prints none.
The totals grow while the delegation walk finds new targets, so the ETA is for
the work known so far. ``rich`` is imported only here, only for terminal runs.
"""

from __future__ import annotations

import sys
from typing import TextIO

import trio

from mirror.report import RunReport

REFRESH_SECONDS = 0.25


def wanted(stream: TextIO | None = None) -> bool:
    """Whether to show progress on ``stream`` (default stderr)."""
    stream = stream if stream is not None else sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


def describe(report: RunReport) -> str:
    """The one-line description: files done of files found, and what was skipped."""
    done = report.targets_fetched + report.targets_already_present
    text = f"{report.command}: {done}/{report.targets_new} targets"
    if report.targets_already_present:
        text += f" ({report.targets_already_present} already present)"
    return text + f", {report.roles_verified} roles verified"


async def show_progress(report: RunReport, stream: TextIO | None = None) -> None:
    """Refresh a progress bar from ``report`` until cancelled."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    console = Console(file=stream if stream is not None else sys.stderr)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True, auto_refresh=False) as progress:
        task = progress.add_task(describe(report), total=None)
        while True:
            progress.update(
                task,
                description=describe(report),
                completed=report.target_bytes + report.present_bytes,
                total=max(report.planned_bytes, report.target_bytes) or None,
            )
            progress.refresh()
            await trio.sleep(REFRESH_SECONDS)


def stats_line(report: RunReport, *, elapsed: float) -> str:
    """One ``--stats`` line: what is done so far, bytes, rate and elapsed time."""
    rate = report.target_bytes / elapsed if elapsed > 0 else 0.0
    text = describe(report) if report.targets_new or report.roles_verified else report.command
    return (
        f"tuf-mirror {text}; {_human_bytes(report.target_bytes)} of "
        f"{_human_bytes(max(report.planned_bytes, report.target_bytes))} fetched at "
        f"{_human_bytes(int(rate))}/s; {elapsed:.0f}s elapsed"
    )


async def print_stats(report: RunReport, *, interval: float, fmt: str) -> None:
    """Print ``stats_line`` every ``interval`` seconds until cancelled."""
    from mirror.log import emit_line

    started = trio.current_time()
    while True:
        await trio.sleep(interval)
        elapsed = trio.current_time() - started
        emit_line(
            stats_line(report, elapsed=elapsed),
            {
                "event": "stats",
                "command": report.command,
                "targets_new": report.targets_new,
                "targets_fetched": report.targets_fetched,
                "targets_already_present": report.targets_already_present,
                "target_bytes": report.target_bytes,
                "planned_bytes": report.planned_bytes,
                "roles_verified": report.roles_verified,
                "elapsed_seconds": round(elapsed, 1),
            },
            fmt=fmt,
        )


def _human_bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
