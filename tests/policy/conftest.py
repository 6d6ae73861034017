"""Fixtures for trust-policy tests: several generated repositories, each with its
own keys, served side by side from one HTTP server on 127.0.0.1
(``URL/<name>/metadata/...``), pinned root files, a policy file and a destination."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mirror.cli import main
from tuf_mirror_testing.repo import Repository
from tuf_mirror_testing.server import RepoServer, serve_directory

#: the targets of the primary repository ("pypi") in every test
AGREED = "files/agreed.txt"
CONTESTED = "files/contested.txt"
CONTENT = {AGREED: b"agreed by everyone\n" * 10, CONTESTED: b"listed by some\n" * 10}

WEIGHTS_POLICY = """
primary = "pypi"
[repositories.pypi]
weight = 0.5
[repositories.curator]
upstream = ["{url}/curator"]
root = "curator-root.json"
weight = 1.0
[repositories.team-a]
upstream = ["{url}/team-a"]
root = "team-a-root.json"
weight = 2.0
operator = "{operator_a}"
[repositories.team-b]
upstream = ["{url}/team-b"]
root = "team-b-root.json"
weight = 2.0
operator = "{operator_b}"
[[mapping]]
paths = ["*"]
repositories = ["pypi", "curator", "team-a", "team-b"]
min-score = {min_score}
"""


@dataclass
class PolicyEnv:
    """Repositories by name ("pypi" is the primary), their upstream directories
    under one server, pinned roots and policy files in ``conf``, a destination."""

    base: Path
    server: RepoServer
    conf: Path
    dest: Path
    repos: dict[str, Repository] = field(default_factory=dict)
    policy: Path | None = None

    def add_repo(self, name: str, targets: dict[str, bytes]) -> Repository:
        """A new repository with its own keys listing ``targets``, published."""
        repo = Repository()
        if name == "pypi":
            repo.add_hash_bins(4, succinct=False)
        for path, data in targets.items():
            repo.add_target(path, data)
        self.repos[name] = repo
        repo.publish(self.base / name)
        (self.conf / f"{name}-root.json").write_bytes(repo.root_bytes(1))
        return repo

    def publish(self, name: str) -> None:
        self.repos[name].publish(self.base / name)

    def url(self, name: str) -> str:
        return f"{self.server.url}/{name}"

    def write_policy(self, text: str, *, filename: str = "policy.toml") -> Path:
        self.policy = self.conf / filename
        self.policy.write_text(text.replace("{url}", self.server.url))
        return self.policy

    def args(self, command: str = "sync", *extra: str) -> list[str]:
        assert self.policy is not None
        return [
            command,
            "--root",
            str(self.conf / "pypi-root.json"),
            "--upstream",
            self.url("pypi"),
            "--dest",
            str(self.dest),
            "--policy",
            str(self.policy),
            "--report",
            str(self.conf / "report.json"),
            "--retries",
            "1",
            "--timeout",
            "5",
            *extra,
        ]

    def run(self, command: str = "sync", *extra: str) -> int:
        """Run ``tuf-mirror COMMAND`` in-process; return its exit status."""
        self.server.wait_idle()
        status = main(self.args(command, *extra))
        self.server.wait_idle()
        return status

    def report(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.conf / "report.json").read_text())
        return data

    def published(self, path: str) -> bool:
        """Whether the destination holds the primary's target ``path``."""
        directory, _, name = path.rpartition("/")
        folder = self.dest / "targets" / directory
        return folder.is_dir() and any(f.name.endswith("." + name) for f in folder.iterdir())

    def held_back(self) -> dict[str, dict[str, Any]]:
        return {item["path"]: item for item in self.report()["policy"]["held_back"]}


@pytest.fixture
def penv(tmp_path: Path) -> Iterator[PolicyEnv]:
    base = tmp_path / "upstreams"
    base.mkdir()
    conf = tmp_path / "conf"
    conf.mkdir()
    with serve_directory(base) as server:
        yield PolicyEnv(base, server, conf, tmp_path / "dest")


def weights_env(
    penv: PolicyEnv,
    *,
    team_b: dict[str, bytes] | None = None,
    operator_a: str = "alpha",
    operator_b: str = "beta",
    min_score: float = 5.5,
) -> PolicyEnv:
    """The issue's weights example: pypi 0.5, curator 1.0, team-a 2.0, team-b 2.0,
    one mapping for every path with ``min_score``. Everybody vouches for AGREED;
    CONTESTED is vouched for by all but team-b (unless ``team_b`` lists it)."""
    penv.add_repo("pypi", CONTENT)
    penv.add_repo("curator", CONTENT)
    penv.add_repo("team-a", CONTENT)
    penv.add_repo("team-b", team_b if team_b is not None else {AGREED: CONTENT[AGREED]})
    penv.write_policy(
        WEIGHTS_POLICY.replace("{operator_a}", operator_a)
        .replace("{operator_b}", operator_b)
        .replace("{min_score}", str(min_score))
    )
    return penv
