"""The pure policy model: parsing and the consensus per target (no I/O)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mirror.errors import UsageError
from mirror.policy.model import Listing, Verdict, decide, parse_map_json, parse_policy
from tests.trust.test_purity import violations

A = Listing.of(10, {"sha256": "aa"})
B = Listing.of(10, {"sha256": "bb"})


def _policy(mappings: list[dict[str, Any]], **weights: Any) -> Any:
    repositories: dict[str, Any] = {"pypi": {"weight": weights.pop("pypi", 1.0)}}
    for name, value in weights.items():
        table = {"upstream": f"https://{name}.example", "root": f"{name}.json"}
        table.update(value if isinstance(value, dict) else {"weight": value})
        repositories[name] = table
    return parse_policy({"primary": "pypi", "repositories": repositories, "mapping": mappings})


def test_model_is_pure() -> None:
    """The policy model does no I/O and reads no clock (the same check as trust/)."""
    source = Path(__file__).resolve().parents[2] / "mirror" / "policy" / "model.py"
    assert violations(source.read_text(encoding="utf-8")) == []


def test_identical_length_and_hashes_form_a_group() -> None:
    """Votes count only for identical (length, hashes): another hash is another
    group, another hash set (sha512 as well) too."""
    policy = _policy(
        [{"paths": ["*"], "repositories": ["pypi", "a", "b"], "min-score": 2}], a=1.0, b=1.0
    )
    both = Listing.of(10, {"sha256": "aa", "sha512": "cc"})
    assert decide(policy, "f", A, {"a": {"f": A}}).verdict is Verdict.PUBLISH
    held = decide(policy, "f", A, {"a": {"f": B}, "b": {"f": both}})
    assert held.verdict is Verdict.HOLD
    assert held.score == 1
    assert held.missing == ("a", "b")


def test_consensus_on_other_bytes_than_the_primary_is_a_conflict() -> None:
    """When the other parties agree on a file the primary does not serve, nothing
    can be published from the primary: a conflict."""
    policy = _policy([{"paths": ["*"], "repositories": ["a", "b"], "min-score": 2}], a=1.0, b=1.0)
    decision = decide(policy, "f", A, {"a": {"f": B}, "b": {"f": B}})
    assert decision.verdict is Verdict.CONFLICT
    assert "does not serve" in decision.reason


def test_terminating_and_non_terminating_mappings() -> None:
    """A non-terminating mapping that does not decide passes the path on to the next
    matching mapping (TAP 4); a terminating one holds it back."""
    mappings = [
        {"paths": ["django/*"], "repositories": ["django"], "min-score": 1},
        {"paths": ["*"], "repositories": ["pypi"], "min-score": 1},
    ]
    open_policy = _policy(mappings, django=1.0)
    decision = decide(open_policy, "django/x", A, {})
    assert decision.verdict is Verdict.PUBLISH
    assert decision.mapping == 1
    mappings[0]["terminating"] = True
    closed = decide(_policy(mappings, django=1.0), "django/x", A, {})
    assert closed.verdict is Verdict.HOLD
    assert closed.mapping == 0


def test_patterns() -> None:
    """Patterns are TUF path patterns (per segment) with a leading '/' ignored, and a
    lone '*' matches every path; a path no mapping matches is held back."""
    policy = _policy(
        [{"paths": ["/django/django-1.*.tgz"], "repositories": ["pypi"], "min-score": 1}]
    )
    assert decide(policy, "django/django-1.2.tgz", A, {}).verdict is Verdict.PUBLISH
    unmatched = decide(policy, "django/sub/django-1.2.tgz", A, {})
    assert unmatched.verdict is Verdict.HOLD
    assert unmatched.mapping is None
    catch_all = _policy([{"paths": ["*"], "repositories": ["pypi"], "min-score": 1}])
    assert decide(catch_all, "a/b/c.txt", A, {}).verdict is Verdict.PUBLISH


def test_operator_votes_once_at_its_heaviest_weight() -> None:
    """Two repositories of one operator count as one vote weighing as the heavier."""
    policy = _policy(
        [{"paths": ["*"], "repositories": ["pypi", "a", "b"], "min-score": 3}],
        pypi=1.0,
        a={"weight": 2.0, "operator": "acme"},
        b={"weight": 1.5, "operator": "acme"},
    )
    assert policy.score(["a", "b"]) == 2.0
    assert decide(policy, "f", A, {"a": {"f": A}, "b": {"f": A}}).verdict is Verdict.PUBLISH
    held = decide(policy, "f", B, {"a": {"f": A}, "b": {"f": B}})
    assert held.score == 2.5
    assert held.missing == ()  # a's vote would not add: acme already voted through b


def test_map_json_primary_by_upstream() -> None:
    """A map.json's primary is the repository listing --upstream (trailing slashes
    ignored); an upstream no repository lists is a usage error naming the key."""
    data = {
        "repositories": {"PyPI": ["https://pypi.example/"], "Django": ["https://dj.example"]},
        "mapping": [{"paths": ["*"], "repositories": ["PyPI", "Django"], "threshold": 2}],
    }
    policy = parse_map_json(data, primary_upstreams=["https://pypi.example"])
    assert policy.primary == "PyPI"
    assert policy.repositories["Django"].root == "Django/root.json"
    assert policy.mappings[0].min_score == 2
    with pytest.raises(UsageError, match=r"^repositories: no repository lists"):
        parse_map_json(data, primary_upstreams=["https://other.example"])
    with pytest.raises(UsageError, match=r"^mapping\[0\].threshold: expected a whole number"):
        parse_map_json(
            {**data, "mapping": [{"paths": ["*"], "repositories": ["PyPI"], "threshold": 1.5}]},
            primary_upstreams=["https://pypi.example"],
        )


def test_decimal_weights_reach_their_sum() -> None:
    """Decimal weights summing to min-score reach it despite binary rounding
    (0.7 + 0.1 is 0.7999999999999999 in floating point)."""
    policy = _policy(
        [{"paths": ["*"], "repositories": ["pypi", "a", "b"], "min-score": 0.8}],
        pypi=0.7,
        a=0.1,
        b=0.05,
    )
    assert decide(policy, "f", A, {"a": {"f": A}}).verdict is Verdict.PUBLISH
    assert decide(policy, "f", A, {"b": {"f": A}}).verdict is Verdict.HOLD
