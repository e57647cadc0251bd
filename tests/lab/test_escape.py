"""Escape suite: a class of two students, as an instructor makes it (`storlab class up`, students
untrusted), and from student s01's node, as root there, reached exactly as the student reaches it
(the handout's ssh config, through the jump), the known ways out of a container or a lab are
tried. Every one must fail: root on a node is root on that node and on nothing else.

- kernel-level escapes, on providers whose nodes share the host's kernel: open_by_handle_at
  (the "shocker" escape), writing /proc/sys (core_pattern) and /sys, a cgroup v1 mount (the
  release_agent escape), mknod of the host's disk, loading a module, reading the host's kernel log;
- a setuid program planted in the node (root filesystem and data disk) and run by a host user;
- links planted in the node (/root/.ssh, /etc/hosts) and then `up` (a resume after a crash),
  `snapshot`/`revert` and `class reset`: nothing is written through them onto the host;
- the network: no host service on the lab bridge's host address, nothing of the other student's
  lab (its bridge address, its nodes, even with a route the student adds and the host's
  ip_forward on);
- a pids limit on every node.

Providers that may host students: incus (unprivileged containers) in CI; vagrant (a VM per node,
kernel-level checks skipped: the guest's own kernel) opt-in with `-m vm` (README: expected times).
Control runs, in which the checks must fail (bench/RESULTS.md lists what each caught):
STORLAB_ESCAPE_CONTROL=1 runs the same checks against a class made `--trusted-students`
(privileged nodes) with storlab's firewall table removed; STORLAB_ESCAPE_ON=lxc runs them on LXC
(with CONTROL=1 on this code; without it against an older storlab's checkout, which had no trust
levels: the suite imports only what both have).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.lab.lab import Lab
from harness.providers import base as providers
from harness.providers.lxc.reap import lxcpath
from harness.training import jump
from harness.training.klass import Klass, classes_dir

from .test_many_labs import TOPOLOGIES, storlab

CLASS = "esc"
STUDENTS = ["s01", "s02"]
CONTROL = os.environ.get("STORLAB_ESCAPE_CONTROL") == "1"
PROVIDERS = [
    pytest.param(("incus", "nodes-3.yaml"), id="incus"),
    pytest.param(("vagrant", "vm-smoke.yaml"), id="vagrant", marks=pytest.mark.vm),
]
if os.environ.get("STORLAB_ESCAPE_ON") == "lxc":  # control runs only: lxc cannot hold untrusted students
    PROVIDERS = [pytest.param(("lxc", "nodes-3.yaml"), id="lxc")]


@dataclass
class Seat:
    klass: Klass
    lab: Lab  # s01's
    other: Lab  # s02's
    shares_kernel: bool

    def ssh(self, script: str, student: str = "s01", node: str = "node1", timeout: float = 60) -> str:
        """``script`` as root on the student's node, reached as the student reaches it."""
        hd = classes_dir() / CLASS / "handouts" / student
        r = subprocess.run(["ssh", "-F", "ssh_config", "-o", "BatchMode=yes", "-o", "ConnectTimeout=30", node,
                            "bash", "-s"], input=script, cwd=hd, capture_output=True, text=True, timeout=timeout,
                           check=False)
        return r.stdout + r.stderr


def ok(*args: str, timeout: float = 1800) -> str:
    r = storlab(*args, timeout=timeout)
    assert r.returncode == 0, f"storlab {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return r.stdout


@pytest.fixture(scope="module", params=PROVIDERS)
def seat(request: pytest.FixtureRequest) -> Iterator[Seat]:
    provider, topology = request.param
    if os.geteuid() != 0:
        pytest.fail("escape tests need root")
    if jump.sshd_pid() is None:
        pytest.fail("the jump sshd is not running: bash ci/setup-host.sh --class")
    where = ["--on", "incus"] if provider == "incus" else ["--provider", provider]
    try:
        t0 = time.monotonic()
        print(ok("class", "up", str(TOPOLOGIES / topology), "--students", ",".join(STUDENTS), "--name", CLASS,
                 *where, "--expire", "2h", *(["--trusted-students"] if CONTROL else [])))
        print(f"class of 2 ({provider}) up in {time.monotonic() - t0:.1f}s")
        k = Klass.load(CLASS)
        labs = k.labs()
        drop_firewall()
        yield Seat(k, labs["s01"], labs["s02"], not providers.get(provider).capabilities.own_kernel)
    finally:
        r = storlab("class", "down", CLASS, timeout=1800)
        print(r.stdout[-1500:], r.stderr[-1500:])
        assert not (classes_dir() / CLASS).exists(), "class down left the class directory"


