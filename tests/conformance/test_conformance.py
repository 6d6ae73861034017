"""The conformance-suite adapter, driven as the suite drives it: a new process per
step, against a real loopback HTTP server serving generated repositories under a
percent-encoded test-id prefix, with METADATA_DIR, TARGET_DIR and the server's
request log as the observable results.

Most tests seed METADATA_DIR with the bytes a completed ``init``/``refresh`` leaves
there (``test_init_*`` and ``test_first_refresh_*`` pin those down) to keep the number
of processes small.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mirror.conformance import main, parse_invocation
from mirror.errors import UsageError
from tuf_mirror_testing.repo import Repository, generate_signer, tamper_published
from tuf_mirror_testing.server import RepoServer, serve_directory

pytestmark = pytest.mark.slow

# Shaped like the suite's test ids: %5B, %5D, %20 and even %2F in the base URL.
TEST_ID = "test_x%5Brsa%2Frsassa-pss%20a%5D"
PAST = datetime.now(UTC) - timedelta(days=1)
TARGET = "path/to/a/target_file.txt"
TOP_LEVEL_REQUESTS = [
    "metadata/2.root.json",
    "metadata/timestamp.json",
    "metadata/1.snapshot.json",
    "metadata/1.targets.json",
]


@dataclass(frozen=True, slots=True)
class Result:
    """One adapter process: exit status, requests (relative to the test id), stderr."""

    status: int
    requests: list[str]
    output: str


@dataclass(slots=True)
class Harness:
    """A test's directories, the server and the adapter command lines."""

    tmp: Path
    server: RepoServer
    upstream: Path
    metadata_dir: Path
    target_dir: Path

    @property
    def metadata_url(self) -> str:
        return f"{self.server.url}/{TEST_ID}/metadata/"

    @property
    def targets_url(self) -> str:
        return f"{self.server.url}/{TEST_ID}/targets/"

    def run(self, *args: str) -> Result:
        self.server.clear_log()
        process = subprocess.run(
            [sys.executable, "-m", "mirror.conformance", *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.tmp,
            check=False,
        )
        prefix = f"/{TEST_ID}/"
        requests = [path.removeprefix(prefix) for path in self.server.paths()]
        assert all(r.method == "GET" for r in self.server.requests)
        # Nothing but trusted metadata in METADATA_DIR, nothing hidden in TARGET_DIR.
        assert all(p.name.endswith(".json") for p in self.metadata_dir.iterdir()), list(
            self.metadata_dir.iterdir()
        )
        assert not [p for p in self.target_dir.rglob("*") if p.name.startswith(".")]
        return Result(process.returncode, requests, process.stderr)

    def init(self, root: Path) -> Result:
        return self.run("--metadata-dir", str(self.metadata_dir), "init", str(root))

    def refresh(self) -> Result:
        return self.run(
            "--metadata-url", self.metadata_url, "--metadata-dir", str(self.metadata_dir), "refresh"
        )

    def download(self, *names: str) -> Result:
        args = ["--metadata-url", self.metadata_url, "--metadata-dir", str(self.metadata_dir)]
        for name in names:
            args += ["--target-name", name]
        args += ["--target-dir", str(self.target_dir), "--target-base-url", self.targets_url]
        return self.run(*args, "download")

    def publish(self, repo: Repository) -> None:
        repo.publish(self.upstream)

    def seed(self, repo: Repository, **versions: int) -> None:
        """Write roles' committed bytes to METADATA_DIR as a finished refresh would
        (``root=1, timestamp=2``...)."""
        for role, version in versions.items():
            (self.metadata_dir / f"{role}.json").write_bytes(repo.metadata_bytes(role, version))

    def seed_all(self, repo: Repository) -> None:
        """METADATA_DIR as after a successful refresh of the current state."""
        for role in ("root", "timestamp", "snapshot", "targets"):
            (self.metadata_dir / f"{role}.json").write_bytes(repo.metadata_bytes(role))

    def state(self) -> dict[str, int]:
        """``{file name: version}`` of every ``*.json`` in METADATA_DIR."""
        return {
            path.name: json.loads(path.read_bytes())["signed"]["version"]
            for path in self.metadata_dir.glob("*.json")
        }

    def stored(self, name: str) -> bytes:
        return (self.metadata_dir / name).read_bytes()

    def targets(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in self.target_dir.iterdir()}


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    served = tmp_path / "served"
    # The server finds a file by the decoded path or, failing that, by the raw path
    # as a literal name: a directory named like the encoded test id serves both the
    # base URL and the percent-encoded role file names verbatim.
    upstream = served / TEST_ID
    upstream.mkdir(parents=True)
    metadata_dir = tmp_path / "client" / "metadata"
    target_dir = tmp_path / "client" / "targets"
    metadata_dir.mkdir(parents=True)
    target_dir.mkdir()
    with serve_directory(served) as server:
        yield Harness(tmp_path, server, upstream, metadata_dir, target_dir)


def _repo(*, consistent_snapshot: bool = True, expires: datetime | None = None) -> Repository:
    repo = Repository(consistent_snapshot=consistent_snapshot, expires=expires)
    repo.add_target(TARGET, b"target file content\n")
    return repo


def _target_request(repo: Repository, path: str, role: str = "targets") -> str:
    target = repo.targets_role(role).signed.targets[path]
    directory, _, basename = path.rpartition("/")
    prefix = f"{directory}/" if directory else ""
    return f"targets/{prefix}{target.hashes['sha256']}.{basename}"


# -- init -------------------------------------------------------------------------------


def test_init_copies_root_bytes_without_network(harness: Harness) -> None:
    """init stores the exact bytes of the trusted root as root.json and makes no
    request."""
    repo = _repo()
    harness.publish(repo)
    root_file = harness.tmp / "trusted root.json"
    root_file.write_bytes(repo.root_bytes(1) + b"\n")
    result = harness.init(root_file)
    assert result.status == 0, result.output
    assert result.requests == []
    assert [p.name for p in harness.metadata_dir.iterdir()] == ["root.json"]
    assert harness.stored("root.json") == repo.root_bytes(1) + b"\n"


def test_init_refuses_wrongly_signed_root_and_refresh_makes_no_request(
    harness: Harness,
) -> None:
    """A root not signed by its own root keys: init exits 1 storing nothing, and the
    following refresh exits 1 without any request."""
    repo = _repo()
    harness.publish(repo)
    root_file = harness.tmp / "root.json"
    root_file.write_bytes(repo.forge("root", signers=[generate_signer()]))
    assert harness.init(root_file).status == 1
    assert list(harness.metadata_dir.iterdir()) == []
    result = harness.refresh()
    assert result.status == 1
    assert result.requests == []


def test_refresh_with_invalid_local_root_makes_no_request(harness: Harness) -> None:
    """An unsigned root.json already in METADATA_DIR is detected before any request."""
    repo = _repo()
    harness.publish(repo)
    (harness.metadata_dir / "root.json").write_bytes(repo.forge("root", signers=[]))
    result = harness.refresh()
    assert result.status == 1
    assert result.requests == []


# -- refresh ----------------------------------------------------------------------------


def test_first_refresh_requests_and_stores_exact_bytes(harness: Harness) -> None:
    """The first refresh after init makes exactly the four top-level requests and
    stores each role's exact bytes (a timestamp with a trailing space included)."""
    repo = _repo()
    harness.publish(repo)
    timestamp = tamper_published(harness.upstream, "metadata/timestamp.json", lambda b: b + b" ")
    harness.seed(repo, root=1)
    result = harness.refresh()
    assert result.status == 0, result.output
    assert result.requests == TOP_LEVEL_REQUESTS
    assert harness.stored("timestamp.json") == timestamp
    for role in ("root", "snapshot", "targets"):
        assert harness.stored(f"{role}.json") == repo.metadata_bytes(role, 1)
    assert harness.state() == {
        "root.json": 1,
        "timestamp.json": 1,
        "snapshot.json": 1,
        "targets.json": 1,
    }


def test_refresh_with_nothing_new_fetches_next_root_and_timestamp_only(
    harness: Harness,
) -> None:
    """When the served timestamp has the trusted version, the local timestamp is kept
    (even if the served bytes differ) and snapshot/targets come from METADATA_DIR."""
    repo = _repo()
    harness.publish(repo)
    harness.seed_all(repo)
    tamper_published(harness.upstream, "metadata/timestamp.json", lambda b: b + b"  ")
    result = harness.refresh()
    assert result.status == 0, result.output
    assert result.requests == ["metadata/2.root.json", "metadata/timestamp.json"]
    assert harness.stored("timestamp.json") == repo.metadata_bytes("timestamp", 1)


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("root", {"root.json": 1}),
        ("timestamp", {"root.json": 2}),
        ("snapshot", {"root.json": 2, "timestamp.json": 2}),
        ("targets", {"root.json": 2, "timestamp.json": 2, "snapshot.json": 2}),
    ],
)
def test_refresh_stops_at_a_wrongly_signed_role(
    harness: Harness, role: str, expected: dict[str, int]
) -> None:
    """A role signed by a wrong key fails the refresh; METADATA_DIR shows exactly the
    roles verified before it."""
    repo = _repo()
    harness.publish(repo)
    repo.bump_root()
    repo.mark_changed("targets")
    repo.sign_next_commit_with(role, [generate_signer()])
    harness.publish(repo)
    harness.seed(repo, root=1)
    result = harness.refresh()
    assert result.status == 1
    assert harness.state() == expected
    assert harness.stored("root.json") == repo.root_bytes(expected["root.json"])


