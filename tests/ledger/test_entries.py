"""The ledger's fast encoders give the bytes of the canonical JSON encoder: an
entry assembled field by field, an index line concatenated from an entry's bytes,
and the key and leaf read from an index line without parsing its entry."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from mirror.ledger.entries import (
    Entry,
    IndexRecord,
    index_line,
    json_string,
    meta_entry,
    scan_index_line,
    shard_of,
    shard_of_json,
    target_entry,
    target_entry_bytes,
)

SHA = "ab" * 32
BASE: dict[str, Any] = {
    "path": "files/bin-0042/file-0001234.bin",
    "length": 1024,
    "hashes": {"sha256": SHA},
    "role": "bin-042",
    "role_version": 3,
    "snapshot_version": 7,
    "timestamp_version": 9,
    "time": "2026-01-01T00:00:00Z",
}


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"path": "files/caf\u00e9/\u00fcber \u2603.txt"},
        {"path": 'a"quote\\back\nslash\ttab\x00nul', "role": 'r"\\'},
        {"snapshot_version": None, "timestamp_version": None},
        {"hashes": {"sha512": "cd" * 64, "blake2b-256": "ef" * 32, "sha256": SHA}},
        {"hashes": {}},
        {"length": 0, "role_version": 0},
        {"length": 2**70},
        {"length": True},  # not a plain int: the encoder's "true"
        {"hashes": {"sha256": 5}},  # not a string: the encoder's 5
        {"role_version": 1.5},
    ],
    ids=[
        "ascii",
        "unicode",
        "escapes",
        "no-versions",
        "hashes-unsorted",
        "no-hashes",
        "zeros",
        "big-length",
        "bool-length",
        "int-hash",
        "float-version",
    ],
)
def test_target_entry_bytes_are_the_canonical_bytes(changes: dict[str, Any]) -> None:
    """target_entry_bytes is byte for byte target_entry(...).to_bytes(), for every
    field value (odd types take the encoder)."""
    fields = {**BASE, **changes}
    assert target_entry_bytes(**fields) == target_entry(**fields).to_bytes()


ENTRIES = [
    target_entry(**BASE),
    target_entry(**{**BASE, "path": 'caf\u00e9 "x"\\y,"key":"z","leaf":1}'}),
    meta_entry(name="3.bin-042.json", role="bin-042", version=3, data=b"{}", time="t"),
]


@pytest.mark.parametrize("entry", ENTRIES, ids=["target", "tricky-key", "meta"])
@pytest.mark.parametrize("leaf", [0, 7, 123456789], ids=["leaf-0", "leaf-7", "leaf-big"])
def test_index_line_is_the_records_line(entry: Entry, leaf: int) -> None:
    """index_line(entry bytes, key as a JSON string, leaf) is the canonical
    IndexRecord line; scan_index_line reads its key and leaf back; the shard of
    the JSON key is the key's shard."""
    line = index_line(entry.to_bytes(), json_string(entry.key), leaf)
    assert line == IndexRecord(entry.key, leaf, entry).to_line()
    assert scan_index_line(line.rstrip(b"\n")) == (entry.key, leaf)
    assert shard_of_json(json_string(entry.key)) == shard_of(entry.key)


@pytest.mark.parametrize(
    "line",
    [
        b'{"key":"a","leaf":1,"entry":{}}',
        b'{"entry": {}, "key": "a", "leaf": 1}',
        b'{"entry":{},"key":"a","leaf":-1}',
        b'{"entry":{},"key":"caf\xc3\xa9","leaf":1}',
        b'{"entry":{},"leaf":1}',
        b"not json",
    ],
    ids=["key-first", "spaces", "negative-leaf", "raw-utf8", "no-key", "garbage"],
)
def test_scan_refuses_lines_that_are_not_canonical(line: bytes) -> None:
    """A line without the canonical shape is not scanned (the caller parses it, and
    a line that does not parse is a corrupt ledger)."""
    assert scan_index_line(line) is None


@pytest.mark.parametrize(
    "key",
    ["files/a.txt", "meta:root@1", "caf\u00e9/\u2603", 'q"\\'],
    ids=["path", "meta", "unicode", "escapes"],
)
def test_shard_is_the_hex_prefix_of_the_keys_sha256(key: str) -> None:
    """The index shard of a key is the first two hex digits of sha256(key): where
    the existing ledgers keep its records."""
    expected = hashlib.sha256(key.encode()).hexdigest()[:2]
    assert shard_of(key) == expected
    assert shard_of_json(json_string(key)) == expected
