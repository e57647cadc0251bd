"""A lab's bridges (one per network, marked as the lab's by its alias) and the containers' veths
on them: made at `up`, found again at `down`."""

from __future__ import annotations

import json
from pathlib import Path

from harness import paths
from harness.errors import HarnessError
from harness.plan.model import Plan
from harness.run import run, succeed


def _alias(ifname: str) -> str | None:
    """The alias of an existing link ('' without one), None when there is no such link."""
    p = Path(f"/sys/class/net/{ifname}/ifalias")
    if not Path(f"/sys/class/net/{ifname}").exists():
        return None
    try:
        return p.read_text().strip()
    except OSError:
        return ""


def make_bridges(plan: Plan) -> None:
    """One bridge per lab network with the host's address on it, marked as the lab's (its alias)."""
    for net in plan.networks:
        br = net.bridge
        alias = _alias(br)
        if alias is not None and not ours(plan.lab, alias):
            # bridge names carry a 24-bit tag of the lab name: two labs can share one
            raise HarnessError(f"bridge {br} exists and is not lab {plan.lab}'s of this storlab home "
                               f"(alias {alias or 'none'}); "
                               f"storlab touches only what it made: rename the lab or remove that bridge")
        if alias is None:
            succeed(["ip", "link", "add", br, "type", "bridge"], timeout=15)
        run(["ip", "link", "set", br, "alias", paths.link_alias(plan.lab, net.name)], timeout=15)
        have = json.loads(succeed(["ip", "-j", "-4", "addr", "show", "dev", br], timeout=15) or "[]")
        addrs = {a["local"] for i in have for a in i.get("addr_info", [])}
        if net.host_address not in addrs:
            succeed(["ip", "addr", "add", f"{net.host_address}/{net.prefix}", "dev", br], timeout=15)
        succeed(["ip", "link", "set", br, "up"], timeout=15)


def ours(lab: str, alias: str) -> bool:
    """Whether a link alias marks the link as this lab's of this home (or of an older storlab,
    whose aliases named no home: a lab it made still goes down)."""
    mark = paths.alias_owner(alias)
    return mark is not None and mark[0] == lab and mark[1] in (None, paths.home_id())


def lab_links(plan: Plan) -> list[str]:
    """This lab's bridges (by their alias storlab:LAB:NET; a planned bridge whose alias was never
    set, by an `up` killed in between) and the container veths attached to them."""
    links = json.loads(run(["ip", "-j", "link", "show"], timeout=15).stdout or "[]")
    mine = {link["ifname"] for link in links if ours(plan.lab, str(link.get("ifalias", "")))}
    mine |= {link["ifname"] for link in links
             if link["ifname"] in {n.bridge for n in plan.networks} and not link.get("ifalias")}
    veths = {link["ifname"] for link in links
             if link["ifname"].startswith(f"slv{paths.tag(plan.lab)}") and link.get("master") in mine}
    return sorted(mine | veths)
