"""The destination lock, a lease: two runs never write the same destination at once.

The lock is one object, ``.tuf-mirror/lock``, created with
``Store.create_exclusive`` (O_CREAT|O_EXCL semantics locally, If-None-Match on S3)
and holding JSON: who took it (``owner``, ``host``, ``pid``), when (``created``),
until when (``expires``), a random ``token`` that tells our lock from a successor's,
and what identifies the process beyond its pid (``boot_id``, ``pid_ns``,
``pid_start``: Linux only, else null).

``acquire_lock`` is an async context manager::

    async with acquire_lock(store, ttl=timedelta(minutes=10)) as lock:
        ...                      # call ``await lock.refresh()`` in long runs

The lock is a *lease*: its holder renews it (``refresh``, every third of the ttl in
``mirror.sync``), and a lease that was not renewed before its ``expires`` is dead,
whichever host or container took it. A dead lease is taken over automatically, with
a warning; so is a lease whose process provably died on this machine (same host,
boot and PID namespace; the crash/SIGKILL case). A live lease raises
``LockHeldError`` (exit 4) naming owner, host, pid and how long it has been held
(``LockHeldError.held_since``). ``break_stale=True`` (``--break-stale-lock``) is for
what the mirror cannot tell by itself: a lease that has not expired yet but whose
holder the operator knows is gone, or an unreadable lock object.

Taking over is a compare-and-swap built from ``create_exclusive`` alone, so it is
safe on every store: to replace the lock object whose bytes were ``B``, a run must
first create the *claim* object ``.tuf-mirror/lock.claim-<sha256(B)>`` (only one run
can), then read the lock again and replace it only if it still holds exactly ``B``,
then delete its claim. A run that claims after the winner is done finds the lock
changed and gives up. A claim is itself a small lease (``CLAIM_TTL``): a taker that
died between claim and replace leaves a claim that expires and is taken over the
same way, a bounded number of levels deep.

The lock is released (deleted, if it is still ours) when the block exits, also on
an exception or cancellation: the release runs in a shielded cancel scope with its
own time limit.

Renewal (``refresh``) is the same compare-and-swap on the lease's current bytes, so
a renewal that comes late and a takeover of the expired lease cannot both succeed.

What it does not do: fence writes. A holder that stops renewing for longer than its
ttl (a stopped VM, a frozen container) loses its lease; it notices at its next
``refresh`` (``LockHeldError``), but writes it made in between are not prevented.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import hashlib
import json
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import trio

from mirror.errors import LockHeldError, StorageError, UsageError
from mirror.storage.base import INTERNAL_PREFIX, NotFoundInStoreError, PutOptions, Store

__all__ = [
    "CLAIM_TTL",
    "DEFAULT_TTL",
    "LOCK_KEY",
    "DestinationLock",
    "LockInfo",
    "LockStatus",
    "ProcessIdentity",
    "acquire_lock",
    "claim_key",
    "lease_for_sync",
    "lock_status",
]

LOCK_KEY = INTERNAL_PREFIX + "lock"
#: a lease lives this long unless renewed (``sync`` passes ``--lock-lease`` and renews
#: every third of it; callers that do not renew keep this longer default)
DEFAULT_TTL = timedelta(hours=1)
#: how long a claim (see the module docstring) protects a takeover in progress
CLAIM_TTL = timedelta(minutes=2)
_MAX_CLAIM_DEPTH = 3
_MAX_LOCK_BYTES = 64 * 1024
_RELEASE_TIMEOUT = 30.0
_ACQUIRE_ATTEMPTS = 3

if TYPE_CHECKING:
    from mirror.config import Settings
    from mirror.report import RunReport

log = logging.getLogger(__name__)
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    """What identifies a running process beyond its pid (Linux; None elsewhere)."""

    host: str
    pid: int
    #: /proc/sys/kernel/random/boot_id: changes at every boot
    boot_id: str | None = None
    #: the PID namespace (/proc/self/ns/pid): differs between containers
    pid_ns: str | None = None
    #: process start time in clock ticks since boot (/proc/<pid>/stat field 22)
    pid_start: int | None = None

    @staticmethod
    @functools.cache
    def current() -> ProcessIdentity:
        """This process (computed once: a few tiny /proc reads)."""
        pid = os.getpid()
        return ProcessIdentity(
            host=socket.gethostname(),
            pid=pid,
            boot_id=_read_text(Path("/proc/sys/kernel/random/boot_id")),
            pid_ns=_readlink(Path("/proc/self/ns/pid")),
            pid_start=_process_start(pid),
        )


@dataclass(frozen=True, slots=True)
class LockInfo:
    """The content of the lock object."""

    owner: str
    process: ProcessIdentity
    created: datetime
    expires: datetime
    token: str

    def to_json(self) -> bytes:
        doc = {
            "owner": self.owner,
            "host": self.process.host,
            "pid": self.process.pid,
            "boot_id": self.process.boot_id,
            "pid_ns": self.process.pid_ns,
            "pid_start": self.process.pid_start,
            "created": self.created.isoformat(),
            "expires": self.expires.isoformat(),
            "token": self.token,
        }
        return json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> LockInfo:
        """Parse a lock object; ``ValueError`` if it is not one."""
        try:
            doc = json.loads(data)
            process = ProcessIdentity(
                host=_as(str, doc["host"]),
                pid=_as(int, doc["pid"]),
                boot_id=_as_optional(str, doc.get("boot_id")),
                pid_ns=_as_optional(str, doc.get("pid_ns")),
                pid_start=_as_optional(int, doc.get("pid_start")),
            )
            created = datetime.fromisoformat(_as(str, doc["created"]))
            expires = datetime.fromisoformat(_as(str, doc["expires"]))
            info = cls(
                owner=_as(str, doc["owner"]),
                process=process,
                created=created,
                expires=expires,
                token=_as(str, doc["token"]),
            )
        except (KeyError, TypeError, UnicodeDecodeError) as exc:
            raise ValueError(f"not a lock object: {exc}") from exc
        if created.tzinfo is None or expires.tzinfo is None:
            raise ValueError("lock times without a time zone")
        return info

    def describe(self, now: datetime) -> str:
        """``alice on host1 (pid 123), taken 5m ago``."""
        age = _duration(now - self.created)
        return f"{self.owner} on {self.process.host} (pid {self.process.pid}), taken {age} ago"


@dataclass(frozen=True, slots=True)
class LockStatus:
    """What ``lock_status`` found: the holder (None if unreadable) and, for a lease
    that is no longer held, why; ``can_take_over``: without ``break_stale``."""

    holder: LockInfo | None
    stale_reason: str | None
    owner_is_dead_here: bool = False

    @property
    def can_take_over(self) -> bool:
        """An expired lease or a holder that died on this machine: taken over
        automatically. An unreadable lock needs ``break_stale``."""
        return self.holder is not None and self.stale_reason is not None


def lock_status(data: bytes, *, now: datetime) -> LockStatus:
    """Classify the content of an existing lock object (pure but for /proc reads)."""
    try:
        holder = LockInfo.from_json(data)
    except ValueError as exc:
        return LockStatus(holder=None, stale_reason=f"the lock object is unreadable ({exc})")
    if _owner_is_dead_here(holder.process):
        return LockStatus(
            holder=holder,
            stale_reason=f"process {holder.process.pid} on this machine is gone",
            owner_is_dead_here=True,
        )
    if holder.expires <= now:
        return LockStatus(
            holder=holder,
            stale_reason=f"its lease expired {_duration(now - holder.expires)} ago",
        )
    return LockStatus(holder=holder, stale_reason=None)


class DestinationLock:
    """A lease this process holds on ``store``; see ``acquire_lock``."""

    def __init__(self, store: Store, info: LockInfo, *, ttl: timedelta | None = None) -> None:
        self.store = store
        self.info = info
        #: how far each renewal pushes the expiry
        self.ttl = ttl if ttl is not None else info.expires - info.created
        #: set when this lease replaced another run's dead lease: that holder
        self.took_over: LockInfo | None = None

    async def refresh(self, *, ttl: timedelta | None = None, now: datetime | None = None) -> None:
        """Renew the lease: push the expiry to ``now + ttl`` (default: the lease's ttl).

        Raises ``LockHeldError`` if the lock is no longer ours (it expired and was
        taken over, or was broken)."""
        now = now or datetime.now(UTC)
        ttl = ttl if ttl is not None else self.ttl
        lost = LockHeldError(
            f"the lock on {self.store.url} was taken over by another run while this one "
            "held it (its lease was not renewed in time, or it was broken)"
        )
        try:
            raw = await self.store.get(LOCK_KEY, max_length=_MAX_LOCK_BYTES)
        except NotFoundInStoreError:
            raise lost from None
        try:
            current = LockInfo.from_json(raw)
        except ValueError:
            raise lost from None
        if current.token != self.info.token:
            raise lost
        refreshed = replace(self.info, expires=now + ttl)
        # The same compare-and-swap a takeover uses: a renewal and a takeover of the
        # same lease content cannot both win.
        claim = replace(refreshed, expires=now + CLAIM_TTL).to_json()
        if not await _compare_and_swap(
            self.store, LOCK_KEY, raw, refreshed.to_json(), claim, now=now
        ):
            raise lost
        self.info = refreshed

    async def release(self) -> None:
        """Delete the lock if it is still ours (a broken-and-retaken lock is left).

        If the lock cannot be read (a storage failure) while our lease is still
        live, it is ours (only an expired lease is taken over without
        ``--break-stale-lock``): it is deleted all the same."""
        try:
            current = await self._read()
        except StorageError:
            if datetime.now(UTC) >= self.info.expires:
                raise
            await self.store.delete(LOCK_KEY)
            return
        if current is None:
            log.warning("lock on %s was already gone at release", self.store.url)
            return
        if current.token != self.info.token:
            log.warning("lock on %s now belongs to another run; not removing it", self.store.url)
            return
        await self.store.delete(LOCK_KEY)

    async def _read(self) -> LockInfo | None:
        try:
            data = await self.store.get(LOCK_KEY, max_length=_MAX_LOCK_BYTES)
        except NotFoundInStoreError:
            return None
        try:
            return LockInfo.from_json(data)
        except ValueError:
            return None


@contextlib.asynccontextmanager
async def acquire_lock(
    store: Store,
    *,
    ttl: timedelta = DEFAULT_TTL,
    break_stale: bool = False,
    owner: str | None = None,
    now: datetime | None = None,
) -> AsyncIterator[DestinationLock]:
    """Hold the destination lease of ``store`` for the ``async with`` block.

    ``now`` (aware datetime) replaces the wall clock for the lock's times (tests).
    Raises ``LockHeldError`` when another run holds a live lease (also with
    ``break_stale`` false and an unreadable lock object); an expired lease is taken
    over (see the module docstring). The lock is released on exit, exceptions and
    cancellation included; a failed release is logged, and raised as
    ``StorageError`` only when the block itself succeeded.
    """
    lock = await _acquire(store, ttl=ttl, break_stale=break_stale, owner=owner, now=now)
    failed = True
    try:
        yield lock
        failed = False
    finally:
        with trio.move_on_after(_RELEASE_TIMEOUT, shield=True) as scope:
            try:
                await lock.release()
            except StorageError as exc:
                log.warning("could not release the lock on %s: %s", store.url, exc)
                if not failed:
                    raise
        if scope.cancelled_caught:
            log.warning("releasing the lock on %s timed out", store.url)


async def _acquire(
    store: Store,
    *,
    ttl: timedelta,
    break_stale: bool,
    owner: str | None,
    now: datetime | None,
) -> DestinationLock:
    if ttl <= timedelta(0):
        raise ValueError("ttl must be positive")
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    info = LockInfo(
        owner=owner or _default_owner(),
        process=ProcessIdentity.current(),
        created=now,
        expires=now + ttl,
        token=secrets.token_hex(16),
    )
    claim = replace(info, expires=now + CLAIM_TTL).to_json()
    held_since: datetime | None = None
    for _ in range(_ACQUIRE_ATTEMPTS):
        if await store.create_exclusive(LOCK_KEY, info.to_json()):
            return DestinationLock(store, info, ttl=ttl)
        try:
            existing = await store.get(LOCK_KEY, max_length=_MAX_LOCK_BYTES)
        except NotFoundInStoreError:
            continue  # released between our create and our read: try again
        status = lock_status(existing, now=now)
        holder = status.holder.describe(now) if status.holder else "an unknown run"
        if status.holder is not None and status.stale_reason is None:
            held_since = status.holder.created
            if not break_stale:
                expires_in = _duration(status.holder.expires - now)
                raise LockHeldError(
                    f"destination {store.url} is locked by {holder}; its lease expires in "
                    f"{expires_in} unless renewed (--break-stale-lock takes it over if you "
                    "know that run is gone)",
                    held_since=held_since,
                )
            reason = "--break-stale-lock"
        elif status.holder is None and not break_stale:
            raise LockHeldError(
                f"destination {store.url} has a lock object that is not a lease: "
                f"{status.stale_reason}; remove it with --break-stale-lock once you are "
                "sure no run holds it"
            )
        else:
            reason = status.stale_reason or "--break-stale-lock"
        log.warning("taking over the lock on %s from %s: %s", store.url, holder, reason)
        if await _compare_and_swap(store, LOCK_KEY, existing, info.to_json(), claim, now=now):
            lock = DestinationLock(store, info, ttl=ttl)
            lock.took_over = status.holder
            return lock
        # Another run replaced the lock first (or renewed it): judge again.
    raise LockHeldError(
        f"destination {store.url} is locked: another run took the lock first",
        held_since=held_since,
    )


@contextlib.asynccontextmanager
async def lease_for_sync(
    store: Store, settings: Settings, report: RunReport
) -> AsyncIterator[DestinationLock]:
    """``acquire_lock`` as a sync run takes it: a ``--lock-lease`` long lease,
    ``--break-stale-lock``, and the report told how long the destination has been
    locked out (``locked_out_seconds``) or whose dead lease was taken over."""
    if settings.lock_lease <= 0:
        raise UsageError(f"--lock-lease must be positive, got {settings.lock_lease:g}s")
    ttl = timedelta(seconds=settings.lock_lease)
    try:
        async with acquire_lock(store, ttl=ttl, break_stale=settings.break_stale_lock) as lock:
            if lock.took_over is not None:
                report.lock_taken_over = lock.took_over.describe(lock.info.created)
            yield lock
    except LockHeldError as exc:
        if exc.held_since is not None:
            held = datetime.now(UTC) - exc.held_since
            report.locked_out_seconds = max(0.0, round(held.total_seconds(), 3))
        raise


def claim_key(seen: bytes) -> str:
    """The claim object a run must create before replacing an object holding ``seen``."""
    return f"{LOCK_KEY}.claim-{hashlib.sha256(seen).hexdigest()[:32]}"


async def _compare_and_swap(
    store: Store,
    key: str,
    seen: bytes,
    new: bytes,
    claim: bytes,
    *,
    now: datetime,
    depth: int = 0,
) -> bool:
    """Replace ``key``, last read as ``seen``, with ``new``; False when another run
    claimed it first or the object changed since it was read.

    Only the run that creates ``claim_key(seen)`` may write; it checks the object
    still holds ``seen`` before writing and deletes its claim afterwards. An expired
    claim (its taker died) is itself taken over the same way, up to
    ``_MAX_CLAIM_DEPTH`` levels."""
    key_of_claim = claim_key(seen)
    if not await store.create_exclusive(key_of_claim, claim):
        try:
            other = await store.get(key_of_claim, max_length=_MAX_LOCK_BYTES)
        except NotFoundInStoreError:
            return False  # its taker finished: the object changed
        status = lock_status(other, now=now)
        if depth >= _MAX_CLAIM_DEPTH or not (status.can_take_over or status.holder is None):
            return False
        log.warning("taking over an abandoned lock claim on %s", store.url)
        if not await _compare_and_swap(
            store, key_of_claim, other, claim, claim, now=now, depth=depth + 1
        ):
            return False
    try:
        try:
            current: bytes | None = await store.get(key, max_length=_MAX_LOCK_BYTES)
        except NotFoundInStoreError:
            current = None
        if current != seen:
            return False
        await store.put_bytes(key, new, _LOCK_OPTIONS)
        return True
    finally:
        with trio.move_on_after(_RELEASE_TIMEOUT, shield=True):
            try:
                await store.delete(key_of_claim)
            except StorageError as exc:
                # Harmless: a claim on bytes the lock no longer holds is never
                # needed again, and a live one expires after CLAIM_TTL.
                log.warning("could not delete the lock claim %s: %s", key_of_claim, exc)


_LOCK_OPTIONS = PutOptions(content_type="application/json", cache_control="no-store")


def _owner_is_dead_here(process: ProcessIdentity) -> bool:
    """True only when ``process`` provably ran on this machine, in this boot and
    PID namespace, and is gone (or its pid now names a different process)."""
    me = ProcessIdentity.current()
    if (
        process.host != me.host
        or process.boot_id is None
        or process.boot_id != me.boot_id
        or process.pid_ns is None
        or process.pid_ns != me.pid_ns
    ):
        return False
    if process.pid == me.pid:
        return process.pid_start is not None and process.pid_start != me.pid_start
    try:
        os.kill(process.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # exists, owned by another user
    start = _process_start(process.pid)
    return process.pid_start is not None and start is not None and start != process.pid_start


def _default_owner() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return f"uid {os.getuid()}"


def _process_start(pid: int) -> int | None:
    stat = _read_text(Path(f"/proc/{pid}/stat"))
    if stat is None:
        return None
    # Field 2 (comm) is parenthesised and may hold spaces: split after its last ')'.
    fields = stat.rpartition(")")[2].split()
    try:
        return int(fields[19])  # field 22 overall
    except (IndexError, ValueError):
        return None


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _readlink(path: Path) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def _as(kind: type[_T], value: object) -> _T:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"expected {kind.__name__}, got {value!r}")
    return value


def _as_optional(kind: type[_T], value: object) -> _T | None:
    return None if value is None else _as(kind, value)


def _duration(delta: timedelta) -> str:
    """``3d2h``, ``5m``, ``40s``: a coarse, human-readable length of time."""
    seconds = max(0, int(delta.total_seconds()))
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    if minutes:
        return f"{minutes}m"
    return f"{seconds}s"
