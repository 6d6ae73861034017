"""The run report of ``export`` and ``import``: the sync engine's counters plus what
the bundle held, the states on both sides, expiries and the receipt. Plain data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mirror.report import RunReport


@dataclass(slots=True)
class BundleReport(RunReport):
    """A ``RunReport`` with the bundle's facts."""

    bundle: str | None = None
    bundle_id: str | None = None
    volumes: list[str] = field(default_factory=list)
    bundle_files: int = 0
    bundle_bytes: int = 0
    base: dict[str, Any] | None = None
    brought: dict[str, Any] | None = None
    #: role -> expiry (ISO 8601) of the exported or imported state
    expires: dict[str, str] = field(default_factory=dict)
    #: bundle files that no verified metadata referenced (import): ignored
    ignored: list[str] = field(default_factory=list)
    receipt: str | None = None
    reference_time: str | None = None

    def summary_line(self) -> str:
        """One line: the engine's summary, then the bundle's."""
        if self.error is not None or self.command not in ("export", "import"):
            # Not super(): a slotted dataclass is a new class without the __class__ cell.
            return RunReport.summary_line(self)
        expires = ", ".join(f"{role} {when}" for role, when in self.expires.items())
        if self.command == "export":
            if self.bundle is None:
                return (
                    f"tuf-mirror export: nothing new since the base (timestamp "
                    f"v{self.versions_after.get('timestamp')}): no bundle written"
                )
            where = self.bundle if len(self.volumes) < 2 else f"{len(self.volumes)} volumes"
            return (
                f"tuf-mirror export: wrote {where}: {self.bundle_files} files, "
                f"{self.bundle_bytes} bytes; timestamp "
                f"{_version(self.versions_before.get('timestamp'))} -> "
                f"{_version(self.versions_after.get('timestamp'))}; expires: {expires}"
            )
        return (
            f"tuf-mirror import: published {self.targets_published} targets and "
            f"{self.roles_published} metadata files; timestamp "
            f"{_version(self.versions_before.get('timestamp'))} -> "
            f"{_version(self.versions_after.get('timestamp'))}; {len(self.ignored)} bundle "
            f"files ignored; receipt {self.receipt}; expires: {expires}"
        )


def _version(version: int | None) -> str:
    return "none" if version is None else f"v{version}"


__all__ = ["BundleReport"]
