"""How a sync asks the upstream for changed targets roles: the roles of a window the
destination lacks go out together (``MetadataSource.fetch_many``, pipelined on one
HTTP/1.1 connection), and any the pipeline did not bring whole is asked again one by
one, with the retries, failover and messages of ``MetadataSource.fetch``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from mirror.errors import ExitStatus
from mirror.refresh import MetadataSource
from tests.sync.conftest import Env, make_repo, serving, tree
from tuf_mirror_testing.server import Fault

BINS = 16


@pytest.fixture
def env16(tmp_path: Path) -> Iterator[Env]:
    """A first sync of 16 bins done; then a new target in every bin published."""
    with serving(make_repo(bins=BINS, targets=BINS * 2), tmp_path) as env:
        assert env.run("sync", "--processes", "0") == ExitStatus.OK
        bins: set[str] = set()
        index = 0
        while len(bins) < BINS:
            path = f"files/new-{index:03d}.txt"
            env.repo.add_target(path, f"new {index}\n".encode())
            bins.add(env.repo.role_for_target(path))
            index += 1
        env.publish()
        yield env


def _bin_roles(env: Env) -> list[str]:
    """The URL paths of the bin roles' current versions (consistent snapshot)."""
    bins = env.repo.hash_bins
    assert bins is not None
    return [f"/metadata/{env.repo.version(role)}.{role}.json" for role in bins.names()]


class _Spy:
    """Records what ``MetadataSource.fetch_many`` was asked and what it brought."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.asked: list[str] = []
        self.brought: list[str] = []
        real = MetadataSource.fetch_many
        spy = self

        async def fetch_many(
            self: MetadataSource, names: Sequence[str], max_length: int
        ) -> list[bytes | None]:
            got = await real(self, names, max_length)
            spy.asked.extend(names)
            spy.brought.extend(name for name, data in zip(names, got, strict=True) if data)
            return got

        monkeypatch.setattr(MetadataSource, "fetch_many", fetch_many)


def test_changed_roles_come_pipelined_each_asked_once(
    env16: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every changed bin role is requested exactly once, and every one of them came
    through the pipelined batches (none one by one)."""
    spy = _Spy(monkeypatch)
    assert env16.run("sync", "--processes", "0") == ExitStatus.OK
    changed = _bin_roles(env16)
    requested = env16.requested()
    assert len(changed) == BINS
    for path in changed:
        assert requested.count(path) == 1, path
    assert sorted(f"/metadata/{name}" for name in spy.brought) == sorted(changed)
    assert sorted(spy.asked) == sorted(spy.brought)
    upstream = tree(env16.upstream / "metadata")
    mirrored = tree(env16.dest / "metadata")
    assert {path: mirrored[path[len("/metadata/") :]] for path in changed} == {
        path: upstream[path[len("/metadata/") :]] for path in changed
    }


def test_a_role_the_pipeline_did_not_bring_is_asked_again(
    env16: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 503 for one role in the middle of a pipelined batch: the other roles come in
    the batch, that one is asked again alone (two requests), and the run succeeds."""
    spy = _Spy(monkeypatch)
    failing = _bin_roles(env16)[BINS // 2]
    env16.server.faults.add(failing, Fault.status(503), times=1)
    assert env16.run("sync", "--processes", "0") == ExitStatus.OK
    assert env16.requested().count(failing) == 2
    assert failing.rsplit("/", 1)[1] not in spy.brought
    assert len(spy.brought) == BINS - 1
    assert (env16.dest / failing.lstrip("/")).read_bytes() == (
        env16.upstream / failing.lstrip("/")
    ).read_bytes()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(
            b"<!DOCTYPE html><html>gone</html>", "returned HTML, not TUF metadata", id="html"
        ),
        pytest.param(
            b'{"signed": {"_type": "targets"}, "signatures": []}', "not valid TUF", id="junk"
        ),
    ],
)
def test_a_bad_role_in_the_pipeline_fails_the_run_and_changes_nothing(
    env16: Env, body: bytes, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A role answered with an HTML page or with JSON that is not valid metadata,
    inside a pipelined batch: exit 1 with the one-line message that names the role's
    URL, and the destination exactly as the previous run left it."""
    before = tree(env16.dest, internal=True)
    bad = _bin_roles(env16)[3]
    env16.server.faults.add(bad, Fault.replace(body))
    assert env16.run("sync", "--processes", "0") == ExitStatus.VERIFICATION_FAILED
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("tuf-mirror: ERROR:")]
    assert len(errors) == 1, err
    assert message in errors[0]
    assert bad in errors[0]
    assert tree(env16.dest, internal=True) == before
