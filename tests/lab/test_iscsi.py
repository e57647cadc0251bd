"""iSCSI lab: the target's LUNs, IQN ACL and CHAP as the topology gives them, the KVM host's
libvirt iscsi-direct pool, and a target restart while an initiator writes. The KVM host is
the initiator in userspace (libiscsi: iscsi-ls, qemu's iscsi driver), so this runs on hosts
without iscsi_tcp too. Select with `pytest -k iscsi`."""

from __future__ import annotations

import os
import re
import subprocess
import time
from typing import Any

import pytest

from harness.backends.iscsi import planned
from harness.backends.iscsi.chap import chap_password
from harness.backends.iscsi.plan import AclPlan, IscsiPlan
from harness.backends.iscsi.target import planned_lun_sizes
from harness.lab.lab import Lab
from harness.lab.secrets import secret_file
from harness.plan.model import need
from harness.run import wait_until
from harness.testing.workload import Writer

pytestmark = pytest.mark.topology("iscsi-userspace.yaml")
MARGIN = 20.0
# One 4 KiB write with qemu-io. A write under way when the target stops hangs in libiscsi's
# reconnect until this timeout, so "writes fail while the target is down" waits longer than it.
OP_TIMEOUT = 10.0
INTRUDER = "iqn.2019-12.com.example:intruder"


def target(lab: Lab) -> Any:
    return lab.node(iscsi_plan(lab).target)


def iscsi_plan(lab: Lab) -> IscsiPlan:
    return planned(lab.plan)


def acl(lab: Lab) -> AclPlan:
    return iscsi_plan(lab).acls[0]


def iscsi_ls(lab: Lab, initiator: str, password: str | None, username: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if password is not None:  # libiscsi takes CHAP credentials from the environment, not argv
        env.update(LIBISCSI_CHAP_USERNAME=username or need(acl(lab).chap, "CHAP").username, LIBISCSI_CHAP_PASSWORD=password)
    return subprocess.run(["iscsi-ls", "-s", "-i", initiator, f"iscsi://{target(lab).address}"],
                          capture_output=True, text=True, timeout=30, env=env)


def lun_sizes(output: str) -> dict[int, int]:
    """iscsi-ls -s: {lun: size in MiB} for disk LUNs."""
    return {int(n): int(s) for n, s in re.findall(r"Lun:(\d+)\s+Type:DIRECT_ACCESS \(Size:(\d+)M\)", output)}


def qemu_io(lab: Lab, lun: int, *cmds: str, timeout: float = 60) -> None:
    a = acl(lab)
    opts = (f"driver=iscsi,transport=tcp,portal={target(lab).address}:3260,target={iscsi_plan(lab).iqn},"
            f"lun={lun},initiator-name={a.initiator}")
    argv = ["qemu-io"]
    if a.chap is not None:  # qemu reads the secret's value from the file, never from argv
        argv += ["--object", f"secret,id=chap,file={secret_file(lab.secrets_dir, a.chap.secret_name)}"]
        opts += f",user={a.chap.username},password-secret=chap"
    argv += ["--image-opts", opts]
    for c in cmds:
        argv += ["-c", c]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0 or "failed" in r.stdout.lower():
        raise OSError(f"qemu-io rc={r.returncode}: {(r.stderr or r.stdout).strip()[-300:]}")


def test_iscsi_target_serves_the_luns_to_the_allowed_initiator(lab: Lab) -> None:
    a = acl(lab)
    r = iscsi_ls(lab, a.initiator, chap_password(lab, a) if a.chap else None)
    assert r.returncode == 0, r.stdout + r.stderr
    want = [size // 2**20 for size in planned_lun_sizes(lab.plan)]
    found = lun_sizes(r.stdout)
    # LUNs in topology order (LIO numbers them from 0, tgt from 1 after its controller LUN);
    # the SCSI capacity is reported in whole MiB rounded down, minus at most one
    got = [found[n] for n in sorted(found)]
    assert len(got) == len(want) and all(w - 1 <= g <= w for g, w in zip(got, want, strict=True)), (found, want)


def test_iscsi_wrong_initiator_is_refused(lab: Lab) -> None:
    """An IQN the topology does not mean to admit gets no LUN, whatever CHAP secret of the lab it offers."""
    offers: list[tuple[str | None, str | None]] = [(None, None)]
    offers += [(a.chap.username, chap_password(lab, a)) for a in iscsi_plan(lab).acls if a.chap is not None]
    for user, pw in offers:
        r = iscsi_ls(lab, INTRUDER, pw, user)
        assert not lun_sizes(r.stdout), f"{INTRUDER} (CHAP user {user}) saw LUNs: {r.stdout}"


def test_iscsi_wrong_or_missing_chap_secret_is_refused(lab: Lab) -> None:
    for pw in ("wrong-secret-1234", None):
        r = iscsi_ls(lab, acl(lab).initiator, pw)
        assert not lun_sizes(r.stdout) and "Authentication failure" in r.stdout + r.stderr, r.stdout + r.stderr


def test_iscsi_direct_pool_lists_the_luns(lab: Lab, libvirt_conn: Any) -> None:
    spec = next(p for p in lab.plan.host.pools if p.type == "iscsi-direct")
    pool = libvirt_conn.storagePoolLookupByName(spec.object)
    assert pool.isActive() and pool.autostart()
    pool.refresh(0)
    caps = sorted(pool.storageVolLookupByName(v).info()[1] // 2**20 for v in pool.listVolumes())
    want = sorted([0] + [size // 2**20 for size in planned_lun_sizes(lab.plan)])  # LUN 0 is tgt's controller
    if len(caps) == len(want) - 1:
        want = want[1:]  # LIO has no controller LUN
    assert len(caps) == len(want) and all(w - 1 <= c <= w for c, w in zip(caps, want, strict=True)), (caps, want)


def test_iscsi_target_restart_while_initiator_writes(lab: Lab) -> None:
    unit = "tgt.service" if iscsi_plan(lab).implementation == "tgt" else "rtslib-fb-targetctl.service"

    def write(seq: int) -> None:
        qemu_io(lab, 1, f"write -P {seq % 250 + 1} {seq * 4096} 4k", "flush", timeout=OP_TIMEOUT)

    with Writer("iscsi", write, interval=0.1) as w:
        wait_until(lambda: len(w.log.acked) > 5, timeout=60, what="iSCSI writer running")
        with target(lab).service_stopped(unit):
            t_down = time.monotonic()
            w.wait_refused(t_down, OP_TIMEOUT + MARGIN, f"writes did not fail while {unit} was stopped")
        t_up = time.monotonic()
        w.wait_acked(t_up, 60 + MARGIN, f"writes did not resume after {unit} started")
        resumed = (w.log.first_ack_after(t_up) or t_up) - t_up
    print(f"iSCSI target restart: writes resumed {resumed:.1f}s after it was back ({len(w.log.errors)} refused meanwhile)")
    assert resumed <= MARGIN
    for _, seq in w.log.acked:  # qemu-io verifies each pattern and fails on a mismatch
        qemu_io(lab, 1, f"read -P {seq % 250 + 1} {seq * 4096} 4k")
