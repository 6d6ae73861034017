"""``tuf-mirror-conformance``: the client adapter for the TUF conformance suite.

The public conformance suite (``theupdateframework/tuf-conformance``) drives a TUF
client through a small command-line protocol, one new process per step::

    tuf-mirror-conformance --metadata-dir DIR init TRUSTED_ROOT
    tuf-mirror-conformance --metadata-url URL --metadata-dir DIR refresh
    tuf-mirror-conformance --metadata-url URL --metadata-dir DIR \\
        --target-name T1 [--target-name T2 ...] \\
        --target-dir DIR --target-base-url URL download

This module speaks it with tuf-mirror's own pieces, so that the suite tests them: the
trust core (``mirror.trust.TrustedSet`` in client mode, where an expired delegated
role fails, and ``TargetSearch`` for each target lookup) and the HTTP fetcher
(``mirror.fetch.http.HttpFetcher``, httpx under trio).

State between invocations lives only in the two directories the suite gives:

* METADATA_DIR holds the trusted metadata, each role as the exact bytes that passed
  verification, written (atomically) as soon as it is verified: ``root.json``,
  ``timestamp.json``, ``snapshot.json``, ``targets.json`` and ``<role>.json`` for
  delegated roles, the name percent-encoded so it stays one file (``%2Fx.json``).
  Nothing else ending in ``.json`` is ever written there.
* TARGET_DIR holds one verified file per target path, flat, named by the
  percent-encoded path (``path%2Fto%2Ffile.txt``). A file there that matches the
  length and hashes in the current metadata is a cache hit: no request. Downloads
  are spooled to a hidden ``*.tmp`` file in METADATA_DIR (the suite reads only its
  ``*.json`` files) and renamed into place once verified, so TARGET_DIR never holds
  a partial or unverified file, even after a killed process.

Exit status 0 on success and exactly 1 on any failure, argument errors and crashes
included; diagnostics go to stderr. The reference time for expiry is the wall clock,
read once per process with ``datetime.now`` (through the C library, so the suite's
``faketime`` shifts it).

What it does not do: mirror or publish anything, keep root history, retry a failed
refresh, read configuration or environment variables, or fetch delegated roles
outside a target search.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, NoReturn
from urllib.parse import quote

from mirror.errors import (
    DelegationError,
    FetchError,
    LengthOrHashMismatchError,
    MirrorError,
    NotFoundError,
    StorageError,
    UsageError,
)
from mirror.fetch.base import Fetcher
from mirror.storage import atomic
from mirror.trust import (
    EqualVersionError,
    RoleStep,
    TargetFile,
    TargetMatch,
    TargetSearch,
    TrustedSet,
    check_target,
    hash_algorithms_for,
    metadata_filename,
    new_hasher,
    target_filenames,
    validate_target_path,
)

__all__ = [
    "PROG",
    "ConformanceClient",
    "Invocation",
    "MetadataDir",
    "build_parser",
    "main",
    "parse_invocation",
    "target_cache_name",
]

PROG = "tuf-mirror-conformance"

Command = Literal["init", "refresh", "download"]

# Temporary files in METADATA_DIR and TARGET_DIR: hidden, never ending in ".json".
_TEMP_PREFIX = ".tuf-mirror-conformance-"
_TEMP_SUFFIX = ".tmp"
_TOP_LEVEL = frozenset({"root", "timestamp", "snapshot", "targets"})
_READ_CHUNK = 1 << 16

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


# -- command line ---------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse that raises ``UsageError`` instead of exiting with status 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (options may come before or after the sub-command)."""
    parser = _Parser(
        prog=PROG,
        description=(
            "TUF conformance-suite client adapter for tuf-mirror's trust core. "
            "Exit status: 0 success, 1 any failure."
        ),
    )
    parser.add_argument("--metadata-dir", type=Path, help="trusted metadata directory")
    parser.add_argument("--metadata-url", help="metadata base URL (an opaque prefix)")
    parser.add_argument(
        "--target-name",
        action="append",
        default=[],
        dest="target_names",
        metavar="TARGET",
        help="target path to download (repeatable, in order)",
    )
    parser.add_argument("--target-dir", type=Path, help="directory of downloaded targets")
    parser.add_argument("--target-base-url", help="targets base URL (an opaque prefix)")
    parser.add_argument("command", choices=("init", "refresh", "download"))
    parser.add_argument("trusted_root", nargs="?", type=Path, help="root file to trust (init only)")
    return parser


