"""An upstream directory with awkward names, served by the loopback test server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mirror.fetch.retry import RetryPolicy
from tuf_mirror_testing.server import RepoServer, serve_directory

TIMESTAMP = b'{"signed": {"_type": "timestamp", "version": 7}}\n'
TARGET = bytes(range(256)) * 1000  # 256 000 bytes
ENCODED_ROLE = b'{"signed": {"_type": "targets"}}\n'
ODD_TARGET = b"a target whose name has a space and a percent sign\n"

#: fast, deterministic retries for tests against a real server (counts, not time)
FAST_RETRY = RetryPolicy(attempts=3, initial=0.001, maximum=0.001, jitter=False)


@pytest.fixture
def upstream(tmp_path: Path) -> Path:
    """metadata/timestamp.json, metadata/1.a%2Fb.json (a role name percent-encoded in
    the file name), targets/dir/file.bin and targets/a b%c."""
    root = tmp_path / "upstream"
    (root / "metadata").mkdir(parents=True)
    (root / "targets" / "dir").mkdir(parents=True)
    (root / "metadata" / "timestamp.json").write_bytes(TIMESTAMP)
    (root / "metadata" / "1.a%2Fb.json").write_bytes(ENCODED_ROLE)
    (root / "targets" / "dir" / "file.bin").write_bytes(TARGET)
    (root / "targets" / "a b%c").write_bytes(ODD_TARGET)
    (tmp_path / "outside.txt").write_bytes(b"outside the upstream")
    return root


@pytest.fixture
def server(upstream: Path) -> Iterator[RepoServer]:
    with serve_directory(upstream) as srv:
        yield srv
