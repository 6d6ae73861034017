"""Mirroring delegation graphs beyond hash bins: a target is copied only when the
role listing it is the one a client's delegation search would use, also when that
can only be decided after the whole graph was walked."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from mirror.errors import ExitStatus
from tests.sync.conftest import Env, tree
from tuf_mirror_testing.repo import Repository
from tuf_mirror_testing.server import serve_directory


@pytest.fixture
def graph(tmp_path: Path) -> Iterator[Env]:
    """targets -> A (files/*), B (files/*); A -> C (files/*). B lists files/x."""
    repo = Repository()
    repo.add_delegation("targets", "A", paths=["files/*"])
    repo.add_delegation("targets", "B", paths=["files/*"])
    repo.add_delegation("A", "C", paths=["files/*"])
    repo.add_target("files/x", b"from B", role="B")
    repo.add_target("files/a", b"from A", role="A")
    upstream = tmp_path / "upstream"
    repo.publish(upstream)
    root_file = tmp_path / "root.json"
    root_file.write_bytes(repo.root_bytes(1))
    with serve_directory(upstream) as server:
        yield Env(repo, upstream, server, root_file, tmp_path / "dest")


def names(env: Env) -> set[str]:
    return {k for k in tree(env.dest) if k.startswith("targets/")}


def name_of(path: str, data: bytes) -> str:
    directory, _, base = path.rpartition("/")
    return f"targets/{directory}/{hashlib.sha256(data).hexdigest()}.{base}"


def test_listing_decided_after_the_walk_is_mirrored(graph: Env) -> None:
    """B's target is authorised once C (searched before B) is known not to list it."""
    assert graph.run("sync", "--transfers", "1") == ExitStatus.OK
    assert names(graph) == {name_of("files/x", b"from B"), name_of("files/a", b"from A")}
    assert tree(graph.dest) == tree(graph.upstream)


def test_shadowed_listing_is_not_mirrored(graph: Env) -> None:
    """When C (searched before B) lists the same path, B's version is not mirrored:
    clients would never use it."""
    graph.repo.add_target("files/x", b"from C", role="C")
    graph.publish()
    assert graph.run() == ExitStatus.OK
    assert name_of("files/x", b"from C") in names(graph)
    assert name_of("files/x", b"from B") not in names(graph)


def test_target_outside_the_delegation_is_not_mirrored(graph: Env) -> None:
    """A role listing a path its delegation does not cover: ignored, with a warning."""
    graph.repo.add_target("elsewhere/y", b"outside", role="B")
    graph.publish()
    assert graph.run() == ExitStatus.OK
    assert name_of("elsewhere/y", b"outside") not in names(graph)
    assert name_of("files/x", b"from B") in names(graph)


def test_expired_delegated_role_is_mirrored_with_a_warning(graph: Env, tmp_path: Path) -> None:
    """A delegated role past its expiry is verified in every other respect, mirrored
    byte for byte and reported; expired top-level metadata would stop the run."""
    import json
    from datetime import UTC, datetime, timedelta

    assert graph.run() == ExitStatus.OK
    graph.repo.set_expiry("B", datetime.now(UTC) - timedelta(days=30))
    graph.publish()
    report = tmp_path / "report.json"
    assert graph.run("sync", "--report", str(report)) == ExitStatus.OK
    assert tree(graph.dest) == tree(graph.upstream)
    assert json.loads(report.read_text())["expired_delegated_roles"] == ["B"]
