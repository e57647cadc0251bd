"""Ceph the OpenStack way: per-service clients with `profile rbd`, a glance image
snapshot-protected and copy-on-write cloned into the cinder pool, the libvirt secret with
nova's fixed UUID, and three monitors that survive the loss of one.

Select with `pytest -k ceph`."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness.backends.ceph import planned
from harness.backends.ceph.plan import CephPlan
from harness.backends.ceph.role import parse_health
from harness.lab.lab import Lab
from harness.run import wait_until

pytestmark = pytest.mark.topology("ceph-openstack.yaml")


def ceph_plan(lab: Lab) -> CephPlan:
    return planned(lab.plan)


def admin(lab: Lab) -> Any:
    return lab.node(ceph_plan(lab).admin[0])


@pytest.fixture(scope="module")
def keyrings(lab: Lab) -> Any:
    a = admin(lab)
    for cl in ceph_plan(lab).clients:
        a.succeed(["ceph", "auth", "get", cl.name, "-o", f"/etc/ceph/ceph.{cl.name}.keyring"])
    accepted = ceph_plan(lab).accept_warnings  # a release's own (trixie's mgr modules), named in the plan
    wait_until(lambda: parse_health(a.succeed(["ceph", "-s", "-f", "json"]), accepted)[0], timeout=240, interval=2,
               what="HEALTH_OK (or only the warnings the plan accepts)")
    yield
    a.run(["sh", "-c", "rm -f /etc/ceph/ceph.client.glance.keyring /etc/ceph/ceph.client.cinder*.keyring"], timeout=30)


def rbd(lab: Lab, client: str, *args: str) -> str:
    return str(admin(lab).succeed(["rbd", "--id", client, *args], timeout=120))


def test_ceph_openstack_glance_image_cow_cloned_into_cinder(lab: Lab, keyrings: None) -> None:
    rbd(lab, "glance", "create", "images/cirros", "--size", "64M")
    rbd(lab, "glance", "snap", "create", "images/cirros@base")
    rbd(lab, "glance", "snap", "protect", "images/cirros@base")
    try:
        rbd(lab, "cinder", "clone", "images/cirros@base", "volumes/volume-1")
        info = json.loads(rbd(lab, "cinder", "info", "volumes/volume-1", "--format", "json"))
        assert info["parent"]["pool"] == "images" and info["parent"]["image"] == "cirros"
        assert info["parent"]["snapshot"] == "base"
        # cinder may read images but not change them; glance cannot touch volumes
        err = admin(lab).fail(["rbd", "--id", "cinder", "snap", "create", "images/cirros@nope"], timeout=60)
        assert "Operation not permitted" in err or "permission" in err.lower(), err
        admin(lab).fail(["rbd", "--id", "glance", "ls", "volumes"], timeout=60)
        # a protected snapshot with a clone cannot be unprotected
        admin(lab).fail(["rbd", "--id", "glance", "snap", "unprotect", "images/cirros@base"], timeout=60)
        children = json.loads(admin(lab).succeed(["rbd", "children", "images/cirros@base", "--format", "json"]))
        assert [(c["pool"], c["image"]) for c in children] == [("volumes", "volume-1")]
    finally:
        rbd(lab, "cinder", "rm", "volumes/volume-1")
        rbd(lab, "glance", "snap", "unprotect", "images/cirros@base")
        rbd(lab, "glance", "snap", "purge", "images/cirros")
        rbd(lab, "glance", "rm", "images/cirros")


def test_ceph_openstack_libvirt_secret_has_nova_uuid(lab: Lab, libvirt_conn: Any) -> None:
    uuid = "457eb676-33da-42ec-9a8c-9293d545c337"
    secret = libvirt_conn.secretLookupByUUIDString(uuid)
    assert "client.cinder" in secret.XMLDesc(0)
    pool = libvirt_conn.storagePoolLookupByName(lab.plan.pool("vms").object)
    assert pool.isActive() and uuid in pool.XMLDesc(0)
    pool.refresh(0)
    assert "instance-0001_disk" in pool.listVolumes()


def test_ceph_openstack_three_monitors_survive_losing_one(lab: Lab, keyrings: None) -> None:
    mons = [m.name for m in ceph_plan(lab).mons]
    assert len(mons) == 3
    victim = mons[0]
    with lab.node(victim).service_stopped(f"ceph-mon@{victim}.service"):
        def quorum_without_victim() -> bool:
            st = json.loads(admin(lab).succeed(["ceph", "-s", "-f", "json", "--connect-timeout", "20"], timeout=60))
            return victim not in st["quorum_names"] and len(st["quorum_names"]) == 2
        wait_until(quorum_without_victim, timeout=90, interval=2, what=f"a 2-monitor quorum without {victim}")
        rbd(lab, "cinder", "create", "volumes/during-mon-loss", "--size", "8M")
        assert "during-mon-loss" in rbd(lab, "cinder", "ls", "volumes").split()
    rbd(lab, "cinder", "rm", "volumes/during-mon-loss")
    wait_until(lambda: len(json.loads(admin(lab).succeed(["ceph", "-s", "-f", "json"]))["quorum_names"]) == 3,
               timeout=120, interval=2, what="all three monitors back in quorum")
