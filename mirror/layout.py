"""Destination key names: where a published mirror keeps its metadata, its targets
and its own bookkeeping.

Every module that reads or writes the destination by name takes the names from
here (``meta_key("timestamp.json")`` → ``metadata/timestamp.json``). Pure: no I/O.

What this module does not do: encode role names or target paths into file names
(``mirror.trust.metadata_filename`` / ``target_filenames``), or know about
storage backends (``mirror.storage``).
"""

from __future__ import annotations

from typing import Final

__all__ = ["METADATA", "POLICY_STATE_KEY", "STATE_KEY", "TARGETS", "meta_key", "target_key"]

#: the prefix of published metadata files
METADATA: Final = "metadata"
#: the prefix of published target files
TARGETS: Final = "targets"
#: the run's bookkeeping (walk hints, validators, publish history); not client-visible
STATE_KEY: Final = ".tuf-mirror/state.json"
#: the trust policy's bookkeeping (held-back targets, votes; ``mirror.policy.gate``)
POLICY_STATE_KEY: Final = ".tuf-mirror/policy.json"


def meta_key(name: str) -> str:
    """The destination key of the metadata file ``name`` (e.g. ``3.root.json``)."""
    return f"{METADATA}/{name}"


def target_key(name: str) -> str:
    """The destination key of the target file ``name`` (as ``target_filenames`` gives it)."""
    return f"{TARGETS}/{name}"