def drop_firewall() -> None:
    """Control runs: no firewall (as before storlab had one); `up` and `reset` put it back."""
    if CONTROL:
        from harness.host import firewall
        firewall.remove()


def held(out: str, what: str) -> None:
    """The probe printed HELD (the attempt was refused) and never ESCAPED."""
    __tracebackhide__ = True
    assert "ESCAPED" not in out, f"{what}: root in a student's node got out:\n{out}"
    assert "HELD" in out, f"{what}: the probe did not run as planned (neither HELD nor ESCAPED):\n{out}"


def kernel_shared(seat: Seat) -> None:
    if not seat.shares_kernel:
        pytest.skip("the node runs a kernel of its own (a VM): kernel-level writes reach only the guest")


# -- kernel-level ---------------------------------------------------------------------------------
OPEN_BY_HANDLE = r"""
touch /data/probe
python3 - <<'EOF'
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
class FH(ctypes.Structure):
    _fields_ = [("bytes", ctypes.c_uint), ("type", ctypes.c_int), ("h", ctypes.c_ubyte * 128)]
fh = FH(); fh.bytes = 128; mid = ctypes.c_int()
if libc.name_to_handle_at(-100, b"/data/probe", ctypes.byref(fh), ctypes.byref(mid), 0) != 0:
    print("PROBE-FAILED name_to_handle_at:", os.strerror(ctypes.get_errno()))
else:
    fd = libc.open_by_handle_at(os.open("/data", os.O_RDONLY), ctypes.byref(fh), os.O_RDONLY)
    print("ESCAPED: open_by_handle_at opened a file by handle" if fd >= 0
          else "HELD open_by_handle_at: " + os.strerror(ctypes.get_errno()))
EOF
"""


def test_open_by_handle_at_is_refused(seat: Seat) -> None:
    kernel_shared(seat)
    held(seat.ssh(OPEN_BY_HANDLE), "open_by_handle_at")


def test_proc_sys_and_sys_cannot_be_written(seat: Seat) -> None:
    kernel_shared(seat)
    # the same value written back: harmless where the write goes through (the control run)
    out = seat.ssh(r"""
mount -o remount,rw /proc/sys 2>/dev/null
v=$(cat /proc/sys/kernel/core_pattern)
if printf '%s\n' "$v" > /proc/sys/kernel/core_pattern 2>/dev/null
then echo "ESCAPED: core_pattern written"; else echo HELD core_pattern; fi
mount -o remount,rw /sys 2>/dev/null
k=$(cat /sys/kernel/mm/ksm/run)
if printf '%s\n' "$k" > /sys/kernel/mm/ksm/run 2>/dev/null
then echo "ESCAPED: /sys/kernel/mm/ksm/run written"; else echo HELD sys; fi
""")
    held(out, "writing /proc/sys and /sys")
    assert out.count("HELD") == 2, out


def test_a_cgroup_v1_hierarchy_cannot_be_mounted(seat: Seat) -> None:
    kernel_shared(seat)
    out = seat.ssh(r"""
mkdir -p /tmp/cg
if mount -t cgroup -o rdma cgroup /tmp/cg 2>/dev/null || mount -t cgroup -o none,name=x cgroup /tmp/cg 2>/dev/null; then
  echo "ESCAPED: cgroup v1 mounted (release_agent)"; umount /tmp/cg
else echo HELD cgroup; fi
""")
    held(out, "mounting a cgroup v1 hierarchy")


