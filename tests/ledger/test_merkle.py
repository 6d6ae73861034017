"""RFC 6962 hashing, proofs and the tree's right edge, against the published test
vectors of transparency-dev/merkle (``data/rfc6962_vectors.json``, source noted in
the file)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from mirror.ledger.frontier import Frontier
from mirror.ledger.merkle import (
    EMPTY_ROOT,
    ProofError,
    consistency_proof,
    hash_leaf,
    inclusion_proof,
    root_of_leaves,
    tree_root,
    verify_consistency,
    verify_inclusion,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "data" / "rfc6962_vectors.json").read_text()
)
LEAVES = [bytes.fromhex(h) for h in VECTORS["leaf_inputs_hex"]]
ROOTS = [bytes.fromhex(h) for h in VECTORS["root_hashes_hex"]]


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value) if value else b""


def _source(leaf_hashes: list[bytes]) -> Any:
    def source(level: int, index: int) -> bytes:
        size = 1 << level
        return root_of_leaves(leaf_hashes[index * size : (index + 1) * size])

    return source


def test_roots_of_every_prefix() -> None:
    """The root of the first n reference leaves is the published root, for every n
    (the empty tree included), by both the all-leaves and the right-edge methods."""
    hashes = [hash_leaf(leaf) for leaf in LEAVES]
    assert root_of_leaves([]) == EMPTY_ROOT == ROOTS[0]
    frontier = Frontier()
    assert frontier.root() == ROOTS[0]
    for size in range(1, len(LEAVES) + 1):
        assert root_of_leaves(hashes[:size]) == ROOTS[size]
        assert tree_root(_source(hashes), size) == ROOTS[size]
        frontier.append(LEAVES[size - 1])
        assert frontier.root() == ROOTS[size]
        assert Frontier.from_json(frontier.to_json()).root() == ROOTS[size]


@pytest.mark.parametrize("case", VECTORS["inclusion"], ids=lambda c: c["file"])
def test_inclusion_vectors(case: dict[str, Any]) -> None:
    """Every published inclusion case: happy paths verify, every altered one fails."""
    proof = [_b64(p) for p in case.get("proof") or []]

    def check() -> None:
        verify_inclusion(
            _b64(case.get("leafHash")),
            case["leafIdx"],
            case["treeSize"],
            proof,
            _b64(case.get("root")),
        )

    if case["wantErr"]:
        with pytest.raises(ProofError):
            check()
    else:
        check()


@pytest.mark.parametrize("case", VECTORS["consistency"], ids=lambda c: c["file"])
def test_consistency_vectors(case: dict[str, Any]) -> None:
    """Every published consistency case: happy paths verify, every altered one fails."""
    proof = [_b64(p) for p in case.get("proof") or []]

    def check() -> None:
        verify_consistency(
            case["size1"], case["size2"], _b64(case.get("root1")), _b64(case.get("root2")), proof
        )

    if case["wantErr"]:
        with pytest.raises(ProofError):
            check()
    else:
        check()


def test_generated_proofs_match_and_verify() -> None:
    """Proofs built from the reference tree equal the published happy-path proofs,
    and for every size and leaf of a 40-leaf tree they verify."""
    hashes = [hash_leaf(leaf) for leaf in LEAVES]
    source = _source(hashes)
    for case in VECTORS["inclusion"]:
        happy = not case["wantErr"] and case["file"].endswith("happy-path.json")
        if happy and case["treeSize"] <= len(LEAVES):
            expected = [_b64(p) for p in case.get("proof") or []]
            assert inclusion_proof(source, case["leafIdx"], case["treeSize"]) == expected
    for case in VECTORS["consistency"]:
        if not case["wantErr"] and case["file"].endswith("happy-path.json"):
            expected = [_b64(p) for p in case.get("proof") or []]
            assert consistency_proof(source, case["size1"], case["size2"]) == expected
    many = [hash_leaf(bytes([i])) for i in range(40)]
    big = _source(many)
    for size in range(1, 41):
        root = root_of_leaves(many[:size])
        for index in range(size):
            verify_inclusion(many[index], index, size, inclusion_proof(big, index, size), root)
        for old in range(1, size + 1):
            verify_consistency(
                old, size, root_of_leaves(many[:old]), root, consistency_proof(big, old, size)
            )


def test_wrong_leaf_fails() -> None:
    """A proof for another leaf, or against another root, does not verify."""
    hashes = [hash_leaf(leaf) for leaf in LEAVES]
    proof = inclusion_proof(_source(hashes), 3, 8)
    with pytest.raises(ProofError):
        verify_inclusion(hashes[4], 3, 8, proof, ROOTS[8])
    with pytest.raises(ProofError):
        verify_inclusion(hashes[3], 3, 8, proof, ROOTS[7])
