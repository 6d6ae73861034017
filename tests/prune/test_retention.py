"""The pure parts of prune: which states are retained, the published-state history
kept in ``state.json`` (bounded, backward compatible), and what is never deleted."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio

from mirror.layout import STATE_KEY
from mirror.prune import (
    HISTORY_MAX,
    Mark,
    MarkSet,
    PublishedState,
    Retention,
    history_of,
    is_protected,
    record_publish,
    select_retained,
    timestamp_copy_key,
)
from mirror.storage.base import PutOptions
from mirror.storage.memory import MemoryStore

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def _states(*ages_minutes: int) -> list[tuple[int, datetime]]:
    """States 1..n, published ``ages_minutes`` ago (oldest first)."""
    return [(i + 1, NOW - timedelta(minutes=m)) for i, m in enumerate(ages_minutes)]


def test_keep_one_and_no_duration_retains_only_the_current_state() -> None:
    """--keep-states 1 --keep-for 0: the current state alone."""
    kept = select_retained(
        _states(300, 200, 100, 1), current=4, retention=Retention(1, timedelta(0)), now=NOW
    )
    assert kept == {4}


def test_keep_states_counts_the_current_state_and_the_newest_before_it() -> None:
    """--keep-states 3 keeps the current state and the two newest earlier ones."""
    kept = select_retained(
        _states(300, 200, 100, 1), current=4, retention=Retention(3, timedelta(0)), now=NOW
    )
    assert kept == {2, 3, 4}


def test_keep_for_adds_every_state_published_within_the_window() -> None:
    """States published less than keep_for ago are kept whatever keep_states says;
    a state exactly keep_for old is not."""
    kept = select_retained(
        _states(300, 90, 59, 1),
        current=4,
        retention=Retention(1, timedelta(minutes=90)),
        now=NOW,
    )
    assert kept == {3, 4}


def test_the_current_state_is_kept_even_when_unrecorded_and_newer_records_too() -> None:
    """The current state is retained without a record; a recorded state newer than
    the current one (a record ahead of the published timestamp) is kept to be safe."""
    kept = select_retained(
        _states(300, 200, 100), current=2, retention=Retention(1, timedelta(0)), now=NOW
    )
    assert kept == {2, 3}
    assert select_retained([], current=7, retention=Retention(), now=NOW) == {7}


def test_defaults_keep_a_client_mid_update_safe_and_smaller_values_are_flagged() -> None:
    """The defaults keep the previous state and an hour; anything less is risky."""
    assert Retention() == Retention(2, timedelta(hours=1))
    assert not Retention().risky
    assert Retention(1, timedelta(hours=2)).risky
    assert Retention(5, timedelta(minutes=10)).risky
    with pytest.raises(ValueError, match="at least 1"):
        Retention(0, timedelta(0))


def test_an_old_state_file_without_history_knows_no_earlier_state() -> None:
    """Backward compatibility: no ``history`` key (or garbage in it) is no history."""
    assert history_of({"snapshot_version": 3, "versions": {}}) == []
    assert history_of(None) == []
    assert history_of({"history": "nonsense"}) == []
    entry = {"timestamp": 4, "snapshot": 3, "root": 1, "published": "2026-05-01T10:00:00"}
    parsed = history_of({"history": [entry, {"timestamp": "x"}]})
    assert parsed == [PublishedState(4, datetime(2026, 5, 1, 10, tzinfo=UTC), 3, 1)]


async def test_record_publish_appends_keeps_a_timestamp_copy_and_stays_bounded() -> None:
    """Each publish adds (timestamp, snapshot, root, time) and a copy of
    timestamp.json; the history keeps the newest HISTORY_MAX entries and the copies
    of dropped ones are deleted; a state recorded twice keeps its first time."""
    store = MemoryStore()
    old = [
        PublishedState(v, NOW - timedelta(hours=HISTORY_MAX - v), v, 1).to_json()
        for v in range(1, HISTORY_MAX + 1)
    ]
    await store.put_bytes(STATE_KEY, json.dumps({"history": old}).encode(), PutOptions())
    for version in (1, 2):
        await store.put_bytes(timestamp_copy_key(version), b"old", PutOptions())

    state: dict[str, object] = {"snapshot_version": HISTORY_MAX + 1}
    await record_publish(
        store,
        state,
        timestamp=b"timestamp bytes",
        timestamp_version=HISTORY_MAX + 1,
        snapshot_version=HISTORY_MAX + 1,
        root_version=2,
        published_at=NOW,
    )

    history = history_of(state)
    assert len(history) == HISTORY_MAX
    assert history[0].state_id == 2
    assert history[-1] == PublishedState(HISTORY_MAX + 1, NOW, HISTORY_MAX + 1, 2)
    assert await store.get(timestamp_copy_key(HISTORY_MAX + 1), max_length=100) == (
        b"timestamp bytes"
    )
    assert await store.head(timestamp_copy_key(1)) is None
    assert await store.head(timestamp_copy_key(2)) is not None

    await store.put_bytes(STATE_KEY, json.dumps(state).encode(), PutOptions())
    again: dict[str, object] = {}
    await record_publish(
        store,
        again,
        timestamp=b"timestamp bytes",
        timestamp_version=HISTORY_MAX + 1,
        snapshot_version=HISTORY_MAX + 1,
        root_version=2,
        published_at=NOW + timedelta(hours=1),
    )
    assert history_of(again)[-1].published_at == NOW


@pytest.mark.parametrize(
    ("key", "protected"),
    [
        ("metadata/1.root.json", True),
        ("metadata/12.root.json", True),
        ("metadata/root.json", True),
        ("metadata/timestamp.json", True),
        ("metadata/3.snapshot.json", False),
        ("metadata/3.targets.json", False),
        ("metadata/2.root%2Fx.json", False),
        ("targets/1.root.json", False),
    ],
)
def test_roots_and_the_timestamp_are_never_swept(key: str, protected: bool) -> None:
    """Every N.root.json, root.json and timestamp.json are protected by name."""
    assert is_protected(key) is protected


async def test_a_key_any_retained_state_needs_stays_retained(tmp_path: Path) -> None:
    """Marks from several states: RETAINED wins whichever state marks first, and
    unknown keys have no mark."""
    marks = MarkSet(tmp_path)
    try:
        await marks.add(["targets/a", "targets/b"], Mark.EXPIRED)
        await marks.add(["targets/b", "targets/c"], Mark.RETAINED)
        await marks.add(["targets/c", "targets/d"], Mark.EXPIRED)
        kinds = await marks.kinds(["targets/a", "targets/b", "targets/c", "targets/d", "x"])
    finally:
        marks.close()
    assert kinds == {
        "targets/a": Mark.EXPIRED,
        "targets/b": Mark.RETAINED,
        "targets/c": Mark.RETAINED,
        "targets/d": Mark.EXPIRED,
    }
    assert list(await trio.Path(tmp_path).iterdir()) == []  # its files are removed


async def test_a_failed_timestamp_copy_costs_the_entry_never_the_sync() -> None:
    """When the timestamp copy cannot be written the state is not recorded (prune
    will treat its files as orphans) and nothing is raised."""
    from mirror.errors import StorageError

    def full_disk(key: str) -> None:
        if key.startswith(".tuf-mirror/timestamps/"):
            raise StorageError(f"{key}: no space left on device")

    store = MemoryStore(before_write=full_disk)
    old = [PublishedState(1, NOW - timedelta(hours=1), 1, 1).to_json()]
    await store.put_bytes(STATE_KEY, json.dumps({"history": old}).encode(), PutOptions())
    state: dict[str, object] = {}

    await record_publish(
        store,
        state,
        timestamp=b"t",
        timestamp_version=2,
        snapshot_version=2,
        root_version=1,
        published_at=NOW,
    )

    assert [entry.state_id for entry in history_of(state)] == [1]
