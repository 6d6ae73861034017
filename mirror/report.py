"""The run report: what a run did, as counts, bytes, durations and versions.

One ``RunReport`` per command; the CLI prints its summary line and, on request,
its JSON form (``--json``, ``--report FILE``). It is plain data: nothing here
decides anything.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from mirror.errors import ExitStatus, MirrorError


@dataclass(slots=True)
class PruneReport:
    """What a prune (``prune`` or ``sync --prune``) deleted, would delete and kept."""

    #: False for a dry run: ``deleted_*`` then say what ``--apply`` would delete
    applied: bool = False
    #: published states the mirror's records know (the current one included)
    states_known: int = 0
    #: ids (timestamp versions) of the states whose files were kept
    states_retained: list[int] = field(default_factory=list)
    deleted_files: int = 0
    deleted_bytes: int = 0
    #: the deleted keys (at most ``mirror.prune.MAX_LISTED``; see listed_truncated)
    deleted: list[str] = field(default_factory=list)
    listed_truncated: bool = False
    kept_files: int = 0
    kept_bytes: int = 0
    #: unmarked files listed as written after the prune started: left alone
    kept_new: int = 0
    #: files no known state references (deleted only with --orphans)
    orphan_files: int = 0
    orphan_bytes: int = 0
    orphans: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        verb = "deleted" if self.applied else "would delete"
        text = (
            f"{verb} {self.deleted_files} files ({self.deleted_bytes} bytes), kept "
            f"{self.kept_files} files of {len(self.states_retained)} retained states"
        )
        if self.orphan_files:
            text += f"; {self.orphan_files} files ({self.orphan_bytes} bytes) of no known state"
        return text


@dataclass(slots=True)
class RunReport:
    """Counters and facts of one run; mutable while the run goes on."""

    command: str
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished: datetime | None = None
    exit_status: ExitStatus = ExitStatus.OK
    error: str | None = None
    upstream: str | None = None
    dest: str | None = None
    versions_before: dict[str, int] = field(default_factory=dict)
    versions_after: dict[str, int] = field(default_factory=dict)
    #: versions seen upstream (verified), also when the run failed later
    upstream_versions: dict[str, int] = field(default_factory=dict)
    roles_fetched: int = 0
    roles_verified: int = 0
    roles_published: int = 0
    targets_new: int = 0
    targets_fetched: int = 0
    targets_already_present: int = 0
    #: bytes of targets found already present (not fetched)
    present_bytes: int = 0
    #: left out on purpose by --include/--exclude/--role
    targets_filtered: int = 0
    #: not published because the trust policy's parties do not agree (--policy)
    targets_held_back: int = 0
    targets_published: int = 0
    #: --max-transfer: targets not fetched (or paused, resumably) by this run
    targets_deferred: int = 0
    target_bytes: int = 0
    planned_bytes: int = 0
    requests: int = 0
    bytes_received: int = 0
    retries: int = 0
    #: downloads continued with HTTP Range, and fetches handed to another upstream
    resumed: int = 0
    failovers: int = 0
    #: with several --upstream: what each served (served, failed, requests, bytes)
    upstreams: dict[str, dict[str, int]] = field(default_factory=dict)
    restarts: int = 0
    expired_delegated_roles: list[str] = field(default_factory=list)
    #: roles the snapshot lists that no delegation reaches: never fetched
    unreachable_roles: list[str] = field(default_factory=list)
    #: root versions 1..N before the pin that could not be shown authentic (0: none)
    root_history_skipped: int = 0
    #: role -> ISO expiry of the published (or, on failure, last verified) metadata
    expires: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    #: verify: expired top-level metadata (``timestamp v7 expired at ...``)
    expired_top_level: list[str] = field(default_factory=list)
    #: sync --repair: published targets found missing or corrupt and fetched again
    repaired: list[str] = field(default_factory=list)
    nothing_new: bool = False
    #: how long the destination had been held by another run when this one found it
    #: locked (exit 4), as far as this run can tell; 0 when it got the lock
    locked_out_seconds: float = 0.0
    #: the dead lease this run took over (``alice on host1 (pid 1), taken 2h ago``)
    lock_taken_over: str | None = None
    #: peak resident memory of this process (VmHWM), and of the largest worker process
    peak_rss_bytes: int = 0
    worker_peak_rss_bytes: int = 0
    #: --policy: per mapping counts, held-back targets, conflicts, alarms
    policy: dict[str, Any] = field(default_factory=dict)
    #: what ``prune`` or ``sync --prune`` did; None when no prune ran
    prune: PruneReport | None = None
    #: witness alarms (type, subject, ledger, observed, evidence) and the ledger's state
    alarms: list[dict[str, Any]] = field(default_factory=list)
    ledger: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def failed(cls, *, command: str, error: MirrorError, started: datetime) -> RunReport:
        """A report for a run that ended in ``error``."""
        report = cls(command=command, started=started)
        report.finish(error)
        return report

    def finish(self, error: MirrorError | None = None) -> None:
        """Stamp the end time and, on failure, the error and its exit status."""
        self.finished = datetime.now(UTC)
        self.peak_rss_bytes = peak_rss_bytes()
        if error is not None:
            self.exit_status = error.exit_status
            self.error = error.diagnostics()

    @property
    def seconds(self) -> float:
        end = self.finished or datetime.now(UTC)
        return (end - self.started).total_seconds()

    def summary_line(self) -> str:
        """The one human line a run prints."""
        if self.error is not None:
            stopped = self.exit_status in (ExitStatus.SIGINT, ExitStatus.SIGTERM)
            return (
                f"tuf-mirror {self.command}: {'INTERRUPTED' if stopped else 'FAILED'} "
                f"(exit {int(self.exit_status)}) "
                f"after {self.seconds:.1f}s: {self.error}"
            )
        ts = self.versions_after.get("timestamp")
        if self.command == "prune" and self.prune is not None:
            return f"tuf-mirror prune: {self.prune.summary()} in {self.seconds:.1f}s"
        if self.command == "verify":
            return (
                f"tuf-mirror verify: ok, timestamp v{ts}, {self.roles_verified} roles, "
                f"{self.targets_published} targets checked in {self.seconds:.1f}s"
                if not (self.missing or self.corrupt or self.expired_top_level)
                else f"tuf-mirror verify: FAILED: {len(self.missing)} missing, "
                f"{len(self.corrupt)} corrupt of {self.targets_published} targets"
                + "".join(f"; {expired}" for expired in self.expired_top_level)
            )
        if self.alarms:
            kinds = ", ".join(sorted({alarm["type"] for alarm in self.alarms}))
            return (
                f"tuf-mirror {self.command}: mirrored, but the witness raised "
                f"{len(self.alarms)} alarm(s) ({kinds}): a person should look; "
                f"timestamp {_version(ts)}"
            )
        if self.nothing_new:
            return (
                f"tuf-mirror {self.command}: nothing new (timestamp v{ts}), "
                f"{self.requests} requests, {self.bytes_received} bytes in {self.seconds:.1f}s"
                + (f"; pruned: {self.prune.summary()}" if self.prune is not None else "")
            )
        verb = "would copy" if self.command == "plan" else "copied"
        count = self.targets_new if self.command == "plan" else self.targets_fetched
        nbytes = self.planned_bytes if self.command == "plan" else self.target_bytes
        return (
            f"tuf-mirror {self.command}: {verb} {count} targets ({nbytes} bytes) and "
            f"{self.roles_fetched} metadata files; timestamp "
            f"{_version(self.versions_before.get('timestamp'))} -> {_version(ts)}; "
            f"{self.requests} requests, {self.bytes_received} bytes in {self.seconds:.1f}s"
            + (f"; {self.targets_filtered} left out by filters" if self.targets_filtered else "")
            + (
                f"; {self.targets_held_back} held back by the trust policy"
                if self.targets_held_back
                else ""
            )
            + (_policy_counts(self.policy) if self.command == "plan" else "")
            + (f"; pruned: {self.prune.summary()}" if self.prune is not None else "")
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form of the report."""
        data = asdict(self)
        data["started"] = self.started.isoformat()
        data["finished"] = self.finished.isoformat() if self.finished else None
        data["exit_status"] = int(self.exit_status)
        data["seconds"] = round(self.seconds, 3)
        return data


def _policy_counts(policy: dict[str, Any]) -> str:
    """``plan`` under a trust policy: per mapping, targets published / held back."""
    parts = [
        f"mapping {index} ({', '.join(m['paths'])}): {m['published']} published, "
        f"{m['held_back']} held back"
        for index, m in enumerate(policy.get("mappings", []))
    ]
    return "; policy " + "; ".join(parts) if parts else ""


def _version(version: int | None) -> str:
    return "none" if version is None else f"v{version}"


def peak_rss_bytes() -> int:
    """This process's peak resident set size (Linux ``VmHWM``: since its last exec,
    unlike ``getrusage``, which carries a forked parent's peak over), or 0."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return 0
    return 0
