"""The trust policy and the consensus per target. Pure: no I/O, no clock.

A policy names repositories (each a full TUF repository with its own pinned root,
a weight and an operator) and an ordered list of mappings from target path
patterns to repositories, a minimum score, required repositories and a
terminating flag. It is a superset of TUF's TAP 4 ``map.json``: a map file is a
policy with weight 1 everywhere, one operator per repository and the threshold
as the minimum score.

``decide`` applies the policy to one target path of the primary repository:

1. the mappings are tried in order; the first whose patterns match decides,
   unless it does not reach a decision and is not terminating (TAP 4): then the
   next matching mapping is tried;
2. in a mapping, the repositories that list the path with *identical* length and
   hashes form a group; a group's score is the sum of its weights, one vote per
   operator (an operator's vote weighs as its heaviest repository in the group);
3. two groups reaching ``min-score`` is a conflict; exactly one group reaching it
   and holding every ``required`` repository publishes the target when its length
   and hashes are the primary's (else the parties agree on bytes the primary does
   not serve: a conflict as well); anything else holds the target back.

Patterns are TUF path patterns (shell wildcards within one ``/``-separated
segment); a pattern that is exactly ``*`` matches every path (the TAP 4 catch-all)
and a leading ``/`` is ignored (TAP 4's examples use one).

What this module does not do: read files, fetch or verify metadata (``source``
and ``secondary``), or decide what to do with the verdict (``gate``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from mirror.errors import UsageError
from mirror.trust.delegations import path_matches_pattern

__all__ = [
    "Decision",
    "Listing",
    "PolicyMapping",
    "PolicyRepository",
    "TrustPolicy",
    "Verdict",
    "decide",
    "parse_map_json",
    "parse_policy",
]

#: a repository name is a single safe path segment (it names DEST/repositories/NAME)
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True, slots=True)
class Listing:
    """What one repository signs for a target path: length and every hash."""

    length: int
    hashes: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, length: int, hashes: Mapping[str, str]) -> Listing:
        return cls(length, tuple(sorted((str(k), str(v)) for k, v in hashes.items())))

    def to_json(self) -> list[Any]:
        return [self.length, dict(self.hashes)]

    @classmethod
    def from_json(cls, value: Any) -> Listing:
        length, hashes = value
        return cls.of(int(length), dict(hashes))


@dataclass(frozen=True, slots=True)
class PolicyRepository:
    """One repository of the policy."""

    name: str
    upstream: tuple[str, ...] = ()
    #: the pinned root file (relative paths are relative to the policy file)
    root: str | None = None
    root_sha256: str | None = None
    weight: float = 1.0
    operator: str = ""

    @property
    def voter(self) -> str:
        """Who casts this repository's vote: its operator, else itself."""
        return self.operator or self.name


@dataclass(frozen=True, slots=True)
class PolicyMapping:
    """One ``[[mapping]]``: which repositories decide for which paths."""

    paths: tuple[str, ...]
    repositories: tuple[str, ...]
    min_score: float
    required: tuple[str, ...] = ()
    terminating: bool = False

    def matches(self, path: str) -> bool:
        for raw in self.paths:
            pattern = raw.removeprefix("/")
            if pattern == "*" or path_matches_pattern(path, pattern):
                return True
        return False

    def describe(self) -> str:
        return ", ".join(self.paths)


@dataclass(frozen=True, slots=True)
class TrustPolicy:
    """A validated policy; see the module docstring."""

    primary: str
    repositories: Mapping[str, PolicyRepository]
    mappings: tuple[PolicyMapping, ...]

    @property
    def secondaries(self) -> list[PolicyRepository]:
        """Every repository but the primary, in name order."""
        return [repo for name, repo in sorted(self.repositories.items()) if name != self.primary]

    def score(self, names: Sequence[str]) -> float:
        """The score of a group: one vote per operator, at its heaviest weight."""
        votes: dict[str, float] = {}
        for name in names:
            repo = self.repositories[name]
            votes[repo.voter] = max(votes.get(repo.voter, 0.0), repo.weight)
        return math.fsum(votes.values())


