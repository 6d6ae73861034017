"""Fixtures of the ledger tests: every storage backend (memory, local, S3 on moto),
and the sync tests' generated upstream served on 127.0.0.1."""

from __future__ import annotations

from tests.storage.conftest import store
from tests.sync.conftest import env

__all__ = ["env", "store"]
