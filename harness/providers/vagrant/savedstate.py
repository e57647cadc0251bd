"""Saved states: the box booted once, ready for a lab, and saved (memory and disk), so that a VM
node is restored from it in about a second instead of booting for a minute or two under TCG.

A state is kept per shape (kernel, memory, vCPUs, libvirt domain type: what a restore cannot
change) beside the box, under a key of everything it depends on (the box, this module's
STATE_VERSION, the kernel command line, the QEMU and libvirt versions): a new box, QEMU or
libvirt builds new states, as a new image builds a new box. It is built the first time a lab
needs that shape, on that lab's own management network (so every object it makes carries the
lab's name, and `down` removes what a killed build left): the box boots with its generic
identity, storlab waits until systemd is up, hot-unplugs the NIC (a restored node gets its own
NICs hot-plugged, with its own MACs) and saves the domain. The state's disk is then read-only:
each node's root disk is a qcow2 overlay over it.

Why not through vagrant: vagrant-libvirt only defines and boots domains (`vagrant up`), it has
no restore; nodes from a state are made with libvirt-python directly (see restored.py).

libvirt's save image is a header ('LibvirtQemudSave', version, the length of what follows, ...),
the domain XML and a cookie (padded), then QEMU's migration stream. libvirt restores an image only
under the UUID its XML has (an edited XML with another UUID is refused: "Target domain uuid ...
does not match source") and two domains cannot share a UUID, so each restore rewrites the header's
XML in place (under the state's lock) with the node's own name, UUID, disk and console; the
migration stream, the state itself, is never touched.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import locks, log, paths
from harness.errors import HarnessError
from harness.providers.stale import Stale, tree
from harness.providers.vagrant.box import CMDLINE, Box, added_dir, ref
from harness.providers.vagrant.process import tail
from harness.providers.vagrant.spec import domain_description
from harness.run import run, succeed, wait_until
from harness.spec import releases

#: bump when what a state holds or how it is made changes
STATE_VERSION = "3"
MAGIC = b"LibvirtQemudSave"
#: TCG's translation cache of a node restored from a state (golden_xml)
TB_CACHE_MIB = 256
#: magic, then version, data length, was-running, compressed, cookie offset and 14 unused (u32 each)
HEADER = struct.Struct("<16s19I")


@dataclass(frozen=True)
class Shape:
    """What a restored domain must share with its state: libvirt refuses another memory size or
    vCPU count, and a state saved by TCG is not a KVM guest's."""

    kernel: str
    memory: int
    cpus: int
    driver: str  # libvirt domain type: "qemu" (TCG) or "kvm"

    @property
    def label(self) -> str:
        return f"{self.kernel}-{self.memory}m-{self.cpus}c-{self.driver}"


@dataclass(frozen=True)
class State:
    """Where a saved state lives; ``complete`` once it may be restored from."""

    key: str
    shape: Shape
    dir: Path

    @property
    def disk(self) -> Path:
        return self.dir / "disk.qcow2"

    @property
    def memory(self) -> Path:
        return self.dir / "memory.save"

    @property
    def header(self) -> Path:
        """The image's header as libvirt wrote it (each restore writes its own over it)."""
        return self.dir / "header.bin"

    @property
    def complete(self) -> bool:
        return (self.dir / "complete").exists()


def versions() -> str:
    """QEMU's and libvirt's versions and the host's CPU: a state saved by one may not load in
    another (a state's CPU model is the host's, as libvirt's host-model makes it)."""
    qemu = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True, timeout=30,
                          check=False).stdout.splitlines()
    libvirtd = subprocess.run(["libvirtd", "--version"], capture_output=True, text=True, timeout=30,
                              check=False).stdout.strip()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?")
    return f"{qemu[0] if qemu else '?'} / {libvirtd or '?'} / {cpu}"


def state_key(box: Box, label: str, host_versions: str) -> str:
    """What a state of ``box`` in the shape ``label`` saved by ``host_versions`` is keyed by."""
    return hashlib.sha256(json.dumps([box.name, STATE_VERSION, CMDLINE, label, host_versions]).encode()).hexdigest()[:12]


