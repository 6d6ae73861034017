"""The bundle manifest: what a bundle holds, the state it applies to and brings.

``manifest.json`` (format ``tuf-mirror-bundle``, version 1) lists every file of the
bundle with its length and sha256 (and, for a ``.tar`` bundle, the volume that holds
it), the volumes, the base state (``null`` for a full bundle), the state it brings,
when that state's top-level metadata expires, the creation time and tool version.
The manifest carries its own sha256 (``manifest_sha256``, over the canonical JSON of
every other field), so a damaged manifest is detected before anything is read.

The manifest protects against a damaged or incomplete transport and lets an import
say *which* file or volume is wrong; it is not what makes a bundle trustworthy.
Anyone can write a manifest: every byte a bundle brings is verified from the pinned
root as if it came from any upstream. This module parses and writes JSON; it does
no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mirror.airgap.state import StateRef, sha256_hex
from mirror.errors import BundleError, UnsafeNameError, UsageError
from mirror.storage import validate_key

FORMAT = "tuf-mirror-bundle"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
VOLUME_HEADER_NAME = "volume.json"
#: a manifest larger than this is refused (about 2 million files)
MAX_MANIFEST_BYTES = 512 * 1024**2
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


def validate_bundle_path(path: str) -> str:
    """Return ``path`` if a bundle may hold a file there: ``metadata/<file>`` or
    ``targets/<relative path>``, a safe storage key; else ``BundleError``."""
    try:
        validate_key(path)
    except UnsafeNameError as exc:
        raise BundleError(f"bundle lists an unsafe file name {path!r}") from exc
    segments = path.split("/")
    if segments[0] not in ("metadata", "targets") or len(segments) < 2:
        raise BundleError(f"bundle lists {path!r}, outside metadata/ and targets/")
    if segments[0] == "metadata" and len(segments) != 2:
        raise BundleError(f"bundle lists {path!r}: metadata files have no subdirectory")
    if any(segment.startswith(".tmp-") for segment in segments):
        raise BundleError(f"bundle lists {path!r}: a reserved temporary-file name")
    return path


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of the bundle, by its path in the published layout."""

    path: str
    length: int
    sha256: str
    #: 1-based volume number of a .tar bundle; None in a directory bundle
    volume: int | None = None


