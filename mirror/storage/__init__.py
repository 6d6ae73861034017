"""Destinations: one ``Store`` implementation per backend (see ``base``), and
``open_store`` that picks the backend from a URL or path.

Backends are imported lazily by ``open_store``: a local run never imports boto3.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from mirror.errors import MissingExtraError, StorageConfigError
from mirror.storage.base import (
    DELETE_BATCH,
    INTERNAL_PREFIX,
    NotFoundInStoreError,
    ObjectInfo,
    PutOptions,
    Store,
    is_internal_key,
    validate_key,
    validate_prefix,
)

__all__ = [
    "DELETE_BATCH",
    "INTERNAL_PREFIX",
    "NotFoundInStoreError",
    "ObjectInfo",
    "PutOptions",
    "Store",
    "is_internal_key",
    "open_store",
    "validate_key",
    "validate_prefix",
]


def open_store(url_or_path: str | Path, **options: object) -> Store:
    """Open the destination named by ``url_or_path``.

    - a path or ``file:///path``: ``LocalStore`` (the directory is created on the
      first write);
    - ``memory://``: a new, empty ``MemoryStore`` (tests and dry runs);
    - ``s3://bucket/prefix``: ``S3Store`` (``mirror.storage.s3``, imported only
      here); ``options`` are passed to its constructor (``endpoint_url=...``).

    Local and memory stores take no options. An unknown scheme or an unusable
    location is ``StorageConfigError``.
    """
    if isinstance(url_or_path, Path):
        return _open_local(str(url_or_path), options)
    scheme = urlsplit(url_or_path).scheme.lower()
    # A one-letter "scheme" is a Windows drive (C:\...), i.e. a path.
    opener = _OPENERS.get(scheme) if len(scheme) > 1 else _open_local
    if opener is None:
        raise StorageConfigError(
            f"unsupported destination {url_or_path!r}: expected a directory, file://, s3://"
        )
    return opener(url_or_path, options)


def _open_local(url: str, options: dict[str, object]) -> Store:
    from mirror.storage.local import LocalStore, path_from_file_url

    _no_options("a local destination", options)
    path = path_from_file_url(url) if url.lower().startswith("file:") else Path(url)
    return LocalStore(path)


def _open_memory(url: str, options: dict[str, object]) -> Store:
    from mirror.storage.memory import MemoryStore

    _no_options("a memory destination", options)
    return MemoryStore(url=url)


def _open_s3(url: str, options: dict[str, object]) -> Store:
    # boto3 is imported only when an s3:// destination is opened; it comes with the
    # optional "s3" extra.
    try:
        from mirror.storage.s3 import S3Store, parse_s3_url
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".", 1)[0]
        if missing not in _S3_EXTRA_MODULES:
            raise
        raise MissingExtraError(
            f"{url}: s3:// destinations need the 's3' extra, which is not installed"
            f" (no module {exc.name!r}): pip install 'tuf-mirror[s3]'"
        ) from exc

    bucket, prefix = parse_s3_url(url)
    return S3Store(bucket, prefix, **options)  # type: ignore[arg-type]


#: top-level modules that the "s3" extra installs
_S3_EXTRA_MODULES = frozenset({"boto3", "botocore", "s3transfer"})


def _no_options(what: str, options: dict[str, object]) -> None:
    if options:
        raise StorageConfigError(f"options {sorted(options)} do not apply to {what}")


#: URL scheme -> opener; a new backend adds one line here.
_OPENERS: dict[str, Callable[[str, dict[str, object]], Store]] = {
    "": _open_local,
    "file": _open_local,
    "memory": _open_memory,
    "s3": _open_s3,
}
