"""NFS-Ganesha's configuration by the version that reads it: 5.0 and later set PR_SET_IO_FLUSHER at
start and stop (FATAL, exit 2) when the kernel refuses it, which it does in a container (EPERM: it
needs CAP_SYS_RESOURCE of the host's namespace), unless `allow_set_io_flusher_fail` says go on; 4.x
does not know that setting. The rendered ganesha.conf carries it for the version the node's release
brings (`up`) or the version installed (after `storlab upgrade`)."""

from __future__ import annotations

from harness.backends.base import templates
from harness.backends.nfs.plan import NfsPlan
from harness.plan.model import Plan
from harness.spec import releases

_env = templates("harness.backends.nfs")


def major(version: str) -> int:
    """"6.5", "4.3-2", "1:6.5-5" -> 6 (0 when there is no number)."""
    digits = version.split(":", 1)[-1].split(".", 1)[0]
    return int(digits) if digits.isdigit() else 0


def conf(plan: Plan, section: NfsPlan, ganesha_major: int | None = None) -> str:
    """ganesha.conf for ``ganesha_major`` (default: what the server's release brings)."""
    if ganesha_major is None:
        ganesha_major = major(releases.of(plan.node(section.server).release).versions.get("nfs-ganesha", "0"))
    return _env.get_template("ganesha.conf.j2").render(plan=plan, nfs=section, io_flusher=ganesha_major >= 5)
