"""The iface an iscsi pool logs in through is prepared before libvirt starts the pool."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from fakes import FakeConn, FakeLab, FakePool

from harness.backends.gluster.plan import GlusterHostPool
from harness.backends.iscsi import iscsi_iface, prepare_iscsi_iface
from harness.backends.iscsi.plan import IscsiHostPool
from harness.errors import CleanupReport, HarnessError, TopologyError
from harness.host import pools as hostpools
from harness.host.facts import PROFILES
from harness.plan import planner as planmod
from harness.plan.model import HostPoolPlan, need
from harness.spec.validate import validate_text

POOL = IscsiHostPool(name="iscsi-pool", object="iscsi-pool", type="iscsi", backend="iscsi", path=None, volume=None,
                     fuse_mount=False, export=None, initiator="iqn.2019-12.com.packt:kvm1", rbd_pool=None, client=None,
                     secret=None, host="kvm1", disk=None, server="192.168.193.11")
IFACES = """default tcp,<empty>,<empty>,<empty>,<empty>
iser iser,<empty>,<empty>,<empty>,<empty>
"""


def test_iface_is_made_with_the_pools_iqn_then_the_target_discovered_through_it() -> None:
    calls: list[list[str]] = []

    def sh(cmd: list[str], timeout: float = 0) -> str:
        calls.append(cmd)
        return IFACES if cmd == ["iscsiadm", "-m", "iface"] else ""

    lab = SimpleNamespace(name="iscsi")
    prepare_iscsi_iface(lab, POOL, sh)
    iface = iscsi_iface(lab, POOL)
    assert iface == "storlab-iscsi-iscsi-pool"
    assert calls[1] == ["iscsiadm", "-m", "iface", "-I", iface, "-o", "new"]
    assert calls[2][-2:] == ["-v", POOL.initiator]
    assert calls[3] == ["iscsiadm", "-m", "discovery", "-t", "sendtargets", "-p", POOL.server, "-I", iface]


def test_existing_iface_is_not_made_again() -> None:
    calls: list[list[str]] = []

    def sh(cmd: list[str], timeout: float = 0) -> str:
        calls.append(cmd)
        return IFACES + "storlab-iscsi-iscsi-pool tcp,<empty>,<empty>,<empty>,iqn.2019-12.com.packt:kvm1\n" \
            if cmd == ["iscsiadm", "-m", "iface"] else ""

    prepare_iscsi_iface(SimpleNamespace(name="iscsi"), POOL, sh)
    assert not any("new" in c for c in calls)


def test_down_removes_the_pools_iface_and_its_node_records(monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.backends.iscsi as hp
    from harness.run import CommandResult

    calls: list[list[str]] = []
    present = IFACES + "storlab-iscsi-iscsi-pool tcp,<empty>,<empty>,<empty>,iqn.2019-12.com.packt:kvm1\n"

    def fake_run(argv: list[str], timeout: float = 0) -> CommandResult:
        calls.append(list(argv))
        return CommandResult(tuple(argv), 0, present if argv == ["iscsiadm", "-m", "iface"] else "", "", 0.0)

    monkeypatch.setattr(hp, "run", fake_run)
    lab = SimpleNamespace(name="iscsi")
    res = hp.remove_iscsi_iface(lab, POOL)
    assert res is not None and res.ok
    assert calls[1:] == [["iscsiadm", "-m", "node", "-I", "storlab-iscsi-iscsi-pool", "-o", "delete"],
                         ["iscsiadm", "-m", "iface", "-I", "storlab-iscsi-iscsi-pool", "-o", "delete"]]
    present = IFACES  # gone: nothing to do
    calls.clear()
    assert hp.remove_iscsi_iface(lab, POOL) is None
    assert calls == [["iscsiadm", "-m", "iface"]]


# -- Gluster FUSE pools: where they may mount, how, and what `down` may release ----------------
REPO = Path(__file__).resolve().parents[2]
GLUSTER3 = str(REPO / "topologies" / "gluster-3.yaml")
FUSE_TOPO = """
lab: t
provider: lxc
nodes:
  - {name: g1, roles: [gluster], disks: [{name: b, size: 1G, filesystem: xfs, mount: /gluster/bricks/1}]}