def test_expired_new_root_is_stored_then_refresh_fails(harness: Harness) -> None:
    """A valid but expired new root is stored, then the freeze check fails before
    timestamp is requested."""
    repo = _repo()
    harness.publish(repo)
    repo.set_expiry("root", PAST)
    harness.publish(repo)
    harness.seed(repo, root=1)
    result = harness.refresh()
    assert result.status == 1
    assert result.requests == ["metadata/2.root.json", "metadata/3.root.json"]
    assert harness.state() == {"root.json": 2}
    assert harness.stored("root.json") == repo.root_bytes(2)


def test_expired_new_timestamp_is_not_stored(harness: Harness) -> None:
    """An expired new timestamp fails the refresh and the trusted one stays."""
    repo = _repo()
    harness.publish(repo)
    harness.seed_all(repo)
    repo.set_expiry("timestamp", PAST)
    harness.publish(repo)
    result = harness.refresh()
    assert result.status == 1
    assert result.requests == ["metadata/2.root.json", "metadata/timestamp.json"]
    assert harness.stored("timestamp.json") == repo.metadata_bytes("timestamp", 1)


def test_expired_local_metadata_does_not_block_refresh(harness: Harness) -> None:
    """Expired local root and timestamp are only starting points: a newer valid root
    and timestamp on the server make the refresh succeed."""
    repo = _repo(expires=PAST)
    harness.publish(repo)
    for role in ("root", "timestamp", "snapshot", "targets"):
        repo.set_expiry(role, datetime.now(UTC) + timedelta(days=30))
    harness.publish(repo)
    harness.seed(repo, root=1, timestamp=1)
    result = harness.refresh()
    assert result.status == 0, result.output
    assert result.requests == [
        "metadata/2.root.json",
        "metadata/3.root.json",
        "metadata/timestamp.json",
        "metadata/2.snapshot.json",
        "metadata/2.targets.json",
    ]
    assert harness.state() == {
        "root.json": 2,
        "timestamp.json": 2,
        "snapshot.json": 2,
        "targets.json": 2,
    }


