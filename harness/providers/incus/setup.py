"""What a lab needs on an Incus remote before its nodes: the golden image (imported once per
content key), the lab's project (its budget and restrictions), and its networks."""

from __future__ import annotations

import functools
import re
import tarfile
import tempfile
import time
from pathlib import Path

from harness import locks, log, paths
from harness.errors import HarnessError
from harness.plan.model import Plan
from harness.providers import image
from harness.providers.incus import client as incus
from harness.providers.incus.client import HOME_KEY, OWNER_KEY, Budget, Incus
from harness.providers.incus.settings import ALIAS_PREFIX, image_alias, restrictions
from harness.providers.stale import Stale
from harness.run import succeed
from harness.spec import releases


def need(plan: Plan) -> Budget:
    return incus.need_of(plan.nodes)


def budget(plan: Plan) -> Budget:
    """The lab's budget: the plan's (`--budget`), else exactly what its nodes need."""
    b = plan.budget
    return Budget(b.instances, b.memory_mib, b.cpus, b.disk_gib) if b else need(plan)


def golden_image(default: Incus, release: str = releases.DEFAULT) -> str:
    """``release``'s golden image on the remote, imported once per content key (alias storlab-golden-KEY)."""
    key = image.key_for(release)
    alias = image_alias(key)
    with locks.allocation(timeout=900):  # one import at a time (two labs starting together)
        if default.maybe(f"/1.0/images/aliases/{alias}") is not None:
            return alias
        root = image.rootfs(key)
        if not (root.parent / "complete").exists():
            raise HarnessError(f"golden image of {release} missing at {root.parent}; run `storlab image build "
                               f"--release {release}`")
        with log.step(f"import the golden image of {release} into {default.where()} as {alias}"), \
                tempfile.TemporaryDirectory(dir=paths.image_dir(), prefix=".incus-") as tmp:
            meta = Path(tmp) / "metadata.yaml"
            meta.write_text(f"architecture: x86_64\ncreation_date: {int(time.time())}\nproperties:\n"
                            f"  description: storlab golden image {key}\n  os: debian\n"
                            f"  release: {releases.of(release).suite}\n")
            with tarfile.open(Path(tmp) / "meta.tar", "w") as tf:
                tf.add(meta, arcname="metadata.yaml")
            succeed(["tar", "-C", str(root), "--numeric-owner", "--xattrs", "--xattrs-include=*", "-cf",
                     str(Path(tmp) / "rootfs.tar"), "."], timeout=900)
            default.run("image", "import", str(Path(tmp) / "meta.tar"), str(Path(tmp) / "rootfs.tar"),
                             *([default.ref()] if default.remote else []), "--alias", alias,
                             timeout=1800)
    return alias


def stale_images(keep: set[str]) -> list[Stale]:
    """Golden images imported into this host's Incus (alias storlab-golden-KEY) whose key is not
    in ``keep``. An instance does not need the image it was made from any more."""
    default = Incus(None)
    why = default.reachable()
    if why:
        raise HarnessError(why)
    out = []
    for entry in default.query("/1.0/images/aliases?recursion=1") or []:
        name, fingerprint = str(entry.get("name", "")), str(entry.get("target", ""))
        key = name.removeprefix(ALIAS_PREFIX)
        if name.startswith(ALIAS_PREFIX) and re.fullmatch(r"[0-9a-f]{16}", key) and key not in keep:
            size = int((default.maybe(f"/1.0/images/{fingerprint}") or {}).get("size") or 0)
            out.append(Stale("incus image", name, size, "no release builds it",
                             functools.partial(_delete_image, default, fingerprint)))
    return out


def _delete_image(default: Incus, fingerprint: str) -> None:
    default.run("image", "delete", fingerprint, timeout=300)


def ensure_project(default: Incus, plan: Plan, labdir: Path) -> None:
    """The lab's project storlab-LAB with its budget and restrictions, or refuse one that is not its."""
    project = incus.project_of(plan.lab)
    proj = default.maybe(f"/1.0/projects/{project}")
    cfg = {OWNER_KEY: plan.lab, HOME_KEY: paths.home_id(), **budget(plan).project_config(),
           **restrictions(plan.untrusted, None if plan.remote else labdir / "disks")}
    if proj is None:
        feats = {"features.images": "false", "features.profiles": "true", "features.storage.volumes": "true",
                 "features.storage.buckets": "true", "features.networks": "false"}
        default.run("project", "create", default.ref(project),
                         *[a for k, v in {**feats, **cfg}.items() for a in ("-c", f"{k}={v}")], timeout=60)
        return
    if incus.owner(proj) != plan.lab or incus.home_of(proj) not in (None, paths.home_id()):
        raise HarnessError(f"Incus project {project} on {default.where()} exists and is not lab "
                           f"{plan.lab}'s of this storlab home ({OWNER_KEY}={incus.owner(proj)}, {HOME_KEY}="
                           f"{incus.home_of(proj)}; this home is {paths.home_id()}); storlab touches only what it made: "
                           f"rename the lab or remove that project")


def ensure_networks(default: Incus, plan: Plan) -> None:
    """The lab's networks: Incus bridges with no NAT, routing, DHCP or firewall, marked as the lab's."""
    clustered = default.clustered()
    for net in plan.networks:
        have = default.maybe(f"/1.0/networks/{net.bridge}")
        if have is not None:
            if incus.owner(have) != plan.lab:
                raise HarnessError(f"Incus network {net.bridge} exists and is not lab {plan.lab}'s; storlab "
                                   f"touches only what it made: rename the lab or remove that network")
            if have.get("status") == "Created":
                continue
            if not clustered:  # an `up` killed while incusd made it: remade whole (a cluster's pending
                # per-member definitions are completed by the create below)
                log.info(f"network {net.bridge} is {have.get('status')}: remaking it")
                default.run("network", "delete", default.ref(net.bridge), timeout=120)
        # no NAT, no route off the lab, no DHCP/DNS daemon, no firewall rules; the host keeps its address
        # on a remote the bridge gets no address: this host is not there, and every member's bridge
        # would hold the same one (the host-side address serves this host's libvirt pools only)
        address = "none" if plan.remote else f"{net.host_address}/{net.prefix}"
        cfg = {"ipv4.address": address, "ipv4.nat": "false", "ipv4.routing": "false",
               "ipv4.firewall": "false", "ipv4.dhcp": "false", "ipv6.address": "none", "ipv6.nat": "false",
               "ipv6.firewall": "false", "dns.mode": "none", OWNER_KEY: plan.lab,
               "user.storlab.network": net.name}
        if clustered:  # a cluster network is defined on every member first, then created everywhere
            for m in default.members():
                default.run("network", "create", default.ref(net.bridge), "--type", "bridge",
                                 "--target", m.name, check=False, timeout=60)
        default.run("network", "create", default.ref(net.bridge), "--type", "bridge",
                         *[f"{k}={v}" for k, v in cfg.items()], timeout=120)