def state_for(box: Box, shape: Shape, host_versions: str) -> State:
    key = state_key(box, shape.label, host_versions)
    return State(key=key, shape=shape, dir=box.dir / "states" / f"{shape.label}-{key}")


def stale(in_use: set[str]) -> list[Stale]:
    """Saved states of the current boxes that this host's QEMU, libvirt or CPU would not load (their
    key names what saved them), but none of a box a lab uses (its VMs sit on any of its states)."""
    host, out = versions(), []
    for release in releases.RELEASES:
        box = ref(release)
        for d in [] if box.key in in_use else sorted((box.dir / "states").glob("*")):
            label, _, key = d.name.rpartition("-")
            if d.is_dir() and not d.is_symlink() and label and key != state_key(box, label, host):
                out.append(tree("saved state", f"{box.key}/{d.name}", d,
                                "saved by another QEMU, libvirt or CPU than this host's"))
    return out


def box_image(box: Box) -> Path:
    """The box's disk as `vagrant box add` unpacked it (the state's disk is an overlay over it)."""
    found = sorted(added_dir(box.name).glob("*/libvirt/box.img"))
    if not found:
        raise HarnessError(f"box {box.name} has no disk under {added_dir(box.name)}: run `storlab up` with --cold-boot "
                           "once, or rebuild the box (it is added by harness/providers/vagrant/box.py)")
    return found[-1]


# -- the save image's header ------------------------------------------------------------------
def read_header(data: bytes) -> tuple[tuple[int, ...], str, bytes]:
    """(header fields, domain XML, cookie) of a save image's first bytes."""
    if len(data) < HEADER.size:
        raise HarnessError("not a libvirt save image: too short")
    magic, *fields = HEADER.unpack_from(data)
    version, data_len, cookie_at = fields[0], fields[1], fields[4]
    if magic != MAGIC or version != 2:
        raise HarnessError(f"not a libvirt save image of version 2 (magic {magic!r}, version {version})")
    body = data[HEADER.size:HEADER.size + data_len]
    if len(body) != data_len or not 0 < cookie_at < data_len:
        raise HarnessError("libvirt save image header is truncated or its cookie offset is out of range")
    xml = body[:body.index(b"\0")].decode()
    cookie = body[cookie_at:body.index(b"\0", cookie_at)] if b"\0" in body[cookie_at:] else body[cookie_at:]
    return tuple(fields), xml, cookie


def header_with(data: bytes, xml: str) -> bytes:
    """The header ``data`` (as read_header takes it) with its domain XML replaced by ``xml``; the
    same length, so it is written over the old one and the migration stream after it stays put."""
    fields, _, cookie = read_header(data)
    data_len = fields[1]
    body = xml.encode() + b"\0"
    cookie_at = len(body)
    body += cookie + b"\0"
    if len(body) > data_len:
        raise HarnessError(f"the node's domain XML ({len(xml)} bytes) does not fit the save image's "
                           f"{data_len} bytes for it")
    new = list(fields)
    new[4] = cookie_at
    return HEADER.pack(MAGIC, *new) + body + b"\0" * (data_len - len(body))


