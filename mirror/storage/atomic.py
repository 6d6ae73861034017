"""Atomic file writes: a temporary file in the target's directory, renamed over the
final name, so a reader sees the old file or the new one, never a partial one.

Two levels:

* ``write_temp``, ``copy_to_temp``, ``rename_into_place``, ``move_into_place``,
  ``replace_file`` and ``sync_directory`` are the steps. They raise ``OSError`` and
  leave no temporary file behind when they fail, so a caller with its own error
  wording (``LocalStore`` names the key and splits configuration errors from
  storage errors) translates once around them.
* ``write_atomic`` and ``move_atomic`` are the whole thing for the other writers
  (bundles, receipts, reports, conformance output, spool sidecars): an ``OSError``
  (a full disk, a permission denied) becomes ``StorageError`` naming the path.

``durable=True`` (the default) ``fsync``s the file before the rename and its
directory after it, so the new content survives a crash once the call returns.
``durable=False`` keeps the atomicity but leaves durability to the kernel (or to a
later ``syncfs``: ``LocalStore.flush``), for scratch files and for writes whose
durability is deferred on purpose.

Temporary names are ``<prefix><16 hex digits><suffix>`` beside the final name
(``TEMP_PREFIX`` = ``.tmp-`` by default: listings and the spool cleaner know it).

``write_new`` is the shortcut for a file that does not exist yet (a target under its
content-addressed name): an unnamed file (``O_TMPFILE``) written, then linked under
its final name, one directory operation instead of a create and a rename (which
cost the most of a small target's write on ext4, and contend for the directory).
Where the filesystem, the kernel or a missing ``/proc`` does not allow it, or the
final name exists, it writes nothing and says so: the caller takes the steps above.

What it does not do: create missing directories, lock, or decide whether an
existing file may be replaced (``rename_into_place(replace=False)`` refuses one).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path

from mirror.errors import StorageError

__all__ = [
    "TEMP_PREFIX",
    "copy_to_temp",
    "move_atomic",
    "move_into_place",
    "rename_into_place",
    "replace_file",
    "sync_directory",
    "temp_name",
    "write_all",
    "write_atomic",
    "write_new",
    "write_temp",
]

#: Temporary files start with this unless a caller names them otherwise.
TEMP_PREFIX = ".tmp-"
_CHUNK = 1 << 20


def write_all(fd: int, data: bytes, *, durable: bool = False) -> None:
    """Write every byte of ``data`` to ``fd`` (``os.write`` may write less than
    asked), then ``fsync`` it when ``durable``."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    if durable:
        os.fsync(fd)


def temp_name(directory: Path, *, prefix: str = TEMP_PREFIX, suffix: str = "") -> Path:
    """A fresh, unpredictable temporary name in ``directory``."""
    return directory / f"{prefix}{secrets.token_hex(8)}{suffix}"


def write_temp(
    directory: Path,
    data: bytes,
    *,
    durable: bool = True,
    prefix: str = TEMP_PREFIX,
    suffix: str = "",
    mode: int = 0o666,
) -> Path:
    """Write ``data`` to a new temporary file in ``directory`` (``fsync``ed when
    ``durable``) and return its path; on failure nothing is left behind."""
    tmp = temp_name(directory, prefix=prefix, suffix=suffix)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            write_all(fd, data, durable=durable)
        finally:
            os.close(fd)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return tmp


#: errors that say "no O_TMPFILE here" (filesystem or kernel without it) or "no way
#: to name an unnamed file" (no /proc): the two-step write is the answer
UNSUPPORTED_ERRNOS = frozenset(
    {errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT, errno.EXDEV, errno.EPERM}
)
_TMPFILE = getattr(os, "O_TMPFILE", 0)


def write_new(final: Path, data: bytes, *, durable: bool = True, mode: int = 0o666) -> bool:
    """Write ``data`` as the new file ``final``, which appears whole or not at all:
    an unnamed file in its directory (``O_TMPFILE``), ``fsync``ed when ``durable``,
    then linked under ``final``. False, with nothing written, where ``final`` exists
    already; ``OSError`` with an errno of ``UNSUPPORTED_ERRNOS`` where this
    filesystem or system cannot (then nothing is written either). The directory
    entry's durability is the caller's (``sync_directory``), as after
    ``rename_into_place(durable=False)``."""
    if not _TMPFILE:
        raise OSError(errno.EOPNOTSUPP, "O_TMPFILE is not available here")
    fd = os.open(final.parent, os.O_WRONLY | _TMPFILE | os.O_CLOEXEC, mode)
    try:
        write_all(fd, data, durable=durable)
        try:
            # linkat(2) with AT_SYMLINK_FOLLOW through the /proc link to the open
            # file (AT_EMPTY_PATH would need a capability). The paths are absolute:
            # ``src_dir_fd`` is ignored by the kernel, and only makes Python call
            # linkat with that flag instead of link(2).
            os.link(f"/proc/self/fd/{fd}", final, src_dir_fd=fd, follow_symlinks=True)
        except FileExistsError:
            return False
    finally:
        os.close(fd)  # an unnamed file that was never linked is gone with it
    return True


