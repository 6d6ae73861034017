"""The destination's published state: its metadata re-verified from the pinned root
(``Published``, ``load_published``), and the mirror's own bookkeeping file
``.tuf-mirror/state.json`` as a frozen value (``MirrorState``).

``sync``, ``audit``, ``prune``, ``airgap`` and ``policy`` all start from
``load_published``: a destination that does not verify is
``TamperedDestinationError`` (exit 1). Expiry is not checked here (a mirror may lag
its upstream).

What this module does not do: fetch from the upstream (``refresh``), write
anything (``publish`` writes the state file), or decide what to copy.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from mirror.errors import TamperedDestinationError, VerificationError
from mirror.layout import STATE_KEY, meta_key
from mirror.log import log
from mirror.storage import NotFoundInStoreError, Store
from mirror.trust import Limits, Snapshot, Timestamp, TrustedSet, Verified, metadata_filename

__all__ = ["MirrorState", "Published", "PublishedCheck", "load_published", "read_optional"]

#: a reference time before any expiry: loading the published state checks
#: signatures, versions and hashes, not freshness (a mirror may lag its upstream)
NO_EXPIRY = datetime(1, 1, 2, tzinfo=UTC)
#: the largest state file read
MAX_STATE_BYTES = 64 * 1024 * 1024

_KNOWN = frozenset(
    {
        "snapshot_version",
        "versions",
        "leaves",
        "timestamp_etag",
        "timestamp_sha256",
        "filter",
        "expires",
    }
)


class PublishedCheck(Protocol):
    """Checks a file read from the destination (``hooks.Witness``: the ledger)."""

    async def check_published(self, key: str, role: str, version: int, data: bytes) -> None:
        """Raise ``TamperedDestinationError`` if ``data`` is not what was published."""


@dataclass(frozen=True, slots=True)
class MirrorState:
    """``.tuf-mirror/state.json``: hints for the next run, valid only for the
    snapshot version they were written with.

    The hints only let an unchanged hash-bin leaf be skipped without reading it; a
    wrong hint can cost completeness, never admit an unverified byte. Keys this
    version does not interpret (``history``, kept by ``prune``) are carried along
    unchanged in ``extra``.
    """

    snapshot_version: int
    #: role -> version of every role the walk reached
    versions: Mapping[str, int]
    #: the roles that delegate nothing, sorted
    leaves: tuple[str, ...]
    #: the conditional-GET validator of the timestamp below
    timestamp_etag: str | None = None
    timestamp_sha256: str | None = None
    #: the target selection's fingerprint (filters and policy)
    filter: str | None = None
    #: role -> ISO expiry of the published top-level metadata
    expires: Mapping[str, str] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: bytes) -> MirrorState | None:
        """The state in ``raw``, or None when it is not a readable state file."""
        try:
            document = json.loads(raw)
            etag = document.get("timestamp_etag")
            sha = document.get("timestamp_sha256")
            selection = document.get("filter")
            return cls(
                snapshot_version=int(document["snapshot_version"]),
                versions={str(k): int(v) for k, v in document["versions"].items()},
                leaves=tuple(str(name) for name in document["leaves"]),
                timestamp_etag=None if etag is None else str(etag),
                timestamp_sha256=None if sha is None else str(sha),
                filter=None if selection is None else str(selection),
                expires={str(k): str(v) for k, v in dict(document.get("expires") or {}).items()},
                extra={k: v for k, v in document.items() if k not in _KNOWN},
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def to_json(self) -> dict[str, Any]:
        """The document (a fresh dict: ``prune.record_publish`` adds its history)."""
        return {
            **self.extra,
            "snapshot_version": self.snapshot_version,
            "versions": dict(self.versions),
            "leaves": list(self.leaves),
            "timestamp_etag": self.timestamp_etag,
            "timestamp_sha256": self.timestamp_sha256,
            "filter": self.filter,
            "expires": dict(self.expires),
        }

    def to_bytes(self) -> bytes:
        return encode_state(self.to_json())


def encode_state(document: Mapping[str, Any]) -> bytes:
    """The bytes of a state document, as every version has written them."""
    return json.dumps(document, sort_keys=True).encode()


@dataclass(frozen=True, slots=True)
class Published:
    """The destination's metadata, re-verified from the pinned root."""

    trusted: TrustedSet
    pinned_version: int
    #: verified bytes of the destination's root versions after the pinned one
    roots: tuple[bytes, ...] = ()
    pinned_root_published: bool = False
    timestamp: Verified[Timestamp] | None = None
    snapshot: Verified[Snapshot] | None = None
    #: ``.tuf-mirror/state.json`` when it describes this snapshot (else None)
    state: MirrorState | None = None
    #: set when the destination holds an interrupted publish (``mirror.recovery``):
    #: timestamp and snapshot verify under an earlier root than the last published
    interrupted: str | None = None

    def versions(self) -> dict[str, int]:
        out = {"root": self.pinned_version + len(self.roots)}
        if self.timestamp is not None:
            out["timestamp"] = self.timestamp.version
        if self.snapshot is not None:
            out["snapshot"] = self.snapshot.version
            meta = self.snapshot.signed.meta.get("targets.json")
            if meta is not None:
                out["targets"] = meta.version
        return out

    @property
    def previous_versions(self) -> Mapping[str, int]:
        return self.state.versions if self.state is not None else {}

    @property
    def previous_leaves(self) -> frozenset[str]:
        return frozenset(self.state.leaves) if self.state is not None else frozenset()

    @property
    def previous_filter(self) -> str | None:
        """The target selection the published state was made with (None: unknown)."""
        return (self.state.filter or None) if self.state is not None else None

    @property
    def previous_expires(self) -> Mapping[str, str]:
        return self.state.expires if self.state is not None else {}

    @property
    def timestamp_etag(self) -> str | None:
        """The validator of a conditional GET, when it was recorded with the
        published timestamp (only then may a 304 stand for it)."""
        state, timestamp = self.state, self.timestamp
        if state is None or timestamp is None or not state.timestamp_etag:
            return None
        if state.timestamp_sha256 != hashlib.sha256(timestamp.raw).hexdigest():
            return None
        return state.timestamp_etag


