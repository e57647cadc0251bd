"""What the validation tests share: an example topology marks with ``#<`` the line its problem
must point at; `expect` checks the message, the dotted field and that line, `ok` that it passes.
The core's cases are in test_validate.py, each backend's in test_validate_<backend>.py."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from harness.errors import Problem, TopologyError
from harness.host.facts import PROFILES, HostFacts
from harness.spec.validate import Resolved, validate_text

MARK = "#<"


def yaml_text(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def _marked_line(text: str) -> int:
    lines = [i + 1 for i, line in enumerate(text.splitlines()) if MARK in line]
    assert len(lines) == 1, f"example must mark exactly one line with {MARK!r}"
    return lines[0]


def _facts(profile: str | HostFacts) -> HostFacts:
    return PROFILES[profile] if isinstance(profile, str) else profile


def problems_of(text: str, profile: str | HostFacts = "ci") -> list[Problem]:
    with pytest.raises(TopologyError) as ei:
        validate_text(yaml_text(text), _facts(profile))
    problems = ei.value.problems
    assert problems, "TopologyError without problems"
    return problems


def expect(text: str, fragment: str, field: str, profile: str | HostFacts = "ci", count: int = 1,
           fix: str | None = None) -> Problem:
    """``text`` fails with exactly ``count`` problems, one of which has ``fragment`` in its message,
    the dotted ``field`` and the line marked in ``text``."""
    text = yaml_text(text)
    line = _marked_line(text)
    problems = problems_of(text, profile)
    listing = "\n".join(f"  line {p.line}: [{p.field}] {p.message}" for p in problems)
    hits = [p for p in problems if fragment in p.message and p.field == field and p.line == line]
    assert hits, f"expected [{field}] at line {line} with {fragment!r}; got:\n{listing}"
    assert len(problems) == count, f"expected {count} problem(s), got:\n{listing}"
    p = hits[0]
    assert p.file == "<test>.yaml"
    assert p.column is not None and p.column >= 1
    if fix is not None:
        assert fix in p.fix, f"fix {p.fix!r} lacks {fix!r}"
    return p


def ok(text: str, profile: str | HostFacts = "ci") -> Resolved:
    return validate_text(yaml_text(text), _facts(profile))[1]


def rule_params(cases: list[Any]) -> list[Any]:
    """RULE_CASES entries (text, fragment, field, profile[, count]) with the count filled in."""
    out = []
    for p in cases:
        text, fragment, field, profile, *count = p.values
        out.append(pytest.param(text, fragment, field, profile, count[0] if count else 1, id=p.id))
    return out
