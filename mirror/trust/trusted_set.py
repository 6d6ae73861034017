"""The TUF client workflow (specification §5.3-5.6) as a state machine over bytes.

``TrustedSet`` starts from a trusted root and accepts, in workflow order, new root
versions, timestamp, snapshot, targets and delegated targets roles. Each ``update_*``
takes bytes, verifies them against what is already trusted (signature thresholds,
versions, rollback, expiry against the injected ``now``, lengths and hashes) and
returns a ``Verified`` holding the exact input bytes, or raises a
``mirror.errors.VerificationError`` subclass. Calling steps out of order is a caller
bug and raises ``RuntimeError``.

Local ("trusted") copies follow the same path as fresh downloads, with
``trusted=True`` skipping only the length/hash comparison against the referencing
metadata (a local copy may be an older version than the one referenced). A local copy
that no longer verifies, e.g. after the root rotated the timestamp or snapshot keys,
is simply not accepted, so it is not used as a rollback floor (fast-forward
recovery). A local copy that verifies but is expired or of another version than
referenced *is* kept as the rollback reference, and then the step raises, exactly as
the specification orders the checks.

What this module does not do: fetching, reading or writing files, reading the clock,
deciding that a missing next root means "no new root" (the caller's policy), and
searching delegations (``mirror.trust.delegations``). To keep memory bounded on
repositories with thousands of delegated roles, it keeps only the top-level
metadata, the ``Targets`` of delegated roles that delegate further (delegators are
needed to verify their children), and the version of every verified role.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mirror.errors import (
    BadVersionError,
    DelegationError,
    ExpiredMetadataError,
    OversizeError,
    RollbackError,
    RootRotationLimitError,
)
from mirror.trust._tuf import Metadata, MetaFile, Root, Snapshot, Targets, Timestamp
from mirror.trust._verify import check_threshold, parse_with_payload, signed_payload
from mirror.trust.names import validate_role_name
from mirror.trust.targets import check_meta
from mirror.trust.verified import Limits, Verified

__all__ = ["EqualVersionError", "TrustedSet"]

_TOP_LEVEL = frozenset({"root", "timestamp", "snapshot", "targets"})


class EqualVersionError(Exception):
    """The new timestamp has the version already trusted: there is nothing new.

    Not a ``MirrorError``: callers catch it to mean "keep the trusted timestamp and go
    on with the local snapshot and targets". The trusted timestamp is unchanged.
    """


def _fmt(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class TrustedSet:
    """Verified TUF metadata of one repository, updated step by step.

    ``now`` is the reference time for every expiry check (tz-aware). With
    ``expired_delegated_ok`` (mirror mode), an expired *delegated* targets role is
    accepted if it verifies in every other respect and its name is recorded in
    ``expired_delegated``; top-level metadata expiry always fails.
    """

    def __init__(
        self,
        root_bytes: bytes,
        *,
        now: datetime,
        limits: Limits | None = None,
        expired_delegated_ok: bool = False,
    ) -> None:
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("now must be timezone-aware")
        self.now = now.astimezone(UTC)
        self.limits = limits if limits is not None else Limits()
        self.expired_delegated_ok = expired_delegated_ok
        self.expired_delegated: list[str] = []
        self._rotations = 0
        self._timestamp: Verified[Timestamp] | None = None
        self._snapshot: Verified[Snapshot] | None = None
        self._targets: Verified[Targets] | None = None
        self._delegators: dict[str, Targets] = {}
        self._role_versions: dict[str, int] = {}

        self._check_cap("root", root_bytes, self.limits.max_root_length)
        root: Metadata[Root]
        root, fast = parse_with_payload(root_bytes, "root", "root")
        what = f"root v{root.signed.version}"
        payload = signed_payload(root, what, fast)
        self._check_root_signatures(what, root, payload, root.signed, by=what)
        self._root: Verified[Root] = Verified(root_bytes, root, "root")

    # -- accessors ---------------------------------------------------------------

    @property
    def root(self) -> Verified[Root]:
        """The trusted root (the last one accepted by ``update_root``)."""
        return self._root

    @property
    def timestamp(self) -> Verified[Timestamp] | None:
        """The trusted timestamp, if one was accepted."""
        return self._timestamp

    @property
    def snapshot(self) -> Verified[Snapshot] | None:
        """The trusted snapshot, if one was accepted."""
        return self._snapshot

    @property
    def targets(self) -> Verified[Targets] | None:
        """The trusted top-level targets, if accepted."""
        return self._targets

    @property
    def consistent_snapshot(self) -> bool:
        """Whether the trusted root declares consistent snapshots."""
        return bool(self._root.signed.consistent_snapshot)

    def role_meta(self, role: str) -> MetaFile | None:
        """The trusted snapshot's entry for a targets role (``None`` if not listed)."""
        if self._snapshot is None:
            raise RuntimeError("no trusted snapshot")
        return self._snapshot.signed.meta.get(f"{role}.json")

    def role_version(self, role: str) -> int | None:
        """The version of a delegated role verified in this set, if any."""
        if role == "targets":
            return None if self._targets is None else self._targets.version
        return self._role_versions.get(role)

    def delegator(self, role: str) -> Targets | None:
        """The verified ``Targets`` of ``role`` if it delegates ("targets" included)."""
        if role == "targets":
            return None if self._targets is None else self._targets.signed
        return self._delegators.get(role)

    def forget_role(self, role: str) -> None:
        """Release what is kept for a delegated role (its version and delegations)."""
        self._delegators.pop(role, None)
        self._role_versions.pop(role, None)

    # -- root ----------------------------------------------------------------------

    def update_root(self, data: bytes) -> Verified[Root]:
        """Accept root version N+1, signed by a threshold of root keys of both version N
        and N+1. Expiry of this root is not checked here (see
        ``check_root_not_expired``)."""
        if self._timestamp is not None:
            raise RuntimeError("cannot update root after timestamp")
        old = self._root.signed
        expected = old.version + 1
        what = f"root v{expected}"
        if self._rotations >= self.limits.max_root_rotations:
            raise RootRotationLimitError(
                f"{what}: more than {self.limits.max_root_rotations} root updates in one run"
            )
        self._check_cap(what, data, self.limits.max_root_length)
        new: Metadata[Root]
        new, fast = parse_with_payload(data, "root", what)
        payload = signed_payload(new, what, fast)
        self._check_root_signatures(what, new, payload, old, by=f"trusted root v{old.version}")
        if new.signed.version != expected:
            raise BadVersionError(
                f"{what}: file holds version {new.signed.version}, expected {expected}"
            )
        self._check_root_signatures(what, new, payload, new.signed, by=f"root v{expected}")
        self._root = Verified(data, new, "root")
        self._rotations += 1
        return self._root

    def check_root_not_expired(self) -> None:
        """The final root freeze check: raise ``ExpiredMetadataError`` if the trusted
        root has expired."""
        root = self._root.signed
        if root.is_expired(self.now):
            raise ExpiredMetadataError(
                f"root v{root.version}: expired at {_fmt(root.expires)} (now {_fmt(self.now)})"
            )

    # -- timestamp -----------------------------------------------------------------

    def update_timestamp(self, data: bytes) -> Verified[Timestamp]:
        """Accept a timestamp signed by the root's timestamp keys.

        Raises ``RollbackError`` for a lower version or a lower snapshot version than
        the trusted timestamp lists, and ``EqualVersionError`` (trusted timestamp kept)
        for the same version. A new timestamp becomes trusted before its expiry is
        checked, so an expired one still serves as the rollback reference.
        """
        if self._snapshot is not None:
            raise RuntimeError("cannot update timestamp after snapshot")
        self.check_root_not_expired()
        what = "timestamp"
        self._check_cap(what, data, self.limits.max_timestamp_length)
        new: Metadata[Timestamp]
        new, fast = parse_with_payload(data, "timestamp", what)
        what = f"timestamp v{new.signed.version}"
        self._check_top_level_signatures(what, new, "timestamp", fast)
        if self._timestamp is not None:
            old = self._timestamp.signed
            if new.signed.version < old.version:
                raise RollbackError(
                    f"{what}: version is lower than trusted timestamp v{old.version}"
                )
            if new.signed.version == old.version:
                raise EqualVersionError(f"{what}: same version as the trusted timestamp")
            new_snap = new.signed.snapshot_meta.version
            old_snap = old.snapshot_meta.version
            if new_snap < old_snap:
                raise RollbackError(
                    f"{what}: lists snapshot v{new_snap}, lower than v{old_snap} "
                    f"listed by trusted timestamp v{old.version}"
                )
        self._timestamp = Verified(data, new, "timestamp")
        self._check_expiry(what, new.signed.expires)
        return self._timestamp

    # -- snapshot ------------------------------------------------------------------

    def update_snapshot(self, data: bytes, *, trusted: bool = False) -> Verified[Snapshot]:
        """Accept a snapshot signed by the root's snapshot keys.

        Unless ``trusted`` (a local copy), the bytes must match the length and hashes
        timestamp lists. No role listed in the trusted snapshot may be dropped or get
        a lower version (``RollbackError``). The snapshot becomes trusted before the
        final checks (expiry, version equal to the one timestamp lists), so an older
        local snapshot still serves as the rollback reference.
        """
        if self._timestamp is None:
            raise RuntimeError("cannot update snapshot before timestamp")
        if self._targets is not None:
            raise RuntimeError("cannot update snapshot after targets")
        self._check_timestamp_fresh()
        meta = self._timestamp.signed.snapshot_meta
        what = "snapshot"
        if trusted:
            self._check_cap(what, data, self.limits.max_snapshot_length)
        else:
            self._check_cap(what, data, self.limits.snapshot_max(self._timestamp.signed))
            check_meta(f"snapshot v{meta.version}", meta, data)
        new: Metadata[Snapshot]
        new, fast = parse_with_payload(data, "snapshot", what)
        what = f"snapshot v{new.signed.version}"
        self._check_top_level_signatures(what, new, "snapshot", fast)
        if self._snapshot is not None:
            old = self._snapshot.signed
            for filename, old_meta in old.meta.items():
                new_meta = new.signed.meta.get(filename)
                if new_meta is None:
                    raise RollbackError(
                        f"{what}: drops {filename} listed by trusted snapshot v{old.version}"
                    )
                if new_meta.version < old_meta.version:
                    raise RollbackError(
                        f"{what}: lists {filename} v{new_meta.version}, lower than "
                        f"v{old_meta.version} in trusted snapshot v{old.version}"
                    )
        self._snapshot = Verified(data, new, "snapshot")
        self._check_snapshot_final()
        return self._snapshot

    # -- targets -------------------------------------------------------------------

    def update_targets(self, data: bytes, *, trusted: bool = False) -> Verified[Targets]:
        """Accept the top-level targets role (signed by the root's targets keys)."""
        return self.update_delegated_targets(data, "targets", "root", trusted=trusted)

    def update_delegated_targets(
        self, data: bytes, role_name: str, delegator_name: str, *, trusted: bool = False
    ) -> Verified[Targets]:
        """Accept a targets role, verified with the keys ``delegator_name`` gives it.

        The role must be listed in snapshot (else ``DelegationError``); unless
        ``trusted``, the bytes must match the length and hashes listed there; the
        version must equal the listed one. The delegator must already be verified in
        this set (top-level targets for ``"targets"``' children, ``"root"`` for
        ``"targets"`` itself). Each call verifies against the given delegator, so a
        role reached from two delegators can be checked against both.
        """
        if self._snapshot is None:
            raise RuntimeError("cannot update targets before snapshot")
        self._check_snapshot_final()
        top_level = role_name == "targets"
        if top_level:
            if delegator_name != "root":
                raise RuntimeError("top-level targets is delegated by root")
        else:
            validate_role_name(role_name)
            if role_name in _TOP_LEVEL:
                raise DelegationError(f"{role_name}: a top-level role name cannot be delegated")
        delegator = None if top_level else self.delegator(delegator_name)
        if not top_level and delegator is None:
            raise RuntimeError(f"delegator {delegator_name!r} has not been verified")

        snapshot = self._snapshot.signed
        meta = snapshot.meta.get(f"{role_name}.json")
        if meta is None:
            raise DelegationError(
                f"{role_name}: not listed in snapshot v{snapshot.version}, delegated "
                f"by {delegator_name}"
            )
        what = role_name
        if trusted:
            self._check_cap(what, data, self.limits.max_targets_length)
        else:
            self._check_cap(what, data, self.limits.targets_max(snapshot, role_name))
            check_meta(f"{role_name} v{meta.version}", meta, data)
        new: Metadata[Targets]
        new, fast = parse_with_payload(data, "targets", what)
        what = f"{role_name} v{new.signed.version}"
        payload = signed_payload(new, what, fast)
        if delegator is None:
            root = self._root.signed
            check_threshold(
                what,
                keys=root.keys,
                role=root.roles["targets"],
                payload=payload,
                signatures=new.signatures,
                metadata=new,
                by=f"root v{root.version}",
            )
        else:
            try:
                role = delegator.get_delegated_role(role_name)
            except ValueError:
                raise DelegationError(f"{role_name}: not delegated by {delegator_name}") from None
            keys = delegator.delegations.keys if delegator.delegations is not None else {}
            check_threshold(
                what,
                keys=keys,
                role=role,
                payload=payload,
                signatures=new.signatures,
                metadata=new,
                by=f"delegator {delegator_name}",
            )
        if new.signed.version != meta.version:
            raise BadVersionError(
                f"{what}: snapshot v{snapshot.version} lists version {meta.version}"
            )
        if new.signed.is_expired(self.now):
            if top_level or not self.expired_delegated_ok:
                self._check_expiry(what, new.signed.expires)
            if role_name not in self.expired_delegated:
                self.expired_delegated.append(role_name)

        verified = Verified(data, new, role_name)
        if top_level:
            self._targets = verified
        else:
            self._role_versions[role_name] = new.signed.version
            if new.signed.delegations is not None:
                self._delegators[role_name] = new.signed
            else:
                self._delegators.pop(role_name, None)
        return verified

    # -- helpers -------------------------------------------------------------------

    @staticmethod
    def _check_cap(what: str, data: bytes, cap: int) -> None:
        if len(data) > cap:
            raise OversizeError(f"{what}: {len(data)} bytes exceeds the limit of {cap}")

    def _check_expiry(self, what: str, expires: datetime) -> None:
        if self.now >= expires:
            raise ExpiredMetadataError(f"{what}: expired at {_fmt(expires)} (now {_fmt(self.now)})")

    def _check_root_signatures(
        self, what: str, new: Metadata[Root], payload: bytes, signer: Root, *, by: str
    ) -> None:
        check_threshold(
            what,
            keys=signer.keys,
            role=signer.roles["root"],
            payload=payload,
            signatures=new.signatures,
            metadata=new,
            by=by,
        )

    def _check_top_level_signatures(
        self, what: str, new: Metadata[Any], role: str, fast: bytes | None
    ) -> None:
        """``fast``: the fast canonical payload, if ``parse_with_payload`` gave one."""
        root = self._root.signed
        check_threshold(
            what,
            keys=root.keys,
            role=root.roles[role],
            payload=signed_payload(new, what, fast),
            signatures=new.signatures,
            metadata=new,
            by=f"root v{root.version}",
        )

    def _check_timestamp_fresh(self) -> None:
        assert self._timestamp is not None
        timestamp = self._timestamp.signed
        self._check_expiry(f"timestamp v{timestamp.version}", timestamp.expires)

    def _check_snapshot_final(self) -> None:
        assert self._timestamp is not None
        assert self._snapshot is not None
        snapshot = self._snapshot.signed
        what = f"snapshot v{snapshot.version}"
        self._check_expiry(what, snapshot.expires)
        expected = self._timestamp.signed.snapshot_meta.version
        if snapshot.version != expected:
            raise BadVersionError(f"{what}: timestamp lists snapshot version {expected}")
