"""DH-HMAC-CHAP of the nvme backend below validation (topologies/nvme-auth.yaml): keys in the form
the kernel takes, decided into the lab's secrets and never in plan.json, a rendered file, an argv
or a log; the nvmet script copying them from their files into a stand-in configfs; the target
and host roles on fake nodes that record every command (a key only ever travels on stdin, in a
0600 file); and the KVM host's side (its config in the lab's secrets directory, `nvme connect
--config`, `down` disconnecting only the lab's controllers)."""

from __future__ import annotations

import base64
import json
import os
import shlex
import stat
import subprocess
import zlib
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness import log
from harness.backends.base import get
from harness.backends.nvme import dhchap, host, target
from harness.backends.nvme.plan import NvmePlan
from harness.backends.nvme.schema import dhchap_key_problem
from harness.errors import CommandError, HarnessError
from harness.host.facts import PROFILES
from harness.lab import secrets
from harness.plan.model import Plan
from harness.plan.planner import make_plan
from harness.run import CommandResult
from harness.spec.validate import validate_file

REPO = Path(__file__).resolve().parents[2]
Answer = Callable[[tuple[str, ...]], tuple[int, str]]


def planned() -> tuple[Any, Plan, NvmePlan]:
    rel = "topologies/nvme-auth.yaml"
    topo, res = validate_file(str(REPO / rel), PROFILES["kvm"])
    plan = make_plan(topo, res, rel, taken=set(), facts=PROFILES["kvm"])
    section = get("nvme").planned(plan)
    assert isinstance(section, NvmePlan)
    return topo, plan, section


class FakeNode:
    """A node recording every command (argv and stdin) and every file put; ``answer`` gives each
    command's exit status and output."""

    def __init__(self, spec: Any, answer: Answer) -> None:
        self.spec, self.name, self.address, self.roles = spec, spec.name, spec.address, spec.roles
        self.answer = answer
        self.calls: list[tuple[tuple[str, ...], str | None]] = []
        self.files: dict[str, tuple[str, str]] = {}

    def run(self, cmd: Any, *, timeout: float = 120, input: str | None = None) -> CommandResult:
        argv = (cmd,) if isinstance(cmd, str) else tuple(str(a) for a in cmd)
        self.calls.append((argv, input))
        rc, out = self.answer(argv)
        return CommandResult(argv, rc, out, "" if rc == 0 else "refused", 0.0)

    def succeed(self, cmd: Any, *, timeout: float = 120, input: str | None = None) -> str:
        r = self.run(cmd, timeout=timeout, input=input)
        if not r.ok:
            raise CommandError(r)
        return r.stdout

    def put(self, path: str, content: str, mode: str = "0644") -> None:
        self.files[path] = (content, mode)
        self.run(["install", "-D", "-m", mode, "/dev/stdin", path], input=content)  # as Node.put does


class FakeLab:
    def __init__(self, plan: Plan, root: Path, nodes: dict[str, FakeNode]) -> None:
        self.plan, self.name, self.nodes = plan, plan.lab, nodes
        self.secrets_dir, self._root = root / "secrets", root / "files"

    def node(self, name: str) -> FakeNode:
        return self.nodes[name]

    def files(self, where: str) -> Path:
        return self._root / ("host" if where == "host" else f"nodes/{where}")


def lab_with(tmp_path: Path, answers: dict[str, Answer]) -> tuple[FakeLab, list[str]]:
    """The nvme-auth lab on fake nodes: its files rendered, its secrets decided; and every key."""
    topo, plan, section = planned()
    for rel, text in get("nvme").render(plan, section).items():
        (tmp_path / "files" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "files" / rel).write_text(text)
    secrets.decide(plan, topo, tmp_path / "secrets")
    keys = [(tmp_path / "secrets" / n).read_text() for d in section.dhchap for n in (d.key, d.ctrl_key) if n]
    nodes = {n.name: FakeNode(n, answers.get(n.name, lambda argv: (0, ""))) for n in plan.nodes}
    return FakeLab(plan, tmp_path, nodes), keys


