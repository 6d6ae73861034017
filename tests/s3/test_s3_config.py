"""The S3 options: flags, ``TUF_MIRROR_*`` environment and TOML, and how they
reach the store an ``s3://`` destination is opened with."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirror.cli import build_parser
from mirror.config import Settings, resolve
from mirror.endpoints import open_destination
from mirror.errors import UsageError
from mirror.storage.listing import ListingStore
from mirror.storage.local import LocalStore
from mirror.storage.s3 import S3Store


def settings(*argv: str, env: dict[str, str] | None = None) -> Settings:
    base = ["sync", "--root", "root.json", "--upstream", "http://127.0.0.1:1"]
    args = build_parser().parse_args([*base, *argv])
    return resolve("sync", args, env or {})


def test_defaults() -> None:
    """Without S3 flags: 16 uploads in flight, a 60 s max-age, everything else left
    to boto3's chain (None)."""
    s = settings("--dest", "s3://bucket/prefix")
    assert s.s3_store_options() == {
        "endpoint_url": None,
        "region": None,
        "addressing_style": None,
        "storage_class": None,
        "max_concurrency": 16,
    }
    assert s.timestamp_max_age == 60


def test_flags_environment_and_file(tmp_path: Path) -> None:
    """Each S3 option comes from a flag, TUF_MIRROR_<NAME> or the TOML file, flags
    first; durations are accepted for the max-age."""
    config = tmp_path / "mirror.toml"
    config.write_text('s3-storage-class = "STANDARD_IA"\nuploads = 4\ns3-region = "eu-west-1"\n')
    s = settings(
        "--dest",
        "s3://bucket/prefix",
        "--config",
        str(config),
        "--s3-endpoint-url",
        "http://127.0.0.1:9000",
        "--timestamp-max-age",
        "5m",
        env={"TUF_MIRROR_S3_ADDRESSING_STYLE": "Path", "TUF_MIRROR_UPLOADS": "2"},
    )
    assert s.s3_store_options() == {
        "endpoint_url": "http://127.0.0.1:9000",
        "region": "eu-west-1",
        "addressing_style": "path",
        "storage_class": "STANDARD_IA",
        "max_concurrency": 2,
    }
    assert s.timestamp_max_age == 300


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--s3-addressing-style", "dns"), ("--uploads", "0"), ("--timestamp-max-age", "soon")],
)
def test_bad_values_are_usage_errors(flag: str, value: str) -> None:
    """A value that cannot work is a usage error (exit 2) naming the flag."""
    with pytest.raises(UsageError, match=flag):
        settings("--dest", "s3://bucket", flag, value)


def test_s3_options_do_not_apply_to_a_directory() -> None:
    """A local destination ignores the S3 options (an environment may set them for
    other mirrors)."""
    s = settings("--dest", "/srv/mirror", "--s3-region", "eu-west-1")
    assert s.s3_store_options() == {}


async def test_an_s3_destination_is_opened_with_its_options(tmp_path: Path) -> None:
    """An s3:// destination opens as an S3Store on that bucket and prefix, with the
    upload concurrency as its capacity limiter, behind a ListingStore; a directory
    opens as a LocalStore behind one too (a first sync's stats are listings)."""
    s = settings("--dest", "s3://bucket/some/prefix", "--uploads", "3")
    store = open_destination(s)
    try:
        assert isinstance(store, ListingStore)
        inner = store.inner
        assert isinstance(inner, S3Store)
        assert (inner.bucket, inner.prefix, inner.url) == (
            "bucket",
            "some/prefix",
            "s3://bucket/some/prefix",
        )
        assert inner._limiter.total_tokens == 3
    finally:
        await store.aclose()
    local = open_destination(settings("--dest", str(tmp_path)))
    assert isinstance(local, ListingStore)
    assert isinstance(local.inner, LocalStore)
    await local.aclose()
