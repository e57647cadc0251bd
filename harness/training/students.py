"""One student's lab brought up for a class: the student's key, the lab, its baseline snapshot."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

from harness import paths
from harness.errors import HarnessError
from harness.lab.lab import BASELINE, Lab
from harness.run import succeed
from harness.training import handout
from harness.training.klass import Klass, lab_name


def bring_up(k: Klass, student: str, topology: str, provider: str | None, expire: float | None,
             progress: Callable[[str], None], t0: float) -> float:
    """``student``'s lab of class ``k`` up, as `storlab up` would make it; its time in seconds."""
    name, remote, budget = k.name, k.remote, k.budget
    hd = paths.private_dir(handout.handouts_dir(k.dir) / student)  # handouts/ itself 0700 too
    key = hd / "id_ed25519"
    if not key.exists():
        succeed(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"storlab-{name}-{student}", "-f", str(key)],
                timeout=30)
    argv = [sys.executable, "-m", "harness.cli", "up", topology, "--name", lab_name(name, student),
            "--authorize", str(key.with_suffix(".pub"))]
    argv += ["--on", f"incus:{remote}"] if remote else (["--provider", provider] if provider else [])
    argv += ["--budget", budget] if budget else []
    argv += [] if k.trusted else ["--untrusted"]
    argv += ["--for-class", k.id] if k.id else []
    argv += ["--expire", f"{int(expire)}s"] if expire else []
    s0 = time.monotonic()
    progress(f"  {student}: up ... ({time.monotonic() - t0:.0f}s)")
    with open(k.dir / "logs" / f"{student}-up.log", "w") as fh:
        res = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, timeout=7200, check=False)
    if res.returncode == 0 and BASELINE not in Lab.load(lab_name(name, student)).snapshots():
        Lab.load(lab_name(name, student)).snapshot(BASELINE)  # VM labs: reset needs it
    took = time.monotonic() - s0
    if res.returncode != 0:
        raise HarnessError(f"up failed after {took:.0f}s (log {k.dir / 'logs' / f'{student}-up.log'})")
    progress(f"  {student}: lab {lab_name(name, student)} up in {took:.0f}s ({time.monotonic() - t0:.0f}s)")
    return took
