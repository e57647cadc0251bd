"""A node's network fault verbs that run on the node itself: addresses cut both ways (blackhole
routes) or one way (nftables), and packet delay, loss and the like on its lab interfaces (netem).
The host's ssh path to the node is never touched. Mixed into `Node` through FaultVerbs."""

from __future__ import annotations

import contextlib
import json
import shlex
from collections.abc import Iterator, Sequence
from typing import Self

from harness.errors import HarnessError
from harness.nodes.verbs import NodeVerbs, ifname, ipv4s, number

#: block()'s directions: both ways, what the node sends, what it receives
DIRECTIONS = ("both", "out", "in")
#: the node's own nftables table for one-way cuts: a set of addresses per direction, one rule each
NFT_TABLE = "storlab"
_NFT_BASE = f"""table inet {NFT_TABLE} {{
  set cut_in {{ type ipv4_addr; }}
  set cut_out {{ type ipv4_addr; }}
  chain input {{ type filter hook input priority filter - 10; policy accept; }}
  chain output {{ type filter hook output priority filter - 10; policy accept; }}
}}
flush chain inet {NFT_TABLE} input
flush chain inet {NFT_TABLE} output
add rule inet {NFT_TABLE} input ip saddr @cut_in counter drop
add rule inet {NFT_TABLE} output ip daddr @cut_out counter drop
"""
#: after an undo: the table goes once neither set holds an address (`nft list set` shows "elements" then)
_NFT_DROP_EMPTY = (f"{{ nft list set inet {NFT_TABLE} cut_in; nft list set inet {NFT_TABLE} cut_out; }} 2>/dev/null "
                   f"| grep -q elements || nft delete table inet {NFT_TABLE} 2>/dev/null; true")
NETEM_PCT = ("loss", "duplicate", "reorder", "corrupt")


def cut_script(direction: str, addresses: Sequence[str]) -> str:
    """`nft -f` input that adds ``addresses`` to the node's one-way cut (``direction`` 'in': what
    they send is dropped on input; 'out': what the node sends them is dropped on output). One
    transaction: the table, sets and chains are made when missing, the two rules written once
    (chains flushed first, so a second cut adds no rule), the addresses added."""
    s = "cut_in" if direction == "in" else "cut_out"
    return _NFT_BASE + f"add element inet {NFT_TABLE} {s} {{ {', '.join(ipv4s(addresses))} }}\n"


def uncut_command(direction: str, addresses: Sequence[str]) -> str:
    """The shell line that takes ``addresses`` out of the cut, each on its own (one that is not
    there, or a table a reboot took, is no error), then deletes the table once it cuts nothing."""
    s = "cut_in" if direction == "in" else "cut_out"
    parts = [shlex.join(["nft", "delete", "element", "inet", NFT_TABLE, s, f"{{ {a} }}"]) + " 2>/dev/null"
             for a in ipv4s(addresses)]
    return "; ".join([*parts, _NFT_DROP_EMPTY])


def netem_args(delay_ms: float = 0, jitter_ms: float = 0, loss_pct: float = 0, duplicate_pct: float = 0,
               reorder_pct: float = 0, corrupt_pct: float = 0, rate_kbit: float = 0) -> list[str]:
    """`tc qdisc ... netem` arguments, every number written by the code (HarnessError: out of range,
    not a number, nothing asked, or reordering without the delay it needs)."""
    args: list[str] = []
    if delay_ms or jitter_ms:
        args += ["delay", number(delay_ms, 0, 60_000, "delay_ms") + "ms"]
        args += [number(jitter_ms, 0, 60_000, "jitter_ms") + "ms"] if jitter_ms else []
    pcts = dict(zip(NETEM_PCT, (loss_pct, duplicate_pct, reorder_pct, corrupt_pct), strict=True))
    for what, pct in pcts.items():
        args += [what, number(pct, 0, 100, f"{what}_pct") + "%"] if pct else []
    if rate_kbit:
        args += ["rate", number(rate_kbit, 1, 100_000_000, "rate_kbit") + "kbit"]
    if reorder_pct and not delay_ms:
        raise HarnessError("netem: reorder_pct needs a delay_ms (netem reorders by sending some packets at once)")
    if not args:
        raise HarnessError("netem: give a delay, jitter, loss, duplicate, reorder, corrupt or rate")
    return args


def ifnames_by_mac(text: str) -> dict[str, str]:
    """MAC (lower case) -> interface name, from `ip -j link show` on a node (its answer: untrusted,
    every name checked against IFNAME_RE when it is used)."""
    try:
        links = json.loads(text or "[]")
    except ValueError:
        raise HarnessError(f"`ip -j link show` answered no JSON: {text[:200]!r}") from None
    if not isinstance(links, list):
        raise HarnessError("`ip -j link show` answered no list of links")
    return {str(link.get("address", "")).lower(): str(link.get("ifname", ""))
            for link in links if isinstance(link, dict)}


