"""Partial mirrors (``mirror.filters``): the glob semantics of ``--include`` and
``--exclude``, ``--role`` selection, their precedence, case and separators, and the
selection's fingerprint (stored with the published state: a different selection
makes the next run look at every target again)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirror.cli import main
from mirror.errors import UsageError
from mirror.filters import TargetFilter, glob_to_regex


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        # * and ? stay within one segment
        pytest.param("*.whl", "a.whl", True, id="star-in-segment"),
        pytest.param("*.whl", "pkgs/a.whl", False, id="star-does-not-cross-slash"),
        pytest.param("pkgs/*", "pkgs/a.whl", True, id="star-whole-segment"),
        pytest.param("pkgs/*", "pkgs/sub/a.whl", False, id="star-one-segment-only"),
        pytest.param("pkgs/*", "pkgs/", True, id="star-matches-empty"),
        pytest.param("a?c", "abc", True, id="question-one-char"),
        pytest.param("a?c", "a/c", False, id="question-not-slash"),
        pytest.param("a?c", "ac", False, id="question-exactly-one"),
        # ** crosses segments
        pytest.param("**", "a/b/c.txt", True, id="double-star-everything"),
        pytest.param("**.gz", "a/b/c.tar.gz", True, id="double-star-suffix"),
        pytest.param("pkgs/**", "pkgs/a/b/c", True, id="double-star-subtree"),
        pytest.param("pkgs/**", "pkgs", False, id="double-star-not-the-directory-itself"),
        pytest.param("**/*.whl", "pkgs/a.whl", True, id="double-star-slash-nested"),
        pytest.param("**/*.whl", "a.whl", False, id="double-star-slash-needs-a-slash"),
        pytest.param("a/**/b", "a/x/y/b", True, id="double-star-middle"),
        pytest.param("a/**/b", "a/b", False, id="double-star-middle-needs-two-slashes"),
        # the whole path, literally otherwise
        pytest.param("a.txt", "a.txt", True, id="literal"),
        pytest.param("a.txt", "dir/a.txt", False, id="whole-path-not-suffix"),
        pytest.param("a.txt", "a.txt.sig", False, id="whole-path-not-prefix"),
        pytest.param("a.txt", "aXtxt", False, id="dot-is-literal"),
        pytest.param("a+(b)", "a+(b)", True, id="regex-characters-literal"),
        pytest.param("*.TXT", "a.txt", False, id="case-sensitive"),
        pytest.param("a\\b", "a\\b", True, id="backslash-literal"),
        pytest.param("a\\*", "a\\x", True, id="backslash-is-no-escape"),
        pytest.param("a\\*", "a*", False, id="backslash-does-not-escape-star"),
        pytest.param("**", "line\nbreak", True, id="double-star-crosses-newline"),
        pytest.param("*", "line\nbreak", True, id="star-crosses-newline"),
        # character classes
        pytest.param("v[0-9].txt", "v7.txt", True, id="class-range"),
        pytest.param("v[0-9].txt", "vx.txt", False, id="class-range-miss"),
        pytest.param("v[!0-9].txt", "vx.txt", True, id="class-negated"),
        pytest.param("v[!0-9].txt", "v7.txt", False, id="class-negated-miss"),
        pytest.param("a[b", "a[b", True, id="unclosed-bracket-literal"),
        pytest.param("[\\]", "\\", True, id="backslash-in-class-literal"),
    ],
)
def test_glob_semantics(pattern: str, path: str, matches: bool) -> None:
    """Patterns match the whole path, case-sensitively: ``*``/``?`` within a segment,
    ``**`` across segments (``**/x`` needs a slash), ``[...]`` and ``[!...]``
    classes; backslash and regular-expression characters are literal."""
    assert bool(glob_to_regex(pattern).fullmatch(path)) is matches
    assert TargetFilter(include=(pattern,)).selects(path, "targets") is matches
    assert TargetFilter(exclude=(pattern,)).selects(path, "targets") is not matches


@pytest.mark.parametrize(
    ("selection", "path", "role", "selected"),
    [
        pytest.param(TargetFilter(), "any/thing", "any-role", True, id="no-filter-everything"),
        # include: any one of them
        pytest.param(
            TargetFilter(include=("a/*", "b/*")), "b/x", "targets", True, id="include-any"
        ),
        pytest.param(
            TargetFilter(include=("a/*", "b/*")), "c/x", "targets", False, id="include-none"
        ),
        # exclude: any one of them
        pytest.param(
            TargetFilter(exclude=("*.sig", "*.asc")), "x.asc", "targets", False, id="exclude-any"
        ),
        pytest.param(
            TargetFilter(exclude=("*.sig", "*.asc")), "x.tgz", "targets", True, id="exclude-none"
        ),
        # precedence: exclude wins over include
        pytest.param(
            TargetFilter(include=("pkgs/**",), exclude=("**.sig",)),
            "pkgs/a.tgz.sig",
            "targets",
            False,
            id="exclude-over-include",
        ),
        pytest.param(
            TargetFilter(include=("pkgs/**",), exclude=("**.sig",)),
            "pkgs/a.tgz",
            "targets",
            True,
            id="include-not-excluded",
        ),
        pytest.param(
            TargetFilter(include=("x",), exclude=("x",)),
            "x",
            "targets",
            False,
            id="same-pattern-both",
        ),
        # --role: fnmatch on the role name; top-level targets is a role like any other
        pytest.param(TargetFilter(roles=("bins-*",)), "a", "bins-3f", True, id="role-glob"),
        pytest.param(
            TargetFilter(roles=("bins-*",)), "a", "targets", False, id="role-excludes-targets"
        ),
        pytest.param(TargetFilter(roles=("targets",)), "a", "targets", True, id="role-targets"),
        pytest.param(
            TargetFilter(roles=("bins-*", "targets")), "a", "targets", True, id="role-any"
        ),
        pytest.param(
            TargetFilter(roles=("BINS-*",)), "a", "bins-3f", False, id="role-case-sensitive"
        ),
        pytest.param(
            TargetFilter(roles=("org/*",)), "a", "org/team/x", True, id="role-star-crosses-slash"
        ),
        pytest.param(
            TargetFilter(roles=("bins-?",)), "a", "bins-3f", False, id="role-question-one"
        ),
        pytest.param(TargetFilter(roles=("bins-[0-7]*",)), "a", "bins-3f", True, id="role-class"),
        # all three: each must agree
        pytest.param(
            TargetFilter(include=("pkgs/**",), roles=("bins-*",)),
            "pkgs/a",
            "targets",
            False,
            id="role-and-include-role-fails",
        ),
        pytest.param(
            TargetFilter(include=("pkgs/**",), roles=("bins-*",)),
            "docs/a",
            "bins-0",
            False,
            id="role-and-include-path-fails",
        ),
        pytest.param(
            TargetFilter(include=("pkgs/**",), exclude=("**.sig",), roles=("bins-*",)),
            "pkgs/a",
            "bins-0",
            True,
            id="all-three-agree",
        ),
    ],
)
def test_selection(selection: TargetFilter, path: str, role: str, selected: bool) -> None:
    """A target is copied when its role matches a ``--role`` pattern (if any), its
    path an ``--include`` pattern (if any) and no ``--exclude`` pattern. Role
    patterns are ``fnmatch`` globs (case-sensitive; ``*`` also crosses ``/``)."""
    assert selection.selects(path, role) is selected


@pytest.mark.parametrize(
    ("selection", "everything"),
    [
        pytest.param(TargetFilter(), True, id="none"),
        pytest.param(TargetFilter(include=("**",)), False, id="include-everything-still-a-filter"),
        pytest.param(TargetFilter(exclude=("x",)), False, id="exclude"),
        pytest.param(TargetFilter(roles=("*",)), False, id="role"),
    ],
)
def test_everything(selection: TargetFilter, everything: bool) -> None:
    """``everything`` is true only when no pattern at all is given (even one that
    selects every path makes it a partial mirror's selection)."""
    assert selection.everything is everything
    assert (selection.fingerprint() == "all") is everything


@pytest.mark.parametrize(
    ("selection", "fingerprint"),
    [
        pytest.param(TargetFilter(), "all", id="everything"),
        pytest.param(
            TargetFilter(include=("pkgs/**",), exclude=("**.sig",), roles=("bins-*",)),
            "3f53d51cd7aef57f",
            id="all-three",
        ),
        pytest.param(TargetFilter(include=("a", "b")), "428a948cf9cc1d31", id="include-a-b"),
        pytest.param(TargetFilter(include=("b", "a")), "1a101acbce1bd791", id="include-b-a"),
        pytest.param(TargetFilter(include=("x",)), "55b12936f3411498", id="include-x"),
        pytest.param(TargetFilter(exclude=("x",)), "918222d5374a4877", id="exclude-x"),
    ],
)
def test_fingerprint_is_pinned(selection: TargetFilter, fingerprint: str) -> None:
    """The fingerprint is stored with the published state, so its value is part of
    the on-disk format: 16 hex digits of the sha256 of the JSON list
    ``[include, exclude, roles]``, or ``all`` without any filter."""
    assert selection.fingerprint() == fingerprint


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        pytest.param(
            TargetFilter(include=("a",), roles=("r",)),
            TargetFilter(include=("a",), roles=("r",)),
            True,
            id="equal-selections",
        ),
        pytest.param(
            TargetFilter(include=("a", "b")),
            TargetFilter(include=("b", "a")),
            False,
            id="pattern-order-counts",
        ),
        pytest.param(
            TargetFilter(include=("a",)),
            TargetFilter(include=("a", "a")),
            False,
            id="repeated-pattern-counts",
        ),
        pytest.param(
            TargetFilter(include=("x",)),
            TargetFilter(exclude=("x",)),
            False,
            id="include-vs-exclude",
        ),
        pytest.param(
            TargetFilter(exclude=("x",)), TargetFilter(roles=("x",)), False, id="exclude-vs-role"
        ),
        pytest.param(
            TargetFilter(include=("a,b",)),
            TargetFilter(include=("a", "b")),
            False,
            id="no-ambiguous-joining",
        ),
    ],
)
def test_fingerprint_follows_the_patterns_as_given(
    first: TargetFilter, second: TargetFilter, same: bool
) -> None:
    """The fingerprint is computed from the patterns exactly as given, in order: the
    same selection written in another order (or with a repeated pattern) counts as
    a different selection — the next run then looks at every target again, which
    costs time but never misses a target. Where a pattern goes (include, exclude,
    role) is part of it."""
    assert (first.fingerprint() == second.fingerprint()) is same
    assert (first == second) is same


