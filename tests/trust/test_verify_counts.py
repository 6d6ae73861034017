"""What verifying costs, counted (never timed): JSON decodes per role (and that the
one-decode path refuses exactly what python-tuf refuses, with the same messages), and
key objects built per key."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from securesystemslib.signer import Signature, SSlibKey
from tuf.api.metadata import Role
from tuf.api.serialization import DeserializationError

from mirror.errors import MalformedMetadataError, SignatureError
from mirror.trust import _verify as verify_module
from mirror.trust._verify import (
    VerifyingKeys,
    count_valid,
    fast_canonical_signed,
    parse,
    parse_with_payload,
)

from ._repo import Repo, new_signer


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every JSON text decode (``json.loads`` and any ``JSONDecoder``), counted."""
    calls: list[int] = []
    original = json.JSONDecoder.decode

    def counting(self: json.JSONDecoder, s: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(s))
        return original(self, s, *args, **kwargs)

    monkeypatch.setattr(json.JSONDecoder, "decode", counting)
    return calls


def _delegated_repo() -> tuple[Repo, dict[str, bytes]]:
    repo = Repo()
    repo.delegate("targets", "a", paths=["a/*"])
    repo.add_target("a", "a/x", b"x")
    return repo, repo.publish()


def test_verifying_a_targets_role_decodes_its_json_once(decodes: list[int]) -> None:
    """``update_delegated_targets`` decodes the role's bytes once: python-tuf's object
    and the canonical bytes the signatures cover come from the same decode."""
    repo, published = _delegated_repo()
    trusted = repo.trusted_set()
    decodes.clear()
    trusted.update_delegated_targets(published["a"], "a", "targets")
    assert decodes == [len(published["a"])]


def test_every_top_level_step_decodes_once(decodes: list[int]) -> None:
    """Root, timestamp, snapshot and targets: one decode each."""
    repo, published = _delegated_repo()
    repo.trusted_set()
    sizes = [len(repo.roots[1])] + [
        len(published[role]) for role in ("timestamp", "snapshot", "targets")
    ]
    assert decodes == sizes


def test_float_documents_decode_again_on_the_general_path(decodes: list[int]) -> None:
    """A float (not canonical JSON) stops the one decode; python-tuf's own decode then
    parses the document, and the payload is left to the general path."""
    repo = Repo()
    repo.publish()
    raw = repo.published["timestamp"]
    document = json.loads(raw)
    document["signed"]["ratio"] = 0.5
    floaty = json.dumps(document).encode()
    decodes.clear()
    metadata, payload = parse_with_payload(floaty, "timestamp", "timestamp")
    assert payload is None
    assert metadata.signed.unrecognized_fields == {"ratio": 0.5}
    assert len(decodes) == 2


def _with(change: Callable[[dict[str, Any]], None]) -> bytes:
    repo = Repo()
    repo.publish()
    document = json.loads(repo.published["timestamp"])
    change(document)
    return json.dumps(document).encode()


def _malformed() -> list[Any]:
    good = _with(lambda d: None)
    return [
        pytest.param(b"\xff\xfe{}", id="not-utf8"),
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b"\xef\xbb\xbf" + good, id="utf8-bom"),
        pytest.param(good + b" x", id="extra-data"),
        pytest.param(b"[]", id="top-level-list"),
        pytest.param(b"{}", id="empty-object"),
        pytest.param(_with(lambda d: d.pop("signed")), id="no-signed"),
        pytest.param(_with(lambda d: d.update(signed=[1])), id="signed-not-object"),
        pytest.param(_with(lambda d: d.pop("signatures")), id="no-signatures"),
        pytest.param(_with(lambda d: d["signed"].update(_type="nope")), id="unknown-type"),
        pytest.param(_with(lambda d: d["signed"].update(_type="snapshot")), id="wrong-type"),
        pytest.param(_with(lambda d: d["signed"].update(version="1")), id="version-string"),
        pytest.param(_with(lambda d: d["signed"].update(expires=1.5)), id="expires-float"),
        pytest.param(_with(lambda d: d["signatures"].append(d["signatures"][0])), id="dup-sig"),
        pytest.param(
            good.replace(b'"_type": "timestamp"', b'"_type": "timestamp", "_type": "root"'),
            id="duplicate-key-last-wins",
        ),
    ]


