"""The interactive progress display: what it says and that it only appears on a
terminal."""

from __future__ import annotations

import io

import trio

from mirror.progress import describe, show_progress, wanted
from mirror.report import RunReport


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_only_on_a_terminal() -> None:
    """A cron run (stderr not a terminal) shows no progress display."""
    assert not wanted(io.StringIO())
    assert wanted(_Terminal())


def test_description_counts_files() -> None:
    """The description names files done out of those found, and those present."""
    report = RunReport(command="sync", targets_new=10, targets_fetched=3)
    report.targets_already_present = 2
    report.roles_verified = 5
    assert describe(report) == "sync: 5/10 targets (2 already present), 5 roles verified"


async def test_progress_renders_bytes_and_files(autojump_clock: trio.abc.Clock) -> None:
    """The display shows the growing totals while the run goes on."""
    report = RunReport(command="sync", targets_new=4, planned_bytes=4096)
    screen = _Terminal()
    with trio.move_on_after(1):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(show_progress, report, screen)
            await trio.sleep(0.3)
            report.targets_fetched = 2
            report.target_bytes = 2048
            await trio.sleep(0.3)
    assert "2/4 targets" in screen.getvalue()
