"""Relative names of upstream files, and how they become URLs.

Metadata names arrive already percent-encoded by the caller (``1.root.json``,
``3.a%2Fb.json``): they are appended to the metadata base verbatim. Target names
are raw relative paths (``dir/a b%c.txt``): each segment is percent-encoded for the
URL (``dir/a%20b%25c.txt``). Base URLs are opaque prefixes: never decoded or
re-encoded, only joined with exactly one ``/``.

Both kinds are checked again here (defence in depth; ``mirror.trust`` validates
first): a name that could escape its base raises ``UnsafeNameError``.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from mirror.errors import UnsafeNameError
from mirror.fetch.base import Namespace

__all__ = ["encoded_path", "join_url", "name_segments", "url_path"]

#: a path of segments of characters ``quote`` never encodes (RFC 3986 unreserved)
_UNRESERVED_PATH = re.compile(r"[A-Za-z0-9_.~/-]*")
# Characters that would change a URL's meaning if appended verbatim.
_NOT_IN_ENCODED_NAMES = frozenset("?#\\ \0") | {chr(c) for c in range(0x20)} | {"\x7f"}


def name_segments(namespace: Namespace, name: str) -> list[str]:
    """The ``/``-separated segments of ``name``; ``UnsafeNameError`` if any is empty,
    ``.`` or ``..``, or the name holds a backslash or NUL (or, for an encoded
    metadata name, a character a URL path cannot hold verbatim)."""
    if not name:
        raise UnsafeNameError(f"empty {namespace} name")
    if "\\" in name or "\0" in name:
        raise UnsafeNameError(f"unsafe {namespace} name {name!r}: backslash or NUL")
    if namespace == "metadata" and not _NOT_IN_ENCODED_NAMES.isdisjoint(name):
        raise UnsafeNameError(f"unsafe metadata name {name!r}: not percent-encoded")
    segments = name.split("/")
    if "" in segments or "." in segments or ".." in segments:
        raise UnsafeNameError(f"unsafe {namespace} name {name!r}: empty, '.' or '..' segment")
    return segments


def url_path(namespace: Namespace, name: str) -> str:
    """The URL path (relative to the namespace's base) that serves ``name``."""
    return encoded_path(namespace, name, name_segments(namespace, name))


def encoded_path(namespace: Namespace, name: str, segments: list[str]) -> str:
    """``url_path`` for a name already split (and checked) by ``name_segments``."""
    if namespace == "metadata" or _UNRESERVED_PATH.fullmatch(name):
        return name  # the usual target name: nothing that percent-encoding changes
    return "/".join([quote(segment, safe="") for segment in segments])


def join_url(base: str, path: str) -> str:
    """``base`` + exactly one ``/`` + ``path``, without touching either's encoding."""
    return base.rstrip("/") + "/" + path.lstrip("/")
