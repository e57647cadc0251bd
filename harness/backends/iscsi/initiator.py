"""iSCSI initiator role (kernel open-iscsi + dm-multipath) for nodes that consume the lab's
target the way an oVirt/KVM host does. Logging in is left to the tests (consumer checks)."""

from __future__ import annotations

from harness.backends.base import LabContext, NodeView
from harness.backends.iscsi.chap import chap_password
from harness.backends.iscsi.plan import AclPlan, IscsiPlan, of
from harness.plan.model import need
from harness.run import wait_until

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


# -- a LUN as another backend's block device (a cluster filesystem on it) ------------------------
#: a LUN's by-path link, then the multipath map holding it ($2 = mpath: wait for one; else the path)
RESOLVE = ('dev=$(readlink -e "$1") || exit 3; name=${dev#/dev/}; '
           'for h in /sys/block/"$name"/holders/*; do [ -e "$h/dm/name" ] && { echo "/dev/mapper/$(cat "$h/dm/name")"; '
           'exit 0; }; done; if [ "$2" = mpath ]; then exit 4; fi; echo "$dev"')


def lun_number(section: IscsiPlan, index: int) -> int:
    """The LUN number the target gives iscsi.luns[index] (tgt keeps LUN 0 for its controller)."""
    return index if section.implementation == "lio" else index + 1


def by_path(section: IscsiPlan, portal: str, index: int) -> str:
    return f"/dev/disk/by-path/ip-{portal}:3260-iscsi-{section.iqn}-lun-{lun_number(section, index)}"


def attach(lab: LabContext, node: NodeView, index: int) -> str:
    """Log ``node`` (an iscsi-initiator: its name, CHAP and multipathd set by the role) in over
    every portal (a session there is kept), then return the LUN's multipath map, or its one path
    where multipathd does not run."""
    section = need(of(lab.plan), "iscsi section")
    sessions = node.run(["iscsiadm", "-m", "session"], timeout=30).stdout
    for portal in section.portal_addresses:
        if f"{portal}:3260" in sessions and section.iqn in sessions:
            continue
        node.succeed(["iscsiadm", "-m", "discovery", "-t", "sendtargets", "-p", f"{portal}:3260"], timeout=60)
        node.succeed(["iscsiadm", "-m", "node", "-T", section.iqn, "-p", f"{portal}:3260", "--login"], timeout=60)
    link = by_path(section, section.portal_addresses[0], index)
    mpath = "mpath" if node.run(["systemctl", "is-active", "--quiet", "multipathd.service"], timeout=15).ok else ""

    def resolved() -> str | None:
        r = node.run(["sh", "-c", RESOLVE, "sh", link, mpath], timeout=15)
        return r.stdout.strip() if r.ok else None
    return wait_until(resolved, timeout=90, what=f"{node.name}: LUN {index} of {section.iqn} ({link})"
                      + (" under a multipath map" if mpath else ""))
