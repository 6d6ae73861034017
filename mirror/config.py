"""Configuration: one table of options, read from flags, ``TUF_MIRROR_*`` environment
variables and a TOML file (``--config FILE``), in that order of precedence.

Every option is declared once in ``OPTIONS``; ``add_options`` turns the table into
argparse flags (with the environment variable and a human default such as ``2m`` or
``32M`` in ``--help``) and ``resolve`` merges the three sources into a frozen
``Settings``. An option lists the subcommands it applies to (``commands``), so a
subcommand's ``--help`` shows only what it uses; a *global* option (``--log-format``,
``-v``, ``-q``, ``--stats``) applies to every subcommand and is accepted before or
after the subcommand's name. Adding an option is one ``Option(...)`` entry here and
one ``Settings`` field; adding a subcommand is one ``Command`` entry in
``mirror.cli`` plus its name in the ``commands`` of the options it takes.

This module parses and validates values; it does not open the root file, the
network or the destination.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mirror.errors import UsageError
from mirror.units import (
    BandwidthSchedule,
    format_duration,
    format_size,
    parse_duration,
    parse_size,
    parse_time,
)

ENV_PREFIX = "TUF_MIRROR_"


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError as exc:
            raise UsageError(f"not a whole number: {text!r}") from exc
        if value < minimum:
            raise UsageError(f"must be at least {minimum}: {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _sha256_hex(text: str) -> str:
    value = text.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise UsageError(f"--root-sha256 must be 64 hex digits, got {text!r}")
    return value


def _str(text: str) -> str:
    return str(text)


def _path_glob(text: str) -> str:
    """An ``--include``/``--exclude`` pattern, checked when the options are read."""
    from mirror.filters import glob_to_regex

    glob_to_regex(str(text))
    return str(text)


def _addressing_style(text: str) -> str:
    value = str(text).strip().lower()
    if value not in {"path", "virtual", "auto"}:
        raise UsageError(f"not an S3 addressing style: {text!r} (path, virtual or auto)")
    return value


def _max_age(text: str) -> int:
    """A Cache-Control max-age: whole seconds (``60``, ``30s``, ``5m``), at least 0."""
    return int(parse_duration(text))


def _bwlimit(text: str) -> BandwidthSchedule | None:
    """``--bwlimit``: a rate or a timetable (``mirror.fetch.ratelimit``); None when
    it never caps anything (``off``)."""
    schedule = BandwidthSchedule.parse(text)
    return None if schedule.unlimited else schedule


def _log_format(text: str) -> str:
    value = str(text).strip().lower()
    if value not in {"text", "json"}:
        raise UsageError(f"not a log format: {text!r} (text or json)")
    return value


def _bool(text: str) -> bool:
    value = str(text).strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise UsageError(f"not a boolean: {text!r}")


@dataclass(frozen=True, slots=True)
class Option:
    """One setting: its flag, how to parse it, its default and its help.

    ``commands`` are the subcommands it applies to; a ``scope="global"`` option
    applies to every subcommand and is also accepted before the subcommand's name.
    ``flag`` options take no value (``--full``), ``count`` ones may repeat (``-vv``).
    """

    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    metavar: str | None = None
    repeat: bool = False
    flag: bool = False
    commands: frozenset[str] = frozenset({"sync", "plan", "verify", "export", "import", "prune"})
    scope: str = "command"
    short: str | None = None
    count: bool = False

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def cli(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def is_global(self) -> bool:
        return self.scope == "global"

    def applies_to(self, command: str) -> bool:
        """Whether ``command`` takes this option."""
        return self.is_global or command in self.commands

    def default_text(self) -> str | None:
        """The default as a person writes it (``2m``, ``32M``), None when there is
        nothing worth showing (no value, an off switch)."""
        if self.default in (None, (), False) or self.flag:
            return None
        if self.parse in (parse_duration, _max_age):
            return format_duration(self.default)
        if self.parse is parse_size:
            return format_size(self.default)
        return str(self.default)


_SYNCISH = frozenset({"sync", "plan", "export"})
_EXPORT = frozenset({"export"})
_IMPORT = frozenset({"import"})
_PRUNE = frozenset({"prune"})
#: commands that download targets (plan only reads metadata)
_TRANSFERS = frozenset({"sync", "export"})
#: commands that write to the destination (or, for export, a bundle): a lock, a
#: publish that a signal lets complete
_WRITERS = frozenset({"sync", "export", "import"})
#: options about the destination store, for every command that opens one (an
#: export writes a bundle, not a store)
_DESTINATION = frozenset({"sync", "plan", "verify", "import", "prune"})
#: options about how objects are written to the destination store
_DESTINATION_WRITES = frozenset({"sync", "import"})

OPTIONS: tuple[Option, ...] = (
    Option("root", _str, None, "pinned trusted root.json of the upstream", "FILE"),
    Option(
        "root_sha256", _sha256_hex, None, "refuse to start unless --root has this sha256", "HEX"
    ),
    Option(
        "upstream",
        _str,
        (),
        "upstream base URL (metadata at URL/metadata/, targets at URL/targets/);"
        " repeat for failover",
        "URL",
        repeat=True,
        commands=_SYNCISH,
    ),
    Option("metadata_url", _str, None, "override the metadata base URL", "URL", commands=_SYNCISH),
    Option("targets_url", _str, None, "override the targets base URL", "URL", commands=_SYNCISH),
    Option(
        "dest",
        _str,
        None,
        "destination: a directory, file:// or s3://bucket/prefix URL",
        "DEST",
        commands=frozenset({"sync", "plan", "verify", "import", "prune"}),
    ),
    Option(
        "transfers",
        _positive_int,
        8,
        "concurrent downloads (per worker process); verify, import: concurrent reads",
        "N",
        commands=_SYNCISH | {"verify", "import"},
    ),
    Option(
        "processes",
        _non_negative_int,
        None,
        "worker processes for target copies: 0 = none; default: one per CPU (at most 4)"
        " when 64 or more roles are new or changed",
        "N",
        commands=_SYNCISH,
    ),
    Option(
        "timeout",
        parse_duration,
        120.0,
        "deadline for one transfer (seconds or 30s/5m)",
        "DURATION",
        commands=_SYNCISH,
    ),
    Option("retries", _positive_int, 4, "attempts per transfer", "N", commands=_SYNCISH),
    Option(
        "bwlimit",
        _bwlimit,
        None,
        "download bandwidth cap in BYTES per second, not bits (K/M/G = 1024, 1024^2,"
        " 1024^3), shared by all downloads; or a daily timetable in local time,"
        " 'HH:MM,RATE ...' (e.g. '08:00,512K 19:00,10M 23:30,off'): from each time on"
        " that rate applies; off = no cap",
        "RATE",
        commands=_SYNCISH,
    ),
    Option(
        "max_snapshot_size",
        parse_size,
        32 * 1024**2,
        "cap on snapshot.json when timestamp declares no length",
        "SIZE",
    ),
    Option(
        "max_targets_size",
        parse_size,
        64 * 1024**2,
        "cap on a targets role when snapshot declares no length",
        "SIZE",
    ),
    Option(
        "break_stale_lock",
        _bool,
        False,
        "take over a lock whose lease has not expired yet (its run is known to be"
        " gone) or that is unreadable; expired leases are taken over without it",
        flag=True,
        commands=_WRITERS | _PRUNE,
    ),
    Option(
        "lock_lease",
        parse_duration,
        600.0,
        "length of the lock's lease (export: its state directory's), renewed every"
        " third of it while the command runs; a lease not renewed in time is taken"
        " over by the next run",
        "DURATION",
        commands=_WRITERS | _PRUNE,
    ),
    Option(
        "repair",
        _bool,
        False,
        "also re-fetch from the upstream, and re-verify, published targets that are"
        " missing or do not match their verified hashes (what verify reports)",
        flag=True,
        commands=frozenset({"sync"}),
    ),
    # Operating it: budget, partial mirrors, monitoring.
    Option(
        "max_transfer",
        parse_size,
        None,
        "stop starting downloads once this many target bytes were fetched (e.g. 5G);"
        " exit 5, run again to continue",
        "SIZE",
        commands=_TRANSFERS,
    ),
    Option(
        "include",
        _path_glob,
        (),
        "only copy targets whose path matches GLOB (* within a segment, ** across);"
        " repeat; metadata is always complete",
        "GLOB",
        repeat=True,
        commands=frozenset({"sync", "plan"}) | _PRUNE,
    ),
    Option(
        "exclude",
        _path_glob,
        (),
        "do not copy targets whose path matches GLOB; repeat",
        "GLOB",
        repeat=True,
        commands=frozenset({"sync", "plan"}) | _PRUNE,
    ),
    Option(
        "role",
        _str,
        (),
        "only copy targets listed by delegated roles matching NAME (a glob); repeat",
        "NAME",
        repeat=True,
        commands=frozenset({"sync", "plan"}) | _PRUNE,
    ),
    Option(
        "policy",
        _str,
        None,
        "trust policy (TOML, or a TAP 4 map.json): publish a target only when the"
        " repositories it names agree on it; held-back targets are reported",
        "FILE",
        commands=frozenset({"sync", "plan"}),
    ),
    Option(
        "metrics_file",
        _str,
        None,
        "write Prometheus metrics (node_exporter textfile collector) to FILE",
        "FILE",
    ),
    Option(
        "expiry_warning",
        parse_duration,
        12 * 3600.0,
        "warn when published timestamp/snapshot/targets/root expire within DURATION"
        " (keep it below the upstream's re-signing margin: a timestamp that lives 2d"
        " and is re-signed daily always has more than 1d left)",
        "DURATION",
        commands=_SYNCISH | _IMPORT,
    ),
    Option("json", _bool, False, "print the run report as JSON on stdout", flag=True),
    Option("report", _str, None, "write the JSON run report to FILE", "FILE"),
    # S3 destinations (--dest s3://bucket/prefix); ignored for other destinations.
    # Credentials come from boto3's usual chain (environment, shared files, roles).
    Option(
        "s3_endpoint_url",
        _str,
        None,
        "S3-compatible endpoint for an s3:// destination (boto3 also reads AWS_ENDPOINT_URL)",
        "URL",
        commands=_DESTINATION,
    ),
    Option(
        "s3_region",
        _str,
        None,
        "region of the s3:// bucket (else boto3's chain: AWS_DEFAULT_REGION, config)",
        "REGION",
        commands=_DESTINATION,
    ),
    Option(
        "s3_addressing_style",
        _addressing_style,
        None,
        "S3 addressing style: path, virtual or auto",
        "STYLE",
        commands=_DESTINATION,
    ),
    Option(
        "s3_storage_class",
        _str,
        None,
        "storage class of uploaded objects (STANDARD, INTELLIGENT_TIERING, ...)",
        "CLASS",
        commands=_DESTINATION_WRITES,
    ),
    Option(
        "uploads",
        _positive_int,
        16,
        "S3 requests in flight at once (upload concurrency)",
        "N",
        commands=_DESTINATION,
    ),
    Option(
        "timestamp_max_age",
        _max_age,
        60,
        "Cache-Control max-age of timestamp.json and other files replaced in place"
        " (seconds or 30s/5m)",
        "DURATION",
        commands=_DESTINATION_WRITES,
    ),
    Option(
        "sample",
        _positive_int,
        None,
        "verify only N randomly chosen targets",
        "N",
        commands=frozenset({"verify"}),
    ),
    # Pruning (mirror.prune): `prune`, and `sync --prune` after a successful publish.
    Option(
        "prune",
        _bool,
        False,
        "after a successful publish, delete what no retained state needs (see prune)",
        flag=True,
        commands=frozenset({"sync"}),
    ),
    Option(
        "keep_states",
        _positive_int,
        2,
        "prune: keep the files of the last N published states (1 = only the current one)",
        "N",
        commands=frozenset({"sync"}) | _PRUNE,
    ),
    Option(
        "keep_for",
        parse_duration,
        3600.0,
        "prune: keep the files of every state published less than DURATION ago",
        "DURATION",
        commands=frozenset({"sync"}) | _PRUNE,
    ),
    Option(
        "orphans",
        _bool,
        False,
        "prune: also delete files that no state the mirror knows references",
        flag=True,
        commands=frozenset({"sync"}) | _PRUNE,
    ),
    Option(
        "apply",
        _bool,
        False,
        "delete for real (without it, prune only reports what it would delete)",
        flag=True,
        commands=_PRUNE,
    ),
    Option(
        "to",
        _str,
        None,
        "bundle to write: a new directory, or FILE.tar",
        "BUNDLE",
        commands=_EXPORT,
    ),
    Option(
        "since",
        _str,
        None,
        "export only what the far side lacks, per its import receipt",
        "RECEIPT",
        commands=_EXPORT,
    ),
    Option("full", _bool, False, "export everything (first seeding)", flag=True, commands=_EXPORT),
    Option(
        "volume_size",
        parse_size,
        None,
        "split a .tar bundle into numbered volumes of at most SIZE",
        "SIZE",
        commands=_EXPORT,
    ),
    Option(
        "min_validity",
        parse_duration,
        None,
        "refuse to export a state that expires sooner (e.g. 3d)",
        "DURATION",
        commands=_EXPORT,
    ),
    Option(
        "state_dir",
        _str,
        None,
        "where export records the far side's state and metadata"
        " (default ~/.local/state/tuf-mirror/exports/<id>)",
        "DIR",
        commands=_EXPORT,
    ),
    Option(
        "bundle", _str, None, "the bundle to import (also positional)", "BUNDLE", commands=_IMPORT
    ),
    Option(
        "receipt",
        _str,
        None,
        "also write the import receipt to FILE (always in DEST/.tuf-mirror/receipt.json)",
        "FILE",
        commands=_IMPORT,
    ),
    Option(
        "reference_time",
        parse_time,
        None,
        "check every expiry against this ISO 8601 time instead of now (audits, replays, tests)",
        "TIME",
    ),
    # Stopping and being watched: every command.
    Option(
        "grace",
        parse_duration,
        10.0,
        "on SIGINT/SIGTERM, let target transfers in flight finish for up to DURATION,"
        " then abandon them (resumable); a second signal stops at once",
        "DURATION",
        commands=_WRITERS,
    ),
    Option(
        "log_format",
        _log_format,
        "text",
        "log lines (and the summary line) as text or json",
        "{text,json}",
        scope="global",
    ),
    Option(
        "verbose",
        _non_negative_int,
        0,
        "more log output (-vv: debug)",
        short="-v",
        count=True,
        scope="global",
    ),
    Option(
        "quiet",
        _bool,
        False,
        "print nothing when the run succeeds, or stops at the transfer budget after"
        " progress; errors and any other end still print",
        short="-q",
        flag=True,
        scope="global",
    ),
    Option(
        "stats",
        parse_duration,
        60.0,
        "when stderr is not a terminal, print a progress line every DURATION"
        " (0: never); a run shorter than DURATION prints none",
        "DURATION",
        scope="global",
    ),
)

# The ledger and its witness alarms (mirror.ledger); sync and import.
_LEDGER = frozenset({"sync", "import"})


def _on_alarm(text: str) -> str:
    if text not in ("publish", "refuse"):
        raise UsageError(f"--on-alarm is publish or refuse, not {text!r}")
    return text


OPTIONS += (
    Option(
        "ledger",
        _str,
        None,
        "the ledger: DIR or s3://bucket/prefix (default DEST/.tuf-mirror/ledger)",
        "LEDGER",
        commands=_LEDGER,
    ),
    Option(
        "witness_key",
        _str,
        None,
        "sign ledger checkpoints with this Ed25519 PKCS#8 PEM private key",
        "FILE",
        commands=_LEDGER,
    ),
    Option(
        "witness_name",
        _str,
        None,
        "the checkpoints' origin and key name"
        " (default: the upstream as a schema-less URL + /ledger)",
        "NAME",
        commands=_LEDGER,
    ),
    Option(
        "immutable",
        _str,
        (),
        "alarm when a recorded target matching GLOB changes"
        " (* matches across /; '*' for every path); repeat",
        "GLOB",
        repeat=True,
        commands=_LEDGER,
    ),
    Option(
        "expect",
        _str,
        None,
        "expected hashes: JSON lines {path, length, hashes} or a signed note of them",
        "FILE",
        commands=_LEDGER,
    ),
    Option(
        "expect_key",
        _str,
        None,
        "key of a signed --expect list (PEM public key or C2SP verifier key)",
        "FILE",
        commands=_LEDGER,
    ),
    Option(
        "witness_peer",
        _str,
        (),
        "another mirror (or address of the upstream) compared with the ledger: FORK"
        " when it serves other bytes for a recorded version; repeat",
        "URL",
        repeat=True,
        commands=_LEDGER,
    ),
    Option(
        "on_alarm",
        _on_alarm,
        "publish",
        "publish (exit 6) or refuse (exit 1,"
        " nothing new published) when the witness raises an alarm",
        "POLICY",
        commands=_LEDGER,
    ),
)

OPTION_BY_NAME = {option.name: option for option in OPTIONS}


@dataclass(frozen=True, slots=True)
class Settings:
    """The resolved settings of one run."""

    command: str
    root: Path
    dest: str
    root_sha256: str | None = None
    upstream: tuple[str, ...] = ()
    metadata_url: str | None = None
    targets_url: str | None = None
    transfers: int = 8
    processes: int | None = None
    timeout: float = 120.0
    retries: int = 4
    bwlimit: BandwidthSchedule | None = None
    max_snapshot_size: int = 32 * 1024**2
    max_targets_size: int = 64 * 1024**2
    break_stale_lock: bool = False
    lock_lease: float = 600.0
    repair: bool = False
    json: bool = False
    report: Path | None = None
    max_transfer: int | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    role: tuple[str, ...] = ()
    policy: str | None = None
    metrics_file: Path | None = None
    expiry_warning: float = 12 * 3600.0
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_addressing_style: str | None = None
    s3_storage_class: str | None = None
    uploads: int = 16
    timestamp_max_age: int = 60
    sample: int | None = None
    prune: bool = False
    keep_states: int = 2
    keep_for: float = 3600.0
    orphans: bool = False
    apply: bool = False
    to: str | None = None
    since: str | None = None
    full: bool = False
    volume_size: int | None = None
    min_validity: float | None = None
    state_dir: str | None = None
    bundle: str | None = None
    receipt: str | None = None
    reference_time: datetime | None = None
    ledger: str | None = None
    witness_key: str | None = None
    witness_name: str | None = None
    immutable: tuple[str, ...] = ()
    expect: str | None = None
    expect_key: str | None = None
    on_alarm: str = "publish"
    witness_peer: tuple[str, ...] = ()
    grace: float = 10.0
    log_format: str = "text"
    verbose: int = 0
    quiet: bool = False
    stats: float = 60.0
    extra: Mapping[str, Any] = field(default_factory=dict)

    def root_bytes(self) -> bytes:
        """Read the pinned root file and check its sha256 pin."""
        try:
            data = self.root.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read --root {self.root}: {exc.strerror}") from exc
        if self.root_sha256 is not None:
            actual = hashlib.sha256(data).hexdigest()
            if actual != self.root_sha256:
                raise UsageError(
                    f"--root {self.root} has sha256 {actual}, not the pinned {self.root_sha256}"
                )
        from mirror.upstream import check_pinned_root

        check_pinned_root(data, self.root)
        return data

    def s3_store_options(self) -> dict[str, object]:
        """Keyword arguments for ``open_store(dest, ...)``: the ``S3Store`` settings
        when ``dest`` is an ``s3://`` URL, nothing for any other destination."""
        if urlsplit(self.dest).scheme.lower() != "s3":
            return {}
        return {
            "endpoint_url": self.s3_endpoint_url,
            "region": self.s3_region,
            "addressing_style": self.s3_addressing_style,
            "storage_class": self.s3_storage_class,
            "max_concurrency": self.uploads,
        }


