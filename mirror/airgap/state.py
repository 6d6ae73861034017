"""Naming a mirror's published state across the air gap, and the receipt format.

A ``StateRef`` identifies one published state: the root version and the exact
``timestamp.json`` (version and sha256), with the snapshot and targets it pins. A
bundle's manifest names the state it applies to (``base``) and the one it brings;
an import compares ``base`` with the destination's re-verified state.

A ``StateRecord`` is a ``StateRef`` plus the bytes of that ``timestamp.json``: what an
exporter needs to rebuild the far side's state (the timestamp is the one file a
repository does not keep old versions of). It is the content of a *receipt*, the
small JSON file an import writes and the operator carries back for ``export
--since``; the exporter keeps the same record of its own last export.

Nothing here is trusted: a receipt's timestamp is re-verified from the pinned root
by the exporter, and a manifest's claims are checked against verified metadata.
This module parses and writes JSON; it does no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from mirror.errors import UsageError

RECEIPT_FORMAT = "tuf-mirror-receipt"
RECEIPT_VERSION = 1
_SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def format_time(moment: datetime) -> str:
    """``2024-05-01T12:00:00Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True, kw_only=True)
class StateRef:
    """One published state of a mirror (all fields derive from verified metadata)."""

    root_version: int
    timestamp_version: int
    timestamp_sha256: str
    snapshot_version: int
    snapshot_sha256: str
    targets_version: int | None = None

    def describe(self) -> str:
        """``timestamp v3 (sha256 1a2b3c4d…), snapshot v3, root v1``."""
        return (
            f"timestamp v{self.timestamp_version} (sha256 {self.timestamp_sha256[:12]}…), "
            f"snapshot v{self.snapshot_version}, root v{self.root_version}"
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any, what: str) -> StateRef:
        """Parse; ``ValueError`` naming ``what`` for anything malformed."""
        if not isinstance(data, dict):
            raise ValueError(f"{what}: expected an object")
        try:
            targets = data.get("targets_version")
            return cls(
                root_version=_int(data["root_version"]),
                timestamp_version=_int(data["timestamp_version"]),
                timestamp_sha256=_hex(data["timestamp_sha256"]),
                snapshot_version=_int(data["snapshot_version"]),
                snapshot_sha256=_hex(data["snapshot_sha256"]),
                targets_version=None if targets is None else _int(targets),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{what}: {exc}") from exc


def describe(state: StateRef | None) -> str:
    """A state for messages; ``None`` is the empty (never synced) mirror."""
    return "an empty mirror" if state is None else state.describe()


@dataclass(frozen=True, slots=True, kw_only=True)
class StateRecord:
    """A state together with its ``timestamp.json`` bytes (a receipt's content)."""

    state: StateRef
    timestamp: bytes
    #: role -> expiry, for people (root, timestamp, snapshot, targets)
    expires: dict[str, str] = field(default_factory=dict)
    created: str = ""
    tool: str = ""
    destination: str = ""
    bundle_id: str | None = None
    reference_time: str | None = None

    def to_bytes(self) -> bytes:
        """The receipt file."""
        document = {
            "format": RECEIPT_FORMAT,
            "format_version": RECEIPT_VERSION,
            "created": self.created,
            "tool": self.tool,
            "destination": self.destination,
            "bundle_id": self.bundle_id,
            "state": self.state.to_json(),
            "expires": self.expires,
            "reference_time": self.reference_time,
            "timestamp_json_base64": base64.b64encode(self.timestamp).decode(),
        }
        return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, raw: bytes, what: str) -> StateRecord:
        """Parse a receipt; ``UsageError`` naming ``what`` when it is not one."""
        try:
            document = json.loads(raw)
            if not isinstance(document, dict) or document.get("format") != RECEIPT_FORMAT:
                raise ValueError("not a tuf-mirror receipt")
            version = document.get("format_version")
            if version != RECEIPT_VERSION:
                raise ValueError(
                    f"receipt format version {version!r}; this tuf-mirror reads {RECEIPT_VERSION}"
                )
            state = StateRef.from_json(document["state"], "state")
            timestamp = base64.b64decode(document["timestamp_json_base64"], validate=True)
            expires = document.get("expires") or {}
            bundle_id = document.get("bundle_id")
            reference_time = document.get("reference_time")
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise UsageError(f"{what} is not a usable receipt: {exc}") from exc
        if sha256_hex(timestamp) != state.timestamp_sha256:
            raise UsageError(f"{what} is damaged: its timestamp does not match its sha256")
        return cls(
            state=state,
            timestamp=timestamp,
            expires={str(k): str(v) for k, v in dict(expires).items()},
            created=str(document.get("created", "")),
            tool=str(document.get("tool", "")),
            destination=str(document.get("destination", "")),
            bundle_id=None if bundle_id is None else str(bundle_id),
            reference_time=None if reference_time is None else str(reference_time),
        )


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"not a version number: {value!r}")
    return value


def _hex(value: Any) -> str:
    if not isinstance(value, str) or not _SHA256_RE.fullmatch(value):
        raise ValueError(f"not a sha256: {value!r}")
    return value.lower()


__all__ = [
    "RECEIPT_FORMAT",
    "RECEIPT_VERSION",
    "StateRecord",
    "StateRef",
    "describe",
    "format_time",
    "sha256_hex",
]
