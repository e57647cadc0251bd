#!/usr/bin/env python3
"""A whole class through the web only, on a provider that isolates students from the host: the
admin makes the class over the API, ``--students`` labs come up in the warm pool, the instructor
applies an exercise over the API, each student joins from the join page (a form post, cookies),
opens a terminal on their node (the page's websocket), presses Check (it fails), types the repair
in the terminal, presses Check (it passes), presses Reset (the exercise is back: Check fails
again); the instructor releases every seat (each reset to its baseline with a new key) and the
admin ends the class. Then nothing of it may be left: no lab, no Incus project, no class record.

    python3 bench/bench_webclass.py [--students 10] [--provider incus] [--topology iscsi-userspace]
Run as root on a host prepared by `ci/setup-host.sh --class --incus`. Prints seconds, then JSON.
The repair typed is iscsi-lun-missing's (tgt: the target in an unprivileged container).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import websockets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_serve import Service  # noqa: E402
from results import as_lines, record  # noqa: E402

from harness.lab.lab import list_labs  # noqa: E402
from harness.run import wait_until  # noqa: E402

EXERCISE = "iscsi-lun-missing"
NODE = "iscsi1"
REPAIR = ("tgtadm --lld iscsi --mode logicalunit --op new --tid 1 --lun 2 --backing-store /dev/storlab/lun1; "
          "sed -i 's#^</target>#    <backing-store /dev/storlab/lun1>\\n        lun 2\\n    </backing-store>\\n</target>#' "
          "/etc/tgt/conf.d/storlab.conf; echo FIX''ED\r")


class Student:
    """One student's browser, as far as the service can tell: its cookies, its CSRF header, its terminal."""

    def __init__(self, svc: Service, join: str, name: str) -> None:
        self.svc, self.name = svc, name
        self.http = httpx.Client(base_url=svc.base, timeout=600, follow_redirects=True)
        t0 = time.monotonic()
        page = self.http.post(join.replace(svc.base, ""), data={"student": name})
        page.raise_for_status()
        assert "Check" in page.text, f"{name}: not on the seat page after joining: {page.text[:200]}"
        self.claim_s = time.monotonic() - t0
        self.csrf = {"X-Storlab-CSRF": self.http.cookies["sl_csrf"]}

    def seat(self) -> dict[str, Any]:
        return dict(self.http.get("/api/seat").json())

    def check(self) -> tuple[bool, float]:
        t0 = time.monotonic()
        r = self.http.post("/api/seat/check", headers=self.csrf)
        r.raise_for_status()
        return bool(r.json()["passed"]), time.monotonic() - t0

    def type(self, text: str, until: str) -> float:
        """Type ``text`` in the node's terminal; seconds until ``until`` is on the screen."""
        async def go() -> float:
            headers = {"Cookie": f"sl_seat={self.http.cookies['sl_seat']}", "Origin": self.svc.base}
            ws_url = self.svc.base.replace("http", "ws") + f"/ws/term/{NODE}"
            async with websockets.connect(ws_url, additional_headers=headers, max_size=None) as ws:
                buf = b""
                while not re.search(rb"# $", buf):
                    buf += bytes(await asyncio.wait_for(ws.recv(), 60))  # type: ignore[arg-type]
                t0 = time.monotonic()
                await ws.send(json.dumps({"i": text}))
                try:
                    while until.encode() not in buf:
                        buf += bytes(await asyncio.wait_for(ws.recv(), 120))  # type: ignore[arg-type]
                except TimeoutError:
                    raise AssertionError(f"{self.name}: {until!r} not on the screen; last: {buf[-600:]!r}") from None
                return time.monotonic() - t0
        return asyncio.run(go())

    def reset(self) -> float:
        t0 = time.monotonic()
        self.http.post("/api/seat/reset", headers=self.csrf).raise_for_status()
        wait_until(lambda: self.seat()["state"] == "claimed", timeout=600, interval=0.5, what=f"{self.name}'s reset")
        return time.monotonic() - t0


def one(svc: Service, join: str, name: str) -> dict[str, float]:
    s = Student(svc, join, name)
    failed, check_s = s.check()
    assert not failed, f"{name}: Check passed before the repair"
    s.type(REPAIR, "FIXED\r\n")
    passed, _ = s.check()
    assert passed, f"{name}: Check failed after the repair"
    reset_s = s.reset()
    again, _ = s.check()
    assert not again, f"{name}: Check passed after Reset (the exercise should be back)"
    return {"claim_s": s.claim_s, "check_s": check_s, "reset_s": reset_s}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--students", type=int, default=10)
    ap.add_argument("--provider", default="incus")
    ap.add_argument("--topology", default="iscsi-userspace")
    args = ap.parse_args()
    svc = Service(Path(tempfile.mkdtemp(prefix="storlab-bench-webclass.")))
    name = ""
    res: dict[str, Any] = {"students": args.students, "provider": args.provider, "topology": args.topology}
    try:
        t0 = time.monotonic()
        made = svc.api("POST", "/api/classes", json={"name": "bw" + str(int(time.time()) % 10**6), "topology": args.topology,
                                                      "warm": args.students, "seats": args.students,
                                                      "provider": args.provider, "trusted": False, "lease": "2h"})
        name, join, instructor = made["class"], made["join_link"], made["instructor_token"]
        wait_until(lambda: svc.ready(name) >= args.students, timeout=3600, interval=2, what="every seat ready")
        res["class_ready_s"] = round(time.monotonic() - t0, 1)
        head = {"Authorization": f"Bearer {instructor}"}
        r = httpx.post(f"{svc.base}/api/classes/{name}/exercise", json={"exercise": EXERCISE}, headers=head, timeout=600)
        r.raise_for_status()
        assert set(r.json().values()) == {"applied"}, r.json()
        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=args.students) as pool:
            per = list(pool.map(lambda i: one(svc, join, f"student {i + 1}"), range(args.students)))
        res["students_done_s"] = round(time.monotonic() - t0, 1)
        for k in ("claim_s", "check_s", "reset_s"):
            vals = [p[k] for p in per]
            res[k] = {"median": round(statistics.median(vals), 2), "max": round(max(vals), 2)}
        t0 = time.monotonic()
        for seat in sorted(svc.api("GET", f"/api/classes/{name}")["rows"], key=lambda r: r["seat"]):
            httpx.post(f"{svc.base}/api/classes/{name}/seats/{seat['seat']}/release", headers=head,
                       timeout=60).raise_for_status()
        wait_until(lambda: svc.ready(name) >= args.students, timeout=3600, interval=2, what="every seat released")
        res["release_all_s"] = round(time.monotonic() - t0, 1)
        res["service_rss_mib"] = round(svc.rss_mib(), 1)
    finally:
        if name:
            t0 = time.monotonic()
            out = svc.api("DELETE", f"/api/classes/{name}")
            res["end_s"] = round(time.monotonic() - t0, 1)
            res["end_problems"] = out["problems"]
        svc.stop()
    projects = subprocess.run(["incus", "project", "list", "--format", "csv"], capture_output=True, text=True,
                              check=False).stdout
    left = [lab for lab in list_labs() if lab.startswith(f"{name}-")] + \
           [p.split(",")[0] for p in projects.splitlines() if name in p]
    res["left_behind"] = left
    for k, v in res.items():
        print(f"{k:<18} {v}")
    print(json.dumps(res))
    record(f"bench_webclass.py --students {args.students} --provider {args.provider} --topology {args.topology}",
           as_lines(res))
    return 0 if not left and not res.get("end_problems") else 1


if __name__ == "__main__":
    sys.exit(main())