# -- domain XML -------------------------------------------------------------------------------
def golden_xml(name: str, description: str, box: Box, shape: Shape, disk: Path, console: Path,
               network: str, mac: str) -> str:
    """The domain a state is saved from: the box's kernel booted directly, its disk overlay, one
    NIC on the building lab's management network (unplugged before the save), a serial console
    to a file, a VM generation ID (a restored node gets a new one: its kernel reseeds its random
    number generator) and a virtio RNG."""
    d = ET.Element("domain", type=shape.driver)
    ET.SubElement(d, "name").text = name
    ET.SubElement(d, "description").text = description
    ET.SubElement(d, "genid")
    ET.SubElement(d, "memory", unit="MiB").text = str(shape.memory)
    ET.SubElement(d, "vcpu").text = str(shape.cpus)
    os_ = ET.SubElement(d, "os")
    ET.SubElement(os_, "type", arch="x86_64", machine="pc").text = "hvm"
    ET.SubElement(os_, "kernel").text = str(box.kernel(shape.kernel))
    ET.SubElement(os_, "initrd").text = str(box.initrd(shape.kernel))
    ET.SubElement(os_, "cmdline").text = CMDLINE
    feats = ET.SubElement(d, "features")
    ET.SubElement(feats, "acpi")
    ET.SubElement(feats, "apic")
    if shape.driver == "qemu":
        # TCG's translated-code cache is 1 GiB by default, grown into as code runs: a 1 GiB node's
        # QEMU was 780 MiB RSS at its login prompt with it and 420 MiB with 128 MiB (same boot time),
        # ~1.25 GiB under a gluster role with it
        ET.SubElement(ET.SubElement(feats, "tcg"), "tb-cache", unit="MiB").text = str(TB_CACHE_MIB)
    # the CPU vagrant-libvirt gives a booted node (its default cpu_mode): under TCG libvirt's bare
    # default, qemu64, lacks what Ceph's binaries use (ceph-mon died of SIGILL on a first try)
    ET.SubElement(d, "cpu", mode="host-model")
    ET.SubElement(d, "clock", offset="utc")
    ET.SubElement(d, "on_poweroff").text = "destroy"
    ET.SubElement(d, "on_reboot").text = "restart"
    ET.SubElement(d, "on_crash").text = "destroy"
    dev = ET.SubElement(d, "devices")
    disk_el = ET.SubElement(dev, "disk", type="file", device="disk")
    ET.SubElement(disk_el, "driver", name="qemu", type="qcow2")
    ET.SubElement(disk_el, "source", file=str(disk))
    ET.SubElement(disk_el, "target", dev="vda", bus="virtio")
    dev.append(ET.fromstring(nic_xml(network, mac)))
    serial = ET.SubElement(dev, "serial", type="file")
    ET.SubElement(serial, "source", path=str(console))
    ET.SubElement(serial, "target", port="0")
    rng = ET.SubElement(dev, "rng", model="virtio")
    ET.SubElement(rng, "backend", model="random").text = "/dev/urandom"
    ET.SubElement(dev, "memballoon", model="virtio")
    return ET.tostring(d, encoding="unicode")


def nic_xml(network: str, mac: str) -> str:
    iface = ET.Element("interface", type="network")
    ET.SubElement(iface, "source", network=network)
    ET.SubElement(iface, "mac", address=mac)
    ET.SubElement(iface, "model", type="virtio")
    return ET.tostring(iface, encoding="unicode")


def disk_xml(path: str, dev: str) -> str:
    """A data disk to hot-plug; its serial (storlab-vdb) lets the node check which name it got."""
    disk = ET.Element("disk", type="file", device="disk")
    ET.SubElement(disk, "driver", name="qemu", type="qcow2")
    ET.SubElement(disk, "source", file=path)
    ET.SubElement(disk, "target", dev=dev, bus="virtio")
    ET.SubElement(disk, "serial").text = f"storlab-{dev}"
    return ET.tostring(disk, encoding="unicode")


def node_xml(saved: str, name: str, description: str, root_disk: str, console: str) -> tuple[str, str]:
    """(XML, UUID) of a node restored from a state whose saved domain XML is ``saved``: its own
    name, UUID, description, root disk and console file, and a new VM generation ID."""
    d = ET.fromstring(saved)
    for tag, text in (("name", name), ("uuid", str(uuid.uuid4())), ("description", description)):
        el = d.find(tag)
        if el is None:
            el = ET.SubElement(d, tag)
        el.text = text
    genid = d.find("genid")
    if genid is not None:
        genid.text = None  # empty: libvirt makes a new one
    disks = [s for s in d.iterfind("./devices/disk") if (t := s.find("target")) is not None and t.get("dev") == "vda"]
    if len(disks) != 1 or (src := disks[0].find("source")) is None:
        raise HarnessError("the saved state's domain has no root disk vda")
    src.set("file", root_disk)
    for chardev in (*d.iterfind("./devices/serial"), *d.iterfind("./devices/console")):
        s = chardev.find("source")
        if s is not None and chardev.get("type") == "file":
            s.set("path", console)
    if d.find("./devices/interface") is not None:
        raise HarnessError("the saved state's domain still has a NIC (it is unplugged before the save)")
    return ET.tostring(d, encoding="unicode"), str(d.findtext("uuid"))


