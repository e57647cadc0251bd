"""Dependencies in harness/ point one way: front ends -> lab -> backends (roles, host pools)
-> node -> providers -> plan -> topology and base modules. Read from the source (ast), so an
import inside a function or under TYPE_CHECKING counts like any other."""

from __future__ import annotations

import ast
from importlib.metadata import entry_points
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "harness"

# lowest first; a module may import its own layer and the layers below it. The sub-packages'
# own __init__ files only say what the package is (no imports), so they sit at the bottom.
INITS = {"providers", "spec", "plan", "host", "nodes", "lab", "training", "matrix", "testing", "cli", "chaos", "upgrade",
         "providers.lxc", "providers.vagrant", "providers.incus"}
# chaos runs' pure parts (schedules, shrinking, the write ledger and its checker, the report's data):
# test support that needs no lab, on the base modules, the plan model and providers' capabilities
# only; testing.workload's writers record into its ledger. What applies a schedule to a lab sits
# above the lab's nodes, in a layer of its own.
CHAOS = {"chaos.vocabulary", "chaos.schedule", "chaos.shrink", "chaos.ledger", "chaos.checker",
         "chaos.availability", "chaos.report", "chaos.html", "chaos.qemuio", "chaos.support"}
LAYERS: list[set[str]] = [
    {"errors", "log", "run", "paths", "locks", "plugins", "plots", "spec.yamlload", "host.facts", "providers.capabilities",
     "spec.kernels", "spec.releases", "spec.topology", "plan.model", "testing.workload", "testing.browser", "testing.markers",
     "host.virt",
     "backends.context", "backends.base",
     "providers.stale",
     "lab.lease", "training.capacity", "lab.evidence", "providers.incus.client", "lab.state", "upgrade.support"}
    | INITS | CHAOS,
    {"spec.validate", "spec.pools"},
    {"plan.planner", "plan.placement", "providers.image"},
    # an upgrade's offline package bundle: made on the host from a golden image's package status
    {"upgrade.bundle"},
    # an engine's parts below its provider class: box, Vagrantfile data, remote projects, orphan sweeps
    {"providers.vagrant.box", "providers.vagrant.spec", "providers.vagrant.reap", "providers.lxc.reap",
     "providers.incus.projects", "providers.incus.remotes", "providers.lxc.config", "providers.lxc.freezer",
     "providers.lxc.links", "providers.lxc.snapshots", "providers.vagrant.process", "providers.vagrant.domains",
     "providers.vagrant.volumes", "providers.incus.settings", "providers.incus.setup",
     "providers.incus.students", "providers.vagrant.savedstate", "providers.vagrant.restored"},
    {"providers.base", "providers.lxc.provider", "providers.vagrant.provider", "providers.incus.provider",
     "providers.hostdisks", "providers.nodefs", "lab.trust", "host.firewall", "host.silence"},
    {"nodes.verbs", "nodes.netfaults", "nodes.sysfaults", "nodes.diskfaults", "nodes.faults", "nodes.node"},
    {"lab.secrets", "lab.access", "lab.core"},
    # the backends: everything about one backend in its package (harness/backends/NAME/...)
    {"nodes.roles", "nodes.roles.base", "nodes.roles.hypervisor", "host.pools", "backends"},
    # the lab: its parts (lifecycle, snapshots) under the facade (lab.lab) and reap over it
    {"lab.lifecycle", "lab.snapshots", "lab.lab", "lab.reap", "lab.versions"},
    # a chaos run on a live lab: the verbs that apply faults to its nodes, the runner over them
    {"chaos.verbs", "chaos.runner"},
    # an upgrade of a live lab: its backends' servers one by one behind their gates
    {"upgrade.rolling"},
    # what storlab keeps to make nodes from, no longer used: found by each maker, removed here
    {"lab.images"},
    # training: exercises on labs, and classes of student labs; matrices of labs
    {"training.exercise", "training.handout", "training.classroom", "training.klass", "training.students",
     "training.jump", "training.gate", "matrix.spec", "matrix.report"},
    # the web service over the classes: records and tokens, pools, terminals, the routes and the app
    {"web", "web.store", "web.security", "web.terminal", "web.pool", "web.pages", "web.context", "web.seat",
     "web.klass", "web.app"},
    {"cli", "cli.__main__", "cli.main", "cli.lab", "cli.fault", "cli.training", "cli.matrix", "cli.chaos", "cli.serve",
     "cli.upgrade",
     "testing.plugin",
     "matrix.plugin"},
]
BACKENDS_LAYER = 8
BACKEND_PACKAGES = sorted(p.name for p in (PKG / "backends").iterdir() if (p / "__init__.py").exists())
LAYERS[BACKENDS_LAYER] |= {module_name for pkg in BACKEND_PACKAGES
                           for module_name in [f"backends.{pkg}"] + [f"backends.{pkg}.{f.stem}" for f in
                                                                     (PKG / "backends" / pkg).glob("*.py")
                                                                     if f.name != "__init__.py"]}
