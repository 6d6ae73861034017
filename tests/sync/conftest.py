"""Fixtures for end-to-end sync tests: a generated upstream served on 127.0.0.1 and a
destination directory, plus helpers to run the CLI in-process and snapshot trees."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mirror.cli import main
from tuf_mirror_testing.repo import Repository
from tuf_mirror_testing.server import RepoServer, serve_directory


def tree(root: Path, *, internal: bool = False) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes); the mirror's own
    ``.tuf-mirror/`` bookkeeping is left out unless ``internal``."""
    out: dict[str, bytes] = {}
    if not root.exists():
        return out
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(root).as_posix()
        if rel.startswith(".tuf-mirror/") and not internal:
            continue
        out[rel] = path.read_bytes()
    return out


@dataclass
class Env:
    """An upstream repository, its server, a pinned root file and a destination."""

    repo: Repository
    upstream: Path
    server: RepoServer
    root_file: Path
    dest: Path

    def publish(self) -> list[str]:
        """Commit and publish the repository's pending changes upstream."""
        return self.repo.publish(self.upstream)

    def args(self, command: str = "sync", *extra: str) -> list[str]:
        return [
            command,
            "--root",
            str(self.root_file),
            "--upstream",
            self.server.url,
            "--dest",
            str(self.dest),
            "--retries",
            "2",
            "--timeout",
            "5",
            *extra,
        ]

    def run(self, command: str = "sync", *extra: str) -> int:
        """Run ``tuf-mirror COMMAND`` in-process; return its exit status."""
        self.server.wait_idle()
        self.server.clear_log()
        status = main(self.args(command, *extra))
        self.server.wait_idle()
        return status

    def requested(self) -> list[str]:
        return [record.path for record in self.server.requests]


def synced_then_one_added(env: Env) -> tuple[str, int, list[str]]:
    """Sync, then add one target upstream: (its bin, the bin's published version,
    the new target files)."""
    assert env.run() == 0
    path = "files/extra-1.txt"
    env.repo.add_target(path, b"extra one")
    changed_bin = env.repo.role_for_target(path)
    old_version = env.repo.version(changed_bin)
    written = env.publish()
    return changed_bin, old_version, [w for w in written if w.startswith("targets/")]


def make_repo(*, bins: int = 8, targets: int = 40, consistent: bool = True) -> Repository:
    """A small hash-bin repository with deterministic target contents."""
    repo = Repository(consistent_snapshot=consistent)
    repo.add_hash_bins(bins, succinct=False)
    for index in range(targets):
        repo.add_target(f"files/file-{index:04d}.txt", f"content {index}\n".encode() * 20)
    return repo


@contextlib.contextmanager
def serving(repo: Repository, tmp_path: Path) -> Iterator[Env]:
    """``repo`` published under ``tmp_path/upstream`` and served on 127.0.0.1, its
    first root pinned in ``tmp_path/root.json``, the destination ``tmp_path/dest``."""
    upstream = tmp_path / "upstream"
    repo.publish(upstream)
    root_file = tmp_path / "root.json"
    root_file.write_bytes(repo.root_bytes(1))
    with serve_directory(upstream) as server:
        yield Env(repo, upstream, server, root_file, tmp_path / "dest")


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    with serving(make_repo(), tmp_path) as served:
        yield served