async def read_optional(store: Store, key: str, max_length: int) -> bytes | None:
    """``store.get``, or None when the key is absent."""
    try:
        return await store.get(key, max_length=max_length)
    except NotFoundInStoreError:
        return None


def _tampered(key: str, exc: VerificationError) -> TamperedDestinationError:
    return TamperedDestinationError(f"destination {key} does not verify: {exc}")


async def load_published(
    store: Store, root_bytes: bytes, limits: Limits, *, witness: PublishedCheck | None = None
) -> Published:
    """Load and re-verify the destination's published metadata from the pinned root.

    Expiry is not checked (a mirror may lag its upstream); everything else is. With
    a ``witness``, every file read is also checked against the ledger's sha256.
    """
    trusted = TrustedSet(root_bytes, now=NO_EXPIRY, limits=limits, expired_delegated_ok=True)
    pinned_version = trusted.root.version
    pinned_key = meta_key(f"{pinned_version}.root.json")
    pinned_copy = await read_optional(store, pinned_key, limits.max_root_length)
    if pinned_copy is not None and pinned_copy != root_bytes:
        raise TamperedDestinationError(
            f"destination {pinned_key} differs from the pinned root (--root)"
        )
    roots: list[bytes] = []
    version = pinned_version + 1
    while data := await read_optional(
        store, meta_key(f"{version}.root.json"), limits.max_root_length
    ):
        if witness is not None:
            await witness.check_published(meta_key(f"{version}.root.json"), "root", version, data)
        try:
            trusted.update_root(data)
        except VerificationError as exc:
            raise _tampered(meta_key(f"{version}.root.json"), exc) from exc
        roots.append(data)
        version += 1
    bare = Published(
        trusted,
        pinned_version,
        roots=tuple(roots),
        pinned_root_published=pinned_copy is not None,
    )

    ts_key = meta_key("timestamp.json")
    ts_raw = await read_optional(store, ts_key, limits.max_timestamp_length)
    if ts_raw is None:
        return bare

    async def load_snapshot(
        trusted: TrustedSet, timestamp: Verified[Timestamp]
    ) -> Verified[Snapshot]:
        snap_version = timestamp.signed.snapshot_meta.version
        snap_key = meta_key(
            metadata_filename("snapshot", snap_version if trusted.consistent_snapshot else None)
        )
        # The generic cap, not the declared length: a longer file is a tampered one
        # (the trust core says so), not a storage failure.
        snap_raw = await read_optional(store, snap_key, limits.max_snapshot_length)
        if snap_raw is None:
            raise TamperedDestinationError(
                f"destination {ts_key} names {snap_key}, which is missing"
            )
        if witness is not None:
            await witness.check_published(snap_key, "snapshot", snap_version, snap_raw)
        try:
            return trusted.update_snapshot(snap_raw)
        except VerificationError as exc:
            raise _tampered(snap_key, exc) from exc

    interrupted: str | None = None
    try:
        try:
            timestamp = trusted.update_timestamp(ts_raw)
        except VerificationError as exc:
            raise _tampered(ts_key, exc) from exc
        snapshot = await load_snapshot(trusted, timestamp)
    except TamperedDestinationError:
        # Not tampered if it is our own publish, stopped after a new root (key
        # rotation) and before timestamp.json: mirror.recovery tells.
        from mirror.recovery import earlier_root_state

        earlier = await earlier_root_state(
            root_bytes=root_bytes,
            roots=roots,
            timestamp_raw=ts_raw,
            limits=limits,
            now=NO_EXPIRY,
            load_snapshot=load_snapshot,
        )
        if earlier is None:
            raise
        log.warning("destination %s holds %s; this run completes it", store.url, earlier.describe())
        trusted = earlier.trusted
        timestamp, snapshot = earlier.timestamp, earlier.snapshot
        interrupted = earlier.describe()
    if witness is not None:
        await witness.check_published(ts_key, "timestamp", timestamp.version, ts_raw)

    state: MirrorState | None = None
    state_raw = await read_optional(store, STATE_KEY, MAX_STATE_BYTES)
    if state_raw is not None:
        state = MirrorState.parse(state_raw)
        if state is None:
            log.warning("ignoring unreadable %s", STATE_KEY)
        elif state.snapshot_version != snapshot.version:
            state = None
    return Published(
        trusted,
        pinned_version,
        roots=tuple(roots),
        pinned_root_published=bare.pinned_root_published,
        timestamp=timestamp,
        snapshot=snapshot,
        state=state,
        interrupted=interrupted,
    )
