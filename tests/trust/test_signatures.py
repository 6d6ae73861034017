"""Signature thresholds, key types and canonical JSON, across all roles."""

from __future__ import annotations

import json
from typing import Any

import pytest
from securesystemslib.formats import encode_canonical
from securesystemslib.signer import Signature, Signer
from tuf.api.metadata import Role

from mirror.errors import MalformedMetadataError, SignatureError
from mirror.trust import TrustedSet
from mirror.trust._verify import count_valid

from ._repo import NOW, Repo, new_signer


def sign_dict(signed: dict[str, Any], signers: list[Signer], extra: Any = ()) -> bytes:
    """Sign a raw ``signed`` dict (whatever it contains) over its canonical JSON."""
    payload = encode_canonical(signed).encode()
    signatures = [signer.sign(payload).to_dict() for signer in signers]
    signatures.extend(extra)
    return json.dumps({"signatures": signatures, "signed": signed}).encode()


def test_unknown_key_and_invalid_extra_signatures_ignored() -> None:
    """Signatures by unknown keys, a wrong signature and an empty one are ignored
    when the threshold is still reached."""
    repo = Repo()
    repo.publish()
    signed = repo.timestamp.signed.to_dict()
    stranger = new_signer()
    payload = encode_canonical(signed).encode()
    snapshot_key = repo.signers["snapshot"][0]
    extra = [
        stranger.sign(payload).to_dict(),
        {"keyid": snapshot_key.public_key.keyid, "sig": ""},
        {"keyid": "00" * 32, "sig": "zz-not-hex"},
    ]
    data = sign_dict(signed, repo.signers["timestamp"], extra)
    trusted = repo.trusted_set(through="root")
    assert trusted.update_timestamp(data).raw == data


def test_invalid_signature_of_listed_key_fails_threshold() -> None:
    """A listed key's signature over other bytes does not count."""
    repo = Repo()
    repo.publish()
    signed = repo.timestamp.signed.to_dict()
    wrong = repo.signers["timestamp"][0].sign(b"something else").to_dict()
    data = sign_dict(signed, [], [wrong])
    trusted = repo.trusted_set(through="root")
    with pytest.raises(SignatureError, match="0 valid signature"):
        trusted.update_timestamp(data)


def test_empty_signature_string_fails_threshold() -> None:
    """An empty sig string is no signature."""
    repo = Repo()
    repo.publish()
    keyid = repo.signers["timestamp"][0].public_key.keyid
    data = sign_dict(repo.timestamp.signed.to_dict(), [], [{"keyid": keyid, "sig": ""}])
    trusted = repo.trusted_set(through="root")
    with pytest.raises(SignatureError):
        trusted.update_timestamp(data)


def test_duplicate_signatures_rejected() -> None:
    """Two signatures by the same key id are refused outright (they cannot reach a
    threshold of 2 with one key)."""
    repo = Repo()
    repo.publish()
    signer = repo.signers["timestamp"][0]
    signed = repo.timestamp.signed.to_dict()
    data = sign_dict(signed, [signer, signer])
    trusted = repo.trusted_set(through="root")
    with pytest.raises(MalformedMetadataError, match="Multiple signatures"):
        trusted.update_timestamp(data)


def test_key_listed_nine_times_does_not_reach_threshold_six() -> None:
    """A root listing one snapshot key id 9 times with threshold 6 is refused, so one
    key can never pass for six."""
    repo = Repo()
    signed = repo.root.signed.to_dict()
    signed["version"] = 2
    keyid = signed["roles"]["snapshot"]["keyids"][0]
    signed["roles"]["snapshot"] = {"keyids": [keyid] * 9, "threshold": 6}
    data = sign_dict(signed, repo.signers["root"])
    trusted = TrustedSet(repo.roots[1], now=NOW)
    with pytest.raises(MalformedMetadataError, match="Nonunique keyids"):
        trusted.update_root(data)


