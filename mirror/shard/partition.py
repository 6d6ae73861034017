"""Which shard a target belongs to: a stable hash of the exact bytes of its path.

``shard_of(path, count)`` is the first 8 bytes of the SHA-256 of the path's UTF-8
bytes, read as a big-endian integer, modulo ``count``. It is the same in every
process, on every machine and in every Python version (no ``hash()`` and its
per-process salt), and it looks at the exact bytes: TUF target paths are
case-sensitive and compared byte for byte, so ``A.txt`` and ``a.txt``, or the NFC
and NFD spellings of ``café``, are different targets and may land in different
shards — each in exactly one.

Pure: no I/O. What it does not do: read or write manifests (``mirror.shard.manifest``).
"""

from __future__ import annotations

import hashlib
from typing import Final

#: the partition scheme, recorded in every run so that a later change of this
#: function can never silently repartition a run planned with the old one
SCHEME: Final = "sha256-u64be-mod"
#: more shards than an AWS Batch array job can have (10,000) serve no scheduler
MAX_SHARDS: Final = 10_000


def shard_of(path: str, count: int) -> int:
    """The shard (``0 <= shard < count``) of the target ``path``."""
    if not 1 <= count <= MAX_SHARDS:
        raise ValueError(f"shard count {count} is not between 1 and {MAX_SHARDS}")
    # surrogatepass: a path is whatever the metadata's JSON string held; a lone
    # surrogate still has one exact encoding, and it must not crash the planner.
    digest = hashlib.sha256(path.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % count


__all__ = ["MAX_SHARDS", "SCHEME", "shard_of"]
