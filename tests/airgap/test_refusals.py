"""Bundles that must be refused: altered, truncated, incomplete, wrong base, expired,
hostile. Each case asserts the exit status, what the message names, and that the
far side's published state is unchanged."""

from __future__ import annotations

import io
import json
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio

from mirror.airgap import run_export
from mirror.airgap.state import sha256_hex
from mirror.cli import build_parser
from mirror.config import resolve
from mirror.errors import ExitStatus
from tests.airgap.conftest import Air, rewrite_manifest
from tests.sync.conftest import tree
from tests.sync.test_hostile import assert_published_unchanged
from tuf_mirror_testing.repo import Repository, tamper_published


def seeded_then_delta(air: Air, to: Path) -> dict[str, bytes]:
    """Seed the far side with a full bundle, change the upstream (two new targets in
    one bin), export the delta to ``to``; returns the far side's tree."""
    assert air.export(air.tmp / "b0", "--full") == ExitStatus.OK
    assert air.import_(air.tmp / "b0") == ExitStatus.OK
    air.repo.add_target("files/extra-1.bin", b"extra one\n" * 50)
    air.repo.add_target("files/extra-2.bin", b"extra two\n" * 50)
    air.publish()
    assert air.export(to) == ExitStatus.OK
    return tree(air.far)


def flip(path: Path, offset: int = -2) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def refused(
    air: Air,
    bundle: Path,
    before: dict[str, bytes],
    status: int,
    capsys: pytest.CaptureFixture[str],
    *extra: str,
) -> str:
    capsys.readouterr()
    assert air.import_(bundle, *extra) == status
    assert_published_unchanged(before, tree(air.far))
    return capsys.readouterr().err


def one_file(bundle: Path, prefix: str) -> str:
    return next(
        p.relative_to(bundle).as_posix()
        for p in sorted(bundle.rglob("*"))
        if p.is_file() and p.relative_to(bundle).as_posix().startswith(prefix)
    )


def test_flipped_byte_in_a_target(air: Air, capsys: pytest.CaptureFixture[str]) -> None:
    """A byte flipped in a target of the bundle: exit 1, the file is named."""
    bundle = air.tmp / "b1"
    before = seeded_then_delta(air, bundle)
    name = one_file(bundle, "targets/")
    flip(bundle / name)
    err = refused(air, bundle, before, ExitStatus.VERIFICATION_FAILED, capsys)
    assert name in err
    assert "altered" in err


