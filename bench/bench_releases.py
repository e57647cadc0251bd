#!/usr/bin/env python3
"""Each Debian release's golden image, and every shipped topology brought up on each release: the
image build (cold with --cold, else how long its cached build took), then for each topology and
release `up` (seconds) with the backend versions its nodes report, and `down`. A topology that
needs VMs runs on them with --vm (else it is listed as skipped); a topology naming its own
release (gluster-3-mixed) runs as it is.

    python3 bench/bench_releases.py [--releases bookworm,trixie] [--topologies gluster-3,ceph-5] [--vm] [--cold]
Run as root on a set-up host (ci/setup-host.sh, --vm for VMs), one lab at a time. About 4 min for
the LXC topologies on both releases (images cached). Prints the figures, records them in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from results import as_lines, record  # noqa: E402

from harness import log  # noqa: E402
from harness.errors import HarnessError  # noqa: E402
from harness.host.facts import HostFacts  # noqa: E402
from harness.lab import versions  # noqa: E402
from harness.lab.lab import Lab  # noqa: E402
from harness.plan.planner import load_topology  # noqa: E402
from harness.providers import image  # noqa: E402
from harness.spec import releases  # noqa: E402
from harness.spec.yamlload import load_file  # noqa: E402


def image_build(release: str, cold: bool) -> float | str:
    """Seconds to build ``release``'s golden image with --cold (its cache removed first), else "cached"."""
    key = image.key_for(release)
    if cold and image.image_path(key).exists():
        shutil.rmtree(image.image_path(key))
    t = time.monotonic()
    image.build(release=release)
    return round(time.monotonic() - t, 1) if cold else "cached"


def provider_for(path: Path, release: str, vm: bool, facts: HostFacts) -> str | None:
    """lxc where the topology validates on it, else vagrant with --vm, else None (skipped)."""
    for provider in ("lxc", *(["vagrant"] if vm else [])):
        try:
            load_topology(str(path), facts, provider, None, release)
            return provider
        except HarnessError:
            continue
    return None


def one(path: Path, release: str | None, provider: str) -> dict[str, Any]:
    lab = Lab.from_topology(str(path), provider, name=f"rel-{path.stem[:12]}", release=release)
    t = time.monotonic()
    try:
        lab.up(owner_pid=None)
        up_s = round(time.monotonic() - t, 1)
        got = {node: dict(vers) for node, vers in versions.running(lab).items()}
    finally:
        rep = lab.down()
    return {"provider": provider, "up_s": up_s, "down_ok": rep.ok, "versions": got}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--releases", default=",".join(releases.RELEASES))
    ap.add_argument("--topologies", default="", help="names in topologies/ (default: every shipped one)")
    ap.add_argument("--vm", action="store_true", help="also the topologies that need VMs")
    ap.add_argument("--cold", action="store_true", help="rebuild each release's golden image (about 1.5 min each)")
    args = ap.parse_args()
    log.setup(verbose=False)
    facts = HostFacts.detect()
    wanted = [r for r in args.releases.split(",") if r]
    names = [n for n in args.topologies.split(",") if n] or sorted(p.stem for p in (ROOT / "topologies").glob("*.yaml"))
    out: dict[str, Any] = {"images_s": {r: image_build(r, args.cold) for r in wanted}, "labs": {}, "skipped": {}}
    print(f"golden images: {out['images_s']}")
    for name in names:
        path = ROOT / "topologies" / f"{name}.yaml"
        own = any("release" in n for n in load_file(str(path)).data.get("nodes", []))  # a mixed lab runs as it is
        for release in [None] if own else wanted:
            label = f"{name} ({release or 'as written'})"
            provider = provider_for(path, release or releases.DEFAULT, args.vm, facts)
            if provider is None:
                out["skipped"][label] = "needs VMs (--vm)"
                print(f"{label}: skipped (needs VMs: --vm)")
                continue
            try:
                got = one(path, release, provider)
            except Exception as exc:  # a failed lab is a result, and the next one still runs
                got = {"provider": provider, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            out["labs"][label] = got
            print(f"{label}: {json.dumps(got)}")
    record(f"bench_releases.py {' '.join(sys.argv[1:])}".strip(), as_lines(out))
    return 0 if all("error" not in v for v in out["labs"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
