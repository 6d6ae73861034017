"""``verify`` audits a destination it cannot write to, fails on expired top-level
metadata, and names missing and corrupt files on stderr; ``sync --repair`` fetches
exactly those files again."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mirror.cli import main
from mirror.errors import ExitStatus
from mirror.storage.base import PutOptions
from mirror.storage.memory import MemoryStore
from mirror.storage.readonly import ReadOnlyStore
from tests.sync.conftest import Env, tree

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


@contextmanager
def read_only_filesystem(monkeypatch: pytest.MonkeyPatch, root: Path) -> Iterator[list[str]]:
    """Every attempt to open for writing, create, rename, link, delete or mkdir under
    ``root`` fails with EROFS (as on a read-only mount; root ignores chmod). Yields
    the refused attempts."""
    base = str(root.resolve())
    refused: list[str] = []
    real_open = os.open

    def under(path: object) -> bool:
        return isinstance(path, str | os.PathLike) and os.path.abspath(os.fspath(path)).startswith(
            base
        )

    def refuse(path: object) -> OSError:
        refused.append(str(path))
        return OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    def open_(path: str | os.PathLike[str], flags: int, *args: int, **kw: int) -> int:
        if flags & _WRITE_FLAGS and under(path):
            raise refuse(path)
        return real_open(path, flags, *args, **kw)

    def refusing(real: object) -> object:
        def call(path: object, *args: object, **kw: object) -> object:
            if under(path):
                raise refuse(path)
            return real(path, *args, **kw)  # type: ignore[operator]

        return call

    with monkeypatch.context() as patch:
        patch.setattr(os, "open", open_)
        for name in ("mkdir", "unlink", "replace", "rename", "link", "rmdir"):
            patch.setattr(os, name, refusing(getattr(os, name)))
        yield refused


def verify(env: Env, *extra: str) -> int:
    return main(["verify", "--root", str(env.root_file), "--dest", str(env.dest), *extra])


def target_requests(env: Env) -> list[str]:
    return [r.path for r in env.server.requests if r.path.startswith("/targets/")]


def test_verify_on_a_read_only_destination(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """verify passes on a good mirror whose filesystem refuses every write (no lock,
    no spool directory, nothing created), and leaves it byte for byte unchanged."""
    assert env.run() == ExitStatus.OK
    before = tree(env.dest, internal=True)
    with read_only_filesystem(monkeypatch, env.dest) as refused:
        assert verify(env) == ExitStatus.OK
    assert refused == []
    assert tree(env.dest, internal=True) == before


async def test_the_read_only_store_refuses_every_write() -> None:
    """ReadOnlyStore (what verify opens) passes reads through and makes every write
    a RuntimeError (a bug in the caller, never a silent write)."""
    inner = MemoryStore()
    await inner.put_bytes("a", b"x", PutOptions())
    store = ReadOnlyStore(inner)
    assert await store.get("a", max_length=10) == b"x"
    for attempt in (
        store.put_bytes("b", b"y", PutOptions()),
        store.create_exclusive("b", b"y"),
        store.delete("a"),
    ):
        with pytest.raises(RuntimeError, match="read-only"):
            await attempt
    with pytest.raises(RuntimeError, match="read-only"):
        store.spool_dir()
    assert await inner.head("b") is None


def test_verify_lists_missing_and_corrupt_on_stderr_and_repair_fixes_them(
    env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A deleted and a corrupted target: verify exits 1 and names both on stderr
    (not only in --json); sync --repair fetches exactly those two targets, verified,
    and the mirror is byte-identical again; verify then passes."""
    assert env.run() == ExitStatus.OK
    targets = sorted(p for p in (env.dest / "targets").rglob("*") if p.is_file())
    deleted, corrupted = targets[3], targets[17]
    deleted.unlink()
    corrupted.write_bytes(b"not the signed bytes\n")
    capsys.readouterr()

    assert verify(env) == ExitStatus.VERIFICATION_FAILED
    err = capsys.readouterr().err
    rel = lambda p: p.relative_to(env.dest).as_posix()  # noqa: E731 - two uses, local
    assert f"missing: {rel(deleted)}" in err
    assert f"corrupt: {rel(corrupted)}" in err
    assert "1 missing, 1 corrupt" in err

    report = tmp_path / "report.json"
    assert env.run("sync", "--repair", "--report", str(report)) == ExitStatus.OK
    fetched = target_requests(env)
    assert len(fetched) == 2, fetched
    assert {p.lstrip("/") for p in fetched} == {rel(deleted), rel(corrupted)}
    assert tree(env.dest) == tree(env.upstream)
    assert len(json.loads(report.read_text())["repaired"]) == 2
    assert verify(env) == ExitStatus.OK


def test_repair_of_a_sound_mirror_fetches_nothing(env: Env) -> None:
    """--repair on a mirror with nothing damaged reads it and downloads no target."""
    assert env.run() == ExitStatus.OK
    assert env.run("sync", "--repair") == ExitStatus.OK
    assert target_requests(env) == []


def test_verify_fails_on_an_expired_timestamp(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """A mirror whose published timestamp has expired (validly signed, as an upstream
    that stopped re-signing leaves it) is one clients refuse: verify exits 1 and
    says which role expired when, on stderr and in --json."""
    assert env.run() == ExitStatus.OK
    past = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)

    def expire(metadata: Any) -> None:
        metadata.signed.expires = past

    (env.dest / "metadata/timestamp.json").write_bytes(env.repo.forge("timestamp", expire))
    capsys.readouterr()

    assert verify(env, "--json") == ExitStatus.VERIFICATION_FAILED
    out, err = capsys.readouterr()
    version = env.repo.version("timestamp")
    assert f"expired: timestamp v{version} expired at {past:%Y-%m-%dT%H:%M:%SZ}" in err
    assert "FAILED" in err.splitlines()[-1]
    assert json.loads(out)["expired_top_level"] == [
        f"timestamp v{version} expired at {past:%Y-%m-%dT%H:%M:%SZ}"
    ]