gluster:
  volumes: [{name: v, replica: 1, bricks: ["g1:/gluster/bricks/1/brick"]}]
host:
  pools: [{name: p, type: dir, backend: gluster, volume: v, fuse_mount: true, path: PATH}]
"""


@pytest.mark.parametrize("path", ["/var/spool/cron/crontabs", "/var/lib/dpkg", "/var/lib/libvirt/qemu", "/home/alice",
                                  "/srv/storlab", "/mnt/storlab", "/var/lib/libvirt/images", "/mnt/p", "/srv/data"])
def test_a_fuse_mount_outside_the_allowed_roots_is_refused(path: str) -> None:
    with pytest.raises(TopologyError) as exc:
        validate_text(FUSE_TOPO.replace("PATH", path), PROFILES["kvm"])
    assert [p.field for p in exc.value.problems] == ["host.pools[0].path"], exc.value
    assert "/srv/storlab/" in exc.value.problems[0].fix


@pytest.mark.parametrize("path", ["/srv/storlab/t-gluster", "/mnt/storlab/t/gluster", "/var/lib/libvirt/images/GlusterFS"])
def test_a_fuse_mount_under_an_allowed_root_passes(path: str) -> None:
    validate_text(FUSE_TOPO.replace("PATH", path), PROFILES["kvm"])


class _Backend:
    mounts = True

    def __init__(self) -> None:
        self.calls: list[str] = []

    def pool_conflicts(self, lab: object, pool: HostPoolPlan) -> list[str]:
        return []

    def prepare_pool(self, lab: object, pool: HostPoolPlan, sh: object) -> None:
        self.calls.append(f"prepare {pool.name}")

    def release_pool(self, lab: object, pool: HostPoolPlan) -> CleanupReport:
        self.calls.append(f"release {pool.name}")
        return CleanupReport(removed=[f"mount {pool.path}"])

    def pool_leftovers(self, lab: object, pool: HostPoolPlan) -> list[str]:
        return [f"mount {pool.path}"]


def _fuse_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, owned: bool) -> tuple[Any, GlusterHostPool]:
    monkeypatch.setenv("STORLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(planmod, "used_subnets", lambda exclude_lab=None, others=None: set())
    plan = planmod.load_plan(GLUSTER3, PROFILES["ci"])
    fuse = plan.pool("glusterfs-pool", GlusterHostPool).model_copy(update={"path": str(tmp_path / "mnt")})
    plan = plan.with_(host=plan.host.model_copy(update={"pools": (fuse,)}))
    return FakeLab(plan, [f"pool {fuse.object}"] if owned else []), fuse


@pytest.mark.parametrize("owned", [False, True])
def test_a_fuse_pool_over_a_directory_with_files_is_a_conflict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               owned: bool) -> None:
    lab, fuse = _fuse_lab(tmp_path, monkeypatch, owned)
    monkeypatch.setattr(hostpools, "connect", lambda uri: FakeConn({}))
    monkeypatch.setattr(hostpools, "_backend", lambda p: _Backend())
    monkeypatch.setattr(hostpools, "mount_at", lambda path: None)
    there = Path(need(fuse.path, "path"))
    there.mkdir()
    assert hostpools.conflicts(lab) == []
    (there / "crontab").write_text("* * * * * root id\n")
    (found,) = hostpools.conflicts(lab)
    assert str(there) in found and "files in it" in found


def test_a_fuse_pool_path_through_a_symlink_is_a_conflict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lab, fuse = _fuse_lab(tmp_path, monkeypatch, owned=False)
    monkeypatch.setattr(hostpools, "connect", lambda uri: FakeConn({}))
    monkeypatch.setattr(hostpools, "_backend", lambda p: _Backend())
    monkeypatch.setattr(hostpools, "mount_at", lambda path: None)
    (tmp_path / "elsewhere").mkdir()
    Path(need(fuse.path, "path")).symlink_to(tmp_path / "elsewhere")
    (found,) = hostpools.conflicts(lab)
    assert "symbolic link" in found


def test_the_fuse_mount_is_nosuid_nodev_and_never_over_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.backends.gluster as g
    _, fuse = _fuse_lab(tmp_path, monkeypatch, owned=True)
    argv: list[list[str]] = []
    monkeypatch.setattr(g, "mount_at", lambda path: None)
    monkeypatch.setattr(g, "succeed", lambda cmd, timeout=0: argv.append(cmd))
    g.fuse_mount(fuse)
    (cmd,) = argv
    opts = cmd[cmd.index("-o") + 1].split(",")
    assert "nosuid" in opts and "nodev" in opts
    (Path(need(fuse.path, "path")) / "file").write_text("x")
    with pytest.raises(HarnessError, match="not empty"):
        g.fuse_mount(fuse)
    assert len(argv) == 1


def test_down_releases_only_the_pools_the_lab_owns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lab, fuse = _fuse_lab(tmp_path, monkeypatch, owned=False)
    pool, b = FakePool(), _Backend()
    monkeypatch.setattr(hostpools, "connect", lambda uri: FakeConn({fuse.object: pool}))
    monkeypatch.setattr(hostpools, "_backend", lambda p: b)
    monkeypatch.setattr(hostpools, "run", lambda argv, timeout=0: SimpleNamespace(ok=True, stdout=fuse.object, stderr=""))
    rep = hostpools.unwire(lab)
    assert b.calls == [] and not pool.undefined and not rep.removed  # another's pool and its mount: untouched
    assert hostpools.leftovers(lab) == []
    lab.owned.append(f"pool {fuse.object}")
    rep = hostpools.unwire(lab)
    assert b.calls == ["release glusterfs-pool"] and pool.undefined and f"mount {fuse.path}" in rep.removed


def test_up_prepares_nothing_for_a_pool_it_does_not_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The mount (or iscsi iface) of a pool whose libvirt name another made was made before the
    ownership check: `up` now checks first, and claims the pool before it mounts anything."""
    lab, fuse = _fuse_lab(tmp_path, monkeypatch, owned=False)
    b = _Backend()
    monkeypatch.setattr(hostpools, "connect", lambda uri: FakeConn({fuse.object: FakePool()}))
    monkeypatch.setattr(hostpools, "_backend", lambda p: b)
    with pytest.raises(HarnessError, match="not made by lab"):
        hostpools.wire(lab)
    assert b.calls == []


