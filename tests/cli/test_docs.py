"""The documentation shipped in the repository: the pages users and contributors
need are there, and no page holds an absolute path of somebody's machine."""

from __future__ import annotations

import re
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[2]
_PAGES = ("threat-model-and-invariants.md", "architecture.md", "contributing.md", "roadmap.md")
_MACHINE_PATH = re.compile(r"(?<![\w.])/(?:work|home|Users|root|tmp)/[\w.-]+")


def test_docs_pages_exist_and_the_readme_links_them() -> None:
    """docs/ holds the threat model, architecture, contributing and roadmap pages,
    linked from the README; the helpers' working notes are gone."""
    docs = _REPO_ROOT / "docs"
    readme = (_REPO_ROOT / "README.md").read_text()
    for page in _PAGES:
        assert (docs / page).read_text().startswith("# "), page
        assert f"(docs/{page})" in readme, page
    assert not (docs / "HELPERS-COMMON.md").exists()


def test_no_machine_paths_in_docs_readme_or_deploy() -> None:
    """No absolute path of a developer's machine (/work/..., /home/..., /tmp/...) in
    the documentation, the README or the deployment files."""
    files = [*sorted((_REPO_ROOT / "docs").glob("*.md")), _REPO_ROOT / "README.md"]
    files += [p for p in sorted((_REPO_ROOT / "deploy").rglob("*")) if p.is_file()]
    for path in files:
        found = _MACHINE_PATH.findall(path.read_text())
        assert not found, f"{path.relative_to(_REPO_ROOT)}: {found}"
