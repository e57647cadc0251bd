"""A lab's VM nodes restored from saved states (savedstate.py) instead of booted by `vagrant up`.

For each node, one after the other (a restore takes ~1.5 s under TCG and holds its state's lock):
its root disk, a qcow2 overlay over the state's disk, and its data disks are made in storlab's
pool under the names vagrant-libvirt would give them; the domain is restored from the state under
its own name and UUID, made persistent, and given its NICs (management first: it is eth0, which
takes its reserved address from libvirt's DHCP) and data disks by hot-plug, each with its own MAC
or serial, also in its persistent definition (a node that is powered off and on later boots
from its own disk with the same devices, as a node `vagrant up` made does).

Then, on every node at once, over ssh with the box's build key: its identity (identity_script):
the lab's key in place of the build key, a machine-id of its own (its domain's UUID, as systemd
takes it at a first boot), a new ssh host key, its lab addresses, its hostname and data disks
(the same provisioning a booted node gets: spec.provision_script), a check that each data disk
got the device name the plan gives it, and last its clock, stepped to the host's time (a
restored guest's clock is the state's). Its kernel reseeded its random number generator as the
domain came back: the state has a VM generation ID, and each restore a new one.
"""

from __future__ import annotations

import contextlib
import shlex
import subprocess
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness import log
from harness.errors import HarnessError
from harness.plan.model import DiskPlan, need
from harness.providers.vagrant import savedstate
from harness.providers.vagrant import spec as vagrantspec
from harness.providers.vagrant.box import STORAGE_POOL, Box
from harness.providers.vagrant.domains import LabLibvirt
from harness.providers.vagrant.process import port_open, tail
from harness.run import wait_until
from harness.spec import releases

CLOCK_REQUEST = "storlab-clock-request"
DONE = "storlab-identity-done"


def network_unit(mac: str, address: str) -> str:
    """systemd-networkd unit of a lab network: matched by the NIC's MAC, a static address."""
    return (f"# storlab: a lab network of this node (restored from a saved state)\n[Match]\nMACAddress={mac}\n\n"
            f"[Network]\nAddress={address}\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n")


def identity_script(name: str, domain_uuid: str, public_key: str, networks: list[tuple[str, str]],
                    disks: tuple[DiskPlan, ...]) -> str:
    """What makes a node restored from a shared state its own (see the module's docstring).
    ``networks``: (MAC, address/prefix) of each lab network. Its last step asks for the host's
    time on stdout (CLOCK_REQUEST) and reads it from stdin, so the step is not late by the
    script's own run time."""
    lines = ["set -eu", "umask 022", "PS4='+ $EPOCHREALTIME '", "set -x",  # each step timed, in the log
             f"echo {uuid.UUID(domain_uuid).hex} > /etc/machine-id",
             "rm -f /etc/ssh/ssh_host_*",
             'ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key',
             # OpenSSH >= 9.8 (trixie) loads host keys once, in the listener, not per connection:
             # without this the node keeps serving the saved state's key (shared by every restored
             # node) until its first real boot. SIGHUP re-executes the listener; this session stays.
             "systemctl reload ssh.service"]
    for i, (mac, address) in enumerate(networks, start=1):
        lines.append(f"printf %s {shlex.quote(network_unit(mac, address))} > /etc/systemd/network/50-storlab-lab{i}.network")
    lines.append("networkctl reload")
    if disks:
        lines.append("udevadm settle -t 30 || true")
    for d in disks:
        dev = need(d.device, f"disk {d.name}: device")
        serial = f"/dev/disk/by-id/virtio-storlab-{dev.removeprefix('/dev/')}"
        lines.append(f'got=$(readlink -f {serial} || true); [ "$got" = {dev} ] || '
                     f'{{ echo "disk {d.name}: hot-plugged as ${{got:-nothing}}, not {dev}" >&2; exit 3; }}')
    lines.append(vagrantspec.provision_script(name, disks).removeprefix("set -eu\n").rstrip("\n"))
    for _, address in networks:
        ip = address.split("/")[0]
        lines.append(f"for i in $(seq 200); do ip -4 -o addr show | grep -q ' {ip}/' && break; sleep 0.05; done")
        lines.append(f"ip -4 -o addr show | grep -q ' {ip}/' || {{ echo 'no address {ip} after 10 s' >&2; exit 4; }}")
    # the lab's key in place of the build key last: a node the build key no longer opens has all of
    # the above (a resumed `up` skips it; one interrupted before this line is given it all again)
    lines.append(f"printf '%s\\n' {shlex.quote(public_key.strip())} > /root/.ssh/authorized_keys")
    lines += [f"echo {CLOCK_REQUEST}", "read -r T", 'date -u -s "@$T" >/dev/null', f"echo {DONE}"]
    return "\n".join(lines) + "\n"


