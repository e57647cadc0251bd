#!/usr/bin/env python3
"""VM seats: a class of N labs of VMs restored from saved states, what each seat costs the host's
memory without and then with KSM (the kernel merging identical pages: seats restored from one
state start with the same memory), and what a reset costs.

    python3 bench/bench_vmseats.py [--seats 3] [--topology topologies/gluster-3.yaml] [--parallel 1] [--ksm-wait 180]
Run as root on a host set up with ci/setup-host.sh --vm --class. KSM is switched on for the
measurement (QEMU marks guest memory mergeable) and put back as it was; nothing is left running.
Prints seconds and MiB, then JSON, and records them in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from results import as_lines, record  # noqa: E402

from harness.training.klass import list_classes  # noqa: E402

CLASS = "vmseats"
KSM = Path("/sys/kernel/mm/ksm")
PAGE = 4096


def storlab(*args: str) -> float:
    t = time.monotonic()
    subprocess.run([sys.executable, "-m", "harness.cli", *args], check=True, cwd=ROOT, timeout=3600)
    return time.monotonic() - t


def mem_available_mib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def qemu_rss_mib() -> float:
    out = subprocess.run(["ps", "-C", "qemu-system-x86_64", "-o", "rss="], capture_output=True, text=True,
                         timeout=30, check=False).stdout
    return sum(int(x) for x in out.split()) / 1024


def ksm(name: str, value: str | None = None) -> str:
    if value is not None:
        (KSM / name).write_text(value)
    return (KSM / name).read_text().strip()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seats", type=int, default=3)
    ap.add_argument("--topology", default=str(ROOT / "topologies" / "gluster-3.yaml"))
    ap.add_argument("--parallel", type=int, default=1,
                    help="seats brought up at once (class up --parallel): under TCG on 2 cores, two gluster-3 seats at "
                         "once (6 VMs) starved glusterd's start past its 60 s bound")
    ap.add_argument("--ksm-wait", type=float, default=180, help="seconds to let KSM merge at most")
    args = ap.parse_args()
    res: dict[str, Any] = {"seats": args.seats, "topology": Path(args.topology).name, "parallel": args.parallel}
    saved = {k: ksm(k) for k in ("run", "pages_to_scan", "sleep_millisecs")}
    ksm("run", "2")  # unmerge whatever another user merged: the figures start from nothing shared
    ksm("run", "0")
    try:
        free0 = mem_available_mib()
        res["class_up_s"] = round(storlab("class", "up", args.topology, "--count", str(args.seats), "--on", "vagrant",
                                          "--name", CLASS, "--expire", "2h", "--parallel", str(args.parallel)), 1)
        time.sleep(10)
        used = free0 - mem_available_mib()
        res["host_memory_per_seat_mib"] = round(used / args.seats)
        res["qemu_rss_per_seat_mib"] = round(qemu_rss_mib() / args.seats)
        ksm("pages_to_scan", "5000")
        ksm("sleep_millisecs", "20")
        ksm("run", "1")
        t = time.monotonic()
        start = int(ksm("full_scans"))
        while int(ksm("full_scans")) < start + 2 and time.monotonic() - t < args.ksm_wait:
            time.sleep(2)
        res["ksm_two_full_scans_s"] = round(time.monotonic() - t, 1)
        res["ksm_saved_per_seat_mib"] = round(int(ksm("pages_sharing")) * PAGE / 2**20 / args.seats)
        res["host_memory_per_seat_with_ksm_mib"] = round((free0 - mem_available_mib()) / args.seats)
        first = "s01"
        res["reset_one_s"] = round(storlab("reset", f"{CLASS}-{first}"), 1)
        res["reset_class_s"] = round(storlab("class", "reset", CLASS), 1)
    finally:
        print(json.dumps(res), flush=True)  # what was measured, even when a later step fails
        try:
            if CLASS in list_classes():
                res["class_down_s"] = round(storlab("class", "down", CLASS), 1)
        finally:
            ksm("run", "2")  # unmerge: the host's KSM as it was
            for k, v in saved.items():
                ksm(k, v)
    print(f"{args.seats} seats of {res['topology']} on VMs: up {res.get('class_up_s')} s; host memory per seat "
          f"{res.get('host_memory_per_seat_mib')} MiB, with KSM {res.get('host_memory_per_seat_with_ksm_mib')} MiB "
          f"(KSM shares {res.get('ksm_saved_per_seat_mib')} MiB a seat after {res.get('ksm_two_full_scans_s')} s); "
          f"reset one {res.get('reset_one_s')} s, the class {res.get('reset_class_s')} s")
    print(json.dumps(res, indent=2))
    record(f"bench_vmseats.py --seats {args.seats} --topology {res['topology']}", as_lines(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
