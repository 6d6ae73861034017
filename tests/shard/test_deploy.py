"""The deployment files run commands the CLI accepts: the container args of the
Kubernetes manifests and the AWS Batch job definitions' commands parse with the real
argument parser and resolve (with the environment the scheduler gives) to the step
and shard they mean. Also the few structural promises the lint tools cannot check:
Forbid on the CronJob, an Indexed Job whose completions match the shard count, the
IRSA annotation, the image's entrypoint and user."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from mirror.cli import build_parser
from mirror.config import resolve
from mirror.shard.cli import resolve_shard
from mirror.shard.steps import ShardArgs

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
TERRAFORM = ROOT / "deploy" / "terraform"


def _documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


def _pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "CronJob":
        return dict(doc["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    return dict(doc["spec"]["template"]["spec"])


def _jobs() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _documents() if d["kind"] in ("Job", "CronJob")}


def _environ(tmp_path: Path, **more: str) -> dict[str, str]:
    """What the config file and the scheduler give a container, with a root file."""
    root = tmp_path / "root.json"
    root.write_text("{}")
    return {
        "TUF_MIRROR_ROOT": str(root),
        "TUF_MIRROR_UPSTREAM": "https://tuf-repo.example.org",
        "TUF_MIRROR_DEST": "s3://bucket/mirror",
        **more,
    }


def _settings(args: list[str], environ: dict[str, str]) -> tuple[argparse.Namespace, Any]:
    namespace = build_parser().parse_args(args)
    if namespace.command == "shard":
        return namespace, resolve_shard(namespace, environ)
    return namespace, resolve(namespace.command, namespace, environ)


def test_kubernetes_container_args_parse_and_mean_their_step(tmp_path: Path) -> None:
    """Every Job and CronJob container's args parse and resolve with the ConfigMap's
    config.toml; plan, copy and publish resolve to their step with the run id from
    TUF_MIRROR_RUN_ID, the Indexed Job's pod 3 to shard 3 of as many shards as the
    plan makes and the Job completes."""
    jobs = _jobs()
    assert set(jobs) == {
        "tuf-mirror-sync",
        "tuf-mirror-shard-plan",
        "tuf-mirror-shard-copy",
        "tuf-mirror-shard-publish",
    }
    run_id = next(
        d["data"]["TUF_MIRROR_RUN_ID"]
        for d in _documents()
        if d["kind"] == "ConfigMap"
        if "TUF_MIRROR_RUN_ID" in d["data"]
    )
    copy_job = jobs["tuf-mirror-shard-copy"]
    completions = copy_job["spec"]["completions"]
    seen: dict[str, ShardArgs | str] = {}
    # The ConfigMap's config.toml, as mounted (its root moved to a real file).
    (config_map,) = [
        d for d in _documents() if d["kind"] == "ConfigMap" and "config.toml" in d["data"]
    ]
    root = tmp_path / "root.json"
    root.write_text(config_map["data"]["root.json"])
    config = tmp_path / "config.toml"
    config.write_text(
        config_map["data"]["config.toml"].replace("/etc/tuf-mirror/root.json", str(root))
    )
    for name, doc in jobs.items():
        (container,) = _pod_spec(doc)["containers"]
        mounted = {e["name"]: e["value"] for e in container["env"]}
        assert mounted["TUF_MIRROR_CONFIG"] == "/etc/tuf-mirror/config.toml"
        environ = {
            "TUF_MIRROR_CONFIG": str(config),
            "TUF_MIRROR_RUN_ID": run_id,
            "JOB_COMPLETION_INDEX": "3",
        }
        _namespace, settings = _settings(list(container["args"]), environ)
        seen[name] = settings.extra.get("shard", settings.command)
    assert seen["tuf-mirror-sync"] == "sync"
    assert seen["tuf-mirror-shard-plan"] == ShardArgs(
        step="plan", run_id=run_id, shards=completions
    )
    assert seen["tuf-mirror-shard-copy"] == ShardArgs(
        step="copy", run_id=run_id, index=3, count=completions
    )
    assert seen["tuf-mirror-shard-publish"] == ShardArgs(step="publish", run_id=run_id)
    assert settings.dest == "s3://example-tuf-mirror/mirror"
    assert settings.upstream == ("https://tuf-repo.example.org",)


def test_kubernetes_manifests_keep_their_promises() -> None:
    """The sync CronJob forbids overlap; the copy Job is Indexed with a retry budget
    per index; every pod runs as the IRSA ServiceAccount, non-root, with the image
    pinned by digest; the ServiceAccount carries the role annotation."""
    jobs = _jobs()
    assert jobs["tuf-mirror-sync"]["spec"]["concurrencyPolicy"] == "Forbid"
    copy_spec = jobs["tuf-mirror-shard-copy"]["spec"]
    assert copy_spec["completionMode"] == "Indexed"
    assert copy_spec["backoffLimitPerIndex"] >= 1
    for doc in jobs.values():
        pod = _pod_spec(doc)
        assert pod["serviceAccountName"] == "tuf-mirror"
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert "@sha256:" in pod["containers"][0]["image"]
    (account,) = [d for d in _documents() if d["kind"] == "ServiceAccount"]
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith(
        "arn:aws:iam::"
    )


def _job_commands() -> dict[str, list[str]]:
    """``local.job_commands`` of main.tf: one ``name = [ ... ]`` line per job."""
    text = (TERRAFORM / "main.tf").read_text()
    block = re.search(r"job_commands = \{\n(.*?)\n  \}", text, re.DOTALL)
    assert block is not None, "main.tf has no job_commands block"
    commands: dict[str, list[str]] = {}
    for line in block.group(1).splitlines():
        name, _, value = line.partition("=")
        commands[name.strip()] = json.loads(value)
    return commands


def test_batch_job_commands_parse_and_mean_their_step(tmp_path: Path) -> None:
    """The Batch job definitions' commands (with the Ref:: parameters Step Functions
    sets) parse; an array child with AWS_BATCH_JOB_ARRAY_INDEX copies its shard."""
    commands = _job_commands()
    assert set(commands) == {"sync", "plan", "copy", "publish"}
    text = (TERRAFORM / "main.tf").read_text()
    for job in commands:
        assert f'jsonencode(local.job_container["{job}"])' in text
    parameters = {"Ref::run_id": "sfn-execution-1", "Ref::shards": "16"}
    environ = _environ(tmp_path, AWS_BATCH_JOB_ARRAY_INDEX="15", AWS_BATCH_JOB_ARRAY_SIZE="16")
    resolved = {
        job: _settings([parameters.get(arg, arg) for arg in args], environ)[1]
        for job, args in commands.items()
    }
    assert resolved["sync"].command == "sync"
    assert resolved["plan"].extra["shard"] == ShardArgs(
        step="plan", run_id="sfn-execution-1", shards=16
    )
    assert resolved["copy"].extra["shard"] == ShardArgs(
        step="copy", run_id="sfn-execution-1", index=15, count=16
    )
    assert resolved["publish"].extra["shard"] == ShardArgs(step="publish", run_id="sfn-execution-1")


@pytest.mark.parametrize(
    "needle",
    [
        "FROM python:3.11.11-slim-bookworm AS build",
        'ENTRYPOINT ["tuf-mirror"]',
        "USER 10001:10001",
        '".[s3]"',
        "COPY --from=build /opt/tuf-mirror /opt/tuf-mirror",
    ],
)
def test_the_dockerfile_builds_the_image_the_jobs_expect(needle: str) -> None:
    """The image the manifests run: tuf-mirror as entrypoint, the s3 extra, uid 10001
    (the manifests' runAsUser and the Batch job's user)."""
    assert needle in (ROOT / "Dockerfile").read_text()


def test_the_final_image_stage_installs_nothing() -> None:
    """No package manager or build tool runs in the final stage: it only copies
    the virtual environment built in the first."""
    final = (ROOT / "Dockerfile").read_text().rsplit("\nFROM ", 1)[1]
    for tool in ("pip install", "apt-get", "gcc", "build-essential"):
        assert tool not in final