def test_count_valid_dedupes_keyids_and_identical_keys() -> None:
    """The threshold counter counts a key id once however often a role lists it, and
    two key ids for the same public key once."""
    signer = new_signer()
    key = signer.public_key
    payload = b"payload"
    signature = signer.sign(payload)
    role = Role([key.keyid], 1)
    role.keyids = [key.keyid] * 9  # bypass the parser's own check
    assert count_valid({key.keyid: key}, role, payload, {key.keyid: signature}) == 1

    alias = type(key)("alias-id", key.keytype, key.scheme, dict(key.keyval))
    alias_signature = Signature("alias-id", signature.signature)
    role2 = Role([key.keyid, "alias-id"], 2)
    keys = {key.keyid: key, "alias-id": alias}
    sigs = {key.keyid: signature, "alias-id": alias_signature}
    assert count_valid(keys, role2, payload, sigs) == 1


def test_threshold_two_of_three() -> None:
    """Two of three timestamp keys suffice for threshold 2; one does not."""
    repo = Repo()
    signers = [new_signer(), new_signer(), new_signer()]
    repo.rotate_root(new_keys={"timestamp": signers}, threshold={"timestamp": 2})
    repo.publish()
    trusted = repo.trusted_set(through="root")
    one = sign_dict(repo.timestamp.signed.to_dict(), signers[:1])
    with pytest.raises(SignatureError, match="1 valid signature"):
        trusted.update_timestamp(one)
    two = sign_dict(repo.timestamp.signed.to_dict(), signers[1:])
    assert trusted.update_timestamp(two).version == 1


@pytest.mark.parametrize(
    "keytype",
    [
        "ed25519",
        "ecdsa",
        # securesystemslib warns about the legacy keytype spelling while verifying
        pytest.param(
            "ecdsa-legacy",
            marks=pytest.mark.filterwarnings("ignore:keytype .* is deprecated:DeprecationWarning"),
        ),
        "rsa",
    ],
)
def test_key_types(keytype: str) -> None:
    """ed25519, ecdsa (keytype "ecdsa" and legacy "ecdsa-sha2-nistp256") and
    rsassa-pss-sha256 keys verify through the whole workflow, including delegations."""
    repo = Repo(keytype=keytype)
    repo.delegate("targets", "A")
    repo.add_target("A", "file.txt", b"data")
    out = repo.publish()
    trusted = repo.trusted_set()
    verified = trusted.update_delegated_targets(out["A"], "A", "targets")
    assert "file.txt" in verified.signed.targets
    # and a signature by the wrong key of the same type fails
    bad = sign_dict(repo.delegated["A"].signed.to_dict(), [new_signer(keytype)])
    with pytest.raises(SignatureError):
        trusted.update_delegated_targets(bad, "A", "targets", trusted=True)


def test_unknown_fields_are_signed_and_kept() -> None:
    """Unknown fields anywhere (signed, keys, roles, meta) are covered by the
    signature (canonical JSON of the whole signed dict) and kept."""
    repo = Repo()
    repo.publish()
    root = repo.root.signed.to_dict()
    root["version"] = 2
    root["x-custom"] = {"nested": [1, 2]}
    for key in root["keys"].values():
        key["keyid_hash_algorithms"] = ["sha256", "sha512"]
    root["roles"]["targets"]["x-role-extra"] = True
    root_v2 = sign_dict(root, repo.signers["root"])

    timestamp = repo.timestamp.signed.to_dict()
    timestamp["meta"]["snapshot.json"]["x-meta"] = "kept"
    timestamp_bytes = sign_dict(timestamp, repo.signers["timestamp"])

    trusted = TrustedSet(repo.roots[1], now=NOW)
    verified_root = trusted.update_root(root_v2)
    assert verified_root.raw == root_v2
    assert verified_root.signed.unrecognized_fields == {"x-custom": {"nested": [1, 2]}}
    assert verified_root.signed.roles["targets"].unrecognized_fields == {"x-role-extra": True}
    verified_ts = trusted.update_timestamp(timestamp_bytes)
    assert verified_ts.signed.snapshot_meta.unrecognized_fields == {"x-meta": "kept"}

    # an unknown field added after signing breaks the signature
    root["x-custom"] = "changed"
    tampered = json.loads(root_v2)
    tampered["signed"]["x-custom"] = "changed"
    fresh = TrustedSet(repo.roots[1], now=NOW)
    with pytest.raises(SignatureError):
        fresh.update_root(json.dumps(tampered).encode())
