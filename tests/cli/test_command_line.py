"""The command line itself: global options before or after the command, in TOML
and in the environment; subcommand-specific help with human defaults; one exit
table everywhere; exit 70 (with the traceback) for a bug; exit 2 naming the ``s3``
extra when boto3 is missing; ``python -m mirror``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

import mirror.errors
from mirror.cli import COMMAND_BY_NAME, Command, build_parser, exit_status_help, main
from mirror.config import resolve, resolve_globals, unknown_environment
from mirror.errors import EXIT_STATUS_MEANINGS, ExitStatus
from mirror.report import RunReport

_REPO_ROOT = Path(__file__).resolve().parents[2]
_BASE = ["--root", "root.json", "--upstream", "http://127.0.0.1:1", "--dest", "d"]


def _help(*argv: str) -> str:
    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--help"])
    return ""


def _help_text(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    _help(command)
    return capsys.readouterr().out


def _options_part(text: str) -> str:
    return text.split("exit status:", maxsplit=1)[0]


@pytest.mark.parametrize(
    "argv",
    [
        ["--log-format", "json", "-v", "sync", *_BASE],
        ["sync", *_BASE, "--log-format", "json", "-v"],
        ["-v", "sync", "--log-format", "json", *_BASE],
    ],
)
def test_global_options_before_or_after_the_command(argv: list[str]) -> None:
    """--log-format and -v are accepted before and after the subcommand's name and
    reach both the global settings and the command's settings."""
    args = build_parser().parse_args(argv)
    options = resolve_globals(args, {})
    assert (options.log_format, options.verbose) == ("json", 1)
    settings = resolve("sync", args, {})
    assert (settings.log_format, settings.verbose) == ("json", 1)


def test_verbose_counts_on_both_sides() -> None:
    """-v before and -v after the command add up (-vv: debug)."""
    args = build_parser().parse_args(["-v", "sync", *_BASE, "-v"])
    assert resolve_globals(args, {}).verbose == 2


def test_global_options_from_toml_and_environment(tmp_path: Path) -> None:
    """The global options come from TUF_MIRROR_* variables and from the TOML file
    too, flags first, then the environment, then the file."""
    config = tmp_path / "mirror.toml"
    config.write_text('log-format = "json"\nquiet = true\nverbose = 2\nstats = "5m"\n')
    args = build_parser().parse_args(["sync", *_BASE, "--config", str(config)])
    from_file = resolve_globals(args, {})
    assert (from_file.log_format, from_file.quiet, from_file.verbose, from_file.stats) == (
        "json",
        True,
        2,
        300.0,
    )
    env = {"TUF_MIRROR_LOG_FORMAT": "text", "TUF_MIRROR_QUIET": "0"}
    from_env = resolve_globals(args, env)
    assert (from_env.log_format, from_env.quiet) == ("text", False)
    flagged = build_parser().parse_args(["-q", "sync", *_BASE, "--log-format", "json"])
    assert resolve_globals(flagged, env).log_format == "json"
    assert resolve_globals(flagged, env).quiet is True


def test_unknown_environment_variables_are_named(capsys: pytest.CaptureFixture[str]) -> None:
    """A TUF_MIRROR_* variable that names no option is warned about (a typo would
    otherwise be silently ignored); known ones are not."""
    env = {
        "TUF_MIRROR_DSET": "/srv",
        "TUF_MIRROR_DEST": "/srv",
        "TUF_MIRROR_CONFIG": "x",
        "TUF_MIRROR_RUN_ID": "r1",
    }
    assert unknown_environment(env) == ["TUF_MIRROR_DSET"]


