"""LocalStore beyond the contract: disk layout, durability, faults, open_store.

Faults a real disk cannot produce on demand (full disk, I/O error, read-only
filesystem; we run as root, so chmod stops nothing) are simulated by patching the
``os`` calls LocalStore makes, only for the store's own files.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mirror.errors import StorageConfigError, StorageError, UnsafeNameError
from mirror.storage import open_store
from mirror.storage.base import PutOptions
from mirror.storage.local import LocalStore, path_from_file_url
from mirror.storage.memory import MemoryStore

OPTIONS = PutOptions()


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def failing(
    real: Callable[..., Any], error: int, applies: Callable[..., bool]
) -> Callable[..., Any]:
    """Wrap an ``os`` function so that it raises OSError(error) when ``applies``."""

    def fake(*args: Any, **kwargs: Any) -> Any:
        if applies(*args, **kwargs):
            raise OSError(error, os.strerror(error))
        return real(*args, **kwargs)

    return fake


async def test_root_is_created_on_first_put(tmp_path: Path) -> None:
    """A missing destination directory reads as empty and is created by the first write."""
    root = tmp_path / "a" / "b" / "mirror"
    store = LocalStore(root)

    assert await store.head("metadata/1.root.json") is None
    assert [info async for info in store.list("")] == []
    assert not root.exists()

    await store.put_bytes("metadata/1.root.json", b"{}", OPTIONS)

    assert (root / "metadata" / "1.root.json").read_bytes() == b"{}"


async def test_files_land_at_the_key_path_with_umask_permissions(tmp_path: Path) -> None:
    """Keys map to paths under the root; published files are world-readable per umask
    (a web server must be able to serve them)."""
    store = LocalStore(tmp_path)
    await store.put_bytes("targets/dir/sub/file.txt", b"data", OPTIONS)

    path = tmp_path / "targets" / "dir" / "sub" / "file.txt"
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.read_bytes() == b"data"
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


async def test_listing_skips_temporary_and_internal_files(tmp_path: Path) -> None:
    """Stray .tmp-* files (a crash mid-write) and .tuf-mirror/ never show in listings."""
    store = LocalStore(tmp_path)
    await store.put_bytes("metadata/1.root.json", b"{}", OPTIONS)
    (tmp_path / "metadata" / ".tmp-deadbeef").write_bytes(b"partial")
    (store.spool_dir() / "download").write_bytes(b"spooled")

    assert [info.key async for info in store.list("")] == ["metadata/1.root.json"]


async def test_reserved_temporary_names_are_rejected(tmp_path: Path) -> None:
    """A key whose last segment starts with .tmp- would be invisible, so it is refused."""
    store = LocalStore(tmp_path)
    with pytest.raises(UnsafeNameError):
        await store.put_bytes("targets/.tmp-x", b"x", OPTIONS)


async def test_spool_dir_is_inside_the_root(tmp_path: Path) -> None:
    """The spool is <root>/.tuf-mirror/spool, so put_file is a same-filesystem rename."""
    store = LocalStore(tmp_path / "mirror")
    assert store.spool_dir() == tmp_path / "mirror" / ".tuf-mirror" / "spool"
    assert store.spool_dir().is_dir()


@pytest.mark.parametrize(
    ("call", "error"),
    [("write", errno.ENOSPC), ("fsync", errno.EIO), ("replace", errno.ENOSPC)],
)
async def test_write_failure_keeps_the_old_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: str, error: int
) -> None:
    """A full disk or I/O error during a put is a StorageError naming the key; the
    previous object stays intact and no temporary file is left behind."""
    store = LocalStore(tmp_path)
    await store.put_bytes("metadata/timestamp.json", b"old", OPTIONS)
    if call == "replace":
        applies: Callable[..., bool] = lambda src, dst: ".tmp-" in str(src)  # noqa: E731
    else:
        applies = lambda fd, *rest: ".tmp-" in fd_path(fd)  # noqa: E731
    monkeypatch.setattr(os, call, failing(getattr(os, call), error, applies))

    with pytest.raises(StorageError) as excinfo:
        await store.put_bytes("metadata/timestamp.json", b"new", OPTIONS)

    monkeypatch.undo()
    message = str(excinfo.value)
    assert "metadata/timestamp.json" in message
    assert errno.errorcode[error] in message
    assert (tmp_path / "metadata" / "timestamp.json").read_bytes() == b"old"
    assert files_under(tmp_path) == {"metadata/timestamp.json"}


async def test_read_only_destination_is_a_storage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only filesystem (EROFS on create, named or unnamed) is a StorageError
    naming the key."""
    store = LocalStore(tmp_path)
    await store.put_bytes("metadata/1.root.json", b"{}", OPTIONS)
    real_open = os.open
    monkeypatch.setattr(
        os,
        "open",
        failing(
            real_open,
            errno.EROFS,
            lambda path, flags, *rest: (
                bool(flags & os.O_CREAT) or flags & os.O_TMPFILE == os.O_TMPFILE
            ),
        ),
    )

    with pytest.raises(StorageError, match=r"metadata/2\.root\.json.*EROFS"):
        await store.put_bytes("metadata/2.root.json", b"{}", OPTIONS)
    with pytest.raises(StorageError, match="EROFS"):
        await store.create_exclusive(".tuf-mirror/lock", b"{}")

    assert await store.get("metadata/1.root.json", max_length=10) == b"{}"