LOGICAL = ("<pool type='logical'><name>p</name><source><name>vg</name>"
           "<device path='/dev/disk/by-id/nvme-uuid.1234'/></source><target><path>/dev/vg</path></target></pool>")


def test_a_logical_pool_gets_the_device_its_link_points_at(tmp_path: Path) -> None:
    """libvirt matches a volume group's PVs by the names pvs prints: the by-id link of the plan is
    resolved on the pool's host before the pool is defined (an nvme lab failed without it)."""
    (tmp_path / "pools").mkdir()
    (tmp_path / "pools" / "p.xml").write_text(LOGICAL)
    p = cast(HostPoolPlan, SimpleNamespace(name="p", type="logical", device="/dev/disk/by-id/nvme-uuid.1234"))
    asked: list[list[str]] = []

    def sh(argv: list[str], **_: object) -> str:
        asked.append(argv)
        return "/dev/nvme0n1\n"
    xml = hostpools.pool_xml(p, tmp_path, sh)
    assert "path=\"/dev/nvme0n1\"" in xml and "by-id" not in xml
    assert asked == [["readlink", "-e", "--", "/dev/disk/by-id/nvme-uuid.1234"]]
    for planted in ("/dev/nvme0n1' /><x y='", "/etc/passwd", "/dev/../etc/shadow", ""):
        with pytest.raises(HarnessError, match="not a device name"):
            hostpools.pool_xml(p, tmp_path, lambda *a, _out=planted, **k: _out)
