"""Where a lab goes and within what: an engine remote with a budget, for untrusted users or not, made
by a class or not; the provider's Remotes hook reads remotes and budgets (no provider is named here)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from harness import paths
from harness.errors import HarnessError
from harness.plan.model import BudgetPlan, Plan
from harness.providers.capabilities import available, remotes_of, with_remotes

#: what a data disk's filesystem takes of its sparse image as soon as it is made (measured: mkfs.xfs
#: and mkfs.ext4 of 2-20 GiB images write 64.3-65.2 MiB, most of it their log/journal)
FS_FOOTPRINT_MIB = 66
#: what a disk budget must hold beyond the filesystems as made: what the roles write at `up`
#: (a gluster-3 lab wrote about 60 MiB more) and a margin
BUDGET_MARGIN_MIB = 128
_SIZE = re.compile(r"(\d+)\s*(MiB|GiB|M|G)")


def disk_budget_mib(text: str) -> int:
    """`--disk-budget 2G` (or 512M, 2GiB, 512MiB) in MiB (HarnessError: not a size)."""
    m = _SIZE.fullmatch(text.strip())
    if not m or int(m.group(1)) == 0:
        raise HarnessError(f"--disk-budget {text!r}: expected a size such as 2G or 512M")
    return int(m.group(1)) * (1024 if m.group(2).startswith("G") else 1)


def disk_floor_mib(nodes: Sequence[Any]) -> int:
    """The smallest disk budget a lab of ``nodes`` (the plan's or the topology's) can come up in:
    its data disks' filesystems as made (a raw disk is given one by its node: BlueStore, a LUN's),
    what its roles write, a margin."""
    return sum(len(n.disks) for n in nodes) * FS_FOOTPRINT_MIB + BUDGET_MARGIN_MIB


def check_disk_budget(provider: str, lab: str, nodes: Sequence[Any], text: str) -> int:
    """``--disk-budget text`` for a lab of ``nodes`` on ``provider``, in MiB (at most the disks' full
    size); HarnessError, before anything is made, for a provider without sparse host images, a lab
    without data disks, or a budget below disk_floor_mib."""
    caps = available()
    if not (provider in caps and caps[provider].disk_budget):
        takers = ", ".join(c.name for c in caps.values() if c.disk_budget) or "no installed provider's"
        raise HarnessError(f"--disk-budget: only {takers} labs take a disk budget (their data disks are sparse "
                           f"image files on this host); this lab's provider is {provider}")
    mib, floor = disk_budget_mib(text), disk_floor_mib(nodes)
    full = sum(int(d.size) for n in nodes for d in n.disks) // 2**20
    if not full:
        raise HarnessError(f"--disk-budget: lab {lab} has no data disks to budget")
    if mib < floor:
        raise HarnessError(f"--disk-budget {text}: lab {lab} needs at least {floor} MiB (its data disks' "
                           f"filesystems take {FS_FOOTPRINT_MIB} MiB each as made, and its roles write more); "
                           f"give --disk-budget {-(-floor // 1024)}G or more")
    return min(mib, full)  # more than their full size is their full size


def place(plan: Plan, remote: str | None, budget: str | None, untrusted: bool = False,
          klass: str | None = None, disk_budget: str | None = None) -> Plan:
    """The plan on an engine remote with a budget, for untrusted users or not, made by a class or
    not, its data disks within ``disk_budget`` of this host's disk or not. A lab that exists stays
    where and what it is: a resumed `up` may repeat its --on, --budget and --disk-budget, not change
    them, and a class resumes only a lab it made itself."""
    changes: dict[str, Any] = {}
    if disk_budget is not None:
        changes["disk_budget_mib"] = check_disk_budget(plan.provider, plan.lab, plan.nodes, disk_budget)
    if untrusted:
        changes["untrusted"] = True
    if klass is not None:
        changes["klass"] = klass
    placing = with_remotes()
    if remote is not None:
        if plan.provider not in placing:
            raise HarnessError(f"--on ...:{remote}: only the {' and '.join(placing) or 'no'} provider has remotes "
                               f"(this lab's is {plan.provider})")
        changes["remote"] = remote
    if budget is not None:  # read as the lab's provider reads budgets, else as the (first) one with remotes
        budgets = remotes_of(plan.provider) or next(iter(placing.values()), None)
        if budgets is None:
            raise HarnessError(f"--budget: no installed provider takes a budget (this lab's is {plan.provider})")
        changes["budget"] = BudgetPlan(**budgets.budget(budget, plan.nodes))
    existing = paths.lab_dir(plan.lab) / "plan.json"
    if existing.exists():
        old = Plan.load(existing)
        if klass is not None and old.klass != klass:  # a class never adopts a lab it did not make (a plain
            # `storlab up` of a class's lab resumes it as what it is: the class's, untrusted)
            raise HarnessError(f"lab '{plan.lab}' exists and was made " + (f"by class id {old.klass}" if old.klass
                               else "outside any class") + (f", not by class id {klass}" if klass else "") +
                               f": storlab touches only what it made; `storlab down {plan.lab}` or pick another name")
        for key in ("remote", "budget", "untrusted", "disk_budget_mib"):
            if key in changes and changes[key] != getattr(old, key):
                raise HarnessError(f"lab '{plan.lab}' exists with {key} {getattr(old, key)}; "
                                   f"run `storlab down {plan.lab}` first to change it")
        changes = {k: getattr(old, k) for k in ("remote", "budget", "untrusted", "klass", "disk_budget_mib")
                   if k in old.model_fields_set}
    return plan.with_(**changes) if changes else plan