def test_root_rotation_through_intermediate_roots(harness: Harness) -> None:
    """Each new root is fetched in turn (N+1 until 404), verified against the previous
    one's keys and threshold; the last is stored."""
    repo = _repo()
    harness.publish(repo)
    repo.rotate_keys("root")
    harness.publish(repo)
    repo.rotate_keys("root", key_count=3, threshold=2)
    repo.rotate_keys("timestamp")
    harness.publish(repo)
    harness.seed(repo, root=1)
    result = harness.refresh()
    assert result.status == 0, result.output
    assert result.requests[:4] == [
        "metadata/2.root.json",
        "metadata/3.root.json",
        "metadata/4.root.json",
        "metadata/timestamp.json",
    ]
    assert harness.stored("root.json") == repo.root_bytes(3)
    assert harness.stored("timestamp.json") == repo.metadata_bytes("timestamp")


def test_root_rotation_stops_at_root_not_signed_by_previous_keys(harness: Harness) -> None:
    """A root signed only by its new keys is refused; the last good root stays."""
    repo = _repo()
    harness.publish(repo)
    repo.rotate_keys("root")
    harness.publish(repo)
    new_keys = repo.rotate_keys("root")
    repo.sign_next_commit_with("root", new_keys)
    harness.publish(repo)
    harness.seed(repo, root=1)
    result = harness.refresh()
    assert result.status == 1
    assert result.requests == ["metadata/2.root.json", "metadata/3.root.json"]
    assert harness.state() == {"root.json": 2}
    assert harness.stored("root.json") == repo.root_bytes(2)


