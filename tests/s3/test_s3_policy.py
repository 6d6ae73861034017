"""A trust policy (``--policy``) with an ``s3://`` destination on moto_server: the
other repositories' metadata under ``repositories/<name>/``, their bookkeeping under
``.tuf-mirror/repositories/<name>/``, held-back targets absent until agreed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mirror.errors import ExitStatus
from tests.policy.conftest import AGREED, CONTENT, CONTESTED, PolicyEnv, penv, weights_env

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["penv"]  # the fixture, imported for this module


def _keys(raw: S3Client, bucket: str) -> set[str]:
    pages = raw.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="mirror/")
    return {
        obj["Key"].removeprefix("mirror/") for page in pages for obj in page.get("Contents", [])
    }


def _has_target(keys: set[str], path: str) -> bool:
    directory, _, name = path.rpartition("/")
    return any(k.startswith(f"targets/{directory}/") and k.endswith("." + name) for k in keys)


def test_policy_on_s3(penv: PolicyEnv, bucket: str, raw: S3Client) -> None:
    """The weights example against an S3 bucket: AGREED published, CONTESTED held
    back; every curator's metadata mirrored under repositories/<name>/; once team-b
    vouches for CONTESTED, the next run publishes it."""
    weights_env(penv)
    dest = ("--dest", f"s3://{bucket}/mirror")
    assert penv.run("sync", *dest) == ExitStatus.OK
    keys = _keys(raw, bucket)
    assert _has_target(keys, AGREED)
    assert not _has_target(keys, CONTESTED)
    for name in ("curator", "team-a", "team-b"):
        assert f"repositories/{name}/metadata/timestamp.json" in keys
        assert f".tuf-mirror/repositories/{name}/state.json" in keys
    assert ".tuf-mirror/policy.json" in keys
    penv.repos["team-b"].add_target(CONTESTED, CONTENT[CONTESTED])
    penv.publish("team-b")
    assert penv.run("sync", *dest) == ExitStatus.OK
    assert _has_target(_keys(raw, bucket), CONTESTED)
