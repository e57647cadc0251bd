"""Where a lab goes and within what: an engine remote with a budget, for untrusted users or not, made
by a class or not; the provider's Remotes hook reads remotes and budgets (no provider is named here)."""

from __future__ import annotations

from typing import Any

from harness import paths
from harness.errors import HarnessError
from harness.plan.model import BudgetPlan, Plan
from harness.providers.capabilities import remotes_of, with_remotes


def place(plan: Plan, remote: str | None, budget: str | None, untrusted: bool = False,
          klass: str | None = None) -> Plan:
    """The plan on an engine remote with a budget, for untrusted users or not, made by a class or
    not. A lab that exists stays where and what it is: a resumed `up` may repeat its --on and
    --budget, not change them, and a class resumes only a lab it made itself."""
    changes: dict[str, Any] = {}
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
        for key in ("remote", "budget", "untrusted"):
            if key in changes and changes[key] != getattr(old, key):
                raise HarnessError(f"lab '{plan.lab}' exists with {key} {getattr(old, key)}; "
                                   f"run `storlab down {plan.lab}` first to change it")
        changes = {k: getattr(old, k) for k in ("remote", "budget", "untrusted", "klass")
                   if k in old.model_fields_set}
    return plan.with_(**changes) if changes else plan
