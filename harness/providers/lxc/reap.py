"""Where this home's LXC containers live, whose each one is (its ownership mark), and the sweep of
containers whose lab directory is gone."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from harness import paths
from harness.errors import CleanupReport
from harness.run import run

#: in each container directory: the lab it belongs to (names alone are ambiguous)
OWNER_FILE = "storlab-lab"


def owner_of(cdir: Path) -> str | None:
    """The lab a container directory belongs to, by its ownership mark (None: not storlab's).
    Containers made before the mark existed carry the lab in their config's first line, which
    storlab writes: `# storlab lab LAB, node NODE`."""
    try:
        return (cdir / OWNER_FILE).read_text().strip() or None
    except OSError:
        pass
    try:
        with open(cdir / "config") as fh:
            m = re.fullmatch(r"# storlab lab ([a-z][a-z0-9-]{0,30}), node [a-z][a-z0-9-]{0,30}\n", fh.readline())
    except OSError:
        return None
    return m.group(1) if m else None


def lxcpath() -> Path:
    return paths.home() / "lxc"


def reap_orphans(labs: set[str], rep: CleanupReport) -> None:
    """Stop and remove this home's containers (they live under its lxcpath) whose lab is not in ``labs``."""
    if not lxcpath().is_dir():
        return
    for c in lxcpath().iterdir():
        owner = owner_of(c)
        if c.name.startswith("storlab-") and owner is not None and owner not in labs:
            run(["lxc-stop", "-k", "-P", str(lxcpath()), "-n", c.name], timeout=60)
            shutil.rmtree(c, ignore_errors=True)
            rep.removed.append(f"orphan container {c.name}")
