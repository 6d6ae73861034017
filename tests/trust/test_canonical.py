"""The fast canonical-JSON path gives exactly python-tuf's signed bytes, and steps
aside wherever the two encoders could differ."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mirror.trust._tuf import Metadata
from mirror.trust._verify import fast_canonical_signed
from tuf_mirror_testing.repo import Repository

DATA = Path(__file__).parent / "data"


def _repository_files() -> list[bytes]:
    repo = Repository(hash_algorithms=("sha256", "sha512"), snapshot_lists_hashes=True)
    repo.add_hash_bins(4)
    repo.add_delegation("targets", "ünïcode/role", paths=["ü/*"])
    for index in range(20):
        repo.add_target(f"files/{index}/naïve ☃ {index}.txt", b"x" * index, custom={"n": index})
    repo.add_target("ü/a", b"a", role="ünïcode/role")
    repo.commit()
    return list(repo.metadata_files().values())


@pytest.mark.parametrize(
    "raw",
    _repository_files() + [p.read_bytes() for p in sorted(DATA.rglob("*.json"))],
)
def test_fast_path_equals_python_tuf(raw: bytes) -> None:
    """For generated and real-world metadata (unicode, unknown fields, custom data),
    the fast path's bytes are python-tuf's ``signed_bytes``."""
    fast = fast_canonical_signed(raw)
    assert fast is not None
    assert fast == Metadata.from_bytes(raw).signed_bytes


@pytest.mark.parametrize(
    "signed",
    [
        {"_type": "targets", "note": "line\nbreak", "tab": "a\tb", "bell": "\x07"},
        {"_type": "targets", "quote": 'say "hi"', "slash": "a\\b/c", "nul": "\x00"},
        {"_type": "targets", "escaped": "caf\u00e9 \u2603", "del": "\x7f", "n": -0},
        {"_type": "targets", "nested": [{"b": 1, "a": [True, False, None]}], "big": 2**70},
    ],
)
def test_fast_path_matches_the_olpc_encoder(signed: dict[str, object]) -> None:
    """Control characters, quotes, backslashes, non-ASCII, nesting and big integers
    come out exactly as securesystemslib's canonical encoder writes them."""
    from securesystemslib.formats import encode_canonical

    raw = json.dumps({"signed": signed, "signatures": []}).encode()
    assert fast_canonical_signed(raw) == encode_canonical(signed).encode("utf-8")


def test_fast_path_steps_aside_for_floats() -> None:
    """Floats (not canonical JSON) take the general path, which refuses them."""
    raw = json.dumps({"signed": {"_type": "targets", "ratio": 1.5}, "signatures": []}).encode()
    assert fast_canonical_signed(raw) is None
