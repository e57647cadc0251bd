"""The client side of NFS pools. A dir pool on an NFS mount has its export mounted on its
hypervisor node by a systemd mount unit (enabled, so it is back after the node restarts, before
libvirtd autostarts the pool), plus one unit per trunk address (session trunking: the export
mounted once more over each further network of the server, after the first). A netfs pool's
mount is libvirt's, with the same options. Either is checked against what its pool asked for
(the version, nconnect, max_connect) as the kernel shows it in /proc/self/mountstats."""

from __future__ import annotations

import re

from harness.backends.base import LabContext, NodeView
from harness.backends.nfs.mountstats import NfsMount, Sh, mount_at
from harness.backends.nfs.plan import NfsHostPool
from harness.errors import HarnessError
from harness.host.pools import node_uri
from harness.host.virt import connect
from harness.plan.model import Plan, need
from harness.run import succeed

UNIT_DIR = "/etc/systemd/system"
#: where the further mounts that make the client trunk go on a node (one directory per pool and network)
TRUNK_ROOT = "/run/storlab/nfstrunk"
#: what storlab's own mounts always carry: a lab's exported files run nothing and open no device here
SAFE = ("nosuid", "nodev", "noexec")


def unit_name(path: str) -> str:
    """The mount unit systemd expects for ``path`` (`systemd-escape --path --suffix=mount`)."""
    inner = "/".join(p for p in path.split("/") if p)
    if not inner:
        return "-.mount"

    def esc(i: int, ch: str) -> str:
        if ch == "/":
            return "-"
        if ch.isascii() and (ch.isalnum() or ch in ":_" or (ch == "." and i > 0)):
            return ch
        return "".join(f"\\x{b:02x}" for b in ch.encode())
    return "".join(esc(i, ch) for i, ch in enumerate(inner)) + ".mount"


def mount_options(pool: NfsHostPool) -> tuple[str, ...]:
    """What storlab mounts a dir pool's export with (libvirt's netfs mount takes the same:
    nodev,nosuid,noexec of its own, nfsvers= from <protocol ver>, the rest from <fs:mount_opts>)."""
    return (*SAFE, *([f"vers={pool.version}"] if pool.version else []), *pool.client_opts)


def mounts_of(pool: NfsHostPool) -> list[tuple[str, str]]:
    """(source, mount point) of each mount a dir pool needs: the export over the server's first
    address at the pool's path, then once more over each trunk address."""
    export = need(pool.export, f"pool {pool.name}: export")
    first = (f"{need(pool.server, f'pool {pool.name}: server')}:{export}", need(pool.path, f"pool {pool.name}: path"))
    return [first] + [(f"{addr}:{export}", f"{TRUNK_ROOT}/{pool.name}.{i + 1}") for i, addr in enumerate(pool.trunk)]


def _plain(value: str) -> str:
    """A value written into a unit file: one line, and no % (systemd's specifiers) or backslash."""
    if not re.fullmatch(r"[A-Za-z0-9_.:/@+=,-]+", value):
        raise HarnessError(f"{value[:40]!r} would reach a systemd unit with characters storlab does not pass on "
                           "(validation should have stopped it)")
    return value


def unit_text(lab: str, pool: NfsHostPool, source: str, where: str, after: str | None = None) -> str:
    """A mount unit; ``after``: the unit of the pool's first mount (a trunk mount follows it).
    NFSv3 locks go through rpc.statd (qemu locks a VM's image): a v3 mount pulls it in first; the
    pool's libvirtd starts after every mount."""
    deps = ["network-online.target"] + (["rpc-statd.service"] if pool.version == "3" else []) + ([after] if after else [])
    lines = [f"# storlab lab {_plain(lab)}: pool {_plain(pool.name)}, a dir pool on an NFS mount (managed file)",
             "[Unit]", f"Description=storlab: {_plain(source)} for pool {_plain(pool.name)}",
             f"Wants={' '.join(deps[:-1] if after else deps)}", f"After={' '.join(deps)}"]
    lines += [f"Requires={after}"] if after else []
    lines += ["Before=libvirtd.service", "", "[Mount]", f"What={_plain(source)}", f"Where={_plain(where)}", "Type=nfs",
              f"Options={_plain(','.join(mount_options(pool)))}", "TimeoutSec=120", "",
              "[Install]", "WantedBy=remote-fs.target", ""]
    return "\n".join(lines)


def units(lab: str, pool: NfsHostPool) -> dict[str, str]:
    """Unit name -> content, the first mount first."""
    out: dict[str, str] = {}
    first: str | None = None
    for source, where in mounts_of(pool):
        name = unit_name(where)
        out[name] = unit_text(lab, pool, source, where, first)
        first = first or name
    return out


def render(plan: Plan) -> dict[str, str]:
    """The mount units of every dir pool on an NFS mount, on its node (`storlab plan` shows them)."""
    return {f"nodes/{p.host}/{UNIT_DIR.lstrip('/')}/{name}": text
            for p in plan.host.pools if isinstance(p, NfsHostPool) and p.type == "dir"
            for name, text in units(plan.lab, p).items()}


