"""The nvme backend below validation: the rendered nvmet script (hostile values stay one shell
word, a line break is refused), the configfs check, and the parsers of nvme-cli's JSON.

The nvme-cli outputs below were WRITTEN from the nvme-cli 2.x documentation and source (the
shapes of `nvme list-subsys -o json` and `nvme discover -o json`), not captured from a real run:
replace them with captured ones when the lab test has run."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from harness.backends.base import get
from harness.backends.nvme import host, target
from harness.backends.nvme.plan import NamespacePlan, NvmeHostPool, NvmePlan, PortPlan, SubsystemPlan
from harness.errors import HarnessError
from harness.host.facts import PROFILES
from harness.plan.model import Plan
from harness.plan.planner import make_plan
from harness.spec.validate import validate_file

REPO = Path(__file__).resolve().parents[2]
HOSTILE = "nqn.2024-12.lab.x:a'; touch pwned; echo '$(id)`id`\"x $HOME *"


#: configfs as the script sees it: nvmet makes namespaces/ and allowed_hosts/ in a new subsystem,
#: subsystems/ in a new port, and removes a directory with its attributes
STUBS = {"modprobe": "exit 0\n", "mountpoint": "exit 0\n", "mount": "exit 0\n",
         "mkdir": """command -p mkdir "$@" || exit 1
for d in "$@"; do
  case "$d" in -*) continue ;; esac
  case "$(basename "$(dirname "$d")")" in
    subsystems) command -p mkdir -p "$d/namespaces" "$d/allowed_hosts" ;;
    ports) command -p mkdir -p "$d/subsystems" ;;
  esac
