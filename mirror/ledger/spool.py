"""The entries a run is about to record, spooled to two local files.

``<name>.jsonl`` holds one canonical entry per line: it is the body of the pending
record (``LedgerLog.put_pending``) and the leaves of the commit.
``<name>.keys`` holds, line for line, each entry's index key as a JSON string, so
the commit indexes the entries without parsing them again. Appends are
synchronous (a list in memory); the files are written in one thread hop per
``DRAIN`` bytes, and the commit reads them back in batches of ``BATCH`` lines, one
thread hop each: memory stays bounded whatever the number of entries.

What it does not do: decide what to record (``witness``) or append to the ledger
(``log``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Final

import trio

__all__ = ["EntrySpool"]


class EntrySpool:
    """Canonical entry lines and their keys, appended in memory, kept on disk."""

    #: bytes buffered before one thread hop writes them
    DRAIN: Final = 1 << 20
    #: entries read back per thread hop
    BATCH: Final = 4096

    def __init__(self, directory: Path, name: str) -> None:
        self.path = directory / f"{name}.jsonl"
        self.keys_path = directory / f"{name}.keys"
        self.count = 0
        #: thread hops that wrote to the files (tests count them)
        self.writes = 0
        self._entries: list[bytes] = []
        self._keys: list[bytes] = []
        self._buffered = 0
        self._files: tuple[IO[bytes], IO[bytes]] | None = None

    async def open(self) -> None:
        """Create (or truncate) both files."""

        def create() -> tuple[IO[bytes], IO[bytes]]:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return self.path.open("wb"), self.keys_path.open("wb")

        self._files = await trio.to_thread.run_sync(create)

    def append(self, raw: bytes, key_json: bytes) -> bool:
        """Add one entry (canonical bytes) and its key (``json_string``); True when
        the buffer is due for ``drain``."""
        self._entries.append(raw)
        self._keys.append(key_json)
        self._buffered += len(raw)
        self.count += 1
        return self._buffered >= self.DRAIN

    async def drain(self) -> None:
        """Write the buffered entries and keys (one thread hop), and flush them."""
        files = self._files
        assert files is not None, "EntrySpool.open first"
        entries, keys = self._entries, self._keys
        self._entries, self._keys, self._buffered = [], [], 0

        def write() -> None:
            if entries:
                files[0].write(b"\n".join(entries) + b"\n")
                files[1].write(b"\n".join(keys) + b"\n")
            files[0].flush()
            files[1].flush()

        self.writes += 1
        await trio.to_thread.run_sync(write)

    async def reset(self) -> None:
        """Forget every entry (a restarted cycle records its own)."""
        await self._close()
        self._entries, self._keys, self._buffered, self.count = [], [], 0, 0
        await self.open()

    async def _close(self) -> None:
        files, self._files = self._files, None
        if files is not None:

            def close() -> None:
                files[0].close()
                files[1].close()

            await trio.to_thread.run_sync(close)

    async def batches(self) -> AsyncIterator[list[tuple[bytes, bytes]]]:
        """Every entry and its key, in order, ``BATCH`` at a time (drained first)."""
        await self.drain()
        entries, keys = await trio.to_thread.run_sync(
            lambda: (self.path.open("rb"), self.keys_path.open("rb"))
        )

        def take() -> list[tuple[bytes, bytes]]:
            out = []
            for _ in range(self.BATCH):
                raw = entries.readline()
                if not raw:
                    break
                out.append((raw.rstrip(b"\n"), keys.readline().rstrip(b"\n")))
            return out

        try:
            while batch := await trio.to_thread.run_sync(take):
                yield batch
        finally:
            entries.close()
            keys.close()

    async def aclose(self) -> None:
        """Close and remove both files."""
        await self._close()
        for path in (self.path, self.keys_path):
            await trio.Path(path).unlink(missing_ok=True)
