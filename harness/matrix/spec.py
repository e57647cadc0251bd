"""Config matrices: one base topology, axes of named values that patch topology fields, rules that
include or exclude combinations, and the tests each cell is expected to fail.

    matrix: gluster                      # names the labs and the results
    base: ../topologies/gluster-3.yaml   # relative to this file
    axes:
      ping:                              # an axis with one path: each value is what goes there
        path: gluster.volumes[0].options["network.ping-timeout"]
        values: {ping5: 5, ping10: 10}
      replica:                           # an axis without a path: each value is {path: value, ...}
        values:
          replica3: {}
          replica1: {gluster.volumes[0].replica: 1, gluster.volumes[0].bricks: [gluster1:/gluster/bricks/1/brick]}
    exclude: [{ping: ping10, replica: replica1}]
    include: []                          # when given, only cells matching one of these
    expect_fail:                         # strict: the cell passes only if these tests do fail
      - {cells: {replica: replica1}, tests: [crash_of_mount_server], reason: "one copy: a crash loses it"}

Every cell is written out as a topology file and validated before anything runs; an invalid cell
is reported with its axis values and the located problem, and the others still run. Cells whose
topologies differ only in settings a running lab can take (each backend declares them:
`Backend.reconfigurable`) share one lab, reconfigured and verified between cells.
"""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness import paths
from harness.backends.base import backends
from harness.errors import HarnessError, Problem, TopologyError
from harness.host.facts import HostFacts
from harness.spec.validate import _schema_problems, validate_located
from harness.spec.yamlload import load_file, load_text

Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_]{0,23}$")]
_TOKEN = re.compile(r"""\s*(?:(?P<name>[A-Za-z_][A-Za-z0-9_-]*)|\[(?P<index>\d+)\]"""
                    r"""|\[(?P<q>["'])(?P<key>[^"']+)(?P=q)\]|(?P<dot>\.))""")


def parse_path(text: str) -> tuple[str | int, ...]:
    """'gluster.volumes[0].options["network.ping-timeout"]' -> ('gluster', 'volumes', 0, 'options', 'network.ping-timeout')."""
    out: list[str | int] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"path {text!r}: cannot read from {text[pos:]!r}; write a.b[0]['key.with.dots']")
        if m.group("name"):
            out.append(m.group("name"))
        elif m.group("index"):
            out.append(int(m.group("index")))
        elif m.group("key"):
            out.append(m.group("key"))
        pos = m.end()
    if not out:
        raise ValueError("empty path")
    return tuple(out)


def patch(data: Any, path: tuple[str | int, ...], value: Any) -> None:
    """Set ``path`` in the YAML data; a missing mapping key is added, a missing list index is an error."""
    cur = data
    for i, part in enumerate(path[:-1]):
        nxt = path[i + 1]
        if isinstance(part, int):
            if not isinstance(cur, list) or part >= len(cur):
                raise HarnessError(f"path {_show(path)}: no item [{part}] here")
            cur = cur[part]
        else:
            if not isinstance(cur, dict):
                raise HarnessError(f"path {_show(path)}: '{part}' is not under a mapping")
            cur = cur.setdefault(part, [] if isinstance(nxt, int) else {})
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(cur, list) or last >= len(cur):
            raise HarnessError(f"path {_show(path)}: no item [{last}] here")
        cur[last] = value
    elif isinstance(cur, dict):
        cur[last] = value
    else:
        raise HarnessError(f"path {_show(path)}: '{last}' is not under a mapping")


def _show(path: tuple[str | int, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f'["{p}"]' if "." in p else f".{p}") for p in path).lstrip(".")


