"""``tuf-mirror ledger lookup|export|checkpoint|verify`` and ``tuf-mirror witness``
on mirrors synced from a generated upstream on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from tuf.api.metadata import Metadata, TargetFile

from mirror.cli import main
from mirror.errors import ExitStatus
from tests.ledger.test_sync_ledger import PATH, alarm_lines, evidence, ledger_dir
from tests.sync.conftest import Env
from tuf_mirror_testing.repo import generate_signer, metadata_file_name
from tuf_mirror_testing.server import serve_directory


def ledger(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main(["ledger", *args])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def key_files(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    private = Ed25519PrivateKey.generate()
    key = tmp_path / "witness.pem"
    key.write_bytes(private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    public = tmp_path / "witness.pub"
    public.write_bytes(
        private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    return key, public


def test_lookup_export_checkpoint_verify(
    env: Env, capsys: pytest.CaptureFixture[str], key_files: tuple[Path, Path], tmp_path: Path
) -> None:
    """Over three syncs (one changing a path's content): ``lookup`` lists both
    versions with where each was first seen; ``export`` is exactly the set of every
    (path, length, hashes) ever published; ``checkpoint`` prints the signed note;
    ``verify`` accepts the ledger with the PEM public key and the older checkpoint."""
    key, public = key_files
    sign = ["--witness-key", str(key), "--witness-name", "mirror.example/ledger"]
    assert env.run("sync", *sign) == ExitStatus.OK
    published: set[tuple[str, int, str]] = set()

    def remember() -> None:
        for role in env.repo.roles:
            if role in ("root", "timestamp", "snapshot"):
                continue
            for path, target in env.repo.targets_role(role).signed.targets.items():
                published.add((path, target.length, json.dumps(target.hashes, sort_keys=True)))

    remember()
    status, first_checkpoint, _ = ledger(capsys, "checkpoint", "--dest", str(env.dest))
    assert status == 0
    assert first_checkpoint.startswith("mirror.example/ledger\n")
    old = tmp_path / "old-checkpoint"
    old.write_text(first_checkpoint)
    env.repo.add_target(PATH, b"second content")
    env.repo.add_target("files/new.txt", b"new")
    env.publish()
    assert env.run("sync", *sign) == ExitStatus.OK
    remember()

    status, out, _ = ledger(capsys, "lookup", PATH, "--dest", str(env.dest))
    assert status == 0
    versions = json.loads(out)["versions"]
    assert [v["length"] for v in versions] == [200, len(b"second content")]
    assert versions[1]["first_seen"]["snapshot_version"] == 2

    status, out, _ = ledger(capsys, "export", "--dest", str(env.dest))
    exported = {
        (line["path"], line["length"], json.dumps(line["hashes"], sort_keys=True))
        for line in map(json.loads, out.splitlines())
    }
    assert exported == published
    assert len(out.splitlines()) == len(published)

    status, _, err = ledger(
        capsys, "verify", "--dest", str(env.dest), "--key", str(public), "--since", str(old)
    )
    assert status == 0, err
    assert "signature ok" in err


@pytest.mark.parametrize("victim", ["entries/000000000", "index", "states"])
def test_verify_fails_after_one_byte_changed(
    env: Env, capsys: pytest.CaptureFixture[str], victim: str
) -> None:
    """One byte changed in an entry bundle, an index shard or a checkpoint state:
    ``ledger verify`` exits 1 naming the ledger."""
    assert env.run() == ExitStatus.OK
    assert ledger(capsys, "verify", "--dest", str(env.dest))[0] == 0
    if victim == "index":
        path = sorted((ledger_dir(env) / "index").glob("*.jsonl"))[0]
    elif victim == "states":
        path = sorted((ledger_dir(env) / "states").glob("*.json"))[-1]
    else:
        path = ledger_dir(env) / victim
    data = bytearray(path.read_bytes())
    position = data.index(b'"sha256"') + 12 if b'"sha256"' in data else len(data) // 2
    data[position] = ord("0") if data[position] != ord("0") else ord("1")
    path.write_bytes(bytes(data))
    status, _, err = ledger(capsys, "verify", "--dest", str(env.dest))
    assert status == ExitStatus.VERIFICATION_FAILED
    assert "ledger" in err


def test_verify_rejects_a_rewritten_history(
    env: Env, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A ledger rebuilt from scratch (larger, other entries) is not an append-only
    extension of an older checkpoint: verify --since exits 1."""
    assert env.run() == ExitStatus.OK
    old = tmp_path / "old"
    old.write_text(ledger(capsys, "checkpoint", "--dest", str(env.dest))[1])
    shutil.rmtree(ledger_dir(env))
    for index in range(60):
        env.repo.add_target(f"files/other-{index}.txt", b"other %d" % index)
    env.publish()
    assert env.run() == ExitStatus.OK
    status, _, err = ledger(capsys, "verify", "--dest", str(env.dest), "--since", str(old))
    assert status == ExitStatus.VERIFICATION_FAILED
    assert "append-only" in err


def _witness(env: Env, *extra: str) -> int:
    env.server.wait_idle()
    return main(
        [
            "witness",
            "--root",
            str(env.root_file),
            "--upstream",
            env.server.url,
            "--dest",
            str(env.dest),
            *extra,
        ]
    )


def _bin_of(env: Env) -> tuple[str, int]:
    role = env.repo.role_for_target(PATH)
    return role, env.repo.version(role)


def test_witness_meta_equivocation(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """The upstream serves a recorded role version with other, validly signed
    content: ``witness`` raises META_EQUIVOCATION with both files as evidence, exits
    6, and publishes nothing."""
    assert env.run() == ExitStatus.OK
    role, version = _bin_of(env)
    published = (env.dest / "metadata" / metadata_file_name(role, version)).read_bytes()

    def add(metadata: Metadata[Any]) -> None:
        metadata.signed.targets["files/sneaky.txt"] = TargetFile(
            3, {"sha256": "ab" * 32}, "files/sneaky.txt"
        )

    forged = env.repo.forge(role, add)
    (env.upstream / "metadata" / metadata_file_name(role, version)).write_bytes(forged)
    before = sorted(p.relative_to(env.dest) for p in env.dest.rglob("*") if "ledger" not in p.parts)
    capsys.readouterr()
    assert _witness(env) == ExitStatus.WITNESS_ALARM
    err = capsys.readouterr().err
    assert len(alarm_lines(err, "META_EQUIVOCATION")) == 1
    [directory] = evidence(env, "META_EQUIVOCATION")
    name = metadata_file_name(role, version)
    assert (directory / f"published-{name}").read_bytes() == published
    assert (directory / f"upstream-{name}").read_bytes() == forged
    after = sorted(p.relative_to(env.dest) for p in env.dest.rglob("*") if "ledger" not in p.parts)
    assert after == before


def test_witness_resigned_is_a_warning(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """The same signed content with other signatures (an extra one) is RESIGNED: a
    warning, no alarm, exit 0."""
    assert env.run() == ExitStatus.OK
    role, version = _bin_of(env)
    resigned = env.repo.forge(role, signers=[*env.repo.signers[role], generate_signer()])
    (env.upstream / "metadata" / metadata_file_name(role, version)).write_bytes(resigned)
    capsys.readouterr()
    assert _witness(env) == ExitStatus.OK
    err = capsys.readouterr().err
    assert "RESIGNED" in err
    assert "ALARM" not in err


def test_witness_target_mutation_and_fork(
    env: Env, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``witness --immutable '*'`` sees a validly re-listed path (TARGET_MUTATION)
    without publishing it; a ``--witness-peer`` serving other bytes for a recorded
    versioned file is a FORK."""
    assert env.run() == ExitStatus.OK
    peer_dir = tmp_path / "peer"
    shutil.copytree(env.dest, peer_dir, ignore=shutil.ignore_patterns(".tuf-mirror"))
    role, version = _bin_of(env)
    forged = env.repo.forge(role, lambda m: m.signed.targets.pop(PATH))
    (peer_dir / "metadata" / metadata_file_name(role, version)).write_bytes(forged)
    env.repo.add_target(PATH, b"mutated")
    env.publish()
    with serve_directory(peer_dir) as peer:
        capsys.readouterr()
        assert _witness(env, "--immutable", "*", "--witness-peer", peer.url) == 6
    err = capsys.readouterr().err
    assert len(alarm_lines(err, "TARGET_MUTATION")) == 1
    assert len(alarm_lines(err, "FORK")) == 1
    assert metadata_file_name(role, version) in alarm_lines(err, "FORK")[0]
    # nothing published: the destination still lists the old content
    files = [p for p in (env.dest / "targets").rglob("*") if p.is_file()]
    assert b"mutated" not in b"".join(p.read_bytes() for p in files)


def test_witness_sample_fetches_target_bytes(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """``witness --sample 0`` fetches every recorded target: an upstream serving
    other bytes under a recorded content-addressed name is a TARGET_MUTATION (the
    served bytes saved as evidence); the others pass, and nothing is published."""
    assert env.run() == ExitStatus.OK
    role = env.repo.role_for_target(PATH)
    target = env.repo.targets_role(role).signed.targets[PATH]
    digest = target.hashes["sha256"]
    [served] = list((env.upstream / "targets").rglob(f"{digest}.*"))
    served.write_bytes(b"swapped bytes")
    capsys.readouterr()
    assert _witness(env, "--sample", "0") == ExitStatus.WITNESS_ALARM
    err = capsys.readouterr().err
    lines = alarm_lines(err, "TARGET_MUTATION")
    assert len(lines) == 1
    assert PATH in lines[0]
    [directory] = evidence(env, "TARGET_MUTATION")
    assert (directory / "upstream-target").read_bytes() == b"swapped bytes"
    assert _witness(env, "--sample", "3") in (ExitStatus.OK, ExitStatus.WITNESS_ALARM)


def test_verify_with_the_wrong_key_fails(
    env: Env, capsys: pytest.CaptureFixture[str], key_files: tuple[Path, Path], tmp_path: Path
) -> None:
    """``ledger verify --key`` with a C2SP verifier key of the witness passes; with
    another key (same name) or on an unsigned ledger it exits 1."""
    from mirror.ledger.note import Signer

    key, _ = key_files
    name = "mirror.example/ledger"
    assert env.run("sync", "--witness-key", str(key), "--witness-name", name) == 0
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    private = load_pem_private_key(key.read_bytes(), password=None)
    assert isinstance(private, Ed25519PrivateKey)
    good = tmp_path / "good.vkey"
    good.write_text(str(Signer(name, private).verifier) + "\n")
    other = tmp_path / "other.vkey"
    other.write_text(str(Signer(name, Ed25519PrivateKey.generate()).verifier) + "\n")
    assert ledger(capsys, "verify", "--dest", str(env.dest), "--key", str(good))[0] == 0
    status, _, err = ledger(capsys, "verify", "--dest", str(env.dest), "--key", str(other))
    assert status == ExitStatus.VERIFICATION_FAILED
    assert "signature" in err
