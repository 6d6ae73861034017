"""Fixtures and helpers for prune tests: an upstream that changes several times
(targets removed and replaced, delegated roles added, replaced and undelegated, a
new root), the listing a pruned mirror must hold computed from the upstream's own
metadata (independently of ``mirror.prune``), and a TUF client that walks a given
published state on a destination store."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest

from mirror.storage import Store
from mirror.trust import (
    TargetSearch,
    TrustedSet,
    check_target,
    compute_digests,
    hash_algorithms_for,
    metadata_filename,
    target_filenames,
)
from tests.sync.conftest import Env, make_repo
from tuf_mirror_testing.repo import Repository
from tuf_mirror_testing.server import serve_directory


@dataclass(frozen=True, slots=True)
class Listing:
    """What a state needs on a mirror: every key, and the target paths a client
    of that state can ask for."""

    keys: frozenset[str]
    paths: frozenset[str]


def state_listing(repo: Repository) -> Listing:
    """The repository's current published state plus every root version, from its
    metadata objects: snapshot, every role the snapshot lists, and one
    content-addressed name per listed hash of each target of every role reachable
    by delegation from ``targets``."""
    keys = {"metadata/timestamp.json", "metadata/root.json"}
    keys |= {f"metadata/{v}.root.json" for v in range(1, repo.version("root") + 1)}
    snapshot = repo.snapshot.signed
    keys.add(f"metadata/{snapshot.version}.snapshot.json")
    for name, meta in snapshot.meta.items():
        keys.add(f"metadata/{meta.version}.{quote(name.removesuffix('.json'), safe='')}.json")
    paths: set[str] = set()
    stack, seen = ["targets"], set()
    while stack:
        role = stack.pop()
        if role in seen:
            continue
        seen.add(role)
        signed = repo.roles[role].signed
        for path, target in signed.targets.items():
            paths.add(path)
            directory, _, base = path.rpartition("/")
            for digest in set(target.hashes.values()):
                keys.add(f"targets/{directory + '/' if directory else ''}{digest}.{base}")
        if signed.delegations is not None and signed.delegations.roles:
            stack.extend(signed.delegations.roles)
    return Listing(frozenset(keys), frozenset(paths))


def change(repo: Repository, step: int) -> None:
    """Upstream change number ``step`` (0-3), each removing or replacing something."""
    if step == 0:  # remove three targets, replace two
        for index in range(3):
            repo.remove_target(f"files/file-{index:04d}.txt")
        for index in (3, 4):
            repo.add_target(f"files/file-{index:04d}.txt", f"replaced {index}\n".encode() * 9)
    elif step == 1:  # a new delegated role with targets; new snapshot keys (root v2)
        repo.add_delegation("targets", "extra", paths=["extra/*"])
        # Searched before the hash bins, so that the walk can tell it lists extra/*.
        delegations = repo.targets.signed.delegations
        assert delegations is not None
        assert delegations.roles is not None
        delegations.roles = {"extra": delegations.roles.pop("extra"), **delegations.roles}
        for index in range(3):
            repo.add_target(f"extra/e-{index}.bin", f"extra {index}\n".encode(), role="extra")
        repo.rotate_keys("snapshot")  # older states verify only under root v1
    elif step == 2:  # replace the role's content; remove and replace bin targets
        repo.add_target("extra/e-0.bin", b"extra zero, second edition\n", role="extra")
        repo.remove_target("extra/e-1.bin", role="extra")
        repo.remove_target("files/file-0005.txt")
        repo.add_target("files/file-0006.txt", b"replaced six\n")
    elif step == 3:  # undelegate the role: its targets are referenced no more
        delegations = repo.targets.signed.delegations
        assert delegations is not None
        assert delegations.roles is not None
        del delegations.roles["extra"]
        repo.mark_changed("targets")
        repo.add_target("files/file-0007.txt", b"replaced seven\n")
    else:
        raise ValueError(step)


def changed_mirror(env: Env, steps: int = 4) -> list[Listing]:
    """Sync, then ``steps`` upstream changes each followed by a sync; returns the
    listing of each state published (oldest first)."""
    assert env.run() == 0
    listings = [state_listing(env.repo)]
    for step in range(steps):
        change(env.repo, step)
        env.publish()
        assert env.run() == 0
        listings.append(state_listing(env.repo))
    return listings


@pytest.fixture
def penv(tmp_path: Path) -> Iterator[Env]:
    """A small hash-bin upstream served on 127.0.0.1 and an empty destination."""
    repo = make_repo(bins=4, targets=16)
    upstream = tmp_path / "upstream"
    repo.publish(upstream)
    root_file = tmp_path / "root.json"
    root_file.write_bytes(repo.root_bytes(1))
    with serve_directory(upstream) as server:
        yield Env(repo, upstream, server, root_file, tmp_path / "dest")


def run_local(env: Env, command: str, *extra: str) -> int:
    """Run ``tuf-mirror prune`` or ``verify`` in-process on ``env``'s destination
    (commands that take no upstream); return the exit status."""
    from mirror.cli import main

    return main([command, "--root", str(env.root_file), "--dest", str(env.dest), *extra])


def files(root: Path) -> set[str]:
    """Every file under ``root`` except the mirror's own ``.tuf-mirror/``."""
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and not p.relative_to(root).as_posix().startswith(".tuf-mirror/")
    }


