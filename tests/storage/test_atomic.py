"""``mirror.storage.atomic``: a file is replaced whole or not at all, no temporary
file outlives a call, failures are ``StorageError`` naming the path, and a durable
write syncs the file and its directory (counted, per call)."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from mirror.errors import StorageError
from mirror.storage import atomic
from tests.sync.test_full_disk import FullDisk


def names(directory: Path) -> set[str]:
    return set(os.listdir(directory))


def _write(path: Path, data: bytes, durable: bool) -> None:
    atomic.write_atomic(path, data, durable=durable)


def _move(path: Path, data: bytes, durable: bool) -> None:
    source = path.parent / "spooled"
    source.write_bytes(data)
    atomic.move_atomic(source, path, durable=durable)


def _fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What ``os.fsync`` is called on from now on, in order: "file" or "directory"."""
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append("directory" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


#: how a file reaches its final name
WAYS: dict[str, Callable[[Path, bytes, bool], None]] = {"bytes": _write, "file": _move}


@pytest.mark.parametrize("existing", [None, b"old content"], ids=["new", "replaced"])
@pytest.mark.parametrize("durable", [True, False], ids=["durable", "deferred"])
@pytest.mark.parametrize("way", sorted(WAYS))
def test_the_final_name_holds_the_new_bytes_and_nothing_else_remains(
    tmp_path: Path, way: str, durable: bool, existing: bytes | None
) -> None:
    """Bytes written or a file moved reach the final name, over an existing file or
    not, durable or not; the directory then holds the final name only."""
    final = tmp_path / "out.json"
    if existing is not None:
        final.write_bytes(existing)

    WAYS[way](final, b"new bytes", durable)

    assert final.read_bytes() == b"new bytes"
    assert names(tmp_path) == {"out.json"}


@contextmanager
def failing(call: str, error: int) -> Iterator[None]:
    """``os.<call>`` raises ``OSError(error)`` while the block runs."""
    real = getattr(os, call)

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise OSError(error, os.strerror(error))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, call, fail)
        yield
    assert getattr(os, call) is real


@pytest.mark.parametrize(
    ("way", "call", "error"),
    [
        ("bytes", "open", errno.ENOSPC),
        ("bytes", "write", errno.ENOSPC),
        ("bytes", "fsync", errno.EIO),
        ("bytes", "replace", errno.EACCES),
        ("file", "replace", errno.EACCES),
    ],
    ids=["create", "write", "fsync", "rename", "move"],
)
def test_a_failed_step_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, way: str, call: str, error: int
) -> None:
    """A full disk, an I/O error or a refused rename at any step is ``StorageError``
    naming the path and the cause; the old file is intact, no temporary file is
    left, and a file to be moved stays where it was."""
    final = tmp_path / "out.json"
    final.write_bytes(b"old")
    source = tmp_path / "spooled"
    source.write_bytes(b"new")

    operations: dict[str, Callable[[], None]] = {
        "bytes": lambda: atomic.write_atomic(final, b"new"),
        "file": lambda: atomic.move_atomic(source, final),
    }

    with failing(call, error), pytest.raises(StorageError) as excinfo:
        operations[way]()

    assert str(final) in str(excinfo.value)
    assert errno.errorcode[error] in str(excinfo.value)
    assert final.read_bytes() == b"old"
    assert names(tmp_path) == {"out.json", "spooled"}


@pytest.mark.parametrize("room", [0, 4], ids=["no-room", "room-for-4-bytes"])
def test_a_full_disk_is_a_storage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, room: int
) -> None:
    """On a disk that fills after ``room`` bytes (the full-disk fault injector of the
    sync tests), a write is ``StorageError`` saying ENOSPC, leaving no temporary."""
    final = tmp_path / "report.json"

    with FullDisk(tmp_path, room).installed(monkeypatch), pytest.raises(StorageError) as excinfo:
        atomic.write_atomic(final, b"more than four bytes")

    assert "ENOSPC" in str(excinfo.value)
    assert names(tmp_path) == set()


@pytest.mark.parametrize(
    ("durable", "file_syncs", "directory_syncs"),
    [(True, 1, 1), (False, 0, 0)],
    ids=["durable", "deferred"],
)
def test_durable_writes_sync_the_file_and_the_directory(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    durable: bool,
    file_syncs: int,
    directory_syncs: int,
) -> None:
    """A durable write ``fsync``s the file once and its directory once (after the
    rename); a deferred one syncs nothing."""
    synced = _fsyncs(monkeypatch)
    atomic.write_atomic(tmp_path / "out", b"x", durable=durable)

    assert synced == ["file"] * file_syncs + ["directory"] * directory_syncs


