"""CHAP secrets are decided when the plan is made and kept in the lab's secrets directory:
the plan names them, never holds them, and nothing reads the topology again."""

from __future__ import annotations

import stat
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.backends import iscsi
from harness.backends.iscsi import chap
from harness.errors import HarnessError, TopologyError
from harness.host.facts import PROFILES
from harness.lab import secrets
from harness.plan.model import need
from harness.plan.planner import make_plan
from harness.spec.validate import validate_text

TOPO = """
lab: s
provider: lxc
networks: [{name: storage}]
nodes:
  - {name: t1, roles: [iscsi-target], disks: [{name: files, size: 1G, filesystem: xfs, mount: /iscsi}]}
iscsi:
  target: t1
  implementation: tgt
  iqn: iqn.2019-12.com.example:target1
  luns: [{kind: fileio, path: /iscsi/lun0.img, size: 64M}]
  acls:
    - {initiator: "iqn.2019-12.com.example:gen", chap: {username: g, generate: true}}
    - {initiator: "iqn.2019-12.com.example:lit", chap: {username: l, password: literal-secret1}}
    - {initiator: "iqn.2019-12.com.example:file", chap: {username: f, password_file: PWFILE}}
"""


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """$STORLAB_HOME/secrets: where a topology's CHAP password_file may be."""
    monkeypatch.setenv("STORLAB_HOME", str(tmp_path / "home"))
    d = tmp_path / "home" / "secrets"
    d.mkdir(parents=True, mode=0o700)
    return d


def test_secrets_are_decided_at_plan_time_and_kept(tmp_path: Path, store: Path) -> None:
    pwfile = store / "pw"
    pwfile.write_text("from-a-file-01\n")
    topo, res = validate_text(textwrap.dedent(TOPO).replace("PWFILE", str(pwfile)), PROFILES["ci"])
    plan = make_plan(topo, res, "s.yaml", set(), PROFILES["ci"])
    assert "literal-secret1" not in plan.to_json()  # the plan names secrets, never holds them
    sdir = tmp_path / "lab" / "secrets"
    secrets.decide(plan, topo, sdir)
    ctx = SimpleNamespace(secrets_dir=sdir)
    acls = {a.initiator.split(":")[1]: a for a in iscsi.planned(plan).acls}
    gen = chap.chap_password(ctx, acls["gen"])
    assert len(gen) == 16 and gen.isalnum()
    assert chap.chap_password(ctx, acls["lit"]) == "literal-secret1"
    assert chap.chap_password(ctx, acls["file"]) == "from-a-file-01"
    assert stat.S_IMODE(sdir.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in sdir.iterdir())
    # a second `up` keeps what was decided (a generated secret does not change under a running lab)
    secrets.decide(plan, topo, sdir)
    assert chap.chap_password(ctx, acls["gen"]) == gen
    lit = need(acls["lit"].chap, "CHAP").secret_name
    filled = chap.fill(f"a <secret:{lit}> b", ctx, iscsi.planned(plan).acls)
    assert filled == "a literal-secret1 b"


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b", "..", ".hidden", "", "chap-i1\n"])
def test_secret_names_cannot_leave_the_secrets_directory(tmp_path: Path, name: str) -> None:
    with pytest.raises(HarnessError, match="not a plain file name"):
        secrets.secret_file(tmp_path, name)


def _plan_with_password_file(path: str) -> tuple[object, object]:
    topo, res = validate_text(textwrap.dedent(TOPO).replace("PWFILE", path), PROFILES["ci"])
    return topo, make_plan(topo, res, "s.yaml", set(), PROFILES["ci"])


def _problems(path: str) -> list[str]:
    try:
        validate_text(textwrap.dedent(TOPO).replace("PWFILE", path), PROFILES["ci"])
    except TopologyError as exc:
        return [f"{p.field}: {p.message} (fix: {p.fix})" for p in exc.problems]
    return []


