"""mirror.storage.headers: Content-Type and Cache-Control of published objects."""

from __future__ import annotations

import pytest

from mirror.storage.base import PutOptions
from mirror.storage.headers import (
    IMMUTABLE_CACHE_CONTROL,
    cache_control_for,
    content_type_for,
    put_options_for,
)

SHA256 = "a" * 64
SHA512 = "b" * 128


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("metadata/timestamp.json", "application/json"),
        ("metadata/1.root.json", "application/json"),
        ("metadata/3.a%2Fb.json", "application/json"),
        (f"targets/{SHA256}.pkg.json", "application/json"),
        (f"targets/{SHA256}.pkg.tar.gz", "application/gzip"),
        (f"targets/{SHA256}.pkg.tar.bz2", "application/x-bzip2"),
        (f"targets/{SHA256}.pkg.tar.xz", "application/x-xz"),
        ("targets/foo.whl", "application/octet-stream"),
        ("targets/foo.txt", "text/plain"),
        ("targets/noextension", "application/octet-stream"),
        ("metadata/notes.txt", "text/plain"),
        ("metadata/sub/x.json", "application/json"),  # a target-like key; by extension
    ],
)
def test_content_type(key: str, expected: str) -> None:
    """Metadata is application/json; targets are typed by extension, compressed files
    by their compression (never Content-Encoding), unknown ones octet-stream."""
    assert content_type_for(key) == expected


def test_content_type_with_metadata_at_the_root() -> None:
    """With an empty metadata prefix (sigstore's layout) top-level .json files are
    metadata."""
    assert content_type_for("timestamp.json", metadata_prefix="") == "application/json"
    assert content_type_for("targets/x.bin", metadata_prefix="") == "application/octet-stream"


@pytest.mark.parametrize(
    ("key", "consistent", "immutable"),
    [
        ("metadata/timestamp.json", True, False),
        ("metadata/timestamp.json", False, False),
        ("metadata/1.root.json", True, True),
        ("metadata/12.root.json", False, True),  # root versions are always versioned
        ("metadata/root.json", True, False),
        ("metadata/7.snapshot.json", True, True),
        ("metadata/7.targets.json", True, True),
        ("metadata/7.a%2Fb.json", True, True),
        ("metadata/snapshot.json", False, False),
        ("metadata/targets.json", False, False),
        ("metadata/bins-0.json", False, False),
        ("metadata/0.root.json", True, False),  # not a version number
        (f"targets/a/b/{SHA256}.file.tar.gz", True, True),
        (f"targets/{SHA512}.file", True, True),
        ("targets/a/b/file.tar.gz", True, False),  # not content-addressed
        (f"targets/{SHA256}.file", False, False),
        ("targets/1.root.json", True, False),  # a target, not metadata
    ],
)
def test_cache_control(key: str, consistent: bool, immutable: bool) -> None:
    """Versioned and content-addressed files are immutable for a year; whatever is
    replaced in place (timestamp, and all but N.root.json without consistent
    snapshots) gets the short max-age."""
    expected = IMMUTABLE_CACHE_CONTROL if immutable else "public, max-age=60"
    assert cache_control_for(key, consistent_snapshot=consistent) == expected


def test_cache_control_short_max_age_and_prefix() -> None:
    """The short max-age is configurable; the metadata prefix decides what is
    metadata."""
    assert (
        cache_control_for(
            "timestamp.json", consistent_snapshot=True, short_max_age=5, metadata_prefix=""
        )
        == "public, max-age=5"
    )
    assert (
        cache_control_for("tuf/3.snapshot.json", consistent_snapshot=True, metadata_prefix="tuf/")
        == IMMUTABLE_CACHE_CONTROL
    )
    with pytest.raises(ValueError, match="short_max_age"):
        cache_control_for("metadata/timestamp.json", consistent_snapshot=True, short_max_age=-1)


def test_put_options_for() -> None:
    """put_options_for bundles both headers and the verified digest."""
    assert put_options_for(
        "metadata/2.root.json", consistent_snapshot=True, sha256=SHA256
    ) == PutOptions(
        content_type="application/json", cache_control=IMMUTABLE_CACHE_CONTROL, sha256=SHA256
    )
    assert put_options_for(
        "metadata/timestamp.json", consistent_snapshot=True, short_max_age=10
    ) == (PutOptions(content_type="application/json", cache_control="public, max-age=10"))
