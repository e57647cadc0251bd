#!/usr/bin/env python3
"""`storlab serve`: what a student and an instructor wait for, and what the service costs.

1. A warm pool of ``--topology`` labs (default gluster-3) filled from nothing: seconds per lab.
2. Claim to prompt from the warm pool, in headless Chromium: the join page's button pressed to
   a shell prompt in the page's terminal (``--claims`` times).
3. Refill: from a claim to the next lab ready in the pool.
4. Cold claim: a class with no warm lab; the button to the prompt (the lab built meanwhile).
5. ``--terminals`` browser terminals at once (default 30) on one host: ``--terminals``/3 labs
   of nodes-3, a websocket per node speaking the page's protocol; each types ``echo`` and waits
   for its answer, ``--echoes`` times; latency p50/p95/max, and the service's memory (RSS)
   before and with them open.

    python3 bench/bench_serve.py [--topology gluster-3] [--claims 2] [--terminals 30] [--echoes 20]
Run as root on a host prepared by `ci/setup-host.sh --class --web`. LXC labs, students trusted
(the bench's own). Prints seconds, then JSON; leaves nothing (every class ended).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import websockets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from results import as_lines, record  # noqa: E402

from harness.run import wait_until  # noqa: E402
from harness.testing.browser import chromium, term_text  # noqa: E402


class Service:
    def __init__(self, state: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = state / "serve.log"
        self.proc = subprocess.Popen(["storlab", "serve", "--state", str(state / "records"), "--port", str(self.port)],
                                     stdout=self.log.open("w"), stderr=subprocess.STDOUT, text=True)

        def up() -> bool:
            try:
                return httpx.get(self.base + "/api/health").status_code == 200
            except httpx.HTTPError:
                return False
        wait_until(up, timeout=60, what="storlab serve answering")
        self.admin = re.search(r"admin token .*: (\S+)", self.log.read_text()).group(1)  # type: ignore[union-attr]

    def api(self, method: str, path: str, **kw: Any) -> Any:
        r = httpx.request(method, self.base + path, headers={"Authorization": f"Bearer {self.admin}"}, timeout=600, **kw)
        r.raise_for_status()
        return r.json()

    def make(self, topology: str, warm: int, seats: int) -> tuple[str, str]:
        name = "bs" + secrets.token_hex(3)
        out = self.api("POST", "/api/classes", json={"name": name, "topology": topology, "warm": warm,
                                                      "seats": seats, "trusted": True, "lease": "2h"})
        return name, out["join_link"]

    def ready(self, name: str) -> int:
        return int(self.api("GET", f"/api/classes/{name}")["counts"]["ready"])

    def rss_mib(self) -> float:
        return int(Path(f"/proc/{self.proc.pid}/status").read_text().split("VmRSS:")[1].split()[0]) / 1024

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def claim_to_prompt(join: str, student: str) -> float:
    d = chromium()
    try:
        d.get(join)
        d.find_element("id", "student").send_keys(student)
        t0 = time.monotonic()
        d.find_element("id", "join").click()
        wait_until(lambda: re.search(r"root@\S+:~# $", term_text(d)), timeout=600, interval=0.05,
                   what="a shell prompt in the page")
        return time.monotonic() - t0
    finally:
        d.quit()


async def terminals(svc: Service, tokens: list[str], nodes: list[str], echoes: int) -> list[float]:
    """A websocket terminal per (seat, node), all at once; each echo's round trip in seconds."""
    lat: list[float] = []

    async def one(token: str, node: str, i: int) -> None:
        ws_url = svc.base.replace("http", "ws") + f"/ws/term/{node}"
        headers = {"Cookie": f"sl_seat={token}", "Origin": svc.base}
        async with websockets.connect(ws_url, additional_headers=headers, max_size=None) as ws:
            buf = b""
            while not re.search(rb"# $", buf):
                buf += bytes(await asyncio.wait_for(ws.recv(), 60))  # type: ignore[arg-type]
            for k in range(echoes):
                mark = f"E{i}x{k}"
                t0 = time.monotonic()
                await ws.send(json.dumps({"i": f"echo {mark[:2]}''{mark[2:]}\r"}))
                buf = b""
                while f"{mark}\r\n".encode() not in buf:
                    buf += bytes(await asyncio.wait_for(ws.recv(), 60))  # type: ignore[arg-type]
                lat.append(time.monotonic() - t0)
    await asyncio.gather(*(one(t, n, i) for i, (t, n) in enumerate((t, n) for t in tokens for n in nodes)))
    return lat


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--topology", default="gluster-3")
    ap.add_argument("--claims", type=int, default=2)
    ap.add_argument("--terminals", type=int, default=30)
    ap.add_argument("--echoes", type=int, default=20)
    args = ap.parse_args()
    res: dict[str, Any] = {"topology": args.topology}
    made: list[str] = []
    svc = Service(Path(tempfile.mkdtemp(prefix="storlab-bench-serve.")))
    try:
        res["service_rss_idle_mib"] = round(svc.rss_mib(), 1)
        t0 = time.monotonic()
        name, join = svc.make(args.topology, args.claims, args.claims + 1)
        made.append(name)
        wait_until(lambda: svc.ready(name) >= args.claims, timeout=1800, interval=1, what="the warm pool filled")
        res["pool_fill_s"] = round(time.monotonic() - t0, 1)
        res["pool_fill_per_lab_s"] = round(res["pool_fill_s"] / args.claims, 1)
        res["warm_claim_to_prompt_s"] = [round(claim_to_prompt(join, f"warm{i}"), 2) for i in range(args.claims)]
        t0 = time.monotonic()
        wait_until(lambda: svc.ready(name) >= 1, timeout=900, interval=0.5, what="the pool refilled")
        res["refill_after_claims_s"] = round(time.monotonic() - t0, 1)
        cold, cold_join = svc.make(args.topology, 0, 1)
        made.append(cold)
        res["cold_claim_to_prompt_s"] = round(claim_to_prompt(cold_join, "cold"), 1)
        labs = max(1, args.terminals // 3)
        tname, _ = svc.make("nodes-3", labs, labs)
        made.append(tname)
        wait_until(lambda: svc.ready(tname) >= labs, timeout=1800, interval=1, what=f"{labs} nodes-3 labs ready")
        tokens = []
        for i in range(labs):
            link = svc.api("POST", f"/api/classes/{tname}/claim", json={"student": f"t{i}"})["link"]
            tokens.append(link.rsplit("/", 1)[1])
        rss0 = svc.rss_mib()
        lat = asyncio.run(terminals(svc, tokens, ["node1", "node2", "node3"], args.echoes))
        lat.sort()
        res["terminals"] = labs * 3
        res["echo_latency_ms"] = {"p50": round(statistics.median(lat) * 1000, 1),
                                  "p95": round(lat[int(len(lat) * 0.95) - 1] * 1000, 1),
                                  "max": round(lat[-1] * 1000, 1), "n": len(lat)}
        res["service_rss_mib"] = {"before_terminals": round(rss0, 1), "after_terminals": round(svc.rss_mib(), 1)}
    finally:
        for name in made:
            out = svc.api("DELETE", f"/api/classes/{name}")
            if out["problems"]:
                print(f"class {name}: {out['problems']}", file=sys.stderr)
        svc.stop()
    for k, v in res.items():
        print(f"{k:<28} {v}")
    print(json.dumps(res))
    record(f"bench_serve.py --topology {args.topology} --claims {args.claims} --terminals {args.terminals}",
           as_lines(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