@pytest.mark.parametrize("data", _malformed())
def test_malformed_input_fails_as_python_tuf_fails(data: bytes) -> None:
    """For every malformed input the one-decode path raises what ``parse`` (python-tuf's
    ``Metadata.from_bytes``) raises: same error, same message, same cause."""
    with pytest.raises(MalformedMetadataError) as general:
        parse(data, "timestamp", "timestamp")
    with pytest.raises(MalformedMetadataError) as fast:
        parse_with_payload(data, "timestamp", "timestamp")
    assert str(fast.value) == str(general.value)
    assert type(fast.value.__cause__) is type(general.value.__cause__)
    if isinstance(general.value.__cause__, DeserializationError):
        assert str(fast.value.__cause__) == str(general.value.__cause__)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_with(lambda d: d["signed"].update(ratio=float("nan"))), id="nan"),
        pytest.param(_with(lambda d: d["signed"].update(ratio=-1e400)), id="minus-infinity"),
        pytest.param(_with(lambda d: d["signed"].update(n=10**30)), id="big-integer"),
        pytest.param(_with(lambda d: d["signed"].update(note="\ud800")), id="lone-surrogate"),
        pytest.param(_with(lambda d: d.update(extra={"a": [1, 2]})), id="unknown-top-level"),
    ],
)
def test_odd_but_parseable_input_parses_as_python_tuf_parses(data: bytes) -> None:
    """What python-tuf accepts, the one-decode path accepts with the same content; the
    payload is the fast form only where that form exists (not for floats, constants or
    lone surrogates: then the general path decides)."""
    general = parse(data, "timestamp", "timestamp")
    metadata, payload = parse_with_payload(data, "timestamp", "timestamp")
    assert json.dumps(metadata.to_dict()) == json.dumps(general.to_dict())
    assert payload == fast_canonical_signed(data)


def test_the_payload_is_the_fast_canonical_form() -> None:
    """The payload from the one decode is byte for byte ``fast_canonical_signed``'s,
    for every role of a repository with delegations."""
    _, published = _delegated_repo()
    for role, raw in published.items():
        expected = "targets" if role == "a" else role
        metadata, payload = parse_with_payload(raw, expected, role)
        assert payload is not None
        assert payload == fast_canonical_signed(raw) == metadata.signed_bytes


# -- signature checks: key objects built once ----------------------------------------


