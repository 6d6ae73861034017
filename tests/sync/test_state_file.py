"""``.tuf-mirror/state.json`` as a value (``mirror.published.MirrorState``): the same
bytes as every earlier version wrote, and unreadable files are no state."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mirror.layout import STATE_KEY, meta_key, target_key
from mirror.published import MirrorState

#: a state file as the engine wrote it before ``MirrorState`` existed:
#: ``json.dumps(state, sort_keys=True)``, with prune's ``history`` added
WRITTEN: dict[str, Any] = {
    "snapshot_version": 7,
    "versions": {"targets": 3, "bins-0": 2, "bins-1": 5},
    "leaves": ["bins-0", "bins-1"],
    "timestamp_etag": '"abc"',
    "timestamp_sha256": "00" * 32,
    "filter": "include:*",
    "expires": {"root": "2030-01-01T00:00:00+00:00"},
    "history": [{"state": 7, "snapshot": 7, "root": 1, "published": "2026-01-01T00:00:00Z"}],
}


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(WRITTEN, id="full"),
        pytest.param({**WRITTEN, "timestamp_etag": None}, id="no-etag"),
        pytest.param({k: v for k, v in WRITTEN.items() if k != "history"}, id="no-history"),
        pytest.param({**WRITTEN, "leaves": []}, id="no-leaves"),
    ],
)
def test_round_trip_is_byte_identical(document: dict[str, Any]) -> None:
    """A state file this engine writes parses and serialises back to the same bytes,
    keys it does not interpret (prune's ``history``) included."""
    raw = json.dumps(document, sort_keys=True).encode()
    state = MirrorState.parse(raw)
    assert state is not None
    assert state.to_bytes() == raw


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"[]", id="a-list"),
        pytest.param(b'{"versions": {}, "leaves": []}', id="no-snapshot-version"),
        pytest.param(b'{"snapshot_version": 1, "leaves": []}', id="no-versions"),
        pytest.param(
            b'{"snapshot_version": 1, "versions": {"a": "x"}, "leaves": []}', id="bad-version"
        ),
        pytest.param(
            b'{"snapshot_version": 1, "versions": {}, "leaves": [], "expires": 3}', id="bad-expires"
        ),
    ],
)
def test_unreadable_files_are_no_state(raw: bytes) -> None:
    """A state file that is not a readable document parses to None (the run then
    walks without hints), never to a half-filled value."""
    assert MirrorState.parse(raw) is None


def test_fields_are_typed() -> None:
    """The parsed value holds the hints with their types: versions as ints, leaves
    in their recorded order, and the validators as strings."""
    state = MirrorState.parse(json.dumps(WRITTEN, sort_keys=True).encode())
    assert state is not None
    assert state.snapshot_version == 7
    assert dict(state.versions) == {"targets": 3, "bins-0": 2, "bins-1": 5}
    assert state.leaves == ("bins-0", "bins-1")
    assert (state.timestamp_etag, state.filter) == ('"abc"', "include:*")
    assert dict(state.extra) == {"history": WRITTEN["history"]}


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        pytest.param(meta_key("timestamp.json"), "metadata/timestamp.json", id="meta"),
        pytest.param(meta_key("3.bins%2F0.json"), "metadata/3.bins%2F0.json", id="meta-encoded"),
        pytest.param(target_key("a/1234.b.txt"), "targets/a/1234.b.txt", id="target"),
        pytest.param(STATE_KEY, ".tuf-mirror/state.json", id="state"),
    ],
)
def test_layout_names(key: str, expected: str) -> None:
    """The destination's key names are the published layout's (README, DESIGN)."""
    assert key == expected
