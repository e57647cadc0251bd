"""Load YAML while keeping the line/column of every key and value, so errors can point at them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from harness.errors import Problem, TopologyError

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
#: a topology nests a few levels (nodes[0].disks[0]); PyYAML's composer recurses once per level
#: and a few hundred `[` end in a RecursionError, so depth is checked on the (flat) event stream first
MAX_DEPTH = 32
#: no number in a topology needs more digits than a 64-bit integer has (sizes, counts, options)
MAX_DIGITS = 19
_TAG = "tag:yaml.org,2002:"
#: what a topology's values may be: no python/* objects, sets, binary or custom ! tags
PLAIN_TAGS = frozenset(_TAG + t for t in ("str", "int", "float", "bool", "null", "seq", "map", "timestamp"))


def _at(loc: Located, node: yaml.Node, path: Path, message: str, fix: str) -> Problem:
    return Problem(loc.file, node.start_mark.line + 1, node.start_mark.column + 1, dotted(path), message, fix)


def _scalar(node: yaml.ScalarNode, path: Path, loc: Located, problems: list[Problem]) -> None:
    """A scalar whose construction would fail or overflow later: refused here, where its mark is."""
    if node.tag == _TAG + "int" and sum(c.isdigit() for c in node.value) > MAX_DIGITS:
        problems.append(_at(loc, node, path, f"a number of {sum(c.isdigit() for c in node.value)} digits is not "
                            "meaningful here", "give a size with a unit (e.g. 2G) or a small number"))
    elif node.tag == _TAG + "timestamp":
        try:
            yaml.constructor.SafeConstructor().construct_yaml_timestamp(node)
        except ValueError as exc:
            problems.append(_at(loc, node, path, f"{node.value!r} reads as a date, and not a valid one ({exc})",
                                "quote the value if it is meant as text"))


def _walk(node: yaml.Node, path: Path, loc: Located, problems: list[Problem], visited: set[int] | None = None) -> None:
    visited = set() if visited is None else visited
    if node.tag not in PLAIN_TAGS:
        problems.append(_at(loc, node, path, f"the YAML tag {node.tag!r} is not accepted in a topology",
                            "remove the !tag: a topology holds only text, numbers, true/false, lists and mappings"))
        return
    if isinstance(node, yaml.ScalarNode):
        _scalar(node, path, loc, problems)
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
            if key_node.tag == _TAG + "merge":
                problems.append(_at(loc, key_node, path, "YAML merge keys (<<) are not accepted in a topology",
                                    "write the keys out where they are used"))
                continue
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in PLAIN_TAGS:
                problems.append(_at(loc, key_node, path, "a key must be a plain name, not a list, a mapping or a "
                                    "tagged value ('? [a, b]')", "write the key as a name, e.g. nodes:"))
                continue
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
        _depth(text, file)
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
    try:  # no aliases of collections, tags or odd scalars left: this cannot expand or run anything
        loc.data = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, OverflowError, RecursionError) as exc:  # a case _walk does not know yet
        mark = getattr(exc, "problem_mark", None)
        raise TopologyError([Problem(file, mark.line + 1 if mark else None, mark.column + 1 if mark else None, "",
                                     f"cannot read this YAML: {getattr(exc, 'problem', None) or exc}",
                                     "write plain text, numbers, lists and mappings")]) from None
    return loc


@dataclass
class _Frame:
    """An open collection while the events are read: where it is, and what comes next in it."""

    mapping: bool
    path: Path
    at: str | int | None  # the current key or index (None: a mapping's key not read yet)
    want_key: bool = True


def _depth(text: str, file: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH, read from the parser's events (which do not recurse),
    located at the data path where it happens."""
    stack: list[_Frame] = []

    def here() -> Path:
        if not stack:
            return ()
        top = stack[-1]
        return top.path + ((top.at,) if top.at is not None else ())

    def consumed(key: str | None = None) -> None:  # a node ended in the top frame
        if not stack:
            return
        top = stack[-1]
        if not top.mapping:
            top.at = int(top.at or 0) + 1
        elif top.want_key:
            top.at, top.want_key = key, False
        else:
            top.at, top.want_key = None, True

    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            if len(stack) >= MAX_DEPTH:
                line, col = (event.start_mark.line + 1, event.start_mark.column + 1) if event.start_mark else (None, None)
                raise TopologyError([Problem(file, line, col, dotted(here()[:4]),
                                             f"lists or mappings nested more than {MAX_DEPTH} deep",
                                             "a topology nests a few levels; check the brackets here")])
            in_key = bool(stack) and stack[-1].mapping and stack[-1].want_key
            mapping = isinstance(event, yaml.MappingStartEvent)
            stack.append(_Frame(mapping, stack[-1].path if in_key else here(), None if mapping else 0))
        elif isinstance(event, yaml.CollectionEndEvent):
            stack.pop()
            consumed()
        elif isinstance(event, yaml.ScalarEvent):
            consumed(str(event.value))
        elif isinstance(event, yaml.AliasEvent):
            consumed()


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