class NetVerbs(NodeVerbs):
    """Cuts and netem on the node (see the module)."""

    def block(self, addresses: Sequence[str], on: bool = True, direction: str = "both") -> None:
        """Drop (on=False: stop dropping) traffic between the node and ``addresses``; the host's ssh
        path to the node is untouched. ``direction`` 'both' keeps what storlab always did: blackhole
        routes, which need nothing in the image (the node's own sends fail at once with EINVAL, so
        TCP is cut both ways and the node knows). 'out' (what the node sends them is lost) and 'in'
        (what they send is lost) drop silently with the node's nftables (the golden image has
        nftables since this verb): a one-way cut cannot be made with routes."""
        addrs = ipv4s(addresses)
        if direction not in DIRECTIONS:
            raise HarnessError(f"block: direction {direction!r} is not one of {', '.join(DIRECTIONS)}")
        arrow = {"both": "->", "out": "-> (one way, out)", "in": "<- (one way, in)"}[direction]
        self.timeline.mark(f"{'block' if on else 'unblock'} {self.name} {arrow} {', '.join(addrs)}")
        if not addrs:
            return
        if direction == "both":
            for addr in addrs:
                if on:
                    self.succeed(["ip", "route", "replace", "blackhole", f"{addr}/32"])
                else:
                    self.run(["ip", "route", "del", "blackhole", f"{addr}/32"], timeout=15)
        elif on:
            r = self.run(["nft", "-f", "-"], input=cut_script(direction, addrs), timeout=60)
            if not r.ok:
                hint = " (no nft in the node's image: build the image again, `storlab image build`)" if r.rc == 127 else ""
                raise HarnessError(f"{self.name}: one-way cut failed{hint}: {(r.stderr or r.stdout).strip()[-400:]}")
        else:
            self.run(uncut_command(direction, addrs), timeout=60)

    def interfaces(self, network: str | None = None) -> list[str]:
        """The node's interface names on ``network`` (default: every lab network), found by the MAC the
        plan gave it (the same on every provider) and checked (IFNAME_RE): never the management one."""
        nets = [network] if network else list(self.spec.macs)
        unknown = [n for n in nets if n not in self.spec.macs]
        if unknown:
            raise HarnessError(f"{self.name} is on no network {', '.join(unknown)} (it is on {', '.join(self.spec.macs)})")
        by_mac = ifnames_by_mac(self.succeed(["ip", "-j", "link", "show"], timeout=30))
        out = []
        for n in nets:
            name = by_mac.get(self.spec.macs[n].lower())
            if name is None:
                raise HarnessError(f"{self.name}: no interface with MAC {self.spec.macs[n]} (network {n})")
            out.append(ifname(name))
        return out

    def netem(self, network: str | None = None, *, delay_ms: float = 0, jitter_ms: float = 0, loss_pct: float = 0,
              duplicate_pct: float = 0, reorder_pct: float = 0, corrupt_pct: float = 0, rate_kbit: float = 0) -> None:
        """Delay, jitter, loss, duplicate, reorder, corrupt or a rate limit on the node's interface on
        ``network`` (default: every lab network) with netem as its root qdisc (replacing what is
        there: a second call changes the figures). Needs sch_netem in the node's kernel (a VM's
        own; a container's is the host's, which has none here: harness.providers.capabilities)."""
        args = netem_args(delay_ms, jitter_ms, loss_pct, duplicate_pct, reorder_pct, corrupt_pct, rate_kbit)
        ifaces = self.interfaces(network)
        self.timeline.mark(f"netem {self.name} {network or '(all)'}: {' '.join(args)}")
        self.succeed(" && ".join(shlex.join(["tc", "qdisc", "replace", "dev", i, "root", "netem", *args])
                                 for i in ifaces), timeout=60)

    def netem_clear(self, network: str | None = None) -> None:
        """Take netem off (the interface's default qdisc comes back); no netem there is no error."""
        ifaces = self.interfaces(network)
        self.timeline.mark(f"netem clear {self.name} {network or '(all)'}")
        self.run("; ".join(shlex.join(["tc", "qdisc", "del", "dev", i, "root", "netem"]) + " 2>/dev/null"
                           for i in ifaces), timeout=60)

    @contextlib.contextmanager
    def blocked(self, addresses: Sequence[str], direction: str = "both") -> Iterator[Self]:
        self.block(addresses, True, direction)
        try:
            yield self
        finally:
            self.block(addresses, False, direction)

    @contextlib.contextmanager
    def degraded(self, network: str | None = None, **netem: float) -> Iterator[Self]:
        """netem(network, **netem) for the block, cleared on exit."""
        self.netem(network, **netem)
        try:
            yield self
        finally:
            self.netem_clear(network)