#: the ``dest`` prefix of a global option given before the subcommand's name (kept
#: apart from the value given after it: ``-v sync -v`` counts two)
_BEFORE = "before_"


def _add_argument(add: Callable[..., Any], option: Option, *, dest: str) -> None:
    helptext = f"{option.help} (env {option.env}"
    default = option.default_text()
    helptext += f"; default {default})" if default is not None else ")"
    names = [option.short, option.cli] if option.short else [option.cli]
    if option.count:
        add(*names, dest=dest, action="count", default=argparse.SUPPRESS, help=helptext)
    elif option.flag:
        add(
            *names,
            dest=dest,
            action="store_const",
            const="true",
            default=argparse.SUPPRESS,
            help=helptext,
        )
    else:
        add(
            *names,
            dest=dest,
            metavar=option.metavar,
            action="append" if option.repeat else "store",
            default=argparse.SUPPRESS,
            help=helptext,
        )


def add_global_options(parser: argparse.ArgumentParser) -> None:
    """Add the global options to the top-level parser (before the subcommand)."""
    group = parser.add_argument_group("global options (also accepted after the command)")
    for option in OPTIONS:
        if option.is_global:
            _add_argument(group.add_argument, option, dest=_BEFORE + option.name)


def add_options(parser: argparse.ArgumentParser, command: str) -> None:
    """Add the table's options for ``command`` (global ones included) to ``parser``.

    Defaults are not set here (argparse.SUPPRESS) so that ``resolve`` can tell an
    explicit flag from an absent one and fall back to env and config file.
    """
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help=f"TOML config file (env {ENV_PREFIX}CONFIG); keys are the long option names",
    )
    for option in OPTIONS:
        if option.applies_to(command) and not option.is_global:
            _add_argument(parser.add_argument, option, dest=option.name)
    group = parser.add_argument_group("global options (also accepted before the command)")
    for option in OPTIONS:
        if option.is_global:
            _add_argument(group.add_argument, option, dest=option.name)


