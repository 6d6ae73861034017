"""HTTP headers for published objects: ``Content-Type`` and ``Cache-Control``.

A mirror is served by a static web server, an S3 website or a CDN, so the headers
stored with each object decide what caches may keep. Versioned and
content-addressed files never change once published (DESIGN invariant 9) and get
``IMMUTABLE_CACHE_CONTROL``; files that are replaced in place (``timestamp.json``,
and every unversioned file of a repository without consistent snapshots) get a
short ``max-age``.

These are pure functions of the key: no I/O, no storage calls. They do not decide
*whether* a file is published (``sync.py`` does) and they do not validate keys
(``mirror.trust`` does). Backends that cannot store headers (a local directory)
ignore them.
"""

from __future__ import annotations

import functools
import mimetypes
import re

from mirror.storage.base import PutOptions

__all__ = [
    "IMMUTABLE_CACHE_CONTROL",
    "cache_control_for",
    "content_type_for",
    "put_options_for",
]

#: ``Cache-Control`` of objects that never change once published (one year).
IMMUTABLE_CACHE_CONTROL = "public, max-age=31536000, immutable"

# ``N.root.json``, ``N.snapshot.json``, ``N.<percent-encoded role>.json``.
_VERSIONED_METADATA = re.compile(r"[1-9][0-9]*\.[^/]+\.json")
_VERSIONED_ROOT = re.compile(r"[1-9][0-9]*\.root\.json")
# ``<hex digest>.<name>``: sha224 (56) and longer digests; a hash prefix shorter than
# sha224 is not accepted as content addressing.
_HASH_PREFIXED = re.compile(r"[0-9a-f]{56,128}\.[^/]+")


@functools.cache
def _mime() -> mimetypes.MimeTypes:
    """Only the interpreter's built-in table, so the answer does not depend on the
    host's /etc/mime.types (built on first use: a run with nothing to copy has no
    use for it)."""
    return mimetypes.MimeTypes(filenames=())


# Compressed files whose type ``mimetypes`` reports as an encoding.
_ENCODING_TYPES = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
}


def _metadata_name(key: str, metadata_prefix: str) -> str | None:
    """The file name of ``key`` when it is a metadata file, else None."""
    prefix = metadata_prefix.strip("/")
    if prefix:
        if not key.startswith(prefix + "/"):
            return None
        name = key[len(prefix) + 1 :]
    else:
        name = key
    if "/" in name or not name.endswith(".json"):
        return None
    return name


def content_type_for(key: str, *, metadata_prefix: str = "metadata") -> str:
    """``Content-Type`` for ``key``.

    ``application/json`` for metadata files (``<metadata_prefix>/*.json``); for
    targets a guess from the extension, ``application/octet-stream`` when unknown.
    A compressed file is labelled with its compression type (``x.tar.gz`` →
    ``application/gzip``), never with ``Content-Encoding``, so that clients store
    the exact bytes that were signed.
    """
    if _metadata_name(key, metadata_prefix) is not None:
        return "application/json"
    guessed, encoding = _mime().guess_type(key, strict=False)
    if encoding is not None:
        return _ENCODING_TYPES.get(encoding, "application/octet-stream")
    return guessed or "application/octet-stream"


def cache_control_for(
    key: str,
    *,
    consistent_snapshot: bool,
    short_max_age: int = 60,
    metadata_prefix: str = "metadata",
) -> str:
    """``Cache-Control`` for ``key``.

    Immutable: ``N.root.json`` always; with consistent snapshots also every other
    versioned metadata file and every hash-prefixed target (``<dirs>/<hex>.<name>``).
    Short (``public, max-age=<short_max_age>``): ``timestamp.json`` and everything
    that a repository without consistent snapshots replaces in place.
    """
    if short_max_age < 0:
        raise ValueError(f"short_max_age must be >= 0, not {short_max_age}")
    short = f"public, max-age={short_max_age}"
    name = _metadata_name(key, metadata_prefix)
    if name is not None:
        if _VERSIONED_ROOT.fullmatch(name):
            return IMMUTABLE_CACHE_CONTROL
        if consistent_snapshot and _VERSIONED_METADATA.fullmatch(name):
            return IMMUTABLE_CACHE_CONTROL
        return short
    basename = key.rsplit("/", 1)[-1]
    if consistent_snapshot and _HASH_PREFIXED.fullmatch(basename):
        return IMMUTABLE_CACHE_CONTROL
    return short


def put_options_for(
    key: str,
    *,
    consistent_snapshot: bool,
    sha256: str | None = None,
    short_max_age: int = 60,
    metadata_prefix: str = "metadata",
    durable: bool = True,
) -> PutOptions:
    """The ``PutOptions`` to publish ``key`` with: both headers and the checksum
    (``durable``: as ``PutOptions.durable``)."""
    return PutOptions(
        content_type=content_type_for(key, metadata_prefix=metadata_prefix),
        cache_control=cache_control_for(
            key,
            consistent_snapshot=consistent_snapshot,
            short_max_age=short_max_age,
            metadata_prefix=metadata_prefix,
        ),
        sha256=sha256,
        durable=durable,
    )
