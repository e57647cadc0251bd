"""Labs on Incus remotes (`--on incus:REMOTE[@GROUP]`, a cluster too) within a budget, and their
students' gate (students.py): what harness.providers.capabilities.Remotes asks of a provider that
has remotes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness.errors import HarnessError
from harness.plan.model import NodePlan
from harness.providers.incus import client as incus
from harness.providers.incus import students


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

    def grant_students(self, klass: str, conf: Path, gate: Path, owner: tuple[int, int], remote: str,
                       projects: Sequence[str]) -> str:
        return students.grant(klass, conf, gate, owner, remote, projects)

    def revoke_students(self, klass: str, conf: Path, remote: str | None) -> list[str]:
        return students.revoke(klass, conf, remote)

    def project_lab(self, remote: str, project: str) -> str | None:
        return students.project_lab(remote, project)


REMOTES = IncusRemotes()