async def test_put_file_failure_keeps_old_object_and_spool_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the rename into place fails, the old object stays and so does the spool file."""
    store = LocalStore(tmp_path)
    await store.put_bytes("targets/t", b"old", OPTIONS)
    spooled = store.spool_dir() / "d"
    spooled.write_bytes(b"new")
    monkeypatch.setattr(os, "replace", failing(os.replace, errno.EIO, lambda *a: True))

    with pytest.raises(StorageError, match="targets/t"):
        await store.put_file("targets/t", spooled, OPTIONS)

    monkeypatch.undo()
    assert (tmp_path / "targets" / "t").read_bytes() == b"old"
    assert spooled.read_bytes() == b"new"


async def test_put_file_from_another_filesystem_copies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spool file on another filesystem (rename gives EXDEV) is copied atomically
    and then removed."""
    store = LocalStore(tmp_path / "mirror")
    source = tmp_path / "elsewhere"
    source.write_bytes(b"content")
    real_replace = os.replace
    monkeypatch.setattr(
        os, "replace", failing(real_replace, errno.EXDEV, lambda src, dst: src == source)
    )

    await store.put_file("targets/t", source, OPTIONS)

    assert not source.exists()
    assert (tmp_path / "mirror" / "targets" / "t").read_bytes() == b"content"
    assert files_under(tmp_path / "mirror") == {"targets/t"}


async def test_create_exclusive_without_hard_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a filesystem without hard links, create_exclusive falls back to
    O_CREAT|O_EXCL with the same semantics."""
    store = LocalStore(tmp_path)
    monkeypatch.setattr(os, "link", failing(os.link, errno.EPERM, lambda *a: True))

    assert await store.create_exclusive(".tuf-mirror/lock", b"one") is True
    assert await store.create_exclusive(".tuf-mirror/lock", b"two") is False
    assert (tmp_path / ".tuf-mirror" / "lock").read_bytes() == b"one"
    assert files_under(tmp_path) == {".tuf-mirror/lock"}


async def test_root_that_is_a_file_is_a_config_error(tmp_path: Path) -> None:
    """A destination path naming a regular file is a configuration error (exit 2)."""
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(StorageConfigError, match="not a directory"):
        LocalStore(tmp_path / "file")


async def test_unwritable_root_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A destination directory without write permission is a configuration error."""
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path)
    with pytest.raises(StorageConfigError, match="not writable"):
        LocalStore(tmp_path)