@dataclass(frozen=True, slots=True, kw_only=True)
class Invocation:
    """One validated command line."""

    command: Command
    metadata_dir: Path
    metadata_url: str | None = None
    trusted_root: Path | None = None
    target_names: tuple[str, ...] = ()
    target_dir: Path | None = None
    target_base_url: str | None = None


def parse_invocation(argv: Sequence[str]) -> Invocation:
    """Parse and check ``argv``; ``UsageError`` when something is missing or extra."""
    args = build_parser().parse_intermixed_args(list(argv))
    command: Command = args.command
    if args.metadata_dir is None:
        raise UsageError(f"{command}: --metadata-dir is required")
    if command == "init":
        if args.trusted_root is None:
            raise UsageError("init: TRUSTED_ROOT is required")
    elif args.trusted_root is not None:
        raise UsageError(f"{command}: unexpected argument {str(args.trusted_root)!r}")
    if command in ("refresh", "download") and not args.metadata_url:
        raise UsageError(f"{command}: --metadata-url is required")
    if command == "download":
        missing = [
            flag
            for flag, value in (
                ("--target-name", args.target_names),
                ("--target-dir", args.target_dir),
                ("--target-base-url", args.target_base_url),
            )
            if not value
        ]
        if missing:
            raise UsageError(f"download: {', '.join(missing)} required")
    return Invocation(
        command=command,
        metadata_dir=args.metadata_dir,
        metadata_url=args.metadata_url,
        trusted_root=args.trusted_root,
        target_names=tuple(args.target_names),
        target_dir=args.target_dir,
        target_base_url=args.target_base_url,
    )


# -- files ----------------------------------------------------------------------------