def test_unknown_environment_variable_warns_on_a_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The warning is printed by a real run (here one that then fails on usage)."""
    monkeypatch.setenv("TUF_MIRROR_LOG_FROMAT", "json")
    assert main(["sync"]) == ExitStatus.USAGE
    assert "TUF_MIRROR_LOG_FROMAT" in capsys.readouterr().err


def test_help_shows_only_what_the_command_uses(capsys: pytest.CaptureFixture[str]) -> None:
    """Each subcommand's help lists the options it takes and no other: no storage
    class or budget on verify, no S3 option on export, no budget or lock on plan;
    the global options and the exit table appear everywhere."""
    verify, export, plan, sync, imp = (
        _options_part(_help_text(name, capsys))
        for name in ("verify", "export", "plan", "sync", "import")
    )
    for absent in ("--s3-storage-class", "--max-transfer", "--timestamp-max-age", "--grace"):
        assert absent not in verify, absent
    assert "--s3-" not in export
    for absent in ("--max-transfer", "--break-stale-lock", "--s3-storage-class", "--grace"):
        assert absent not in plan, absent
    for present in ("--max-transfer", "--s3-storage-class", "--grace", "--break-stale-lock"):
        assert present in sync, present
    assert "--timestamp-max-age" in imp
    for text in (verify, export, plan, sync, imp):
        for option in ("--log-format", "-q, --quiet", "-v, --verbose", "--stats"):
            assert option in text
    assert "exit status:" in _help_text("verify", capsys)


def test_help_defaults_are_human(capsys: pytest.CaptureFixture[str]) -> None:
    """Defaults print as a person writes them (2m, 32M, 12h, 1m), not as Python
    values (120.0, 33554432, False)."""
    text = " ".join(_help_text("sync", capsys).split())
    for human in ("default 2m", "default 32M", "default 64M", "default 12h", "default 10s"):
        assert human in text, human
    for raw in ("120.0", "172800.0", "33554432", "False", "default None"):
        assert raw not in text, raw


def test_one_exit_table_in_errors_help_and_readme(capsys: pytest.CaptureFixture[str]) -> None:
    """Each exit status means one thing, written the same in the errors module's
    docstring, --help and the README; 1 is the security event only, 70 a bug."""
    assert mirror.errors.__doc__ is not None
    docstring = mirror.errors.__doc__
    readme = (_REPO_ROOT / "README.md").read_text()
    _help()
    top_help = capsys.readouterr().out
    assert exit_status_help() in top_help
    for status, meaning in EXIT_STATUS_MEANINGS.items():
        assert f"{int(status):<5}  {meaning}" in docstring, status
        assert f"| {int(status)} | {meaning} |" in readme, status
        assert meaning in top_help
    assert {int(s) for s in EXIT_STATUS_MEANINGS} == {0, 1, 2, 3, 4, 5, 6, 70, 130, 143}


def test_a_bug_exits_70_with_its_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An uncaught exception that is not a MirrorError is a bug: its traceback is
    printed, the status is 70 (never 1, the security status), and the report and
    metrics still say what happened."""

    async def broken(settings: object, report: RunReport, progress: bool) -> RunReport:
        raise RuntimeError("steps called out of order")

    monkeypatch.setitem(COMMAND_BY_NAME, "verify", Command("verify", "audit", broken))
    report = tmp_path / "report.json"
    metrics = tmp_path / "m.prom"
    argv = ["verify", "--root", "root.json", "--dest", str(tmp_path / "d")]
    status = main([*argv, "--report", str(report), "--metrics-file", str(metrics)])
    assert status == ExitStatus.SOFTWARE == 70
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert "RuntimeError: steps called out of order" in err
    assert "internal error" in err
    assert json.loads(report.read_text())["exit_status"] == 70
    assert 'tuf_mirror_last_run_exit_status{dest="' in metrics.read_text()