def no_key_in_argv(calls: list[tuple[tuple[str, ...], str | None]], keys: list[str]) -> None:
    assert keys
    for argv, _ in calls:
        joined = " ".join(argv)
        assert "DHHC-1" not in joined and not any(k in joined for k in keys), f"a key in argv: {argv[:3]}..."


# -- the keys -------------------------------------------------------------------------------
def test_generated_keys_are_what_nvme_gen_dhchap_key_makes() -> None:
    a, b = dhchap.generate_key(), dhchap.generate_key()
    assert a != b and a.startswith("DHHC-1:00:") and a.endswith(":")
    raw = base64.b64decode(a.split(":")[2])
    assert len(raw) == 36 and zlib.crc32(raw[:32]).to_bytes(4, "little") == raw[32:]
    assert dhchap_key_problem(a) is None


def _key(raw: bytes, hash_id: str = "00", crc: bytes | None = None) -> str:
    crc = zlib.crc32(raw).to_bytes(4, "little") if crc is None else crc
    return f"DHHC-1:{hash_id}:{base64.b64encode(raw + crc).decode()}:"


@pytest.mark.parametrize(("key", "why"), [
    (_key(bytes(32)) + "\n", "is not a DH-HMAC-CHAP secret"),
    (_key(bytes(32)).replace("DHHC-1", "DHHC-2"), "is not a DH-HMAC-CHAP secret"),
    (_key(bytes(32), "04"), "is not a DH-HMAC-CHAP secret"),
    (_key(bytes(32)).replace("DHHC-1:00:", "DHHC-1:00: "), "is not a DH-HMAC-CHAP secret"),
    (_key(bytes(32), crc=b"\0\0\0\0"), "CRC-32"),
    (_key(bytes(40)), "40-byte key"),
    (_key(bytes(48), "01"), "needs a 32-byte key"),
    ("DHHC-1:00:" + "A" * 49 + "=:", "does not decode"),
])
def test_a_key_the_kernel_would_refuse_is_refused(key: str, why: str) -> None:
    problem = dhchap_key_problem(key)
    assert problem is not None and why in problem
    assert key.split(":")[2] not in problem  # the message never shows the key


@pytest.mark.parametrize("key", [_key(bytes(range(32))), _key(bytes(48), "02"), _key(bytes(64), "03"), _key(bytes(64))])
def test_keys_of_each_length_and_hash_pass(key: str) -> None:
    assert dhchap_key_problem(key) is None


def test_a_key_in_any_log_text_is_masked() -> None:
    key = dhchap.generate_key()
    assert log.redact(f"nvme connect --dhchap-secret={key} -n x") == f"nvme connect --dhchap-secret={log.MASK} -n x"


# -- decided at plan time, named in the plan, in no rendered file -----------------------------
def test_plan_names_the_keys_and_holds_none(tmp_path: Path) -> None:
    _, keys = lab_with(tmp_path, {})
    _, plan, section = planned()
    (d,) = section.dhchap  # one host, listed under two subsystems: one set of keys
    assert d.key == "nvme-dhchap-key-kvm1" and d.ctrl_key == "nvme-dhchap-ctrl-key-kvm1"
    assert (d.hash, d.dhgroup, d.generate) == ("hmac(sha256)", "ffdhe2048", True)
    assert len(set(keys)) == 2 and all(dhchap_key_problem(k) is None for k in keys)
    for f in (tmp_path / "secrets").iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    text = plan.to_json() + "".join(p.read_text() for p in (tmp_path / "files").rglob("*") if p.is_file())
    assert "DHHC-1" not in text and not any(k in text for k in keys)
    again = tmp_path / "again"
    secrets.decide(plan, planned()[0], tmp_path / "secrets")  # a resumed `up` keeps them
    assert [(tmp_path / "secrets" / n).read_text() for n in (d.key, d.ctrl_key or "")] == keys
    assert not again.exists()


