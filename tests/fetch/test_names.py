"""Joining names onto opaque base URLs."""

from __future__ import annotations

import pytest

from mirror.errors import UnsafeNameError
from mirror.fetch.names import join_url, url_path


@pytest.mark.parametrize(
    ("base", "path", "url"),
    [
        ("http://h/metadata", "1.root.json", "http://h/metadata/1.root.json"),
        ("http://h/metadata/", "1.root.json", "http://h/metadata/1.root.json"),
        ("http://h/a%2Fb/%5Bx%5D", "t.json", "http://h/a%2Fb/%5Bx%5D/t.json"),
        ("http://h", "timestamp.json", "http://h/timestamp.json"),
    ],
)
def test_join_url_adds_exactly_one_slash(base: str, path: str, url: str) -> None:
    """Bases are opaque: joined with exactly one '/', their encoding untouched."""
    assert join_url(base, path) == url


def test_target_names_are_encoded_segment_wise() -> None:
    """Target paths are raw: each segment is percent-encoded, '/' separators kept."""
    assert url_path("targets", "a b%c") == "a%20b%25c"
    assert url_path("targets", "dir/sub dir/f?#.txt") == "dir/sub%20dir/f%3F%23.txt"
    assert url_path("targets", "ünï/文件") == "%C3%BCn%C3%AF/%E6%96%87%E4%BB%B6"


@pytest.mark.parametrize(
    ("name", "path"),
    [
        pytest.param("files/ab/file-0001.bin", "files/ab/file-0001.bin", id="unreserved"),
        pytest.param("a~b_c.d-e/F9", "a~b_c.d-e/F9", id="unreserved-punctuation"),
        pytest.param("a+b/c=d", "a%2Bb/c%3Dd", id="sub-delims"),
        pytest.param("x:y@z", "x%3Ay%40z", id="colon-at"),
        pytest.param("a%2Fb", "a%252Fb", id="percent"),
        pytest.param("dir/ü", "dir/%C3%BC", id="non-ascii"),
    ],
)
def test_target_name_path_with_and_without_encoding(name: str, path: str) -> None:
    """A target name of RFC 3986 unreserved characters is its own URL path (the
    fast path); any other character is percent-encoded, segment by segment."""
    assert url_path("targets", name) == path


def test_metadata_names_are_used_verbatim() -> None:
    """Metadata names are already percent-encoded by the caller: not encoded again."""
    assert url_path("metadata", "1.a%2Fb.json") == "1.a%2Fb.json"
    assert url_path("metadata", "3.%5Bx%5D.json") == "3.%5Bx%5D.json"


@pytest.mark.parametrize(
    "name", ["", "..", "../x", "a/../b", "/abs", "a//b", "a/", "./a", "a\\b", "a\0b"]
)
@pytest.mark.parametrize("namespace", ["metadata", "targets"])
def test_unsafe_names_are_refused(namespace: str, name: str) -> None:
    """Names with empty, '.' or '..' segments, backslashes or NUL are refused."""
    with pytest.raises(UnsafeNameError):
        url_path(namespace, name)  # type: ignore[arg-type]
