"""Export → carry → import gives the same bytes as a direct sync; delta bundles hold
only the change; the base comes from the last export or from a receipt."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from mirror.errors import ExitStatus
from tests.airgap.conftest import Air, bundle_files, changed
from tests.sync.conftest import tree
from tuf_mirror_testing.repo import metadata_file_name


def test_full_export_then_import_equals_direct_sync(air: Air) -> None:
    """A --full directory bundle imported into an empty destination gives exactly the
    bytes a direct sync writes, and a receipt describing that state."""
    assert air.export(air.tmp / "b0", "--full") == ExitStatus.OK
    assert air.import_(air.tmp / "b0") == ExitStatus.OK
    assert air.sync_near() == ExitStatus.OK
    assert tree(air.far) == tree(air.near)
    receipt = json.loads(air.receipt().read_bytes())
    assert receipt["format"] == "tuf-mirror-receipt"
    assert receipt["state"]["timestamp_version"] == air.repo.version("timestamp")
    assert receipt["state"]["snapshot_version"] == air.repo.version("snapshot")
    # The bundle holds exactly what the sync copied, no more.
    assert bundle_files(air.tmp / "b0") == tree(air.near)


def test_full_tar_in_volumes_round_trip(air: Air, capsys: pytest.CaptureFixture[str]) -> None:
    """A --full .tar bundle split by --volume-size: numbered volumes, each a tar within
    the size, each naming its place; importing it by its base name or by any volume
    gives the direct sync's bytes."""
    to = air.tmp / "usb" / "b0.tar"
    to.parent.mkdir()
    assert air.export(to, "--full", "--volume-size", "48K") == ExitStatus.OK
    volumes = sorted(to.parent.iterdir())
    assert len(volumes) >= 3
    count = len(volumes)
    assert [v.name for v in volumes] == [
        f"b0.tar.{i:03d}-of-{count:03d}" for i in range(1, 1 + count)
    ]
    for volume in volumes:
        assert volume.stat().st_size <= 48 * 1024
        with tarfile.open(volume) as tar:
            names = tar.getnames()
        assert names[:2] == ["manifest.json", "volume.json"]
    assert air.sync_near() == ExitStatus.OK
    assert air.import_(volumes[1]) == ExitStatus.OK  # any volume names the set
    assert tree(air.far) == tree(air.near)
    second = air.tmp / "far2"
    assert air.import_(to, dest=second) == ExitStatus.OK
    assert tree(second) == tree(air.near)
    assert "volumes" in capsys.readouterr().err


def _delta_step(air: Air, step: int) -> None:
    """One upstream change: new targets, a changed target, and in step 2 a new root."""
    for index in range(3):
        air.repo.add_target(
            f"files/step-{step}-{index}.bin", f"step {step} #{index}\n".encode() * 40
        )
    air.repo.add_target("files/file-0001.bin", f"rewritten in step {step}\n".encode() * 30)
    if step == 2:
        air.repo.bump_root()
    air.publish()


def test_chain_of_three_delta_bundles(air: Air) -> None:
    """Three delta bundles (tar, directory, tar in volumes) applied in order give the
    bytes of a mirror that synced each state directly; each bundle holds exactly the
    files that sync copied (new targets + changed metadata), so its size is the size
    of the change."""
    assert air.export(air.tmp / "b0", "--full") == ExitStatus.OK
    full_bytes = sum(len(v) for v in bundle_files(air.tmp / "b0").values())
    assert air.import_(air.tmp / "b0") == ExitStatus.OK
    assert air.sync_near() == ExitStatus.OK

    bundles = [air.tmp / "b1.tar", air.tmp / "b2", air.tmp / "b3.tar"]
    expected: list[dict[str, bytes]] = []
    for step, bundle in enumerate(bundles, start=1):
        before = tree(air.near)
        _delta_step(air, step)
        assert air.sync_near() == ExitStatus.OK
        change = changed(before, tree(air.near))
        expected.append(change)
        extra = ("--volume-size", "16K") if step == 3 else ()
        assert air.export(bundle, *extra) == ExitStatus.OK  # since the last export

    # b1: one tar; its members are exactly the change, its size the change plus
    # tar headers and the manifest.
    with tarfile.open(bundles[0]) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    manifest = members.pop("manifest.json")
    members.pop("volume.json")
    assert members == expected[0]
    payload = sum(len(v) for v in expected[0].values())
    overhead = 1536 * (len(members) + 2) + len(manifest) + 10240
    assert payload < bundles[0].stat().st_size <= payload + overhead
    new_targets = sum(len(v) for k, v in expected[0].items() if k.startswith("targets/"))
    assert new_targets >= 4 * 400  # three new targets and a changed one
    assert payload < full_bytes / 4
    # b2: a directory holding exactly the change, a new root version among it.
    assert bundle_files(bundles[1]) == expected[1]
    assert "metadata/2.root.json" in expected[1]
    # b3: volumes.
    assert len(list(air.tmp.glob("b3.tar.*-of-*"))) >= 2

    for bundle in bundles:
        assert air.import_(bundle) == ExitStatus.OK
    assert tree(air.far) == tree(air.near)