@pytest.fixture
def ed25519_builds(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every ``cryptography`` ed25519 public-key object built (ours or securesystemslib's)."""
    built: list[bytes] = []
    original = Ed25519PublicKey.from_public_bytes

    def counting(data: bytes) -> Ed25519PublicKey:
        built.append(data)
        return original(data)

    monkeypatch.setattr(Ed25519PublicKey, "from_public_bytes", counting)
    return built


def test_a_key_object_is_built_once_per_key_per_run(ed25519_builds: list[bytes]) -> None:
    """Eight hash bins signed by one key, verified by one trusted set: that key's
    object is built once, as are those of the four top-level keys."""
    repo = Repo()
    bins = repo.delegate_succinct("targets", bit_length=3)
    for index, name in enumerate(bins):
        repo.add_target(name, f"f{index}", b"x")
    published = repo.publish()
    ed25519_builds.clear()
    trusted = repo.trusted_set()
    for name in bins:
        trusted.update_delegated_targets(published[name], name, "targets")
    # root, timestamp, snapshot, targets and the one bin key, once each
    assert len(ed25519_builds) == len(set(ed25519_builds)) == 5


def test_key_objects_are_per_trusted_set(ed25519_builds: list[bytes]) -> None:
    """A new trusted set (a new run) builds its key objects again: nothing is kept
    across runs or shared between trusted sets."""
    repo, _ = _delegated_repo()
    ed25519_builds.clear()
    repo.trusted_set()
    first = list(ed25519_builds)
    repo.trusted_set()
    assert len(first) == len(set(first)) == 4
    assert ed25519_builds == first + first


def _ed25519(keyid: str, public: str, *, scheme: str = "ed25519") -> SSlibKey:
    return SSlibKey(keyid, "ed25519", scheme, {"public": public})


def test_verifying_keys_are_keyed_by_the_whole_key() -> None:
    """The same key id with another public value gets its own object, so a signature
    by one key never verifies for an entry that only shares its key id; a verified
    signature is not remembered (a changed payload or signature fails)."""
    one, other = new_signer(), new_signer()
    keyid = one.public_key.keyid
    payload = b"payload"
    signature = one.sign(payload)
    genuine = _ed25519(keyid, one.public_key.keyval["public"])
    impostor = _ed25519(keyid, other.public_key.keyval["public"])
    verifying = VerifyingKeys()
    role = Role([keyid], 1)
    assert count_valid({keyid: genuine}, role, payload, {keyid: signature}, verifying) == 1
    assert count_valid({keyid: impostor}, role, payload, {keyid: signature}, verifying) == 0
    assert verifying.ed25519(genuine) is not verifying.ed25519(impostor)
    assert verifying.ed25519(genuine) is verifying.ed25519(
        _ed25519(keyid, one.public_key.keyval["public"])
    )
    assert count_valid({keyid: genuine}, role, b"other", {keyid: signature}, verifying) == 0
    flipped = Signature(
        keyid, ("0" if signature.signature[0] != "0" else "1") + signature.signature[1:]
    )
    assert count_valid({keyid: genuine}, role, payload, {keyid: flipped}, verifying) == 0
    assert count_valid({keyid: genuine}, role, payload, {keyid: signature}, verifying) == 1


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(_ed25519("k", "00" * 32, scheme="ed25519-other"), id="other-scheme"),
        pytest.param(_ed25519("k", "not hex"), id="public-not-hex"),
        pytest.param(_ed25519("k", "00" * 3), id="public-wrong-length"),
        pytest.param(SSlibKey("k", "ecdsa", "ed25519", {"public": "00" * 32}), id="other-type"),
    ],
)
def test_keys_the_cache_does_not_take_are_left_to_securesystemslib(key: SSlibKey) -> None:
    """Anything but a plain, well-formed ed25519 key gets no object of ours; its
    signatures are securesystemslib's to judge (here: not valid)."""
    assert VerifyingKeys().ed25519(key) is None
    signature = Signature("k", "00" * 64)
    assert count_valid({"k": key}, Role(["k"], 1), b"p", {"k": signature}, VerifyingKeys()) == 0


@pytest.mark.parametrize("sig", ["", "zz-not-hex", "00" * 64, "00" * 10])
def test_malformed_ed25519_signatures_are_not_valid(sig: str) -> None:
    """Empty, non-hex, wrong and short signatures by a cached key count as invalid."""
    signer = new_signer()
    key = signer.public_key
    verifying = VerifyingKeys()
    assert verifying.ed25519(key) is not None
    signatures = {key.keyid: Signature(key.keyid, sig)}
    assert count_valid({key.keyid: key}, Role([key.keyid], 1), b"p", signatures, verifying) == 0


def test_a_wrong_fast_payload_is_counted_again_over_python_tufs_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Should the fast canonical form ever differ from python-tuf's, a missed
    threshold is counted again over python-tuf's own ``signed_bytes``: the role still
    verifies, and a forged one still fails."""
    repo, published = _delegated_repo()
    trusted = repo.trusted_set()
    monkeypatch.setattr(verify_module, "_canonical", lambda signed: b"not what was signed")
    assert trusted.update_delegated_targets(published["a"], "a", "targets").raw == published["a"]
    forged = json.loads(published["a"])
    forged["signed"]["targets"]["a/x"]["length"] = 2
    with pytest.raises(SignatureError, match="0 valid signature"):
        trusted.update_delegated_targets(json.dumps(forged).encode(), "a", "targets", trusted=True)
