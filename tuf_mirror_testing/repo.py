"""A TUF repository generator for tests, demos and benchmarks.

``Repository`` holds the metadata of every role (python-tuf's ``tuf.api.metadata``
objects), real signing keys for each role (``securesystemslib`` ``CryptoSigner``:
ed25519, ecdsa P-256 or rsassa-pss), the target contents, and the signed bytes of
every metadata version it ever committed. Changes (targets, delegations, hash bins,
key rotations, expiry) mark roles as changed; ``commit()`` re-signs only those roles
with bumped versions, then snapshot and timestamp; ``publish(dir)`` writes the
published layout of a real repository, incrementally::

    repo = Repository()
    repo.add_delegation("targets", "project", paths=["project/*"])
    repo.add_target("project/file.txt", b"hello")
    repo.publish(upstream)            # commits, writes metadata/1.root.json, ...
    repo.add_target("project/other.txt", b"more")
    repo.publish(upstream)            # writes only the new versions and timestamp.json
    pinned_root = repo.root_bytes(1)

Published layout (with consistent snapshots, the default): ``metadata/N.root.json``
for every root version plus ``metadata/root.json`` (latest), ``metadata/timestamp.json``,
``metadata/V.snapshot.json``, ``metadata/V.<role, percent-encoded>.json``, and
``targets/<dirs>/<HASH>.<basename>`` for every listed hash. Without consistent
snapshots: ``metadata/snapshot.json``, ``metadata/<role>.json``, ``targets/<path>``
(root versions stay versioned). Versioned and content-addressed files, once written,
are never rewritten; old versions stay, like in a real repository.

Hostile variants: ``forge()`` signs a modified copy of a role without touching the
repository, ``sign_next_commit_with()`` signs a commit with other keys,
``tamper_published()`` rewrites a published file.

What it does not do: it is not a repository tool (no key storage, no TUF client
logic, no verification), hash-bin delegations exist once per repository, and the
contents of targets are kept in memory.
"""

from __future__ import annotations

import copy
import hashlib
import os
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import quote

