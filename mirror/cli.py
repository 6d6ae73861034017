"""The ``tuf-mirror`` command line: argparse subcommands, the only ``trio.run``.

``main(argv) -> int`` parses arguments, resolves settings (flags, environment,
config file), runs one command and maps the outcome to an exit status (the table
in ``mirror.errors``). A ``MirrorError`` is reported as one line; anything else is
a bug: its traceback is printed and the status is 70. SIGINT and SIGTERM stop a
run cleanly (``mirror.shutdown``): 130 or 143, never a traceback. The report and
the metrics are written for every run that got as far as its settings, whatever
its end.

Subcommands are rows of ``COMMANDS`` (name, help, the coroutine that runs it,
positional arguments); the options each takes are rows of
``mirror.config.OPTIONS``. Adding a subcommand is one ``Command`` row here.
"""

from __future__ import annotations

import argparse
import functools
import json
import signal
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from mirror import __version__
from mirror.config import (
    GlobalSettings,
    Settings,
    add_global_options,
    add_options,
    resolve,
    resolve_globals,
    resolve_outputs,
    unknown_environment,
)
from mirror.errors import (
    EXIT_STATUS_MEANINGS,
    ExitStatus,
    Interrupted,
    MirrorError,
    StorageError,
    UsageError,
    VerificationError,
)
from mirror.log import configure_logging, emit_line, emit_summary, log
from mirror.report import RunReport

Runner = Callable[[Settings, RunReport, bool], Awaitable[RunReport]]


@dataclass(frozen=True, slots=True)
class Positional:
    """An optional positional argument of a subcommand, an alias of an option."""

    name: str
    metavar: str
    help: str


@dataclass(frozen=True, slots=True)
class Command:
    """One subcommand: its name, its one-line help and the coroutine that runs it
    (``run(settings, report, progress)``: ``report`` is filled in as the run goes,
    ``progress`` asks for the interactive progress display)."""

    name: str
    help: str
    run: Runner
    positionals: tuple[Positional, ...] = ()
    #: the report class the command fills in (``export``/``import``: BundleReport)
    report: Callable[..., RunReport] = RunReport
    #: a command with steps of its own (``shard plan|copy|publish``) adds its parser
    #: (``build(subparsers, parser_class)``) and resolves its settings itself
    build: Callable[[Any, type[argparse.ArgumentParser]], None] | None = None
    settings: Callable[[argparse.Namespace], Settings] | None = None
    #: a command that runs on its own (``ledger``, ``witness``): ``direct(args)`` is
    #: its exit status; no settings, report or metrics of the usual kind
    direct: Callable[[argparse.Namespace], int] | None = None


def _now(settings: Settings) -> datetime:
    """The time expiry is checked against: now, or ``--reference-time`` (``import``
    logs and records its own reference time, and takes the real now here)."""
    if settings.reference_time is not None and settings.command != "import":
        log.warning("checking expiry against --reference-time %s", settings.reference_time)
        return settings.reference_time
    return datetime.now(UTC)


async def _sync(settings: Settings, report: RunReport, progress: bool) -> RunReport:
    # Imported here so that `--help` and usage errors stay cheap.
    from mirror import sync
    from mirror.extensions import STANDARD

    return await sync.run_sync(
        settings, now=_now(settings), report=report, progress=progress, extensions=STANDARD
    )


async def _plan(settings: Settings, report: RunReport, progress: bool) -> RunReport:
    from mirror import sync
    from mirror.extensions import STANDARD

    return await sync.run_sync(
        settings,
        now=_now(settings),
        dry_run=True,
        report=report,
        progress=progress,
        extensions=STANDARD,
    )


async def _verify(settings: Settings, report: RunReport, progress: bool) -> RunReport:
    from mirror import sync

    return await sync.verify_destination(settings, now=_now(settings))


async def _export(settings: Settings, report: RunReport, progress: bool) -> RunReport:
    from mirror import airgap

    assert isinstance(report, airgap.BundleReport)
    return await airgap.run_export(settings, now=_now(settings), report=report)


async def _import(settings: Settings, report: RunReport, progress: bool) -> RunReport:
    from mirror import airgap

    assert isinstance(report, airgap.BundleReport)
    return await airgap.run_import(settings, now=datetime.now(UTC), report=report)


async def _prune(settings: Settings, report: RunReport, progress: bool) -> RunReport:
    from mirror.prune import run_prune

    return await run_prune(settings, now=_now(settings), report=report)


