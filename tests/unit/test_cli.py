"""The command line: exit codes, where messages go, and what `plan` writes. Every run uses a
--host-profile so results do not depend on this machine, and a private STORLAB_HOME."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main as cli
from harness.host.facts import PROFILES
from harness.plan.model import Plan
from harness.plan.planner import load_plan

REPO = Path(__file__).resolve().parents[2]
GLUSTER3 = str(REPO / "topologies" / "gluster-3.yaml")


@pytest.fixture(autouse=True)
def storlab_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("STORLAB_HOME", str(home))
    return home


def test_validate_good_files(capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(p) for p in sorted((REPO / "topologies").glob("*.yaml"))]
    assert cli.main(["validate", "--host-profile", "kvm", *files]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    for f in files:
        assert f"{f}: ok (lab " in out
    assert "gluster-3.yaml: ok (lab gluster3, 3 nodes, provider vagrant)" in out


def test_validate_ci_profile_picks_containers(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", "--host-profile", "ci", GLUSTER3]) == 0
    assert "provider lxc" in capsys.readouterr().out


def test_validate_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("lab: t\nnodes:\n  - name: a\n    memroy: 512\n")
    assert cli.main(["validate", "--host-profile", "ci", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert f"{bad}: 1 problem(s)" in err
    assert f"{bad}:4:5: nodes[0].memroy: unknown key 'memroy'" in err
    assert "fix: did you mean 'memory'?" in err
    assert "Traceback" not in err


def test_validate_reports_every_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("lab: t\nnodes: [{name: a, address: 10.0.0.1}]\n")
    assert cli.main(["validate", "--host-profile", "kvm", str(bad), GLUSTER3]) == 2
    out, err = capsys.readouterr()
    assert f"{GLUSTER3}: ok" in out
    assert f"{bad}:2:" in err and "nodes[0].address" in err


def test_validate_yaml_syntax_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("lab: t\nnodes: [{name: a}\n")
    assert cli.main(["validate", "--host-profile", "ci", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:3:" in err and "YAML syntax error" in err
    assert "Traceback" not in err


def test_validate_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    assert cli.main(["validate", "--host-profile", "ci", str(missing)]) == 2
    assert f"{missing}: <top>: cannot read file" in capsys.readouterr().err


def test_unknown_host_profile_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ei:
        cli.main(["validate", "--host-profile", "laptop", GLUSTER3])
    assert ei.value.code == 2
    assert "invalid choice: 'laptop'" in capsys.readouterr().err


def test_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "nodes" in schema["properties"] and "lab" in schema["properties"]
    assert set(schema["required"]) == {"lab", "nodes"}
    assert schema["title"] == "storlab topology"
    assert schema["$schema"].startswith("https://json-schema.org/")


def test_plan_writes_plan_and_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "preview"
    assert cli.main(["plan", GLUSTER3, "--host-profile", "ci", "-o", str(out_dir)]) == 0
    plan = Plan.load(out_dir / "plan.json")
    assert (plan.lab, plan.provider, plan.accel) == ("gluster3", "lxc", "tcg")
    assert plan.topology == GLUSTER3
    assert (out_dir / "files" / "nodes" / "gluster1" / "etc" / "hosts").is_file()
    assert (out_dir / "files" / "host" / "pools" / "gluster-native.xml").is_file()
    out = capsys.readouterr().out
    assert "lab gluster3  provider lxc  accel tcg" in out
    assert f"config files rendered under {out_dir}/files" in out


def test_plan_provider_override(tmp_path: Path) -> None:
    assert cli.main(["plan", GLUSTER3, "--host-profile", "kvm", "--provider", "lxc", "-o", str(tmp_path / "p")]) == 0
    assert Plan.load(tmp_path / "p" / "plan.json").provider == "lxc"


def test_plan_default_output_is_under_storlab_home(storlab_home: Path) -> None:
    assert cli.main(["plan", GLUSTER3, "--host-profile", "kvm"]) == 0
    assert (storlab_home / "labs" / "gluster3" / "plan-preview" / "plan.json").is_file()


def test_plan_of_invalid_topology(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("lab: t\nnodes: [{name: a, cpus: 0}]\n")
    assert cli.main(["plan", str(bad), "--host-profile", "ci", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2:" in err and "nodes[0].cpus" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_plan_refuses_a_lab_name_held_by_another_topology(tmp_path: Path, storlab_home: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    lab = storlab_home / "labs" / "gluster3"
    lab.mkdir(parents=True)
    other = load_plan(GLUSTER3, PROFILES["ci"]).with_(topology="/elsewhere/gluster-3.yaml")
    (lab / "plan.json").write_text(other.to_json())
    assert cli.main(["plan", GLUSTER3, "--host-profile", "ci", "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "storlab: error: lab 'gluster3' already exists from /elsewhere/gluster-3.yaml" in err
    assert "Traceback" not in err


def test_plan_reports_an_unreadable_plan_of_an_existing_lab(tmp_path: Path, storlab_home: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    lab = storlab_home / "labs" / "gluster3"
    lab.mkdir(parents=True)
    (lab / "plan.json").write_text('{"topology": "/elsewhere/gluster-3.yaml"}')
    assert cli.main(["plan", GLUSTER3, "--host-profile", "ci", "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"storlab: error: {lab / 'plan.json'} is not a plan this storlab can read" in err
    assert "Traceback" not in err


def test_explicit_cidr_that_the_host_routes_is_refused_at_its_line(tmp_path: Path, storlab_home: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import ipaddress

    import harness.plan.planner as planmod
    monkeypatch.setattr(planmod, "used_subnets", lambda exclude_lab=None, others=None: {ipaddress.IPv4Network("10.9.0.0/16")})
    topo = tmp_path / "t.yaml"
    topo.write_text("lab: t\nprovider: lxc\nnetworks:\n  - {name: storage, cidr: 10.9.1.0/24}\nnodes: [{name: n1}]\n")
    assert cli.main(["plan", str(topo), "--host-profile", "ci", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{topo}:4:21: networks[0].cidr: 10.9.1.0/24 overlaps 10.9.0.0/16" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("net", "message"), [
    ("{name: mgmt}", "networks[0].name: the network name 'mgmt' is reserved"),
    ("{name: storage, cidr: 8.8.8.0/24}", "networks[0].cidr: 8.8.8.0/24 is not a private network"),
    ("{name: storage, cidr: 127.0.0.0/24}", "networks[0].cidr: 127.0.0.0/24 is not a private network"),
])
def test_reserved_or_public_networks_are_refused(tmp_path: Path, net: str, message: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    topo = tmp_path / "t.yaml"
    topo.write_text(f"lab: t\nprovider: lxc\nnetworks: [{net}]\nnodes: [{{name: n1}}]\n")
    assert cli.main(["validate", str(topo), "--host-profile", "ci"]) == 2
    assert message in capsys.readouterr().err