def test_fast_forward_recovery_after_timestamp_key_rotation(harness: Harness) -> None:
    """A local timestamp that no longer verifies under the new root's keys is not a
    rollback reference: the repository may restart timestamp at version 1."""
    repo = _repo()
    harness.publish(repo)
    for _ in range(2):
        repo.mark_changed("timestamp")
        harness.publish(repo)
    harness.seed_all(repo)
    assert harness.state()["timestamp.json"] == 3
    repo.rotate_keys("timestamp")
    repo.timestamp.signed.version = 0  # the next commit publishes version 1
    harness.publish(repo)
    result = harness.refresh()
    assert result.status == 0, result.output
    assert harness.state()["timestamp.json"] == 1
    assert harness.stored("timestamp.json") == repo.metadata_bytes("timestamp", 1)


def test_timestamp_rollback_is_refused(harness: Harness) -> None:
    """A served timestamp older than the trusted one fails the refresh."""
    repo = _repo()
    harness.publish(repo)
    repo.mark_changed("timestamp")
    harness.publish(repo)
    harness.seed_all(repo)
    tamper_published(
        harness.upstream, "metadata/timestamp.json", lambda _: repo.metadata_bytes("timestamp", 1)
    )
    result = harness.refresh()
    assert result.status == 1
    assert result.requests == ["metadata/2.root.json", "metadata/timestamp.json"]
    assert harness.stored("timestamp.json") == repo.metadata_bytes("timestamp", 2)


@pytest.mark.parametrize(
    ("file", "damage", "expected"),
    [
        ("2.snapshot.json", "missing", {"timestamp.json": 2, "snapshot.json": 1}),
        ("2.snapshot.json", "changed", {"timestamp.json": 2, "snapshot.json": 1}),
        ("2.targets.json", "missing", {"timestamp.json": 2, "snapshot.json": 2}),
    ],
)
def test_new_timestamp_is_kept_when_a_later_role_fails(
    harness: Harness, file: str, damage: str, expected: dict[str, int]
) -> None:
    """Each role is stored as soon as it verifies: a missing or altered snapshot
    (resp. targets) leaves the new timestamp (and snapshot) stored and the old
    snapshot and targets in place."""
    repo = _repo()
    harness.publish(repo)
    harness.seed_all(repo)
    repo.add_target("another.txt", b"another")
    harness.publish(repo)
    path = harness.upstream / "metadata" / file
    if damage == "missing":
        path.unlink()
    else:
        tamper_published(harness.upstream, f"metadata/{file}", lambda b: b + b" ")
    result = harness.refresh()
    assert result.status == 1
    assert result.requests[-1] == f"metadata/{file}"
    assert harness.state() == {"root.json": 1, "targets.json": 1, **expected}


def test_without_consistent_snapshot_unversioned_names_are_requested(
    harness: Harness,
) -> None:
    """Without consistent snapshots, snapshot, targets and target files are requested
    by their plain names (root stays versioned)."""
    repo = _repo(consistent_snapshot=False)
    harness.publish(repo)
    harness.seed(repo, root=1)
    result = harness.download(TARGET)
    assert result.status == 0, result.output
    assert result.requests == [
        "metadata/2.root.json",
        "metadata/timestamp.json",
        "metadata/snapshot.json",
        "metadata/targets.json",
        f"targets/{TARGET}",
    ]
    assert harness.targets() == {"path%2Fto%2Fa%2Ftarget_file.txt": b"target file content\n"}


# -- download ---------------------------------------------------------------------------