LITERAL = """
lab: lit
networks: [{name: storage}]
nodes:
  - {name: t1, roles: [nvme-target], disks: [{name: ns, size: 1G}], kernel: "6.12"}
  - {name: hv1, roles: [hypervisor, nvme-host], kernel: "6.12"}
nvme:
  target: t1
  subsystems:
    - nqn: nqn.2024-12.lab.storlab:kvm
      namespaces: [{name: pool, kind: block, disk: ns}]
      allowed_hosts:
        - {node: hv1, dhchap: {key: "HOSTKEY", ctrl_key: "CTRLKEY", hash: sha512}}
        - {nqn: "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555", dhchap: {generate: true}}
      ports: [{network: storage}]
"""


def test_literal_keys_reach_the_secrets_not_the_plan(tmp_path: Path) -> None:
    from harness.spec.validate import validate_text
    hkey, ckey = _key(bytes(range(32))), _key(bytes(range(1, 33)))
    topo, res = validate_text(LITERAL.replace("HOSTKEY", hkey).replace("CTRLKEY", ckey), PROFILES["kvm"])
    plan = make_plan(topo, res, "lit.yaml", set(), PROFILES["kvm"])
    assert hkey not in plan.to_json() and ckey not in plan.to_json()
    secrets.decide(plan, topo, tmp_path)
    section = get("nvme").planned(plan)
    assert isinstance(section, NvmePlan)
    lit, gen = section.dhchap
    assert (tmp_path / lit.key).read_text() == hkey and (tmp_path / (lit.ctrl_key or "")).read_text() == ckey
    assert lit.hash == "hmac(sha512)" and not lit.generate
    assert gen.key.startswith("nvme-dhchap-key-nqn-") and gen.ctrl_key is None
    assert dhchap_key_problem((tmp_path / gen.key).read_text()) is None


# -- the target: key files on stdin, the script copies them into configfs ---------------------
STUBS = {"modprobe": "exit 0\n", "mountpoint": "exit 0\n", "mount": "exit 0\n", "truncate": "exit 0\n",
         "mkdir": """command -p mkdir "$@" || exit 1
for d in "$@"; do
  case "$d" in -*) continue ;; esac
  case "$(basename "$(dirname "$d")")" in
    subsystems) command -p mkdir -p "$d/namespaces" "$d/allowed_hosts" ;;
    ports) command -p mkdir -p "$d/subsystems" ;;
    hosts) [ -n "${NO_AUTH:-}" ] || for a in dhchap_key dhchap_ctrl_key dhchap_hash dhchap_dhgroup; do : > "$d/$a"; done ;;
  esac
done
""", "rmdir": 'exec rm -r -- "$@"\n'}


