"""Bundles on disk: a directory, or a ``.tar`` file optionally split into volumes.

Layouts (every path inside is the file's path in the published layout,
``metadata/…`` and ``targets/…``):

* a **directory**: ``manifest.json`` beside ``metadata/`` and ``targets/``;
* a **.tar** file ``NAME.tar``, or numbered volumes ``NAME.tar.001-of-003`` … when
  ``--volume-size`` is given. Each volume is a complete POSIX (pax) tar whose first
  member is ``manifest.json`` (the same bytes in every volume, so any volume tells
  what the set should hold), its second ``volume.json`` (bundle id and place in the
  set), then regular files only. A file larger than a volume is not split: the
  export refuses it.

Reading (``open_bundle``) checks everything before anything is used: the manifest's
checksum and format version, every volume present and from the same bundle, every
member a regular file the manifest lists in that volume, with the listed length and
sha256, and nothing listed missing. Errors say which volume or file is missing,
truncated or altered (``BundleError``). Nothing is extracted: the result is an index
(file → volume, offset, length) that ``BundleFetcher`` reads from, so no name in a
tar ever becomes a path on disk.

Writing (``write_tar_bundle``, ``write_directory_bundle``) takes verified files from
an export's staging directory. What this module does not do: verification of the
TUF content (the sync engine does it on both sides), compression.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

import trio

from mirror.airgap.manifest import (
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    VOLUME_HEADER_NAME,
    VOLUME_SUFFIX_RE,
    FileEntry,
    Manifest,
    VolumeEntry,
    sorted_entries,
    volume_names,
)
from mirror.errors import BundleError, StorageError, UsageError
from mirror.storage import atomic

_CHUNK: Final = 1 << 20
_ENCODING: Final = "utf-8"
_ERRORS: Final = "surrogateescape"
_VOLUME_FORMAT: Final = "tuf-mirror-bundle-volume"
_DONE: Final = object()


@dataclass(frozen=True, slots=True)
class BundleEntry:
    """Where one checked file's bytes are: ``length`` bytes at ``offset`` of ``path``."""

    path: Path
    offset: int
    length: int
    sha256: str
    #: for messages: "volume b.tar.002-of-003" or "directory /media/usb/b"
    where: str


@dataclass(frozen=True, slots=True)
class CheckedBundle:
    """A bundle whose volumes and files all matched its manifest."""

    location: str
    manifest: Manifest
    entries: dict[str, BundleEntry]


# -- reading ------------------------------------------------------------------------


async def open_bundle(location: str | Path) -> CheckedBundle:
    """Find the bundle at ``location`` (a directory, ``NAME.tar``, or any of its
    volumes), read its manifest and check every volume and file against it."""
    path = Path(location)
    if await trio.to_thread.run_sync(path.is_dir):
        raw = await trio.to_thread.run_sync(_read_manifest_file, path / MANIFEST_NAME)
        manifest = Manifest.from_bytes(raw, f"{path / MANIFEST_NAME}")
        if manifest.volumes:
            raise BundleError(f"{path}: a directory bundle whose manifest lists tar volumes")
        entries: dict[str, BundleEntry] = {}
        await _drive(_scan_directory(path, manifest, entries))
        return CheckedBundle(str(path), manifest, entries)
    return await _open_tar(path)


def _volume_candidates(path: Path) -> tuple[str, list[Path]]:
    """The set's base name and the files that may be its volumes."""
    directory = path.parent
    match = VOLUME_SUFFIX_RE.match(path.name)
    base = match.group("base") if match else path.name
    candidates = [directory / base] if (directory / base).is_file() else []
    with contextlib.suppress(OSError):
        candidates += sorted(
            p
            for p in directory.iterdir()
            if (m := VOLUME_SUFFIX_RE.match(p.name)) and m.group("base") == base and p.is_file()
        )
    return base, candidates


def _missing_volumes(directory: Path, manifest: Manifest) -> list[VolumeEntry]:
    return [v for v in manifest.volumes if not (directory / v.name).is_file()]


