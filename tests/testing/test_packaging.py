"""The wheel holds the mirror, not the test server and repository generator."""

from __future__ import annotations

import tomllib
from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_packages_exclude_the_testing_kit() -> None:
    """The packages setuptools selects for the wheel are ``mirror`` and its
    sub-packages only: ``tuf_mirror_testing`` (signing code, a test HTTP server)
    stays in the checkout, because a tool that holds no keys ships none."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = find_packages(where=str(ROOT), include=include)
    assert "mirror" in packages
    assert "mirror.trust" in packages
    assert all(name == "mirror" or name.startswith("mirror.") for name in packages)
    assert not (ROOT / "mirror" / "testing").exists()
    assert (ROOT / "tuf_mirror_testing" / "server.py").exists()
