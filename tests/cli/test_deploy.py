"""The shipped deployment files work: the exact ``ExecStart`` lines of
``deploy/systemd/*.service``, the ``deploy/cron`` line and the README's copies of
both go through the real command-line parser and settings resolution (with the
shipped example config), and the unit's success statuses hide nothing a person
must see."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from mirror.cli import build_parser
from mirror.config import resolve, resolve_globals
from mirror.errors import ExitStatus

_REPO_ROOT = Path(__file__).resolve().parents[2]
_DEPLOY = _REPO_ROOT / "deploy"
_README = (_REPO_ROOT / "README.md").read_text()


def _readme_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", _README, flags=re.DOTALL)


def _exec_starts(text: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith("ExecStart=")]


def _cron_commands(text: str) -> list[str]:
    # minute hour day month weekday user command...
    return [
        " ".join(line.split()[6:])
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    ]


def _unit_files() -> list[Path]:
    return sorted((_DEPLOY / "systemd").glob("*.service"))


def _command_lines() -> list[tuple[str, str]]:
    lines = [
        (f"{path.name}", line) for path in _unit_files() for line in _exec_starts(path.read_text())
    ]
    for block in _readme_blocks("ini"):
        lines += [("README ini", line) for line in _exec_starts(block)]
    for path in sorted((_DEPLOY / "cron").iterdir()):
        lines += [(f"cron/{path.name}", line) for line in _cron_commands(path.read_text())]
    for block in _readme_blocks("cron"):
        lines += [("README cron", line) for line in _cron_commands(block)]
    return lines


def _tuf_mirror_argv(line: str) -> list[str]:
    """The arguments after the ``tuf-mirror`` executable (behind any wrapper such as
    ``flock -n FILE``), systemd's ``%i`` specifier filled in."""
    words = shlex.split(line.replace("%i", "example"))
    for index, word in enumerate(words):
        if Path(word).name == "tuf-mirror":
            return words[index + 1 :]
    raise AssertionError(f"no tuf-mirror command in {line!r}")


def test_every_shipped_command_line_is_found() -> None:
    """The test sees the unit, the cron file and both README copies (so a renamed
    file cannot make the parsing test below vacuous)."""
    sources = {source for source, _ in _command_lines()}
    assert {"tuf-mirror@.service", "README ini", "cron/tuf-mirror", "README cron"} <= sources


@pytest.mark.parametrize(("source", "line"), _command_lines())
def test_shipped_command_lines_parse_and_resolve(source: str, line: str, tmp_path: Path) -> None:
    """Each shipped command line parses with the real parser and resolves with the
    example config in place of /etc/tuf-mirror/…: global options after the command
    (``--log-format json`` in the unit) included."""
    argv = _tuf_mirror_argv(line)
    config = tmp_path / "example.toml"
    config.write_text((_DEPLOY / "example.toml").read_text())
    argv = [str(config) if word.startswith("/etc/tuf-mirror/") else word for word in argv]
    args = build_parser().parse_args(argv)
    settings = resolve(args.command, args, {})
    options = resolve_globals(args, {})
    assert settings.command == "sync"
    assert settings.metrics_file is not None, f"{source}: no metrics file"
    if "--log-format" in argv:
        assert options.log_format == settings.log_format == "json"
    if source.startswith(("cron", "README cron")):
        assert options.quiet, f"{source}: cron mails every run without -q"


def _success_statuses(text: str) -> set[int]:
    found: set[int] = set()
    for line in text.splitlines():
        if line.startswith("SuccessExitStatus="):
            found |= {int(word) for word in line.split("=", 1)[1].split()}
    return found


def test_unit_success_statuses_hide_nothing_a_person_must_see() -> None:
    """The unit treats as success only 5 (budget reached after progress) and 143
    (stopped by systemd, consistent); never 1 (security), 2, 3, 4 (a live holder
    elsewhere), 6 (witness alarm) or 70 (a bug). The README's copy says the same."""
    for path in _unit_files():
        statuses = _success_statuses(path.read_text())
        assert statuses == {ExitStatus.BUDGET, ExitStatus.SIGTERM}, path.name
    readme_units = [block for block in _readme_blocks("ini") if "ExecStart=" in block]
    assert readme_units
    for block in readme_units:
        assert _success_statuses(block) == {ExitStatus.BUDGET, ExitStatus.SIGTERM}


def test_unit_can_write_its_metrics_and_stops_gracefully() -> None:
    """The metrics file's directory is writable under ProtectSystem=strict, only
    the main process gets SIGTERM (KillMode=mixed: it stops its workers itself), and
    systemd waits longer than the default grace before SIGKILL."""
    for path in _unit_files():
        text = path.read_text()
        writable = [
            word
            for line in text.splitlines()
            if line.startswith("ReadWritePaths=")
            for word in line.split("=", 1)[1].split()
        ]
        for line in _exec_starts(text):
            argv = _tuf_mirror_argv(line)
            metrics = Path(argv[argv.index("--metrics-file") + 1])
            assert str(metrics.parent) in writable, path.name
        assert "KillMode=mixed" in text.splitlines()
        assert "TimeoutStopSec=90s" in text.splitlines()


def test_readme_copies_are_the_shipped_files() -> None:
    """The README shows the shipped unit, timer and cron line verbatim, so the copy
    a reader pastes is the tested one."""
    for path in [*_unit_files(), *sorted((_DEPLOY / "systemd").glob("*.timer"))]:
        assert path.read_text().rstrip() in _README, path.name
    for path in sorted((_DEPLOY / "cron").iterdir()):
        for line in path.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                assert line in _README, path.name
