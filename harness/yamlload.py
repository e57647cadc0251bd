"""Load YAML while keeping the line/column of every key and value, so errors can point at them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import Problem, TopologyError

Path = tuple[str | int, ...]


@dataclass
class Located:
    """Parsed YAML data plus a map from data path to 1-based (line, column)."""

    file: str
    data: Any
    marks: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def where(self, path: Path) -> tuple[int | None, int | None]:
        """Line/column of the deepest known prefix of ``path`` (a missing key points at its parent)."""
        p = tuple(path)
        while p:
            if p in self.marks:
                return self.marks[p]
            p = p[:-1]
        return self.marks.get((), (None, None))

    def problem(self, path: Path, message: str, fix: str = "") -> Problem:
        line, col = self.where(path)
        return Problem(self.file, line, col, dotted(path), message, fix)


def dotted(path: Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _walk(node: yaml.Node, path: Path, loc: Located, problems: list[Problem]) -> None:
    loc.marks.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            kpath = path + (key,)
            if key in seen:
                problems.append(
                    Problem(loc.file, key_node.start_mark.line + 1, key_node.start_mark.column + 1,
                            dotted(kpath), f"duplicate key '{key}' (first at line {seen[key]})",
                            "remove one of the two; YAML would silently keep only the last")
                )
                continue
            seen[key] = key_node.start_mark.line + 1
            loc.marks[kpath] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            _walk(value_node, kpath, loc, problems)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            loc.marks[path + (i,)] = (item.start_mark.line + 1, item.start_mark.column + 1)
            _walk(item, path + (i,), loc, problems)


def load_text(text: str, file: str) -> Located:
    """Parse ``text``; raise TopologyError with the exact position on syntax errors."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        col = mark.column + 1 if mark else None
        msg = f"YAML syntax error: {exc.problem or exc}"
        if exc.context:
            msg += f" ({exc.context})"
        raise TopologyError([Problem(file, line, col, "", msg,
                                     "check indentation and quoting around this position")]) from None
    loc = Located(file, data)
    problems: list[Problem] = []
    if node is not None:
        _walk(node, (), loc, problems)
    if problems:
        raise TopologyError(problems)
    return loc


def load_file(path: str) -> Located:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise TopologyError([Problem(path, None, None, "", f"cannot read file: {exc.strerror}",
                                     "check the path")]) from None
    return load_text(text, path)