def test_since_receipt_with_a_fresh_exporter(air: Air) -> None:
    """An exporter that lost its state exports --since the far side's receipt: the
    base is rebuilt from the receipt and the upstream's versioned files, and the
    bundle holds only the change."""
    assert air.export(air.tmp / "b0", "--full") == ExitStatus.OK
    carried = air.tmp / "carried-receipt.json"
    assert air.import_(air.tmp / "b0", "--receipt", str(carried)) == ExitStatus.OK
    assert carried.read_bytes() == air.receipt().read_bytes()
    assert air.sync_near() == ExitStatus.OK
    before = tree(air.near)
    _delta_step(air, 1)
    assert air.sync_near() == ExitStatus.OK

    fresh = air.tmp / "fresh-state"
    assert air.export(air.tmp / "b1", "--since", str(carried), state_dir=fresh) == ExitStatus.OK
    assert bundle_files(air.tmp / "b1") == changed(before, tree(air.near))
    assert air.import_(air.tmp / "b1") == ExitStatus.OK
    assert tree(air.far) == tree(air.near)


def test_nothing_new_writes_no_bundle(air: Air, capsys: pytest.CaptureFixture[str]) -> None:
    """An export when the upstream has not moved since the base writes nothing: exit 0."""
    assert air.export(air.tmp / "b0", "--full") == ExitStatus.OK
    capsys.readouterr()
    assert air.export(air.tmp / "b1") == ExitStatus.OK
    assert not (air.tmp / "b1").exists()
    assert "nothing new" in capsys.readouterr().err


def test_export_needs_a_base(air: Air, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --since, --full or a recorded previous export: exit 2, a hint, nothing
    written."""
    assert air.export(air.tmp / "b0") == ExitStatus.USAGE
    err = capsys.readouterr().err
    assert "--since" in err
    assert "--full" in err
    assert not (air.tmp / "b0").exists()


def test_existing_bundle_is_not_overwritten(air: Air) -> None:
    """Exporting onto an existing bundle name is a usage error: bundles are never
    overwritten."""
    assert air.export(air.tmp / "b0", "--full") == ExitStatus.OK
    before = tree(air.tmp / "b0")
    assert air.export(air.tmp / "b0", "--full") == ExitStatus.USAGE
    assert tree(air.tmp / "b0") == before


def test_min_validity(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The report names when the exported state expires; --min-validity refuses
    (exit 2, no bundle) a state that expires sooner."""
    from datetime import UTC, datetime, timedelta

    from mirror.cli import main
    from tuf_mirror_testing.repo import Repository

    repo = Repository(expires=datetime.now(UTC) + timedelta(days=2))
    repo.add_target("a.txt", b"a")
    upstream = tmp_path / "up"
    repo.publish(upstream)
    root = tmp_path / "root.json"
    root.write_bytes(repo.root_bytes(1))
    common = ["--root", str(root), "--upstream", str(upstream), "--full"]
    state = ["--state-dir", str(tmp_path / "st")]
    status = main(["export", *common, *state, "--to", str(tmp_path / "b"), "--min-validity", "3d"])
    assert status == ExitStatus.USAGE
    err = capsys.readouterr().err
    assert "expires" in err
    assert "--min-validity" in err
    assert not (tmp_path / "b").exists()
    report = tmp_path / "report.json"
    status = main(
        [
            "export",
            *common,
            *state,
            "--to",
            str(tmp_path / "b"),
            "--min-validity",
            "1d",
            "--report",
            str(report),
        ]
    )
    assert status == ExitStatus.OK
    expires = json.loads(report.read_bytes())["expires"]
    assert set(expires) == {"root", "timestamp", "snapshot", "targets"}
    assert expires["timestamp"] == repo.timestamp.signed.expires.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert "timestamp " + expires["timestamp"] in capsys.readouterr().err


def test_local_directory_upstreams(air: Air) -> None:
    """A published mirror feeds another mirror, and an export, by directory path or
    file:// URL: same bytes as the HTTP upstream."""
    from mirror.cli import main

    assert air.sync_near() == ExitStatus.OK
    root = ["--root", str(air.root_file)]
    second, third = air.tmp / "second", air.tmp / "third"
    assert main(["sync", *root, "--upstream", str(air.near), "--dest", str(second)]) == 0
    assert main(["sync", *root, "--upstream", air.near.as_uri(), "--dest", str(third)]) == 0
    assert tree(second) == tree(air.near)
    assert tree(third) == tree(air.near)
    status = main(
        [
            "export",
            *root,
            "--upstream",
            str(second),
            "--to",
            str(air.tmp / "b0"),
            "--full",
            "--state-dir",
            str(air.tmp / "st2"),
        ]
    )
    assert status == ExitStatus.OK
    assert air.import_(air.tmp / "b0") == ExitStatus.OK
    assert tree(air.far) == tree(air.near)
    # The delta of a changed bin, from the local mirror, once it synced again.
    _delta_step(air, 1)
    assert air.sync_near() == ExitStatus.OK
    assert main(["sync", *root, "--upstream", str(air.near), "--dest", str(second)]) == 0
    status = main(
        [
            "export",
            *root,
            "--upstream",
            str(second),
            "--to",
            str(air.tmp / "b1"),
            "--state-dir",
            str(air.tmp / "st2"),
        ]
    )
    assert status == ExitStatus.OK
    changed_bin = air.repo.role_for_target("files/step-1-0.bin")
    version = air.repo.version(changed_bin)
    assert (air.tmp / "b1" / "metadata" / metadata_file_name(changed_bin, version)).exists()
    assert air.import_(air.tmp / "b1") == ExitStatus.OK
    assert tree(air.far) == tree(air.near)
