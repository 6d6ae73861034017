"""A full destination disk at several fill levels: exit 3 with one line naming the
path that could not be written, no traceback, the published state consistent, and
a rerun once space is freed converges.

The full disk is simulated in-process: writes (``os.write``), file creations and
``mkdir`` on file descriptors or paths under the destination fail with ENOSPC once
a given number of bytes has been written there."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mirror.cli import main
from mirror.errors import ExitStatus
from tests.sync.conftest import Env, tree


class FullDisk:
    """ENOSPC for writes under ``root`` after ``room`` bytes."""

    def __init__(self, root: Path, room: int) -> None:
        self.root = str(root.resolve())
        self.room = room
        self.written = 0
        self.refused = 0

    def _under(self, path: str) -> bool:
        return os.path.abspath(path).startswith(self.root)

    def _fd_under(self, fd: int) -> bool:
        try:
            return self._under(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            return False

    def _refuse(self, what: str) -> OSError:
        self.refused += 1
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), what)

    @contextmanager
    def installed(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[FullDisk]:
        real_write, real_open, real_mkdir = os.write, os.open, os.mkdir

        def write(fd: int, data: bytes | memoryview) -> int:
            if self._fd_under(fd):
                if self.written + len(data) > self.room:
                    raise self._refuse(os.readlink(f"/proc/self/fd/{fd}"))
                self.written += len(data)
            return real_write(fd, data)

        def open_(path: str | os.PathLike[str], flags: int, *args: int, **kw: int) -> int:
            if flags & os.O_CREAT and self._under(os.fspath(path)) and self.written >= self.room:
                raise self._refuse(os.fspath(path))
            return real_open(path, flags, *args, **kw)

        def mkdir(path: str | os.PathLike[str], *args: int, **kw: int) -> None:
            if self._under(os.fspath(path)) and self.written >= self.room:
                raise self._refuse(os.fspath(path))
            real_mkdir(path, *args, **kw)

        with monkeypatch.context() as patch:
            patch.setattr(os, "write", write)
            patch.setattr(os, "open", open_)
            patch.setattr(os, "mkdir", mkdir)
            yield self


def verify(env: Env) -> int:
    return main(["verify", "--root", str(env.root_file), "--dest", str(env.dest)])


@pytest.mark.parametrize("room", [0, 600, 5_000, 9_000, 20_000])
def test_first_sync_on_a_full_disk(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], room: int
) -> None:
    """A first sync (about 22 KB of files) whose disk fills after ``room`` bytes:
    exit 3, one error line naming a path under the destination and the cause, no
    traceback, nothing published; with space freed the rerun converges."""
    env.dest.mkdir()
    with FullDisk(env.dest, room).installed(monkeypatch) as disk:
        status = env.run()
    err = capsys.readouterr().err
    assert disk.refused >= 1
    assert status == ExitStatus.TRANSIENT, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "ERROR" in line]
    assert len(errors) == 1, err
    assert "No space left on device" in errors[0]
    assert str(env.dest) in errors[0]
    assert not (env.dest / "metadata/timestamp.json").exists()

    assert env.run() == ExitStatus.OK
    assert tree(env.dest) == tree(env.upstream)


@pytest.mark.parametrize("room", [0, 300, 1_500, 4_000])
def test_incremental_sync_on_a_full_disk_keeps_the_published_state(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], room: int
) -> None:
    """An incremental sync (new targets, roles, snapshot, timestamp) whose disk fills
    after ``room`` bytes: exit 3, no traceback, the previous state still verifies;
    with space freed the rerun converges."""
    assert env.run() == ExitStatus.OK
    for index in range(5):
        env.repo.add_target(f"files/more-{index}.txt", b"more\n" * (100 + index))
    env.publish()
    with FullDisk(env.dest, room).installed(monkeypatch) as disk:
        status = env.run()
    err = capsys.readouterr().err
    assert disk.refused >= 1
    assert status == ExitStatus.TRANSIENT, err
    assert "Traceback" not in err
    assert "No space left on device" in err
    assert verify(env) == ExitStatus.OK

    assert env.run() == ExitStatus.OK
    assert tree(env.dest) == tree(env.upstream)