def _add_ledger_and_witness(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    """``ledger`` and ``witness`` (one call adds both: either row builds them). The
    parsers alone: the commands' modules (trio, the log) load when one runs."""
    from mirror.ledger.parsers import add_parsers

    add_parsers(sub)


def _run_ledger(args: argparse.Namespace) -> int:
    from mirror.ledger.commands import run_command

    return run_command(args)


async def _not_direct(settings: Settings, report: RunReport, progress: bool) -> RunReport:
    raise RuntimeError("a direct command has no coroutine")


async def _shard(settings: Settings, report: RunReport, progress: bool) -> RunReport:
    from mirror.shard.steps import run_step

    return await run_step(settings, now=_now(settings), report=report)


def _add_shard(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    from mirror.shard.cli import add_shard_command

    add_shard_command(sub, parser_class)


def _resolve_shard(args: argparse.Namespace) -> Settings:
    from mirror.shard.cli import resolve_shard

    return resolve_shard(args)


def _bundle_report(**fields: Any) -> RunReport:
    from mirror.airgap.report import BundleReport

    return BundleReport(**fields)


COMMANDS: tuple[Command, ...] = (
    Command("sync", "copy and verify what is new upstream into DEST, timestamp.json last", _sync),
    Command("plan", "verify the upstream's new metadata and print what a sync would copy", _plan),
    Command("verify", "audit a published mirror from the pinned root", _verify),
    Command(
        "export",
        "verify the upstream and write an air-gap bundle of what the far side lacks",
        _export,
        report=_bundle_report,
    ),
    Command(
        "import",
        "verify an air-gap bundle against DEST's trusted state and publish it",
        _import,
        positionals=(
            Positional(
                "bundle",
                "BUNDLE",
                "the bundle: a directory, FILE.tar, or FILE.tar.NNN-of-MMM volumes",
            ),
        ),
        report=_bundle_report,
    ),
    Command(
        "prune", "delete files no retained published state needs (a dry run unless --apply)", _prune
    ),
    Command(
        "ledger",
        "read and verify the ledger of what the mirror published",
        _not_direct,
        build=_add_ledger_and_witness,
        direct=_run_ledger,
    ),
    Command(
        "witness",
        "audit the upstream (and peers) against the ledger; publish nothing",
        _not_direct,
        build=_add_ledger_and_witness,
        direct=_run_ledger,
    ),
    Command(
        "shard",
        "a first copy in shards, for many machines: plan, copy (one shard each), publish",
        _shard,
        build=_add_shard,
        settings=_resolve_shard,
    ),
)
COMMAND_BY_NAME = {command.name: command for command in COMMANDS}

#: with -q, runs ending so print nothing: done, or budget reached after progress
#: (the next run continues); everything else needs a person to read it
QUIET_STATUSES = frozenset({ExitStatus.OK, ExitStatus.BUDGET})


def exit_status_help() -> str:
    """The exit-status table, as ``--help`` prints it."""
    rows = "\n".join(
        f"  {int(status):<4} {meaning}" for status, meaning in EXIT_STATUS_MEANINGS.items()
    )
    return f"exit status:\n{rows}"


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting, so main() owns the status."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


#: a command's parser until it is built (``_Commands``)
_PLACEHOLDER: Any = object()


class _Commands(argparse._SubParsersAction):  # type: ignore[type-arg]  # argparse's own class
    """The subcommands' parsers, each built when its command is parsed: a run parses
    one command, and building every command's parser and options cost more than the
    rest of the parsing (argparse looks up its translations for each parser). Until
    then a command has its help line (the list in ``--help``) and a placeholder
    (what ``COMMAND`` accepts)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: command name -> what builds its parser (replacing the placeholder)
        self.builders: dict[str, Callable[[], None]] = {}

    def add_later(self, name: str, help: str, build: Callable[[], None]) -> None:
        """A command whose parser ``build`` adds when the command is parsed."""
        self._name_parser_map[name] = _PLACEHOLDER
        self._choices_actions.append(self._ChoicesPseudoAction(name, (), help))
        self.builders[name] = build

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        """``add_parser``, or the real parser of a command added later (its help
        line keeps its place in the list of commands)."""
        if self._name_parser_map.get(name) is not _PLACEHOLDER:
            return super().add_parser(name, **kwargs)
        del self._name_parser_map[name]
        at = next(i for i, choice in enumerate(self._choices_actions) if choice.dest == name)
        del self._choices_actions[at]
        parser = super().add_parser(name, **kwargs)
        if "help" in kwargs:
            self._choices_actions.insert(at, self._choices_actions.pop())
        return parser

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        build = self.builders.pop(values[0], None)
        if build is not None:
            build()
            # One build may add several commands' parsers (``ledger`` and ``witness``).
            for name in [n for n in self.builders if self._name_parser_map[n] is not _PLACEHOLDER]:
                del self.builders[name]
        super().__call__(parser, namespace, values, option_string)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one subparser per command (built when that command is
    parsed); the global options are accepted before and after the command's name."""
    parser = _Parser(
        prog="tuf-mirror",
        description="A verifying mirror for TUF repositories.",
        epilog=exit_status_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tuf-mirror {__version__}")
    add_global_options(parser)
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser, action=_Commands
    )
    assert isinstance(sub, _Commands)
    for command in COMMANDS:
        sub.add_later(command.name, command.help, functools.partial(_build_command, sub, command))
    return parser


def _build_command(sub: _Commands, command: Command) -> None:
    """Add ``command``'s parser with its options to the subcommands ``sub``."""
    if command.build is not None:
        command.build(sub, _Parser)
        return
    cmd = sub.add_parser(
        command.name,
        help=command.help,
        description=command.help,
        epilog=exit_status_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(cmd, command.name)
    for positional in command.positionals:
        cmd.add_argument(
            positional.name,
            nargs="?",
            metavar=positional.metavar,
            default=argparse.SUPPRESS,
            help=positional.help,
        )


async def _run(command: Command, settings: Settings, report: RunReport, tty: bool) -> RunReport:
    from mirror.progress import print_stats
    from mirror.shutdown import run_stoppable

    companions: list[Callable[[], Awaitable[None]]] = []
    if settings.stats > 0 and not tty and not settings.quiet:

        async def stats() -> None:
            await print_stats(report, interval=settings.stats, fmt=settings.log_format)

        companions.append(stats)
    progress = tty and settings.log_format == "text" and not settings.quiet
    _check_pending_signal("before the run started: nothing was done")
    result = await run_stoppable(
        lambda: command.run(settings, report, progress),
        grace=settings.grace,
        companions=companions,
    )
    _check_pending_signal("after the run completed")
    return result


def _emit(
    report: RunReport,
    settings: Settings | None,
    options: GlobalSettings,
    args: argparse.Namespace | None = None,
) -> None:
    """Write the metrics and the report, print the summary. Without settings (a
    usage error), the metrics and report paths are read as far as they can be, so
    a broken configuration shows in monitoring too."""
    if settings is not None:
        metrics_file, report_file = settings.metrics_file, settings.report
    else:
        outputs = resolve_outputs(args)
        metrics_file, report_file = outputs.metrics_file, outputs.report
        report.dest = report.dest or outputs.dest
    if metrics_file is not None:
        from mirror.metrics import write_metrics

        try:
            write_metrics(metrics_file, report, now=datetime.now(UTC))
        except OSError as exc:
            _output_failed(report, f"cannot write --metrics-file {metrics_file}: {exc.strerror}")
    if report_file is not None:
        from mirror.storage.atomic import write_atomic

        # Atomic, so that a monitoring reader never sees half a report.
        try:
            write_atomic(report_file, (json.dumps(report.to_dict(), indent=2) + "\n").encode())
        except StorageError as exc:
            reason = exc.__cause__.strerror if isinstance(exc.__cause__, OSError) else exc
            _output_failed(report, f"cannot write --report {report_file}: {reason}")
    if settings is not None and settings.json:
        print(json.dumps(report.to_dict(), indent=2))
    elif report.prune is not None and not report.prune.applied:
        for key in report.prune.deleted:
            print(f"would delete {key}")
    if options.quiet and report.exit_status in QUIET_STATUSES:
        return
    emit_summary(report.summary_line(), report.to_dict(), fmt=options.log_format)


def _output_failed(report: RunReport, message: str) -> None:
    """A report or metrics file that cannot be written (a full disk, say) leaves
    monitoring blind: a run that was otherwise fine becomes transient (3), so that
    it is retried and seen; a run that already failed keeps its own status."""
    if report.exit_status == ExitStatus.OK:
        log.error("%s; the mirror itself was published, retry once there is room", message)
        report.exit_status = ExitStatus.TRANSIENT
    else:
        log.warning("%s", message)


class _SignalExit(BaseException):
    """A stop signal outside the trio run (parsing, writing the report): stop now."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _SignalState:
    """Whether the trio run is under way, and the stop signals that arrived during
    it outside ``run_stoppable``'s receiver (its first and last instants): raising
    from a handler inside trio's own machinery could break it, so they are recorded
    and turned into ``Interrupted`` by ``_run``."""

    trio_running = False
    pending: list[int] = []  # noqa: RUF012 - one process-wide record, by design
    #: the --log-format of the run, for the line a signal outside it prints
    log_format = "text"


def _raise_signal_exit(signum: int, frame: FrameType | None) -> None:
    if _SignalState.trio_running:
        _SignalState.pending.append(signum)
        return
    raise _SignalExit(signum)


def _check_pending_signal(when: str) -> None:
    if _SignalState.pending:
        signum = _SignalState.pending[0]
        raise Interrupted(signum, f"interrupted by {signal.Signals(signum).name} {when}")


def _most_important(group: BaseExceptionGroup[BaseException]) -> MirrorError | None:
    """The one ``MirrorError`` to report for a group made only of them (a security
    event first), or None when the group holds anything else (a bug)."""
    leaves = list(_leaves(group))
    if not leaves or not all(isinstance(leaf, MirrorError) for leaf in leaves):
        return None
    errors = [leaf for leaf in leaves if isinstance(leaf, MirrorError)]
    errors.sort(key=lambda error: not isinstance(error, VerificationError))
    return errors[0]


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    handlers: dict[int, Any] = {}
    _SignalState.log_format = "text"
    if threading.current_thread() is threading.main_thread():
        for stop in (signal.SIGINT, signal.SIGTERM):
            handlers[stop] = signal.signal(stop, _raise_signal_exit)
    try:
        return _main(argv)
    except (_SignalExit, KeyboardInterrupt) as exc:
        signum = exc.signum if isinstance(exc, _SignalExit) else int(signal.SIGINT)
        emit_line(
            f"tuf-mirror: stopped by {signal.Signals(signum).name} "
            "(nothing was running that could leave a partial state)",
            {"event": "summary", "exit_status": 128 + signum},
            fmt=_SignalState.log_format,
            level="error",
        )
        return 128 + signum
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    settings: Settings | None = None
    partial: RunReport | None = None
    options = GlobalSettings()
    args: argparse.Namespace | None = None
    command_name = "run"
    started = datetime.now(UTC)
    try:
        try:
            args = parser.parse_args(argv)
            command_name = args.command or "run"
            options = resolve_globals(args)
            _SignalState.log_format = options.log_format
            configure_logging(fmt=options.log_format, verbose=options.verbose, quiet=options.quiet)
            for name in unknown_environment():
                log.warning("ignoring %s: no such setting (a typo?)", name)
            if args.command is None:
                parser.print_help(sys.stderr)
                return ExitStatus.USAGE
            command = COMMAND_BY_NAME[args.command]
            if command.direct is not None:
                return command.direct(args)
            if command.settings is not None:
                settings = command.settings(args)
            else:
                settings = resolve(args.command, args)
            partial = command.report(command=settings.command, started=started)
            partial.dest = settings.dest or settings.to
            # Imported once a command runs: `--version`, `--help` and usage errors
            # stay cheap.
            import trio

            from mirror.progress import wanted

            _SignalState.pending.clear()
            _SignalState.trio_running = True
            try:
                report = trio.run(_run, command, settings, partial, wanted())
            finally:
                _SignalState.trio_running = False
        except BaseExceptionGroup as group:
            error = _most_important(group)
            if error is None:
                raise
            raise error from group
    except MirrorError as exc:
        if settings is not None and partial is not None:
            report = partial
            report.finish(exc)
        else:
            report = RunReport.failed(
                command=settings.command if settings else command_name,
                error=exc,
                started=started,
            )
        if not isinstance(exc, Interrupted):  # its summary line says it all
            log.error("%s", exc.diagnostics())
        _emit(report, settings, options, args)
        return int(exc.exit_status)
    except Exception as exc:  # noqa: BLE001 - a bug: printed with its traceback, exit 70
        # A bug: keep its traceback, and say so in the report and the metrics.
        traceback.print_exc()
        print(
            "tuf-mirror: internal error (a bug in tuf-mirror, not in the mirrored "
            "repository): please report it with the traceback above",
            file=sys.stderr,
        )
        report = partial if partial is not None else RunReport(command=command_name)
        report.finish()
        report.exit_status = ExitStatus.SOFTWARE
        report.error = f"internal error: {type(exc).__name__}: {exc}"
        _emit(report, settings, options, args)
        return ExitStatus.SOFTWARE
    _emit(report, settings, options)
    return int(report.exit_status)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
