"""`storlab matrix plan|run|report FILE`."""

from __future__ import annotations

import argparse
import json
import os
import sys

from harness import paths
from harness.host.facts import HostFacts
from harness.matrix import report as matrix_report
from harness.matrix import spec as mx
from harness.plan.planner import load_topology
from harness.providers.capabilities import available
from harness.training import capacity


def cmd_plan(args: argparse.Namespace) -> int:
    facts = HostFacts.detect()
    m = mx.load(args.file, facts, args.provider)
    cells = mx.by_lab(mx.subset(mx.select(m.cells, args.cells), args.subset))
    last = matrix_report.load_results(m) or {}
    labs: dict[str, dict[str, object]] = {}
    print(f"matrix {m.name}: {len(cells)} of {len(m.cells)} cells ({m.file})")
    for c in cells:
        if not c.valid:
            print(f"  {c.name:<36} INVALID here: {c.problems[0]}")
            continue
        lab = m.lab_name(c)
        first = lab not in labs
        if first:
            loaded = load_topology(str(c.topology), facts, args.provider, None)
            prov = loaded.res.provider
            nodes = loaded.topo.nodes
            base, per = available()[prov].footprint.up_s  # measured by each provider
            need = [capacity.node_need(n.name, list(n.roles), int(n.memory), sum(int(d.size) for d in n.disks) // 2**20,
                                       prov, "kvm" if facts.kvm_usable else "tcg") for n in nodes]
            labs[lab] = {"provider": prov, "up_s": base + per * len(nodes), "mib": sum(x.memory_mib for x in need)}
        known = [r.get("duration_s", 0.0) for r in last.get("results", {}).get(c.name, {}).values()]
        how = f"builds {lab} (~{labs[lab]['up_s']:.0f} s, {labs[lab]['provider']})" if first else \
            f"reuses {lab}, reconfigured (~0.2 s)"
        xf = f"; expected to fail: {', '.join(t for e in c.expect_fail for t in e.tests)}" if c.expect_fail else ""
        print(f"  {c.name:<36} {how}" + (f"; tests last took {sum(known):.0f} s" if known else "") + xf)
    total_up = sum(float(str(v["up_s"])) for v in labs.values())
    peak = sum(int(str(v["mib"])) for v in labs.values())
    print(f"labs: {len(labs)}, bring-up ~{total_up:.0f} s in all, one after the other (cells are run lab by lab); "
          f"memory ~{max([int(str(v['mib'])) for v in labs.values()] or [0])} MiB (the biggest lab), {peak} MiB if all "
          "were up at once")
    return 0


def cmd_run(args: argparse.Namespace, extra: list[str]) -> int:
    m = mx.load(args.file)
    root = paths.project_root()
    tests = [str(root / t) for t in m.model.tests] if not any(not a.startswith("-") for a in extra) else []
    argv = [sys.executable, "-m", "pytest", "--matrix", str(args.file), *tests, *extra]
    print("$ " + " ".join(argv), flush=True)
    os.execv(sys.executable, argv)
    return 1  # not reached


def cmd_report(args: argparse.Namespace) -> int:
    m = mx.load(args.file)
    data = matrix_report.load_results(m)
    if data is None:
        print(f"matrix {m.name} has not run yet: storlab matrix run {args.file}")
        return 1
    md, html = matrix_report.write(m, data)
    print(md.read_text())
    print(f"report: {md} and {html}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    schema = mx.MatrixModel.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "storlab config matrix"
    print(json.dumps(schema, indent=2))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("matrix", help="config matrices: plan the cells, run the suite per cell, report")
    msub = p.add_subparsers(dest="matrix_cmd", required=True)
    pl = msub.add_parser("plan", help="the cells, which lab each uses, time and memory estimates")
    pl.add_argument("file")
    pl.add_argument("--cells")
    pl.add_argument("--subset")
    pl.add_argument("--provider")
    pl.set_defaults(fn=cmd_plan)
    r = msub.add_parser("run", help="pytest --matrix FILE [the matrix's tests] [pytest args, e.g. -k, --cells, "
                                    "--subset, --rerun-failed]")
    r.add_argument("file")
    r.set_defaults(fn=cmd_run, takes_rest=True)
    rp = msub.add_parser("report", help="the cells x tests table of the results so far (markdown; HTML beside it)")
    rp.add_argument("file")
    rp.set_defaults(fn=cmd_report)
    msub.add_parser("schema", help="print the matrix file JSON Schema (for editors)").set_defaults(fn=cmd_schema)
