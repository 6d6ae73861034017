"""The mirror's memory: a verifiable, append-only ledger of everything it published.

- ``merkle``, ``frontier``, ``note``, ``entries``: pure (no I/O): RFC 6962 hashing and
  proofs, the tree's right edge, C2SP signed notes and checkpoints, entry formats;
- ``keys``: witness keys (PEM, C2SP verifier keys);
- ``log``: the ledger's storage behind any ``Store`` (entry bundles, index shards,
  checkpoints moved by compare-and-swap);
- ``spool``: a run's entries (and their index keys) on local disk until its commit;
- ``witness``: the ledger inside a sync or import run (tamper checks, alarms, commit);
- ``run``: opening the ledger from the settings; ``commands``: ``tuf-mirror ledger``
  and ``tuf-mirror witness``.
"""

from __future__ import annotations
