"""The progress display of an interactive run: files and bytes done out of those
found so far, rate and ETA, on stderr, refreshed a few times a second.

Shown only when stderr is a terminal (and logs are not JSON): a cron run prints
nothing but its summary line. The totals grow while the delegation walk finds new
targets, so the ETA is for the work known so far. ``rich`` is imported only here,
only for such runs.
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