def test_a_password_file_outside_the_store_is_refused_where_it_is_written(store: Path) -> None:
    for path in ("/etc/passwd", "/etc/shadow", f"{store.parent}/labs/other/secrets/chap-x", f"{store}-x/pw"):
        problems = _problems(path)
        assert len(problems) == 1 and problems[0].startswith("iscsi.acls[2].chap.password_file: "), problems
        assert str(store) in problems[0]


def test_a_symlink_in_the_store_is_not_followed(store: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("outside-secret1\n")
    (store / "link").symlink_to(outside)
    (store / "dir").symlink_to(tmp_path, target_is_directory=True)
    for name in ("link", "dir/outside"):
        assert any("symbolic link" in p for p in _problems(str(store / name))), name
        with pytest.raises(HarnessError, match="symbolic link"):
            chap.read_password_file(str(store / name))


@pytest.mark.parametrize(("content", "why"), [
    ("good-secret-01\n  </target>\n<target iqn.2000-01.x:y>\n backing-store /dev/sda\n", "one line"),
    ("good-secret-01\r\n", "one line"),
    ("short\n", "12 to 16"),
    ("this-secret-is-far-too-long\n", "12 to 16"),
    ("has a space 12\n", "characters"),
    ('quote"secret01\n', "characters"),
    ("hash#secret012\n", "characters"),
    ("", "12 to 16"),
])
def test_a_password_file_holds_one_line_of_chap_characters(store: Path, content: str, why: str) -> None:
    (store / "pw").write_text(content)
    problems = _problems(str(store / "pw"))
    assert len(problems) == 1 and why in problems[0], problems
    assert content.strip() == "" or content.splitlines()[0] not in problems[0]  # the value is never shown
    with pytest.raises(HarnessError, match=why):
        chap.read_password_file(str(store / "pw"))


def test_the_file_is_read_again_when_the_plan_is_made(store: Path, tmp_path: Path) -> None:
    """What validation saw may change before `up` reads it: decide checks again."""
    pw = store / "pw"
    pw.write_text("from-a-file-01\n")
    topo, plan = _plan_with_password_file(str(pw))
    pw.write_text("from-a-file-01\n  </target>\n")
    with pytest.raises(HarnessError, match="one line"):
        secrets.decide(plan, topo, tmp_path / "lab" / "secrets")  # type: ignore[arg-type]


def test_a_secret_with_a_line_break_is_never_filled_into_a_config(store: Path, tmp_path: Path) -> None:
    pw = store / "pw"
    pw.write_text("from-a-file-01\n")
    topo, plan = _plan_with_password_file(str(pw))
    sdir = tmp_path / "lab" / "secrets"
    secrets.decide(plan, topo, sdir)  # type: ignore[arg-type]
    acl = next(a for a in iscsi.planned(plan).acls if a.initiator.endswith(":file"))  # type: ignore[arg-type]
    name = need(acl.chap, "CHAP").secret_name
    (sdir / name).write_text("from-a-file-01\n</target>\n<target iqn.2000-01.x:y>")  # a store written by hand
    with pytest.raises(HarnessError) as exc:
        chap.fill(f"incominguser f <secret:{name}>", SimpleNamespace(secrets_dir=sdir), (acl,))
    assert "</target>" not in str(exc.value)


@pytest.mark.parametrize("template", ["tgt", "lio"])
def test_the_target_templates_refuse_a_value_with_a_line_break(store: Path, template: str) -> None:
    pw = store / "pw"
    pw.write_text("from-a-file-01\n")
    _, plan = _plan_with_password_file(str(pw))
    section = iscsi.planned(plan)  # type: ignore[arg-type]
    acl = section.acls[0].model_copy(update={"initiator": "iqn.2019-12.com.example:i1\n</target>"})
    bad = section.model_copy(update={"implementation": template, "acls": (acl, *section.acls[1:])})
    with pytest.raises(HarnessError, match="line break"):
        iscsi.IscsiBackend().render(plan, bad)  # type: ignore[arg-type]