# -- building and restoring -------------------------------------------------------------------
def ssh_argv(key: Path, ip: str) -> list[str]:
    """ssh as root with the box's build key (only a node restored or a state being built accepts
    it, until the node's identity step puts the lab's key in its place); no host key is kept.
    The remote command follows."""
    return ["ssh", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5", f"root@{ip}"]


def _lease(net: Any, mac: str) -> str | None:
    for lease in net.DHCPLeases(mac):
        if lease.get("ipaddr"):
            return str(lease["ipaddr"])
    return None


def build(conn: Any, box: Box, st: State, *, lab: str, network: str, console: Path, bound: float) -> None:
    """Boot the box on ``network`` (the building lab's management network), wait for it and save
    it into ``st``, unless another process did it first (the state's lock serialises builds)."""
    import libvirt
    with locks.exclusive(f".vmstate-{st.key}", timeout=bound + 300, what=f"saved state {st.dir.name}"):
        if st.complete:
            return
        if st.dir.exists():
            shutil.rmtree(st.dir)  # a build that was killed
        st.dir.mkdir(parents=True)
        t0 = time.monotonic()
        succeed(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(box_image(box)), str(st.disk)],
                timeout=60)
        tag = f"state-{st.key[:8]}"
        name, mac = paths.obj_name(lab, "state", st.key[:8]), paths.mac(lab, tag, "mgmt")
        xml = golden_xml(name, domain_description(lab, tag, paths.home_id()), box, st.shape, st.disk, console,
                         network, mac)
        dom = conn.createXML(xml, 0)
        try:
            net = conn.networkLookupByName(network)
            ip = wait_until(lambda: _lease(net, mac), timeout=bound, interval=0.5, what=f"{name}: a DHCP lease")
            key = box.build_key
            wait_until(lambda: subprocess.run([*ssh_argv(key, ip), "true"], capture_output=True, timeout=30,
                                              check=False).returncode == 0,
                       timeout=bound, interval=1.0, what=f"{name}: ssh at {ip}")
            # running, or degraded (a masked unit's dependency): either way systemd has finished booting
            run([*ssh_argv(key, ip), "systemctl is-system-running --wait; sync"], timeout=bound)
            nic = ET.fromstring(dom.XMLDesc(0)).find("./devices/interface")
            dom.detachDeviceFlags(ET.tostring(nic, encoding="unicode") if nic is not None else "",
                                  libvirt.VIR_DOMAIN_AFFECT_LIVE)
            wait_until(lambda: ET.fromstring(dom.XMLDesc(0)).find("./devices/interface") is None, timeout=60,
                       interval=0.2, what=f"{name}: its NIC unplugged")
            dom.save(str(st.memory))
        except BaseException as exc:
            try:
                if dom.isActive():
                    dom.destroy()
            except libvirt.libvirtError:
                pass
            shutil.rmtree(st.dir, ignore_errors=True)
            if isinstance(exc, Exception):
                raise HarnessError(f"saved state {st.dir.name}: {exc}\n--- serial console {console} (tail)\n"
                                   f"{tail(console)}") from exc
            raise
        with open(st.memory, "rb") as fh:
            head = fh.read(HEADER.size)
            fields = HEADER.unpack(head)[1:]
            st.header.write_bytes(head + fh.read(fields[1]))
        read_header(st.header.read_bytes())  # refuse a format this module does not know, now
        os.chmod(st.disk, 0o444)
        (st.dir / "complete").write_text(f"{st.shape.label} built in {time.monotonic() - t0:.1f}s by lab {lab}\n")
        log.info(f"saved state {st.dir.name}: built in {time.monotonic() - t0:.1f}s")


def restore(conn: Any, st: State, xml: str) -> None:
    """Restore a domain from ``st`` as ``xml`` (node_xml): the header rewritten for it, then libvirt's
    restore (it returns once QEMU has read the whole state and the domain runs)."""
    with locks.exclusive(f".vmstate-{st.key}", timeout=300, what=f"saved state {st.dir.name}"):
        head = header_with(st.header.read_bytes(), xml)
        with open(st.memory, "r+b") as fh:
            fh.write(head)
        conn.restoreFlags(str(st.memory), None, 0)
