"""Fixtures for air-gap tests: a generated upstream served on 127.0.0.1 (the
connected side), an exporter with its own state directory, a far-side destination
fed only by bundles, and a near-side mirror synced directly for comparison."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from mirror.airgap.manifest import Manifest
from mirror.airgap.state import sha256_hex
from mirror.cli import main
from tests.sync.conftest import tree
from tuf_mirror_testing.repo import Repository
from tuf_mirror_testing.server import RepoServer, serve_directory

RECEIPT = ".tuf-mirror/receipt.json"


def make_repo(*, targets: int = 40, size: int = 1500) -> Repository:
    """8 hash bins and ``targets`` targets of about ``size`` bytes (deterministic)."""
    repo = Repository()
    repo.add_hash_bins(8, succinct=False)
    for index in range(targets):
        repo.add_target(f"files/file-{index:04d}.bin", _content(index, size))
    return repo


def _content(index: int, size: int) -> bytes:
    line = f"content of file {index}\n".encode()
    return (line * (size // len(line) + 1))[:size]


@dataclass
class Air:
    """Both sides of an air gap, around one upstream repository."""

    repo: Repository
    upstream: Path
    server: RepoServer
    root_file: Path
    tmp: Path
    state_dir: Path
    far: Path
    near: Path

    def publish(self) -> list[str]:
        """Commit and publish the repository's pending changes upstream."""
        return self.repo.publish(self.upstream)

    def export(self, to: Path, *extra: str, state_dir: Path | None = None) -> int:
        """``tuf-mirror export`` in-process (default base: the last export)."""
        self.server.wait_idle()
        status = main(
            [
                "export",
                "--root",
                str(self.root_file),
                "--upstream",
                self.server.url,
                "--to",
                str(to),
                "--state-dir",
                str(state_dir or self.state_dir),
                "--retries",
                "2",
                "--timeout",
                "5",
                *extra,
            ]
        )
        self.server.wait_idle()
        return status

    def import_(self, bundle: Path, *extra: str, dest: Path | None = None) -> int:
        """``tuf-mirror import BUNDLE`` in-process into the far side."""
        return main(
            [
                "import",
                str(bundle),
                "--root",
                str(self.root_file),
                "--dest",
                str(dest or self.far),
                *list(extra),
            ]
        )

    def sync_near(self) -> int:
        """A direct ``tuf-mirror sync`` of the near-side mirror."""
        self.server.wait_idle()
        status = main(
            [
                "sync",
                "--root",
                str(self.root_file),
                "--upstream",
                self.server.url,
                "--dest",
                str(self.near),
            ]
        )
        self.server.wait_idle()
        return status

    def receipt(self, dest: Path | None = None) -> Path:
        return (dest or self.far) / RECEIPT


@pytest.fixture
def air(tmp_path: Path) -> Iterator[Air]:
    repo = make_repo()
    upstream = tmp_path / "upstream"
    repo.publish(upstream)
    root_file = tmp_path / "root.json"
    root_file.write_bytes(repo.root_bytes(1))
    with serve_directory(upstream) as server:
        yield Air(
            repo,
            upstream,
            server,
            root_file,
            tmp_path,
            tmp_path / "export-state",
            tmp_path / "far",
            tmp_path / "near",
        )


def bundle_files(bundle: Path) -> dict[str, bytes]:
    """The published-layout files of a directory bundle (manifest left out)."""
    return {k: v for k, v in tree(bundle).items() if k != "manifest.json"}


def changed(before: dict[str, bytes], after: dict[str, bytes]) -> dict[str, bytes]:
    """Files of ``after`` that are new or differ from ``before``."""
    return {k: v for k, v in after.items() if before.get(k) != v}


def rewrite_manifest(bundle: Path, path: str, data: bytes) -> None:
    """Replace ``path`` in a directory bundle with ``data`` and make the manifest
    agree (a hand-crafted bundle: the transport checks pass, only TUF can refuse)."""
    (bundle / path).write_bytes(data)
    manifest = Manifest.from_bytes((bundle / "manifest.json").read_bytes(), "manifest")
    files = tuple(
        replace(entry, length=len(data), sha256=sha256_hex(data)) if entry.path == path else entry
        for entry in manifest.files
    )
    if path not in {entry.path for entry in manifest.files}:
        files += (type(manifest.files[0])(path, len(data), sha256_hex(data)),)
    (bundle / "manifest.json").write_bytes(replace(manifest, files=files).to_bytes())


def manifest_of(bundle: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((bundle / "manifest.json").read_bytes())
    return data