def test_filter_is_a_frozen_value() -> None:
    """A ``TargetFilter`` is immutable and compares by its patterns (the compiled
    expressions do not take part)."""
    selection = TargetFilter(include=("a/*",))
    with pytest.raises(AttributeError):
        selection.include = ("b",)  # type: ignore[misc]
    assert selection == TargetFilter(include=("a/*",))
    assert hash(selection) == hash(TargetFilter(include=("a/*",)))
    assert "a/*" in repr(selection)
    assert "re.compile" not in repr(selection)


@pytest.mark.parametrize(
    "pattern",
    [
        pytest.param("[]", id="empty-class"),
        pytest.param("[z-a]", id="reversed-range"),
        pytest.param("pkgs/[9-0]*.whl", id="reversed-range-in-a-path"),
    ],
)
def test_a_bad_glob_is_a_usage_error(pattern: str) -> None:
    """A glob that is no valid pattern is a usage error naming it (exit 2), raised when
    the filter is built, never a crash (exit 70) when it is first matched."""
    with pytest.raises(UsageError, match="not a valid glob"):
        TargetFilter(include=(pattern,))
    with pytest.raises(UsageError, match="not a valid glob"):
        TargetFilter(exclude=(pattern,))


@pytest.mark.parametrize("option", ["--include", "--exclude"])
def test_a_bad_glob_on_the_command_line_is_exit_2_before_anything_is_written(
    option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``sync --include '[z-a]'``: exit 2 with one line naming the option and the
    pattern, before the destination is touched (nothing is created there)."""
    dest = tmp_path / "dest"
    status = main(
        ["sync", "--upstream", "http://127.0.0.1:9/", "--dest", str(dest), option, "[z-a]"]
    )
    assert status == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if "ERROR" in line]
    assert len(lines) == 1
    assert option in lines[0]
    assert "'[z-a]'" in lines[0]
    assert not dest.exists()
