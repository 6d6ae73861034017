"""The diff base of a changed role (its published version, read back from the
destination): used as decoded, without a python-tuf ``TargetFile`` per entry, and
not used at all, with a warning, when an entry is one python-tuf would refuse."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from typing import Any

import pytest
from tuf.api.metadata import TargetFile, Targets

from mirror.errors import ExitStatus
from tests.sync.conftest import Env, synced_then_one_added, tree
from tuf_mirror_testing.repo import metadata_file_name


def test_incremental_run_builds_no_target_file_for_the_diff_base(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The changed bin's published version is diffed against as decoded: the only
    ``TargetFile`` objects a run builds are those of the roles python-tuf parses
    (verified roles) and the copier's one for the new target, none for the diff
    base; only the new target is fetched."""
    _, _, new_targets = synced_then_one_added(env)
    parsed: list[int] = []
    built: list[str] = []
    from_dict = Targets.from_dict.__func__  # type: ignore[attr-defined]
    init = TargetFile.__init__

    def counting_from_dict(cls: type[Targets], signed: dict[str, Any]) -> Targets:
        parsed.append(len(signed.get("targets") or {}))
        return from_dict(cls, signed)  # type: ignore[no-any-return]

    def counting_init(self: TargetFile, *args: Any, **kwargs: Any) -> None:
        built.append(type(self).__name__)
        init(self, *args, **kwargs)

    monkeypatch.setattr(Targets, "from_dict", classmethod(counting_from_dict))
    monkeypatch.setattr(TargetFile, "__init__", counting_init)
    assert env.run() == ExitStatus.OK
    assert sum(parsed) > 0
    assert len(built) == sum(parsed) + 1
    fetched = [p for p in env.requested() if p.startswith("/targets/")]
    assert fetched == ["/" + name for name in new_targets]
    assert tree(env.dest) == tree(env.upstream)


def _first_entry(change: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def edit(document: dict[str, Any]) -> None:
        change(next(iter(document["signed"]["targets"].values())))

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        pytest.param(
            _first_entry(lambda e: e.update(length=-1)),
            "Length must be >= 0, got -1",
            id="negative-length",
        ),
        pytest.param(
            _first_entry(lambda e: e.update(hashes={})),
            "Hashes must be a non empty dictionary",
            id="empty-hashes",
        ),
        pytest.param(
            _first_entry(lambda e: e.update(hashes={"sha256": 7})),
            "Hashes items must be strings",
            id="hash-not-string",
        ),
        pytest.param(_first_entry(lambda e: e.pop("length")), "'length'", id="no-length"),
    ],
)
def test_refused_entry_in_the_diff_base_costs_only_presence_checks(
    env: Env,
    capsys: pytest.CaptureFixture[str],
    edit: Callable[[dict[str, Any]], None],
    message: str,
) -> None:
    """A published version with an entry python-tuf would refuse (on a mirror whose
    ledger has no record of it) is not diffed against, with python-tuf's message in
    the warning: every target of the new version is checked for presence, only the
    new one is fetched, and the run converges to the upstream's bytes."""
    changed_bin, old_version, new_targets = synced_then_one_added(env)
    old_file = env.dest / "metadata" / metadata_file_name(changed_bin, old_version)
    document = json.loads(old_file.read_bytes())
    edit(document)
    damaged = json.dumps(document).encode()
    old_file.write_bytes(damaged)
    shutil.rmtree(env.dest / ".tuf-mirror" / "ledger")
    capsys.readouterr()
    assert env.run() == ExitStatus.OK
    warnings = [line for line in capsys.readouterr().err.splitlines() if "not diffing" in line]
    assert warnings == [f"tuf-mirror: WARNING: not diffing against {old_file.name}: {message}"]
    fetched = [p for p in env.requested() if p.startswith("/targets/")]
    assert fetched == ["/" + name for name in new_targets]
    upstream = tree(env.upstream)
    upstream[f"metadata/{old_file.name}"] = damaged
    assert tree(env.dest) == upstream
