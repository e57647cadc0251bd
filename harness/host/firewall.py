"""The host's firewall for lab bridges: a node reaches nothing on this host and nothing in another
lab, whatever the host's ip_forward says; the host still reaches the nodes (its storage pools,
ssh, the jump) and the nodes answer.

One nftables table of storlab's own (``inet storlab``), matching every lab bridge by its name
prefix (``slb``: paths.bridge_prefix), so it serves every lab on the host and is made once:
- input from a lab bridge: only replies to what the host started, and DHCP to libvirt's own
  dnsmasq on a VM lab's management network (it leases the VMs their management addresses; DNS is
  off on every network storlab defines, so port 53 stays closed: a DNS server the host runs on
  all its addresses is not the students');
- forward into or out of a lab bridge: nothing (labs route nowhere, and nothing routes into them),
  except traffic that enters and leaves by the same lab bridge: the traffic between one lab's
  nodes, which a host with br_netfilter (bridge-nf-call-iptables=1, the default once the module
  is there, e.g. with Docker) passes through the forward hook too. Each lab adds its bridges to
  the set ``bridged`` (BR . BR) when it makes them and removes them at `down`.
"""

from __future__ import annotations

import ipaddress
import re
import shutil

from harness import log
from harness.errors import HarnessError
from harness.run import run

TABLE = "storlab"
BRIDGES = "slb*"
BRIDGE_RE = re.compile(r"slb[0-9a-f]{6}[0-9]{1,2}")  # paths.bridge_name

RULESET = f"""table inet {TABLE} {{
  set bridged {{ type ifname . ifname; }}
  chain input {{
    type filter hook input priority filter - 10; policy accept;
    iifname "{BRIDGES}" ct state established,related accept
    iifname "{BRIDGES}" udp dport 67 accept
    iifname "{BRIDGES}" counter drop
  }}
  chain forward {{
    type filter hook forward priority filter - 10; policy accept;
    iifname . oifname @bridged accept
    iifname "{BRIDGES}" counter drop
    oifname "{BRIDGES}" counter drop
  }}
}}
"""


def present() -> bool:
    return run(["nft", "list", "table", "inet", TABLE], timeout=15).ok if shutil.which("nft") else False


def ensure(bridges: list[str], required: bool) -> None:
    """Install the table unless it is there, and let ``bridges`` (one lab's) carry their own
    traffic. ``required`` (a lab for untrusted users): a host where it cannot be installed is an
    error; else it is said in the log and the lab goes on."""
    if not present() and not _install(required):
        return
    if bridges:
        elements = ", ".join(f'"{b}" . "{b}"' for b in bridges if BRIDGE_RE.fullmatch(b))
        r = run(["nft", "add", "element", "inet", TABLE, "bridged", "{ " + elements + " }"], timeout=15)
        if not r.ok:
            raise HarnessError(f"firewall: could not let lab bridges {', '.join(bridges)} carry their own traffic: "
                               f"{r.stderr.strip()[:300]}")


def forget(bridges: list[str]) -> None:
    """A lab's bridges out of the set (at `down`; an element that is not there is no error)."""
    if present():
        for b in bridges:
            if BRIDGE_RE.fullmatch(b):
                run(["nft", "delete", "element", "inet", TABLE, "bridged", f'{{ "{b}" . "{b}" }}'], timeout=15)


def _install(required: bool) -> bool:
    """Make the table; False (and said in the log) where it cannot be made and is not required."""
    why = "nft is not installed (apt install nftables)" if shutil.which("nft") is None else ""
    if not why:
        r = run(["nft", "-f", "-"], input=RULESET, timeout=30)
        if r.ok:
            log.info(f"firewall: nftables table inet {TABLE} guards lab bridges ({BRIDGES}) from the host and each other")
            return True
        why = f"nft -f failed: {r.stderr.strip()[:300]}"
    if required:
        raise HarnessError(f"cannot fence lab networks off this host and other labs: {why}. A lab for untrusted "
                           f"users needs it; nothing of the lab's nodes was made")
    log.info(f"firewall: WARNING lab networks are not fenced off this host ({why}); only ip_forward=0 keeps labs apart")
    return False


def remove() -> None:
    """Delete the table (ci/stop-daemons.sh and tests; labs never do: it serves every lab on the host)."""
    if present():
        run(["nft", "delete", "table", "inet", TABLE], timeout=15)


# -- a chaos run's cut between the KVM host's clients and some of a lab's nodes ----------------
def cut_table(lab_tag: str) -> str:
    """The lab's own table for cutting the host off some of its nodes (paths.tag: 6 hex digits)."""
    if not re.fullmatch(r"[0-9a-f]{6}", lab_tag):
        raise HarnessError(f"lab tag {lab_tag!r} is not 6 hex digits")
    return f"storlab_cut_{lab_tag}"


def cut(lab_tag: str, addresses: list[str]) -> None:
    """Drop the host's traffic to and from ``addresses`` (nodes of one lab), ssh to them excepted
    (storlab's own path: it undoes faults through it), so the host's storage clients (FUSE,
    libgfapi, librbd, the host pools) lose those servers as in a network partition. A cut already
    in place is replaced by this one at once (a client's servers changing under it). Runs before
    the table guarding lab bridges (a lower priority), which then never sees what is dropped here."""
    addrs = [str(ipaddress.IPv4Address(a)) for a in addresses]
    if not addrs:
        raise HarnessError("a cut needs at least one address")
    table, elems = cut_table(lab_tag), ", ".join(addrs)
    rules = f"""table inet {table} {{
  chain output {{
    type filter hook output priority filter - 20; policy accept;
    ip daddr {{ {elems} }} tcp dport 22 accept
    ip daddr {{ {elems} }} counter drop
  }}
  chain input {{
    type filter hook input priority filter - 20; policy accept;
    ip saddr {{ {elems} }} tcp sport 22 accept
    ip saddr {{ {elems} }} counter drop
  }}
}}
"""
    # one transaction: a cut already there is replaced, with no moment in which the host reaches all
    r = run(["nft", "-f", "-"], input=f"table inet {table} {{}}\ndelete table inet {table}\n{rules}", timeout=30)
    if not r.ok:
        raise HarnessError(f"could not cut the host off {elems}: {r.stderr.strip()[:300]}")


def uncut(lab_tag: str) -> bool:
    """Remove the lab's cut (True: there was one). `down` calls it too: a run killed mid-cut."""
    table = cut_table(lab_tag)
    if shutil.which("nft") is None or not run(["nft", "list", "table", "inet", table], timeout=15).ok:
        return False
    r = run(["nft", "delete", "table", "inet", table], timeout=15)
    if not r.ok:
        raise HarnessError(f"could not remove nftables table {table}: {r.stderr.strip()[:300]}")
    return True
