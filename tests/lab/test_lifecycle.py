"""Node lifecycle on the container providers (lxc, and incus on this host's daemon): up gives
ssh-reachable systemd nodes, `down` leaves no trace, a killed `up` can be cleaned up by `down`
and resumed by `up`, and `reap` removes what a killed `up` left."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness import paths
from harness.lab.lab import Lab
from harness.nodes.node import Node, partition
from harness.providers import hostdisks
from harness.providers.lxc.provider import LxcProvider
from harness.run import succeed, wait_until

TOPO = str(Path(__file__).resolve().parents[2] / "topologies" / "nodes-3.yaml")
STORLAB = [sys.executable, "-m", "harness.cli"]
PROVIDERS = ["lxc", "incus"]


def storlab(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*STORLAB, *args], capture_output=True, text=True, timeout=timeout, check=False)


def host_traces(lab: str) -> list[str]:
    """Everything on the host that carries the lab's name, looked up independently of the provider code."""
    traces = []
    lxc = paths.home() / "lxc"
    if lxc.is_dir():
        traces += [f"container dir {p}" for p in lxc.iterdir() if paths.named_for(lab, p.name)]
    ls = subprocess.run(["lxc-ls", "-P", str(lxc), "-1"], capture_output=True, text=True, timeout=30, check=False)
    traces += [f"container {c}" for c in ls.stdout.split() if paths.named_for(lab, c)]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, timeout=30, check=False).stdout
    traces += [f"link {line.split(':')[1].strip()}" for line in links.splitlines()
               if paths.tag(lab) in line or f"storlab:{lab}:" in line]
    with open("/proc/self/mounts") as fh:
        traces += [f"mount {line.split()[1]}" for line in fh if f"/labs/{lab}/" in line]
    loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True, timeout=30, check=False).stdout
    traces += [f"loop {line}" for line in loops.splitlines() if f"/labs/{lab}/" in line]
    for d in (paths.lab_dir(lab), paths.staging_dir(lab)):
        if d.exists():
            traces.append(f"dir {d}")
    return traces + incus_traces(lab)


def incus_traces(lab: str) -> list[str]:
    """What this host's Incus holds of the lab: its project, instances and volumes in it, networks
    with the lab's tag or mark (read with the incus client, not through storlab)."""
    if subprocess.run(["incus", "query", "/1.0"], capture_output=True, timeout=30, check=False).returncode != 0:
        return []

    def ls(*argv: str) -> list[dict[str, Any]]:
        r = subprocess.run(["incus", *argv, "-f", "json"], capture_output=True, text=True, timeout=60, check=False)
        return list(json.loads(r.stdout or "[]")) if r.returncode == 0 else []

    out = [f"incus project {p['name']}" for p in ls("project", "list") if p["name"] == f"storlab-{lab}"]
    out += [f"incus instance {i['project']}/{i['name']}" for i in ls("list", "--all-projects")
            if i.get("project") == f"storlab-{lab}"]
    out += [f"incus network {n['name']}" for n in ls("network", "list")
            if paths.tag(lab) in n["name"] or (n.get("config") or {}).get("user.storlab.lab") == lab]
    if out and any(o.startswith("incus project") for o in out):
        out += [f"incus volume {v['name']}" for v in ls("storage", "volume", "list", "storlab", "--project",
                                                          f"storlab-{lab}") if v.get("type") == "custom"]
    return out


@pytest.fixture(autouse=True)
def clean_slate() -> Any:
    """Each test starts without the lab and leaves none, whether it passed or not (a failed
    test must not fail the next one with `lab exists with provider ...`)."""
    if (paths.lab_dir("nodes3") / "plan.json").exists():
        storlab("down", "nodes3")
    yield
    if (paths.lab_dir("nodes3") / "plan.json").exists():
        storlab("down", "nodes3")