def test_the_hosts_disk_cannot_be_reached(seat: Seat) -> None:
    kernel_shared(seat)
    majmin = subprocess.run(["findmnt", "-no", "MAJ:MIN", "-T", "/var/lib"], capture_output=True, text=True,
                            check=True).stdout.split()[0]
    major, minor = majmin.split(":")
    out = seat.ssh(rf"""
rm -f /root/hostdisk; mkdir -p /mnt/host
if mknod /root/hostdisk b {major} {minor} 2>/dev/null && head -c 512 /root/hostdisk >/dev/null 2>&1; then
  echo "ESCAPED: read the host's disk {majmin}"
elif mount /root/hostdisk /mnt/host 2>/dev/null; then echo "ESCAPED: mounted the host's disk"; umount /mnt/host
else echo HELD disk; fi
rm -f /root/hostdisk
""")
    held(out, "reaching the host's disk")


def test_no_kernel_module_can_be_loaded(seat: Seat) -> None:
    kernel_shared(seat)
    out = seat.ssh(r"""
python3 - <<'EOF'
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
fd = os.open("/bin/true", os.O_RDONLY)
r = libc.syscall(313, fd, b"", 0)  # finit_module
e = ctypes.get_errno()
print("HELD finit_module: EPERM" if e == errno.EPERM else
      "NOMODULES" if e == errno.ENOSYS else f"ESCAPED: finit_module got past the capability check ({os.strerror(e)})")
EOF
""")
    if "NOMODULES" in out:
        pytest.skip("this host's kernel cannot load modules at all (ENOSYS): nothing to hold")
    held(out, "loading a kernel module")


def test_the_hosts_kernel_log_is_not_readable(seat: Seat) -> None:
    kernel_shared(seat)
    held(seat.ssh("if dmesg >/dev/null 2>&1; then echo 'ESCAPED: read the host kernel log'; else echo HELD dmesg; fi"),
         "reading the host's kernel log")


def test_every_node_has_a_pids_limit(seat: Seat) -> None:
    kernel_shared(seat)
    project = f"storlab-{seat.lab.name}"
    for node in seat.lab.plan.nodes:
        if seat.lab.plan.provider == "incus":
            r = subprocess.run(["incus", "query", f"/1.0/instances/{node.name}/state?project={project}"],
                               capture_output=True, text=True, timeout=30, check=True)
            pid = json.loads(r.stdout)["pid"]
        else:  # lxc (control runs)
            r = subprocess.run(["lxc-info", "-P", str(lxcpath()), "-n", node.object, "-p", "-H"],
                               capture_output=True, text=True, timeout=30, check=True)
            pid = int(r.stdout.strip())
        dirs = []  # the node's pids cgroup: v1 (a hybrid host) or the unified hierarchy
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            _, controllers, cg = line.split(":", 2)
            if "pids" in controllers.split(","):
                dirs.append(Path("/sys/fs/cgroup/pids") / cg.lstrip("/"))
            elif controllers == "":
                dirs.append(Path("/sys/fs/cgroup") / cg.lstrip("/"))
        # the whole container's cgroup (lxc.payload.NAME): a limit below it (systemd's own, inside the
        # node, on init.scope) binds only part of the node, one above it is not the node's
        own = [next((y for y in [d, *d.parents] if y.name.startswith("lxc.payload")), d) for d in dirs]
        limits = [f.read_text().strip() for x in own if (f := x / "pids.max").exists()]
        assert any(v != "max" for v in limits), f"{node.name}: no pids limit on its cgroups {dirs} ({limits})"
        print(f"{node.name}: pids.max {limits}")


# -- files ----------------------------------------------------------------------------------------
def host_path_of(seat: Seat, node: str, path: str) -> list[Path]:
    """Where a file in the node's root filesystem or data disk lies on the host (provider's layout)."""
    lab = seat.lab
    if lab.plan.provider == "incus":
        roots = list(Path("/var/lib/incus/storage-pools").glob(f"*/containers/storlab-{lab.name}_{node}/rootfs"))
    else:
        roots = [lab.dir / "lxc" / node / "upper"]
    return [r / path.lstrip("/") for r in roots]


