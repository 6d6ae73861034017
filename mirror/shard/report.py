"""The run report of the ``shard`` steps: the sync engine's counters plus the run id,
the shard count and the manifest's totals. Plain data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mirror.report import RunReport


@dataclass(slots=True)
class ShardReport(RunReport):
    """A ``RunReport`` with the facts of one sharded run."""

    run_id: str | None = None
    shards: int | None = None
    #: the shards this process copied (copy)
    shard_indexes: list[int] = field(default_factory=list)
    manifest_targets: int = 0
    manifest_bytes: int = 0
    manifest_sha256: str | None = None

    def summary_line(self) -> str:
        """One line per step."""
        if self.error is not None:
            # Not super(): a slotted dataclass is a new class without the __class__ cell.
            return RunReport.summary_line(self)
        if self.command == "shard-plan":
            return (
                f"tuf-mirror shard plan: run {self.run_id}: {self.manifest_targets} targets "
                f"({self.manifest_bytes} bytes) in {self.shards} shards; "
                f"{self.requests} requests in {self.seconds:.1f}s"
            )
        if self.command == "shard-copy":
            which = (
                f"shard {self.shard_indexes[0]}"
                if len(self.shard_indexes) == 1
                else f"{len(self.shard_indexes)} shards"
            )
            return (
                f"tuf-mirror shard copy: run {self.run_id}, {which} of {self.shards}: "
                f"copied {self.targets_fetched} targets ({self.target_bytes} bytes), "
                f"{self.targets_already_present} already present; {self.requests} requests, "
                f"{self.bytes_received} bytes in {self.seconds:.1f}s"
            )
        return RunReport.summary_line(self).replace(
            f"tuf-mirror {self.command}:", f"tuf-mirror shard publish: run {self.run_id}:", 1
        )

    def to_dict(self) -> dict[str, Any]:
        """``shard plan --json`` prints what the next steps need; others the full report."""
        if self.command == "shard-plan" and self.error is None:
            return {
                "run_id": self.run_id,
                "shards": self.shards,
                "targets": self.manifest_targets,
                "bytes": self.manifest_bytes,
            }
        return RunReport.to_dict(self)


__all__ = ["ShardReport"]