# -- on the node ----------------------------------------------------------------------------
def mount_dir_pool(lab: LabContext, pool: NfsHostPool) -> None:
    """The pool's units (as the plan rendered them) written, enabled and started (a unit whose
    options changed is stopped first: NFS takes no new vers= or nconnect= on a remount), then the
    mount checked."""
    node = lab.node(pool.host)
    rendered = lab.files(pool.host) / UNIT_DIR.lstrip("/")
    want = {name: (rendered / name).read_text() for name in units(lab.name, pool)}
    changed = [name for name, text in want.items() if node.ensure_file(f"{UNIT_DIR}/{name}", text)]
    if changed:  # a unit never started before has nothing to stop (and fails to): what is left is checked below
        node.run(["systemctl", "stop", *reversed(want)], timeout=180)
    node.enable_units(list(want), timeout=180)
    verify(node.succeed, pool)


def unmount_dir_pool(node: NodeView, lab: str, pool: NfsHostPool) -> None:
    """The pool's units stopped (the export unmounted), disabled and removed."""
    names = list(reversed(units(lab, pool)))
    node.succeed(["systemctl", "disable", "--now", *names], timeout=180)
    node.succeed(["rm", "-f", "--", *(f"{UNIT_DIR}/{n}" for n in names)], timeout=30)
    node.succeed(["systemctl", "daemon-reload"], timeout=120)


def mismatches(mount: NfsMount | None, pool: NfsHostPool) -> list[str]:
    """How the mount at the pool's path differs from what the pool asked for (empty: it does not)."""
    if mount is None:
        return [f"no NFS mount at {pool.path}"]
    out = []
    if mount.device != f"{pool.server}:{pool.export}":
        out.append(f"{mount.device} is mounted there, not {pool.server}:{pool.export}")
    if pool.version and mount.version != pool.version:
        out.append(f"NFS version {mount.version}, not {pool.version}")
    if mount.nconnect != pool.connections:
        out.append(f"nconnect={mount.nconnect}, not {pool.connections}")
    if pool.trunk and mount.max_connect != 1 + len(pool.trunk):
        out.append(f"max_connect={mount.max_connect}, not {1 + len(pool.trunk)}")
    return out


def verify(sh: Sh, pool: NfsHostPool) -> NfsMount:
    """The pool's mount as the kernel has it, or a HarnessError saying how it differs."""
    mount = mount_at(sh, need(pool.path, f"pool {pool.name}: path"))
    wrong = mismatches(mount, pool)
    if wrong or mount is None:
        raise HarnessError(f"pool {pool.name} on {pool.host}: {'; '.join(wrong)} (/proc/self/mountstats)")
    return mount


# -- a running lab taking new client options (matrix cells) ---------------------------------------
def _options(p: NfsHostPool) -> tuple[object, ...]:
    return p.version, p.nconnect, p.trunk, p.client_opts, p.mount_opts, p.protocol_ver


def _describe(p: NfsHostPool) -> str:
    return (f"NFS {p.version or '(negotiated)'}, nconnect {p.connections}"
            + (f", trunk over {', '.join(p.trunk)}" if p.trunk else ""))


def reconfigure(lab: LabContext, before: Plan) -> list[str]:
    """Remount each pool on nfs whose client options changed, and check the new mount: a netfs
    pool is stopped (libvirt unmounts it), defined again from its new XML and started; a dir
    pool's units are replaced. Its volumes stay on the export. Returns what changed."""
    old = {p.name: p for p in before.host.pools if isinstance(p, NfsHostPool)}
    changes = []
    for p in lab.plan.host.pools:
        was = old.get(p.name)
        if not isinstance(p, NfsHostPool) or was is None or _options(was) == _options(p):
            continue
        if (was.type, was.host, was.export, was.path) != (p.type, p.host, p.export, p.path):
            raise HarnessError(f"pool {p.name} changed more than its client options; a new lab is needed")
        if p.type == "netfs":
            _redefine(lab, p)
        else:
            unmount_dir_pool(lab.node(p.host), lab.name, was)
            mount_dir_pool(lab, p)
        changes.append(f"pool {p.name}: {_describe(was)} -> {_describe(p)}")
    return changes


def _redefine(lab: LabContext, p: NfsHostPool) -> None:
    import libvirt
    kvm = p.host == "kvm"
    conn = connect(lab.plan.host.uri if kvm else node_uri(lab, p.host))
    try:
        pool = conn.storagePoolLookupByName(p.object)
        if pool.isActive():
            pool.destroy()  # libvirt unmounts the export
        pool.undefine()
        pool = conn.storagePoolDefineXML((lab.files("host" if kvm else p.host) / "pools" / f"{p.name}.xml").read_text(), 0)
        pool.create(0)  # mounted with the new options
        pool.setAutostart(1)
    except libvirt.libvirtError as exc:
        raise HarnessError(f"pool {p.name}: remounting with new client options: {exc}") from None
    finally:
        conn.close()
    verify(succeed if kvm else lab.node(p.host).succeed, p)
