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

The hot path of a run (one entry per target) builds an entry's canonical bytes
without the dict (``target_entry_bytes``), an index line by concatenation
(``index_line``) and reads a shard's keys and leaf indices by scanning its lines
(``scan_index_line``): each is byte-for-byte what the JSON encoder gives, which the
tests pin down.

What it does not do: store entries or decide alarms.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from typing import Any, Final

__all__ = [
    "INDEX_SHARDS_HEX",
    "Entry",
    "IndexRecord",
    "index_line",
    "json_string",
    "meta_entry",
    "meta_key",
    "parse_entry",
    "scan_index_line",
    "shard_of",
    "shard_of_json",
    "target_entry",
    "target_entry_bytes",
]

#: the index shard of a key is this many hex digits of sha256(key)
INDEX_SHARDS_HEX = 2
_SHARD_BYTES: Final = (INDEX_SHARDS_HEX + 1) // 2


#: one encoder for every entry (``json.dumps`` with options builds one per call)
_ENCODER: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def canonical(data: Mapping[str, Any]) -> bytes:
    return _ENCODER.encode(data).encode()


def json_string(text: str) -> bytes:
    """``text`` as a canonical JSON string (quoted, non-ASCII escaped)."""
    return encode_basestring_ascii(text).encode()


def meta_key(role: str, version: int) -> str:
    """The index key of a metadata version."""
    return f"meta:{role}@{version}"


def shard_of(key: str) -> str:
    """The index shard (hex prefix of sha256) that holds ``key``."""
    return hashlib.sha256(key.encode()).digest()[:_SHARD_BYTES].hex()[:INDEX_SHARDS_HEX]


def _key_of_json(key_json: bytes) -> str:
    if b"\\" in key_json:
        return str(json.loads(key_json))
    return key_json[1:-1].decode("ascii")  # canonical: nothing to unescape


def shard_of_json(key_json: bytes) -> str:
    """``shard_of`` for a key given as ``json_string(key)``."""
    return shard_of(_key_of_json(key_json))


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


def _plain_int(value: object) -> bool:
    return type(value) is int


def target_entry_bytes(
    *,
    path: str,
    length: int,
    hashes: Mapping[str, str],
    role: str,
    role_version: int,
    snapshot_version: int | None,
    timestamp_version: int | None,
    time: str,
) -> bytes:
    """``target_entry(...).to_bytes()``, assembled field by field (the keys in their
    sorted order) instead of through a dict and the JSON encoder: the per-target
    cost of a run. Values of other types than the usual ones take the encoder."""
    esc = encode_basestring_ascii
    digests = []
    plain = (
        type(path) is str
        and type(role) is str
        and type(time) is str
        and _plain_int(length)
        and _plain_int(role_version)
        and (snapshot_version is None or _plain_int(snapshot_version))
        and (timestamp_version is None or _plain_int(timestamp_version))
    )
    if plain:
        for name in sorted(hashes):
            value = hashes[name]
            if type(name) is not str or type(value) is not str:
                plain = False
                break
            digests.append(f"{esc(name)}:{esc(value)}")
    if not plain:
        return target_entry(
            path=path,
            length=length,
            hashes=hashes,
            role=role,
            role_version=role_version,
            snapshot_version=snapshot_version,
            timestamp_version=timestamp_version,
            time=time,
        ).to_bytes()
    snapshot = "null" if snapshot_version is None else str(snapshot_version)
    timestamp = "null" if timestamp_version is None else str(timestamp_version)
    return (
        f'{{"hashes":{{{",".join(digests)}}},"kind":"target","length":{length},"path":{esc(path)},'
        f'"role":{esc(role)},"role_version":{role_version},"snapshot_version":{snapshot},'
        f'"time":{esc(time)},"timestamp_version":{timestamp}}}'
    ).encode()


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


_ENTRY_FIELD: Final = b'{"entry":'
_KEY_FIELD: Final = b',"key":'
_LEAF_FIELD: Final = b',"leaf":'


def index_line(raw: bytes, key_json: bytes, leaf: int) -> bytes:
    """``IndexRecord(key, leaf, entry).to_line()`` from the entry's canonical bytes
    and ``json_string(key)`` (the canonical record's keys sort as entry, key, leaf)."""
    return b"".join((_ENTRY_FIELD, raw, _KEY_FIELD, key_json, _LEAF_FIELD, b"%d}\n" % leaf))


def scan_index_line(line: bytes) -> tuple[str, int] | None:
    """The key and leaf index of a canonical index line (no newline) without parsing
    its entry, or None when the line does not have the canonical shape (the caller
    parses it). The last ``,"key":`` is the record's own: a JSON string holds no
    unescaped quote, and only the key string and the leaf index follow it."""
    if not (line.startswith(_ENTRY_FIELD) and line.endswith(b"}")):
        return None
    key_at = line.rfind(_KEY_FIELD)
    leaf_at = line.rfind(_LEAF_FIELD)
    if key_at < 0 or leaf_at < key_at:
        return None
    digits = line[leaf_at + len(_LEAF_FIELD) : -1]
    key_json = line[key_at + len(_KEY_FIELD) : leaf_at]
    quoted = len(key_json) >= 2 and key_json[:1] == key_json[-1:] == b'"'
    if not (digits.isdigit() and quoted):
        return None
    try:
        return _key_of_json(key_json), int(digits)
    except (ValueError, UnicodeDecodeError):
        return None
