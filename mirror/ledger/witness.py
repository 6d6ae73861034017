"""The ledger inside a run: tamper checks, alarms, and the commit after publish.

``RunWitness`` is what ``sync`` and ``import`` call (a few hooks):

- ``start`` reads the ledger's head; ``begin`` (the walk starts) reads side by
  side the index shards of the changed roles' versions the run will check;
- ``check_published`` compares a metadata file read from the destination (the
  published state, diff bases included) with the ledger's sha256 for that role
  version: a mismatch is ``TamperedDestinationError`` (exit 1, nothing written);
- ``recover`` replays the pending record of a run that published but crashed (or
  lost the race) before its commit: its entries are checked again from the old
  checkpoint, so no alarm is lost, and committed first;
- ``observe_meta`` / ``observe_target`` (or ``observe_targets``, one call for a
  role's targets) / ``observe_versions`` check what the run verified upstream
  against the ledger and the ``--expect`` list, raising alarms, and spool the new
  entries (a target the ledger has no record of costs a lookup in a shard read
  once per run and one line of bytes; no per-target await reaches a thread);
- ``before_publish`` applies ``--on-alarm`` (``refuse``: ``WitnessAlarmError``,
  exit 1, nothing published, the ledger's checkpoint unchanged) and records the
  pending entries; ``after_publish`` commits them and moves the checkpoint.

An alarm is one log line ``ALARM <TYPE> <subject>: …``, an entry of the report's
``alarms``, and an evidence directory ``<ledger>/evidence/<UTC time>-<TYPE>/``.

What it does not do: Merkle hashing, storage layout (``log``), fetching from the
upstream (the caller hands over verified bytes).
"""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from mirror.errors import TamperedDestinationError, UsageError, VerificationError
from mirror.ledger.entries import (
    Entry,
    json_string,
    meta_entry,
    meta_key,
    target_entry,
    target_entry_bytes,
)
from mirror.ledger.log import Head, LedgerLog
from mirror.ledger.note import NoteError, verify_note
from mirror.ledger.spool import EntrySpool
from mirror.log import log
from mirror.trust import MetaFile, TargetFile, TrustedSet, metadata_filename

if TYPE_CHECKING:
    from mirror.plan import RoleChange
    from mirror.published import Published
    from mirror.refresh import Refreshed

__all__ = [
    "ALARM_TYPES",
    "Alarm",
    "Expected",
    "RunWitness",
    "WitnessAlarmError",
    "load_expected",
]

ALARM_TYPES = (
    "TARGET_MUTATION",
    "META_EQUIVOCATION",
    "ROLLBACK",
    "FORK",
    "EXPECTED_MISMATCH",
    "WITHHELD",
    "VOUCH_WITHDRAWN",
)


class WitnessAlarmError(VerificationError):
    """``--on-alarm refuse``: the witness raised an alarm, nothing new was published."""


@dataclass(frozen=True, slots=True)
class Alarm:
    """One witness alarm: what, about which file, both observed values, evidence."""

    type: str
    subject: str
    ledger: Any
    observed: Any
    evidence: str

    def line(self) -> str:
        return (
            f"ALARM {self.type} {self.subject}: recorded {_short(self.ledger)}, "
            f"observed {_short(self.observed)} (evidence {self.evidence})"
        )


