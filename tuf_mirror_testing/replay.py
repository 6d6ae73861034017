"""Replaying served states of a real repository through the mirror, and judging
the destination after each one (the replay test and ``scripts/replay``).

A ``State`` is what a repository's web site served at one moment: relative path ->
bytes, with metadata under ``metadata_prefix`` ("" for sigstore, which serves its
metadata at the site root) and targets under ``targets/``. ``check`` compares a
destination with the state just synced and every state before it:

* every published file holds bytes the upstream served under that name, now or
  earlier (a re-deployed site drops old versions a mirror keeps; an upstream that
  re-serialized an old versioned file gets a note, and the mirror keeps the bytes
  it verified: invariant 9);
* every file a client of this state fetches is published; root versions before the
  pin only when they could be shown authentic (their absence is a note).

What this module does not do: read git histories (``scripts/replay.py``), run the
mirror, or serve anything.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["Replayed", "State", "check", "client_keys", "published_tree", "served_keys", "trim"]


@dataclass(frozen=True, slots=True)
class State:
    """One served state of an upstream."""

    name: str
    time: datetime
    files: dict[str, bytes]
    metadata_prefix: str

    def meta(self, name: str) -> str:
        """The served path of the metadata file ``name``."""
        return f"{self.metadata_prefix}/{name}" if self.metadata_prefix else name

    def write(self, root: Path) -> None:
        """Lay the state out under ``root``, replacing what was there."""
        if root.exists():
            shutil.rmtree(root)
        for path, data in self.files.items():
            target = root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)

    @classmethod
    def read(cls, root: Path, *, name: str, time: datetime, metadata_prefix: str) -> State:
        """A state laid out under ``root`` (by ``write``)."""
        files = {
            path.relative_to(root).as_posix(): path.read_bytes()
            for path in sorted(root.rglob("*"))
            if path.is_file()
        }
        return cls(name, time, files, metadata_prefix)


def _signed(data: bytes) -> dict[str, Any]:
    signed = json.loads(data)["signed"]
    if not isinstance(signed, dict):
        raise ValueError("not TUF metadata")
    return signed


def _target_names(path: str, hashes: dict[str, str]) -> list[str]:
    directory, _, base = path.rpartition("/")
    return [
        "targets/" + (f"{directory}/{digest}.{base}" if directory else f"{digest}.{base}")
        for digest in hashes.values()
    ]


def trim(state: State) -> State:
    """Only what a client of this state fetches, plus an unversioned ``root.json``:
    every root version, the timestamp, the snapshot it names, every role version the
    snapshot lists that the state serves, and those roles' targets."""
    keep: dict[str, bytes] = {}
    for path, data in state.files.items():
        base = path.rsplit("/", 1)[-1]
        in_metadata = path == base if not state.metadata_prefix else path == state.meta(base)
        if in_metadata and (base.endswith(".root.json") or base in ("root.json", "timestamp.json")):
            keep[path] = data
    timestamp = _signed(state.files[state.meta("timestamp.json")])
    snapshot_name = state.meta(f"{timestamp['meta']['snapshot.json']['version']}.snapshot.json")
    keep[snapshot_name] = state.files[snapshot_name]
    for filename, info in _signed(state.files[snapshot_name])["meta"].items():
        name = state.meta(f"{info['version']}.{filename}")
        if filename == "root.json" or name not in state.files:
            continue
        keep[name] = state.files[name]
        for path, target in dict(_signed(keep[name]).get("targets") or {}).items():
            for key in _target_names(path, dict(target["hashes"])):
                if key in state.files:
                    keep[key] = state.files[key]
    return State(state.name, state.time, keep, state.metadata_prefix)


def served_keys(state: State) -> dict[str, bytes]:
    """The state's files under the destination's names (``metadata/…``, ``targets/…``)."""
    prefix = f"{state.metadata_prefix}/" if state.metadata_prefix else ""
    return {
        (path if path.startswith("targets/") else "metadata/" + path.removeprefix(prefix)): data
        for path, data in state.files.items()
    }


def client_keys(state: State) -> set[str]:
    """Destination names of every file a client of ``state`` needs."""
    needed = served_keys(trim(state))
    return {key for key in needed if key != "metadata/root.json"}


def published_tree(dest: Path) -> dict[str, bytes]:
    """The destination's client-visible files (its ``.tuf-mirror/`` left out)."""
    return {
        path.relative_to(dest).as_posix(): path.read_bytes()
        for path in sorted(dest.rglob("*"))
        if path.is_file() and ".tuf-mirror" not in path.relative_to(dest).parts
    }


@dataclass(slots=True)
class Replayed:
    """Every byte string each name was served with so far, across states."""

    seen: dict[str, set[bytes]]

    def __init__(self) -> None:
        self.seen = {}

    def serve(self, state: State) -> None:
        """Record what ``state`` serves (call before syncing it)."""
        for key, data in served_keys(state).items():
            self.seen.setdefault(key, set()).add(data)


def check(
    state: State, dest: Path, replayed: Replayed, *, pinned: int = 1
) -> tuple[list[str], list[str]]:
    """(problems, notes) of ``dest`` right after syncing ``state`` (see the module
    docstring); ``pinned`` is the pinned root's version."""
    problems: list[str] = []
    notes: list[str] = []
    served = served_keys(state)
    published = published_tree(dest)
    for key, data in published.items():
        if key in served and data == served[key]:
            continue
        if data in replayed.seen.get(key, ()):
            if key in served:
                notes.append(f"{key}: re-serialized upstream; the mirror keeps the verified bytes")
            continue
        why = "differs from the upstream's bytes" if key in served else "never served upstream"
        problems.append(f"{key}: {why}")
    for key in sorted(client_keys(state)):
        if key in published:
            continue
        base = key.rsplit("/", 1)[-1]
        if base.endswith(".root.json") and int(base.split(".", 1)[0]) < pinned:
            notes.append(f"{key}: before the pin and not shown authentic: not mirrored")
        else:
            problems.append(f"{key}: missing")
    return problems, notes