class Verdict(Enum):
    PUBLISH = "publish"
    HOLD = "held_back"
    CONFLICT = "conflict"


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for one target path."""

    verdict: Verdict
    #: index of the deciding mapping (None: no mapping matches the path)
    mapping: int | None
    #: score of the group holding the primary's listing
    score: float = 0.0
    min_score: float = 0.0
    #: repositories of the mapping whose vote for the primary's listing would add to
    #: its score (not of an operator that already voted for it)
    missing: tuple[str, ...] = ()
    #: for a conflict: the groups that reached the score (names, length, hashes)
    groups: tuple[tuple[tuple[str, ...], Listing], ...] = ()
    reason: str = ""

    def to_json(self, path: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": path,
            "mapping": self.mapping,
            "score": self.score,
            "min_score": self.min_score,
            "missing": list(self.missing),
        }
        if self.reason:
            out["reason"] = self.reason
        if self.groups:
            out["groups"] = [
                {
                    "repositories": list(names),
                    "length": listing.length,
                    "hashes": dict(listing.hashes),
                }
                for names, listing in self.groups
            ]
        return out


def reaches(score: float, min_score: float) -> bool:
    """``score >= min_score``, forgiving the rounding of decimal weights in binary
    floating point (0.1 + 0.2 reaches 0.3)."""
    return score >= min_score - 1e-9 * max(1.0, abs(min_score))


def decide(
    policy: TrustPolicy,
    path: str,
    primary: Listing,
    votes: Mapping[str, Mapping[str, Listing]],
) -> Decision:
    """The consensus for ``path`` listed by the primary as ``primary``; ``votes``
    maps each secondary repository to its listings (path -> listing)."""
    held: Decision | None = None
    for index, mapping in enumerate(policy.mappings):
        if not mapping.matches(path):
            continue
        groups: dict[Listing, list[str]] = {}
        for name in mapping.repositories:
            listing = primary if name == policy.primary else votes.get(name, {}).get(path)
            if listing is not None:
                groups.setdefault(listing, []).append(name)
        reaching = [
            (listing, names)
            for listing, names in groups.items()
            if reaches(policy.score(names), mapping.min_score)
        ]
        mine = groups.get(primary, [])
        score = policy.score(mine)
        # Votes that would add to the score: not of an operator that already voted.
        voted = {policy.repositories[name].voter for name in mine}
        missing = tuple(
            name
            for name in mapping.repositories
            if name not in mine and policy.repositories[name].voter not in voted
        )
        common: dict[str, Any] = {
            "mapping": index,
            "score": score,
            "min_score": mapping.min_score,
            "missing": missing,
        }
        if len(reaching) > 1:
            return Decision(
                Verdict.CONFLICT,
                groups=tuple((tuple(names), listing) for listing, names in reaching),
                reason=" and ".join("+".join(names) for _, names in reaching)
                + " reach the score with different files",
                **common,
            )
        if reaching:
            listing, names = reaching[0]
            lacking = [name for name in mapping.required if name not in names]
            if not lacking:
                if listing == primary:
                    return Decision(Verdict.PUBLISH, **common)
                return Decision(
                    Verdict.CONFLICT,
                    groups=((tuple(names), listing),),
                    reason="the repositories agree on a file the primary does not serve",
                    **common,
                )
            reason = "required repositories do not agree: " + ", ".join(lacking)
        elif mine:
            reason = f"score {score:g} below {mapping.min_score:g}"
        else:
            reason = "no repository of the mapping lists the primary's file"
        if held is None:
            held = Decision(Verdict.HOLD, reason=reason, **common)
        if mapping.terminating:
            break
    return held or Decision(Verdict.HOLD, None, reason="no mapping matches the path")


# -- parsing -------------------------------------------------------------------------


def _at(where: str, key: str) -> str:
    """The dotted path of ``key`` inside the table at ``where`` ("" is the top)."""
    return f"{where}.{key}" if where else key


class _Keys:
    """Reads one table, refusing unknown keys: every error names the key."""

    def __init__(self, where: str, table: Any, allowed: Sequence[str]) -> None:
        if not isinstance(table, dict):
            raise UsageError(f"{where or 'the policy'}: must be a table")
        unknown = sorted(set(table) - set(allowed))
        if unknown:
            raise UsageError(f"{_at(where, unknown[0])}: unknown key")
        self.where = where
        self.table = table

    def key(self, name: str) -> str:
        return _at(self.where, name)

    def string(self, name: str, default: str | None = None) -> str | None:
        value = self.table.get(name, default)
        if value is not None and not isinstance(value, str):
            raise UsageError(f"{self.key(name)}: expected a string, got {value!r}")
        return value

    def strings(self, name: str, *, single_ok: bool = False) -> tuple[str, ...]:
        value = self.table.get(name, [])
        if single_ok and isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise UsageError(f"{self.key(name)}: expected a list of strings, got {value!r}")
        return tuple(value)

    def number(self, name: str, default: float | None = None) -> float | None:
        value = self.table.get(name, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UsageError(f"{self.key(name)}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise UsageError(f"{self.key(name)}: expected a finite number, got {value!r}")
        return float(value)

    def boolean(self, name: str, default: bool = False) -> bool:
        value = self.table.get(name, default)
        if not isinstance(value, bool):
            raise UsageError(f"{self.key(name)}: expected true or false, got {value!r}")
        return value


def _check_name(where: str, name: str) -> str:
    if not _NAME_RE.fullmatch(name) or name in (".", ".."):
        raise UsageError(
            f"{where}: repository name {name!r} could escape a path "
            "(letters, digits, '.', '_', '-' only, not starting with '.' or '-')"
        )
    return name


def _check_mappings(where: str, policy: TrustPolicy, *, score_key: str = "min-score") -> None:
    if not policy.mappings:
        raise UsageError(f"{_at(where, 'mapping')}: no mapping (every target would be held back)")
    for index, mapping in enumerate(policy.mappings):
        key = f"{_at(where, 'mapping')}[{index}]"
        if not mapping.paths:
            raise UsageError(f"{key}.paths: empty path list")
        if not mapping.repositories:
            raise UsageError(f"{key}.repositories: empty repository list")
        for field_name, names in (
            ("repositories", mapping.repositories),
            ("required", mapping.required),
        ):
            for name in names:
                if name not in policy.repositories:
                    raise UsageError(f"{key}.{field_name}: unknown repository {name!r}")
        for name in mapping.required:
            if name not in mapping.repositories:
                raise UsageError(
                    f"{key}.required: {name!r} is not one of the mapping's repositories"
                )
        if mapping.min_score <= 0:
            raise UsageError(
                f"{key}.{score_key}: must be greater than 0, got {mapping.min_score:g}"
            )
        best = policy.score(mapping.repositories)
        if not reaches(best, mapping.min_score):
            raise UsageError(
                f"{key}.{score_key}: {mapping.min_score:g} is unreachable: every vote of "
                f"{', '.join(mapping.repositories)} scores {best:g}"
            )


def parse_policy(data: Mapping[str, Any], *, where: str = "") -> TrustPolicy:
    """A policy from its TOML form (``tomllib`` output); ``UsageError`` naming the
    key for anything wrong."""
    top = _Keys(where, dict(data), ["primary", "repositories", "mapping"])
    primary = top.string("primary")
    if not primary:
        raise UsageError(f"{_at(where, 'primary')}: missing (the repository the mirror serves)")
    tables = data.get("repositories")
    if not isinstance(tables, dict) or not tables:
        raise UsageError(f"{_at(where, 'repositories')}: missing or empty")
    repositories: dict[str, PolicyRepository] = {}
    for name, table in tables.items():
        key = _at(where, f"repositories.{name}")
        _check_name(key, name)
        keys = _Keys(key, table, ["upstream", "root", "root-sha256", "weight", "operator"])
        weight = keys.number("weight", 1.0)
        assert weight is not None
        if weight <= 0:
            raise UsageError(f"{keys.key('weight')}: must be greater than 0, got {weight:g}")
        sha = keys.string("root-sha256")
        if sha is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha):
            raise UsageError(f"{keys.key('root-sha256')}: expected 64 hex digits")
        repo = PolicyRepository(
            name=name,
            upstream=keys.strings("upstream", single_ok=True),
            root=keys.string("root"),
            root_sha256=sha.lower() if sha else None,
            weight=weight,
            operator=keys.string("operator") or "",
        )
        if name != primary:
            if not repo.upstream:
                raise UsageError(f"{keys.key('upstream')}: missing")
            if not repo.root:
                raise UsageError(f"{keys.key('root')}: missing (each repository has a pinned root)")
        repositories[name] = repo
    if primary not in repositories:
        raise UsageError(f"{_at(where, 'primary')}: unknown repository {primary!r}")
    raw_mappings = data.get("mapping", [])
    if not isinstance(raw_mappings, list):
        raise UsageError(f"{_at(where, 'mapping')}: expected [[mapping]] tables")
    mappings: list[PolicyMapping] = []
    for index, table in enumerate(raw_mappings):
        keys = _Keys(
            _at(where, f"mapping[{index}]"),
            table,
            ["paths", "repositories", "min-score", "required", "terminating"],
        )
        min_score = keys.number("min-score")
        if min_score is None:
            raise UsageError(f"{keys.key('min-score')}: missing")
        mappings.append(
            PolicyMapping(
                paths=keys.strings("paths"),
                repositories=keys.strings("repositories"),
                min_score=min_score,
                required=keys.strings("required"),
                terminating=keys.boolean("terminating"),
            )
        )
    policy = TrustPolicy(primary, repositories, tuple(mappings))
    _check_mappings(where, policy)
    return policy


def _normal_url(url: str) -> str:
    return url.rstrip("/")


def parse_map_json(data: Any, *, primary_upstreams: Sequence[str], where: str = "") -> TrustPolicy:
    """A policy from a TAP 4 map file: equal weights, one operator per repository,
    the threshold as the minimum score. Each repository's pinned root is
    ``NAME/root.json`` next to the map file (TAP 4: the repository name is the
    directory of its metadata). The primary is the repository whose URLs include
    the first ``--upstream`` (or the map's optional ``primary`` key)."""
    top = _Keys(where, data, ["repositories", "mapping", "primary"])
    tables = data.get("repositories")
    if not isinstance(tables, dict) or not tables:
        raise UsageError(f"{_at(where, 'repositories')}: missing or empty")
    repositories: dict[str, PolicyRepository] = {}
    for name, urls in tables.items():
        key = _at(where, f"repositories.{name}")
        _check_name(key, name)
        if (
            isinstance(urls, str)
            or not isinstance(urls, list)
            or not urls
            or not all(isinstance(url, str) for url in urls)
        ):
            raise UsageError(f"{key}: expected a non-empty list of URLs")
        repositories[name] = PolicyRepository(
            name=name, upstream=tuple(urls), root=f"{name}/root.json"
        )
    primary = top.string("primary")
    if primary is None:
        if not primary_upstreams:
            raise UsageError("--upstream is needed to tell which repository is served")
        wanted = _normal_url(primary_upstreams[0])
        found = [
            name
            for name, repo in repositories.items()
            if wanted in {_normal_url(url) for url in repo.upstream}
        ]
        if len(found) != 1:
            how_many = "no" if not found else "more than one"
            raise UsageError(
                f"{_at(where, 'repositories')}: {how_many} repository "
                f"lists --upstream {primary_upstreams[0]}"
            )
        primary = found[0]
    elif primary not in repositories:
        raise UsageError(f"{_at(where, 'primary')}: unknown repository {primary!r}")
    raw_mappings = data.get("mapping", [])
    if not isinstance(raw_mappings, list):
        raise UsageError(f"{_at(where, 'mapping')}: expected a list")
    mappings: list[PolicyMapping] = []
    for index, table in enumerate(raw_mappings):
        keys = _Keys(
            _at(where, f"mapping[{index}]"),
            table,
            ["paths", "repositories", "terminating", "threshold"],
        )
        threshold = keys.number("threshold", 1.0)
        assert threshold is not None
        if threshold != int(threshold) or threshold < 1:
            raise UsageError(f"{keys.key('threshold')}: expected a whole number >= 1")
        mappings.append(
            PolicyMapping(
                paths=keys.strings("paths"),
                repositories=keys.strings("repositories"),
                min_score=threshold,
                terminating=keys.boolean("terminating"),
            )
        )
    policy = TrustPolicy(primary, repositories, tuple(mappings))
    _check_mappings(where, policy, score_key="threshold")
    return policy