async def _open_tar(path: Path) -> CheckedBundle:
    directory = path.parent
    base, candidates = await trio.to_thread.run_sync(_volume_candidates, path)
    if not candidates:
        raise UsageError(f"no bundle at {path} (expected a directory, {base} or {base}.001-of-NNN)")
    manifest_raw: bytes | None = None
    first_error: BundleError | None = None
    for candidate in candidates:
        try:
            manifest_raw = await trio.to_thread.run_sync(_read_tar_manifest, candidate)
            break
        except BundleError as exc:
            first_error = first_error or exc
    if manifest_raw is None:
        assert first_error is not None
        raise first_error
    manifest = Manifest.from_bytes(manifest_raw, f"the manifest in {candidate}")
    if not manifest.volumes:
        raise BundleError(f"{candidate}: a tar bundle whose manifest lists no volume")
    count = len(manifest.volumes)
    missing = await trio.to_thread.run_sync(_missing_volumes, directory, manifest)
    if missing:
        names = ", ".join(f"{v.name} ({v.index} of {count})" for v in missing)
        raise BundleError(f"bundle {base}: volume {names} is missing from {directory}")
    entries: dict[str, BundleEntry] = {}
    for volume in manifest.volumes:
        await _drive(_scan_volume(directory / volume.name, volume, manifest, manifest_raw, entries))
    return CheckedBundle(str(directory / base), manifest, entries)


async def _drive(steps: Iterator[object]) -> None:
    """Run a blocking generator in worker threads, one step (about 1 MiB) at a time,
    so a cancellation is noticed between steps."""
    try:
        while await trio.to_thread.run_sync(next, steps, _DONE) is not _DONE:
            pass
    finally:
        close = getattr(steps, "close", None)
        if close is not None:
            close()


def _read_manifest_file(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError as exc:
        raise BundleError(f"{path} is missing: not a bundle directory") from exc
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror}") from exc
    if len(raw) > MAX_MANIFEST_BYTES:
        raise BundleError(f"{path} is larger than {MAX_MANIFEST_BYTES} bytes")
    return raw


def _read_tar_manifest(path: Path) -> bytes:
    """The first member of a volume, which must be ``manifest.json``."""
    try:
        with path.open("rb") as handle, tarfile.open(fileobj=handle, mode="r|") as tar:
            member = tar.next()
            if member is None or member.name != MANIFEST_NAME or not _is_plain_file(member):
                raise BundleError(f"{path} does not start with {MANIFEST_NAME}: not a bundle")
            if member.size > MAX_MANIFEST_BYTES:
                raise BundleError(f"{path}: {MANIFEST_NAME} is larger than {MAX_MANIFEST_BYTES}")
            return _read_member(tar, member, f"{path}: {MANIFEST_NAME}")
    except (tarfile.TarError, EOFError) as exc:
        raise BundleError(f"{path} is truncated or damaged: {exc}") from exc
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror}") from exc


def _is_plain_file(member: tarfile.TarInfo) -> bool:
    return member.type in (tarfile.REGTYPE, tarfile.AREGTYPE) and member.sparse is None


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo, what: str) -> bytes:
    handle = tar.extractfile(member)
    if handle is None:
        raise BundleError(f"{what} is not a regular file")
    data = handle.read(member.size)
    if len(data) != member.size:
        raise BundleError(f"{what} is truncated")
    return data


def _scan_volume(
    path: Path,
    volume: VolumeEntry,
    manifest: Manifest,
    manifest_raw: bytes,
    out: dict[str, BundleEntry],
) -> Iterator[None]:
    count = len(manifest.volumes)
    label = f"volume {volume.name} ({volume.index} of {count})"
    expected = {entry.path: entry for entry in manifest.files_in(volume.index)}
    seen: set[str] = set()
    try:
        with path.open("rb") as handle, tarfile.open(fileobj=handle, mode="r|") as tar:
            member = tar.next()
            if member is None or member.name != MANIFEST_NAME or not _is_plain_file(member):
                raise BundleError(f"{label} does not start with {MANIFEST_NAME}")
            if member.size > MAX_MANIFEST_BYTES:
                raise BundleError(f"{label}: {MANIFEST_NAME} is too large")
            if _read_member(tar, member, f"{label}: {MANIFEST_NAME}") != manifest_raw:
                raise BundleError(
                    f"{label} holds a different manifest: altered, or from another bundle"
                )
            member = tar.next()
            if member is None or member.name != VOLUME_HEADER_NAME or not _is_plain_file(member):
                raise BundleError(f"{label} lacks its {VOLUME_HEADER_NAME} header")
            if member.size > 64 * 1024:
                raise BundleError(f"{label}: {VOLUME_HEADER_NAME} is too large")
            _check_header(_read_member(tar, member, label), label, manifest, volume)
            while (member := tar.next()) is not None:
                name = member.name
                if not _is_plain_file(member):
                    raise BundleError(f"{label} holds {name!r}, which is not a regular file")
                entry = expected.get(name)
                if entry is None or name in seen:
                    raise BundleError(
                        f"{label} holds {name!r}, which its manifest does not list there"
                    )
                if member.size != entry.length:
                    raise BundleError(
                        f"{label}: {name} is {member.size} bytes, the manifest says {entry.length}"
                    )
                source = tar.extractfile(member)
                assert source is not None  # a regular file
                yield from _hash_into(source.read, entry, f"{label}: {name}")
                seen.add(name)
                out[name] = BundleEntry(path, member.offset_data, entry.length, entry.sha256, label)
    except (tarfile.TarError, EOFError) as exc:
        raise BundleError(f"{label} is truncated or damaged: {exc}") from exc
    except OSError as exc:
        raise BundleError(f"cannot read {label}: {exc.strerror or exc}") from exc
    missing = sorted(expected.keys() - seen)
    if missing:
        raise BundleError(
            f"{label} is truncated or incomplete: {len(missing)} of its {len(expected)} files "
            f"are missing (first: {missing[0]})"
        )


