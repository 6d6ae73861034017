"""A full destination disk at several fill levels: exit 3 with one line naming the
path that could not be written, no traceback, the published state consistent, and
a rerun once space is freed converges.

The full disk is simulated in-process: writes (``os.write``), file creations and
``mkdir`` on file descriptors or paths under the destination fail with ENOSPC once
a given number of bytes has been written there."""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mirror.cli import main
from mirror.errors import ExitStatus
from mirror.storage.local import LocalStore
from tests.sync.conftest import Env, tree


class FullDisk:
    """ENOSPC for writes under ``root`` after ``room`` bytes."""

    def __init__(self, root: Path, room: int, *, only: str | None = None) -> None:
        self.root = str(root.resolve())
        self.room = room
        #: only the writes of store keys containing this (via LocalStore._write_temp
        #: and LocalStore._put_new)
        self.only = only
        self._armed = threading.local()
        self.written = 0
        self.refused = 0

    def _under(self, path: str) -> bool:
        if self.only is not None and not getattr(self._armed, "on", False):
            return False
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
            creates = flags & os.O_CREAT or flags & os.O_TMPFILE == os.O_TMPFILE
            if creates and self._under(os.fspath(path)) and self.written >= self.room:
                raise self._refuse(os.fspath(path))
            return real_open(path, flags, *args, **kw)

        def mkdir(path: str | os.PathLike[str], *args: int, **kw: int) -> None:
            if self._under(os.fspath(path)) and self.written >= self.room:
                raise self._refuse(os.fspath(path))
            real_mkdir(path, *args, **kw)

        real_write_temp = LocalStore._write_temp
        disk = self

        def write_temp(
            self: LocalStore, key: str, directory: Path, data: bytes, *, sync: bool = True
        ) -> Path:
            disk._armed.on = disk.only is not None and disk.only in key
            try:
                return real_write_temp(self, key, directory, data, sync=sync)
            finally:
                disk._armed.on = False

        real_put_new = LocalStore._put_new

        def put_new(self: LocalStore, key: str, path: Path, data: bytes, durable: bool) -> bool:
            disk._armed.on = disk.only is not None and disk.only in key
            try:
                return real_put_new(self, key, path, data, durable)
            finally:
                disk._armed.on = False

        with monkeypatch.context() as patch:
            patch.setattr(LocalStore, "_write_temp", write_temp)
            patch.setattr(LocalStore, "_put_new", put_new)
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


@pytest.mark.parametrize("where", [".tuf-mirror/lock", "metadata/", "metadata/timestamp.json"])
def test_a_full_disk_at_one_write_site(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    """ENOSPC at one kind of write only (the lock, the metadata publish,
    timestamp.json) during an incremental sync: exit 3, one error line naming that
    path, no traceback; the destination verifies, and the rerun converges."""
    assert env.run() == ExitStatus.OK
    env.repo.add_target("files/late.txt", b"late\n")
    env.publish()
    with FullDisk(env.dest, 0, only=where).installed(monkeypatch) as disk:
        status = env.run()
    err = capsys.readouterr().err
    assert disk.refused >= 1
    assert status == ExitStatus.TRANSIENT, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "ERROR" in line]
    assert len(errors) == 1, err
    assert "No space left on device" in errors[0]
    assert where in errors[0]
    assert verify(env) == ExitStatus.OK

    assert env.run() == ExitStatus.OK
    assert tree(env.dest) == tree(env.upstream)


def test_a_full_disk_for_the_state_file_is_a_warning(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The state file is only a hint for the next run: when the disk is full for it
    after a complete publish, the run says so in one warning naming the path and
    exits 0 (the mirror is complete and consistent); the next run rewrites it."""
    assert env.run() == ExitStatus.OK
    env.repo.add_target("files/late.txt", b"late\n")
    env.publish()
    with FullDisk(env.dest, 0, only=".tuf-mirror/state.json").installed(monkeypatch) as disk:
        status = env.run()
    err = capsys.readouterr().err
    assert disk.refused >= 1
    assert status == ExitStatus.OK
    assert "Traceback" not in err
    warnings = [line for line in err.splitlines() if "WARNING" in line]
    assert len(warnings) == 1
    assert ".tuf-mirror/state.json" in warnings[0]
    assert "No space left on device" in warnings[0]
    assert tree(env.dest) == tree(env.upstream)
    assert verify(env) == ExitStatus.OK
