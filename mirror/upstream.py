"""What a sync does about the ways real upstreams differ from a textbook repository.

Hooks the orchestrator (``mirror.sync``) calls, kept here so that it stays small:

* ``check_is_metadata``: an upstream that answers 200 with an HTML page (a wrong
  ``--upstream``, a CDN's error page) is named as such, not reported as a JSON
  parse error deep in the trust core;
* ``naming``: verification errors name the file and URL that failed;
* ``fetch_root_history``: root versions older than the pinned one, copied only
  when they can be shown authentic, never failing the run;
* ``upstream_root_json``: the unversioned ``root.json`` some upstreams serve for
  bootstrapping, copied only when it equals a verified root version;
* ``note_unreachable``: roles a snapshot lists that no delegation reaches, counted;
* ``check_pinned_root``: a ``--root`` file that is not a TUF root is a
  configuration error.

What this module does not do: decide trust (``mirror.trust``), HTTP details
(``mirror.fetch``) or write anything.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from mirror.errors import (
    ForbiddenError,
    MalformedMetadataError,
    MirrorError,
    NotFoundError,
    TamperedDestinationError,
    UsageError,
    VerificationError,
)
from mirror.fetch.base import FetchedBytes
from mirror.fetch.names import join_url
from mirror.log import log
from mirror.report import RunReport
from mirror.trust.root_history import link_older_root

__all__ = [
    "check_is_metadata",
    "check_pinned_root",
    "fetch_root_history",
    "keep_published_roots",
    "metadata_location",
    "naming",
    "note_unreachable",
    "upstream_root_json",
]

#: the answers that mean "the upstream does not have this file": 404/410, and 403
#: from an object store that hides missing keys (S3/CloudFront with origin access
#: control answer 403 for a key that does not exist)
ABSENT = (NotFoundError, ForbiddenError)


def metadata_location(upstream: str, metadata_url: str | None, name: str) -> str:
    """Where the upstream serves the metadata file ``name`` (for messages)."""
    base = metadata_url or join_url(upstream, "metadata")
    return join_url(base, name)


def check_is_metadata(location: str, got: FetchedBytes, *, first_sync: bool) -> None:
    """Refuse a body that cannot be TUF metadata (not a JSON object) with a message
    that says what came instead. Before anything was published this is a
    configuration error (exit 2: the upstream URL is wrong); afterwards, bytes the
    keys did not sign (exit 1)."""
    head = got.data.lstrip()[:1]
    if head == b"{":
        return
    kind = (got.content_type or "").split(";", 1)[0].strip()
    if not kind or kind == "application/json":
        kind = "HTML" if head == b"<" else ("an empty body" if not head else "non-JSON data")
    message = f"{location} returned {kind}, not TUF metadata: check --upstream / --metadata-url"
    if first_sync:
        raise UsageError(message)
    raise MalformedMetadataError(message)


@contextmanager
def naming(location: str) -> Iterator[None]:
    """Re-raise a verification error of the bytes from ``location`` with the
    location in front (same class, so the same exit status)."""
    try:
        yield
    except TamperedDestinationError:
        raise
    except VerificationError as exc:
        if location in str(exc):
            raise
        raise type(exc)(f"{location}: {exc}") from exc


def check_pinned_root(data: bytes, path: Path) -> None:
    """``UsageError`` unless ``data`` (the ``--root`` file) parses as TUF root
    metadata: a wrong file is the operator's mistake, not a security event."""
    from mirror.trust import parse_metadata as parse

    try:
        parse(data, "root", f"--root {path}")
    except MalformedMetadataError as exc:
        raise UsageError(f"{exc} (the pinned root must be the upstream's root.json)") from exc


async def fetch_root_history(
    fetch: Callable[[str], Awaitable[bytes]],
    pinned: bytes,
    pinned_version: int,
    report: RunReport,
) -> dict[int, bytes]:
    """Root versions ``1 .. pinned_version-1`` that can be shown authentic, by
    version: fetched from ``pinned_version-1`` down, each accepted only when its root
    keys and threshold signed the next (already accepted) one and itself
    (``mirror.trust.root_history``). The first version that is absent upstream or
    does not link ends the walk: it and every older one are skipped with one
    warning and counted in ``report.root_history_skipped``. Never raises a
    ``MirrorError``: these versions are a service to old clients, not the job."""
    accepted: dict[int, bytes] = {}
    newer = pinned
    for version in range(pinned_version - 1, 0, -1):
        name = f"{version}.root.json"
        try:
            data = await fetch(name)
            link_older_root(data, version, newer)
        except MirrorError as exc:
            reason = "not served" if isinstance(exc, ABSENT) else exc.diagnostics()
            warning = (
                f"root versions 1..{version} not mirrored ({name} cannot be shown "
                f"authentic: {reason}); clients pinned on them cannot update from here"
            )
            log.warning("%s", warning)
            report.warnings.append(warning)
            report.root_history_skipped = version
            break
        accepted[version] = data
        newer = data
    return accepted


async def keep_published_roots(
    read: Callable[[str], Awaitable[bytes | None]], roots: dict[int, bytes], report: RunReport
) -> dict[int, bytes]:
    """The old root versions still to write: those the destination does not hold
    yet. A version it holds with other bytes (the upstream re-serialized an old
    file, as sigstore did with 9.root.json) keeps the published, verified bytes
    (invariant 9), and the difference is reported."""
    out: dict[int, bytes] = {}
    for version, data in roots.items():
        name = f"{version}.root.json"
        held = await read(name)
        if held is None:
            out[version] = data
        elif held != data:
            warning = (
                f"the upstream now serves other bytes for {name} than this mirror "
                "published (re-serialized upstream?): the published copy is kept"
            )
            log.warning("%s", warning)
            report.warnings.append(warning)
    return out


async def upstream_root_json(
    fetch: Callable[[str], Awaitable[bytes]], verified: Iterable[bytes], report: RunReport
) -> bytes | None:
    """The upstream's unversioned ``root.json`` when it serves one whose bytes equal
    a verified root version (then a mirror serves it too); else None, with a
    warning when it serves something else."""
    try:
        data = await fetch("root.json")
    except ABSENT:
        return None
    except MirrorError as exc:
        log.info("not mirroring root.json: %s", exc.diagnostics())
        return None
    if any(data == known for known in verified):
        return data
    warning = "the upstream's root.json is no verified root version: not mirrored"
    log.warning("%s", warning)
    report.warnings.append(warning)
    return None


def note_unreachable(report: RunReport, roles: list[str], missing: Iterable[str] = ()) -> None:
    """Count roles the snapshot lists but no delegation reaches (never fetched);
    log them once, at info level: real repositories keep such roles for years."""
    report.unreachable_roles = list(roles)
    if roles:
        log.info(
            "snapshot lists %d role(s) that no delegation reaches, not mirrored: %s",
            len(roles),
            ", ".join(roles),
        )
    for role in missing:
        log.warning("a delegation names %s, which the snapshot does not list", role)