def apply_identity(key: Path, ip: str, script: str, logf: Path, timeout: float) -> None:
    """Run ``script`` on the node at ``ip`` (it holds no secret: public key, MACs, addresses, its
    machine-id) and answer its clock request, on its stdin, with the host's time then. Its output
    goes to ``logf``."""
    p = subprocess.Popen([*savedstate.ssh_argv(key, ip), script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)
    assert p.stdin is not None and p.stdout is not None
    timer = threading.Timer(timeout, p.kill)
    timer.start()
    out: list[str] = []
    try:
        for line in p.stdout:
            if line.strip() == CLOCK_REQUEST:
                p.stdin.write(f"{time.time():.6f}\n")
                p.stdin.close()
                continue
            out.append(line)
        rc = p.wait()
    finally:
        timer.cancel()
        if p.poll() is None:
            p.kill()
    logf.write_text("".join(out))
    if rc != 0 or not any(line.strip() == DONE for line in out):
        raise HarnessError(f"{ip}: identity step failed (exit {rc}{', timed out' if rc == -9 else ''}): "
                           f"{''.join(out).strip()[-800:]}")


def volume_xml(name: str, size: int, backing: Path | None = None) -> str:
    """A qcow2 volume in storlab's pool, over ``backing`` when given."""
    vol = ET.Element("volume")
    ET.SubElement(vol, "name").text = name
    ET.SubElement(vol, "capacity", unit="bytes").text = str(size)
    ET.SubElement(ET.SubElement(vol, "target"), "format", type="qcow2")
    if backing is not None:
        bs = ET.SubElement(vol, "backingStore")
        ET.SubElement(bs, "path").text = str(backing)
        ET.SubElement(bs, "format", type="qcow2")
    return ET.tostring(vol, encoding="unicode")


def _volume(pool: Any, name: str, size: int, backing: Path | None = None) -> Any:
    return pool.createXML(volume_xml(name, size, backing), 0)


def _drop_volume(pool: Any, name: str) -> None:
    import libvirt
    with contextlib.suppress(libvirt.libvirtError):
        pool.storageVolLookupByName(name).delete(0)


def _build_key_opens(key: Path, ip: str) -> bool:
    """Whether the box's build key still opens the node (its identity step has not run: that
    step puts the lab's key in its place). Waits out an sshd that is not answering yet."""
    def probe() -> str | None:
        r = subprocess.run([*savedstate.ssh_argv(key, ip), "true"], capture_output=True, text=True, timeout=30,
                           check=False)
        if r.returncode == 0:
            return "opens"
        return "refused" if "Permission denied" in r.stderr else None
    return wait_until(probe, timeout=60, interval=1.0, what=f"{ip}: sshd to answer the build key") == "opens"


class Restorer:
    """Nodes of one lab from saved states (see the module's docstring)."""

    def __init__(self, virt: LabLibvirt, spec: dict[str, Any], boxes: Mapping[str, Box], logs: Path) -> None:
        self.virt, self.conn, self.plan = virt, virt.conn(), virt.plan
        self.spec, self.boxes, self.logs = spec, boxes, logs
        self.host_versions = savedstate.versions()

    def box(self, node: str) -> Box:
        """The box of the node's release."""
        return self.boxes[self.plan.node(node).release]

    def shape(self, node: str) -> savedstate.Shape:
        n = self.plan.node(node)
        return savedstate.Shape(kernel=releases.kernel_of(n.kernel, n.release), memory=n.memory, cpus=n.cpus,
                                driver=self.spec["driver"])

    def states(self) -> dict[str, savedstate.State]:
        """node -> its state; a shape no state has yet gets one built now (once, then cached)."""
        mgmt = need(self.plan.mgmt, "the management network")
        out = {}
        for m in self.spec["machines"]:
            st = savedstate.state_for(self.box(m["name"]), self.shape(m["name"]), self.host_versions)
            if not st.complete:
                with log.step(f"saved state {st.dir.name}: boot the box once and save it (the first lab of "
                              f"this shape on this host pays it)"):
                    savedstate.build(self.conn, self.box(m["name"]), st, lab=self.plan.lab, network=mgmt.libvirt_network,
                                     console=self.logs / f"state-{st.key[:8]}.console.log",
                                     bound=vagrantspec.boot_bound(self.plan))
            out[m["name"]] = st
        return out

    def restore_all(self, powered_at: dict[str, float]) -> dict[str, str]:
        """Restore every node; node -> its domain's UUID."""
        import libvirt
        pool = self.conn.storagePoolLookupByName(STORAGE_POOL)
        mgmt = need(self.plan.mgmt, "the management network")
        uuids = {}
        flags = libvirt.VIR_DOMAIN_AFFECT_LIVE | libvirt.VIR_DOMAIN_AFFECT_CONFIG
        states = self.states()
        # what every node of a state starts from, read once: its disk's size and its domain XML
        sizes = {st: _virtual_size(st.disk) for st in set(states.values())}
        saved = {st: savedstate.read_header(st.header.read_bytes())[1] for st in set(states.values())}
        for m in self.spec["machines"]:
            st = states[m["name"]]
            node = self.plan.node(m["name"])
            have = self.virt.domain(node.name)
            if have is not None:  # a resumed `up`: the node was restored before (and boots if it is off)
                if not have.isActive():
                    powered_at[node.name] = time.monotonic()
                    have.create()
                uuids[node.name] = have.UUIDString()
                log.info(f"{node.name}: restored by an earlier `up` ({'running' if have.isActive() else 'off'})")
                continue
            for name in (f"{node.object}.img", *(d["volume"] for d in m["disks"])):
                _drop_volume(pool, name)  # one an interrupted `up` made (the lab's: `up` refused others' names)
            with log.step(f"{node.name}: restore from saved state {st.dir.name}"):
                root = _volume(pool, f"{node.object}.img", sizes[st], backing=st.disk)
                data = [_volume(pool, d["volume"], plan_disk.size) for d, plan_disk in zip(m["disks"], node.disks, strict=True)]
                xml, uuids[node.name] = savedstate.node_xml(saved[st], m["domain"], m["description"], root.path(),
                                                            m["console_log"])
                powered_at[node.name] = time.monotonic()
                savedstate.restore(self.conn, st, xml)
                dom = self.conn.lookupByName(m["domain"])
                try:
                    self.conn.defineXML(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE))
                    dom.attachDeviceFlags(savedstate.nic_xml(mgmt.libvirt_network, m["mgmt_mac"]), flags)
                    for n in m["networks"]:
                        dom.attachDeviceFlags(savedstate.nic_xml(n["network_name"], n["mac"]), flags)
                    for d, vol in zip(m["disks"], data, strict=True):
                        dom.attachDeviceFlags(savedstate.disk_xml(vol.path(), d["device"]), flags)
                except BaseException:  # a node without all its devices is not kept: a resumed `up` makes it again
                    with contextlib.suppress(libvirt.libvirtError):
                        dom.destroy()
                    with contextlib.suppress(libvirt.libvirtError):
                        dom.undefine()
                    raise
        return uuids

    def identities(self, uuids: dict[str, str], public_key: str, powered_at: dict[str, float]) -> None:
        """Each node's identity, all at once; the first failure is raised with its console's tail."""
        bound = vagrantspec.boot_bound(self.plan)
        errors: dict[str, BaseException] = {}

        def one(m: dict[str, Any]) -> None:
            name = m["name"]
            try:
                node = self.plan.node(name)
                wait_until(lambda: port_open(m["mgmt_ip"]), timeout=bound, interval=0.2,
                           what=f"{name}: ssh at {m['mgmt_ip']} after its restore")
                since = f" {time.monotonic() - powered_at[name]:.1f}s after its restore" if name in powered_at else ""
                log.info(f"{name}: ssh port open{since}")
                if not _build_key_opens(self.box(name).build_key, m["mgmt_ip"]):
                    log.info(f"{name}: has its identity from an earlier `up` (the build key no longer opens it)")
                    return
                nets = [(node.macs[net.name], f"{node.addresses[net.name]}/{net.prefix}") for net in self.plan.networks]
                script = identity_script(name, uuids[name], public_key, nets, node.disks)
                apply_identity(self.box(name).build_key, m["mgmt_ip"], script, self.logs / f"{name}.identity.log", bound)
                log.info(f"{name}: identity given" + (f", {time.monotonic() - powered_at[name]:.1f}s after its restore"
                                                      if name in powered_at else ""))
            except BaseException as exc:
                errors[name] = exc
        threads = [threading.Thread(target=one, args=(m,), name=f"identity-{m['name']}") for m in self.spec["machines"]]
        with log.step(f"identity of {', '.join(m['name'] for m in self.spec['machines'])}"):
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        for m in self.spec["machines"]:
            if m["name"] in errors:
                raise HarnessError(f"{m['name']}: {errors[m['name']]}\n--- serial console (tail)\n"
                                   f"{tail(Path(m['console_log']))}") from errors[m["name"]]


def _virtual_size(disk: Path) -> int:
    import json
    out = subprocess.run(["qemu-img", "info", "--output=json", "-U", str(disk)], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    return int(json.loads(out)["virtual-size"])