def _check_header(raw: bytes, label: str, manifest: Manifest, volume: VolumeEntry) -> None:
    try:
        header = json.loads(raw)
        ok = (
            isinstance(header, dict)
            and header.get("format") == _VOLUME_FORMAT
            and header.get("bundle_id") == manifest.bundle_id
            and header.get("index") == volume.index
            and header.get("count") == len(manifest.volumes)
        )
    except ValueError:
        ok = False
    if not ok:
        raise BundleError(
            f"{label}: its {VOLUME_HEADER_NAME} does not say it is volume {volume.index} "
            f"of {len(manifest.volumes)} of bundle {manifest.bundle_id} (renamed or swapped?)"
        )


def _hash_into(read: Callable[[int], bytes], entry: FileEntry, what: str) -> Iterator[None]:
    """Read exactly ``entry.length`` bytes with ``read`` and compare their sha256."""
    hasher = hashlib.sha256()
    remaining = entry.length
    while remaining > 0:
        chunk = read(min(_CHUNK, remaining))
        if not chunk:
            raise BundleError(f"{what} is truncated ({entry.length - remaining} of {entry.length})")
        hasher.update(chunk)
        remaining -= len(chunk)
        yield None
    if hasher.hexdigest() != entry.sha256:
        raise BundleError(f"{what} is altered: its sha256 differs from the manifest's")


def _scan_directory(root: Path, manifest: Manifest, out: dict[str, BundleEntry]) -> Iterator[None]:
    label = f"directory {root}"
    real_root = os.path.realpath(root)
    for entry in manifest.files:
        path = root.joinpath(*entry.path.split("/"))
        what = f"bundle file {entry.path} in {root}"
        if not Path(os.path.realpath(path)).is_relative_to(real_root):
            raise BundleError(f"{what} leaves the bundle directory (symlink)")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError as exc:
            raise BundleError(f"{what} is missing") from exc
        except OSError as exc:
            raise BundleError(f"cannot read {what}: {exc.strerror}") from exc
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise BundleError(f"{what} is not a regular file")
            if st.st_size != entry.length:
                shape = "truncated" if st.st_size < entry.length else "longer than listed"
                raise BundleError(
                    f"{what} is {shape}: {st.st_size} bytes, the manifest says {entry.length}"
                )
            yield from _hash_into(functools.partial(os.read, fd), entry, what)
        except OSError as exc:
            raise BundleError(f"cannot read {what}: {exc.strerror}") from exc
        finally:
            os.close(fd)
        out[entry.path] = BundleEntry(path, 0, entry.length, entry.sha256, label)


# -- writing ------------------------------------------------------------------------


def tar_base_name(to: Path) -> bool:
    """Whether ``--to`` names a tar bundle (``….tar``) rather than a directory."""
    return to.name.endswith(".tar")


def existing_bundle_paths(to: Path) -> list[Path]:
    """Files or directories that writing a bundle at ``to`` would overwrite."""
    found = [to] if to.exists() else []
    with contextlib.suppress(OSError):
        found += [
            p
            for p in to.parent.iterdir()
            if (m := VOLUME_SUFFIX_RE.match(p.name)) and m.group("base") == to.name
        ]
    return found


