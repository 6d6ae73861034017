"""The one exception tree of tuf-mirror, and the exit status each branch maps to.

Exit statuses (the one table; ``--help``, the README and the shipped units repeat
it). Each status means one thing:

=====  ======================================================================
0      ok: the destination holds the upstream's current verified state
1      security event: something did not verify (alert a person)
2      usage or configuration: bad flags, config file, environment, missing extra
3      transient: network, upstream or storage trouble; the next run retries
4      locked: a live run holds the destination; this run did nothing
5      budget: --max-transfer reached after making progress; run again
6      witness alarm: mirrored, but a person should look
70     internal error: a bug in tuf-mirror, printed with its traceback
130    interrupted by SIGINT: stopped cleanly, nothing partial published
143    terminated by SIGTERM: stopped cleanly, nothing partial published
=====  ======================================================================

::

    MirrorError                      exit 70 unless its branch sets one (a bug)
    ├── UsageError                   exit 2  bad flags, config file, environment
    │   ├── StorageConfigError       exit 2  missing bucket, access denied, bad path
    │   ├── MissingExtraError        exit 2  an optional dependency is not installed
    │   ├── WrongBaseError           exit 2  import: bundle made for another state
    │   ├── BaseUnavailableError     exit 2  export: the far side's base cannot be rebuilt
    │   └── ValidityTooShortError    exit 2  export: state expires before --min-validity
    ├── VerificationError            exit 1  something the upstream's keys did not sign
    │   ├── MalformedMetadataError           not parseable / not TUF / wrong _type
    │   ├── SignatureError                   threshold not reached, bad signature
    │   ├── BadVersionError                  version differs from the expected one
    │   ├── RollbackError                    version lower than trusted, role dropped
    │   ├── RootRotationLimitError           more new root versions than the cap allows
    │   ├── ExpiredMetadataError             freeze attack
    │   ├── LengthOrHashMismatchError        bytes differ from what was signed
    │   │   └── OversizeError                more bytes than declared (endless data)
    │   ├── UnsafeNameError                  a role name or target path that could escape
    │   ├── DelegationError                  target not authorised / role not in snapshot
    │   ├── TamperedDestinationError         the destination holds unverifiable data
    │   ├── PolicyConflictError              --policy: parties vouch for different files
    │   └── BundleError                      air-gap bundle missing, truncated or altered
    ├── TransientError               exit 3  worth retrying later
    │   ├── FetchError                       network, HTTP 5xx, timeouts
    │   │   ├── NotFoundError                HTTP 404 (policy decided by the caller)
    │   │   └── ForbiddenError               HTTP 403 (an object store's "no such key" too)
    │   ├── StorageError                     disk full, write failed, S3 5xx
    │   └── IncompletePublishError           verify: a publish stopped before timestamp.json
    ├── LockHeldError                exit 4  another run holds the destination
    ├── BudgetExhaustedError         exit 5  --max-transfer reached; run again
    ├── TerminatedError              exit 143  shard steps: SIGTERM, stopped cleanly
    └── Interrupted                  exit 130 / 143  SIGINT / SIGTERM (``mirror.shutdown``)

    (exit 6, ``ExitStatus.WITNESS_ALARM``, is no error: the run mirrored, and the
    ledger's witness raised an alarm a person should look at; ``mirror.ledger``)

Third-party exceptions are translated into this tree in the module that owns the
library (``raise FetchError(...) from exc``) and never caught anywhere else.
Programming errors (calling steps in the wrong order) are ``RuntimeError``, never
a ``MirrorError``, so they keep their traceback; the CLI exits 70 for them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from enum import IntEnum


class ExitStatus(IntEnum):
    """Process exit statuses, as documented in the README."""

    OK = 0
    VERIFICATION_FAILED = 1
    USAGE = 2
    TRANSIENT = 3
    LOCKED = 4
    BUDGET = 5
    WITNESS_ALARM = 6
    SOFTWARE = 70
    SIGINT = 130
    SIGTERM = 143
    #: the shard steps' name for 143 (an alias of SIGTERM)
    TERMINATED = 143


#: what each exit status means, one line each: ``--help`` prints this table, and
#: tests check that this docstring, the README and the shipped units agree with it
EXIT_STATUS_MEANINGS: dict[ExitStatus, str] = {
    ExitStatus.OK: "ok: the destination holds the upstream's current verified state",
    ExitStatus.VERIFICATION_FAILED: "security event: something did not verify (alert a person)",
    ExitStatus.USAGE: "usage or configuration: bad flags, config file, environment, missing extra",
    ExitStatus.TRANSIENT: "transient: network, upstream or storage trouble; the next run retries",
    ExitStatus.LOCKED: "locked: a live run holds the destination; this run did nothing",
    ExitStatus.BUDGET: "budget: --max-transfer reached after making progress; run again",
    ExitStatus.WITNESS_ALARM: "witness alarm: mirrored, but a person should look",
    ExitStatus.SOFTWARE: "internal error: a bug in tuf-mirror, printed with its traceback",
    ExitStatus.SIGINT: "interrupted by SIGINT: stopped cleanly, nothing partial published",
    ExitStatus.SIGTERM: "terminated by SIGTERM: stopped cleanly, nothing partial published",
}


class MirrorError(Exception):
    """Base class of every error tuf-mirror reports to a person.

    Every branch sets its own exit status; one raised without a branch is a bug
    (70), so that 1 can only ever mean a security event."""

    exit_status: ExitStatus = ExitStatus.SOFTWARE

    def diagnostics(self) -> str:
        """A one-line explanation for people: what failed and where."""
        return f"{type(self).__name__}: {self}"


class UsageError(MirrorError):
    """Bad command line, configuration file or environment."""

    exit_status = ExitStatus.USAGE


class StorageConfigError(UsageError):
    """The destination cannot be used as configured (missing bucket, denied)."""


class MissingExtraError(UsageError):
    """An optional dependency (``pip install 'tuf-mirror[s3]'``) is not installed."""


class VerificationError(MirrorError):
    """Data that the upstream's keys did not sign: a security event."""

    exit_status = ExitStatus.VERIFICATION_FAILED