LAYER = {m: i for i, layer in enumerate(LAYERS) for m in layer}


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported harness module, line, inside a function) for every import in ``path``."""
    mod = module_name(path)
    package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
    out: list[tuple[str, int, bool]] = []
    tree = ast.parse(path.read_text())
    in_function: set[ast.AST] = set()
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            in_function.update(ast.walk(fn))
    for node in ast.walk(tree):
        targets: list[str] = []
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                prefix = ".".join([*base, *([node.module] if node.module else [])])
                if node.module is None:  # from . import a, b
                    targets = [".".join(filter(None, [prefix, a.name])) for a in node.names]
                else:
                    targets = [prefix]
                    targets += [f"{prefix}.{a.name}" for a in node.names if f"{prefix}.{a.name}" in LAYER]
            elif node.module and node.module.startswith("harness"):
                targets = [node.module.removeprefix("harness").lstrip(".")]
        else:
            targets = [a.name.removeprefix("harness").lstrip(".") for a in node.names if a.name.startswith("harness.")]
        for t in targets:
            if t in LAYER and t != mod:
                out.append((t, node.lineno, node in in_function))
    return out


def graph() -> dict[str, list[tuple[str, int, bool]]]:
    # the shipped exercises are package data loaded by path, not modules of the package
    return {module_name(p): imports(p) for p in sorted(PKG.rglob("*.py"))
            if not p.is_relative_to(PKG / "training" / "exercises")}


def test_every_module_has_a_layer() -> None:
    missing = sorted(set(graph()) - set(LAYER) - {""})
    assert not missing, f"modules without a layer in {__file__}: {missing}"


def test_no_module_imports_a_layer_above_it() -> None:
    upward = [f"harness/{m.replace('.', '/')}.py:{line} imports {t} (layer {LAYER[t]} > {LAYER[m]})"
              for m, edges in graph().items() if m for t, line, _ in edges if LAYER[t] > LAYER[m]]
    assert not upward, "\n".join(upward)


def test_no_harness_import_hides_inside_a_function() -> None:
    hidden = [f"harness/{m.replace('.', '/')}.py:{line} imports {t} inside a function"
              for m, edges in graph().items() for t, line, inner in edges if inner]
    assert not hidden, "\n".join(hidden)


def test_no_import_cycle() -> None:
    g = {m: sorted({t for t, _, _ in edges}) for m, edges in graph().items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in g.get(m, []):
            # a package's __init__ is imported on the way to its submodules: not an edge back
            if m.startswith(t + "."):
                continue
            if state.get(t) == 1:
                cycles.append(" -> ".join([*stack[stack.index(t):], t]))
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2
    for m in g:
        if m not in state:
            visit(m)
    assert not cycles, "\n".join(cycles)


def test_the_core_imports_no_backend_and_no_backend_imports_another() -> None:
    """The core reaches backends through the registry (entry points) only, and a backend is a
    package of its own: what it needs of another backend goes through the core."""
    bad = []
    for m, edges in graph().items():
        for t, line, _ in edges:
            if not t.startswith("backends.") or t.split(".")[1] not in BACKEND_PACKAGES:
                continue
            if not m.startswith("backends.") or m.split(".")[1] not in BACKEND_PACKAGES:
                bad.append(f"harness/{m.replace('.', '/')}.py:{line} (core) imports {t}")
            elif m.split(".")[1] != t.split(".")[1]:
                bad.append(f"harness/{m.replace('.', '/')}.py:{line} imports another backend's {t}")
    assert not bad, "\n".join(bad)
    assert BACKEND_PACKAGES == ["ceph", "clusterfs", "gluster", "iscsi", "nfs", "nvme"]


# -- providers own their engine ------------------------------------------------------------------
PROVIDER_NAMES = sorted({ep.name for ep in entry_points(group="storlab.providers")})
ENGINE_PACKAGES = sorted(f"providers.{n}" for n in PROVIDER_NAMES if (PKG / "providers" / n / "__init__.py").exists())
#: (module, provider name) -> why that string constant is not a provider named outside providers/
NAMED_FOR_A_REASON = {
    ("host.facts", "vagrant"): "a host binary probed on PATH (the tool the vagrant provider declares in its "
                               "Capabilities), not a choice of provider",
    ("host.facts", "incus"): "a host binary probed on PATH (the incus provider's declared tool), not a choice of provider",
}


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                out.add(id(first.value))
    return out


def provider_names_in(path: Path) -> list[tuple[str, int]]:
    """String constants (not docstrings; comments are not in the tree) equal to a provider's name."""
    tree = ast.parse(path.read_text())
    docs = _docstrings(tree)
    return [(node.value, node.lineno) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
            and node.value in PROVIDER_NAMES]


def test_nothing_outside_providers_imports_an_engine_or_names_a_provider() -> None:
    """The core reaches providers through the registry and their hooks (Capabilities, Provider):
    no module outside harness/providers/ imports an engine's package or compares with its name."""
    assert PROVIDER_NAMES and ENGINE_PACKAGES, "no providers installed: pip install -e ."
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        m = module_name(path)
        if m == "providers" or m.startswith("providers.") or path.is_relative_to(PKG / "training" / "exercises"):
            continue
        where = f"harness/{path.relative_to(PKG)}"
        bad += [f"{where}:{line} imports {t}" for t, line, _ in imports(path)
                if any(t == e or t.startswith(e + ".") for e in ENGINE_PACKAGES)]
        bad += [f"{where}:{line} names provider {name!r}" for name, line in provider_names_in(path)
                if (m, name) not in NAMED_FOR_A_REASON]
    assert not bad, "\n".join(bad)
