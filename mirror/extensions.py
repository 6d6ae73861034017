"""The standard extensions of a sync run: the ledger's witness and the trust-policy
gate, opened by ``run_sync`` through ``hooks.Extensions``.

Their modules are imported only when a run opens them (a run without ``--policy``
never imports ``mirror.policy``).

What this module does not do: implement either extension (``mirror.ledger``,
``mirror.policy``), or decide when they are opened (``sync.run_sync``).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import TYPE_CHECKING

from mirror.hooks import Extensions

if TYPE_CHECKING:
    from mirror.config import Settings
    from mirror.hooks import Gate, Witness
    from mirror.report import RunReport
    from mirror.storage import Store

__all__ = ["STANDARD"]


def open_witness(
    settings: Settings, *, now: datetime, destination: Store, report: RunReport
) -> AbstractAsyncContextManager[Witness]:
    from mirror.ledger.run import witnessed

    return witnessed(settings, now=now, destination=destination, report=report)


def open_gate(
    settings: Settings, store: Store, *, now: datetime, report: RunReport, dry_run: bool
) -> AbstractAsyncContextManager[Gate]:
    from mirror.policy import open_gate

    return open_gate(settings, store, now=now, report=report, dry_run=dry_run)


#: what ``sync`` and ``plan`` run with
STANDARD = Extensions(witness=open_witness, gate=open_gate)
