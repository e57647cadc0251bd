"""CHAP secrets are decided when the plan is made and kept in the lab's secrets directory:
the plan names them, never holds them, and nothing reads the topology again."""

from __future__ import annotations

import stat
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness import secrets
from harness.backends import iscsi
from harness.backends.iscsi import chap
from harness.errors import HarnessError
from harness.hostfacts import PROFILES
from harness.model import need
from harness.plan import make_plan
from harness.validate import validate_text

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


def test_secrets_are_decided_at_plan_time_and_kept(tmp_path: Path) -> None:
    pwfile = tmp_path / "pw"
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
