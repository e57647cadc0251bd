"""A pool on an NVMe namespace wired on the KVM host itself: allowed where this host's kernel has
nvme-tcp (profile kvm), refused where not (profile ci); planned with the KVM host's own NQN; and
its connection (recorded harness.run calls, nothing runs): `nvme connect` as that NQN with
--config=none, or with the keys in a 0600 config in the lab's secrets directory (never argv),
and `down` disconnecting only the lab's controllers, by name."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from validation import expect, ok, problems_of

from harness.backends.base import get
from harness.backends.nvme import dhchap, host, kvmhost
from harness.backends.nvme.plan import HOSTNQN_PREFIX, NvmeHostPool, NvmePlan
from harness.errors import HarnessError
from harness.host.facts import PROFILES
from harness.lab import secrets
from harness.plan.model import Plan
from harness.plan.planner import make_plan
from harness.run import CommandResult
from harness.spec.validate import validate_text

TOPO = """
    lab: t
    networks: [{name: storage}, {name: storage2}]
    nodes:
      - name: t1
        roles: [nvme-target]
        disks: [{name: ns, size: 1G}]
    nvme:
      target: t1
      subsystems:
        - nqn: nqn.2024-12.lab.storlab:kvm
          namespaces: [{name: pool, kind: block, disk: ns}]
          allowed_hosts: [ALLOWED]
          ports: [{network: storage}, {network: storage2}]
    host:
      pools:
        - name: p
          type: logical
          backend: nvme
          disk: pool
          path: /dev/vg_nvme
          host: kvm #<
