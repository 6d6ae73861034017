"""Partial mirrors: which targets a run copies (``--include``, ``--exclude``,
``--role``). Pure: no I/O.

Patterns match the whole target path: ``*`` and ``?`` stay within one ``/``-separated
segment, ``**`` crosses segments, ``[...]`` is a character class. A target is copied
when it matches an ``--include`` pattern (or none are given), matches no
``--exclude`` pattern, and is listed by a role matching a ``--role`` pattern (or none
are given; top-level ``targets`` is a role like any other).

Filters never apply to metadata: every role is verified and mirrored whole, so
clients of a partial mirror still verify it against the upstream's root and simply
find some targets absent.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from mirror.errors import UsageError

__all__ = ["TargetFilter", "glob_to_regex"]


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Compile a path glob: ``**`` any characters, ``*`` / ``?`` within a segment."""
    out: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**", index):
            out.append(".*")
            index += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.find("]", index + 1)
            if end == -1:
                out.append(re.escape(char))
            else:
                body = pattern[index + 1 : end]
                negate = body.startswith("!")
                body = body[1:] if negate else body
                out.append("[" + ("^" if negate else "") + body.replace("\\", "\\\\") + "]")
                index = end
        else:
            out.append(re.escape(char))
        index += 1
    try:
        return re.compile("".join(out), re.DOTALL)
    except re.error as exc:  # e.g. an empty or reversed character class: "[]", "[z-a]"
        raise UsageError(f"not a valid glob: {pattern!r} ({exc})") from None


@dataclass(frozen=True, slots=True)
class TargetFilter:
    """The selection of targets a partial mirror copies; see the module docstring."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    _include: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)
    _exclude: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_include", tuple(glob_to_regex(p) for p in self.include))
        object.__setattr__(self, "_exclude", tuple(glob_to_regex(p) for p in self.exclude))

    @property
    def everything(self) -> bool:
        """True when nothing is filtered out."""
        return not (self.include or self.exclude or self.roles)

    def selects(self, path: str, role: str) -> bool:
        """Whether the target ``path`` listed by ``role`` is copied."""
        if self.roles and not any(fnmatchcase(role, pattern) for pattern in self.roles):
            return False
        if self._include and not any(rx.fullmatch(path) for rx in self._include):
            return False
        return not any(rx.fullmatch(path) for rx in self._exclude)

    def fingerprint(self) -> str:
        """A stable digest of the selection: a run whose selection differs from the
        previous run's looks at every target again, not only at new ones."""
        if self.everything:
            return "all"
        text = json.dumps([self.include, self.exclude, self.roles])
        return hashlib.sha256(text.encode()).hexdigest()[:16]
