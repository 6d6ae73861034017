"""``tuf-mirror`` whose metadata writes to a local destination each take 300 ms
longer and touch the file named by ``SLOW_PUBLISH_MARKER`` first: the fault
injection that lets the signal tests stop a run while it publishes. Run as
``python -m tests.sync.slow_publish_cli sync ...`` from the repository root."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import trio

from mirror.cli import main
from mirror.storage.base import PutOptions
from mirror.storage.local import LocalStore

_put_bytes = LocalStore.put_bytes
_put_file = LocalStore.put_file


async def _mark_and_wait(key: str) -> None:
    if key.startswith("metadata/"):
        await trio.Path(os.environ["SLOW_PUBLISH_MARKER"]).touch()
        await trio.sleep(0.3)


async def _slow_put_bytes(self: LocalStore, key: str, data: bytes, options: PutOptions) -> None:
    await _mark_and_wait(key)
    await _put_bytes(self, key, data, options)


async def _slow_put_file(self: LocalStore, key: str, path: Path, options: PutOptions) -> None:
    await _mark_and_wait(key)
    await _put_file(self, key, path, options)


def _run() -> int:
    LocalStore.put_bytes = _slow_put_bytes  # type: ignore[method-assign]
    LocalStore.put_file = _slow_put_file  # type: ignore[method-assign]
    return main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(_run())