def test_download_after_refresh_then_cached(harness: Harness) -> None:
    """A download after a refresh requests only the next root and timestamp before
    the target (by hash-prefixed name); a mismatching file in TARGET_DIR is not a
    cache hit and is replaced; a matching one means no second request."""
    repo = _repo()
    harness.publish(repo)
    harness.seed_all(repo)
    (harness.target_dir / "path%2Fto%2Fa%2Ftarget_file.txt").write_bytes(b"stale content!!\n")
    first = harness.download(TARGET)
    assert first.status == 0, first.output
    assert first.requests == [
        "metadata/2.root.json",
        "metadata/timestamp.json",
        _target_request(repo, TARGET),
    ]
    assert harness.targets() == {"path%2Fto%2Fa%2Ftarget_file.txt": b"target file content\n"}
    second = harness.download(TARGET)
    assert second.status == 0, second.output
    assert second.requests == ["metadata/2.root.json", "metadata/timestamp.json"]
    assert harness.targets() == {"path%2Fto%2Fa%2Ftarget_file.txt": b"target file content\n"}


def test_download_stops_at_a_target_no_role_lists(harness: Harness) -> None:
    """Targets are processed in argument order; a name no role lists (here one with a
    space) fails the download and later targets are not fetched."""
    repo = _repo()
    repo.add_target("later.txt", b"later")
    harness.publish(repo)
    harness.seed(repo, root=1)
    result = harness.download(TARGET, "nonexistent artifact", "later.txt")
    assert result.status == 1
    assert result.requests == [*TOP_LEVEL_REQUESTS, _target_request(repo, TARGET)]
    assert list(harness.targets()) == ["path%2Fto%2Fa%2Ftarget_file.txt"]


def test_target_with_wrong_hash_is_not_stored(harness: Harness) -> None:
    """Served content that does not match the signed hashes (same length) fails the
    download and leaves nothing in TARGET_DIR."""
    repo = _repo()
    harness.publish(repo)
    harness.seed_all(repo)
    relpath = _target_request(repo, TARGET)
    tamper_published(harness.upstream, relpath, lambda b: b.upper())
    result = harness.download(TARGET)
    assert result.status == 1
    assert result.requests[-1] == relpath
    assert harness.targets() == {}


def test_malicious_update_never_replaces_a_good_cached_target(harness: Harness) -> None:
    """A good cached target stays, byte for byte, when its new version's served
    content does not verify."""
    repo = _repo()
    harness.publish(repo)
    cached = harness.target_dir / "path%2Fto%2Fa%2Ftarget_file.txt"
    cached.write_bytes(b"target file content\n")
    repo.add_target(TARGET, b"new content\n")
    harness.publish(repo)
    harness.seed_all(repo)
    tamper_published(harness.upstream, _target_request(repo, TARGET), lambda b: b"x" * len(b))
    result = harness.download(TARGET)
    assert result.status == 1
    assert harness.targets() == {cached.name: b"target file content\n"}


def _delegating_repo() -> Repository:
    """targets -> A, X (other/*), B; A -> C, D (e/*); C -> A (a cycle). The target
    d/file is listed by B only: the search visits targets, A, C, B."""
    repo = _repo()
    repo.add_delegation("targets", "A", paths=["d/*"])
    repo.add_delegation("targets", "X", paths=["other/*"])
    repo.add_delegation("targets", "B", paths=["d/*"])
    repo.add_delegation("A", "C", paths=["d/*"])
    repo.add_delegation("A", "D", paths=["e/*"])
    repo.add_delegation("C", "A", paths=["d/*"])
    repo.add_target("d/file", b"delegated content", role="B")
    return repo


def test_delegated_roles_are_fetched_in_search_order(harness: Harness) -> None:
    """Delegated roles are requested after the four top-level requests, one request
    per visited role in pre-order (cycles visited once, non-matching paths skipped),
    and stored as <role>.json."""
    repo = _delegating_repo()
    harness.publish(repo)
    harness.seed(repo, root=1)
    result = harness.download("d/file")
    assert result.status == 0, result.output
    assert result.requests == [
        *TOP_LEVEL_REQUESTS,
        "metadata/1.A.json",
        "metadata/1.C.json",
        "metadata/1.B.json",
        _target_request(repo, "d/file", role="B"),
    ]
    assert harness.state() == {
        "root.json": 1,
        "timestamp.json": 1,
        "snapshot.json": 1,
        "targets.json": 1,
        "A.json": 1,
        "B.json": 1,
        "C.json": 1,
    }
    assert harness.stored("B.json") == repo.metadata_bytes("B", 1)
    assert harness.targets() == {"d%2Ffile": b"delegated content"}