def check_fabric(node: Node, tmp: Path) -> None:
    """node.fabric(): a file put and one got back over sftp and commands on one connection, each
    checked through the ssh path (node.get, node.put). It fails if fabric misses the node's address,
    user, the lab's key (no agent or ~/.ssh key to fall back on), its ProxyCommand (incus) or its
    host key pinned in the lab's known_hosts."""
    payload = f"fabric to {node.name} {secrets.token_hex(8)}\n"
    sent, back = tmp / "fabric-sent", tmp / "fabric-back"
    sent.write_text(payload)
    with node.fabric(timeout=60) as c:
        assert (c.host, c.user) == (node.address, "root")
        assert c.run("hostname", hide=True).stdout.strip() == node.name
        c.put(str(sent), "/root/fabric-put")
        assert node.get("/root/fabric-put") == payload  # what fabric wrote, read over plain ssh
        node.put("/root/fabric-get", payload[::-1])
        c.get("/root/fabric-get", str(back))
        assert back.read_text() == payload[::-1]
        r = c.run("cat /root/fabric-put; exit 3", warn=True, hide=True)
        assert (r.exited, r.stdout) == (3, payload)
        assert c.is_connected
    assert not c.is_connected  # the `with` closed it
    node.succeed(["rm", "-f", "--", "/root/fabric-put", "/root/fabric-get"])


