"""Replay of real repositories' served states (committed fixtures, see data/README.md):
each state is served on 127.0.0.1 and synced incrementally into one destination with
``--reference-time`` at the state's own time; the destination must hold exactly the
upstream's bytes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from mirror.cli import main
from mirror.errors import ExitStatus
from tuf_mirror_testing.replay import Replayed, State, check, published_tree
from tuf_mirror_testing.server import RepoServer, serve_directory

DATA = Path(__file__).parent / "data"


@dataclass(frozen=True, slots=True)
class Fixture:
    states: list[State]
    reset: State | None


def load(name: str) -> Fixture:
    states: list[State] = []
    reset: State | None = None
    for entry in json.loads((DATA / name / "states.json").read_text()):
        state = State.read(
            DATA / name / entry["dir"],
            name=entry["commit"],
            time=datetime.fromisoformat(entry["time"]),
            metadata_prefix=entry["metadata_prefix"],
        )
        if entry["reset"]:
            reset = state
        else:
            states.append(state)
    return Fixture(states, reset)


@dataclass
class Replay:
    """One upstream URL serving state after state, one destination."""

    server: RepoServer
    served: Path
    dest: Path
    root: Path
    replayed: Replayed
    report: Path

    def sync(self, state: State) -> tuple[int, dict[str, Any]]:
        state.write(self.served)
        self.replayed.serve(state)
        self.server.wait_idle()
        self.server.clear_log()
        url = self.server.url
        metadata = url + (f"/{state.metadata_prefix}/" if state.metadata_prefix else "/")
        status = main(
            [
                "sync",
                "--root", str(self.root),
                "--upstream", url,
                "--metadata-url", metadata,
                "--targets-url", url + "/targets/",
                "--dest", str(self.dest),
                "--reference-time", state.time.isoformat(),
                "--report", str(self.report),
                "--retries", "1",
            ]
        )  # fmt: skip
        self.server.wait_idle()
        return status, json.loads(self.report.read_text())


@pytest.fixture
def replay(tmp_path: Path) -> Any:
    served = tmp_path / "served"
    served.mkdir()
    with serve_directory(served) as server:
        yield Replay(
            server,
            served,
            tmp_path / "dest",
            tmp_path / "root.json",
            Replayed(),
            tmp_path / "report.json",
        )


def _pinned(state: State, version: int) -> bytes:
    return state.files[state.meta(f"{version}.root.json")]


def test_sigstore_states_mirror_byte_identical_across_the_move_to_tuf_on_ci(
    replay: Replay,
) -> None:
    """sigstore/root-signing pinned at root v5: two states of its published directory
    (root rotations 5 -> 8 -> 9 with the key type change from
    ``ecdsa-sha2-nistp256`` to ``ecdsa``), then two tuf-on-ci states (roots up to
    v15), each synced incrementally at its own time. Every run exits 0; the
    destination holds only bytes the upstream served and everything a client
    needs; roots 1-4 (hex-encoded keys: not shown authentic) are skipped and
    counted; the snapshot's undelegated roles are counted and never requested; the
    re-serialized 9.root.json keeps the bytes verified first."""
    fixture = load("sigstore")
    replay.root.write_bytes(_pinned(fixture.states[0], 5))
    first_nine: bytes | None = None
    for number, state in enumerate(fixture.states):
        status, report = replay.sync(state)
        problems, notes = check(state, replay.dest, replay.replayed, pinned=5)
        assert status == ExitStatus.OK, report["error"]
        assert problems == [], problems
        assert set(report["unreachable_roles"]) == {"rekor", "revocation", "root", "staging"}
        roles = ("rekor", "revocation", "staging")
        requested = [p for p in replay.server.paths() if not p.startswith("/targets/")]
        assert not [path for path in requested if any(f".{role}.json" in path for role in roles)]
        # the snapshot lists a role "root" at version 2: never fetched as 2.root.json
        assert "/2.root.json" not in requested
        if number == 0:
            assert report["root_history_skipped"] == 4
            assert sum("before the pin" in note for note in notes) == 4
        nine = (replay.dest / "metadata" / "9.root.json").read_bytes() if number else None
        if number == 1:
            first_nine = nine
            assert nine == state.files["9.root.json"]
        if number >= 2:
            assert state.files["9.root.json"] != first_nine, "fixture: 9.root.json re-serialized"
            assert nine == first_nine
            assert "metadata/9.root.json: re-serialized upstream" in " ".join(notes)
    assert report["versions_after"]["root"] == 15


def test_tuf_demo_states_mirror_and_the_upstream_reset_is_refused(replay: Replay) -> None:
    """jku/tuf-demo pinned at its first root: two states of its GitHub Pages tree
    (succinct hash bins, ed25519 and ecdsa keys, ``demotest`` listed but delegated
    by nobody and not served) mirror byte-identical; then the upstream is wiped and
    re-created with new keys while the old root v8 is still valid: exit 1, named
    timestamp.json, destination unchanged."""
    fixture = load("tuf-demo")
    replay.root.write_bytes(_pinned(fixture.states[0], 1))
    for state in fixture.states:
        status, report = replay.sync(state)
        problems, _ = check(state, replay.dest, replay.replayed)
        assert status == ExitStatus.OK, report["error"]
        assert problems == [], problems
        assert report["unreachable_roles"] == ["demotest"]
        assert not [path for path in replay.server.paths() if "demotest" in path]
    assert report["versions_after"]["root"] == 8
    before = published_tree(replay.dest)
    state_before = (replay.dest / ".tuf-mirror" / "state.json").read_bytes()
    assert fixture.reset is not None
    status, report = replay.sync(fixture.reset)
    assert status == ExitStatus.VERIFICATION_FAILED
    assert "SignatureError" in report["error"]
    assert "/metadata/timestamp.json" in report["error"]
    assert published_tree(replay.dest) == before
    assert (replay.dest / ".tuf-mirror" / "state.json").read_bytes() == state_before


def test_re_created_tuf_demo_mirrors_in_tuf_on_ci_layout(replay: Replay) -> None:
    """The re-created jku/tuf-demo in tuf-on-ci's published layout (metadata under
    metadata/, targets as targets/<dir>/<sha256>.<name>), pinned at its new root v1:
    its first state and one two years later (new delegated roles, root v5) mirror
    byte-identical, the destination keeping versions the re-deployed site dropped."""
    fixture = load("tuf-demo-reset")
    replay.root.write_bytes(_pinned(fixture.states[0], 1))
    for state in fixture.states:
        status, report = replay.sync(state)
        problems, _ = check(state, replay.dest, replay.replayed)
        assert status == ExitStatus.OK, report["error"]
        assert problems == [], problems
        assert report["unreachable_roles"] == []
    assert not (replay.dest / "metadata" / "root.json").exists(), "not served upstream"
    assert report["versions_after"]["root"] == 5
