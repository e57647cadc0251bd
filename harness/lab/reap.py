"""Reap: labs whose lease ended or whose owner died mid-way, and lab-marked objects whose lab
directory is gone: each installed provider sweeps its engine's (Provider.reap_orphans), links are
swept here. Only this home's: another storlab home's objects are named in the log and left alone."""

from __future__ import annotations

import json
import os
import re
import time

from harness import locks, log, paths
from harness.errors import CleanupReport, HarnessError
from harness.lab.lab import Lab, list_labs, remove_staging
from harness.providers import base as providers
from harness.run import run
from harness.spec.topology import NAME_RE


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap() -> CleanupReport:
    """Remove labs whose `up`/test owner died mid-way, and lab-named objects with no lab at all."""
    rep = CleanupReport()
    for name in list_labs():
        if locks.is_held_elsewhere(name):
            continue  # its owner is alive and at work on it
        try:
            lab = Lab.load(name)
        except HarnessError as exc:  # one unreadable lab does not stop the others
            rep.failed.append((f"lab {name}", str(exc)))
            continue
        st = lab.state()
        why, label = None, []
        if st.expired() and st.expires is not None:
            why = f"its lease ended at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(st.expires))}"
            label = [f"lab {name} (expired)"]
        elif st.status in ("creating", "destroying", "destroy-failed", "in-use") and not _pid_alive(st.owner_pid):
            why = f"{st.status}, owner {st.owner_pid} gone"
        if why is None:
            continue
        log.info(f"reap: lab {name}: {why}")
        try:
            sub = lab.down()
        except HarnessError as exc:  # e.g. LabBusy: taken by another process since; the other labs go on
            rep.failed.append((f"lab {name}", str(exc)))
            continue
        rep.removed += [*label, *sub.removed]
        rep.failed += sub.failed
    for stage in (paths.home() / "labs").glob(".*.new"):
        name = stage.name[1:-len(".new")]
        if re.fullmatch(NAME_RE, name) and not locks.is_held_elsewhere(name) and remove_staging(name):
            rep.removed.append(f"staging directory of lab {name} (an `up` stopped before the lab was made)")
    # orphans: objects and links carrying a storlab mark whose lab directory is gone
    labs = set(list_labs())
    for provider in providers.registered().values():
        provider.reap_orphans(labs, rep)
    for link in json.loads(run(["ip", "-j", "link", "show"], timeout=15).stdout or "[]"):
        mark = paths.alias_owner(str(link.get("ifalias", "")))
        if mark is None or mark[0] in labs:
            continue
        if whose := paths.other_home(mark[1]):
            log.info(f"reap: link {link['ifname']} of lab {mark[0]} is {whose}: not this home's to remove")
            continue
        r = run(["ip", "link", "del", link["ifname"]], timeout=15)
        (rep.removed.append(f"orphan link {link['ifname']}") if r.ok else rep.failed.append((link["ifname"], r.stderr)))
    return rep