def _flags(namespace: argparse.Namespace) -> dict[str, Any]:
    """The explicit flags of ``namespace``, a global option given before and after
    the subcommand merged (after wins; counts add up)."""
    flags = {k: v for k, v in vars(namespace).items() if not k.startswith(_BEFORE)}
    for key, value in vars(namespace).items():
        if not key.startswith(_BEFORE):
            continue
        name = key[len(_BEFORE) :]
        option = OPTION_BY_NAME[name]
        if option.count and name in flags:
            flags[name] = int(flags[name]) + int(value)
        else:
            flags.setdefault(name, value)
    return flags


def _load_toml(path: str) -> dict[str, Any]:
    import tomllib  # here: most runs have no config file

    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from exc
    # Accept both a flat file and one with a [tuf-mirror] table.
    table = data.get("tuf-mirror", data)
    if not isinstance(table, dict):
        raise UsageError(f"config file {path}: [tuf-mirror] must be a table")
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in OPTION_BY_NAME:
            raise UsageError(f"config file {path}: unknown setting {key!r}")
        out[name] = value
    return out


def _convert(option: Option, raw: Any, source: str) -> Any:
    try:
        if option.repeat:
            items: Sequence[Any]
            if isinstance(raw, str):
                items = [part for part in re.split(r"[\s,]+", raw) if part]
            elif isinstance(raw, list | tuple):
                items = raw
            else:
                raise UsageError(f"expected a list, got {raw!r}")
            return tuple(option.parse(str(item)) for item in items)
        if isinstance(raw, bool) and option.flag:
            return raw
        return option.parse(str(raw))
    except UsageError as exc:
        raise UsageError(f"{option.cli} (from {source}): {exc}") from exc


