"""Roles configure nodes through harness.node.Node only, so they work on any provider.

Each role module has NAME, applies(plan) and apply(lab); apply is idempotent."""

from __future__ import annotations

from types import ModuleType

from ..model import Plan
from . import base, ceph, gluster, hypervisor, initiator, iscsi, nfs


def for_plan(plan: Plan) -> list[ModuleType]:
    return [r for r in (base, gluster, ceph, nfs, iscsi, initiator, hypervisor) if r.applies(plan)]
