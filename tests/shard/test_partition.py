"""The partition of targets into shards: every path lands in exactly one shard of the
manifest, by the exact bytes of the path (case and Unicode normalization matter),
stably across processes and releases."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mirror.plan import TargetCopy
from mirror.shard import manifest
from mirror.shard.manifest import ManifestWriter
from mirror.shard.partition import MAX_SHARDS, shard_of

_SEGMENT = st.text(
    alphabet=st.sampled_from("aAbBzZ09-_.éÉeE\u0301ßẞ\u0131\u0130\u212a\u00c5\u212b가각\U0001f600"),
    min_size=1,
    max_size=12,
)
_PATH = st.lists(_SEGMENT, min_size=1, max_size=4).map("/".join)


def _variants(path: str) -> set[str]:
    """The path and its twins: other case, NFC, NFD, NFKC spellings."""
    return {
        path,
        path.upper(),
        path.lower(),
        path.swapcase(),
        unicodedata.normalize("NFC", path),
        unicodedata.normalize("NFD", path),
        unicodedata.normalize("NFKC", path),
    }


def _copy(path: str) -> TargetCopy:
    return TargetCopy(path=path, length=1, hashes={"sha256": "0" * 64}, names=(path,), role="r")


def _written(directory: Path, paths: set[str], shards: int) -> dict[int, list[str]]:
    """Write ``paths`` through the manifest writer; the paths of each shard's file."""

    async def write() -> None:
        writer = ManifestWriter(directory, shards)
        for path in sorted(paths):
            await writer.add(_copy(path))
        files = await writer.finish()
        assert sum(f.targets for f in files) == len(paths)

    trio.run(write)
    return {
        index: [
            json.loads(line)["path"]
            for line in (directory / f"shard-{index:04d}.jsonl").read_text("utf-8").splitlines()
        ]
        for index in range(shards)
    }


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    bases=st.lists(_PATH, min_size=1, max_size=20),
    shards=st.integers(min_value=1, max_value=64),
)
def test_every_path_lands_in_exactly_one_shard(
    tmp_path_factory: pytest.TempPathFactory, bases: list[str], shards: int
) -> None:
    """Random paths plus their case and normalization twins, through the manifest
    writer: the shard files together hold every path exactly once, each in the
    shard ``shard_of`` names, and twins are distinct entries (never merged)."""
    paths = set().union(*(_variants(base) for base in bases))
    per_shard = _written(tmp_path_factory.mktemp("manifest"), paths, shards)
    seen = [path for listed in per_shard.values() for path in listed]
    assert sorted(seen) == sorted(paths)  # each exactly once
    for index, listed in per_shard.items():
        assert all(shard_of(path, shards) == index for path in listed)


@settings(deadline=None)
@given(path=_PATH, shards=st.integers(min_value=1, max_value=MAX_SHARDS))
def test_the_shard_is_in_range_and_a_function_of_the_exact_bytes(path: str, shards: int) -> None:
    """``shard_of`` is in 0..N-1 and depends on the UTF-8 bytes only: the same bytes
    give the same shard, whatever object holds them."""
    index = shard_of(path, shards)
    assert 0 <= index < shards
    assert shard_of(path.encode("utf-8").decode("utf-8"), shards) == index


def test_the_partition_is_stable() -> None:
    """Pinned values: a change of the hash would silently re-partition runs already
    planned (a copy job from an older image must agree with its plan), so it
    needs a new ``SCHEME``. Case and normalization twins hash differently."""
    assert [shard_of(f"files/file-{n:04d}.txt", 4) for n in range(8)] == _PINNED
    assert shard_of("A.txt", 1 << 13) != shard_of("a.txt", 1 << 13)
    nfc, nfd = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    assert shard_of(nfc, 1 << 13) != shard_of(nfd, 1 << 13)


def test_the_partition_does_not_depend_on_the_process() -> None:
    """Another interpreter with another hash seed puts paths in the same shards
    (no ``hash()``, whose per-process salt would scatter a Batch array's children)."""
    paths = ["files/a.txt", "files/A.txt", "x/é/y", "x/e\u0301/y"]
    code = (
        "import json, sys; from mirror.shard import shard_of; "
        "print(json.dumps([shard_of(p, 97) for p in json.loads(sys.argv[1])]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(paths)],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345"},
    ).stdout
    assert json.loads(out) == [shard_of(path, 97) for path in paths]


@pytest.mark.parametrize("count", [0, -1, MAX_SHARDS + 1])
def test_a_shard_count_out_of_range_is_a_bug(count: int) -> None:
    """The CLI checks the count; a caller that passes a bad one is a programming error."""
    with pytest.raises(ValueError, match="not between 1 and"):
        shard_of("a", count)


#: computed once with the sha256-u64be-mod scheme and pinned
_PINNED = [2, 1, 3, 1, 0, 3, 1, 0]


def test_the_manifest_writer_buffers_a_bounded_amount(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory stays bounded however many targets a plan records: lines wait in
    memory only until FLUSH_BYTES are buffered (here 4 KiB), then go to the shard
    files; the files end up complete and their recorded sha256 is theirs."""
    monkeypatch.setattr(manifest, "FLUSH_BYTES", 4096)
    peak = 0

    async def write() -> tuple[manifest.ShardFile, ...]:
        nonlocal peak
        writer = ManifestWriter(tmp_path, 7)
        for n in range(2000):
            await writer.add(_copy(f"files/file-{n:05d}.txt"))
            peak = max(peak, writer._buffered)  # the quantity under test
        return await writer.finish()

    files = trio.run(write)
    assert peak < 4096 + 200  # one line over the threshold at most
    assert sum(f.targets for f in files) == 2000
    for f in files:
        data = (tmp_path / f"shard-{f.index:04d}.jsonl").read_bytes()
        assert hashlib.sha256(data).hexdigest() == f.sha256
        assert len(data) == f.size