#: ``TUF_MIRROR_*`` variables that are not options but are known: the config file,
#: the run of a sharded copy (``shard --run-id``), and the development and deploy
#: scripts' own (virtual environments, terraform plugins)
_KNOWN_ENV = frozenset(
    ENV_PREFIX + name for name in ("CONFIG", "RUN_ID", "VENV", "LINT_VENV", "TF_PLUGIN_DIR")
)


def unknown_environment(environ: Mapping[str, str] | None = None) -> list[str]:
    """``TUF_MIRROR_*`` variables that name no option (a typo, or a setting of
    another version): the CLI warns about each."""
    env = os.environ if environ is None else environ
    known = {option.env for option in OPTIONS} | _KNOWN_ENV
    return sorted(name for name in env if name.startswith(ENV_PREFIX) and name not in known)


@dataclass(frozen=True, slots=True)
class GlobalSettings:
    """The global options, resolved before anything else (logging needs them to
    report errors in the rest of the configuration)."""

    log_format: str = "text"
    verbose: int = 0
    quiet: bool = False
    stats: float = 60.0


def resolve_globals(
    namespace: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> GlobalSettings:
    """The global options from flags, environment and config file. A broken config
    file is reported by ``resolve``; here it only falls back to the defaults."""
    env = os.environ if environ is None else environ
    flags = _flags(namespace)
    config_path = flags.get("config") or env.get(ENV_PREFIX + "CONFIG")
    try:
        from_file = _load_toml(config_path) if config_path else {}
    except UsageError:
        from_file = {}
    values: dict[str, Any] = {}
    for option in OPTIONS:
        if not option.is_global:
            continue
        try:
            values[option.name] = _pick(option, flags, env, from_file, config_path)
        except UsageError:
            values[option.name] = option.default
    return GlobalSettings(**values)


@dataclass(frozen=True, slots=True)
class Outputs:
    """Where a run that could not resolve its settings still reports: the metrics
    file, the report file and the destination that labels the metrics."""

    metrics_file: Path | None = None
    report: Path | None = None
    dest: str | None = None


def resolve_outputs(
    namespace: argparse.Namespace | None, environ: Mapping[str, str] | None = None
) -> Outputs:
    """``--metrics-file``, ``--report`` and ``--dest`` for a run whose settings did
    not resolve (a usage error), so that monitoring sees a broken configuration too,
    under the destination's own series. Best effort: None for what cannot be read."""
    env = os.environ if environ is None else environ
    flags = _flags(namespace) if namespace is not None else {}
    config_path = flags.get("config") or env.get(ENV_PREFIX + "CONFIG")
    try:
        from_file = _load_toml(config_path) if config_path else {}
    except UsageError:
        from_file = {}
    values: dict[str, str | None] = {}
    for name in ("metrics_file", "report", "dest"):
        try:
            value = _pick(OPTION_BY_NAME[name], flags, env, from_file, config_path)
        except UsageError:
            value = None
        values[name] = str(value) if value else None
    return Outputs(
        metrics_file=Path(values["metrics_file"]) if values["metrics_file"] else None,
        report=Path(values["report"]) if values["report"] else None,
        dest=values["dest"],
    )


def _pick(
    option: Option,
    flags: Mapping[str, Any],
    env: Mapping[str, str],
    from_file: Mapping[str, Any],
    config_path: str | None,
) -> Any:
    if option.name in flags:
        return _convert(option, flags[option.name], option.cli)
    if option.env in env:
        return _convert(option, env[option.env], option.env)
    if option.name in from_file:
        return _convert(option, from_file[option.name], str(config_path))
    return option.default


def resolve(
    command: str,
    namespace: argparse.Namespace,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge flags, environment and config file (in that order of precedence)."""
    env = os.environ if environ is None else environ
    flags = _flags(namespace)
    config_path = flags.get("config") or env.get(ENV_PREFIX + "CONFIG")
    from_file = _load_toml(config_path) if config_path else {}

    values: dict[str, Any] = {}
    for option in OPTIONS:
        if option.applies_to(command):
            values[option.name] = _pick(option, flags, env, from_file, config_path)

    if values.get("policy"):
        from mirror.policy.source import primary_settings

        values = primary_settings(values)
    if not values.get("root"):
        raise UsageError("--root is required (the upstream's trusted root.json, pinned)")
    if not values.get("dest") and command not in _EXPORT:
        raise UsageError("--dest is required")
    if command in _SYNCISH and not values.get("upstream"):
        raise UsageError("--upstream is required")
    known = {f.name for f in fields(Settings)}
    kwargs = {k: v for k, v in values.items() if k in known}
    kwargs["root"] = Path(kwargs["root"])
    kwargs.setdefault("dest", "")
    if kwargs.get("report"):
        kwargs["report"] = Path(kwargs["report"])
    if kwargs.get("metrics_file"):
        kwargs["metrics_file"] = Path(kwargs["metrics_file"])
    return Settings(command=command, **kwargs)
