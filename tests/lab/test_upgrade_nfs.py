"""`storlab upgrade` of an NFS server (nfs-userspace: NFS-Ganesha on LXC, kernel nfsd on VMs):
its restart on trixie's versions while the KVM host keeps writing to it (libnfs, as qemu's nfs
driver does); the checker reads every acknowledged write back."""

from __future__ import annotations

from typing import Any

import pytest

from harness.backends.nfs.plan import of
from harness.lab.lab import Lab
from harness.plan.model import need

from .upgrading import upgrade_under_writers

pytestmark = pytest.mark.topology("nfs-userspace.yaml")


def test_upgrade_nfs_server_to_trixie_under_the_host_client(lab: Lab, host_side: Lab, tmp_path: Any) -> None:
    ganesha = need(of(lab.plan), "nfs section").implementation == "ganesha"
    upgrade_under_writers(lab, tmp_path / "run", "nfs-ganesha" if ganesha else "nfs-kernel-server")
