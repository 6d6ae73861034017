"""Root versions older than the pinned one: shown authentic backwards, parsed loosely.

A mirror also serves ``1.root.json .. (pin-1).root.json``, so that clients pinned on
an older root can update. Those versions are never used for trust here, and they
are long expired, sometimes in a form today's python-tuf cannot parse (sigstore's
first roots carry ``expires`` values with fractional seconds and a UTC offset). So
they are not parsed as ``Metadata``; only what the chain needs is read from the
JSON:

``link_older_root(older, version, newer)`` accepts ``older`` as root ``version`` when

* it is a JSON object whose ``signed`` has ``_type`` ``root`` and this ``version``;
* a threshold of its own root keys signed its canonical ``signed`` (it is what its
  key holders published);
* a threshold of *its* root keys signed ``newer``, the already accepted next
  version (the link a client walks forward).

Starting from the pinned root and going down one version at a time, every accepted
version is bound to the pinned bytes by signatures. A re-serialized copy of an old
file (same ``signed``, other whitespace) is accepted: signatures cover the canonical
form. What this module does not do: fetch anything, check expiry, or trust these
versions for anything but being copied.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mirror.errors import BadVersionError, MalformedMetadataError, SignatureError
from mirror.trust._tuf import Key, Role, Signature
from mirror.trust._verify import count_valid, fast_canonical_signed

__all__ = ["link_older_root"]


class _Loose:
    """The parts of a root document the backward chain needs."""

    __slots__ = ("keys", "payload", "role", "signatures", "version")

    def __init__(self, data: bytes, what: str) -> None:
        try:
            document = json.loads(data)
            signed = document["signed"]
            if signed["_type"] != "root":
                raise MalformedMetadataError(f"{what}: _type is {signed['_type']!r}, not 'root'")
            self.version: int = int(signed["version"])
            root_role: Mapping[str, Any] = signed["roles"]["root"]
            self.role = Role(list(root_role["keyids"]), int(root_role["threshold"]))
            self.keys: dict[str, Key] = {
                keyid: Key.from_dict(keyid, dict(value))
                for keyid, value in dict(signed["keys"]).items()
                if keyid in self.role.keyids
            }
            self.signatures: dict[str, Signature] = {}
            for entry in document["signatures"]:
                signature = Signature.from_dict(dict(entry))
                self.signatures.setdefault(signature.keyid, signature)
        except MalformedMetadataError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise MalformedMetadataError(f"{what}: not a readable root document: {exc}") from exc
        payload = fast_canonical_signed(data)
        if payload is None:
            raise MalformedMetadataError(f"{what}: signed part cannot be canonicalized")
        self.payload = payload


def link_older_root(older: bytes, version: int, newer: bytes) -> None:
    """Accept ``older`` as root ``version`` because ``newer`` (already accepted, of
    version ``version + 1``) is signed by its root keys; raise a
    ``VerificationError`` saying which check failed otherwise."""
    what = f"{version}.root.json"
    old = _Loose(older, what)
    if old.version != version:
        raise BadVersionError(f"{what}: holds version {old.version}")
    new = _Loose(newer, f"{version + 1}.root.json")
    own = count_valid(old.keys, old.role, old.payload, old.signatures)
    if own < old.role.threshold:
        raise SignatureError(
            f"{what}: {own} valid signature(s) of its own {old.role.threshold} required"
        )
    link = count_valid(old.keys, old.role, new.payload, new.signatures)
    if link < old.role.threshold:
        raise SignatureError(
            f"{version + 1}.root.json: {link} valid signature(s) by the keys of root "
            f"v{version}, {old.role.threshold} required"
        )