from securesystemslib.signer import (  # type: ignore[attr-defined]  # public, no __all__
    CryptoSigner,
    Signer,
)
from tuf.api.metadata import (  # type: ignore[attr-defined]  # public, no __all__
    SPECIFICATION_VERSION,
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    SuccinctRoles,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

__all__ = [
    "TOP_LEVEL_ROLES",
    "HashBins",
    "KeyType",
    "Repository",
    "generate_bins_repository",
    "generate_signer",
    "metadata_file_name",
    "sign_metadata",
    "tamper_published",
    "target_file_names",
]

KeyType = Literal["ed25519", "ecdsa", "rsa"]
TOP_LEVEL_ROLES = ("root", "timestamp", "snapshot", "targets")
_NOT_LISTED_IN_SNAPSHOT = ("root", "timestamp", "snapshot")


def generate_signer(key_type: KeyType = "ed25519") -> CryptoSigner:
    """A fresh signing key: ed25519, ecdsa (P-256, ecdsa-sha2-nistp256) or rsa
    (2048-bit, rsassa-pss-sha256)."""
    if key_type == "ed25519":
        return CryptoSigner.generate_ed25519()
    if key_type == "ecdsa":
        return CryptoSigner.generate_ecdsa()
    if key_type == "rsa":
        return CryptoSigner.generate_rsa(size=2048)
    raise ValueError(f"unknown key type: {key_type!r}")


def metadata_file_name(role: str, version: int | None) -> str:
    """The published file name of ``role`` (percent-encoded like
    ``urllib.parse.quote(role, safe="")``), versioned unless ``version`` is None."""
    encoded = quote(role, safe="")
    return f"{encoded}.json" if version is None else f"{version}.{encoded}.json"


def target_file_names(
    path: str, hashes: dict[str, str], *, consistent_snapshot: bool = True
) -> list[str]:
    """Where a target is published, relative to the targets directory: one
    ``<dirs>/<HASH>.<basename>`` per listed hash, or ``path`` itself."""
    if not consistent_snapshot:
        return [path]
    dirname, sep, basename = path.rpartition("/")
    return [f"{dirname}{sep}{digest}.{basename}" for digest in hashes.values()]


def sign_metadata(
    metadata: Metadata[Any], signers: Iterable[Signer], *, compact: bool = False
) -> bytes:
    """Replace ``metadata``'s signatures by those of ``signers`` (over the canonical
    form of ``signed``, computed once) and return its serialized bytes."""
    payload = metadata.signed_bytes
    metadata.signatures.clear()
    for signer in signers:
        signature = signer.sign(payload)
        metadata.signatures[signature.keyid] = signature
    return metadata.to_bytes(JSONSerializer(compact=compact))


def tamper_published(directory: Path, relpath: str, mutate: Callable[[bytes], bytes]) -> bytes:
    """Rewrite the published file ``directory/relpath`` with ``mutate(old bytes)``
    (atomically), and return the new bytes."""
    path = Path(directory) / relpath
    data = mutate(path.read_bytes())
    _write_atomic(path, data)
    return data


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_bytes(data)
    temporary.replace(path)


def _digests(data: bytes, algorithms: Sequence[str]) -> dict[str, str]:
    return {name: hashlib.new(name, data).hexdigest() for name in algorithms}


@dataclass(frozen=True, slots=True)
class HashBins:
    """A hash-bin delegation (PEP 458 style): ``count`` bins named
    ``<name_prefix>-<index in hex>`` that split targets by the leading bits of the
    sha256 of their path. ``succinct`` bins are one ``SuccinctRoles`` entry (TAP 15);
    the others are ordinary delegated roles listing their ``path_hash_prefixes``."""

    delegator: str
    name_prefix: str
    count: int
    succinct: bool

    @property
    def bit_length(self) -> int:
        """Leading bits of the path's sha256 that select the bin."""
        return self.count.bit_length() - 1

    @property
    def suffix_length(self) -> int:
        """Hex digits of a bin's index in its name."""
        return len(f"{self.count - 1:x}")

    def names(self) -> list[str]:
        """Every bin's role name, in order."""
        return [self.name(index) for index in range(self.count)]

    def name(self, index: int) -> str:
        """The role name of bin number ``index``."""
        return f"{self.name_prefix}-{index:0{self.suffix_length}x}"

    def index_for(self, target_path: str) -> int:
        """The bin of ``target_path``: the leading ``bit_length`` bits of
        sha256(path as UTF-8), as TUF's path_hash_prefixes and TAP 15 define."""
        head = int.from_bytes(hashlib.sha256(target_path.encode()).digest()[:4], "big")
        return head >> (32 - self.bit_length)

    def bin_for(self, target_path: str) -> str:
        """The role name of the bin that holds ``target_path``."""
        return self.name(self.index_for(target_path))

    def path_hash_prefixes(self, index: int) -> list[str]:
        """The hex prefixes (of ``suffix_length`` digits) that bin ``index`` covers."""
        digits = self.suffix_length
        per_bin = 16**digits // self.count
        first = index * per_bin
        return [f"{prefix:0{digits}x}" for prefix in range(first, first + per_bin)]


class Repository:
    """An in-memory TUF repository with real keys, published on demand.

    ``roles`` maps each role name to its current ``Metadata`` object and ``signers``
    to its signing keys; advanced tests may edit those objects directly and call
    ``mark_changed(role)``. See the module docstring for the lifecycle.
    """

    def __init__(
        self,
        *,
        consistent_snapshot: bool = True,
        key_type: KeyType = "ed25519",
        spec_version: str | None = None,
        expires: datetime | None = None,
        hash_algorithms: Sequence[str] = ("sha256",),
        timestamp_lists_hashes: bool = True,
        snapshot_lists_hashes: bool = False,
        compact: bool = False,
    ) -> None:
        """Create version 1 of root, timestamp, snapshot and targets (not committed),
        one key per top-level role, all expiring at ``expires`` (default: a year from
        now). ``hash_algorithms`` are used for targets and for the length/hashes that
        timestamp and (optionally) snapshot list."""
        if not hash_algorithms:
            raise ValueError("at least one hash algorithm is needed")
        self.consistent_snapshot = consistent_snapshot
        self.key_type: KeyType = key_type
        self.spec_version = spec_version or ".".join(SPECIFICATION_VERSION)
        self.expires = (expires or datetime.now(UTC) + timedelta(days=365)).replace(microsecond=0)
        self.hash_algorithms = tuple(hash_algorithms)
        self.timestamp_lists_hashes = timestamp_lists_hashes
        self.snapshot_lists_hashes = snapshot_lists_hashes
        self.compact = compact

        self.signers: dict[str, list[Signer]] = {
            role: [generate_signer(key_type)] for role in TOP_LEVEL_ROLES
        }
        root = Root(
            version=1,
            spec_version=self.spec_version,
            expires=self.expires,
            consistent_snapshot=consistent_snapshot,
        )
        for role in TOP_LEVEL_ROLES:
            root.add_key(self.signers[role][0].public_key, role)
        self.roles: dict[str, Metadata[Any]] = {
            "root": Metadata(root),
            "timestamp": Metadata(
                Timestamp(
                    version=1,
                    spec_version=self.spec_version,
                    expires=self.expires,
                    snapshot_meta=MetaFile(version=1),
                )
            ),
            "snapshot": Metadata(
                Snapshot(version=1, spec_version=self.spec_version, expires=self.expires)
            ),
            "targets": Metadata(
                Targets(version=1, spec_version=self.spec_version, expires=self.expires)
            ),
        }
        self.delegator_of: dict[str, str] = {}
        self.hash_bins: HashBins | None = None
        self._changed: set[str] = set(TOP_LEVEL_ROLES)
        self._committed: set[str] = set()
        self._previous_root_signers: list[Signer] = list(self.signers["root"])
        self._signer_overrides: dict[str, list[Signer]] = {}
        self._history: dict[tuple[str, int], bytes] = {}
        self._target_blobs: dict[str, bytes] = {}

    # -- accessors -------------------------------------------------------------------

    @property
    def root(self) -> Metadata[Root]:
        """The current root metadata object."""
        return cast("Metadata[Root]", self.roles["root"])

    @property
    def timestamp(self) -> Metadata[Timestamp]:
        """The current timestamp metadata object."""
        return cast("Metadata[Timestamp]", self.roles["timestamp"])

    @property
    def snapshot(self) -> Metadata[Snapshot]:
        """The current snapshot metadata object."""
        return cast("Metadata[Snapshot]", self.roles["snapshot"])

    @property
    def targets(self) -> Metadata[Targets]:
        """The current top-level targets metadata object."""
        return cast("Metadata[Targets]", self.roles["targets"])

    def targets_role(self, name: str) -> Metadata[Targets]:
        """The current metadata object of targets or a delegated role."""
        if name in _NOT_LISTED_IN_SNAPSHOT or name not in self.roles:
            raise KeyError(f"no targets role named {name!r}")
        return cast("Metadata[Targets]", self.roles[name])

    @property
    def changed(self) -> frozenset[str]:
        """Roles changed since the last commit."""
        return frozenset(self._changed)

    def version(self, role: str) -> int:
        """The current version of ``role`` (committed or about to be)."""
        return int(self.roles[role].signed.version)

    # -- changes -----------------------------------------------------------------------

    def mark_changed(self, role: str) -> None:
        """Have the next commit bump and re-sign ``role`` (after editing its object)."""
        if role not in self.roles:
            raise KeyError(f"unknown role {role!r}")
        self._changed.add(role)

    def role_for_target(self, path: str) -> str:
        """Where ``add_target`` puts ``path`` by default: its hash bin if there are
        bins, else ``targets``."""
        return self.hash_bins.bin_for(path) if self.hash_bins is not None else "targets"

    def add_target(
        self,
        path: str,
        data: bytes,
        *,
        role: str | None = None,
        custom: dict[str, Any] | None = None,
    ) -> TargetFile:
        """List ``path`` with the length and ``hash_algorithms`` hashes of ``data`` in
        ``role`` (default: its hash bin, else ``targets``) and keep ``data`` for
        publishing. Replaces an earlier entry for the same path in that role."""
        role = self.role_for_target(path) if role is None else role
        metadata = self.targets_role(role)
        hashes = _digests(data, self.hash_algorithms)
        fields = {"custom": custom} if custom is not None else None
        target = TargetFile(length=len(data), hashes=hashes, path=path, unrecognized_fields=fields)
        metadata.signed.targets[path] = target
        for name in target_file_names(path, hashes, consistent_snapshot=self.consistent_snapshot):
            self._target_blobs[name] = data
        self._changed.add(role)
        return target

    def remove_target(self, path: str, *, role: str | None = None) -> None:
        """Stop listing ``path`` in ``role`` (default: where ``add_target`` puts it).
        Published content stays (like in a real repository)."""
        role = self.role_for_target(path) if role is None else role
        del self.targets_role(role).signed.targets[path]
        self._changed.add(role)

    def target_data(self, path: str, *, role: str | None = None) -> bytes:
        """The content of the target ``path`` as listed in ``role``."""
        role = self.role_for_target(path) if role is None else role
        target = self.targets_role(role).signed.targets[path]
        names = target_file_names(path, target.hashes, consistent_snapshot=self.consistent_snapshot)
        return self._target_blobs[names[0]]

    def add_delegation(
        self,
        delegator: str,
        name: str,
        *,
        paths: list[str] | None = None,
        path_hash_prefixes: list[str] | None = None,
        terminating: bool = False,
        threshold: int = 1,
        key_count: int = 1,
    ) -> DelegatedRole:
        """Delegate from ``delegator`` to a new role ``name`` (version 1, empty) with
        ``key_count`` fresh keys, or to an existing role with its keys. Without
        ``paths`` nor ``path_hash_prefixes`` the role gets ``paths=["*"]`` (which, as
        TUF globs match per path segment, covers top-level names only)."""
        if name in TOP_LEVEL_ROLES or not name:
            raise ValueError(f"invalid delegated role name: {name!r}")
        parent = self.targets_role(delegator).signed
        if paths is None and path_hash_prefixes is None:
            paths = ["*"]
        if parent.delegations is None:
            parent.delegations = Delegations(keys={}, roles={})
        if parent.delegations.roles is None:
            raise ValueError(f"{delegator} delegates with succinct hash bins only")
        if name not in self.roles:
            self.signers[name] = [generate_signer(self.key_type) for _ in range(key_count)]
            self.roles[name] = self._new_targets()
            self.delegator_of[name] = delegator
            self._changed.add(name)
        keys = [signer.public_key for signer in self.signers[name]]
        role = DelegatedRole(
            name=name,
            keyids=[key.keyid for key in keys],
            threshold=threshold,
            terminating=terminating,
            paths=paths,
            path_hash_prefixes=path_hash_prefixes,
        )
        parent.delegations.roles[name] = role
        for key in keys:
            parent.delegations.keys[key.keyid] = key
        self._changed.add(delegator)
        return role

    def add_hash_bins(
        self,
        count: int,
        *,
        succinct: bool = False,
        delegator: str = "targets",
        name_prefix: str = "bins",
    ) -> HashBins:
        """Delegate every target path from ``delegator`` to ``count`` hash bins
        (a power of two, at least 2) that share one fresh key; ``add_target`` then
        puts each target in its bin. ``succinct`` uses TAP 15's ``SuccinctRoles``
        (the delegator must have no other delegation)."""
        if self.hash_bins is not None:
            raise ValueError("this repository already has hash bins")
        if count < 2 or count & (count - 1) or count > 2**32:
            raise ValueError(f"bin count must be a power of two >= 2: {count}")
        parent = self.targets_role(delegator).signed
        bins = HashBins(
            delegator=delegator, name_prefix=name_prefix, count=count, succinct=succinct
        )
        signers: list[Signer] = [generate_signer(self.key_type)]
        key = signers[0].public_key
        if succinct:
            if parent.delegations is not None:
                raise ValueError(f"{delegator} already delegates: succinct bins need it alone")
            parent.delegations = Delegations(
                keys={key.keyid: key},
                succinct_roles=SuccinctRoles(
                    keyids=[key.keyid],
                    threshold=1,
                    bit_length=bins.bit_length,
                    name_prefix=name_prefix,
                ),
            )
        else:
            if parent.delegations is None:
                parent.delegations = Delegations(keys={}, roles={})
            if parent.delegations.roles is None:
                raise ValueError(f"{delegator} delegates with succinct hash bins already")
            parent.delegations.keys[key.keyid] = key
            for index, name in enumerate(bins.names()):
                parent.delegations.roles[name] = DelegatedRole(
                    name=name,
                    keyids=[key.keyid],
                    threshold=1,
                    terminating=False,
                    path_hash_prefixes=bins.path_hash_prefixes(index),
                )
        for name in bins.names():
            if name in self.roles:
                raise ValueError(f"role {name!r} already exists")
            self.roles[name] = self._new_targets()
            self.signers[name] = signers
            self.delegator_of[name] = delegator
            self._changed.add(name)
        self._changed.add(delegator)
        self.hash_bins = bins
        return bins

    def rotate_keys(
        self, role: str, *, key_count: int | None = None, threshold: int | None = None
    ) -> list[Signer]:
        """Replace ``role``'s keys by ``key_count`` fresh ones (default: as many as
        before), optionally with a new threshold, in root (top-level roles) or in the
        delegator. Root's next version is signed by the old and the new root keys.
        A hash bin's name rotates the key all bins share. Returns the new signers."""
        if role not in self.roles:
            raise KeyError(f"unknown role {role!r}")
        old = self.signers[role]
        new: list[Signer] = [generate_signer(self.key_type) for _ in range(key_count or len(old))]
        if role in TOP_LEVEL_ROLES:
            root = self.root.signed
            for signer in old:
                root.revoke_key(signer.public_key.keyid, role)
            for signer in new:
                root.add_key(signer.public_key, role)
            if threshold is not None:
                root.roles[role].threshold = threshold
            self._changed.update(("root", role))
            self.signers[role] = new
            return new
        delegator = self.delegator_of[role]
        parent = self.targets_role(delegator).signed
        assert parent.delegations is not None
        bins = self.hash_bins
        members = [role]
        if bins is not None and bins.delegator == delegator and role in set(bins.names()):
            members = bins.names()
        succinct = parent.delegations.succinct_roles
        if succinct is not None:
            for signer in old:
                parent.revoke_key(signer.public_key.keyid)
            for signer in new:
                parent.add_key(signer.public_key)
            if threshold is not None:
                succinct.threshold = threshold
        else:
            assert parent.delegations.roles is not None
            for member in members:
                for signer in old:
                    parent.revoke_key(signer.public_key.keyid, member)
                for signer in new:
                    parent.add_key(signer.public_key, member)
                if threshold is not None:
                    parent.delegations.roles[member].threshold = threshold
        for member in members:
            self.signers[member] = new
            self._changed.add(member)
        self._changed.add(delegator)
        return new

    def bump_root(self) -> None:
        """Have the next commit publish a new root version (signed by the previous
        root's keys and the current ones)."""
        self._changed.add("root")

    def set_expiry(self, role: str, expires: datetime) -> None:
        """Set ``role``'s expiry (seconds precision) for its next version."""
        self.roles[role].signed.expires = expires.replace(microsecond=0)
        self._changed.add(role)

    def sign_next_commit_with(self, role: str, signers: Sequence[Signer]) -> None:
        """Sign ``role``'s next version with ``signers`` instead of its own keys
        (once; e.g. ``[generate_signer()]`` for a wrong key, ``[]`` for none)."""
        if role not in self.roles:
            raise KeyError(f"unknown role {role!r}")
        self._signer_overrides[role] = list(signers)
        self._changed.add(role)

    # -- commit and publish ------------------------------------------------------------

    def commit(self) -> list[str]:
        """Sign a new state: every changed targets role gets its version bumped
        (version 1 stays 1 on its first commit) and goes into snapshot; root, if
        changed, is bumped and signed by the previous and current root keys; snapshot
        is bumped if anything it lists changed; timestamp always is. Returns the
        roles signed, in publish order."""
        signed: list[str] = []
        delegated = sorted(r for r in self._changed if r not in _NOT_LISTED_IN_SNAPSHOT)
        snapshot = self.snapshot.signed
        for name in (r for r in delegated if r != "targets"):
            data = self._sign_role(name)
            snapshot.meta[f"{name}.json"] = self._meta_file(
                name, data, with_hashes=self.snapshot_lists_hashes
            )
            signed.append(name)
        if "targets" in self._changed:
            data = self._sign_role("targets")
            snapshot.meta["targets.json"] = self._meta_file(
                "targets", data, with_hashes=self.snapshot_lists_hashes
            )
            signed.append("targets")
        if delegated or "snapshot" in self._changed:
            data = self._sign_role("snapshot")
            self.timestamp.signed.snapshot_meta = self._meta_file(
                "snapshot", data, with_hashes=self.timestamp_lists_hashes
            )
            signed.append("snapshot")
        if "root" in self._changed:
            self._sign_role("root")
            signed.append("root")
        self._sign_role("timestamp")
        signed.append("timestamp")
        self._changed.clear()
        return signed

    def publish(
        self,
        directory: Path,
        *,
        metadata_dir: str = "metadata",
        targets_dir: str = "targets",
    ) -> list[str]:
        """Commit pending changes (if any), then write every file of the published
        layout that ``directory`` lacks: targets, then metadata in publish order,
        ``timestamp.json`` last. Versioned and content-addressed files are written
        only if missing; the unversioned ones (``timestamp.json``, ``root.json``, and
        everything without consistent snapshots) when their bytes differ. Returns
        the relative paths written, in order."""
        if self._changed or not self._committed:
            self.commit()
        directory = Path(directory)
        written: list[str] = []
        made: set[Path] = set()
        for relpath, data, immutable in self._layout(metadata_dir, targets_dir):
            path = directory / relpath
            if immutable:
                if path.exists():
                    continue
                if path.parent not in made:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    made.add(path.parent)
                if relpath.startswith(f"{targets_dir}/"):
                    path.write_bytes(data)
                else:
                    _write_atomic(path, data)
            else:
                try:
                    if path.read_bytes() == data:
                        continue
                except FileNotFoundError:
                    pass
                _write_atomic(path, data)
            written.append(relpath)
        return written

    def _layout(self, metadata_dir: str, targets_dir: str) -> Iterator[tuple[str, bytes, bool]]:
        """(relative path, bytes, immutable) of every published file, publish order."""
        for name, data in self._target_blobs.items():
            yield f"{targets_dir}/{name}", data, self.consistent_snapshot
        order = {"timestamp": 4, "root": 3, "snapshot": 2, "targets": 1}
        history = sorted(self._history.items(), key=lambda i: (order.get(i[0][0], 0), i[0][1]))
        current = {role: self.version(role) for role in self.roles}
        for (role, version), data in history:
            if role == "timestamp":
                continue
            if role == "root" or self.consistent_snapshot:
                yield f"{metadata_dir}/{metadata_file_name(role, version)}", data, True
            if role != "root" and not self.consistent_snapshot and version == current[role]:
                yield f"{metadata_dir}/{metadata_file_name(role, None)}", data, False
        if "timestamp" in self._committed:
            yield f"{metadata_dir}/root.json", self.root_bytes(), False
            yield f"{metadata_dir}/timestamp.json", self.metadata_bytes("timestamp"), False

    def _new_targets(self) -> Metadata[Targets]:
        return Metadata(Targets(version=1, spec_version=self.spec_version, expires=self.expires))

    def _sign_role(self, role: str) -> bytes:
        metadata = self.roles[role]
        if role in self._committed:
            metadata.signed.version += 1
        signers = self._signer_overrides.pop(role, None)
        if signers is None:
            signers = list(self.signers[role])
            if role == "root":
                known = {s.public_key.keyid for s in signers}
                signers += [
                    s for s in self._previous_root_signers if s.public_key.keyid not in known
                ]
        data = sign_metadata(metadata, signers, compact=self.compact)
        if role == "root":
            self._previous_root_signers = list(self.signers["root"])
        self._history[(role, metadata.signed.version)] = data
        self._committed.add(role)
        return data

    def _meta_file(self, role: str, data: bytes, *, with_hashes: bool) -> MetaFile:
        if not with_hashes:
            return MetaFile(version=self.version(role))
        return MetaFile(
            version=self.version(role),
            length=len(data),
            hashes=_digests(data, self.hash_algorithms),
        )

    # -- bytes -------------------------------------------------------------------------

    def metadata_bytes(self, role: str, version: int | None = None) -> bytes:
        """The signed bytes of ``role`` as committed (latest, or ``version``)."""
        if version is None:
            version = self.version(role)
        try:
            return self._history[(role, version)]
        except KeyError:
            raise KeyError(f"{role} version {version} was never committed") from None

    def root_bytes(self, version: int | None = None) -> bytes:
        """The signed bytes of root (latest, or ``version``): the pinned root of a
        mirror test."""
        return self.metadata_bytes("root", version)

    def metadata_files(self, *, metadata_dir: str = "metadata") -> dict[str, bytes]:
        """Every published metadata file (relative path -> bytes) as of the last
        commit, history included."""
        return {
            relpath: data
            for relpath, data, _ in self._layout(metadata_dir, "")
            if relpath.startswith(f"{metadata_dir}/")
        }

    def target_files(self, *, targets_dir: str = "targets") -> dict[str, bytes]:
        """Every published target file (relative path -> bytes), old ones included."""
        return {f"{targets_dir}/{name}": data for name, data in self._target_blobs.items()}

    def forge(
        self,
        role: str,
        mutate: Callable[[Metadata[Any]], None] | None = None,
        *,
        signers: Sequence[Signer] | None = None,
    ) -> bytes:
        """Bytes of a variant of ``role``'s current metadata, changed in place by
        ``mutate`` and signed by ``signers`` (default: the role's keys), without
        changing the repository. For rollback, freeze, wrong-key... tests."""
        variant = copy.deepcopy(self.roles[role])
        if mutate is not None:
            mutate(variant)
        return sign_metadata(
            variant, self.signers[role] if signers is None else signers, compact=self.compact
        )


def generate_bins_repository(
    directory: Path,
    *,
    bins: int = 16,
    targets: int = 100,
    size: int = 1024,
    seed: int = 0,
    succinct: bool = True,
    key_type: KeyType = "ed25519",
    consistent_snapshot: bool = True,
    expires: datetime | None = None,
) -> Repository:
    """Build and publish to ``directory`` a repository with ``bins`` hash bins and
    ``targets`` targets of ``size`` bytes each, named ``files/NNNN/file-NNNNNNN.bin``
    (1000 per directory). Contents are deterministic given ``seed``; keys are not.
    Returns the repository (to change and publish again)."""
    repo = Repository(key_type=key_type, consistent_snapshot=consistent_snapshot, expires=expires)
    repo.add_hash_bins(bins, succinct=succinct)
    rng = random.Random(seed)  # noqa: S311 (test content, not cryptography)
    for index in range(targets):
        repo.add_target(f"files/{index // 1000:04d}/file-{index:07d}.bin", rng.randbytes(size))
    repo.publish(directory)
    return repo