"""
KVM = "{node: kvm}"
KVM_AUTH = "{node: kvm, dhchap: {generate: true, bidirectional: true}}"


def test_a_pool_on_the_kvm_host_passes_where_its_kernel_has_nvme_tcp() -> None:
    assert PROFILES["kvm"].kernel_nvme_tcp
    ok(TOPO.replace("ALLOWED", KVM), "kvm")
    ok(TOPO.replace("ALLOWED", KVM_AUTH), "kvm")


def test_a_pool_on_the_kvm_host_is_refused_where_its_kernel_has_no_nvme_tcp() -> None:
    assert not PROFILES["ci"].kernel_nvme_tcp
    p = expect(TOPO.replace("ALLOWED", KVM), "needs nvme-tcp in this host's kernel", "host.pools[0].host", "ci")
    assert "hypervisor and nvme-host" in p.fix


def test_the_kvm_host_must_be_admitted_by_name() -> None:
    any_host = TOPO.replace("allowed_hosts: [ALLOWED]", "allow_any_host: true")
    p = expect(any_host, "admits the KVM host", "host.pools[0].host", "kvm")
    assert "{node: kvm}" in p.fix and "instead of allow_any_host" in p.fix


@pytest.mark.parametrize(("path", "problem"), [("/dev/vg nvme", "is not a plain absolute path"),
                                               ("/dev/mapper/vg", "is not a volume group's path"),
                                               ("/var/lib/libvirt/images/vg", "is not a volume group's path")])
def test_a_logical_pool_on_the_kvm_host_is_a_volume_group(path: str, problem: str) -> None:
    found = problems_of(TOPO.replace("ALLOWED", KVM).replace("/dev/vg_nvme", path), "kvm")
    assert [p.field for p in found if problem in p.message] == ["host.pools[0].path"], found


def test_a_node_named_kvm_is_refused_beside_the_kvm_host() -> None:
    text = TOPO.replace("ALLOWED", KVM).replace("    nvme:\n", "      - {name: kvm, roles: [hypervisor, nvme-host]} #<\n"
                                                 "    nvme:\n").replace("host: kvm #<", "host: kvm")
    expect(text, "a node named kvm", "nodes[1].name", "kvm")


def planned(allowed: str) -> tuple[Any, Plan, NvmePlan, NvmeHostPool]:
    import textwrap
    topo, res = validate_text(textwrap.dedent(TOPO.replace("ALLOWED", allowed)).replace(" #<", ""), PROFILES["kvm"])
    plan = make_plan(topo, res, "t.yaml", set(), PROFILES["kvm"])
    section = get("nvme").planned(plan)
    assert isinstance(section, NvmePlan)
    (pool,) = plan.host.pools
    assert isinstance(pool, NvmeHostPool)
    return topo, plan, section, pool


def test_the_kvm_host_gets_an_nqn_of_its_own() -> None:
    _, _, section, pool = planned(KVM)
    h = section.kvm_host
    assert h is not None and h.node == "kvm" and h.nqn == HOSTNQN_PREFIX + h.hostid
    assert section.hosts == () and section.subsystems[0].allowed_hosts == (h.nqn,)
    assert pool.host == "kvm" and pool.subsystem == section.subsystems[0].nqn
    assert pool.device == f"/dev/disk/by-id/nvme-uuid.{section.subsystems[0].namespaces[0].uuid}"


class FakeLab:
    def __init__(self, plan: Plan, secrets_dir: Path) -> None:
        self.plan, self.name, self.secrets_dir = plan, plan.lab, secrets_dir


class Host:
    """harness.run on the KVM host, recorded: nvme list-subsys answers from ``listing``."""

    def __init__(self, listing: list[dict[str, Any]]) -> None:
        self.listing, self.calls = listing, []  # type: ignore[var-annotated]

    def __call__(self, argv: Any, *, timeout: float = 120, input: str | None = None, **kw: Any) -> CommandResult:
        argv = tuple(argv)
        self.calls.append(argv)
        out = json.dumps(self.listing) if argv[:2] == ("nvme", "list-subsys") else ""
        if argv[:2] == ("nvme", "connect"):
            self._connected(argv)
        return CommandResult(argv, 0, out, "", 0.0)

    def _connected(self, argv: tuple[str, ...]) -> None:
        hostnqn = next(a.split("=", 1)[1] for a in argv if a.startswith("--hostnqn="))
        path = {"Name": f"nvme{len(self.calls)}", "Transport": "tcp", "State": "live",
                "Address": f"traddr={argv[argv.index('-a') + 1]},trsvcid={argv[argv.index('-s') + 1]}"}
        entry = next((h for h in self.listing if h["HostNQN"] == hostnqn), None)
        if entry is None:
            entry = {"HostNQN": hostnqn, "Subsystems": []}
            self.listing.append(entry)
        sub = next((s for s in entry["Subsystems"] if s["NQN"] == argv[argv.index("-n") + 1]), None)
        if sub is None:
            sub = {"NQN": argv[argv.index("-n") + 1], "Paths": []}
            entry["Subsystems"].append(sub)
        sub["Paths"].append(path)


@pytest.fixture
def multipath_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    f = tmp_path / "multipath"
    f.write_text("Y\n")
    monkeypatch.setattr(host, "MULTIPATH", str(f))


@pytest.mark.usefixtures("multipath_on")
def test_the_kvm_host_connects_without_keys_and_reads_no_config_of_its_own(monkeypatch: pytest.MonkeyPatch,
                                                                            tmp_path: Path) -> None:
    _, plan, section, pool = planned(KVM)
    fake = Host([])
    monkeypatch.setattr(kvmhost, "run", fake)
    kvmhost.connect(FakeLab(plan, tmp_path), pool)  # type: ignore[arg-type]
    connects = [a for a in fake.calls if a[:2] == ("nvme", "connect")]
    assert [a[a.index("-a") + 1] for a in connects] == [p.address for p in section.ports]
    assert all(a[-1] == "--config=none" and f"--hostnqn={section.kvm_host.nqn}" in a for a in connects)  # type: ignore[union-attr]
    kvmhost.connect(FakeLab(plan, tmp_path), pool)  # type: ignore[arg-type]
    assert len([a for a in fake.calls if a[:2] == ("nvme", "connect")]) == 2  # a resumed `up` connects nothing more


@pytest.mark.usefixtures("multipath_on")
def test_the_kvm_hosts_keys_stay_in_a_0600_config_in_the_labs_secrets(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    topo, plan, _, pool = planned(KVM_AUTH)
    secrets.decide(plan, topo, tmp_path)
    keys = [p.read_text() for p in tmp_path.iterdir()]
    fake = Host([])
    monkeypatch.setattr(kvmhost, "run", fake)
    kvmhost.connect(FakeLab(plan, tmp_path), pool)  # type: ignore[arg-type]
    config = tmp_path / kvmhost.CONFIG_NAME
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    (entry,) = json.loads(config.read_text())
    assert entry["dhchap_key"] in keys and entry["subsystems"][0]["ports"][0]["dhchap_ctrl_key"] in keys
    assert dhchap.HOST_AUTH_PROBE in fake.calls
    for argv in fake.calls:
        assert "DHHC-1" not in " ".join(argv)
    assert all(a[-1] == f"--config={config}" for a in fake.calls if a[:2] == ("nvme", "connect"))


def test_down_disconnects_only_the_labs_controllers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _, plan, section, _ = planned(KVM)
    mine, other = section.kvm_host.nqn, HOSTNQN_PREFIX + "00000000-0000-0000-0000-000000000000"  # type: ignore[union-attr]
    sub, (p1, p2) = section.subsystems[0].nqn, section.ports

    def path(name: str, addr: str) -> dict[str, str]:
        return {"Name": name, "Transport": "tcp", "Address": f"traddr={addr},trsvcid=4420", "State": "live"}
    fake = Host([
        {"HostNQN": mine, "Subsystems": [{"NQN": sub, "Paths": [path("nvme0", p1.address), path("nvme1", p2.address),
                                                                 path("nvme5", "10.9.9.9")]},
                                         {"NQN": "nqn.2024-12.other:x", "Paths": [path("nvme2", p1.address)]}]},
        {"HostNQN": other, "Subsystems": [{"NQN": sub, "Paths": [path("nvme3", p1.address)]}]}])  # another lab's
    monkeypatch.setattr(kvmhost, "run", fake)
    lab = FakeLab(plan, tmp_path)
    assert sorted(x.split()[2] for x in kvmhost.leftovers(lab)) == ["nvme0", "nvme1"]  # type: ignore[arg-type]
    rep = kvmhost.disconnect(lab)  # type: ignore[arg-type]
    assert [a for a in fake.calls if a[:2] == ("nvme", "disconnect")] == [
        ("nvme", "disconnect", "-d", "nvme0"), ("nvme", "disconnect", "-d", "nvme1")]
    assert len(rep.removed) == 2 and not rep.failed


@pytest.mark.usefixtures("multipath_on")
def test_no_nvme_cli_on_the_kvm_host_is_said_plainly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _, plan, _, pool = planned(KVM)
    monkeypatch.setattr(kvmhost, "run", lambda argv, **kw: CommandResult(tuple(argv), 127, "", "not found", 0.0))
    with pytest.raises(HarnessError, match="apt-get install nvme-cli"):
        kvmhost.connect(FakeLab(plan, tmp_path), pool)  # type: ignore[arg-type]
