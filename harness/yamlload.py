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


#: a topology is a few KiB; anything near this is a mistake or an attack on the loader
MAX_BYTES = 1 << 20


def _walk(node: yaml.Node, path: Path, loc: Located, problems: list[Problem], visited: set[int] | None = None) -> None:
    visited = set() if visited is None else visited
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
        # an alias makes the same node appear twice: a few of them nest into gigabytes (an
        # "alias bomb"), a recursive one never ends; topologies have no use for either
        if id(node) in visited:
            problems.append(Problem(loc.file, node.start_mark.line + 1, node.start_mark.column + 1, dotted(path),
                                    "YAML aliases of mappings or lists (*name) are not accepted in a topology",
                                    "write the value out where it is used"))
            return
        visited.add(id(node))
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
            _walk(value_node, kpath, loc, problems, visited)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            loc.marks[path + (i,)] = (item.start_mark.line + 1, item.start_mark.column + 1)
            _walk(item, path + (i,), loc, problems, visited)


def load_text(text: str, file: str) -> Located:
    """Parse ``text``; raise TopologyError with the exact position on syntax errors."""
    if len(text) > MAX_BYTES:
        raise TopologyError([Problem(file, None, None, "", f"the file has {len(text)} characters; a topology has a few "
                                     f"thousand (at most {MAX_BYTES})", "check that this is the right file")])
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        col = mark.column + 1 if mark else None
        msg = f"YAML syntax error: {exc.problem or exc}"
        if exc.context:
            msg += f" ({exc.context})"
        raise TopologyError([Problem(file, line, col, "", msg,
                                     "check indentation and quoting around this position")]) from None
    loc = Located(file, None)
    problems: list[Problem] = []
    if node is not None:
        _walk(node, (), loc, problems)
    if problems:
        raise TopologyError(problems)
    loc.data = yaml.safe_load(text)  # no aliases of collections left: nothing to expand
    return loc


def load_file(path: str) -> Located:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise TopologyError([Problem(path, None, None, "", f"cannot read file: {exc.strerror}",
                                     "check the path")]) from None
    except UnicodeDecodeError as exc:
        raise TopologyError([Problem(path, None, None, "", f"not UTF-8 text (byte {exc.start}: {exc.reason})",
                                     "save the topology as UTF-8")]) from None
    return load_text(text, path)