def test_a_planted_setuid_program_gives_no_host_user_root(seat: Seat) -> None:
    kernel_shared(seat)
    out = seat.ssh("for d in /root /data; do cp /bin/bash $d/suidsh && chmod 4755 $d/suidsh; done; "
                   "ls -l /root/suidsh /data/suidsh")
    assert "rwsr-xr-x" in out, out
    found = host_path_of(seat, "node1", "/root/suidsh") + [seat.lab.dir / "disks" / "node1-data.mnt" / "suidsh"]
    for f in found:
        r = subprocess.run(["runuser", "-u", "nobody", "--", str(f), "-p", "-c", "id -u"], capture_output=True,
                           text=True, timeout=30, check=False)
        assert r.stdout.strip() != "0", f"host user nobody got root through {f} planted in a node"
        print(f"{f}: nobody ran it -> rc {r.returncode} {r.stdout.strip() or r.stderr.strip()[:80]}")


PLANT = """
rm -rf /root/.ssh.kept && cp -a /root/.ssh /root/.ssh.kept
rm -rf /root/.ssh && ln -s {target} /root/.ssh
rm -f /etc/hosts && ln -s {target}/hosts /etc/hosts
rm -f /etc/hostname && ln -s {target}/hostname /etc/hostname
echo planted
"""


def test_links_planted_in_a_node_are_not_followed_by_up_revert_or_reset(seat: Seat) -> None:
    """What root in the node leaves for storlab to trip on: its key directory and files storlab
    writes made links to a host directory (which does not exist in the node)."""
    lab, topo = seat.lab.name, seat.lab.plan.topology
    with tempfile.TemporaryDirectory(prefix="storlab-escape-") as target:
        def nothing_written(after: str) -> None:
            assert os.listdir(target) == [], f"`{after}` wrote through links a node planted: {os.listdir(target)}"

        assert "planted" in seat.ssh(PLANT.format(target=target))
        ok("fault", lab, "node1", "crash")
        # the instructor resumes the crashed lab; its node no longer takes the lab's key (the student
        # broke /root/.ssh), so the resume may fail: the lab must stay (the student's work), untouched
        r = storlab("up", topo, "--name", lab, timeout=900)
        print(f"up after the crash: rc {r.returncode}: {(r.stdout + r.stderr).strip()[-300:]}")
        nothing_written("up")
        assert getattr(Lab.load(lab).plan, "klass", None) == getattr(seat.klass, "id", None), \
            "the resumed lab is no longer the class's"
        ok("class", "reset", CLASS, "--student", "s01")  # back to the baseline over the planted links
        nothing_written("class reset")
        ok("snapshot", lab, "clean")
        assert "planted" in seat.ssh(PLANT.format(target=target))
        ok("revert", lab, "clean")  # a snapshot put back over the planted links
        nothing_written("revert")
    assert "node1" in seat.ssh("hostname"), "the student cannot reach their node after reset"


# -- network --------------------------------------------------------------------------------------
@pytest.fixture
def host_service() -> Iterator[int]:
    """A TCP service on every address of this host (as sshd, a database... would be)."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", 0))
    srv.listen(16)
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = srv.accept()
                c.sendall(b"host-service\n")
                c.close()
            except OSError:
                continue

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join()
    srv.close()


def test_a_node_reaches_no_host_service_and_nothing_of_another_lab(seat: Seat, host_service: int) -> None:
    mine, theirs = seat.lab.plan.networks[0], seat.other.plan.networks[0]
    their_node = seat.other.plan.nodes[0].addresses[theirs.name]
    drop_firewall()
    fwd = Path("/proc/sys/net/ipv4/ip_forward")
    before = fwd.read_text()
    fwd.write_text("1\n")  # whatever the host's ip_forward says
    try:
        out = seat.ssh(f"""
try() {{
  if timeout 4 bash -c "exec 3<>/dev/tcp/$1/$2 && head -c 12 <&3" 2>/dev/null | grep -q .
  then echo "ESCAPED: reached $1:$2 ($3)"; else echo "HELD $3"; fi
}}
try {mine.host_address} {host_service} "this host's service on the lab bridge"
try {theirs.host_address} {host_service} "this host's service on the other lab's bridge"
ip route replace {theirs.cidr} via {mine.host_address} 2>/dev/null
try {their_node} 22 "the other lab's node, routed through the host"
ip route del {theirs.cidr} 2>/dev/null
""")
    finally:
        fwd.write_text(before)
    print(out)
    held(out, "the network")
    assert out.count("HELD") == 3, out
    # and the host still reaches the node (its pools, the jump): replies pass
    assert "node1" in seat.ssh("hostname")
