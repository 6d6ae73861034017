"""What verifying costs, counted (never timed): JSON decodes per role, and that the
one-decode path refuses exactly what python-tuf refuses, with the same messages."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from tuf.api.serialization import DeserializationError

from mirror.errors import MalformedMetadataError, SignatureError
from mirror.trust import _verify as verify_module
from mirror.trust._verify import fast_canonical_signed, parse, parse_with_payload

from ._repo import Repo


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
