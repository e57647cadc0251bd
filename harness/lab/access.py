"""How a lab's nodes are reached: the lab's ssh key and the other keys authorized on its nodes,
the ssh config (one persistent connection per node) and closing those connections."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from harness import paths
from harness.errors import HarnessError
from harness.nodes.node import Node
from harness.plan.model import Plan
from harness.providers.base import Provider
from harness.run import succeed

#: seconds an idle persistent ssh connection to a node stays open
SSH_PERSIST = 120
PUBKEY_RE = re.compile(r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/]+={0,3}( [A-Za-z0-9@._:+-]{1,100})?")


class Access:
    def __init__(self, plan: Plan, directory: Path, provider: Provider) -> None:
        self.plan = plan
        self.name = plan.lab
        self.dir = directory
        self.provider = provider
        self.key = directory / "id_ed25519"
        self.ssh_config = directory / "ssh_config"
        self.extra_keys = directory / "authorized_keys.extra"

    def ensure_key(self) -> str:
        if not self.key.exists():
            succeed(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"storlab-{self.name}", "-f", str(self.key)],
                    timeout=30)
        os.chmod(self.key, 0o600)
        self.write_ssh_config()
        return (self.key.with_suffix(".pub")).read_text()

    def authorize(self, public_key: str) -> None:
        """Let another key log in as root on every node from `up` on (a student's key): one plain
        public key line, no authorized_keys options (they would widen what the key may do)."""
        key = public_key.strip()
        if not PUBKEY_RE.fullmatch(key):
            raise HarnessError("an authorized key must be one public key line: 'ssh-ed25519 AAAA... [comment]' "
                               "(no options, no line breaks)")
        have = self.extra_keys.read_text().splitlines() if self.extra_keys.exists() else []
        if key not in have:
            self.extra_keys.write_text("\n".join([*have, key]) + "\n")

    def replace(self, old: str | None, new: str) -> None:
        """``new`` authorized in place of ``old`` (a seat handed to another student: the key the
        last one held opens nothing from now on)."""
        key = new.strip()
        if not PUBKEY_RE.fullmatch(key):
            raise HarnessError("an authorized key must be one public key line: 'ssh-ed25519 AAAA... [comment]'")
        have = self.extra_keys.read_text().splitlines() if self.extra_keys.exists() else []
        kept = [k for k in have if k and k != (old or "").strip()]
        self.extra_keys.write_text("\n".join([*kept, key]) + "\n")

    def authorized_keys(self) -> str:
        """The lab's own key, then any key authorized for it (what every node's root accepts)."""
        own = self.ensure_key()
        return own if not self.extra_keys.exists() else own.rstrip("\n") + "\n" + self.extra_keys.read_text()

    def ssh_config_text(self) -> str:
        # One persistent connection per node (ControlMaster): under TCG an ssh handshake costs
        # 2-7 s, so a command per handshake turns a role into minutes. `down` and crash() close them.
        control = paths.ssh_control_dir(self.name)
        out = [f"# storlab lab {self.name}: ssh -F {self.ssh_config} NODE"]
        for n in self.plan.nodes:
            out += [f"Host {n.name} {self.name}-{n.name}", f"  HostName {n.address}", "  User root",
                    f"  IdentityFile {self.key}", "  IdentitiesOnly yes",
                    # host keys pinned per lab: learnt when a node first answers, checked ever after
                    "  StrictHostKeyChecking accept-new", f"  UserKnownHostsFile {self.dir / 'known_hosts'}",
                    "  HostKeyAlgorithms ssh-ed25519", "  LogLevel ERROR", "  ConnectTimeout 5",
                    "  ServerAliveInterval 5", "  ServerAliveCountMax 3",
                    "  ControlMaster auto", f"  ControlPath {control}/%h", f"  ControlPersist {SSH_PERSIST}"]
            proxy = self.provider.ssh_proxy(n.name)
            out += [f"  ProxyCommand {proxy}", ""] if proxy else [""]
        return "\n".join(out)

    def write_ssh_config(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        paths.ssh_control_dir(self.name).mkdir(mode=0o700, parents=True, exist_ok=True)
        self.ssh_config.write_text(self.ssh_config_text())

    def close_connections(self, nodes: Iterable[Node]) -> None:
        """Stop the lab's persistent ssh connections (nothing of a lab outlives `down`)."""
        for node in nodes:
            node.close_connection()
        shutil.rmtree(paths.ssh_control_dir(self.name), ignore_errors=True)
