"""Copy scheduling (``mirror.copying``): when worker processes copy targets, and
what the run counts from copy results."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mirror.config import Settings
from mirror.copier import CopyResult, Outcome
from mirror.copying import (
    AUTO_PROCESSES_MIN_CHANGED_ROLES,
    AUTO_PROCESSES_MIN_ROLES,
    Tally,
    processes_for,
)
from mirror.report import RunReport


def _snapshot(versions: dict[str, int]) -> Any:
    """The part of a verified snapshot ``processes_for`` reads: its meta."""
    meta = {f"{role}.json": SimpleNamespace(version=v) for role, v in versions.items()}
    return SimpleNamespace(signed=SimpleNamespace(meta=meta))


def _roles(count: int, version: int = 1) -> dict[str, int]:
    return {f"bins-{index}": version for index in range(count)}


@pytest.mark.parametrize(
    ("options", "local_only", "new", "old", "expected"),
    # new and old: the snapshot's roles after and before (None: a first sync)
    [
        pytest.param({}, True, _roles(1000), None, 0, id="local-only"),
        pytest.param({"processes": 3}, True, _roles(1000), None, 0, id="local-only-wins"),
        pytest.param({"processes": 3}, False, _roles(1), None, 3, id="explicit"),
        pytest.param({"processes": 0}, False, _roles(1000), None, 0, id="explicit-none"),
        pytest.param(
            {"processes": 3, "max_transfer": 10}, False, _roles(1000), None, 0, id="budget"
        ),
        pytest.param({}, False, _roles(AUTO_PROCESSES_MIN_ROLES - 1), None, 0, id="small-first"),
        pytest.param(
            {},
            False,
            _roles(AUTO_PROCESSES_MIN_CHANGED_ROLES),
            _roles(AUTO_PROCESSES_MIN_CHANGED_ROLES),
            0,
            id="nothing-changed",
        ),
    ],
)
def test_processes_for(
    tmp_path: Path,
    options: dict[str, Any],
    local_only: bool,
    new: dict[str, int],
    *,
    old: dict[str, int] | None,
    expected: int,
) -> None:
    """Worker processes copy only when this process is not the only one that can
    (not a dry run nor an export), no budget is counted here, and either the
    operator asked for them or the snapshot (first sync) or its diff (incremental)
    names enough roles."""
    settings = Settings(
        command="sync", root=tmp_path / "root.json", dest="memory://", upstream=("u",), **options
    )
    trusted: Any = SimpleNamespace(snapshot=_snapshot(new))
    published: Any = SimpleNamespace(snapshot=None if old is None else _snapshot(old))
    got = processes_for(settings, local_only=local_only, trusted=trusted, published=published)
    assert got == expected


@pytest.mark.parametrize(
    ("first_sync", "roles"),
    [
        pytest.param(True, AUTO_PROCESSES_MIN_ROLES, id="large-first-sync"),
        pytest.param(False, AUTO_PROCESSES_MIN_CHANGED_ROLES, id="many-changed-roles"),
    ],
)
def test_processes_for_large_runs(tmp_path: Path, first_sync: bool, roles: int) -> None:
    """A large first sync, or an incremental one that changes very many roles, gets
    between one and four worker processes."""
    settings = Settings(
        command="sync", root=tmp_path / "root.json", dest="memory://", upstream=("u",)
    )
    trusted: Any = SimpleNamespace(snapshot=_snapshot(_roles(roles, version=2)))
    published: Any = SimpleNamespace(snapshot=None if first_sync else _snapshot(_roles(roles)))
    assert 1 <= processes_for(settings, local_only=False, trusted=trusted, published=published) <= 4


@pytest.mark.parametrize(
    ("outcome", "written", "counters"),
    [
        pytest.param(Outcome.COPIED, 1, {"targets_fetched": 1, "target_bytes": 10}, id="copied"),
        pytest.param(
            Outcome.PRESENT, 0, {"targets_already_present": 1, "present_bytes": 10}, id="present"
        ),
        pytest.param(Outcome.DEFERRED, 0, {"targets_deferred": 1}, id="deferred"),
        pytest.param(Outcome.PLANNED, 0, {}, id="planned"),
    ],
)
def test_tally(outcome: Outcome, written: int, counters: dict[str, int]) -> None:
    """Only a target this run wrote counts as written (the flush before publishing
    depends on it); every outcome lands in its report counters."""
    report = RunReport(command="sync")
    tally = Tally(report)
    tally.count(CopyResult(outcome, 10))
    assert tally.written == written
    for name, value in counters.items():
        assert getattr(report, name) == value
    assert report.targets_fetched == written
