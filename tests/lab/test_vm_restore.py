"""VM nodes restored from one saved state (harness/providers/vagrant/savedstate.py) are nodes of
their own: no two share a MAC, an address, an ssh host key, a machine-id or a domain UUID, each
one's clock is the host's, its kernel reseeded its random number generator on the restore, and
its data disk has the name the plan gives it. Three nodes with a data disk each; under TCG the
lab is up in about 15 s once the state exists (the first run on a host builds it: ~40 s more).
Select with `-m vm`.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from harness import paths
from harness.lab.lab import Lab
from harness.providers.vagrant.savedstate import MAGIC

pytestmark = [pytest.mark.lab, pytest.mark.vm]

LAB = "vmrestore"
TOPOLOGY = f"""lab: {LAB}
description: three VM nodes restored from one saved state
provider: vagrant
networks:
  - name: storage
nodes:
""" + "".join(f"""  - name: n{i}
    memory: 1024
    disks:
      - {{name: data, size: 1G, filesystem: xfs, mount: /data}}
""" for i in (1, 2, 3))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Any:
    if shutil.which("vagrant") is None:
        pytest.skip("vagrant is not installed (ci/setup-host.sh --vm installs vagrant and vagrant-libvirt)")
    if os.geteuid() != 0:
        pytest.skip("VM lab tests need root (libvirt system instance, networks, pool)")
    if (paths.lab_dir(LAB) / "plan.json").exists():
        Lab.load(LAB).down()
    topo = tmp_path_factory.mktemp("topo") / "vm-restore.yaml"
    topo.write_text(TOPOLOGY)
    lab = Lab.from_topology(str(topo), "vagrant", cold_boot=False, release=request.config.getoption("--lab-release"))
    try:
        t = time.monotonic()
        lab.up(owner_pid=os.getpid())
        print(f"\n{LAB}: up in {time.monotonic() - t:.1f}s")
        yield lab
    finally:
        rep = lab.down()
        assert rep.ok, f"down failed: {rep.failed}"
        assert lab.leftovers() == []


def facts(lab: Lab, name: str) -> dict[str, Any]:
    node = lab.node(name)
    links = json.loads(node.succeed(["ip", "-j", "addr", "show"]))
    dom = lab.provider.libvirt.domain(name)  # type: ignore[attr-defined]
    xml = ET.fromstring(dom.XMLDesc(0))
    return {
        "guest_macs": sorted(i["address"] for i in links if i["ifname"] != "lo"),
        "addresses": sorted(a["local"] for i in links if i["ifname"] != "lo" for a in i.get("addr_info", [])
                            if a["family"] == "inet"),
        "host_key": node.succeed(["ssh-keygen", "-lf", "/etc/ssh/ssh_host_ed25519_key.pub"]).split()[1],
        "machine_id": node.succeed(["cat", "/etc/machine-id"]).strip(),
        "uuid": dom.UUIDString(),
        "xml_macs": sorted(m.get("address", "") for m in xml.iterfind("./devices/interface/mac")),
        "root_backing": [s.get("file") for s in xml.iterfind("./devices/disk/backingStore/source")],
    }


def test_restored_nodes_never_share_a_mac_address_host_key_or_machine_id(lab: Lab) -> None:
    seen = {n.name: facts(lab, n.name) for n in lab.plan.nodes}
    for key in ("guest_macs", "addresses", "host_key", "machine_id", "uuid"):
        values = [json.dumps(f[key]) for f in seen.values()]
        assert len(set(values)) == len(values), f"nodes share {key}: {seen}"
    for n in lab.plan.nodes:
        f = seen[n.name]
        # the guest's NICs are the ones libvirt plugged, with the plan's MACs and addresses
        assert f["guest_macs"] == f["xml_macs"]
        assert set(n.macs.values()) <= set(f["guest_macs"])
        assert set(n.addresses.values()) <= set(f["addresses"])
        assert f["machine_id"] == f["uuid"].replace("-", "")  # as systemd takes it at a first boot
        # the node was restored, not booted: its root disk is an overlay over a saved state's disk
        assert any("/states/" in (p or "") for p in f["root_backing"]), f["root_backing"]
    assert not (lab.dir / ".vagrant").exists()


def test_each_node_knows_its_own_host_key_in_the_labs_known_hosts(lab: Lab) -> None:
    known = (lab.dir / "known_hosts").read_text() if (lab.dir / "known_hosts").exists() else ""
    for n in lab.plan.nodes:
        key = lab.node(n.name).succeed(["cat", "/etc/ssh/ssh_host_ed25519_key.pub"]).split()[1]
        assert key in known, f"{n.name}: its host key is not the one the lab's ssh accepted"


def test_clocks_are_the_hosts_after_the_restore(lab: Lab) -> None:
    for n in lab.plan.nodes:
        node = lab.node(n.name)
        before = time.time()
        guest = float(node.succeed(["date", "+%s.%N"]))
        after = time.time()
        assert before - 1.0 <= guest <= after + 1.0, f"{n.name}: clock {guest - after:+.1f}s from the host's"


def test_each_kernel_reseeded_its_rng_and_has_its_own_data_disk(lab: Lab) -> None:
    for n in lab.plan.nodes:
        node = lab.node(n.name)
        console = Path(lab.dir / "logs" / f"{n.name}.console.log").read_text(errors="replace")
        assert "crng reseeded due to virtual machine fork" in console  # the new VM generation ID
        assert node.succeed(["findmnt", "-n", "-o", "SOURCE", "/data"]).strip() == "/dev/mapper/storlab-data"
        assert node.succeed(["readlink", "-f", "/dev/disk/by-id/virtio-storlab-vdb"]).strip() == "/dev/vdb"
        assert node.succeed(["hostname"]).strip() == n.name
        assert node.succeed(["systemctl", "is-system-running"]).strip() == "running"


def test_the_saved_state_is_a_libvirt_save_image_kept_read_only(lab: Lab) -> None:
    xml = ET.fromstring(lab.provider.libvirt.domain("n1").XMLDesc(0))  # type: ignore[attr-defined]
    state_disk = Path(next(s.get("file") or "" for s in xml.iterfind("./devices/disk/backingStore/source")
                           if "/states/" in (s.get("file") or "")))
    assert (state_disk.stat().st_mode & 0o222) == 0
    assert (state_disk.parent / "memory.save").read_bytes()[:16] == MAGIC
