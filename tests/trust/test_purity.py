"""Purity of the verification core: no I/O, no clock, checked on the source (ast).

Covers every module of ``mirror/trust``, ``mirror/plan.py`` when it exists, and
``mirror/layout.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE_FILES = sorted((ROOT / "mirror" / "trust").glob("**/*.py"))
if (ROOT / "mirror" / "plan.py").exists():
    PURE_FILES.append(ROOT / "mirror" / "plan.py")
# The units of the command line (sizes, durations, timetables).
PURE_FILES.append(ROOT / "mirror" / "units.py")
# The destination's key names.
PURE_FILES.append(ROOT / "mirror" / "layout.py")
# The ledger's pure core (hashing, proofs, notes, entries).
PURE_FILES += [
    ROOT / "mirror" / "ledger" / f"{name}.py" for name in ("merkle", "frontier", "note", "entries")
]

FORBIDDEN_MODULES = frozenset(
    {
        "trio",
        "httpx",
        "boto3",
        "botocore",
        "os",
        "pathlib",
        "shutil",
        "socket",
        "subprocess",
        "time",
        "tempfile",
        "urllib.request",
        "io",
    }
)
FORBIDDEN_NAME_CALLS = frozenset({"open", "__import__", "exec", "eval", "input"})
FORBIDDEN_ATTRIBUTE_CALLS = frozenset(
    {
        ("datetime", "now"),
        ("datetime", "utcnow"),
        ("datetime", "today"),
        ("date", "today"),
        ("time", "time"),
        ("time", "monotonic"),
        ("importlib", "import_module"),
    }
)


def _forbidden_module(name: str) -> bool:
    parts = name.split(".")
    return any(".".join(parts[: i + 1]) in FORBIDDEN_MODULES for i in range(len(parts)))


def violations(source: str, filename: str = "<source>") -> list[str]:
    """Forbidden imports and calls in ``source``, as "line: what" strings."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found.extend(
                f"{node.lineno}: import {alias.name}"
                for alias in node.names
                if _forbidden_module(alias.name)
            )
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if _forbidden_module(node.module):
                found.append(f"{node.lineno}: from {node.module} import")
            found.extend(
                f"{node.lineno}: from {node.module} import {alias.name}"
                for alias in node.names
                if _forbidden_module(f"{node.module}.{alias.name}")
            )
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in FORBIDDEN_NAME_CALLS:
                found.append(f"{node.lineno}: call {func.id}()")
            elif isinstance(func, ast.Attribute):
                owner = func.value
                owner_name = (
                    owner.id
                    if isinstance(owner, ast.Name)
                    else owner.attr
                    if isinstance(owner, ast.Attribute)
                    else None
                )
                if (owner_name, func.attr) in FORBIDDEN_ATTRIBUTE_CALLS:
                    found.append(f"{node.lineno}: call {owner_name}.{func.attr}()")
    return found


def test_pure_files_found() -> None:
    """The checker actually sees the trust package."""
    names = {path.name for path in PURE_FILES}
    assert {"__init__.py", "trusted_set.py", "delegations.py", "names.py"} <= names


@pytest.mark.parametrize("path", PURE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_module_is_pure(path: Path) -> None:
    """No I/O or clock imports, no open()/datetime.now()/time.time() calls."""
    assert violations(path.read_text(encoding="utf-8"), str(path)) == []


@pytest.mark.parametrize(
    "source",
    [
        "import os",
        "import os.path",
        "from os import path",
        "from pathlib import Path",
        "import trio",
        "from httpx import AsyncClient",
        "import boto3",
        "from botocore.exceptions import ClientError",
        "import time",
        "from urllib.request import urlopen",
        "from urllib import request",
        "open('x')",
        "datetime.now()",
        "datetime.datetime.now(tz)",
        "datetime.utcnow()",
        "date.today()",
        "time.time()",
        "import subprocess",
        "import shutil",
        "import socket",
        "import tempfile",
    ],
)
def test_checker_catches(source: str) -> None:
    """Each forbidden construct is reported (the checker is not vacuous)."""
    assert violations(source) != []


@pytest.mark.parametrize(
    "source",
    [
        "from urllib.parse import quote",
        "import hashlib",
        "from datetime import UTC, datetime",
        "x.now_or_never()",
        "from mirror.trust import names",
    ],
)
def test_checker_allows(source: str) -> None:
    """Pure standard-library helpers are allowed."""
    assert violations(source) == []