def _member(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = mtime
    info.mode = 0o644
    info.type = tarfile.REGTYPE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _member_cost(name: str, size: int) -> int:
    """Bytes a member takes in a pax tar: headers (pax ones included) + padded data."""
    header = _member(name, size, 0).tobuf(tarfile.PAX_FORMAT, _ENCODING, _ERRORS)
    return len(header) + -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


def _tar_size(payload: int) -> int:
    """A tar's size for ``payload`` bytes of members: end blocks, then record padding."""
    total = payload + 2 * tarfile.BLOCKSIZE
    return -(-total // tarfile.RECORDSIZE) * tarfile.RECORDSIZE


def _header_bytes(manifest: Manifest, index: int) -> bytes:
    header = {
        "format": _VOLUME_FORMAT,
        "bundle_id": manifest.bundle_id,
        "index": index,
        "count": len(manifest.volumes),
    }
    return (json.dumps(header, sort_keys=True) + "\n").encode()


def _pack(entries: list[FileEntry], fixed: int, volume_size: int) -> list[list[FileEntry]]:
    """Files in order into groups whose tar (with ``fixed`` bytes of manifest and
    header members) stays within ``volume_size``."""
    if _tar_size(fixed) > volume_size:
        raise UsageError(
            f"--volume-size {volume_size} is too small: the manifest and header alone take "
            f"{_tar_size(fixed)} bytes in every volume"
        )
    groups: list[list[FileEntry]] = [[]]
    used = fixed
    for entry in entries:
        cost = _member_cost(entry.path, entry.length)
        if _tar_size(fixed + cost) > volume_size:
            raise UsageError(
                f"{entry.path} ({entry.length} bytes) does not fit in a volume of "
                f"{volume_size} bytes (files are not split across volumes)"
            )
        if groups[-1] and _tar_size(used + cost) > volume_size:
            groups.append([])
            used = fixed
        groups[-1].append(entry)
        used += cost
    return groups


def assign_volumes(manifest: Manifest, base_name: str, volume_size: int | None) -> Manifest:
    """``manifest`` with its files packed in order into volumes of at most
    ``volume_size`` bytes (one volume named ``base_name`` without a size)."""
    entries = sorted_entries(manifest.files)
    if volume_size is None:
        files = tuple(replace(e, volume=1) for e in entries)
        total = sum(e.length for e in files)
        return replace(
            manifest, files=files, volumes=(VolumeEntry(base_name, 1, len(files), total),)
        )
    # Pack against an upper bound on the manifest's size (every number at its
    # widest, ``count`` volume entries); more volumes than assumed: pack again.
    widest = 10**9
    files_bound = replace(manifest, files=tuple(replace(e, volume=widest) for e in entries))
    count = 1
    while True:
        bound = replace(
            files_bound,
            volumes=(VolumeEntry(f"{base_name}.{widest}-of-{widest}", widest, widest, 10**18),)
            * count,
        )
        fixed = _member_cost(MANIFEST_NAME, len(bound.to_bytes()))
        fixed += _member_cost(VOLUME_HEADER_NAME, 256)
        groups = _pack(entries, fixed, volume_size)
        if len(groups) <= count:
            break
        count = len(groups)
    names = volume_names(base_name, len(groups))
    packed: list[FileEntry] = []
    volumes: list[VolumeEntry] = []
    for index, (name, group) in enumerate(zip(names, groups, strict=True), start=1):
        packed += [replace(e, volume=index) for e in group]
        volumes.append(VolumeEntry(name, index, len(group), sum(e.length for e in group)))
    return replace(manifest, files=tuple(packed), volumes=tuple(volumes))


async def write_tar_bundle(
    staging: Path, to: Path, manifest: Manifest, *, mtime: int, volume_size: int | None
) -> list[Path]:
    """Write the volumes of ``manifest`` (files read from ``staging``) beside ``to``;
    each volume appears complete under its final name (temp file + rename)."""
    raw = manifest.to_bytes()
    written: list[Path] = []
    for volume in manifest.volumes:
        final = to.parent / volume.name
        tmp = atomic.temp_name(to.parent, suffix=f"-{volume.name}")
        try:
            await _drive(_volume_steps(staging, tmp, manifest, raw=raw, volume=volume, mtime=mtime))
            size = (await trio.to_thread.run_sync(tmp.stat)).st_size
            if volume_size is not None and size > volume_size:
                raise RuntimeError(f"{volume.name}: {size} bytes, more than {volume_size}")
            await trio.to_thread.run_sync(_publish_file, tmp, final)
        except OSError as exc:
            raise StorageError(f"cannot write {final}: {exc.strerror or exc}") from exc
        finally:
            await trio.to_thread.run_sync(_unlink_quietly, tmp)
        written.append(final)
    return written


def _volume_steps(
    staging: Path, tmp: Path, manifest: Manifest, *, raw: bytes, volume: VolumeEntry, mtime: int
) -> Iterator[None]:
    """Write one volume to the new file ``tmp``, one member per step, then sync it."""
    with (
        tmp.open("xb") as handle,
        tarfile.open(
            fileobj=handle, mode="w", format=tarfile.PAX_FORMAT, encoding=_ENCODING, errors=_ERRORS
        ) as tar,
    ):
        header = _header_bytes(manifest, volume.index)
        for name, data in ((MANIFEST_NAME, raw), (VOLUME_HEADER_NAME, header)):
            tar.addfile(_member(name, len(data), mtime), io.BytesIO(data))
        yield None
        for entry in manifest.files_in(volume.index):
            _add_file(tar, staging, entry, mtime)
            yield None
        tar.close()
        handle.flush()
        os.fsync(handle.fileno())


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _add_file(tar: tarfile.TarFile, staging: Path, entry: FileEntry, mtime: int) -> None:
    source = staging.joinpath(*entry.path.split("/"))
    with source.open("rb") as handle:
        if os.fstat(handle.fileno()).st_size != entry.length:
            raise RuntimeError(f"{source} changed size while the bundle was written")
        tar.addfile(_member(entry.path, entry.length, mtime), handle)


def _publish_file(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final`` (never over an existing bundle) and make it durable.
    No hard links: removable disks are often FAT, which has none."""
    atomic.rename_into_place(tmp, final, replace=False, durable=False)
    _sync_dir(final.parent)


def _sync_dir(directory: Path) -> None:
    # Removable disks' filesystems may not sync directories (FAT): not an error.
    atomic.sync_directory(directory, strict=False)


async def write_directory_bundle(staging: Path, to: Path, manifest: Manifest) -> None:
    """Move the manifest's files from ``staging`` into a new directory ``to`` (a
    rename on the same filesystem, else a synced copy), write ``manifest.json``, and
    rename the finished directory into place."""
    tmp = atomic.temp_name(to.parent, suffix=f"-{to.name}")
    try:
        await trio.to_thread.run_sync(_build_directory, staging, tmp, manifest)
        await trio.to_thread.run_sync(_rename_dir, tmp, to)
    except OSError as exc:
        raise StorageError(f"cannot write the bundle {to}: {exc.strerror or exc}") from exc
    finally:
        if tmp.exists():
            await trio.to_thread.run_sync(_remove_tree, tmp)


def _build_directory(staging: Path, tmp: Path, manifest: Manifest) -> None:
    tmp.mkdir()
    made: set[Path] = set()
    for entry in manifest.files:
        source = staging.joinpath(*entry.path.split("/"))
        dest = tmp.joinpath(*entry.path.split("/"))
        if dest.parent not in made:
            dest.parent.mkdir(parents=True, exist_ok=True)
            made.add(dest.parent)
        # A rename; from another filesystem, a synced copy.
        atomic.move_into_place(source, dest)
    (tmp / MANIFEST_NAME).write_bytes(manifest.to_bytes())
    for directory in sorted(made, key=lambda p: -len(p.parts)):
        _sync_dir(directory)
    _sync_dir(tmp)


def _rename_dir(tmp: Path, to: Path) -> None:
    atomic.rename_into_place(tmp, to, replace=False, durable=False)
    _sync_dir(to.parent)


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def entries_for(paths: Sequence[tuple[str, int, str]]) -> tuple[FileEntry, ...]:
    """``FileEntry``s from (path, length, sha256) triples."""
    return tuple(FileEntry(path, length, sha256) for path, length, sha256 in paths)


def file_digest(path: Path) -> tuple[int, str]:
    """(length, sha256) of a file (blocking)."""
    hasher = hashlib.sha256()
    length = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)
            length += len(chunk)
    return length, hasher.hexdigest()


__all__ = [
    "BundleEntry",
    "CheckedBundle",
    "assign_volumes",
    "entries_for",
    "existing_bundle_paths",
    "file_digest",
    "open_bundle",
    "tar_base_name",
    "write_directory_bundle",
    "write_tar_bundle",
]
