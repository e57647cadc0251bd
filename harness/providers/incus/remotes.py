"""Labs on Incus remotes (`--on incus:REMOTE[@GROUP]`, a cluster too) within a budget: what
harness.providers.capabilities.Remotes asks of a provider that has remotes."""

from __future__ import annotations

from collections.abc import Sequence

from harness.errors import HarnessError
from harness.plan.model import NodePlan
from harness.providers.incus import client as incus


class IncusRemotes:
    def check(self, value: str, remote: str) -> None:
        name, at, group = remote.partition("@")
        if not incus.REMOTE_RE.fullmatch(name):
            raise HarnessError(f"--on {value!r}: an Incus remote name is letters, digits, '.', '_' and '-' "
                               f"(the names `incus remote list` shows)")
        if at and not incus.GROUP_RE.fullmatch(group):
            raise HarnessError(f"--on {value!r}: after '@' comes a cluster group name (`incus cluster group list`)")

    def budget(self, text: str, nodes: Sequence[NodePlan]) -> dict[str, int]:
        return incus.Budget.parse(text, incus.need_of(nodes)).as_dict()

    def capacity(self, remote: str) -> tuple[int, int, int, list[str]]:
        client = incus.Incus(incus.split_remote(remote)[0])
        why = client.reachable()
        if why:
            raise HarnessError(why)
        return incus.capacity(client)


REMOTES = IncusRemotes()