def _write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` via a synced temporary file in the same directory
    (removed on failure). ``StorageError`` on any OS error."""
    atomic.write_atomic(path, data, prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX, mode=0o644)


def _move_into_place(source: Path, destination: Path) -> None:
    """Rename ``source`` over ``destination``; across file systems, copy it to a
    temporary file beside ``destination`` first. ``StorageError`` on failure."""
    atomic.move_atomic(source, destination, prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX)


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


class MetadataDir:
    """METADATA_DIR: one file per role, ``<percent-encoded role name>.json``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def file_for(self, role: str) -> Path:
        """The file holding ``role``'s trusted metadata."""
        return self.path / metadata_filename(role, None)

    def read(self, role: str) -> bytes | None:
        """The stored bytes of ``role``, ``None`` if there are none; ``StorageError``
        if the file exists but cannot be read."""
        path = self.file_for(role)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc

    def write(self, role: str, data: bytes) -> None:
        """Store ``role``'s verified bytes atomically."""
        _write_atomic(self.file_for(role), data)


def target_cache_name(path: str) -> str:
    """The flat file name of a target in TARGET_DIR: the percent-encoded path."""
    return quote(validate_target_path(path), safe="")


def _digest_file(
    path: Path, target: TargetFile, algorithms: tuple[str, ...]
) -> tuple[int, dict[str, str]]:
    """Length and digests of a local file, reading at most one byte past the signed
    length (a longer file does not match anyway)."""
    hashers = {algorithm: new_hasher(algorithm) for algorithm in algorithms}
    length = 0
    with path.open("rb") as stream:
        while length <= target.length:
            chunk = stream.read(min(_READ_CHUNK, target.length + 1 - length))
            if not chunk:
                break
            length += len(chunk)
            for hasher in hashers.values():
                hasher.update(chunk)
    return length, {algorithm: hasher.hexdigest() for algorithm, hasher in hashers.items()}


# -- the client workflow --------------------------------------------------------------


class ConformanceClient:
    """The TUF client workflow over METADATA_DIR, one ``Fetcher`` and a fixed ``now``.

    ``refresh`` runs specification §5.2-5.6 for the top-level roles and returns the
    ``TrustedSet``; ``download`` looks each target up through delegations and stores
    the verified file in TARGET_DIR. Every failure raises (a ``MirrorError`` for
    anything the repository or the disk did wrong).
    """

    def __init__(
        self,
        *,
        metadata_dir: Path,
        fetcher: Fetcher,
        now: datetime,
        log: Log = _stderr,
    ) -> None:
        self.metadata = MetadataDir(metadata_dir)
        self.fetcher = fetcher
        self.now = now
        self.log = log

    # -- refresh ----------------------------------------------------------------------

    async def refresh(self) -> TrustedSet:
        """Update root, timestamp, snapshot and targets; persist each as verified."""
        root = self.metadata.read("root")
        if root is None:
            raise UsageError(f"{self.metadata.file_for('root')} does not exist: run init first")
        # Verified (well-formed, self-signed) before any request is made.
        trusted = TrustedSet(root, now=self.now, expired_delegated_ok=False)
        self.log(
            f"local root v{trusted.root.version} verifies "
            f"(consistent_snapshot={trusted.consistent_snapshot})"
        )
        await self._update_root(trusted)
        trusted.check_root_not_expired()
        await self._update_timestamp(trusted)
        await self._update_snapshot(trusted)
        await self._update_targets(trusted)
        self.log("refresh complete")
        return trusted

    async def _fetch_metadata(self, name: str, *, max_length: int) -> bytes:
        self.log(f"GET metadata {name} (at most {max_length} bytes)")
        fetched = await self.fetcher.fetch_bytes("metadata", name, max_length=max_length)
        if fetched is None:  # only for conditional requests, which are not made
            raise FetchError(f"{name}: unexpected 304 answer")
        return fetched.data

    def _read_local(self, role: str) -> bytes | None:
        try:
            return self.metadata.read(role)
        except StorageError as exc:
            self.log(f"local {role} ignored: {exc}")
            return None

    async def _update_root(self, trusted: TrustedSet) -> None:
        for _ in range(trusted.limits.max_root_rotations):
            version = trusted.root.version + 1
            name = metadata_filename("root", version)
            try:
                data = await self._fetch_metadata(name, max_length=trusted.limits.max_root_length)
            except NotFoundError:
                self.log(f"{name} not found: root v{version - 1} is the newest")
                return
            verified = trusted.update_root(data)
            self.metadata.write("root", verified.raw)
            self.log(f"root v{verified.version} verified and stored")
        self.log(f"stopped after {trusted.limits.max_root_rotations} root updates")

    async def _update_timestamp(self, trusted: TrustedSet) -> None:
        local = self._read_local("timestamp")
        if local is not None:
            try:
                loaded = trusted.update_timestamp(local)
                self.log(f"local timestamp v{loaded.version} loaded")
            except MirrorError as exc:
                kept = trusted.timestamp
                note = (
                    f" (v{kept.version} kept as the rollback reference)" if kept is not None else ""
                )
                self.log(f"local timestamp not used: {exc.diagnostics()}{note}")
        data = await self._fetch_metadata(
            "timestamp.json", max_length=trusted.limits.max_timestamp_length
        )
        try:
            verified = trusted.update_timestamp(data)
        except EqualVersionError as exc:
            self.log(f"{exc}: keeping the local timestamp")
            return
        self.metadata.write("timestamp", verified.raw)
        self.log(f"timestamp v{verified.version} verified and stored")

    async def _update_snapshot(self, trusted: TrustedSet) -> None:
        local = self._read_local("snapshot")
        if local is not None:
            try:
                verified = trusted.update_snapshot(local, trusted=True)
            except MirrorError as exc:
                self.log(f"local snapshot not final: {exc.diagnostics()}")
            else:
                self.log(f"local snapshot v{verified.version} is current")
                return
        timestamp = trusted.timestamp
        assert timestamp is not None
        meta = timestamp.signed.snapshot_meta
        name = metadata_filename("snapshot", meta.version if trusted.consistent_snapshot else None)
        data = await self._fetch_metadata(
            name, max_length=trusted.limits.snapshot_max(timestamp.signed)
        )
        verified = trusted.update_snapshot(data)
        self.metadata.write("snapshot", verified.raw)
        self.log(f"snapshot v{verified.version} verified and stored")

    async def _update_targets(self, trusted: TrustedSet) -> None:
        local = self._read_local("targets")
        if local is not None:
            try:
                verified = trusted.update_targets(local, trusted=True)
            except MirrorError as exc:
                self.log(f"local targets not current: {exc.diagnostics()}")
            else:
                self.log(f"local targets v{verified.version} is current")
                return
        data = await self._fetch_role(trusted, "targets")
        verified = trusted.update_targets(data)
        self.metadata.write("targets", verified.raw)
        self.log(f"targets v{verified.version} verified and stored")

    async def _fetch_role(self, trusted: TrustedSet, role: str) -> bytes:
        """Fetch the version of a targets role that the trusted snapshot lists."""
        meta = trusted.role_meta(role)
        if meta is None:
            snapshot = trusted.snapshot
            version = snapshot.version if snapshot is not None else "?"
            raise DelegationError(f"{role}: not listed in snapshot v{version}")
        snapshot = trusted.snapshot
        assert snapshot is not None
        name = metadata_filename(role, meta.version if trusted.consistent_snapshot else None)
        return await self._fetch_metadata(
            name, max_length=trusted.limits.targets_max(snapshot.signed, role)
        )

    # -- download ---------------------------------------------------------------------

    async def download(self, trusted: TrustedSet, names: Sequence[str], target_dir: Path) -> None:
        """Find, fetch (unless cached), verify and store each target, in order;
        stop at the first failure."""
        for name in names:
            match = await self.find_target(trusted, name)
            await self._download_target(trusted, match, target_dir)

    async def find_target(self, trusted: TrustedSet, path: str) -> TargetMatch:
        """Search the delegations for ``path``, loading (local copy first) and
        verifying each role the search visits; ``DelegationError`` if none lists it."""
        search = TargetSearch(trusted, path)
        while (step := search.next_role()) is not None:
            await self._load_delegated(trusted, search, step)
        if search.result is None:
            visited = ", ".join(search.visited)
            cap = " (stopped at the visit cap)" if search.capped else ""
            raise DelegationError(f"target {path!r}: no role lists it{cap}; searched {visited}")
        self.log(f"target {path!r} found in role {search.result.role}")
        return search.result

    async def _load_delegated(
        self, trusted: TrustedSet, search: TargetSearch, step: RoleStep
    ) -> None:
        if step.role in _TOP_LEVEL:
            raise DelegationError(
                f"{step.role}: a top-level role name cannot be delegated (by {step.delegator})"
            )
        local = self._read_local(step.role)
        if local is not None:
            try:
                verified = search.feed(local, trusted=True)
            except MirrorError as exc:
                self.log(f"local {step.role} not current: {exc.diagnostics()}")
            else:
                self.log(f"local {step.role} v{verified.version} is current")
                return
        data = await self._fetch_role(trusted, step.role)
        verified = search.feed(data)
        self.metadata.write(step.role, verified.raw)
        self.log(
            f"{step.role} v{verified.version} verified with the keys of {step.delegator} "
            f"and stored as {self.metadata.file_for(step.role).name}"
        )

    async def _download_target(
        self, trusted: TrustedSet, match: TargetMatch, target_dir: Path
    ) -> None:
        target = match.target
        algorithms = hash_algorithms_for(target)
        destination = target_dir / target_cache_name(match.path)
        if self._cached(destination, target, algorithms):
            self.log(f"target {match.path!r}: cached copy {destination.name} matches")
            return
        remote = target_filenames(
            match.path, dict(target.hashes), consistent_snapshot=trusted.consistent_snapshot
        )[0]
        # Spooled in METADATA_DIR, whose non-JSON files nobody reads, so that even a
        # killed process leaves nothing but verified files in TARGET_DIR.
        spool = self.metadata.path / f"{_TEMP_PREFIX}{secrets.token_hex(8)}{_TEMP_SUFFIX}"
        try:
            self.log(f"GET targets {remote} ({target.length} bytes)")
            fetched = await self.fetcher.fetch_to_file(
                "targets", remote, spool, length=target.length, algorithms=algorithms
            )
            check_target(target, fetched.length, fetched.digests)
            _move_into_place(spool, destination)
        finally:
            _unlink_quietly(spool)
        self.log(f"target {match.path!r} verified and stored as {destination.name}")

    def _cached(self, path: Path, target: TargetFile, algorithms: tuple[str, ...]) -> bool:
        try:
            length, digests = _digest_file(path, target, algorithms)
        except FileNotFoundError:
            return False
        except OSError as exc:
            self.log(f"cached {path.name} unreadable: {exc.strerror or exc}")
            return False
        try:
            check_target(target, length, digests)
        except LengthOrHashMismatchError as exc:
            self.log(f"cached {path.name} does not match: {exc}")
            return False
        return True


# -- commands ---------------------------------------------------------------------------


def _init(invocation: Invocation) -> None:
    assert invocation.trusted_root is not None
    try:
        data = invocation.trusted_root.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {invocation.trusted_root}: {exc.strerror or exc}") from exc
    # Refuse a root that could never be used (the next refresh would fail anyway).
    root = TrustedSet(data, now=datetime.now(UTC)).root
    _write_atomic(invocation.metadata_dir / "root.json", data)
    _stderr(f"trusted root v{root.version} stored in {invocation.metadata_dir / 'root.json'}")


def _fetcher(invocation: Invocation) -> Fetcher:
    from mirror.fetch.http import HttpFetcher
    from mirror.fetch.retry import RetryPolicy

    assert invocation.metadata_url is not None
    return HttpFetcher(
        invocation.metadata_url,
        invocation.target_base_url or invocation.metadata_url,
        max_connections=1,
        transfer_timeout=30.0,
        min_throughput=None,
        connect_timeout=5.0,
        read_timeout=10.0,
        # A 404 is never retried; a reset or 5xx gets one more chance.
        retry=RetryPolicy(attempts=2, initial=0.2, maximum=0.5, max_retry_after=1.0),
        http2=False,
        user_agent=PROG,
    )


async def _run(invocation: Invocation, now: datetime) -> None:
    fetcher = _fetcher(invocation)
    try:
        client = ConformanceClient(metadata_dir=invocation.metadata_dir, fetcher=fetcher, now=now)
        trusted = await client.refresh()
        if invocation.command == "download":
            assert invocation.target_dir is not None
            await client.download(trusted, invocation.target_names, invocation.target_dir)
    finally:
        await fetcher.aclose()
        stats = fetcher.stats
        _stderr(f"{stats.requests} request(s), {stats.bytes_received} bytes received")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the adapter; return 0 on success and 1 on any failure."""
    try:
        invocation = parse_invocation(sys.argv[1:] if argv is None else argv)
        _stderr(f"{invocation.command} (metadata dir {invocation.metadata_dir})")
        if invocation.command == "init":
            _init(invocation)
        else:
            import trio

            now = datetime.now(UTC)
            _stderr(f"reference time {now.isoformat()}")
            trio.run(_run, invocation, now)
    except MirrorError as exc:
        _stderr(f"FAILED: {exc.diagnostics()}")
        return 1
    except SystemExit as exc:  # argparse --help
        return 0 if exc.code in (0, None) else 1
    except BaseException:  # noqa: BLE001 (the protocol: any failure is exit status 1)
        _stderr("FAILED with an unexpected error:")
        traceback.print_exc(file=sys.stderr)
        return 1
    _stderr("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