async def test_uncreatable_root_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Failing to create the destination directory itself (EACCES) is a
    configuration error, not a transient one."""
    store = LocalStore(tmp_path / "mirror")
    monkeypatch.setattr(os, "mkdir", failing(os.mkdir, errno.EACCES, lambda *a, **k: True))

    with pytest.raises(StorageConfigError, match="EACCES"):
        await store.put_bytes("metadata/1.root.json", b"{}", OPTIONS)


def test_open_store_dispatches_on_scheme(tmp_path: Path) -> None:
    """open_store opens paths and file:// URLs as LocalStore, memory:// as MemoryStore,
    and refuses unknown schemes and options a backend does not take."""
    by_path = open_store(str(tmp_path))
    by_url = open_store((tmp_path / "with space").as_uri())
    by_pathlib = open_store(tmp_path)

    assert isinstance(by_path, LocalStore)
    assert by_path.root == tmp_path
    assert isinstance(by_url, LocalStore)
    assert by_url.root == tmp_path / "with space"
    assert isinstance(by_pathlib, LocalStore)
    assert isinstance(open_store("memory://"), MemoryStore)
    with pytest.raises(StorageConfigError, match="unsupported destination"):
        open_store("ftp://example.org/mirror")
    with pytest.raises(StorageConfigError, match="endpoint_url"):
        open_store(str(tmp_path), endpoint_url="http://127.0.0.1:1")


def test_file_urls_with_a_remote_host_are_refused() -> None:
    """file://host/path names another machine: refused rather than misread."""
    assert path_from_file_url("file:///srv/mirror%20x") == Path("/srv/mirror x")
    assert path_from_file_url("file://localhost/srv") == Path("/srv")
    with pytest.raises(StorageConfigError):
        path_from_file_url("file://otherhost/srv")