def run_script(tmp_path: Path, text: str, keys: dict[str, str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    root, bin_, keydir = tmp_path / "nvmet", tmp_path / "bin", tmp_path / "keys"
    for d in (bin_, keydir):
        d.mkdir(exist_ok=True)
    for stub, body in STUBS.items():
        (bin_ / stub).write_text("#!/bin/sh\n" + body)
        (bin_ / stub).chmod(0o755)
    for name, value in keys.items():
        (keydir / name).write_text(value + "\n")
    text = text.replace("N=/sys/kernel/config/nvmet", f"N={shlex.quote(str(root))}").replace(dhchap.KEYS_DIR, str(keydir))
    (tmp_path / "s.sh").write_text(text)
    return subprocess.run(["sh", str(tmp_path / "s.sh"), "up"], capture_output=True, text=True, timeout=30, cwd=tmp_path,
                          env={**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}", **env})


def test_script_copies_the_keys_into_configfs_before_admitting_the_host(tmp_path: Path) -> None:
    _, plan, section = planned()
    (d,) = section.dhchap
    text = get("nvme").render(plan, section)[f"nodes/{section.target}/root/storlab-nvmet.sh"]
    up = text[:text.index("down() {")]
    assert up.index(f"auth \"$N\"/hosts/{d.host}") < up.index(f"/allowed_hosts/{d.host}")
    keys = {d.key: dhchap.generate_key(), d.ctrl_key or "": dhchap.generate_key()}
    r = run_script(tmp_path, text, keys, {})
    assert r.returncode == 0, r.stderr
    h = tmp_path / "nvmet" / "hosts" / d.host
    assert (h / "dhchap_key").read_text() == keys[d.key] + "\n"
    assert (h / "dhchap_ctrl_key").read_text() == keys[d.ctrl_key or ""] + "\n"
    assert (h / "dhchap_hash").read_text() == "hmac(sha256)\n" and (h / "dhchap_dhgroup").read_text() == "ffdhe2048\n"


def test_script_stops_where_nvmet_has_no_authentication(tmp_path: Path) -> None:
    _, plan, section = planned()
    (d,) = section.dhchap
    text = get("nvme").render(plan, section)[f"nodes/{section.target}/root/storlab-nvmet.sh"]
    r = run_script(tmp_path, text, {d.key: dhchap.generate_key(), d.ctrl_key or "": dhchap.generate_key()},
                   {"NO_AUTH": "1"})
    assert r.returncode == 3 and "CONFIG_NVME_TARGET_AUTH" in r.stderr
    assert not (tmp_path / "nvmet" / "subsystems").exists()  # no subsystem made, none admits the host


def target_answer(section: NvmePlan, auth_ok: bool) -> Answer:
    listing = "\n".join(f"{target.CONFIGFS}/{e}" for e in target.expected(section))

    def answer(argv: tuple[str, ...]) -> tuple[int, str]:
        if argv[:2] == ("find", target.CONFIGFS):
            return 0, listing
        if argv[0] == "cat" and argv[-1].endswith("/enable"):
            return 0, "1\n"
        if argv[:3] == ("sh", "-c", target.AUTH_SET):
            return (0 if auth_ok else 1), ""
        return 0, ""
    return answer


def test_target_role_puts_keys_as_0600_files_on_stdin_never_in_argv(tmp_path: Path) -> None:
    _, _, section = planned()
    lab, keys = lab_with(tmp_path, {"nvme1": target_answer(section, auth_ok=True)})
    target.apply(lab)  # type: ignore[arg-type]
    node = lab.nodes["nvme1"]
    no_key_in_argv(node.calls, keys)
    (d,) = section.dhchap
    for name in (d.key, d.ctrl_key or ""):
        content, mode = node.files[dhchap.key_file(name)]
        assert mode == "0600" and content.strip() in keys
    assert "DHHC-1" not in node.files[target.SCRIPT][0]
    script_at = next(i for i, (argv, _) in enumerate(node.calls) if argv == ("sh", target.SCRIPT, "up"))
    assert all(i < script_at for i, (argv, _) in enumerate(node.calls) if argv[-1].startswith(dhchap.KEYS_DIR))
    checks = [argv for argv, _ in node.calls if argv[:3] == ("sh", "-c", target.AUTH_SET)]
    assert checks == [("sh", "-c", target.AUTH_SET, "sh", f"{target.CONFIGFS}/hosts/{d.host}", "1", "hmac(sha256)",
                       "ffdhe2048")]


def test_target_check_names_a_host_left_without_its_key(tmp_path: Path) -> None:
    _, _, section = planned()
    lab, _ = lab_with(tmp_path, {"nvme1": target_answer(section, auth_ok=False)})
    with pytest.raises(HarnessError, match=r"DH-HMAC-CHAP of nqn\.2014-08\.org\.nvmexpress:uuid:"):
        target.apply(lab)  # type: ignore[arg-type]


# -- a host node: its keys in a 0600 libnvme config, nvme connect --config ----------------------
def host_answer(section: NvmePlan, probe_ok: bool = True) -> Answer:
    """kvm1: connects succeed, and list-subsys then shows each connected path live."""
    connected: set[tuple[str, str, str]] = set()

    def listing() -> str:
        subs: dict[str, list[dict[str, str]]] = {}
        for nqn, addr, port in sorted(connected):
            subs.setdefault(nqn, []).append({"Name": f"nvme{len(connected)}", "Transport": "tcp",
                                             "Address": f"traddr={addr},trsvcid={port}", "State": "live"})
        return json.dumps([{"HostNQN": section.hosts[0].nqn,
                            "Subsystems": [{"NQN": n, "Paths": p} for n, p in subs.items()]}])

    def answer(argv: tuple[str, ...]) -> tuple[int, str]:
        if argv == dhchap.HOST_AUTH_PROBE:
            return (0 if probe_ok else 1), ""
        if argv[:2] == ("nvme", "list-subsys"):
            return 0, listing()
        if argv[:2] == ("nvme", "discover"):
            return 0, json.dumps({"records": [{"subnqn": s.nqn} for s in section.subsystems]})
        if argv[:2] == ("nvme", "connect"):
            connected.add((argv[argv.index("-n") + 1], argv[argv.index("-a") + 1], argv[argv.index("-s") + 1]))
        if argv == ("cat", host.MULTIPATH):
            return 0, "Y\n"
        return 0, ""
    return answer


def test_host_role_connects_with_its_keys_in_a_0600_config_never_in_argv(tmp_path: Path) -> None:
    _, _, section = planned()
    lab, keys = lab_with(tmp_path, {"kvm1": host_answer(section)})
    host.apply(lab)  # type: ignore[arg-type]
    node = lab.nodes["kvm1"]
    no_key_in_argv(node.calls, keys)
    content, mode = node.files[dhchap.NODE_CONFIG]
    assert mode == "0600"
    (h,), (d,) = section.hosts, section.dhchap
    (entry,) = json.loads(content)
    assert (entry["hostnqn"], entry["hostid"]) == (h.nqn, h.hostid)
    assert entry["dhchap_key"] == (tmp_path / "secrets" / d.key).read_text()
    ctrl = (tmp_path / "secrets" / (d.ctrl_key or "")).read_text()
    ports = {(s["nqn"], p["traddr"], p["trsvcid"], p["dhchap_ctrl_key"]) for s in entry["subsystems"] for p in s["ports"]}
    assert ports == {(s.nqn, section.port(pid).address, str(section.port(pid).port), ctrl)
                     for s in section.subsystems for pid in s.ports}
    connects = [argv for argv, _ in node.calls if argv[:2] == ("nvme", "connect")]
    assert len(connects) == 3 and all(a[-1] == f"--config={dhchap.NODE_CONFIG}" for a in connects)
    put_at = next(i for i, (argv, _) in enumerate(node.calls) if argv[-1] == dhchap.NODE_CONFIG)
    assert put_at < next(i for i, (argv, _) in enumerate(node.calls) if argv[:2] == ("nvme", "connect"))


def test_a_host_without_authentication_in_its_kernel_is_told_why(tmp_path: Path) -> None:
    _, _, section = planned()
    lab, _ = lab_with(tmp_path, {"kvm1": host_answer(section, probe_ok=False)})
    with pytest.raises(HarnessError, match=r"cannot authenticate.*kernel: \"6\.12\" in the topology"):
        host.apply(lab)  # type: ignore[arg-type]
    node = lab.nodes["kvm1"]
    assert dhchap.NODE_CONFIG not in node.files and not any(a[:2] == ("nvme", "connect") for a, _ in node.calls)


def test_a_host_without_dhchap_connects_as_before(tmp_path: Path) -> None:
    """nvme.yaml: no config written, connect without --config (nvme-cli's own default)."""
    rel = "topologies/nvme.yaml"
    topo, res = validate_file(str(REPO / rel), PROFILES["kvm"])
    plan = make_plan(topo, res, rel, taken=set(), facts=PROFILES["kvm"])
    section = get("nvme").planned(plan)
    assert isinstance(section, NvmePlan) and section.dhchap == () and section.kvm_host is None
    (h,) = section.hosts
    assert host.connect_argv(section.subsystems[0], section.ports[0], h)[-1] == "--keep-alive-tmo=5"
    assert host.put_auth(SimpleNamespace(), FakeNode(plan.node("kvm1"), lambda a: (0, "")), section, h) is None  # type: ignore[arg-type]


def test_config_refuses_a_secret_that_is_no_key(tmp_path: Path) -> None:
    _, _, section = planned()
    (h,), (d,) = section.hosts, section.dhchap
    with pytest.raises(HarnessError, match=r"the lab's secret nvme-dhchap-(ctrl-)?key-kvm1 is not a DH-HMAC-CHAP secret") as ei:
        dhchap.host_config(section, h, d, lambda name: "DHHC-1:00:bm90IGEga2V5\n:")
    assert "bm90IGEga2V5" not in str(ei.value)
