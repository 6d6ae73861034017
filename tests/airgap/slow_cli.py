"""``tuf-mirror`` whose bundle reads of targets each take 200 ms longer: the fault
injection of the import kill test (like the loopback server's ``Fault.delay`` for
sync), so a SIGKILL lands while targets are being copied. Run as
``python -m tests.airgap.slow_cli import ...``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import trio

from mirror.airgap.fetcher import BundleFetcher
from mirror.cli import main
from mirror.fetch.base import FetchedFile

_fetch_to_file = BundleFetcher.fetch_to_file


async def _slow_fetch_to_file(self: BundleFetcher, *args: Any, **kwargs: Any) -> FetchedFile:
    await trio.sleep(0.2)
    return await _fetch_to_file(self, *args, **kwargs)


def _run() -> int:
    BundleFetcher.fetch_to_file = _slow_fetch_to_file  # type: ignore[method-assign]
    return main(sys.argv[1:])


if __name__ == "__main__":
    assert Path.cwd().joinpath("mirror").is_dir(), "run from the repository root"
    sys.exit(_run())
