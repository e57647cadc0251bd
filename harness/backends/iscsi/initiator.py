"""iSCSI initiator role (kernel open-iscsi + dm-multipath) for nodes that consume the lab's
target the way an oVirt/KVM host does. Logging in is left to the tests (consumer checks)."""

from __future__ import annotations

from harness.backends.base import LabContext
from harness.backends.iscsi.chap import chap_password
from harness.backends.iscsi.plan import AclPlan, of

UNITS = ["iscsid.socket", "iscsid.service", "open-iscsi.service", "multipathd.socket", "multipathd.service"]
MULTIPATH_CONF = """# storlab: every iSCSI LUN gets a multipath map, whatever its vendor; with no path left,
# I/O is queued for 12 checker intervals (60 s) before it fails, whatever the vendor's hwtable says
defaults {
    user_friendly_names yes
    find_multipaths no
    polling_interval 5
}
overrides {
    no_path_retry 12
}
blacklist {
    devnode "^vd[a-z]"
}
"""


def acl_for(lab: LabContext, node_name: str) -> AclPlan | None:
    """The i-th initiator node takes the i-th ACL of the target (its IQN and CHAP)."""
    initiators = [n.name for n in lab.plan.nodes if "iscsi-initiator" in n.roles]
    section = of(lab.plan)
    acls = section.acls if section else ()
    i = initiators.index(node_name)
    return acls[i] if i < len(acls) else None


def apply(lab: LabContext) -> None:
    for node in lab.nodes.values():
        if "iscsi-initiator" not in node.roles:
            continue
        acl = acl_for(lab, node.name)
        if acl:
            node.put("/etc/iscsi/initiatorname.iscsi", f"InitiatorName={acl.initiator}\n")
        conf = node.get("/etc/iscsi/iscsid.conf")
        keep = [line for line in conf.splitlines() if not line.startswith(("node.session.auth.", "# storlab"))]
        if acl and acl.chap:
            keep += ["# storlab: CHAP for the lab's target",
                     "node.session.auth.authmethod = CHAP",
                     f"node.session.auth.username = {acl.chap.username}",
                     f"node.session.auth.password = {chap_password(lab, acl)}"]
        node.put("/etc/iscsi/iscsid.conf", "\n".join(keep) + "\n", "0600")
        node.put("/etc/multipath.conf", MULTIPATH_CONF)
        node.enable_units(["iscsid.socket", "iscsid.service", "multipathd.service"], unmask=UNITS, timeout=120)
        # both may already run since boot with their defaults: make them read what we wrote
        node.succeed(["systemctl", "restart", "iscsid.service", "multipathd.service"])
        node.wait_for_unit("multipathd.service", timeout=120)