class Axis(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str | None = Field(None, description="where each value goes; without it each value is {path: value}")
    values: dict[Name, Any] = Field(min_length=1, description="name -> value (with path), or {path: value, ...} "
                                                              "(without); the key `base: FILE` swaps the base topology")

    @field_validator("path")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        if v is not None:
            parse_path(v)
        return v


class Expect(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cells: dict[Name, Name | list[Name]] = Field(description="axis: value (or list): the cells this applies to")
    tests: list[str] = Field(min_length=1, description="test name patterns (fnmatch, or a substring)")
    reason: str


def _test_path(v: str) -> str:
    """A pytest path or node id inside the repository: `storlab matrix run` passes it to pytest."""
    path = v.split("::", 1)[0]
    if (not path or path.startswith(("/", "-", "~")) or any(part in ("..", "") for part in path.split("/"))
            or not re.fullmatch(r"[A-Za-z0-9_./:\[\]-]+", v.replace("::", ":"))):
        raise ValueError(f"test {v[:60]!r} is not a path inside the repository; fix: write it relative to the "
                         "repository, without '..', a leading '/' or '-', spaces or line breaks, e.g. "
                         "tests/lab/test_gluster_failover.py")
    return v


TestPath = Annotated[str, AfterValidator(_test_path)]


class MatrixModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    matrix: Name
    description: str = ""
    base: str
    tests: list[TestPath] = Field([], description="what `storlab matrix run` runs (pytest paths), relative to the "
                                                    "repository")
    axes: dict[Name, Axis] = Field(min_length=1)
    include: list[dict[Name, Name | list[Name]]] = []
    exclude: list[dict[Name, Name | list[Name]]] = []
    expect_fail: list[Expect] = []
    reconfigure_under_writes: bool = Field(False, description="check each live reconfiguration between cells as a "
                                                              "fault: the chaos writers write through it and every "
                                                              "acknowledged write is read back (a cell whose "
                                                              "reconfiguration lost one fails)")


def _matches(rule: dict[str, Any], values: dict[str, str]) -> bool:
    return all(values.get(axis) in (want if isinstance(want, list) else [want]) for axis, want in rule.items())


@dataclass
class Cell:
    name: str  # value names joined in axis order: ping5-quorum_auto
    values: dict[str, str]  # axis -> value name
    topology: Path  # the cell's topology file (written)
    problems: list[Problem] = field(default_factory=list)
    build_key: str = ""  # cells with one key share a lab
    expect_fail: list[Expect] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.problems

    def expected(self, test_name: str) -> Expect | None:
        for e in self.expect_fail:
            if any(fnmatch.fnmatch(test_name, p) or p in test_name for p in e.tests):
                return e
        return None


@dataclass
class Matrix:
    file: Path
    model: MatrixModel
    cells: list[Cell]

    @property
    def name(self) -> str:
        return self.model.matrix

    def workdir(self) -> Path:
        return paths.home() / "matrices" / self.name

    def bases(self) -> set[Path]:
        """The topologies its cells start from: the base, and any an axis value swaps in."""
        names = [self.model.base, *(str(v["base"]) for ax in self.model.axes.values() for v in ax.values.values()
                                    if isinstance(v, dict) and "base" in v)]
        return {topology_file(self.file, n)[0] for n in names}

    def lab_name(self, cell: Cell) -> str:
        """One lab per build key: cells that differ only in runtime settings share it."""
        return f"mx-{self.name[:12].replace('_', '-')}-{cell.build_key[:8]}"


def load(file: str | Path, facts: HostFacts | None = None, provider: str | None = None) -> Matrix:
    """Read, check and expand a matrix file; every cell is validated (invalid ones carry their problems),
    with ``provider`` forced as `--lab-provider` forces it."""
    loc = load_file(str(file))
    if not isinstance(loc.data, dict):
        raise TopologyError([loc.problem((), "a matrix must be a mapping (matrix:, base:, axes:, ...)")])
    try:
        model = MatrixModel.model_validate(loc.data)
    except ValidationError as exc:
        raise TopologyError(_schema_problems(loc, exc)) from None
    problems = []
    for i, rule in enumerate([*model.include, *model.exclude, *(e.cells for e in model.expect_fail)]):
        for axis, want in rule.items():
            if axis not in model.axes:
                problems.append(loc.problem((), f"rule {i + 1} names axis '{axis}', which is not one of: "
                                                 f"{', '.join(model.axes)}"))
                continue
            for w in want if isinstance(want, list) else [want]:
                if w not in model.axes[axis].values:
                    problems.append(loc.problem((), f"rule {i + 1}: axis {axis} has no value '{w}' (values: "
                                                     f"{', '.join(model.axes[axis].values)})"))
    base, why = topology_file(Path(file), model.base)
    if why:
        problems.append(loc.problem(("base",), *why))
    for axis, ax in model.axes.items():
        for value_name, value in ax.values.items():
            if isinstance(value, dict) and "base" in value:
                why = topology_file(Path(file), str(value["base"]))[1]
                if why:
                    problems.append(loc.problem(("axes", axis, "values", value_name, "base"), *why))
    if problems:
        raise TopologyError(problems)
    facts = facts or HostFacts.detect()
    m = Matrix(Path(file).resolve(), model, [])
    base_text = base.read_text()
    names = list(model.axes)
    for combo in itertools.product(*(list(model.axes[a].values) for a in names)):
        values = dict(zip(names, combo, strict=True))
        if any(_matches(r, values) for r in model.exclude):
            continue
        if model.include and not any(_matches(r, values) for r in model.include):
            continue
        m.cells.append(_make_cell(m, base_text, str(base), values, facts, provider))
    if not m.cells:
        raise HarnessError(f"{file}: no cells left after include/exclude")
    return m


def _make_cell(m: Matrix, base_text: str, base_file: str, values: dict[str, str], facts: HostFacts,
               provider: str | None = None) -> Cell:
    name = "-".join(values[a] for a in m.model.axes)
    problems: list[Problem] = []
    for axis, value_name in values.items():  # a value may name another base topology: {base: FILE}
        value = m.model.axes[axis].values[value_name]
        if isinstance(value, dict) and "base" in value:
            other, why = topology_file(m.file, str(value["base"]))
            if why:
                problems.append(Problem(str(m.file), None, None, f"axes.{axis}.values.{value_name}.base", *why))
            else:
                base_text, base_file = other.read_text(), str(other)
    data = load_text(base_text, base_file).data
    for axis, value_name in values.items():
        ax = m.model.axes[axis]
        value = ax.values[value_name]
        patches = {ax.path: value} if ax.path else ({k: v for k, v in value.items() if k != "base"}
                                                     if isinstance(value, dict) else value)
        if not isinstance(patches, dict):
            problems.append(Problem(str(m.file), None, None, f"axes.{axis}.values.{value_name}",
                                    "an axis without a path needs {path: value} mappings as values"))
            continue
        for p, v in patches.items():
            try:
                patch(data, parse_path(str(p)), v)
            except (HarnessError, ValueError) as exc:
                problems.append(Problem(str(m.file), None, None, f"axes.{axis}.values.{value_name}", str(exc)))
    if provider and isinstance(data, dict):
        data["provider"] = provider
    out = m.workdir() / "cells" / f"{name}.yaml"
    text = (f"# matrix {m.name}, cell {name}: {json.dumps(values)} (made from {base_file})\n"
            + yaml.safe_dump(data, sort_keys=False))
    _write_private(out, text)
    cell = Cell(name=name, values=values, topology=out,
                expect_fail=[e for e in m.model.expect_fail if _matches(e.cells, values)])
    if problems:
        cell.problems = problems
        return cell
    try:
        validate_located(load_text(text, str(out)), facts)
    except TopologyError as exc:
        cell.problems = exc.problems
    cell.build_key = build_key(data)
    return cell


#: the shared topologies: a checkout's; installed, those of the directory storlab runs in
TOPOLOGIES = paths.project_root() / "topologies"


def topology_file(matrix_file: Path, name: str) -> tuple[Path, tuple[str, str] | None]:
    """A base topology the matrix names: a file under the matrix file's directory or the
    repository's topologies/, judged where it really is (a symbolic link out of them is refused,
    not followed); the (message, fix) of a problem when it is not one."""
    where = matrix_file.resolve().parent
    real = Path(os.path.realpath(where / name))
    roots = (where, TOPOLOGIES.resolve())
    if not any(real.is_relative_to(r) for r in roots):
        return real, (f"base topology {name} is {real}, outside the matrix file's directory ({where}) and the "
                      f"repository's topologies ({roots[1]}): a matrix reads only topologies from there",
                      "copy the topology beside the matrix file (a symbolic link out is not followed)")
    if not real.is_file():
        return real, (f"base topology {real} does not exist", "a path relative to the matrix file")
    return real, None


def _write_private(out: Path, text: str) -> None:
    """A cell's topology, readable by its owner only (0600 in a 0700 directory): the base it came
    from may be a private file."""
    paths.private_dir(out.parent)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fd, 0o600)  # a cell an older storlab wrote 0644
        fh.write(text)


def build_key(data: dict[str, Any]) -> str:
    """A hash of the topology without what a running lab can take (the backends' reconfigurable
    paths): cells with the same key share one lab."""
    stripped = json.loads(json.dumps(data))
    stripped.pop("lab", None)
    for b in backends():
        for pattern in b.reconfigurable:
            _strip(stripped, pattern.split("."))
    return hashlib.sha256(json.dumps(stripped, sort_keys=True).encode()).hexdigest()[:16]


def _strip(data: Any, parts: list[str]) -> None:
    """Remove what a pattern ('gluster.volumes.*.options') names; '*' is every key or item."""
    if not parts or data is None:
        return
    head, rest = parts[0], parts[1:]
    if isinstance(data, list):
        items = list(range(len(data))) if head == "*" else ([int(head)] if head.isdigit() else [])
        for i in items:
            if i < len(data) and rest:
                _strip(data[i], rest)
    elif isinstance(data, dict):
        keys = list(data) if head == "*" else ([head] if head in data else [])
        for k in keys:
            if rest:
                _strip(data[k], rest)
            else:
                del data[k]


def by_lab(cells: list[Cell]) -> list[Cell]:
    """Cells grouped by the lab they use (first appearance order): one lab up at a time."""
    first: dict[str, int] = {}
    for i, c in enumerate(cells):
        first.setdefault(c.build_key, i)
    return sorted(cells, key=lambda c: (first[c.build_key], cells.index(c)))


# -- selection ----------------------------------------------------------------------------------
def select(cells: list[Cell], expr: str | None) -> list[Cell]:
    """--cells 'ping=ping5,ping10 quorum=quorum_auto': every named axis must match one of its values."""
    if not expr:
        return cells
    rule: dict[str, list[str]] = {}
    for part in re.split(r"[\s;]+", expr.strip()):
        if not part:
            continue
        axis, sep, vals = part.partition("=")
        if not sep or not vals:
            raise HarnessError(f"--cells {expr!r}: write AXIS=VALUE[,VALUE] ..., e.g. ping=ping5,ping10")
        rule[axis] = vals.split(",")
    axes = set(cells[0].values) if cells else set()
    unknown = [a for a in rule if a not in axes]
    if unknown:
        raise HarnessError(f"--cells: no axis {', '.join(unknown)} (axes: {', '.join(sorted(axes))})")
    return [c for c in cells if _matches(dict(rule), c.values)]


def subset(cells: list[Cell], spec: str | None) -> list[Cell]:
    """--subset i/n: every n-th cell from the i-th, plus, for any axis value that slice misses,
    the first cell holding it: each slice still covers every value of every axis, and the n
    slices together cover every cell."""
    if not spec:
        return cells
    m = re.fullmatch(r"(\d+)/(\d+)", spec.strip())
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise HarnessError(f"--subset {spec!r}: write i/n with 1 <= i <= n, e.g. 2/4")
    i, n = int(m.group(1)), int(m.group(2))
    chosen = [c for k, c in enumerate(cells) if k % n == i - 1]
    for axis in cells[0].values if cells else {}:
        for value in dict.fromkeys(c.values[axis] for c in cells):
            if not any(c.values[axis] == value for c in chosen):
                chosen.append(next(c for c in cells if c.values[axis] == value))
    order = {c.name: k for k, c in enumerate(cells)}
    return sorted({c.name: c for c in chosen}.values(), key=lambda c: order[c.name])