def copy_to_temp(
    source: Path,
    directory: Path,
    *,
    durable: bool = True,
    prefix: str = TEMP_PREFIX,
    suffix: str = "",
) -> Path:
    """Copy ``source`` to a new temporary file in ``directory`` (``fsync``ed when
    ``durable``) and return its path; on failure nothing is left behind."""
    tmp = temp_name(directory, prefix=prefix, suffix=suffix)
    try:
        with open(source, "rb") as src, open(tmp, "xb") as dst:
            while chunk := src.read(_CHUNK):
                dst.write(chunk)
            dst.flush()
            if durable:
                os.fsync(dst.fileno())
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return tmp


def rename_into_place(
    tmp: Path, final: Path, *, durable: bool = True, replace: bool = True
) -> None:
    """Rename the temporary file ``tmp`` to ``final`` and, when ``durable``, ``fsync``
    the directory. ``replace=False`` refuses (``FileExistsError``) an existing
    ``final`` instead of replacing it. ``tmp`` is removed if the rename fails."""
    try:
        if replace:
            os.replace(tmp, final)
        else:
            if final.exists():
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(final))
            os.rename(tmp, final)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    if durable:
        sync_directory(final.parent)


def move_into_place(
    source: Path,
    final: Path,
    *,
    durable: bool = True,
    prefix: str = TEMP_PREFIX,
    suffix: str = "",
) -> None:
    """Move the finished file ``source`` to ``final`` atomically: a rename, or across
    file systems (``EXDEV``) a copy to a temporary file beside ``final`` (``fsync``ed
    when ``durable``), renamed, and then ``source`` removed. The directory is not
    synced (``sync_directory``; ``move_atomic`` does both). On failure ``source``
    stays."""
    try:
        os.replace(source, final)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        tmp = copy_to_temp(source, final.parent, durable=durable, prefix=prefix, suffix=suffix)
        rename_into_place(tmp, final, durable=False)
        os.unlink(source)


def replace_file(
    path: Path,
    data: bytes,
    *,
    durable: bool = True,
    prefix: str = TEMP_PREFIX,
    suffix: str = "",
    mode: int = 0o666,
) -> None:
    """Replace the regular file ``path`` by ``data``: ``write_temp`` beside it, then
    ``rename_into_place``. ``OSError`` on failure, with no temporary file left."""
    tmp = write_temp(path.parent, data, durable=durable, prefix=prefix, suffix=suffix, mode=mode)
    rename_into_place(tmp, path, durable=durable)


def sync_directory(directory: Path, *, strict: bool = True) -> None:
    """``fsync`` ``directory`` so the names created or renamed in it are durable.
    ``strict=False`` accepts a filesystem that cannot sync a directory (``EINVAL``,
    ``ENOTSUP``: FAT on a removable disk)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        if strict or exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def write_atomic(
    path: Path,
    data: bytes,
    *,
    durable: bool = True,
    prefix: str = TEMP_PREFIX,
    suffix: str = "",
    mode: int = 0o666,
) -> None:
    """Replace the file ``path`` by ``data`` atomically (see the module docstring).

    A ``path`` that exists and is not a regular file (a device such as
    ``/dev/stdout`` or ``/dev/full``, a FIFO) cannot be renamed over: it is written
    in place. ``StorageError`` naming ``path`` on any ``OSError``."""
    try:
        if _is_special(path):
            _write_in_place(path, data)
            return
        replace_file(path, data, durable=durable, prefix=prefix, suffix=suffix, mode=mode)
    except OSError as exc:
        raise _storage_error(path, exc) from exc


def move_atomic(
    source: Path, path: Path, *, durable: bool = True, prefix: str = TEMP_PREFIX, suffix: str = ""
) -> None:
    """``move_into_place``, then (``durable``) ``sync_directory``; an ``OSError`` is
    ``StorageError`` naming ``path``."""
    try:
        move_into_place(source, path, durable=durable, prefix=prefix, suffix=suffix)
        if durable:
            sync_directory(path.parent)
    except OSError as exc:
        raise _storage_error(path, exc) from exc


def _is_special(path: Path) -> bool:
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        return False


def _write_in_place(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _storage_error(path: Path, exc: OSError) -> StorageError:
    code = errno.errorcode.get(exc.errno or 0, "")
    reason = exc.strerror or str(exc)
    return StorageError(f"cannot write {path}: {reason}" + (f" ({code})" if code else ""))


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