class MalformedMetadataError(VerificationError):
    """Bytes that do not parse as the TUF metadata that was expected."""


class SignatureError(VerificationError):
    """Signature threshold not reached."""


class BadVersionError(VerificationError):
    """A version number other than the one expected (e.g. 2.root.json holding v3)."""


class RollbackError(VerificationError):
    """A version lower than the trusted one, or a role dropped from snapshot."""


class RootRotationLimitError(VerificationError):
    """More new root versions in one update than ``Limits.max_root_rotations``."""


class ExpiredMetadataError(VerificationError):
    """Metadata past its expiry (freeze attack)."""


class LengthOrHashMismatchError(VerificationError):
    """Bytes whose length or hashes differ from the signed ones."""


class OversizeError(LengthOrHashMismatchError):
    """More bytes than the declared length or the configured cap (endless data)."""


class UnsafeNameError(VerificationError):
    """A role name or target path that could escape the destination."""


class DelegationError(VerificationError):
    """A target listed by a role that is not authorised for it, or a role missing
    from snapshot."""


class TamperedDestinationError(VerificationError):
    """The destination holds metadata or targets that do not verify."""


class PolicyConflictError(VerificationError):
    """Under a trust policy (--policy), two groups of repositories reach the score
    for different files of one target path (or agree on a file the primary does not
    serve): nothing new is published."""


class BundleError(VerificationError):
    """An air-gap bundle with a missing, truncated or altered volume or file, or an
    unreadable manifest: nothing on the transport is trusted."""


class WrongBaseError(UsageError):
    """An air-gap delta bundle whose base state is not the destination's state
    (applied twice, out of order, or to another mirror)."""


class BaseUnavailableError(UsageError):
    """The exporter cannot rebuild the far side's base state (its metadata is gone
    from the upstream and from the export state directory): export with --full."""


class ValidityTooShortError(UsageError):
    """The state to export expires sooner than --min-validity allows."""


class TransientError(MirrorError):
    """A failure worth retrying later: network, storage, a busy upstream."""

    exit_status = ExitStatus.TRANSIENT


class FetchError(TransientError):
    """Network or HTTP failure while fetching from an upstream."""


class NotFoundError(FetchError):
    """The upstream answered 404 (or the file is absent from a local upstream)."""


class ForbiddenError(FetchError):
    """The upstream answered 403. S3 and CloudFront with origin access control answer
    so for a key that does not exist: probing the next root version, it means "no
    newer root"; anywhere else it is a failure like any other status."""


class StorageError(TransientError):
    """The destination could not be read or written (disk full, S3 error)."""


class IncompletePublishError(TransientError):
    """The destination holds a publish that stopped before ``timestamp.json`` (after
    a key-rotating root): clients cannot use it until the next ``sync`` completes it
    (``mirror.recovery``)."""


class LockHeldError(MirrorError):
    """Another run holds the destination's lock (a live lease)."""

    exit_status = ExitStatus.LOCKED

    def __init__(self, message: str, *, held_since: datetime | None = None) -> None:
        super().__init__(message)
        #: since when the holder has held the destination, when known
        self.held_since = held_since


class BudgetExhaustedError(MirrorError):
    """The transfer budget (--max-transfer) was reached; run again to continue."""

    exit_status = ExitStatus.BUDGET


class TerminatedError(MirrorError):
    """The run received SIGTERM (a spot interruption, a pod eviction) and stopped
    cleanly; what it wrote is verified and kept, and a rerun continues."""

    exit_status = ExitStatus.TERMINATED


class Interrupted(MirrorError):
    """SIGINT or SIGTERM stopped the run cleanly: nothing partial was published, the
    lock was released. The exit status is 128 + the signal number (130, 143)."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum
        # SIGINT (2) is 130; SIGTERM, and any other stop signal, is 143.
        self.exit_status = ExitStatus.SIGINT if signum == 2 else ExitStatus.SIGTERM

    def diagnostics(self) -> str:
        """The one line: which signal, and what state the destination was left in."""
        return str(self)


@contextmanager
def one_error() -> Iterator[None]:
    """Turn a nursery's group of ``MirrorError``s into the one that matters most
    (a verification failure before a transient one); anything else is a bug and
    propagates as the group."""
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = list(_leaves(group))
        if not leaves or not all(isinstance(leaf, MirrorError) for leaf in leaves):
            raise
        errors = [leaf for leaf in leaves if isinstance(leaf, MirrorError)]
        errors.sort(key=lambda error: not isinstance(error, VerificationError))
        raise errors[0] from None


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc
