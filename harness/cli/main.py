"""The storlab command line. The only place errors become exit codes:
0 ok, 1 harness/infrastructure error, 2 invalid topology or usage."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness import log, paths
from harness.cli import chaos as chaos_cli
from harness.cli import fault as fault_cli
from harness.cli import lab as lab_cli
from harness.cli import matrix as matrix_cli
from harness.cli import serve as serve_cli
from harness.cli import training as training_cli
from harness.cli import upgrade as upgrade_cli
from harness.errors import HarnessError, TopologyError
from harness.host.facts import PROFILES, HostFacts
from harness.plan import planner as planmod
from harness.spec.topology import model as topology_model
from harness.spec.validate import validate_file


def _facts(args: argparse.Namespace) -> HostFacts:
    return PROFILES[args.host_profile] if getattr(args, "host_profile", None) else HostFacts.detect()


def cmd_validate(args: argparse.Namespace) -> int:
    facts = _facts(args)
    bad = 0
    for f in args.files:
        try:
            topo, res = validate_file(f, facts)
            print(f"{f}: ok (lab {topo.lab}, {len(topo.nodes)} nodes, provider {res.provider})")
        except TopologyError as exc:
            bad += 1
            print(f"{f}: {len(exc.problems)} problem(s)", file=sys.stderr)
            for p in exc.problems:
                print(str(p), file=sys.stderr)
    return 2 if bad else 0


def cmd_plan(args: argparse.Namespace) -> int:
    facts = _facts(args)
    plan = planmod.load_plan(args.file, facts, args.provider, args.name)
    out = Path(args.output) if args.output else paths.lab_dir(plan.lab) / "plan-preview"
    files = planmod.write(plan, out)
    print(f"lab {plan.lab}  provider {plan.provider}  accel {plan.accel}"
          + (f"  (an instance of {plan.instance_of})" if plan.instance_of else ""))
    for net in plan.networks:
        print(f"  network {net.name:<10} {net.cidr:<18} bridge {net.bridge}")
    for n in plan.nodes:
        disks = ", ".join(f"{d.name} {d.size // 2**20}M{' ' + d.filesystem if d.filesystem != 'none' else ''}"
                          f"{' @' + d.mount if d.mount else ''}" for d in n.disks) or "-"
        print(f"  node {n.name:<13} {n.address:<16} {n.cpus} cpu {n.memory:>5} MiB  "
              f"roles {','.join(n.roles) or '-'}  disks {disks}  ({n.object})")
    for p in plan.host.pools:
        print(f"  pool {p.name:<18} {p.type:<13} on {p.host}  libvirt {p.object}" + (f"  at {p.path}" if p.path else "")
              + (f"  secret {p.secret_uuid}" if p.secret_uuid else ""))
    print(f"{len(files)} config files rendered under {out}/files")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    schema = topology_model().model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "storlab topology"
    print(json.dumps(schema, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="storlab", description="Build storage labs and test how they behave.")
    ap.add_argument("-v", "--verbose", action="store_true", help="show every command on the terminal")
    sub = ap.add_subparsers(dest="cmd", required=True)

    def hp(p: argparse.ArgumentParser) -> None:
        p.add_argument("--host-profile", choices=sorted(PROFILES),
                       help="validate against a typical host instead of this one")

    p = sub.add_parser("validate", help="check topology files; report every problem with its location")
    p.add_argument("files", nargs="+")
    hp(p)
    p.set_defaults(fn=cmd_validate)
    p = sub.add_parser("plan", help="resolve addresses/disks and render every config file")
    p.add_argument("file")
    p.add_argument("--provider", help="a node provider: lxc, vagrant, ... (overrides the topology's)")
    p.add_argument("--name", help="plan an instance of the topology under this lab name")
    p.add_argument("-o", "--output", help="directory (default: the lab directory's plan-preview/)")
    hp(p)
    p.set_defaults(fn=cmd_plan)
    p = sub.add_parser("schema", help="print the topology JSON Schema (for editors)")
    p.set_defaults(fn=cmd_schema)
    lab_cli.add_commands(sub)
    fault_cli.add_command(sub)
    training_cli.add_commands(sub)
    matrix_cli.add_commands(sub)
    chaos_cli.add_commands(sub)
    serve_cli.add_commands(sub)
    upgrade_cli.add_commands(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args, rest = ap.parse_known_args(argv)
    if rest and not getattr(args, "takes_rest", False):
        ap.error(f"unrecognized arguments: {' '.join(rest)}")
    log.setup(verbose=args.verbose)
    try:
        if getattr(args, "takes_rest", False):  # `storlab matrix run FILE [pytest args]`
            return int(matrix_cli.cmd_run(args, rest))
        return int(args.fn(args))
    except TopologyError as exc:
        for p in exc.problems:
            print(str(p), file=sys.stderr)
        return 2
    except HarnessError as exc:
        print(f"storlab: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("storlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