def test_missing_s3_extra_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An s3:// destination without the s3 extra installed (boto3 absent: its import
    fails) exits 2 with one line naming the extra and how to install it; no
    traceback."""
    for name in list(sys.modules):
        if name == "mirror.storage.s3" or name.split(".")[0] in ("boto3", "botocore"):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "botocore", None)
    monkeypatch.setitem(sys.modules, "boto3", None)
    root = tmp_path / "root.json"
    root.write_text("{}")
    status = main(["verify", "--root", str(root), "--dest", "s3://bucket/prefix"])
    err = capsys.readouterr().err
    assert status == ExitStatus.USAGE
    assert "'s3' extra" in err
    assert "pip install 'tuf-mirror[s3]'" in err
    assert "Traceback" not in err


def test_python_dash_m_mirror_runs_the_cli() -> None:
    """``python -m mirror`` is the command line (here: --version and a usage error
    exiting 2)."""
    version = subprocess.run(
        [sys.executable, "-m", "mirror", "--version"],
        capture_output=True,
        text=True,
        check=True,
        cwd=_REPO_ROOT,
    )
    assert version.stdout.startswith("tuf-mirror ")
    usage = subprocess.run(
        [sys.executable, "-m", "mirror", "sync"],
        check=False,
        capture_output=True,
        text=True,
        cwd=_REPO_ROOT,
    )
    assert usage.returncode == ExitStatus.USAGE
    assert "--root is required" in usage.stderr


#: what a command's run needs, not parsing the command line (``--version``, ``--help``,
#: a usage error)
_RUN_ONLY_MODULES = ("trio", "securesystemslib", "tuf", "mirror.ledger.commands", "mirror.trust")


def test_version_and_the_parser_import_no_run_time_module() -> None:
    """``--version`` and building the argument parser (every subcommand's, ``ledger``
    and ``witness`` included) import neither trio, python-tuf nor the ledger's
    commands: they are loaded once a command runs."""
    code = (
        "import sys\n"
        "from mirror.cli import build_parser, main\n"
        "build_parser()\n"
        "try:\n"
        "    main(['--version'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        f"wanted = {_RUN_ONLY_MODULES!r}\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] in wanted or n in wanted))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=_REPO_ROOT
    )
    assert done.stdout.startswith("tuf-mirror ")
    assert done.stdout.splitlines()[-1] == "[]"


def test_a_sync_imports_what_it_uses_only() -> None:
    """What a sync imports (the engine, the ledger's witness, a local store) leaves
    out what only some runs need: the ledger's commands, the shard commands,
    ``tomllib`` (a config file), ``pickle`` (worker processes) and ``email`` (HTTP
    dates of a local upstream, a ``Retry-After`` date), unless the libraries the
    sync needs import them themselves."""
    watched = ("mirror.ledger.commands", "mirror.shard.cli", "tomllib", "pickle", "email")
    code = (
        "import sys\n"
        f"watched = {watched!r}\n"
        "def loaded():\n"
        "    names = {n.split('.')[0] for n in sys.modules} | set(sys.modules)\n"
        "    return {w for w in watched if w in names}\n"
        "import mirror.trust, trio, tenacity\n"
        "before = loaded()\n"
        "from mirror.cli import build_parser\n"
        "build_parser().parse_args(['sync', '--root', 'r', '--upstream', 'u', '--dest', 'd'])\n"
        "import mirror.sync, mirror.extensions, mirror.ledger.run, mirror.storage.local\n"
        "print(sorted(loaded() - before))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=_REPO_ROOT
    )
    assert done.stdout.splitlines()[-1] == "[]"


def test_only_the_parsed_commands_parser_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parsing builds the top-level parser and the parsed command's, not the other
    commands' (each costs argparse's translation look-ups and the option table);
    ``--help`` still lists every command with its help line, in table order."""
    from mirror import cli

    built: list[str] = []
    real_init = cli._Parser.__init__

    def counting(self: cli._Parser, *args: Any, **kwargs: Any) -> None:
        built.append(str(kwargs.get("prog")))
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(cli._Parser, "__init__", counting)
    args = build_parser().parse_args(["sync", *_BASE])
    assert args.command == "sync"
    assert built == ["tuf-mirror", "tuf-mirror sync"]
    built.clear()
    build_parser().parse_args(["shard", "plan", "--shards", "2", *_BASE])
    assert built == ["tuf-mirror", "tuf-mirror shard", "tuf-mirror shard plan"] + [
        f"tuf-mirror shard {step}" for step in ("copy", "publish")
    ]
    parser = build_parser()  # one parser, several parses (each command built once)
    for argv in (["witness", *_BASE], ["ledger", "checkpoint", "--dest", "d"], ["witness", *_BASE]):
        assert parser.parse_args(argv).command == argv[0]
    text = build_parser().format_help()
    names = {command.name for command in cli.COMMANDS}
    listed = [line.split()[0] for line in text.splitlines() if line[4:5].isalpha()]
    assert [name for name in listed if name in names] == [c.name for c in cli.COMMANDS]
    for command in cli.COMMANDS:
        assert command.help in " ".join(text.split())


def test_the_ledger_parsers_are_the_commands_parsers() -> None:
    """``mirror.ledger.commands`` runs what ``mirror.ledger.parsers`` parses: the
    ``ledger`` and ``witness`` subcommands parse as before the split."""
    from mirror.ledger import commands, parsers

    assert commands.add_parsers is parsers.add_parsers
    assert {"ledger", "witness"} == commands.LEDGER_COMMANDS
    args = build_parser().parse_args(["ledger", "lookup", "files/a.bin", "--dest", "D"])
    assert (args.command, args.ledger_command, args.path, args.dest) == (
        "ledger",
        "lookup",
        "files/a.bin",
        "D",
    )
    args = build_parser().parse_args(["witness", "--root", "r.json", "--upstream", "U"])
    assert (args.root, args.upstream, args.witness_peer, args.json) == ("r.json", "U", [], False)


def test_only_verification_errors_exit_1() -> None:
    """Every MirrorError class whose status is 1 is a VerificationError: status 1
    means a security event and nothing else; a bare MirrorError is a bug (70)."""
    import inspect

    classes = [
        obj
        for _, obj in inspect.getmembers(mirror.errors, inspect.isclass)
        if issubclass(obj, mirror.errors.MirrorError)
    ]
    assert len(classes) > 20
    for cls in classes:
        if cls.exit_status == ExitStatus.VERIFICATION_FAILED:
            assert issubclass(cls, mirror.errors.VerificationError), cls
    assert mirror.errors.MirrorError("x").exit_status == ExitStatus.SOFTWARE


def test_a_signal_before_the_run_starts_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGTERM while the command line is still being read (before any work): exit
    143 with one line, no traceback; the process's own handlers are restored."""
    import os
    import signal

    import mirror.cli

    before = signal.getsignal(signal.SIGTERM)

    def parse_and_get_stopped(*args: object, **kwargs: object) -> object:
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("the signal did not stop the run")

    monkeypatch.setattr(mirror.cli, "resolve_globals", parse_and_get_stopped)
    assert main(["verify", "--root", "r.json", "--dest", "d"]) == ExitStatus.SIGTERM
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "stopped by SIGTERM" in err
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_signal_between_trio_start_and_the_run_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stop signal at an instant of the trio run where no receiver listens (here:
    right after the command ended) is recorded, not raised inside trio: exit 143,
    one line saying when, the report written, no traceback."""
    import os
    import signal

    import mirror.shutdown

    real = mirror.shutdown.run_stoppable

    async def then_signalled(
        command: Callable[[], Awaitable[RunReport]],
        *,
        grace: float,
        companions: Sequence[Callable[[], Awaitable[None]]] = (),
    ) -> RunReport:
        result = await real(command, grace=grace, companions=companions)
        os.kill(os.getpid(), signal.SIGTERM)
        return result

    async def done(settings: object, report: RunReport, progress: bool) -> RunReport:
        return report

    monkeypatch.setattr(mirror.shutdown, "run_stoppable", then_signalled)
    monkeypatch.setitem(COMMAND_BY_NAME, "verify", Command("verify", "audit", done))
    report = tmp_path / "report.json"
    argv = ["verify", "--root", "r.json", "--dest", "d", "--report", str(report)]
    assert main(argv) == ExitStatus.SIGTERM
    err = capsys.readouterr().err
    assert "interrupted by SIGTERM after the run completed" in err
    assert "Traceback" not in err
    assert json.loads(report.read_text())["exit_status"] == ExitStatus.SIGTERM