done
""", "rmdir": 'exec rm -r -- "$@"\n'}


def planned() -> tuple[Plan, NvmePlan]:
    rel = "topologies/nvme.yaml"
    topo, res = validate_file(str(REPO / rel), PROFILES["kvm"])
    plan = make_plan(topo, res, rel, taken=set(), facts=PROFILES["kvm"])
    section = get("nvme").planned(plan)
    assert isinstance(section, NvmePlan)
    return plan, section


def hostile(section: NvmePlan, value: str) -> NvmePlan:
    sub = section.subsystems[0]
    ns = sub.namespaces[0].model_copy(update={"device": f"/dev/{value}"})
    sub = sub.model_copy(update={"nqn": value, "namespaces": (ns,), "allowed_hosts": (value,)})
    port = section.ports[0].model_copy(update={"address": value})
    return section.model_copy(update={"subsystems": (sub,), "ports": (port, *section.ports[1:])})


def script(plan: Plan, section: NvmePlan) -> str:
    files = get("nvme").render(plan, section)
    return files[f"nodes/{section.target}/root/storlab-nvmet.sh"]


def test_hostile_values_stay_one_shell_word(tmp_path: Path) -> None:
    """The script run with sh against a directory standing in for configfs (modprobe and mount
    stubbed; mkdir and rmdir do what configfs does with the directories nvmet makes itself):
    the hostile NQN becomes one directory name, and nothing in it runs."""
    plan, section = planned()
    marker, value = tmp_path / "pwned", HOSTILE
    text = script(plan, hostile(section, value))
    root, bin_ = tmp_path / "nvmet", tmp_path / "bin"
    bin_.mkdir()
    for stub, body in STUBS.items():
        (bin_ / stub).write_text("#!/bin/sh\n" + body)
        (bin_ / stub).chmod(0o755)
    (tmp_path / "s.sh").write_text(text.replace("N=/sys/kernel/config/nvmet", f"N={shlex.quote(str(root))}"))
    for verb in ("up", "up", "down"):  # a re-run changes nothing; down removes it all
        r = subprocess.run(["sh", str(tmp_path / "s.sh"), verb], capture_output=True, text=True, timeout=30, cwd=tmp_path,
                           env={**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}"})
        assert r.returncode == 0, r.stderr
        assert not marker.exists(), "a value ran as a command"
        if verb == "up":
            assert (root / "subsystems" / value / "allowed_hosts" / value).is_symlink()
            assert (root / "subsystems" / value / "namespaces" / "1" / "device_path").read_text() == f"/dev/{value}\n"
            assert (root / "ports" / "1" / "addr_traddr").read_text() == f"{value}\n"
    assert not any((root / "subsystems").iterdir()) and not any((root / "ports").iterdir())


def test_line_break_in_a_value_is_refused() -> None:
    plan, section = planned()
    with pytest.raises(HarnessError, match="line break"):
        script(plan, hostile(section, "nqn.2024-12.lab.x:a\nreboot"))


def test_script_sets_fixed_uuids_and_links_every_port() -> None:
    plan, section = planned()
    text = script(plan, section)
    for s in section.subsystems:
        for ns in s.namespaces:
            assert f"namespaces/{ns.nsid}/device_uuid {ns.uuid}" in text
        for pid in s.ports:
            assert f'"$N"/ports/{pid}/subsystems/{s.nqn}\n' in text
    up, _, down = text.partition("down() {")
    assert "allow_any_host 0" in up and "allow_any_host 1" not in up  # never implied
    # ports take their address before a subsystem is linked (nvmet refuses changes to an enabled port)
    assert up.index("addr_traddr") < up.index('"$N"/ports/1/subsystems/')
    assert "rmdir" in down and "truncate" not in down and "rm -f /" not in down


def test_hostnqn_is_per_node_and_admitted() -> None:
    _, section = planned()
    (h,) = section.hosts
    assert h.nqn.endswith(h.hostid) and all(h.nqn in s.allowed_hosts for s in section.subsystems)
    assert [p.address for p in host.ports_for(section, h.nqn)] == [p.address for p in section.ports]
    assert host.ports_for(section, "nqn.2014-08.org.nvmexpress:uuid:other") == []


def test_pool_device_is_the_namespace_by_uuid() -> None:
    plan, section = planned()
    pool = next(p for p in plan.host.pools if isinstance(p, NvmeHostPool))
    ns = section.subsystems[0].namespaces[0]
    assert pool.device == f"/dev/disk/by-id/nvme-uuid.{ns.uuid}"
    assert pool.subsystem == section.subsystems[0].nqn and pool.namespace == 1


def test_configfs_check_names_what_is_missing() -> None:
    sub = SubsystemPlan(nqn="nqn.2024-12.x.y:s", namespaces=(NamespacePlan(
        nsid=1, name="ns1", kind="block", path=None, size=None, disk="d", device="/dev/vdb", uuid="u", nguid="g"),),
        allowed_hosts=("nqn.2014-08.org.nvmexpress:uuid:h",), allow_any_host=False, ports=(1, 2))
    nvme = NvmePlan(target="t", subsystems=(sub,), hosts=(), ports=(
        PortPlan(id=1, network="a", address="10.0.0.1", port=4420), PortPlan(id=2, network="b", address="10.0.1.1", port=4420)))
    root = target.CONFIGFS
    listing = "\n".join([f"{root}/subsystems/nqn.2024-12.x.y:s/namespaces/1",
                         f"{root}/subsystems/nqn.2024-12.x.y:s/allowed_hosts/nqn.2014-08.org.nvmexpress:uuid:h",
                         f"{root}/ports/1/subsystems/nqn.2024-12.x.y:s"])
    assert target.missing(listing, nvme) == ["ports/2/subsystems/nqn.2024-12.x.y:s"]


# nvme-cli 2.x `nvme list-subsys -o json`: written from its documentation, not captured
LIST_SUBSYS = """[
  {
    "HostNQN":"nqn.2014-08.org.nvmexpress:uuid:0ff0d74b-e1cf-50c5-b26a-7828ae54fd6b",
    "HostID":"0ff0d74b-e1cf-50c5-b26a-7828ae54fd6b",
    "Subsystems":[
      {
        "Name":"nvme-subsys0",
        "NQN":"nqn.2024-12.lab.storlab:kvm",
        "Paths":[
          {"Name":"nvme0", "Transport":"tcp", "Address":"traddr=192.168.182.11,trsvcid=4420,src_addr=192.168.182.12",
           "State":"live"},
          {"Name":"nvme1", "Transport":"tcp", "Address":"traddr=192.168.175.11,trsvcid=4420", "State":"connecting"}
        ]
      }
    ]
  }
]"""
# nvme-cli 1.x printed one object, not a list of hosts
LIST_SUBSYS_V1 = """{"Subsystems":[{"Name":"nvme-subsys0","NQN":"nqn.2024-12.lab.storlab:kvm",
  "Paths":[{"Name":"nvme0","Transport":"tcp","Address":"traddr=192.168.182.11 trsvcid=4420","State":"live"}]}]}"""
# nvme-cli 2.x `nvme discover -o json`: written from its documentation, not captured
DISCOVER = """{
  "genctr":3,
  "records":[
    {"trtype":"tcp","adrfam":"ipv4","subtype":"current discovery subsystem","treq":"not specified","portid":1,
     "trsvcid":"4420","subnqn":"nqn.2014-08.org.nvmexpress.discovery","traddr":"192.168.182.11","sectype":"none"},
    {"trtype":"tcp","adrfam":"ipv4","subtype":"nvme subsystem","treq":"not specified","portid":1,
     "trsvcid":"4420","subnqn":"nqn.2024-12.lab.storlab:kvm","traddr":"192.168.182.11","sectype":"none"}
  ]
}"""


def test_parse_list_subsys() -> None:
    got = host.parse_list_subsys(LIST_SUBSYS)
    assert [(p["traddr"], p["trsvcid"], p["state"]) for p in got["nqn.2024-12.lab.storlab:kvm"]] == [
        ("192.168.182.11", "4420", "live"), ("192.168.175.11", "4420", "connecting")]
    assert host.parse_list_subsys(LIST_SUBSYS_V1)["nqn.2024-12.lab.storlab:kvm"][0]["trsvcid"] == "4420"
    assert host.parse_list_subsys("") == {}


def test_parse_discovery() -> None:
    records = host.parse_discovery(DISCOVER)
    assert [r["subnqn"] for r in records if r["subtype"] == "nvme subsystem"] == ["nqn.2024-12.lab.storlab:kvm"]
    assert host.parse_discovery('{"genctr":1,"records":[]}') == [] and host.parse_discovery("") == []
