"""What a lab owns on an Incus remote (its project storlab-LAB, with the instances, volumes and
networks marked as its), how all of it is removed, the remotes this host's labs were made on, and
the sweep of projects whose lab directory is gone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness import locks, log, paths
from harness.errors import CleanupReport, WaitTimeout
from harness.providers.incus import client as incus
from harness.providers.incus.client import POOL, Incus
from harness.run import wait_until


# -- what a lab owns on a remote (read by `leftovers`, removed by `remove_lab`) ----------------------
def owns_project(default: Incus, lab: str) -> bool:
    """Whether the project storlab-LAB exists and carries the lab's mark (``default``: the default
    project's client)."""
    proj = default.maybe(f"/1.0/projects/{incus.project_of(lab)}")
    return proj is not None and incus.owner(proj) == lab


def owned_instances(api: Incus, lab: str) -> list[dict[str, Any]]:
    """The lab's instances in its project (``api``: the lab project's client)."""
    return [i for i in api.query("/1.0/instances?recursion=1") or [] if incus.owner(i) == lab]


def owned_volumes(api: Incus, lab: str) -> list[dict[str, Any]]:
    """The lab's custom volumes in its project; not their snapshots (listed as VOLUME/SNAPSHOT,
    they go with their volume)."""
    vols = api.maybe(f"/1.0/storage-pools/{POOL}/volumes/custom?recursion=1") or []
    return [v for v in vols if incus.owner(v) == lab and "/" not in v["name"]]


def volume_names(api: Incus, lab: str) -> list[str]:
    """The names of the lab's custom volumes (owned_volumes), sorted."""
    return sorted(v["name"] for v in owned_volumes(api, lab))


def owned_networks(default: Incus, lab: str) -> list[str]:
    return sorted(n["name"] for n in default.query("/1.0/networks?recursion=1") or []
                  if n.get("managed") and incus.owner(n) == lab)


def remove_lab(remote: str | None, lab: str) -> CleanupReport:
    """Remove everything marked as ``lab``'s on ``remote``: its project's instances (with their
    snapshots) and volumes, its networks, then the project; continue past failures and report them."""
    rep = CleanupReport()
    default, api = Incus(remote), Incus(remote, incus.project_of(lab))
    why = default.reachable()
    if why is not None:
        rep.failed.append((f"Incus on {default.where()}", why))
        return rep

    def attempt(what: str, client: Incus, *argv: str) -> None:
        r = client.run(*argv, check=False, timeout=300)
        (rep.removed.append(what) if r.ok else rep.failed.append((what, r.stderr.strip()[-300:])))

    ours = owns_project(default, lab)
    if ours:
        for inst in owned_instances(api, lab):
            attempt(f"instance {api.project}/{inst['name']}", api, "delete", "--force", api.ref(inst["name"]))
        for v in owned_volumes(api, lab):
            attempt(f"volume {api.project}/{v['name']}", api, "storage", "volume", "delete", api.ref(POOL),
                    v["name"], *(["--target", v["location"]] if incus.location(v) else []))
    for name in owned_networks(default, lab):
        # incusd lists every bridge's ports while it deletes one: another lab's bridge going away
        # at that moment fails the delete ("Device ... does not exist"), so it is tried again
        def gone(name: str = name) -> bool:
            r = default.run("network", "delete", default.ref(name), check=False, timeout=120)
            return r.ok or default.maybe(f"/1.0/networks/{name}") is None
        try:
            wait_until(gone, timeout=30, interval=1, what=f"network {name} deleted")
            rep.removed.append(f"network {name}")
        except WaitTimeout as exc:
            rep.failed.append((f"network {name}", str(exc)))
    if ours:
        attempt(f"project {api.project}", default, "project", "delete", default.ref(api.project))
    return rep


def remotes_file() -> Path:
    return paths.home() / "incus-remotes.json"


def record_remote(remote: str | None) -> None:
    """Remember a remote a lab was made on: `reap` looks there for labs whose directory is gone."""
    with locks.allocation():
        have = remotes_used()
        if remote not in have:
            remotes_file().parent.mkdir(parents=True, exist_ok=True)
            remotes_file().write_text(json.dumps([*have, remote]))


def remotes_used() -> list[str | None]:
    """This host's Incus (None) and every remote a lab of this host was made on."""
    try:
        have = [r for r in json.loads(remotes_file().read_text()) if r is None or incus.REMOTE_RE.fullmatch(r)]
    except (OSError, ValueError):
        have = []
    return have if None in have else [None, *have]


def orphans(labs: set[str], remote: str | None = None) -> list[str]:
    """Labs with a storlab project on ``remote`` (None: this host's Incus) that are not in ``labs``."""
    client = Incus(remote)
    if client.reachable() is not None:
        return []
    out = []
    for p in client.query("/1.0/projects?recursion=1") or []:
        lab = incus.owner(p)
        if not lab or p["name"] != incus.project_of(lab) or lab in labs:
            continue
        if whose := paths.other_home(incus.home_of(p)):  # another host sharing the cluster, or unmarked
            log.info(f"reap: Incus project {p['name']} on {client.where()} is {whose}: not this home's to remove")
            continue
        out.append(lab)
    return sorted(out)


def reap_orphans(labs: set[str], rep: CleanupReport) -> None:
    """Remove this home's lab projects, on this host's Incus and every remote a lab was made on,
    whose lab is not in ``labs``."""
    for remote in remotes_used():
        for orphan in orphans(labs, remote):
            log.info(f"reap: Incus project storlab-{orphan} on {remote or 'this host'}: its lab directory is gone")
            sub = remove_lab(remote, orphan)
            rep.removed += sub.removed
            rep.failed += sub.failed