def test_a_move_across_filesystems_copies_then_removes_the_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the rename crosses filesystems (EXDEV), the file is copied to a temporary
    file beside the final name and renamed; the source is removed."""
    source = tmp_path / "spooled"
    source.write_bytes(b"content")
    final_dir = tmp_path / "out"
    final_dir.mkdir()
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        if Path(src) == source:
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    atomic.move_atomic(source, final_dir / "file")

    assert not source.exists()
    assert (final_dir / "file").read_bytes() == b"content"
    assert names(final_dir) == {"file"}


def test_rename_into_place_can_refuse_an_existing_file(tmp_path: Path) -> None:
    """``replace=False`` (bundle volumes) refuses an existing final name, keeps it,
    and removes the temporary file."""
    final = tmp_path / "bundle.tar"
    final.write_bytes(b"first")
    tmp = atomic.write_temp(tmp_path, b"second")

    with pytest.raises(FileExistsError):
        atomic.rename_into_place(tmp, final, replace=False)

    assert final.read_bytes() == b"first"
    assert names(tmp_path) == {"bundle.tar"}


def test_temporary_names_carry_the_callers_prefix_and_suffix(tmp_path: Path) -> None:
    """A temporary file is named ``<prefix><16 hex><suffix>`` in the given directory,
    so each caller's cleaners and readers recognise its own."""
    tmp = atomic.write_temp(tmp_path, b"x", prefix="partial-a.partial.json.", suffix=".tmp")

    assert tmp.parent == tmp_path
    assert tmp.name.startswith("partial-a.partial.json.")
    assert tmp.name.endswith(".tmp")
    assert len(tmp.name) == len("partial-a.partial.json.") + 16 + len(".tmp")


def test_a_fifo_is_written_in_place(tmp_path: Path) -> None:
    """A target that is not a regular file (a FIFO here; ``/dev/full`` for
    ``--report``) cannot be renamed over: it is written in place and stays a FIFO."""
    fifo = tmp_path / "report.pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        atomic.write_atomic(fifo, b'{"exit_status": 0}\n')
        assert os.read(reader, 100) == b'{"exit_status": 0}\n'
    finally:
        os.close(reader)

    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert names(tmp_path) == {"report.pipe"}


def test_a_device_that_is_full_is_a_storage_error() -> None:
    """``/dev/full`` (every write ENOSPC) is written in place, so the error is the
    device's ENOSPC, not a failed rename into ``/dev``."""
    with pytest.raises(StorageError, match=r"/dev/full: No space left on device \(ENOSPC\)"):
        atomic.write_atomic(Path("/dev/full"), b"x")


# -- write_new: an unnamed file linked under its final name ----------------------------


def test_write_new_links_a_whole_new_file_and_leaves_nothing_else(tmp_path: Path) -> None:
    """The new file holds the bytes, with the mode a named create gives, and the
    directory holds nothing else (no temporary name ever existed)."""
    final = tmp_path / "target.bin"
    assert atomic.write_new(final, b"payload" * 100, durable=False)
    assert final.read_bytes() == b"payload" * 100
    assert names(tmp_path) == {"target.bin"}
    atomic.write_atomic(tmp_path / "named", b"x")
    assert stat.S_IMODE(final.stat().st_mode) == stat.S_IMODE((tmp_path / "named").stat().st_mode)


def test_write_new_leaves_an_existing_file_alone(tmp_path: Path) -> None:
    """An existing final name: False, the old bytes kept, nothing else written."""
    final = tmp_path / "target.bin"
    final.write_bytes(b"old")
    assert not atomic.write_new(final, b"new")
    assert final.read_bytes() == b"old"
    assert names(tmp_path) == {"target.bin"}


def test_write_new_on_a_full_disk_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC half-way: the error comes out, and no name appears (the unnamed file
    goes with its descriptor)."""
    with FullDisk(tmp_path, 4).installed(monkeypatch), pytest.raises(OSError) as excinfo:
        atomic.write_new(tmp_path / "target.bin", b"more than four bytes")
    assert excinfo.value.errno == errno.ENOSPC
    assert names(tmp_path) == set()


@pytest.mark.parametrize(("durable", "file_syncs"), [(True, 1), (False, 0)])
def test_write_new_syncs_the_file_when_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durable: bool, file_syncs: int
) -> None:
    """A durable ``write_new`` ``fsync``s the file before linking it; the directory
    entry is the caller's to sync."""
    synced = _fsyncs(monkeypatch)
    assert atomic.write_new(tmp_path / "out", b"x", durable=durable)
    assert synced == ["file"] * file_syncs