def test_flipped_byte_in_a_role(air: Air, capsys: pytest.CaptureFixture[str]) -> None:
    """A byte flipped in a delegated role of the bundle: exit 1, the file is named."""
    bundle = air.tmp / "b1"
    before = seeded_then_delta(air, bundle)
    changed_bin = air.repo.role_for_target("files/extra-1.bin")
    name = f"metadata/{air.repo.version(changed_bin)}.{changed_bin}.json"
    flip(bundle / name, len((bundle / name).read_bytes()) // 2)
    err = refused(air, bundle, before, ExitStatus.VERIFICATION_FAILED, capsys)
    assert name in err


def test_flipped_byte_in_the_manifest(air: Air, capsys: pytest.CaptureFixture[str]) -> None:
    """A byte flipped anywhere in the manifest (here: inside a sha256): exit 1."""
    bundle = air.tmp / "b1"
    before = seeded_then_delta(air, bundle)
    raw = (bundle / "manifest.json").read_bytes()
    offset = raw.index(b'"sha256": "') + 20
    flip(bundle / "manifest.json", offset)
    err = refused(air, bundle, before, ExitStatus.VERIFICATION_FAILED, capsys)
    assert "manifest.json is altered" in err


def test_forged_target_with_a_matching_manifest(
    air: Air, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hand-crafted bundle whose manifest agrees with a forged target passes the
    transport checks and is refused by TUF verification: exit 1."""
    bundle = air.tmp / "b1"
    before = seeded_then_delta(air, bundle)
    name = one_file(bundle, "targets/")
    rewrite_manifest(bundle, name, b"evil byte\n" * 50)  # same length: a hash mismatch
    err = refused(air, bundle, before, ExitStatus.VERIFICATION_FAILED, capsys)
    assert "LengthOrHashMismatchError" in err


def test_forged_role_with_a_matching_manifest(air: Air, capsys: pytest.CaptureFixture[str]) -> None:
    """A changed role re-signed by nobody (a listing altered, manifest agreeing): exit 1."""
    bundle = air.tmp / "b1"
    before = seeded_then_delta(air, bundle)
    changed_bin = air.repo.role_for_target("files/extra-1.bin")
    name = f"metadata/{air.repo.version(changed_bin)}.{changed_bin}.json"
    data = (bundle / name).read_bytes().replace(b"files/extra-1.bin", b"files/extra-X.bin")
    rewrite_manifest(bundle, name, data)
    refused(air, bundle, before, ExitStatus.VERIFICATION_FAILED, capsys)


def test_truncated_and_missing_volume(air: Air, capsys: pytest.CaptureFixture[str]) -> None:
    """A truncated volume and a missing volume: exit 1, the volume is named."""
    assert air.export(air.tmp / "b0", "--full") == ExitStatus.OK
    assert air.import_(air.tmp / "b0") == ExitStatus.OK
    for index in range(12):
        air.repo.add_target(f"files/new-{index}.bin", f"new {index}\n".encode() * 300)
    air.publish()
    usb = air.tmp / "usb"
    usb.mkdir()
    assert air.export(usb / "b1.tar", "--volume-size", "24K") == ExitStatus.OK
    volumes = sorted(usb.iterdir())
    count = len(volumes)
    assert count >= 3
    before = tree(air.far)

    second = volumes[1]
    data = second.read_bytes()
    second.write_bytes(data[: len(data) // 2])
    err = refused(air, usb / "b1.tar", before, ExitStatus.VERIFICATION_FAILED, capsys)
    assert f"volume {second.name} (2 of {count}) is truncated" in err
    second.write_bytes(data[:-10240])  # cut at a record boundary: the end is missing
    err = refused(air, usb / "b1.tar", before, ExitStatus.VERIFICATION_FAILED, capsys)
    assert second.name in err

    second.unlink()
    err = refused(air, usb / "b1.tar", before, ExitStatus.VERIFICATION_FAILED, capsys)
    assert f"volume {second.name} (2 of {count}) is missing" in err
    volumes[0].unlink()  # the manifest is read from any volume present
    err = refused(air, volumes[-1], before, ExitStatus.VERIFICATION_FAILED, capsys)
    assert "is missing" in err


def test_swapped_volume_from_another_bundle(air: Air, capsys: pytest.CaptureFixture[str]) -> None:
    """A volume of another bundle under this bundle's volume name: exit 1."""
    assert air.export(air.tmp / "b0", "--full") == ExitStatus.OK
    assert air.import_(air.tmp / "b0") == ExitStatus.OK
    for index in range(12):
        air.repo.add_target(f"files/new-{index}.bin", f"new {index}\n".encode() * 300)
    air.publish()
    for name in ("one", "two"):
        (air.tmp / name).mkdir()
        status = air.export(
            air.tmp / name / "b1.tar",
            "--volume-size",
            "24K",
            "--since",
            str(air.receipt()),
            state_dir=air.tmp / f"st-{name}",
        )
        assert status == ExitStatus.OK
    two = sorted((air.tmp / "two").iterdir())
    one = sorted((air.tmp / "one").iterdir())
    two[1].write_bytes(one[1].read_bytes())
    before = tree(air.far)
    err = refused(air, two[0], before, ExitStatus.VERIFICATION_FAILED, capsys)
    assert two[1].name in err


def test_applied_twice_or_out_of_order(air: Air, capsys: pytest.CaptureFixture[str]) -> None:
    """A delta applied twice, and a delta applied before the one it builds on: exit 2
    with both states named; nothing changes."""
    bundle1 = air.tmp / "b1"
    seeded_then_delta(air, bundle1)
    air.repo.add_target("files/extra-3.bin", b"three")
    air.publish()
    bundle2 = air.tmp / "b2"
    assert air.export(bundle2) == ExitStatus.OK

    before = tree(air.far)
    err = refused(air, bundle2, before, ExitStatus.USAGE, capsys)
    assert "bundle applies to base timestamp v" in err
    assert "destination is at timestamp v" in err
    assert "in between" in err

    assert air.import_(bundle1) == ExitStatus.OK
    after_first = tree(air.far)
    err = refused(air, bundle1, after_first, ExitStatus.USAGE, capsys)
    assert "already imported" in err
    assert air.import_(bundle2) == ExitStatus.OK
    err = refused(air, air.tmp / "b0", tree(air.far), ExitStatus.USAGE, capsys)
    assert "newer than what this full bundle brings" in err


def _export_at(tmp: Path, repo: Repository, now: datetime, to: Path) -> None:
    """Publish ``repo`` at tmp/up, pin its root at tmp/root.json and export it
    --full as of ``now`` (a library call: the CLI always uses the clock)."""
    upstream = tmp / "up"
    repo.publish(upstream)
    (tmp / "root.json").write_bytes(repo.root_bytes(1))
    args = build_parser().parse_args(
        [
            "export",
            "--root",
            str(tmp / "root.json"),
            "--upstream",
            str(upstream),
            "--to",
            str(to),
            "--full",
            "--state-dir",
            str(tmp / "st"),
        ]
    )
    trio.run(lambda: run_export(resolve("export", args), now=now))


def test_expired_bundle_and_reference_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bundle whose state has expired since it was made fails on import like for
    any client (exit 1, nothing published); --reference-time imports it for an
    audit, with a loud warning."""
    from mirror.cli import main

    expired = datetime.now(UTC) - timedelta(days=1)
    repo = Repository(expires=expired)
    repo.add_target("a.txt", b"a")
    bundle = tmp_path / "old"
    _export_at(tmp_path, repo, expired - timedelta(days=1), bundle)
    dest = tmp_path / "far"
    args = ["import", str(bundle), "--root", str(tmp_path / "root.json"), "--dest", str(dest)]
    capsys.readouterr()
    assert main(args) == ExitStatus.VERIFICATION_FAILED
    assert "ExpiredMetadataError" in capsys.readouterr().err
    assert tree(dest) == {}
    when = (expired - timedelta(hours=12)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert main([*args, "--reference-time", when]) == ExitStatus.OK
    err = capsys.readouterr().err
    assert "WARNING" in err
    assert f"--reference-time {when}" in err
    assert "NOT the current time" in err
    assert json.loads((dest / ".tuf-mirror/receipt.json").read_bytes())["reference_time"] == when


def test_hostile_upstream_export_refuses(air: Air, capsys: pytest.CaptureFixture[str]) -> None:
    """An upstream serving a forged target: the export itself fails (exit 1), writes no
    bundle and records nothing."""
    assert air.export(air.tmp / "b0", "--full") == ExitStatus.OK
    record = (air.state_dir / "last-export.json").read_bytes()
    air.repo.add_target("files/extra-1.bin", b"extra one")
    written = air.publish()
    target = next(w for w in written if w.startswith("targets/"))
    tamper_published(air.upstream, target, lambda data: data[:-1] + b"X")
    capsys.readouterr()
    assert air.export(air.tmp / "b1") == ExitStatus.VERIFICATION_FAILED
    assert "LengthOrHashMismatchError" in capsys.readouterr().err
    assert not (air.tmp / "b1").exists()
    assert (air.state_dir / "last-export.json").read_bytes() == record


def test_unreferenced_bundle_file_is_ignored(air: Air, capsys: pytest.CaptureFixture[str]) -> None:
    """A file the manifest lists but no verified metadata references is not published:
    the import succeeds and reports it."""
    bundle = air.tmp / "b1"
    seeded_then_delta(air, bundle)
    (bundle / "targets" / "smuggled").mkdir(parents=True)
    rewrite_manifest(bundle, "targets/smuggled/evil.sh", b"#!/bin/sh\nrm -rf /\n")
    capsys.readouterr()
    report = air.tmp / "report.json"
    assert air.import_(bundle, "--report", str(report)) == ExitStatus.OK
    assert not (air.far / "targets" / "smuggled").exists()
    assert json.loads(report.read_bytes())["ignored"] == ["targets/smuggled/evil.sh"]
    assert "targets/smuggled/evil.sh" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["traversal", "symlink", "unlisted"])
def test_hostile_tar_members(air: Air, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A tar volume holding a member that could escape (``../``), a symlink, or a file
    the manifest does not list there: exit 1, nothing written anywhere."""
    assert air.export(air.tmp / "b1.tar", "--full") == ExitStatus.OK
    with tarfile.open(air.tmp / "b1.tar") as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]
    evil = tarfile.TarInfo(
        {"traversal": "../../escaped.txt", "symlink": "targets/link", "unlisted": "targets/x"}[kind]
    )
    if kind == "symlink":
        evil.type = tarfile.SYMTYPE
        evil.linkname = "/etc/passwd"
    else:
        evil.size = 5
    with tarfile.open(air.tmp / "b1.tar", "w", format=tarfile.PAX_FORMAT) as tar:
        for member, data in members[:3]:
            tar.addfile(member, io.BytesIO(data))
        tar.addfile(evil, io.BytesIO(b"evil!") if evil.isreg() else None)
        for member, data in members[3:]:
            tar.addfile(member, io.BytesIO(data))
    err = refused(air, air.tmp / "b1.tar", {}, ExitStatus.VERIFICATION_FAILED, capsys)
    assert evil.name in err
    assert not (air.tmp.parent / "escaped.txt").exists()
    assert not (air.tmp / "escaped.txt").exists()


def test_base_unavailable_suggests_full(air: Air, capsys: pytest.CaptureFixture[str]) -> None:
    """A --since export with no copies of the far side's metadata, from an upstream
    that garbage-collected them: exit 2, and the message says --full."""
    assert air.export(air.tmp / "b0", "--full") == ExitStatus.OK
    assert air.import_(air.tmp / "b0") == ExitStatus.OK
    old_snapshot = air.repo.version("snapshot")
    air.repo.add_target("files/extra-1.bin", b"extra")
    air.publish()
    (air.upstream / "metadata" / f"{old_snapshot}.snapshot.json").unlink()
    capsys.readouterr()
    status = air.export(air.tmp / "b1", "--since", str(air.receipt()), state_dir=air.tmp / "fresh")
    assert status == ExitStatus.USAGE
    err = capsys.readouterr().err
    assert f"{old_snapshot}.snapshot.json" in err
    assert "--full" in err
    assert not (air.tmp / "b1").exists()


def test_wrong_format_version_is_a_usage_error(
    air: Air, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bundle from a newer tuf-mirror (manifest format version 2): exit 2, "upgrade"."""
    from dataclasses import replace

    import mirror.airgap.manifest as manifest_module

    assert air.export(air.tmp / "b0", "--full") == ExitStatus.OK
    manifest = manifest_module.Manifest.from_bytes(
        (air.tmp / "b0" / "manifest.json").read_bytes(), "m"
    )
    document = json.loads(replace(manifest).to_bytes())
    document["format_version"] = 2
    document.pop("manifest_sha256")
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    document["manifest_sha256"] = sha256_hex(canonical)
    (air.tmp / "b0" / "manifest.json").write_text(json.dumps(document))
    err = refused(air, air.tmp / "b0", {}, ExitStatus.USAGE, capsys)
    assert "upgrade" in err


def test_rollback_across_the_gap(air: Air, capsys: pytest.CaptureFixture[str]) -> None:
    """A crafted bundle whose manifest claims the destination's state as its base but
    brings an older, validly signed timestamp: the engine refuses the rollback from
    the destination's trusted state (exit 1)."""
    from dataclasses import replace

    from mirror.airgap.manifest import Manifest
    from mirror.airgap.state import StateRecord

    old = air.tmp / "b0"
    seeded_then_delta(air, air.tmp / "b1")
    assert air.import_(air.tmp / "b1") == ExitStatus.OK
    far_state = StateRecord.from_bytes(air.receipt().read_bytes(), "receipt").state
    manifest = Manifest.from_bytes((old / "manifest.json").read_bytes(), "manifest")
    (old / "manifest.json").write_bytes(replace(manifest, base=far_state).to_bytes())
    err = refused(air, old, tree(air.far), ExitStatus.VERIFICATION_FAILED, capsys)
    assert "RollbackError" in err


def test_bundle_lacking_a_needed_file(air: Air, capsys: pytest.CaptureFixture[str]) -> None:
    """A bundle (manifest included) without a target its metadata adds: exit 1, the
    bundle is said to lack it."""
    from dataclasses import replace

    from mirror.airgap.manifest import Manifest

    bundle = air.tmp / "b1"
    before = seeded_then_delta(air, bundle)
    name = one_file(bundle, "targets/")
    (bundle / name).unlink()
    manifest = Manifest.from_bytes((bundle / "manifest.json").read_bytes(), "manifest")
    files = tuple(entry for entry in manifest.files if entry.path != name)
    (bundle / "manifest.json").write_bytes(replace(manifest, files=files).to_bytes())
    err = refused(air, bundle, before, ExitStatus.VERIFICATION_FAILED, capsys)
    assert "the bundle lacks" in err
    assert name in err
