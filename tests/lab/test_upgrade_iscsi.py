"""`storlab upgrade` of an iSCSI target (iscsi-userspace: tgt on LXC, LIO on VMs): its restart on
trixie's versions while the KVM host keeps writing to its LUN (libiscsi, as qemu's iscsi driver
does); the checker reads every acknowledged write back."""

from __future__ import annotations

from typing import Any

import pytest

from harness.backends.iscsi.plan import of
from harness.lab.lab import Lab
from harness.plan.model import need

from .upgrading import upgrade_under_writers

pytestmark = pytest.mark.topology("iscsi-userspace.yaml")


def test_upgrade_iscsi_target_to_trixie_under_the_host_initiator(lab: Lab, host_side: Lab, tmp_path: Any) -> None:
    tgt = need(of(lab.plan), "iscsi section").implementation == "tgt"
    upgrade_under_writers(lab, tmp_path / "run", "tgt" if tgt else "targetcli-fb")
