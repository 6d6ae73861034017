"""The ``tuf-mirror`` command line: argparse subcommands, the only ``trio.run``.

``main(argv) -> int`` parses arguments, resolves settings (flags, environment,
config file), runs one command and maps the outcome to an exit status. It catches
only ``MirrorError``: anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from mirror import __version__
from mirror.config import Settings, add_options, resolve
from mirror.errors import ExitStatus, MirrorError, UsageError
from mirror.log import configure_logging, log
from mirror.report import RunReport

COMMANDS = {
    "sync": "copy and verify what is new upstream into DEST, timestamp.json last",
    "plan": "verify the upstream's new metadata and print what a sync would copy",
    "verify": "audit a published mirror from the pinned root",
    "export": "verify the upstream and write an air-gap bundle of what the far side lacks",
    "import": "verify an air-gap bundle against DEST's trusted state and publish it",
    "prune": "delete files no retained published state needs (a dry run unless --apply)",
}


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting, so main() owns the status."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, one subparser per command."""
    parser = _Parser(
        prog="tuf-mirror",
        description="A verifying mirror for TUF repositories.",
        epilog=(
            "exit status: 0 ok, 1 verification failed (security event), 2 usage or "
            "configuration error, 3 transient failure (retry later), 4 destination "
            "locked by another run, 5 --max-transfer budget reached (run again), 6 "
            "mirrored but the witness raised an alarm (a person should look)"
        ),
    )
    parser.add_argument("--version", action="version", version=f"tuf-mirror {__version__}")
    parser.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="log line format"
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, helptext in COMMANDS.items():
        cmd = sub.add_parser(name, help=helptext, description=helptext)
        add_options(cmd, name)
        if name == "import":
            cmd.add_argument(
                "bundle",
                nargs="?",
                metavar="BUNDLE",
                default=argparse.SUPPRESS,
                help="the bundle: a directory, FILE.tar, or FILE.tar.NNN-of-MMM volumes",
            )
    from mirror.shard.cli import add_shard_command

    add_shard_command(sub, _Parser)
    from mirror.ledger.commands import add_parsers

    add_parsers(sub)
    return parser


async def _run(settings: Settings, report: RunReport, progress: bool) -> RunReport:
    # Imported here so that `--help` and usage errors stay cheap.
    from mirror import sync

    now = datetime.now(UTC)
    if settings.reference_time is not None and settings.command != "import":
        # (import logs and records its own reference time)
        log.warning("checking expiry against --reference-time %s", settings.reference_time)
        now = settings.reference_time
    if settings.command.startswith("shard-"):
        from mirror.shard.steps import run_step

        return await run_step(settings, now=now, report=report)

    if settings.command == "verify":
        return await sync.verify_destination(settings, now=now)
    if settings.command == "prune":
        from mirror.prune import run_prune

        return await run_prune(settings, now=now, report=report)
    if settings.command in ("export", "import"):
        from mirror import airgap

        run = airgap.run_export if settings.command == "export" else airgap.run_import
        return await run(settings, now=now)
    return await sync.run_sync(
        settings,
        now=now,
        dry_run=settings.command == "plan",
        report=report,
        progress=progress,
    )


def _emit(report: RunReport, settings: Settings | None) -> None:
    if settings is not None and settings.metrics_file is not None:
        from mirror.metrics import write_metrics

        try:
            write_metrics(settings.metrics_file, report, now=datetime.now(UTC))
        except OSError as exc:
            log.warning("cannot write --metrics-file %s: %s", settings.metrics_file, exc)
    if settings is not None and settings.report is not None:
        try:
            settings.report.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        except OSError as exc:
            log.warning("cannot write --report %s: %s", settings.report, exc.strerror)
    if settings is not None and settings.json:
        print(json.dumps(report.to_dict(), indent=2))
    elif report.prune is not None and not report.prune.applied:
        for key in report.prune.deleted:
            print(f"would delete {key}")
    print(report.summary_line(), file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    import trio

    parser = build_parser()
    settings: Settings | None = None
    partial: RunReport | None = None
    command = "run"
    started = datetime.now(UTC)
    try:
        args = parser.parse_args(argv)
        command = args.command or "run"
        configure_logging(fmt=args.log_format, verbose=args.verbose)
        if args.command is None:
            parser.print_help(sys.stderr)
            return ExitStatus.USAGE
        if args.command in ("ledger", "witness"):
            from mirror.ledger.commands import run_command

            return run_command(args)
        if args.command == "shard":
            from mirror.shard.cli import resolve_shard

            settings = resolve_shard(args)
        else:
            settings = resolve(args.command, args)
        partial = RunReport(command=settings.command, started=started)
        from mirror.progress import wanted

        progress = args.log_format == "text" and wanted()
        report = trio.run(_run, settings, partial, progress)
    except MirrorError as exc:
        if settings is not None and partial is not None:
            report = partial
            report.finish(exc)
        else:
            report = RunReport.failed(
                command=settings.command if settings else command,
                error=exc,
                started=started,
            )
        log.error("%s", exc.diagnostics())
        _emit(report, settings)
        return int(exc.exit_status)
    except KeyboardInterrupt:
        print("tuf-mirror: interrupted; the published state is unchanged", file=sys.stderr)
        return 130
    _emit(report, settings)
    return int(report.exit_status)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
