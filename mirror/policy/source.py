"""Reading a ``--policy`` file (TOML, or a TAP 4 ``map.json``) and reconciling its
primary repository with ``--upstream`` / ``--root``.

Every problem is a ``UsageError`` (exit 2) naming the file and the key. Relative
root paths are relative to the policy file's directory. What this module does not
do: fetch or verify anything (``secondary``, ``gate``).
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mirror.errors import UsageError
from mirror.policy.model import PolicyRepository, TrustPolicy, parse_map_json, parse_policy

__all__ = ["load_policy", "primary_settings", "repository_root"]


def load_policy(path: str | Path, *, primary_upstreams: Sequence[str] = ()) -> TrustPolicy:
    """Read and validate the policy file at ``path``."""
    return load_policy_digest(path, primary_upstreams=primary_upstreams)[0]


def load_policy_digest(
    path: str | Path, *, primary_upstreams: Sequence[str] = ()
) -> tuple[TrustPolicy, str]:
    """``load_policy`` and the sha256 of the file's bytes."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read --policy {path}: {exc.strerror}") from exc
    try:
        return _parse(path, raw, primary_upstreams)
    except UsageError as exc:
        raise UsageError(f"--policy {path}: {exc}") from exc


def _parse(path: Path, raw: bytes, primary_upstreams: Sequence[str]) -> tuple[TrustPolicy, str]:
    if path.suffix.lower() == ".json":
        try:
            data: Any = json.loads(raw)
        except ValueError as exc:
            raise UsageError(f"not valid JSON: {exc}") from exc
        policy = parse_map_json(data, primary_upstreams=primary_upstreams)
        return policy, hashlib.sha256(raw).hexdigest()
    try:
        table = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"not valid TOML: {exc}") from exc
    return parse_policy(table), hashlib.sha256(raw).hexdigest()


def repository_root(policy_file: str | Path, repo: PolicyRepository) -> Path:
    """The pinned root file of ``repo`` (relative to the policy file's directory)."""
    if repo.root is None:
        raise UsageError(f"--policy: repositories.{repo.name}.root: missing")
    root = Path(repo.root)
    return root if root.is_absolute() else Path(policy_file).parent / root


def read_root(policy_file: str | Path, repo: PolicyRepository) -> bytes:
    """The pinned root bytes of ``repo``, checked against its ``root-sha256``."""
    path = repository_root(policy_file, repo)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(
            f"--policy: repositories.{repo.name}.root: cannot read {path}: {exc.strerror}"
        ) from exc
    if repo.root_sha256 is not None and hashlib.sha256(data).hexdigest() != repo.root_sha256:
        raise UsageError(
            f"--policy: repositories.{repo.name}.root-sha256: {path} has another sha256"
        )
    return data


def _same_urls(left: Sequence[str], right: Sequence[str]) -> bool:
    return {url.rstrip("/") for url in left} == {url.rstrip("/") for url in right}


def primary_settings(values: dict[str, Any]) -> dict[str, Any]:
    """Fill ``root`` / ``root_sha256`` / ``upstream`` of the resolved option values
    from the policy's primary repository, or check that they agree with it (else
    ``UsageError``). Also validates the whole policy early, every repository's root
    file included, before any network or destination I/O."""
    policy_file = str(values["policy"])
    policy = load_policy(policy_file, primary_upstreams=tuple(values.get("upstream") or ()))
    primary = policy.repositories[policy.primary]
    for repo in policy.secondaries:
        read_root(policy_file, repo)
    out = dict(values)
    if primary.upstream:
        if out.get("upstream") and not _same_urls(out["upstream"], primary.upstream):
            raise UsageError(
                f"--upstream {' '.join(out['upstream'])} disagrees with the policy's "
                f"repositories.{primary.name}.upstream {' '.join(primary.upstream)}"
            )
        out["upstream"] = tuple(primary.upstream)
    if primary.root is not None:
        pinned = read_root(policy_file, primary)
        if out.get("root"):
            try:
                given = Path(out["root"]).read_bytes()
            except OSError as exc:
                raise UsageError(f"cannot read --root {out['root']}: {exc.strerror}") from exc
            if given != pinned:
                raise UsageError(
                    f"--root {out['root']} disagrees with the policy's "
                    f"repositories.{primary.name}.root"
                )
        else:
            out["root"] = str(repository_root(policy_file, primary))
        if primary.root_sha256 is not None:
            if out.get("root_sha256") and out["root_sha256"] != primary.root_sha256:
                raise UsageError(
                    f"--root-sha256 disagrees with the policy's "
                    f"repositories.{primary.name}.root-sha256"
                )
            out["root_sha256"] = primary.root_sha256
    return out
