"""The ledger's entries and index records (pure: no I/O).

An entry is one JSON object, serialized canonically (sorted keys, no spaces): that
exact byte string is the Merkle leaf. Two kinds:

- ``meta``: a metadata file the mirror published: ``name`` (file name), ``role``,
  ``version``, ``length``, ``sha256`` of the exact bytes, ``time``;
- ``target``: a target the mirror published: ``path``, ``length``, ``hashes``, and
  where it was first seen: ``role``, ``role_version``, ``snapshot_version``,
  ``timestamp_version``, ``time``.

Each entry has an index key: the target path, or ``meta:<role>@<version>`` for
metadata (``meta:timestamp@7`` for the unversioned ``timestamp.json``). The index
shards records by a hash of the key so a lookup reads one small shard.

What it does not do: store entries or decide alarms.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "INDEX_SHARDS_HEX",
    "Entry",
    "IndexRecord",
    "meta_entry",
    "meta_key",
    "parse_entry",
    "shard_of",
    "target_entry",
]

#: the index shard of a key is this many hex digits of sha256(key)
INDEX_SHARDS_HEX = 2


def canonical(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def meta_key(role: str, version: int) -> str:
    """The index key of a metadata version."""
    return f"meta:{role}@{version}"


def shard_of(key: str) -> str:
    """The index shard (hex prefix of sha256) that holds ``key``."""
    return hashlib.sha256(key.encode()).hexdigest()[:INDEX_SHARDS_HEX]


@dataclass(frozen=True, slots=True)
class Entry:
    """One ledger entry: its canonical bytes and what they say."""

    data: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.data["kind"])

    @property
    def key(self) -> str:
        if self.kind == "meta":
            return meta_key(str(self.data["role"]), int(self.data["version"]))
        return str(self.data["path"])

    @property
    def length(self) -> int:
        return int(self.data["length"])

    @property
    def hashes(self) -> dict[str, str]:
        if self.kind == "meta":
            return {"sha256": str(self.data["sha256"])}
        return {str(k): str(v) for k, v in dict(self.data["hashes"]).items()}

    def to_bytes(self) -> bytes:
        return canonical(self.data)

    def same_content(self, other: Entry) -> bool:
        """Same length and hashes (for common algorithms: every shared one agrees)."""
        if self.length != other.length:
            return False
        mine, theirs = self.hashes, other.hashes
        shared = set(mine) & set(theirs)
        if not shared:
            return mine == theirs
        return all(mine[name] == theirs[name] for name in shared)


def meta_entry(*, name: str, role: str, version: int, data: bytes, time: str) -> Entry:
    """The entry of a published metadata file (exact bytes)."""
    return Entry(
        {
            "kind": "meta",
            "name": name,
            "role": role,
            "version": version,
            "length": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "time": time,
        }
    )


def target_entry(
    *,
    path: str,
    length: int,
    hashes: Mapping[str, str],
    role: str,
    role_version: int,
    snapshot_version: int | None,
    timestamp_version: int | None,
    time: str,
) -> Entry:
    """The entry of a published target, with where it was first seen."""
    return Entry(
        {
            "kind": "target",
            "path": path,
            "length": length,
            "hashes": dict(sorted(hashes.items())),
            "role": role,
            "role_version": role_version,
            "snapshot_version": snapshot_version,
            "timestamp_version": timestamp_version,
            "time": time,
        }
    )


def parse_entry(raw: bytes) -> Entry:
    """Parse an entry's bytes; ``ValueError`` when they are not a ledger entry."""
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"not a ledger entry: {exc}") from exc
    if not isinstance(data, dict) or data.get("kind") not in ("meta", "target"):
        raise ValueError("not a ledger entry")
    entry = Entry(data)
    try:
        _ = entry.key, entry.length, entry.hashes
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"incomplete ledger entry: {exc}") from exc
    return entry


@dataclass(frozen=True, slots=True)
class IndexRecord:
    """One index line: a key, the leaf index of its entry, and the entry."""

    key: str
    leaf: int
    entry: Entry

    def to_line(self) -> bytes:
        return canonical({"key": self.key, "leaf": self.leaf, "entry": self.entry.data}) + b"\n"

    @classmethod
    def from_line(cls, line: bytes) -> IndexRecord:
        data = json.loads(line)
        return cls(str(data["key"]), int(data["leaf"]), Entry(dict(data["entry"])))