@dataclass(frozen=True, slots=True)
class ClientStart:
    """What a client holds when it starts an update: trusted roots, the timestamp
    and snapshot it verified, and the target paths it will fetch."""

    roots: tuple[bytes, ...]
    timestamp: bytes
    snapshot: bytes
    paths: frozenset[str]


def client_start(env: Env) -> ClientStart:
    """The state the destination publishes right now, as a client fetched it."""
    dest = env.dest / "metadata"
    roots = []
    version = 1
    while (dest / f"{version}.root.json").exists():
        roots.append((dest / f"{version}.root.json").read_bytes())
        version += 1
    timestamp = (dest / "timestamp.json").read_bytes()
    snap_version = env.repo.snapshot.signed.version
    snapshot = (dest / f"{snap_version}.snapshot.json").read_bytes()
    return ClientStart(tuple(roots), timestamp, snapshot, state_listing(env.repo).paths)


async def client_fetch_all(store: Store, start: ClientStart) -> dict[str, bytes]:
    """A TUF client that verified ``start``'s timestamp and snapshot fetches every
    target of that state from ``store``: top-level targets, each delegated role on
    the search path of each target, and the target under every content-addressed
    name, verifying everything. A missing file raises ``NotFoundInStoreError``."""
    trusted = TrustedSet(start.roots[0], now=datetime.now(UTC))
    for root in start.roots[1:]:
        trusted.update_root(root)
    trusted.update_timestamp(start.timestamp)
    trusted.update_snapshot(start.snapshot)

    async def role_bytes(role: str) -> bytes:
        meta = trusted.role_meta(role)
        assert meta is not None
        name = metadata_filename(role, meta.version)
        return await store.get(f"metadata/{name}", max_length=1 << 24)

    trusted.update_targets(await role_bytes("targets"))
    fetched: dict[str, bytes] = {}
    for path in sorted(start.paths):
        search = TargetSearch(trusted, path)
        while (step := search.next_role()) is not None:
            search.feed(await role_bytes(step.role))
        assert search.result is not None, path
        target = search.result.target
        for name in target_filenames(path, dict(target.hashes), consistent_snapshot=True):
            data = await store.get(f"targets/{name}", max_length=target.length)
            check_target(target, len(data), compute_digests(data, hash_algorithms_for(target)))
            fetched[path] = data
    return fetched


def union(listings: Iterable[Listing]) -> frozenset[str]:
    out: set[str] = set()
    for listing in listings:
        out |= listing.keys
    return frozenset(out)
