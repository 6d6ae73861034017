"""An in-memory TUF repository for trust tests: signed metadata as bytes, easy to
tamper with.

``Repo`` holds python-tuf metadata objects and signers (ed25519 unless asked
otherwise). Tests change the objects, then call ``publish()`` (or a ``*_bytes``
method) to get freshly signed bytes, or build hostile variants by hand with
``sign()``. No files, no network.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from securesystemslib.signer import CryptoSigner, Signer, SSlibKey
from tuf.api.metadata import (
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

from mirror.trust import Limits, TrustedSet

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
FAR = NOW + timedelta(days=365)
PAST = NOW - timedelta(days=1)
TOP_LEVEL = ("root", "timestamp", "snapshot", "targets")


def new_signer(keytype: str = "ed25519") -> CryptoSigner:
    """A fresh private key of the given type ("ed25519", "ecdsa", "ecdsa-legacy", "rsa")."""
    if keytype == "ed25519":
        return CryptoSigner.generate_ed25519()
    if keytype == "ecdsa":
        return CryptoSigner.generate_ecdsa()
    if keytype == "ecdsa-legacy":
        # keytype spelled like the scheme, as older repositories do
        private = ec.generate_private_key(ec.SECP256R1())
        key = SSlibKey.from_crypto(private.public_key(), None, "ecdsa-sha2-nistp256")
        legacy = SSlibKey(key.keyid, "ecdsa-sha2-nistp256", key.scheme, dict(key.keyval))
        return CryptoSigner(private, legacy)
    if keytype == "rsa":
        return CryptoSigner.generate_rsa(size=2048)
    raise ValueError(keytype)


def raw_sign(metadata: Metadata[Any], signers: Iterable[Signer]) -> bytes:
    """Bytes of ``metadata`` signed by exactly ``signers`` (previous signatures dropped)."""
    metadata.signatures.clear()
    for signer in signers:
        metadata.sign(signer, append=True)
    return metadata.to_bytes()


def tamper(data: bytes, change: Any) -> bytes:
    """Re-serialize metadata bytes after ``change(dict)`` edits the JSON (signatures kept)."""
    document = json.loads(data)
    change(document)
    return json.dumps(document).encode()


@dataclass
class Repo:
    """A repository: metadata objects, signers per role, and published bytes."""

    keytype: str = "ed25519"
    consistent_snapshot: bool = True
    hashes_in_meta: bool = False
    signers: dict[str, list[Signer]] = field(default_factory=dict)
    delegated: dict[str, Metadata[Targets]] = field(default_factory=dict)
    published: dict[str, bytes] = field(default_factory=dict)
    roots: dict[int, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root: Metadata[Root] = Metadata(
            Root(expires=FAR, consistent_snapshot=self.consistent_snapshot)
        )
        for role in TOP_LEVEL:
            signer = new_signer(self.keytype)
            self.root.signed.add_key(signer.public_key, role)
            self.signers[role] = [signer]
        self.timestamp: Metadata[Timestamp] = Metadata(Timestamp(expires=FAR))
        self.snapshot: Metadata[Snapshot] = Metadata(Snapshot(expires=FAR))
        self.targets: Metadata[Targets] = Metadata(Targets(expires=FAR))
        self.roots[1] = self.sign_root()

    # -- signing -----------------------------------------------------------------

    def sign_root(self, extra: Iterable[Signer] = ()) -> bytes:
        """Sign the current root with the root signers (plus ``extra``)."""
        return raw_sign(self.root, [*self.signers["root"], *extra])

    def sign(self, role: str, metadata: Metadata[Any] | None = None) -> bytes:
        """Sign a top-level or delegated role with its signers."""
        if metadata is None:
            metadata = self.metadata(role)
        return raw_sign(metadata, self.signers[role])

    def metadata(self, role: str) -> Metadata[Any]:
        """The metadata object of a role."""
        if role in ("timestamp", "snapshot", "targets", "root"):
            return getattr(self, role)  # type: ignore[no-any-return]
        return self.delegated[role]

    # -- root rotation -------------------------------------------------------------

    def rotate_root(
        self,
        *,
        new_keys: dict[str, list[Signer]] | None = None,
        threshold: dict[str, int] | None = None,
        sign_with_old: bool = True,
    ) -> bytes:
        """Publish root version N+1 (optionally replacing keys of roles), signed by the
        old and new root keys; returns its bytes (also kept in ``roots``)."""
        old_root_signers = list(self.signers["root"])
        self.root.signed.version += 1
        for role, signers in (new_keys or {}).items():
            for keyid in list(self.root.signed.roles[role].keyids):
                self.root.signed.revoke_key(keyid, role)
            for signer in signers:
                self.root.signed.add_key(signer.public_key, role)
            self.signers[role] = list(signers)
        for role, value in (threshold or {}).items():
            self.root.signed.roles[role].threshold = value
        extra = [s for s in old_root_signers if s not in self.signers["root"]]
        data = self.sign_root(extra if sign_with_old else ())
        self.roots[self.root.signed.version] = data
        return data

    # -- delegations ---------------------------------------------------------------

    def delegate(
        self,
        delegator: str,
        name: str,
        *,
        paths: list[str] | None = None,
        hash_prefixes: list[str] | None = None,
        terminating: bool = False,
        signers: list[Signer] | None = None,
        threshold: int = 1,
    ) -> Metadata[Targets]:
        """Add a delegation from ``delegator`` to a (new or existing) role ``name``."""
        parent: Targets = self.metadata(delegator).signed
        if signers is None:
            signers = self.signers.get(name) or [new_signer(self.keytype)]
        self.signers.setdefault(name, list(signers))
        if parent.delegations is None:
            parent.delegations = Delegations(keys={}, roles={})
        assert parent.delegations.roles is not None
        if paths is None and hash_prefixes is None:
            paths = ["*"]
        role = DelegatedRole(
            name,
            [],
            threshold,
            terminating,
            paths if hash_prefixes is None else None,
            hash_prefixes,
        )
        parent.delegations.roles[name] = role
        for signer in signers:
            parent.add_key(signer.public_key, name)
        if name not in self.delegated:
            self.delegated[name] = Metadata(Targets(expires=FAR))
        return self.delegated[name]

    def delegate_succinct(
        self, delegator: str, *, bit_length: int, prefix: str = "bin"
    ) -> list[str]:
        """Delegate from ``delegator`` to TAP 15 succinct hash bins; returns bin names."""
        parent: Targets = self.metadata(delegator).signed
        signer = new_signer(self.keytype)
        succinct = SuccinctRoles([signer.public_key.keyid], 1, bit_length, prefix)
        parent.delegations = Delegations(
            keys={signer.public_key.keyid: signer.public_key}, succinct_roles=succinct
        )
        names = list(succinct.get_roles())
        for name in names:
            self.signers[name] = [signer]
            self.delegated[name] = Metadata(Targets(expires=FAR))
        return names

    def add_target(self, role: str, path: str, content: bytes) -> TargetFile:
        """List ``path`` (sha256 and sha512 of ``content``) in ``role``."""
        target = TargetFile.from_data(path, content, ["sha256", "sha512"])
        self.metadata(role).signed.targets[path] = target
        return target

    # -- publishing ----------------------------------------------------------------

    def meta_for(self, data: bytes, version: int) -> MetaFile:
        """A ``MetaFile`` for bytes, with length and hashes if ``hashes_in_meta``."""
        if self.hashes_in_meta:
            return MetaFile(version, len(data), {"sha256": hashlib.sha256(data).hexdigest()})
        return MetaFile(version)

    def publish(self, *, bump: Iterable[str] = ()) -> dict[str, bytes]:
        """Bump the versions of ``bump`` roles, then sign every targets role, snapshot
        (listing them) and timestamp; returns and stores the bytes by role."""
        for role in bump:
            self.metadata(role).signed.version += 1
        out: dict[str, bytes] = {}
        meta: dict[str, MetaFile] = {}
        for role in ["targets", *self.delegated]:
            data = self.sign(role)
            out[role] = data
            meta[f"{role}.json"] = self.meta_for(data, self.metadata(role).signed.version)
        self.snapshot.signed.meta = meta
        out["snapshot"] = self.sign("snapshot")
        self.timestamp.signed.snapshot_meta = self.meta_for(
            out["snapshot"], self.snapshot.signed.version
        )
        out["timestamp"] = self.sign("timestamp")
        self.published.update(out)
        return out

    def trusted_set(
        self,
        *,
        now: datetime = NOW,
        limits: Limits | None = None,
        expired_delegated_ok: bool = False,
        through: str = "targets",
    ) -> TrustedSet:
        """A TrustedSet from root v1 through all root versions, then up to ``through``
        ("root", "timestamp", "snapshot" or "targets") with the published bytes."""
        trusted = TrustedSet(
            self.roots[1], now=now, limits=limits, expired_delegated_ok=expired_delegated_ok
        )
        for version in sorted(self.roots)[1:]:
            trusted.update_root(self.roots[version])
        if through == "root":
            return trusted
        if not self.published:
            self.publish()
        trusted.update_timestamp(self.published["timestamp"])
        if through == "timestamp":
            return trusted
        trusted.update_snapshot(self.published["snapshot"])
        if through == "snapshot":
            return trusted
        trusted.update_targets(self.published["targets"])
        return trusted