def test_terminating_delegation_ends_the_search(harness: Harness) -> None:
    """After a matching terminating delegation whose subtree lacks the target, no
    further role is searched: the download fails."""
    repo = _repo()
    repo.add_delegation("targets", "A", paths=["d/*"], terminating=True)
    repo.add_delegation("targets", "B", paths=["d/*"])
    repo.add_target("d/file", b"delegated content", role="B")
    harness.publish(repo)
    harness.seed_all(repo)
    result = harness.download("d/file")
    assert result.status == 1
    assert result.requests == [
        "metadata/2.root.json",
        "metadata/timestamp.json",
        "metadata/1.A.json",
    ]
    assert harness.targets() == {}


def test_expired_delegated_role_fails_in_client_mode(harness: Harness) -> None:
    """An expired delegated role fails the lookup and is not stored."""
    repo = _repo()
    repo.add_delegation("targets", "delegated", paths=["d/*"])
    repo.add_target("d/file", b"delegated content", role="delegated")
    repo.set_expiry("delegated", PAST)
    harness.publish(repo)
    harness.seed_all(repo)
    result = harness.download("d/file")
    assert result.status == 1
    assert result.requests[-1] == "metadata/1.delegated.json"
    assert "delegated.json" not in harness.state()
    assert harness.targets() == {}


def test_role_names_are_percent_encoded_in_requests_and_files(harness: Harness) -> None:
    """Role names with '/', '..', '?' and '#' are requested percent-encoded and stored
    as one file each directly in METADATA_DIR; the next download reuses them."""
    repo = _repo()
    names = ["../x", "a/b", "?", "#"]
    for name in names:
        repo.add_delegation("targets", name, paths=["e/*"])
    repo.add_target("e/file", b"encoded", role="#")
    harness.publish(repo)
    harness.seed_all(repo)
    first = harness.download("e/file")
    assert first.status == 0, first.output
    assert first.requests == [
        "metadata/2.root.json",
        "metadata/timestamp.json",
        "metadata/1...%2Fx.json",
        "metadata/1.a%2Fb.json",
        "metadata/1.%3F.json",
        "metadata/1.%23.json",
        _target_request(repo, "e/file", role="#"),
    ]
    stored = {"..%2Fx.json", "a%2Fb.json", "%3F.json", "%23.json"}
    assert stored <= set(harness.state())
    assert all((harness.metadata_dir / name).is_file() for name in stored)
    assert sorted(p.name for p in harness.tmp.joinpath("client").iterdir()) == [
        "metadata",
        "targets",
    ]
    second = harness.download("e/file")
    assert second.status == 0, second.output
    assert second.requests == ["metadata/2.root.json", "metadata/timestamp.json"]


# -- command line -----------------------------------------------------------------------


def test_argument_errors_exit_with_status_1(harness: Harness) -> None:
    """An argument error is exit status 1 (not argparse's 2), also as a process."""
    assert harness.run("--bogus", "refresh").status == 1


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["--metadata-dir", "/m", "init"],
        ["--metadata-dir", "/m", "refresh"],
        ["--metadata-url", "http://127.0.0.1:1/", "refresh"],
        ["--metadata-dir", "/m", "--metadata-url", "http://127.0.0.1:1/", "download"],
        ["--metadata-dir", "/m", "refresh", "extra"],
    ],
)
def test_incomplete_command_lines_exit_1(argv: list[str]) -> None:
    """Missing options or operands make main() return exactly 1."""
    assert main(argv) == 1


def test_options_are_accepted_in_any_order() -> None:
    """Options may follow the sub-command; --target-name repeats in order."""
    invocation = parse_invocation(
        [
            "download",
            "--target-name",
            "b",
            "--metadata-dir",
            "/m",
            "--target-dir",
            "/t",
            "--target-name",
            "a",
            "--metadata-url",
            "http://h/x%2Fy/metadata/",
            "--target-base-url",
            "http://h/x%2Fy/targets/",
        ]
    )
    assert invocation.command == "download"
    assert invocation.target_names == ("b", "a")
    assert invocation.metadata_url == "http://h/x%2Fy/metadata/"
    assert invocation.metadata_dir == Path("/m")
    with pytest.raises(UsageError):
        parse_invocation(["--metadata-dir", "/m"])
