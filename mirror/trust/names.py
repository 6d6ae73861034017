"""Safe names: role names in metadata file names, target paths in target file names.

Role names are percent-encoded into one file name exactly as in URLs
(``urllib.parse.quote(name, safe="")``: UTF-8 bytes, everything except
``A-Z a-z 0-9 _ . - ~`` becomes ``%XX`` with upper-case hex), so a role name can
never add a directory level. Target paths keep their ``/`` separators (they are
the upstream's directory layout), so they are validated instead: nothing that could
escape the destination or be read differently on another system is accepted.

This module only computes and checks names; it does not join them onto base URLs or
directories and does no I/O.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from mirror.errors import MalformedMetadataError, UnsafeNameError

__all__ = [
    "MAX_NAME_BYTES",
    "MAX_PATH_BYTES",
    "encode_role_name",
    "metadata_filename",
    "target_filenames",
    "validate_role_name",
    "validate_target_path",
]

MAX_PATH_BYTES = 4096
"""Longest target path accepted, in UTF-8 bytes."""

MAX_NAME_BYTES = 255
"""Longest single file name (path segment) accepted, in bytes (common filesystem limit)."""

# "<version>.<encoded role>.json" must fit in one file name for any version up to
# 20 digits (2**64 has 20), so the encoded role name gets what is left.
_MAX_VERSION_DIGITS = 20
_MAX_ENCODED_ROLE_BYTES = MAX_NAME_BYTES - _MAX_VERSION_DIGITS - len("..json")

_LOWER_HEX = re.compile(r"[0-9a-f]+")
_DRIVE = re.compile(r"[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: a segment of at most this many characters fits in MAX_NAME_BYTES whatever they
#: are (UTF-8 takes at most 4 bytes per code point)
_SHORT_SEGMENT = MAX_NAME_BYTES // 4


def encode_role_name(name: str) -> str:
    """Percent-encode a role name for use in a file name or URL (one segment)."""
    return quote(name, safe="")


def validate_role_name(name: str) -> str:
    """Return ``name`` if it can be a role name, else raise ``UnsafeNameError``.

    Percent-encoding keeps every name inside one file name, so almost everything is
    acceptable; rejected are the empty name, NUL, and names whose encoded form would
    not fit in a file name together with a version prefix and ``.json``.
    """
    if not name:
        raise UnsafeNameError("role name is empty")
    if "\x00" in name:
        raise UnsafeNameError(f"role name {name!r} contains NUL")
    encoded = encode_role_name(name)
    if len(encoded) > _MAX_ENCODED_ROLE_BYTES:
        raise UnsafeNameError(
            f"role name {name[:40]!r}...: encoded name is {len(encoded)} bytes, "
            f"limit {_MAX_ENCODED_ROLE_BYTES}"
        )
    return name


def metadata_filename(role: str, version: int | None) -> str:
    """The metadata file name of ``role``: ``"3.snapshot.json"``, ``"snapshot.json"``,
    ``"7.%2Fweird.json"``."""
    validate_role_name(role)
    encoded = encode_role_name(role)
    if version is None:
        return f"{encoded}.json"
    if version < 1:
        raise ValueError(f"metadata version must be >= 1, got {version}")
    return f"{version}.{encoded}.json"


def validate_target_path(path: str) -> str:
    """Return ``path`` if it is a safe relative target path, else raise ``UnsafeNameError``.

    Rejected: empty paths, absolute paths, backslashes, NUL and other control
    characters, ``.`` and ``..`` segments, empty segments (``a//b``, trailing ``/``),
    a leading Windows drive (``C:``), paths over ``MAX_PATH_BYTES`` and segments over
    ``MAX_NAME_BYTES`` (UTF-8 bytes).
    """
    if not path:
        raise UnsafeNameError("target path is empty")
    if path.startswith("/"):
        raise UnsafeNameError(f"target path {path!r} is absolute")
    if "\\" in path:
        raise UnsafeNameError(f"target path {path!r} contains a backslash")
    if _CONTROL.search(path) is not None:
        raise UnsafeNameError(f"target path {path!r} contains a control character")
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates
        raise UnsafeNameError(f"target path {path!r} is not valid Unicode") from exc
    if len(encoded) > MAX_PATH_BYTES:
        raise UnsafeNameError(
            f"target path {path[:60]!r}... is {len(encoded)} bytes, limit {MAX_PATH_BYTES}"
        )
    segments = path.split("/")
    if _DRIVE.match(segments[0]):
        raise UnsafeNameError(f"target path {path!r} starts with a drive letter")
    for segment in segments:
        if segment == "":
            raise UnsafeNameError(f"target path {path!r} has an empty segment")
        if segment in (".", ".."):
            raise UnsafeNameError(f"target path {path!r} has a {segment!r} segment")
        if len(segment) > _SHORT_SEGMENT and len(segment.encode("utf-8")) > MAX_NAME_BYTES:
            raise UnsafeNameError(
                f"target path {path[:60]!r}: a segment is longer than {MAX_NAME_BYTES} bytes"
            )
    return path


def target_filenames(path: str, hashes: dict[str, str], *, consistent_snapshot: bool) -> list[str]:
    """The names, relative to the targets prefix, under which a target is stored.

    With consistent snapshots there is one content-addressed name per listed hash,
    ``<dirs>/<hexhash>.<basename>``, sorted by algorithm name (duplicates removed);
    otherwise just ``[path]``. The path is validated first; hash values must be
    lower-case hex (they become part of a file name).
    """
    validate_target_path(path)
    if not consistent_snapshot:
        return [path]
    if not hashes:
        raise MalformedMetadataError(f"target {path!r}: no hashes listed")
    directory, _, basename = path.rpartition("/")
    basename_bytes = len(basename.encode("utf-8"))
    directory_bytes = len(directory.encode("utf-8")) + 1 if directory else 0
    names: list[str] = []
    for algorithm in sorted(hashes):
        value = hashes[algorithm]
        if not isinstance(value, str) or not _LOWER_HEX.fullmatch(value):
            raise UnsafeNameError(
                f"target {path!r}: {algorithm} hash {value!r} is not lower-case hex"
            )
        name = f"{directory}/{value}.{basename}" if directory else f"{value}.{basename}"
        # ``path`` passed, and a lower-case hex prefix adds no character the checks
        # refuse: only the lengths can fail now (the full check gives the message).
        segment_bytes = len(value) + 1 + basename_bytes
        if segment_bytes > MAX_NAME_BYTES or directory_bytes + segment_bytes > MAX_PATH_BYTES:
            validate_target_path(name)
        if name not in names:
            names.append(name)
    return names