@pytest.mark.parametrize("provider", PROVIDERS)
def test_up_gives_reachable_nodes_and_down_leaves_nothing(provider: str, tmp_path: Path) -> None:
    t0 = time.monotonic()
    r = storlab("up", TOPO, "--provider", provider)
    assert r.returncode == 0, r.stderr[-3000:]
    print(f"up of 3 {provider} nodes: {time.monotonic() - t0:.1f}s")
    lab = Lab.load("nodes3")
    ids, hostkeys = set(), set()
    for name, node in lab.nodes.items():
        host = node.testinfra()
        assert host.check_output("hostname") == name
        assert host.run("systemctl is-system-running").stdout.strip() == "running", \
            host.run("systemctl --failed --no-legend").stdout
        assert host.service("ssh").is_running
        assert host.mount_point("/data").filesystem == "xfs"
        assert host.interface("eth0").addresses[0] == node.address
        ids.add(host.file("/etc/machine-id").content_string.strip())
        hostkeys.add(host.file("/etc/ssh/ssh_host_ed25519_key.pub").content_string.split()[1])
        # every node reaches every other node on the lab network, by name
        for other in lab.nodes:
            assert host.run(f"ping -c1 -W2 {other}").rc == 0, f"{name} cannot reach {other}"
    # fault verbs keep the control channel: a partition cuts node-to-node traffic only
    with partition([lab.node("node1")], [lab.node("node2"), lab.node("node3")]):
        assert lab.node("node1").run(["ping", "-c1", "-W1", "node2"], timeout=15).rc != 0
        assert lab.node("node2").run(["ping", "-c1", "-W1", "node3"], timeout=15).rc == 0
    assert lab.node("node1").run(["ping", "-c1", "-W2", "node2"], timeout=15).rc == 0
    with lab.node("node3").link_down():
        assert lab.node("node2").run(["ping", "-c1", "-W1", "node3"], timeout=15).rc != 0
    lab.node("node3").wait_until_succeeds(["ping", "-c1", "-W1", "node2"], timeout=30)
    assert len(ids) == 3, "nodes share a machine-id"
    assert len(hostkeys) == 3, "nodes share ssh host keys"
    # the printed ssh config works with plain ssh
    cfg = storlab("ssh-config", "nodes3").stdout
    cfg_file = paths.home() / "test-ssh-config"
    cfg_file.write_text(cfg)
    out = subprocess.run(["ssh", "-F", str(cfg_file), "-o", "BatchMode=yes", "node2", "hostname"],
                         capture_output=True, text=True, timeout=30, check=False)
    assert out.stdout.strip() == "node2", out.stderr
    # ... and with plain testinfra: pytest --hosts=ssh://NODE --ssh-config=FILE
    cfg_file.write_text(cfg)
    probe = paths.home() / "test_plain_testinfra.py"
    probe.write_text("def test_hostname(host):\n    assert host.check_output('hostname') == host.backend.host.name\n"
                     "    assert host.service('ssh').is_running\n")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hosts=ssh://node1,ssh://node3",
                        f"--ssh-config={cfg_file}", str(probe)], capture_output=True, text=True, timeout=120, cwd=paths.home())
    probe.unlink()
    cfg_file.unlink()
    assert r.returncode == 0 and "2 passed" in r.stdout, r.stdout[-2000:]
    # ... and with fabric, through node.fabric()
    check_fabric(lab.node("node2"), tmp_path)
    assert lab.leftovers() != [], "leftovers() must see a running lab"
    t0 = time.monotonic()
    r = storlab("down", "nodes3")
    assert r.returncode == 0, r.stderr
    print(f"down of 3 {provider} nodes: {time.monotonic() - t0:.1f}s")
    assert host_traces("nodes3") == []


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("kill_after", [0.8, 2.5])
def test_killed_up_is_removed_by_down_and_resumed_by_up(kill_after: float, provider: str) -> None:
    proc = subprocess.Popen([*STORLAB, "up", TOPO, "--provider", provider], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(kill_after)  # the point of the test: interrupt `up` at an arbitrary moment
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    written = (paths.lab_dir("nodes3") / "plan.json").exists()
    print(f"up killed after {kill_after}s: plan {'written' if written else 'not written'}"
          f"{', staging left' if paths.staging_dir('nodes3').exists() else ''}")
    if written:
        # a killed lab is left as it was: `up` continues it ...
        r = storlab("up", TOPO, "--provider", provider)
        assert r.returncode == 0, r.stderr[-3000:]
        lab = Lab.load("nodes3")
        for node in lab.nodes.values():
            assert node.succeed(["hostname"]).strip() == node.name
        # ... and `down` removes all of it
        r = storlab("down", "nodes3")
        assert r.returncode == 0, r.stderr
    elif paths.staging_dir("nodes3").exists():
        # killed before the lab directory was made: no lab, and `down` removes what `up` began to write
        assert not paths.lab_dir("nodes3").exists()
        r = storlab("down", "nodes3")
        assert r.returncode == 0, r.stderr
    assert host_traces("nodes3") == []


def test_snapshot_killed_half_way_is_undone_by_up_and_by_down() -> None:
    """What a SIGKILL in the middle of a snapshot (the baseline `up` ends with) leaves: every node
    frozen and every data disk fsfrozen. A resumed `up` thaws them and carries on; `down` too."""
    for resume in (True, False):
        r = storlab("up", TOPO, "--provider", "lxc")
        assert r.returncode == 0, r.stderr[-2000:]
        lab = Lab.load("nodes3")
        provider = lab.provider
        assert isinstance(provider, LxcProvider)
        provider.freeze_all(list(lab.nodes))
        for mnt in hostdisks.mounts_under(provider.labdir):
            succeed(["fsfreeze", "-f", mnt], timeout=30)
        if resume:
            r = storlab("up", TOPO, "--provider", "lxc")
            assert r.returncode == 0, r.stderr[-2000:]
            for node in Lab.load("nodes3").nodes.values():
                assert node.succeed(["touch", "/data/written-after-the-thaw"], timeout=30) == ""
        r = storlab("down", "nodes3")
        assert r.returncode == 0, r.stderr[-2000:]
        assert host_traces("nodes3") == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_reap_removes_a_lab_whose_up_was_killed(provider: str) -> None:
    proc = subprocess.Popen([*STORLAB, "up", TOPO, "--provider", provider], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    wait_until(lambda: (paths.lab_dir("nodes3") / provider).exists(), timeout=120, what="up to start creating nodes")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert host_traces("nodes3"), "expected a half-built lab"
    r = storlab("reap")
    assert r.returncode == 0, r.stderr
    assert host_traces("nodes3") == []