@dataclass(frozen=True, slots=True)
class VolumeEntry:
    """One volume of a .tar bundle: its file name and place in the set."""

    name: str
    index: int
    files: int
    bytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """The parsed ``manifest.json``."""

    bundle_id: str
    created: str
    tool: str
    upstream: str
    consistent_snapshot: bool
    base: StateRef | None
    brought: StateRef
    expires: dict[str, str] = field(default_factory=dict)
    volumes: tuple[VolumeEntry, ...] = ()
    files: tuple[FileEntry, ...] = ()

    @property
    def payload_bytes(self) -> int:
        return sum(entry.length for entry in self.files)

    def files_in(self, volume: int) -> list[FileEntry]:
        return [entry for entry in self.files if entry.volume == volume]

    def to_bytes(self) -> bytes:
        """The ``manifest.json`` bytes, with their own checksum."""
        document = self._document()
        document["manifest_sha256"] = sha256_hex(_canonical(document))
        return (json.dumps(document, indent=1, sort_keys=True) + "\n").encode()

    def _document(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "bundle_id": self.bundle_id,
            "created": self.created,
            "tool": self.tool,
            "upstream": self.upstream,
            "consistent_snapshot": self.consistent_snapshot,
            "base": None if self.base is None else self.base.to_json(),
            "brought": self.brought.to_json(),
            "expires": dict(self.expires),
            "volumes": [
                {"name": v.name, "index": v.index, "files": v.files, "bytes": v.bytes}
                for v in self.volumes
            ],
            "files": [_file_json(entry) for entry in self.files],
        }

    @classmethod
    def from_bytes(cls, raw: bytes, what: str) -> Manifest:
        """Parse and check a manifest: ``BundleError`` when it is damaged or
        inconsistent, ``UsageError`` when it is from a newer tuf-mirror."""
        try:
            document = json.loads(raw)
        except ValueError as exc:
            raise BundleError(f"{what} is damaged: not valid JSON ({exc})") from exc
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise BundleError(f"{what} is not a tuf-mirror bundle manifest")
        version = document.get("format_version")
        if version != FORMAT_VERSION:
            if isinstance(version, int) and version > FORMAT_VERSION:
                raise UsageError(
                    f"{what}: bundle format version {version} is newer than this tuf-mirror "
                    f"reads ({FORMAT_VERSION}); upgrade tuf-mirror on this side"
                )
            raise BundleError(f"{what}: unknown bundle format version {version!r}")
        claimed = document.pop("manifest_sha256", None)
        if claimed != sha256_hex(_canonical(document)):
            raise BundleError(f"{what} is altered or damaged: its checksum does not match")
        try:
            manifest = cls._parse(document)
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{what} is malformed: {exc}") from exc
        manifest.check()
        return manifest

    @classmethod
    def _parse(cls, document: dict[str, Any]) -> Manifest:
        base = document["base"]
        return cls(
            bundle_id=str(document["bundle_id"]),
            created=str(document["created"]),
            tool=str(document["tool"]),
            upstream=str(document["upstream"]),
            consistent_snapshot=bool(document["consistent_snapshot"]),
            base=None if base is None else StateRef.from_json(base, "base"),
            brought=StateRef.from_json(document["brought"], "brought"),
            expires={str(k): str(v) for k, v in dict(document["expires"]).items()},
            volumes=tuple(
                VolumeEntry(
                    name=str(v["name"]),
                    index=_count(v["index"]),
                    files=_count(v["files"]),
                    bytes=_count(v["bytes"]),
                )
                for v in document["volumes"]
            ),
            files=tuple(_parse_file(item) for item in document["files"]),
        )

    def check(self) -> None:
        """Internal consistency: safe, unique paths; volumes numbered 1..N, each
        file in one of them (or none in a directory bundle)."""
        seen: set[str] = set()
        for entry in self.files:
            validate_bundle_path(entry.path)
            if entry.path in seen:
                raise BundleError(f"bundle manifest lists {entry.path!r} twice")
            seen.add(entry.path)
        indexes = [v.index for v in self.volumes]
        if indexes != list(range(1, len(indexes) + 1)):
            raise BundleError("bundle manifest numbers its volumes wrongly")
        names = {v.name for v in self.volumes}
        if len(names) != len(self.volumes) or any("/" in n or n in ("", ".", "..") for n in names):
            raise BundleError("bundle manifest names its volumes wrongly")
        for entry in self.files:
            if self.volumes and (entry.volume is None or not 1 <= entry.volume <= len(indexes)):
                raise BundleError(f"bundle manifest puts {entry.path!r} in no volume")
            if not self.volumes and entry.volume is not None:
                raise BundleError(f"bundle manifest puts {entry.path!r} in a volume it lacks")


def _canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _file_json(entry: FileEntry) -> dict[str, Any]:
    out: dict[str, Any] = {"path": entry.path, "length": entry.length, "sha256": entry.sha256}
    if entry.volume is not None:
        out["volume"] = entry.volume
    return out


def _parse_file(item: Any) -> FileEntry:
    sha256 = item["sha256"]
    if not isinstance(sha256, str) or not _SHA256_RE.fullmatch(sha256):
        raise ValueError(f"bad sha256 for {item.get('path')!r}")
    volume = item.get("volume")
    return FileEntry(
        path=str(item["path"]),
        length=_count(item["length"]),
        sha256=sha256,
        volume=None if volume is None else _count(volume),
    )


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"not a count: {value!r}")
    return value


def volume_names(base: str, count: int) -> list[str]:
    """``bundle.tar.001-of-003``…: each name says its place in the set."""
    width = max(3, len(str(count)))
    return [f"{base}.{i:0{width}d}-of-{count:0{width}d}" for i in range(1, count + 1)]


VOLUME_SUFFIX_RE = re.compile(r"^(?P<base>.+)\.(?P<index>\d{3,})-of-(?P<count>\d{3,})$")


def sorted_entries(entries: Iterable[FileEntry]) -> list[FileEntry]:
    """Targets first, then metadata, each by path: the order files go into a bundle."""
    return sorted(entries, key=lambda e: (not e.path.startswith("targets/"), e.path))


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "MAX_MANIFEST_BYTES",
    "VOLUME_HEADER_NAME",
    "VOLUME_SUFFIX_RE",
    "FileEntry",
    "Manifest",
    "VolumeEntry",
    "sorted_entries",
    "validate_bundle_path",
    "volume_names",
]