def _short(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Expected:
    """One line of an ``--expect`` list."""

    path: str
    length: int
    hashes: dict[str, str]


def load_expected(data: bytes, *, key: bytes | None = None) -> list[Expected]:
    """Parse an ``--expect`` list: JSON lines, or a signed note (verified with
    ``key``, a C2SP verifier key or a PEM public key file's content) whose text
    holds the JSON lines."""
    text = data
    if data.rstrip(b"\n").split(b"\n")[-1].startswith("\u2014 ".encode()):
        if key is None:
            raise UsageError("--expect is a signed note: give its key with --expect-key")
        from mirror.ledger.keys import load_verifiers, note_names

        try:
            note, _ = verify_note(data, load_verifiers(key, names=note_names(data)))
        except NoteError as exc:
            raise UsageError(f"--expect: the signed note does not verify: {exc}") from exc
        text = note.text
    elif key is not None:
        raise UsageError("--expect-key given but --expect is not a signed note")
    out: list[Expected] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            out.append(
                Expected(
                    str(item["path"]),
                    int(item["length"]),
                    {str(k): str(v) for k, v in dict(item["hashes"]).items()},
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"--expect line {number}: not {{path, length, hashes}}") from exc
    return out


def _same(
    length: int, hashes: Mapping[str, str], other_length: int, other: Mapping[str, str]
) -> bool:
    if length != other_length:
        return False
    shared = set(hashes) & set(other)
    return bool(shared) and all(hashes[name] == other[name] for name in shared)


def _signed_part(data: bytes) -> Any:
    try:
        return json.loads(data).get("signed")
    except (ValueError, AttributeError):
        return None


_Method = TypeVar("_Method", bound=Callable[..., Awaitable[Any]])


def _timed(method: _Method) -> _Method:
    """Add the time spent in ``method`` to the witness's ``seconds`` (the ledger's
    cost in a run, shown by scripts/bench)."""

    @functools.wraps(method)
    async def wrapper(self: RunWitness, *args: Any, **kwargs: Any) -> Any:
        # The union of the intervals when some hook runs: concurrent hooks (role
        # loads) are not counted twice.
        if not self._active:
            self._since = trio.current_time()
        self._active += 1
        try:
            return await method(self, *args, **kwargs)
        finally:
            self._active -= 1
            if not self._active:
                self.seconds += trio.current_time() - self._since

    return wrapper  # type: ignore[return-value]


@dataclass(slots=True)
class RunWitness:
    """The ledger's part in one run (see the module docstring)."""

    ledger: LedgerLog
    now: datetime
    immutable: tuple[str, ...] = ()
    expected: Sequence[Expected] = ()
    refuse: bool = False
    #: ``tuf-mirror witness``: reads the ledger, never writes entries or pending records
    audit: bool = False
    #: ``--witness-peer``: other mirrors compared with the ledger (FORK)
    peers: tuple[str, ...] = ()
    peer_retries: int = 2
    peer_timeout: float = 60.0
    #: where published metadata is read for evidence (the destination)
    destination: Any = None
    alarms: list[Alarm] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    head: Head | None = None
    _spool: EntrySpool | None = None
    _keys: set[str] = field(default_factory=set)
    _seen_expected: dict[str, tuple[int, dict[str, str]]] = field(default_factory=dict)
    _expected_paths: frozenset[str] = frozenset()
    _versions: dict[str, int] = field(default_factory=dict)
    _timestamp_raw: bytes | None = None
    _run_id: str = ""
    _evidence_count: int = 0
    recovered: list[str] = field(default_factory=list)
    #: time spent in the ledger's hooks (reads, checks, appends, commit)
    seconds: float = 0.0
    #: entries this run appended (recorded as pending, then committed)
    appended: int = 0
    _active: int = 0
    _since: float = 0.0
    _snapshot_meta: dict[str, MetaFile] = field(default_factory=dict)
    _snapshot_version: int | None = None
    _timestamp_version: int | None = None
    _time: str = ""

    @property
    def _pending_name(self) -> str:
        """One pending record per destination: a rerun replays its own."""
        where = self.destination.url if self.destination is not None else "none"
        return hashlib.sha256(where.encode()).hexdigest()[:16]

    @property
    def time(self) -> str:
        if not self._time:
            self._time = self.now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self._time

    # -- start -----------------------------------------------------------------------

    @_timed
    async def start(self) -> None:
        self._expected_paths = frozenset(item.path for item in self.expected)
        self.head = await self.ledger.head()
        self._run_id = f"{self.now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"
        self._spool = EntrySpool(self.ledger.store.spool_dir(), f"ledger-{self._run_id}")
        await self._spool.open()

    async def aclose(self) -> None:
        if self._spool is not None:
            await self._spool.aclose()

    @_timed
    async def recover(self, published: Published) -> None:
        """Replay pending records whose publish completed (the destination's
        timestamp is the one they were about to publish) and commit them; drop
        the others (nothing of them is referenced; this run redoes the work)."""
        assert self.head is not None
        if self.audit:
            return
        published_timestamp = published.timestamp.raw if published.timestamp else None
        current = hashlib.sha256(published_timestamp).hexdigest() if published_timestamp else None
        run_id = self._pending_name
        document, entries = await self.ledger.read_pending(run_id)
        if not document:
            return
        if current is None or document.get("timestamp_sha256") != current:
            log.info("ledger: dropping pending record %s (its publish did not complete)", run_id)
            await self.ledger.drop_pending(run_id)
            return
        log.warning(
            "ledger: run %s published but did not record its checkpoint; "
            "checking its %d entries from checkpoint %d",
            document.get("run"),
            len(entries),
            self.head.size,
        )
        fresh: list[Entry] = []
        for entry in entries:
            if await self._check_entry(entry):
                fresh.append(entry)
        versions = {str(k): int(v) for k, v in dict(document.get("versions") or {}).items()}
        self.head = await self.ledger.commit(self.head, _aiter(fresh), versions=versions)
        await self.ledger.drop_pending(run_id)
        self.recovered.append(str(document.get("run")))

    # -- the published state ------------------------------------------------------------

    @_timed
    async def check_published(self, key: str, role: str, version: int, data: bytes) -> None:
        """Raise ``TamperedDestinationError`` if the ledger recorded other bytes for
        this role version than the destination holds at ``key``."""
        assert self.head is not None
        records = await self.ledger.lookup(meta_key(role, version), self.head)
        if not records:
            return
        recorded = records[-1].entry.hashes["sha256"]
        actual = hashlib.sha256(data).hexdigest()
        if actual != recorded:
            raise TamperedDestinationError(
                f"destination {key} is not what the mirror published: sha256 {actual}, "
                f"the ledger ({self.ledger.url}, leaf {records[-1].leaf}) recorded {recorded}"
            )

    # -- what the upstream serves ------------------------------------------------------

    @_timed
    async def observe_versions(
        self, *, timestamp: bytes | None, snapshot_version: int | None
    ) -> None:
        """The verified upstream timestamp (and the snapshot version it names):
        ROLLBACK when older than a version the ledger recorded."""
        assert self.head is not None
        if timestamp is not None:
            self._timestamp_raw = timestamp
        signed = _signed_part(timestamp) if timestamp else None
        observed = {
            "timestamp": int(signed["version"]) if isinstance(signed, dict) else None,
            "snapshot": snapshot_version,
        }
        recorded = self.head.versions
        for role, version in observed.items():
            highest = recorded.get(role)
            if version is not None and highest is not None and version < highest:
                await self.alarm(
                    "ROLLBACK",
                    f"{role} v{version}",
                    {"highest_recorded_version": highest},
                    {"version": version},
                    files={f"upstream-{role}.json": timestamp}
                    if role == "timestamp" and timestamp
                    else {},
                )
            if version is not None:
                self._versions[role] = max(version, self._versions.get(role, 0))

    async def rollback_refused(self, role: str, data: bytes, error: Exception) -> None:
        """TUF refused a rolled-back ``role`` (the run fails with exit 1): the ledger
        keeps the evidence (the served file, the highest version recorded)."""
        assert self.head is not None
        signed = _signed_part(data)
        version = signed.get("version") if isinstance(signed, dict) else None
        await self.alarm(
            "ROLLBACK",
            f"{role} v{version}",
            {"highest_recorded_version": self.head.versions.get(role)},
            {"version": version, "refused": str(error)},
            files={f"upstream-{role}.json": data},
        )

    @_timed
    async def observe_meta(self, *, name: str, role: str, version: int, data: bytes) -> None:
        """A metadata file about to be published (verified bytes)."""
        entry = meta_entry(name=name, role=role, version=version, data=data, time=self.time)
        if await self._check_entry(entry, data=data):
            await self._add(entry)

    @_timed
    async def begin(self, new: TrustedSet, changes: Sequence[RoleChange] = ()) -> None:
        """The verified snapshot (and timestamp) whose roles the walk visits. A
        cycle that restarts (the upstream moved on mid-run) starts its record over:
        only what the final cycle publishes is recorded, and it sends again every
        new target of the unchanged published state.

        The index shards of the role versions the walk will check (``changes``:
        the published version of each changed role, its new one) and of the new
        snapshot and timestamp are read here, side by side, not one per lookup."""
        assert self._spool is not None
        assert self.head is not None
        if self._spool.count:
            await self._spool.reset()
            self._keys.clear()
            self._seen_expected.clear()
        self._snapshot_meta = dict(new.snapshot.signed.meta) if new.snapshot else {}
        self._snapshot_version = new.snapshot.version if new.snapshot else None
        self._timestamp_version = new.timestamp.version if new.timestamp else None
        keys = [meta_key(change.name, change.new_version) for change in changes]
        keys += [
            meta_key(change.name, change.old_version)
            for change in changes
            if change.old_version is not None
        ]
        if self._snapshot_version is not None:
            keys.append(meta_key("snapshot", self._snapshot_version))
        if self._timestamp_version is not None:
            keys.append(meta_key("timestamp", self._timestamp_version))
        await self.ledger.prefetch(keys, self.head)

    @_timed
    async def observe_target(self, role: str, target: TargetFile, *, published: bool) -> None:
        """A target a role lists (validly, and authorised for it); ``published``:
        selected for this mirror (else only checked, not recorded)."""
        await self._observe_target(role, target, published)

    @_timed
    async def observe_targets(self, role: str, targets: Iterable[tuple[TargetFile, bool]]) -> None:
        """``observe_target`` for each (target, published) of one role, in order:
        one call (and one timing) for a role's targets, whose index shards are read
        side by side first."""
        assert self.head is not None
        observed = list(targets)
        await self.ledger.prefetch(
            (target.path for target, _ in observed if target.path not in self._keys), self.head
        )
        for target, published in observed:
            await self._observe_target(role, target, published)

    async def _observe_target(self, role: str, target: TargetFile, published: bool) -> None:
        path = target.path
        if path in self._expected_paths:
            self._seen_expected[path] = (
                target.length,
                {str(k): str(v) for k, v in sorted(target.hashes.items())},
            )
        if path in self._keys:
            return
        assert self.head is not None
        assert self._spool is not None
        meta = self._snapshot_meta.get(f"{role}.json")
        role_version = meta.version if meta is not None else 0
        if await self.ledger.lookup(path, self.head):
            # Recorded before: compared (alarms) as an entry.
            entry = target_entry(
                path=path,
                length=target.length,
                hashes=target.hashes,
                role=role,
                role_version=role_version,
                snapshot_version=self._snapshot_version,
                timestamp_version=self._timestamp_version,
                time=self.time,
            )
            if await self._check_entry(entry) and published:
                await self._add(entry)
            return
        if not published:
            return
        # New content: its canonical bytes, without the entry's dict.
        raw = target_entry_bytes(
            path=path,
            length=target.length,
            hashes=target.hashes,
            role=role,
            role_version=role_version,
            snapshot_version=self._snapshot_version,
            timestamp_version=self._timestamp_version,
            time=self.time,
        )
        if self._spool.append(raw, json_string(path)):
            await self._spool.drain()

    async def observe_target_entry(self, entry: Entry, *, published: bool = True) -> None:
        path, length, hashes = str(entry.data["path"]), entry.length, entry.hashes
        if path in self._expected_paths:
            self._seen_expected[path] = (length, dict(hashes))
        if await self._check_entry(entry) and published:
            await self._add(entry)

    async def _check_entry(self, entry: Entry, *, data: bytes | None = None) -> bool:
        """Alarms for ``entry`` against the ledger; True when it is new content."""
        assert self.head is not None
        key = entry.key
        if key in self._keys:
            return False
        records = await self.ledger.lookup(key, self.head)
        if not records:
            return True
        if any(record.entry.same_content(entry) for record in records[-1:]):
            return False
        latest = records[-1].entry
        if entry.kind == "meta":
            await self._equivocation(entry, latest, data)
            return False
        if self._immutable(entry.key):
            await self.alarm(
                "TARGET_MUTATION",
                entry.key,
                {"length": latest.length, "hashes": latest.hashes, "first_seen": latest.data},
                {"length": entry.length, "hashes": entry.hashes, "seen": entry.data},
            )
        else:
            log.info("ledger: %s has new content (recorded as its next version)", entry.key)
        return True

    async def _equivocation(self, entry: Entry, latest: Entry, data: bytes | None) -> None:
        name = str(entry.data["name"])
        published = None
        if self.destination is not None:
            from mirror.storage import NotFoundInStoreError

            try:
                published = await self.destination.get(f"metadata/{name}", max_length=1 << 26)
            except NotFoundInStoreError:
                published = None
        files = {}
        if published is not None:
            files[f"published-{name}"] = published
        if data is not None:
            files[f"upstream-{name}"] = data
        if (
            published is not None
            and data is not None
            and _signed_part(published) == _signed_part(data)
        ):
            warning = (
                f"RESIGNED {name}: the upstream serves the same signed content with other "
                "signatures; the mirror keeps its published bytes"
            )
            log.warning("%s", warning)
            self.warnings.append(warning)
            return
        await self.alarm(
            "META_EQUIVOCATION",
            name,
            {"sha256": latest.hashes["sha256"], "length": latest.length},
            {"sha256": entry.hashes["sha256"], "length": entry.length},
            files=files,
        )

    def _immutable(self, path: str) -> bool:
        return any(fnmatchcase(path, pattern) for pattern in self.immutable)

    async def _add(self, entry: Entry) -> None:
        if entry.kind == "meta":
            # Metadata keys only: a target is observed once per cycle (one role is
            # authorised for it), and a set of every path would grow with the
            # repository, not with its largest role.
            self._keys.add(entry.key)
        assert self._spool is not None
        if self._spool.append(entry.to_bytes(), json_string(entry.key)):
            await self._spool.drain()

    async def check_expected(self) -> None:
        """``--expect``: every listed path against what the upstream lists now (this
        run's observations, else the ledger's latest record)."""
        assert self.head is not None
        for item in self.expected:
            seen = self._seen_expected.get(item.path)
            if seen is None:
                records = await self.ledger.lookup(item.path, self.head)
                if records:
                    seen = (records[-1].entry.length, records[-1].entry.hashes)
            if seen is None:
                await self.alarm(
                    "WITHHELD", item.path, {"length": item.length, "hashes": item.hashes}, None
                )
            elif not _same(item.length, item.hashes, *seen):
                await self.alarm(
                    "EXPECTED_MISMATCH",
                    item.path,
                    {"length": item.length, "hashes": item.hashes},
                    {"length": seen[0], "hashes": seen[1]},
                )

    # -- alarms ---------------------------------------------------------------------------

    async def alarm(
        self,
        kind: str,
        subject: str,
        recorded: Any,
        observed: Any,
        *,
        files: Mapping[str, bytes] | None = None,
    ) -> Alarm:
        assert kind in ALARM_TYPES
        assert self.head is not None
        for earlier in self.alarms:
            if earlier.type == kind and earlier.subject == subject:
                return earlier  # the same alarm from a restarted cycle
        self._evidence_count += 1
        directory = f"{datetime.now(UTC):%Y%m%dT%H%M%S.%fZ}-{kind}-{self._evidence_count}"
        alarm = Alarm(
            kind,
            subject,
            recorded,
            observed,
            f"{self.ledger.url.rstrip('/')}/evidence/{directory}/",
        )
        summary = {**asdict(alarm), "checkpoint_size": self.head.size}
        await self.ledger.put_evidence(
            f"{directory}/alarm.json", json.dumps(summary, indent=2, sort_keys=True).encode()
        )
        await self.ledger.put_evidence(f"{directory}/checkpoint", self.head.note)
        for name, data in (files or {}).items():
            await self.ledger.put_evidence(f"{directory}/{name.replace('/', '%2F')}", data)
        log.error("%s", alarm.line())
        self.alarms.append(alarm)
        return alarm

    async def compare_peer(
        self,
        peer: str,
        names: Mapping[tuple[str, int], str],
        *,
        retries: int,
        transfer_timeout: float,
    ) -> None:
        """FORK: the mirror ``peer`` serves, for a version the ledger holds, other
        bytes. Compared: ``names`` ((role, version) -> file name), the peer's
        ``timestamp.json`` and the snapshot version it names."""
        from mirror.endpoints import open_peer

        assert self.head is not None
        fetcher = open_peer(peer, retries=retries, timeout=transfer_timeout)
        try:
            wanted = dict(names)
            timestamp = await fetch_metadata(fetcher, "timestamp.json")
            signed = _signed_part(timestamp) if timestamp is not None else None
            if isinstance(signed, dict):
                try:
                    wanted[("timestamp", int(signed["version"]))] = "timestamp.json"
                    snapshot = int(signed["meta"]["snapshot.json"]["version"])
                    wanted.setdefault(("snapshot", snapshot), f"{snapshot}.snapshot.json")
                except (KeyError, TypeError, ValueError):
                    pass
            for (role, version), name in sorted(wanted.items()):
                records = await self.ledger.lookup(meta_key(role, version), self.head)
                if not records:
                    continue
                data = (
                    timestamp if name == "timestamp.json" else await fetch_metadata(fetcher, name)
                )
                if data is None:
                    continue
                recorded = records[-1].entry.hashes["sha256"]
                served = hashlib.sha256(data).hexdigest()
                if served != recorded:
                    await self.alarm(
                        "FORK",
                        f"{peer} {name}",
                        {"sha256": recorded},
                        {"sha256": served, "peer": peer},
                        files={f"peer-{name}": data},
                    )
        finally:
            await fetcher.aclose()

    # -- publish and commit -------------------------------------------------------------

    @_timed
    async def before_publish(
        self, refreshed: Refreshed, published: Published, pinned: bytes
    ) -> None:
        """Observe the root versions and the timestamp this run publishes, apply
        ``--on-alarm``, and record the pending entries before anything is published
        (so a crash before the commit loses nothing)."""
        roots = sorted(refreshed.root_history.items())  # version -> bytes (issue 9)
        if not published.pinned_root_published:
            roots.append((published.pinned_version, pinned))
        roots += [(root.version, root.raw) for root in refreshed.new_roots]
        for version, data in roots:
            await self.observe_meta(
                name=f"{version}.root.json", role="root", version=version, data=data
            )
        new = refreshed.trusted
        if refreshed.snapshot_changed and new.snapshot is not None:
            await self.observe_meta(
                name=metadata_filename(
                    "snapshot", new.snapshot.version if new.consistent_snapshot else None
                ),
                role="snapshot",
                version=new.snapshot.version,
                data=new.snapshot.raw,
            )
        if refreshed.timestamp_changed and new.timestamp is not None:
            await self.observe_meta(
                name="timestamp.json",
                role="timestamp",
                version=new.timestamp.version,
                data=new.timestamp.raw,
            )
            await self.observe_versions(
                timestamp=new.timestamp.raw,
                snapshot_version=new.timestamp.signed.snapshot_meta.version,
            )
        await self.check_expected()
        for peer in self.peers:
            await self.compare_peer(
                peer,
                {("root", new.root.version): f"{new.root.version}.root.json"},
                retries=self.peer_retries,
                transfer_timeout=self.peer_timeout,
            )
        if self.alarms and self.refuse:
            raise WitnessAlarmError(
                f"the witness raised {len(self.alarms)} alarm(s) "
                f"({', '.join(sorted({a.type for a in self.alarms}))}) and --on-alarm is "
                "refuse: nothing new published"
            )
        assert self._spool is not None
        await self._spool.drain()
        if not self._spool.count:
            return
        document = {
            "run": self._run_id,
            "base_seq": self.head.seq if self.head else 0,
            "timestamp_sha256": (
                hashlib.sha256(self._timestamp_raw).hexdigest() if self._timestamp_raw else None
            ),
            "versions": self._versions,
        }
        await self.ledger.put_pending(self._pending_name, document, self._spool.path)

    @_timed
    async def after_publish(self) -> Head:
        """Append this run's entries and move the checkpoint (compare-and-swap)."""
        assert self.head is not None
        assert self._spool is not None
        count = self._spool.count
        recorded = self.head.versions
        if (
            not count
            and self.head.seq > 0
            and all(recorded.get(role, 0) >= v for role, v in self._versions.items())
        ):
            return self.head  # nothing new: no lock, no write (a no-op run stays cheap)
        self.head = await self.ledger.commit(self.head, self._spool, versions=self._versions)
        self.appended += count
        if count:
            await self.ledger.drop_pending(self._pending_name)
        return self.head


async def fetch_metadata(fetcher: Any, name: str) -> bytes | None:
    """``name`` from a fetcher's metadata, or None when it answers 404."""
    from mirror.errors import NotFoundError

    try:
        got = await fetcher.fetch_bytes("metadata", name, max_length=64 * 1024 * 1024)
    except NotFoundError:
        return None
    return bytes(got.data) if got is not None else None


async def _aiter(entries: Sequence[Entry]) -> AsyncIterator[Entry]:
    for entry in entries:
        yield entry
