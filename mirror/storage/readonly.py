"""Read-only stores: ``ReadOnlyBase`` (the refused writes, for any read-only view)
and ``ReadOnlyStore`` (a store that can only be read, for audits).

``tuf-mirror verify`` opens the destination through ``ReadOnlyStore``, so an audit
needs read access only (a read-only mount, S3 credentials without
``s3:PutObject``) and cannot write by mistake: every write method raises
``RuntimeError`` (a caller bug, not a storage condition). ``spool_dir`` is refused
too: a local store creates ``DEST/.tuf-mirror/spool`` on demand. The air-gap
views (``mirror.airgap.views``) refuse writes through the same ``ReadOnlyBase``.

What it does not do: check permissions or translate errors; reads go to the wrapped
store unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mirror.storage.base import PutOptions
from mirror.storage.delegating import DelegatingStore

__all__ = ["ReadOnlyBase", "ReadOnlyStore"]


class ReadOnlyBase:
    """The write half of a read-only ``Store``: every write is a ``RuntimeError``
    naming ``url``; ``flush`` has nothing to do."""

    url: str

    async def put_bytes(self, key: str, data: bytes, options: PutOptions) -> None:
        raise self._refused("put", key)

    async def put_file(self, key: str, path: Path, options: PutOptions) -> None:
        raise self._refused("put", key)

    async def create_exclusive(self, key: str, data: bytes) -> bool:
        raise self._refused("create", key)

    async def delete(self, key: str) -> None:
        raise self._refused("delete", key)

    async def delete_many(self, keys: Sequence[str]) -> None:
        more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
        raise self._refused("delete", ", ".join(keys[:3]) + more)

    def spool_dir(self) -> Path:
        raise self._refused("spool in", ".tuf-mirror/spool")

    async def flush(self) -> None:
        """Nothing was written."""

    def _refused(self, action: str, key: str) -> RuntimeError:
        return RuntimeError(f"read-only store {self.url}: refused to {action} {key}")


class ReadOnlyStore(ReadOnlyBase, DelegatingStore):
    """``inner`` for reading; every write is a ``RuntimeError``. ``aclose`` closes
    ``inner``."""
