"""A container node made silent on its lab's bridges while it is frozen (a faithful hang): every
frame from or to the host ends of its veths is dropped by an nftables table of its own in the
host's bridge family.

Why there, and not the other ways: a frozen container's kernel is the host's and keeps answering
(ARP, TCP ACKs and resets), which a hung machine does not. Setting the host end of its veth down
also silences it, but the container side loses carrier: after the thaw its kernel and
systemd-networkd see a link go down and up, which a hung machine's NIC never did (that is the
`link` fault). tc on the port would be per device and leave nothing behind, but this host's
kernel has no matchall/u32 classifier or drop action (measured 2026-12-04: "TC classifier not
found"), while nft's bridge family works here. Dropping inside the node's network namespace
would put storlab's rules where the node's root can see them, and run a host command in a
namespace the node controls. So: drop on the bridge ports, outside the node; its view of its
own link is untouched, its peers (the host included) see neither ARP answers nor TCP, their
packets are just lost. Measured with veths on a bridge in a throwaway namespace: connects to
the port's address time out (were refused before), ARP entries for it go FAILED, the port keeps
its carrier, and the other ports are untouched.

The table names carry the lab's tag and the node's index (never a name from a node or a
topology); the ports are the veth names storlab gave (paths.veth_name), checked again here."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Sequence

from harness import paths
from harness.errors import HarnessError
from harness.run import run

#: a lab node's host-side veth (paths.veth_name: slv, the lab's 6-hex tag, node index, network index)
PORT_RE = re.compile(r"slv[0-9a-f]{6}[0-9]{3,6}")
TABLE_PREFIX = "storlab_hang_"
TABLE_RE = re.compile(r"storlab_hang_[0-9a-f]{6}_[0-9]{1,4}")


def table(lab: str, index: int) -> str:
    """The bridge-family table that silences node ``index`` of ``lab``."""
    name = f"{TABLE_PREFIX}{paths.tag(lab)}_{int(index)}"
    if not TABLE_RE.fullmatch(name):
        raise HarnessError(f"node index {index} makes no hang table name")
    return name


def ruleset(name: str, ports: Sequence[str]) -> str:
    """`nft -f` input: the table made anew in one transaction (declared, deleted, declared with its
    two chains: a second hang leaves one table with one rule each, not two)."""
    if not TABLE_RE.fullmatch(name):
        raise HarnessError(f"{name!r} is not a hang table name")
    bad = [p for p in ports if not PORT_RE.fullmatch(p)]
    if bad or not ports:
        raise HarnessError(f"refusing to silence {', '.join(map(repr, bad)) or 'no port'}: not a lab node's veth")
    names = ", ".join(f'"{p}"' for p in ports)
    return (f"table bridge {name} {{}}\ndelete table bridge {name}\n"
            f"table bridge {name} {{\n"
            f"  chain from_node {{ type filter hook prerouting priority -300; policy accept; "
            f"iifname {{ {names} }} counter drop; }}\n"
            f"  chain to_node {{ type filter hook postrouting priority -300; policy accept; "
            f"oifname {{ {names} }} counter drop; }}\n}}\n")


def _nft(what: str) -> None:
    if shutil.which("nft") is None:
        raise HarnessError(f"{what} needs nft on the host (apt install nftables)")


def silence(name: str, ports: Sequence[str]) -> None:
    """Drop every frame from and to ``ports`` (the node's veth host ends) on the host's bridges."""
    _nft("a hang")
    r = run(["nft", "-f", "-"], input=ruleset(name, ports), timeout=30)
    if not r.ok:
        raise HarnessError(f"could not silence {', '.join(ports)} (nft table bridge {name}): {r.stderr.strip()[-400:]}")


def unsilence(name: str) -> None:
    """Delete the table if it is there (a hang that made none, a VM's, leaves nothing to do)."""
    if not TABLE_RE.fullmatch(name):
        raise HarnessError(f"{name!r} is not a hang table name")
    if shutil.which("nft") is None or not run(["nft", "list", "table", "bridge", name], timeout=15).ok:
        return
    r = run(["nft", "delete", "table", "bridge", name], timeout=30)
    if not r.ok:
        raise HarnessError(f"could not delete nft table bridge {name}: {r.stderr.strip()[-400:]}")


def tables_of(lab: str) -> list[str]:
    """This lab's hang tables on the host (a node still hung, or one a killed run left)."""
    if shutil.which("nft") is None:
        return []
    r = run(["nft", "-j", "list", "tables", "bridge"], timeout=15)
    return tables_in(r.stdout if r.ok else "", lab)


def tables_in(text: str, lab: str) -> list[str]:
    """The hang tables of ``lab`` in `nft -j list tables` output."""
    try:
        items = json.loads(text or "{}").get("nftables", [])
    except (ValueError, AttributeError):
        return []
    prefix = f"{TABLE_PREFIX}{paths.tag(lab)}_"
    names = [str(i["table"].get("name", "")) for i in items if isinstance(i, dict) and isinstance(i.get("table"), dict)]
    return sorted(n for n in names if n.startswith(prefix) and TABLE_RE.fullmatch(n))


def hang(freeze: Callable[[], None], thaw: Callable[[], None], name: str, ports: Sequence[str]) -> None:
    """Freeze, then silence: the node's own processes never run while its traffic is dropped, so
    nothing in it can see the cut (it sees time jump, as a hung machine that comes back does). If
    the silence cannot be made the node is thawed again: never left half hung."""
    freeze()
    try:
        silence(name, ports)
    except BaseException:
        thaw()
        raise


def unhang(thaw: Callable[[], None], name: str) -> None:
    """Lift the silence, then thaw (the reverse of hang)."""
    unsilence(name)
    thaw()
