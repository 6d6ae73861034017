"""Safe names: role name encoding, metadata file names, target paths and file names."""

from __future__ import annotations

import hashlib

import pytest

from mirror.errors import MalformedMetadataError, UnsafeNameError
from mirror.trust import (
    encode_role_name,
    metadata_filename,
    target_filenames,
    validate_role_name,
    validate_target_path,
)


@pytest.mark.parametrize(
    ("name", "encoded"),
    [
        ("delegated", "delegated"),
        ("/delegatedrole", "%2Fdelegatedrole"),
        ("../delegatedrole", "..%2Fdelegatedrole"),
        ("?", "%3F"),
        ("#", "%23"),
        ("a b", "a%20b"),
        ("A-z_0.9~", "A-z_0.9~"),
        ("é", "%C3%A9"),
        ("%", "%25"),
    ],
)
def test_encode_role_name(name: str, encoded: str) -> None:
    """Role names are percent-encoded like quote(name, safe=''), upper-case hex."""
    assert encode_role_name(name) == encoded


def test_metadata_filename() -> None:
    """Versioned and unversioned metadata file names."""
    assert metadata_filename("snapshot", 3) == "3.snapshot.json"
    assert metadata_filename("snapshot", None) == "snapshot.json"
    assert metadata_filename("/weird", 7) == "7.%2Fweird.json"
    assert metadata_filename("../x", None) == "..%2Fx.json"


def test_metadata_filename_rejects_bad_version() -> None:
    """Version 0 is not a metadata version."""
    with pytest.raises(ValueError, match="version"):
        metadata_filename("root", 0)


@pytest.mark.parametrize("name", ["", "a\x00b", "x" * 230, "/" * 80])
def test_validate_role_name_rejects(name: str) -> None:
    """Empty names, NUL and names too long once encoded are unsafe."""
    with pytest.raises(UnsafeNameError):
        validate_role_name(name)


@pytest.mark.parametrize("name", ["a", "../x", "/", "..", "x" * 229])
def test_validate_role_name_accepts(name: str) -> None:
    """Names that encode into one file name are accepted."""
    assert validate_role_name(name) == name


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/etc/passwd",
        "a\\b",
        "a\x00b",
        "a\nb",
        "a\x7fb",
        "..",
        "../x",
        "a/../b",
        "a/./b",
        ".",
        "a//b",
        "a/",
        "C:",
        "C:/x",
        "c:evil",
        "a/" * 2049 + "a",
        "x" * 256,
        "a/" + "é" * 128,
    ],
)
def test_validate_target_path_rejects(path: str) -> None:
    """Paths that could escape or be read differently are UnsafeNameError."""
    with pytest.raises(UnsafeNameError):
        validate_target_path(path)


@pytest.mark.parametrize(
    "path",
    [
        "file.txt",
        "path/to/a/target_file.txt",
        "nonexistent artifact",
        "..hidden",
        "a..b/c",
        "x" * 255,
        "dir/C:",
        "%2e%2e/x",
    ],
)
def test_validate_target_path_accepts(path: str) -> None:
    """Ordinary paths, dots inside names and spaces are fine."""
    assert validate_target_path(path) == path


def test_target_filenames_consistent() -> None:
    """One content-addressed name per hash, sorted by algorithm name."""
    sha256 = hashlib.sha256(b"x").hexdigest()
    sha512 = hashlib.sha512(b"x").hexdigest()
    names = target_filenames(
        "path/to/file.txt", {"sha512": sha512, "sha256": sha256}, consistent_snapshot=True
    )
    assert names == [f"path/to/{sha256}.file.txt", f"path/to/{sha512}.file.txt"]
    assert target_filenames("f", {"sha256": sha256}, consistent_snapshot=True) == [f"{sha256}.f"]


def test_target_filenames_not_consistent() -> None:
    """Without consistent snapshots the path itself is the name."""
    assert target_filenames("a/b", {"sha256": "ab"}, consistent_snapshot=False) == ["a/b"]


@pytest.mark.parametrize("value", ["ABCDEF", "../x", "", "12/34", "g0"])
def test_target_filenames_rejects_non_hex(value: str) -> None:
    """Hash values become file names: only lower-case hex."""
    with pytest.raises(UnsafeNameError):
        target_filenames("a/b", {"sha256": value}, consistent_snapshot=True)


def test_target_filenames_validates_path() -> None:
    """The path is validated first."""
    with pytest.raises(UnsafeNameError):
        target_filenames("../evil", {"sha256": "ab"}, consistent_snapshot=True)


def test_target_filenames_needs_hashes() -> None:
    """Consistent snapshots need at least one hash."""
    with pytest.raises(MalformedMetadataError):
        target_filenames("a", {}, consistent_snapshot=True)


def test_target_filenames_too_long_segment() -> None:
    """A content-addressed name longer than a file name allows is refused."""
    sha512 = hashlib.sha512(b"x").hexdigest()
    with pytest.raises(UnsafeNameError):
        target_filenames("d/" + "n" * 200, {"sha512": sha512}, consistent_snapshot=True)


@pytest.mark.parametrize(
    "path",
    [
        "a\x1fb",
        "a\x01",
        "\x7f",
        "x" * 63 + "é" * 64,  # 63 + 128 bytes: fits
        "x" * 127 + "é" * 64,  # 255 bytes: fits exactly
        "é" * 63,
        "€" * 85,  # 255 bytes in 85 characters
    ],
)
def test_validate_target_path_control_and_multibyte(path: str) -> None:
    """Control characters (U+0000-U+001F, U+007F) are refused; segment length is
    counted in UTF-8 bytes, so a short segment of multi-byte characters passes up to
    exactly 255 bytes."""
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path):
        with pytest.raises(UnsafeNameError, match="control character"):
            validate_target_path(path)
    else:
        assert validate_target_path(path) == path
    with pytest.raises(UnsafeNameError, match="longer than 255 bytes"):
        validate_target_path("€" * 86)  # 258 bytes in 86 characters


@pytest.mark.parametrize(
    ("directory", "basename"),
    [
        ("d", "n" * 190),  # 64 + 1 + 190 = 255 bytes: fits
        ("d", "n" * 191),  # 256 bytes: refused
        ("d", "é" * 95),  # 64 + 1 + 190 bytes: fits
        ("d", "é" * 96),  # 257 bytes: refused
        ("/".join(["s" * 200] * 20), "n" * 30),  # 4115 bytes once prefixed: refused
        ("/".join(["s" * 200] * 20), "n" * 10),  # 4095 bytes: fits
        ("", "n" * 190),
        ("", "n" * 191),
    ],
)
def test_target_filenames_lengths_as_the_full_check(directory: str, basename: str) -> None:
    """A content-addressed name is refused exactly when validating it as a target path
    would refuse it (segment and path length in UTF-8 bytes), with that message."""
    sha256 = hashlib.sha256(b"x").hexdigest()
    path = f"{directory}/{basename}" if directory else basename
    name = f"{directory}/{sha256}.{basename}" if directory else f"{sha256}.{basename}"
    expected: str | None = None
    try:
        validate_target_path(name)
    except UnsafeNameError as exc:
        expected = str(exc)
    if expected is None:
        assert target_filenames(path, {"sha256": sha256}, consistent_snapshot=True) == [name]
        return
    with pytest.raises(UnsafeNameError) as excinfo:
        target_filenames(path, {"sha256": sha256}, consistent_snapshot=True)
    assert str(excinfo.value) == expected
