"""The extension points of the sync engine: what it calls on a ledger witness
(``Witness``) and on a trust-policy gate (``Gate``), and what it hands the gate
before publishing (``PublishContext``).

The engine (``sync`` and its phase modules) depends on these Protocols only, never
on ``mirror.ledger`` or ``mirror.policy``: the implementations
(``mirror.ledger.witness.RunWitness``, ``mirror.policy.gate.PolicyGate``) are
plugged in by ``run_sync`` from an ``Extensions`` value (the standard one is
``mirror.extensions.STANDARD``).

``consult_gate`` is the engine's one call into a gate before publishing.

What this module does not do: implement any hook, or decide anything itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from mirror.published import PublishedCheck
from mirror.refresh import RollbackWitness

if TYPE_CHECKING:
    from mirror.config import Settings
    from mirror.filters import TargetFilter
    from mirror.plan import RoleChange, TargetCopy
    from mirror.published import Published
    from mirror.refresh import Refreshed
    from mirror.report import RunReport
    from mirror.storage import Store
    from mirror.trust import TargetFile, TrustedSet

__all__ = [
    "Extensions",
    "Gate",
    "GateOpener",
    "PublishContext",
    "RoleSource",
    "Witness",
    "WitnessOpener",
    "consult_gate",
]


class Witness(PublishedCheck, RollbackWitness, Protocol):
    """The ledger's part in a run (``mirror.ledger.witness.RunWitness``)."""

    async def recover(self, published: Published) -> None:
        """Commit the pending record of a run that published but did not commit."""

    async def begin(self, new: TrustedSet, changes: Sequence[RoleChange] = ()) -> None:
        """A cycle's walk starts (a restarted cycle starts its record over);
        ``changes``: the roles whose version the new snapshot changes."""

    async def observe_meta(self, *, name: str, role: str, version: int, data: bytes) -> None:
        """A verified role version this run publishes."""

    async def observe_targets(self, role: str, targets: Iterable[tuple[TargetFile, bool]]) -> None:
        """The targets a changed role lists and is authoritative for, in its order,
        each with ``published`` (this run makes it present): one call per role."""

    async def alarm(self, kind: str, subject: str, recorded: Any, observed: Any) -> object:
        """Raise an alarm of ``kind`` about ``subject``."""

    async def before_publish(
        self, refreshed: Refreshed, published: Published, pinned: bytes
    ) -> None:
        """Apply ``--on-alarm`` and record the pending entries, before any write."""

    async def after_publish(self) -> object:
        """Commit this run's entries after the publish."""


class RoleSource(Protocol):
    """Reads a role version from the destination or the upstream (``walk.RoleLoader``)."""

    async def role_bytes(
        self, role: str, version: int, *, changed: bool, consistent: bool
    ) -> tuple[bytes, bool]:
        """(bytes, whether they came from the destination)."""
        ...


@dataclass(frozen=True, slots=True)
class PublishContext:
    """What a gate sees of a run just before its publish."""

    #: the refreshed trusted set (its snapshot may still be unset)
    trusted: TrustedSet
    published: Published
    #: roles whose version changed in the snapshot this run publishes
    changed_roles: Collection[str]
    target_filter: TargetFilter
    roles: RoleSource
    #: copy one target now (counted in the run's results and report)
    copy_target: Callable[[TargetCopy], Awaitable[None]]
    report: RunReport


class Gate(Protocol):
    """Decides which targets are published (``mirror.policy.gate.PolicyGate``)."""

    @property
    def alarms(self) -> Mapping[str, Mapping[str, Any]]:
        """path -> alarm (``repositories``, ``verdict``): a party stopped vouching."""
        ...

    def fingerprint(self) -> str:
        """Joins the target selection's fingerprint (a change re-decides every target)."""
        ...

    def admit(self, role: str, target: TargetFile) -> bool:
        """Whether ``target`` (listed by ``role``) is copied."""
        ...

    async def before_publish(self, context: PublishContext) -> None:
        """Last decisions before anything is published; may copy targets."""


class WitnessOpener(Protocol):
    """Opens the witness of one run (``mirror.ledger.run.witnessed``)."""

    def __call__(
        self, settings: Settings, *, now: datetime, destination: Store, report: RunReport
    ) -> AbstractAsyncContextManager[Witness]: ...


class GateOpener(Protocol):
    """Opens the policy gate of one run (``mirror.policy.open_gate``)."""

    def __call__(
        self, settings: Settings, store: Store, *, now: datetime, report: RunReport, dry_run: bool
    ) -> AbstractAsyncContextManager[Gate]: ...


@dataclass(frozen=True, slots=True)
class Extensions:
    """What ``run_sync`` plugs into the engine (None: not available)."""

    #: entered for every run that publishes (not ``plan``)
    witness: WitnessOpener | None = None
    #: entered when ``--policy`` is set
    gate: GateOpener | None = None


async def consult_gate(gate: Gate, context: PublishContext, *, witness: Witness | None) -> None:
    """The gate's last decisions before the publish (it may copy targets); a party
    that stopped vouching is also a witness alarm (``VOUCH_WITHDRAWN``, issue 14)."""
    await gate.before_publish(context)
    if witness is not None:
        for path, alarm in sorted(gate.alarms.items()):
            await witness.alarm("VOUCH_WITHDRAWN", path, alarm["repositories"], alarm["verdict"])
