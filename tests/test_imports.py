"""The import graph of ``mirror``: no circles, and nothing outside ``mirror/trust``
imports its private modules. Checked on the source (``ast``): every ``import`` and
``from … import`` counts, at module level, inside functions and under
``TYPE_CHECKING``."""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mirror"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.glob("**/*.py"))}


def imported(path: Path, name: str, known: Mapping[str, Path]) -> Iterator[str]:
    """Every ``mirror`` module the source of ``name`` imports, resolved to a module
    (``from mirror.a import b`` is ``mirror.a.b`` when that is a module, else
    ``mirror.a``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base != "mirror" and not base.startswith("mirror."):
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                if candidate in known:
                    yield candidate
                elif base in known:
                    yield base


def graph() -> dict[str, set[str]]:
    known = modules()
    return {
        name: {target for target in imported(path, name, known) if target != name}
        for name, path in known.items()
    }


def cycles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        pytest.param({"a": {"b"}, "b": set()}, [], id="chain"),
        pytest.param({"a": {"b"}, "b": {"a"}}, [["a", "b"]], id="pair"),
        pytest.param(
            {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]], id="ring"
        ),
    ],
)
def test_cycles_finds_strongly_connected_components(
    edges: dict[str, set[str]], expected: list[list[str]]
) -> None:
    """The cycle finder reports each circle once, with its modules, and nothing else."""
    assert cycles(edges) == expected


def test_imports_resolve_every_form(tmp_path: Path) -> None:
    """Module-level, function-level, ``TYPE_CHECKING``, relative and ``from package
    import module`` imports all count as edges to modules."""
    source = (
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "import mirror.errors\n"
        "from mirror import sync\n"
        "from .trust import TrustedSet\n"
        "if TYPE_CHECKING:\n"
        "    from mirror.policy.gate import PolicyGate\n"
        "def f() -> None:\n"
        "    from mirror.ledger import run\n"
    )
    path = tmp_path / "example.py"
    path.write_text(source)
    known = dict.fromkeys(
        [
            "mirror",
            "mirror.errors",
            "mirror.sync",
            "mirror.trust",
            "mirror.policy.gate",
            "mirror.ledger.run",
        ],
        path,
    )
    assert sorted(imported(path, "mirror.example", known)) == [
        "mirror.errors",
        "mirror.ledger.run",
        "mirror.policy.gate",
        "mirror.sync",
        "mirror.trust",
    ]


def test_no_import_circles() -> None:
    """No two ``mirror`` modules import each other, directly or through others."""
    found = cycles(graph())
    assert not found, "import circles: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_private_trust_imports() -> None:
    """Only ``mirror/trust`` imports ``mirror.trust._*``: everyone else uses the
    public names of ``mirror.trust``."""
    edges = graph()
    offenders = sorted(
        f"{name} imports {target}"
        for name, targets in edges.items()
        if not (name == "mirror.trust" or name.startswith("mirror.trust."))
        for target in targets
        if target.startswith("mirror.trust._")
    )
    assert offenders == []


@pytest.mark.parametrize(
    "module",
    [
        "mirror.sync",
        "mirror.refresh",
        "mirror.walk",
        "mirror.publish",
        "mirror.published",
        "mirror.copying",
        "mirror.hooks",
    ],
)
def test_the_engine_imports_neither_policy_nor_ledger(module: str) -> None:
    """The engine reaches the policy gate and the ledger witness only through the
    Protocols of ``mirror.hooks``: no import of ``mirror.policy`` or ``mirror.ledger``."""
    edges = graph()
    assert (
        sorted(
            target
            for target in edges[module]
            if target.split(".")[:2] in (["mirror", "policy"], ["mirror", "ledger"])
        )
        == []
    )