def test_local_destinations_do_not_import_boto3(tmp_path: Path) -> None:
    """Opening and using a local destination never imports boto3 (fast local runs)."""
    code = (
        "import sys, trio\n"
        "from mirror.storage import open_store, PutOptions\n"
        f"store = open_store({str(tmp_path)!r})\n"
        "trio.run(store.put_bytes, 'k', b'v', PutOptions())\n"
        "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


DEFERRED = PutOptions(durable=False)


async def test_small_deferred_writes_share_thread_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many concurrent small ``durable=False`` puts all land with their bytes, in
    fewer thread calls than puts (they queue behind the batch running)."""
    import trio

    from mirror.storage import local

    calls: list[int] = []
    real = local._run_jobs

    def counting(batch: list[Any]) -> None:
        calls.append(len(batch))
        real(batch)

    monkeypatch.setattr(local, "_run_jobs", counting)
    store = LocalStore(tmp_path / "dest")
    async with trio.open_nursery() as nursery:
        for index in range(64):
            nursery.start_soon(store.put_bytes, f"t/{index}", b"%d" % index, DEFERRED)
    assert all((tmp_path / "dest" / "t" / str(i)).read_bytes() == b"%d" % i for i in range(64))
    assert sum(calls) == 64
    assert len(calls) < 64


async def test_small_reads_share_thread_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Concurrent gets of small files share thread calls (each gets its own bytes, a
    missing file is its own caller's NotFoundInStoreError); a file larger than
    ``BATCHED_BYTES`` is read whole, in a thread call of its own, and without
    holding up the small reads batched with its first look."""
    import trio

    from mirror.storage import NotFoundInStoreError, local

    root = tmp_path / "dest"
    (root / "t").mkdir(parents=True)
    for index in range(64):
        (root / "t" / str(index)).write_bytes(b"%d" % index)
    large = os.urandom(local.BATCHED_BYTES + 1)
    (root / "large").write_bytes(large)
    batches: list[list[str]] = []
    alone: list[str] = []
    real_jobs = local._run_jobs
    real_thread = trio.to_thread.run_sync

    def counting(batch: list[Any]) -> None:
        batches.append([str(job.args[0]) for job in batch])
        real_jobs(batch)

    async def thread_call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if getattr(fn, "__name__", "") == "_get_sync":
            alone.append(str(args[0]))
        return await real_thread(fn, *args, **kwargs)

    monkeypatch.setattr(local, "_run_jobs", counting)
    monkeypatch.setattr(trio.to_thread, "run_sync", thread_call)
    store = LocalStore(root)
    got: dict[str, bytes | None] = {}

    async def get(key: str) -> None:
        try:
            got[key] = await store.get(key, max_length=1 << 20)
        except NotFoundInStoreError:
            got[key] = None

    keys = [f"t/{index}" for index in range(64)] + ["large", "t/missing"]
    async with trio.open_nursery() as nursery:
        for key in keys:
            nursery.start_soon(get, key)
    assert got == {
        **{f"t/{index}": b"%d" % index for index in range(64)},
        "large": large,
        "t/missing": None,
    }
    assert sorted(key for batch in batches for key in batch) == sorted(keys)
    assert len(batches) < 8
    assert alone == ["large"]
    with pytest.raises(StorageError, match="larger than 1 bytes"):
        await store.get("t/10", max_length=1)


async def test_replace_tail_appends_in_place_only_to_the_size_read(tmp_path: Path) -> None:
    """``replace_tail`` cuts a file of the given size to ``keep`` bytes and appends
    (the same inode: no rewrite); a missing file or one of another size is left as
    it is (False), and ``keep`` past the size is a caller's bug."""
    store = LocalStore(tmp_path / "dest")
    await store.put_bytes("d/f", b"line 1\nleftover", OPTIONS)
    path = tmp_path / "dest" / "d" / "f"
    inode = path.stat().st_ino
    assert not await store.replace_tail("d/f", size=9, keep=7, data=b"line 2\n")
    assert not await store.replace_tail("d/missing", size=15, keep=7, data=b"x")
    assert path.read_bytes() == b"line 1\nleftover"
    assert await store.replace_tail("d/f", size=15, keep=7, data=b"line 2\n")
    assert path.read_bytes() == b"line 1\nline 2\n"
    assert await store.replace_tail("d/f", size=14, keep=14, data=b"line 3\n")
    assert path.read_bytes() == b"line 1\nline 2\nline 3\n"
    assert path.stat().st_ino == inode
    assert not (tmp_path / "dest" / "d" / "missing").exists()
    with pytest.raises(ValueError, match="keep"):
        await store.replace_tail("d/f", size=21, keep=22, data=b"")
    await store.flush()


async def test_a_failing_batched_write_fails_only_its_caller(tmp_path: Path) -> None:
    """In a batch, one write that fails (its parent is a file) is a StorageError for
    its own caller; the others land."""
    import trio

    store = LocalStore(tmp_path / "dest")
    await store.put_bytes("blocker", b"a file", OPTIONS)
    errors: list[BaseException] = []

    async def put(key: str) -> None:
        try:
            await store.put_bytes(key, b"x", DEFERRED)
        except StorageError as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        for key in ("ok/1", "blocker/bad", "ok/2", "ok/3"):
            nursery.start_soon(put, key)
    assert len(errors) == 1
    assert "blocker/bad" in str(errors[0])
    assert files_under(tmp_path / "dest") == {"blocker", "ok/1", "ok/2", "ok/3"}


async def test_cancelled_batch_runner_hands_the_queue_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller cancelled while its batch runs in a thread waits for it and reports
    its write (as ``trio.to_thread.run_sync`` does); the writes queued behind it are
    then run by their own callers: none is lost, none waits forever."""
    import threading

    import trio
    import trio.testing

    store = LocalStore(tmp_path / "dest")
    release = threading.Event()
    real = store._put_bytes_sync

    def held(key: str, path: Path, data: bytes, durable: bool = True) -> None:
        if key == "first":
            release.wait(10)
        real(key, path, data, durable)

    monkeypatch.setattr(store, "_put_bytes_sync", held)
    done: list[str] = []

    async def put(key: str) -> None:
        await store.put_bytes(key, b"x", DEFERRED)
        done.append(key)

    first_scope = trio.CancelScope()

    async def put_first() -> None:
        with first_scope:
            await put("first")

    async with trio.open_nursery() as nursery:
        nursery.cancel_scope.deadline = trio.current_time() + 30  # never hang
        nursery.start_soon(put_first)
        await trio.testing.wait_all_tasks_blocked()  # "first" runs its batch, held
        nursery.start_soon(put, "second")
        nursery.start_soon(put, "third")
        await trio.testing.wait_all_tasks_blocked()  # both queued behind it
        first_scope.cancel()
        release.set()
    assert not nursery.cancel_scope.cancelled_caught
    assert sorted(done) == ["first", "second", "third"]
    assert files_under(tmp_path / "dest") == {"first", "second", "third"}


async def test_cancelled_caller_withdraws_a_write_not_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller cancelled while its write is still queued behind a running batch
    withdraws it: Cancelled, and the file is never written (so a run stopped by its
    budget reports every target it wrote)."""
    import threading

    import trio
    import trio.testing

    store = LocalStore(tmp_path / "dest")
    release = threading.Event()
    real = store._put_bytes_sync

    def held(key: str, path: Path, data: bytes, durable: bool = True) -> None:
        if key == "first":
            release.wait(10)
        real(key, path, data, durable)

    monkeypatch.setattr(store, "_put_bytes_sync", held)
    queued_scope = trio.CancelScope()
    finished: list[str] = []

    async def put_queued() -> None:
        with queued_scope:
            await store.put_bytes("queued", b"x", DEFERRED)
            finished.append("queued")

    async with trio.open_nursery() as nursery:
        nursery.cancel_scope.deadline = trio.current_time() + 30  # never hang
        nursery.start_soon(store.put_bytes, "first", b"x", DEFERRED)
        await trio.testing.wait_all_tasks_blocked()  # "first" runs its batch, held
        nursery.start_soon(put_queued)
        await trio.testing.wait_all_tasks_blocked()  # queued behind it
        queued_scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        release.set()
    assert not nursery.cancel_scope.cancelled_caught
    assert queued_scope.cancelled_caught
    assert finished == []
    assert files_under(tmp_path / "dest") == {"first"}


def _counting(monkeypatch: pytest.MonkeyPatch, *names: str) -> dict[str, int]:
    """Count calls of the ``os`` functions ``names`` (they still run)."""
    counts = dict.fromkeys(names, 0)
    for name in names:
        real = getattr(os, name)

        def counted(*args: Any, _real: Any = real, _name: str = name, **kw: Any) -> Any:
            counts[_name] += 1
            return _real(*args, **kw)

        monkeypatch.setattr(os, name, counted)
    return counts


async def test_a_new_key_is_one_link_and_an_existing_one_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key that does not exist yet is written unnamed and linked under its name: no
    rename, no temporary name. A key that exists is replaced the usual way (a
    temporary file renamed over it), without writing an unnamed file first."""
    store = LocalStore(tmp_path)
    counts = _counting(monkeypatch, "link", "replace")
    await store.put_bytes("targets/a.bin", b"new", PutOptions(durable=False))
    assert counts == {"link": 1, "replace": 0}
    await store.put_bytes("targets/a.bin", b"newer", PutOptions(durable=False))
    assert counts == {"link": 1, "replace": 1}  # the name was taken: no link tried
    assert (tmp_path / "targets" / "a.bin").read_bytes() == b"newer"
    assert files_under(tmp_path) == {"targets/a.bin"}


async def test_a_filesystem_without_unnamed_files_gets_the_two_step_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where ``O_TMPFILE`` is refused (EOPNOTSUPP: an older filesystem), writes go
    through a temporary name and a rename, and the store does not ask again."""
    store = LocalStore(tmp_path)
    attempts: list[str] = []
    real_open = os.open

    def open_(path: Any, flags: int, *args: Any, **kw: Any) -> int:
        if flags & os.O_TMPFILE == os.O_TMPFILE:
            attempts.append(os.fspath(path))
            raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(os, "open", open_)
    await store.put_bytes("targets/a.bin", b"a", PutOptions(durable=False))
    await store.put_bytes("targets/b.bin", b"b", PutOptions(durable=True))
    assert len(attempts) == 1
    assert (tmp_path / "targets" / "a.bin").read_bytes() == b"a"
    assert (tmp_path / "targets" / "b.bin").read_bytes() == b"b"
    assert files_under(tmp_path) == {"targets/a.bin", "targets/b.bin"}
