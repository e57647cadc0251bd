"""Who is root where: a lab whose users are not this host's admins (students) runs only where root
in a node cannot reach the host, and this module says whether a plan can, before anything is made.

Trusted labs (an engineer's own, CI) may use any provider. An untrusted lab needs a provider that
isolates: "vm" (a kernel per node: every role runs) or "userns" (unprivileged containers, each lab
with an id map of its own: only roles that run without host privileges). The LXC provider runs
privileged containers, where root in a node is root on the host: trusted labs only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from harness.backends.base import backends
from harness.errors import HarnessError
from harness.plan.model import Plan
from harness.providers import base as providers

#: what `storlab up` and `storlab class up` take to say the users are trusted with root on this host
TRUSTED_FLAG = "--trusted-students"


def refusal(plan: Plan) -> str | None:
    """Why this untrusted lab cannot run on its provider (None: it can, or it is trusted)."""
    if not plan.untrusted:
        return None
    return refusal_for(plan.lab, plan.provider, [(n.name, n.roles) for n in plan.nodes])


def refusal_for(lab: str, provider: str, nodes: Iterable[tuple[str, Sequence[str]]]) -> str | None:
    """Why a lab of these (node, roles) for untrusted users cannot run on ``provider`` (None: it can)."""
    caps = providers.get(provider).capabilities
    if caps.isolation == "vm":
        return None
    if caps.isolation == "none":
        return (f"lab {lab} is for untrusted users (students), and provider {provider} runs privileged "
                f"containers, where root on a node is root on this host. Fix: --on incus (unprivileged "
                f"containers, each lab with its own id map) or --provider vagrant (a VM per node); or, if these "
                f"users may be root on this host, {TRUSTED_FLAG}")
    held = [(node, role, why) for node, roles in nodes for b in backends() for role in roles
            if (why := b.host_privilege.get(role))]
    if held:
        node, role, why = held[0]
        more = f" (and {len(held) - 1} more)" if len(held) > 1 else ""
        return (f"lab {lab} is for untrusted users (students) and its provider {provider} isolates them "
                f"in unprivileged containers, where node {node}'s role {role}{more} cannot run: {why}. Fix: "
                f"--provider vagrant (a VM per node, a kernel of its own); or, if these users may be root on "
                f"this host, {TRUSTED_FLAG}")
    return None


def check(plan: Plan) -> None:
    why = refusal(plan)
    if why:
        raise HarnessError(why + "; nothing was created")
