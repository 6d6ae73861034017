"""Air-gapped bulk transfer: ``tuf-mirror export`` and ``tuf-mirror import``.

On the connected side, ``export`` verifies the upstream exactly as ``sync`` does and
writes a *bundle* — a directory or ``.tar`` volumes — holding what the far side
lacks (new root versions, the current timestamp and snapshot, changed roles, new
targets) and a manifest (base state, brought state, every file's length and sha256).
On the disconnected side, ``import`` checks the bundle, checks that its base is the
destination's state, and runs the same sync engine with the bundle as upstream, so
everything is verified again from the pinned root; it then writes a *receipt* to
carry back for the next ``export --since``. Nothing on the transport is trusted.

Modules: ``state`` (state names, receipts), ``manifest`` (the manifest format),
``volumes`` (bundles on disk: checking and writing), ``fetcher`` (a checked bundle
as an upstream), ``views`` (read-only stores for the engine), ``exporter`` and
``importer`` (the commands). Verification itself is ``mirror.trust`` through
``mirror.sync``; nothing here re-implements it.
"""

from mirror.airgap.exporter import default_state_dir, run_export
from mirror.airgap.importer import check_base, run_import
from mirror.airgap.manifest import Manifest
from mirror.airgap.report import BundleReport
from mirror.airgap.state import StateRecord, StateRef

__all__ = [
    "BundleReport",
    "Manifest",
    "StateRecord",
    "StateRef",
    "check_base",
    "default_state_dir",
    "run_export",
    "run_import",
]
