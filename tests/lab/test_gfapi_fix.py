"""ci/gfapi's fix of libgfapi 10.3's glfs_fini, against a real replica-3 volume: a gfapi client
(the host's libgfapi, as libvirtd's gluster pools use it) connects, lists the volume and finishes;
without the fix glfs_fini waits for the rpc call_bail timer (up to 10 s), with it the client is done
at once and saw the same volume; libvirtd (as ci/setup-host.sh starts it) has the fix, and a refresh
of the lab's native gluster pool no longer pays the wait."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.backends.gluster import planned
from harness.host.virt import connect
from harness.lab.lab import Lab

pytestmark = pytest.mark.topology("gluster-3.yaml")
BUILD = Path(__file__).resolve().parents[2] / "ci" / "gfapi" / "build.sh"

#: a libgfapi client through ctypes: init, stat of the volume's root, fini; each step's seconds
PROBE = r"""
import ctypes, json, sys, time
gf = ctypes.CDLL("libgfapi.so.0")
gf.glfs_new.restype = ctypes.c_void_p
gf.glfs_new.argtypes = [ctypes.c_char_p]
gf.glfs_set_volfile_server.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
gf.glfs_set_logging.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
gf.glfs_init.argtypes = [ctypes.c_void_p]
gf.glfs_fini.argtypes = [ctypes.c_void_p]
gf.glfs_access.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
fs = gf.glfs_new(sys.argv[1].encode())
gf.glfs_set_volfile_server(fs, b"tcp", sys.argv[2].encode(), 24007)
gf.glfs_set_logging(fs, b"/dev/null", 1)
t = time.monotonic(); rc = gf.glfs_init(fs); init = time.monotonic() - t
ok = gf.glfs_access(fs, b"/", 0) == 0
t = time.monotonic(); gf.glfs_fini(fs); fini = time.monotonic() - t
print(json.dumps({"init_rc": rc, "root_ok": ok, "init": init, "fini": fini}))
"""


def shim() -> str:
    r = subprocess.run(["bash", str(BUILD)], capture_output=True, text=True, timeout=120, check=False)
    if r.returncode != 0:
        pytest.skip("ci/gfapi/build.sh builds the fix for libglusterfs0 10.3 only (with its -dev package): "
                    "not this host")
    return r.stdout.strip()


def probe(volume: str, server: str, preload: str | None) -> dict[str, float]:
    import json
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    if preload:
        env["LD_PRELOAD"] = preload
    r = subprocess.run([sys.executable, "-c", PROBE, volume, server], capture_output=True, text=True, timeout=120,
                       env=env, check=True)
    out: dict[str, float] = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["init_rc"] == 0 and out["root_ok"], f"the gfapi client did not reach volume {volume}: {out}"
    return out


def test_glfs_fini_waits_without_the_fix_and_not_with_it(lab: Lab) -> None:
    lib = shim()
    vol = planned(lab.plan).volumes[0]
    server = lab.node(vol.nodes[0]).address
    without = probe(vol.name, server, None)
    fixed = [probe(vol.name, server, lib) for _ in range(3)]
    print(f"glfs_fini: {without['fini']:.2f}s without the fix, {[round(f['fini'], 2) for f in fixed]} with it")
    # the wait is the call_bail timer's first firing, 10 s after the connection: at least a few s
    assert without["fini"] > 3, f"glfs_fini took {without['fini']:.2f}s without the fix: the 10 s wait is gone?"
    assert max(f["fini"] for f in fixed) < 2.5, f"glfs_fini with the fix: {fixed}"


def test_libvirtd_has_the_fix_and_the_native_pool_refreshes_at_once(lab: Lab) -> None:
    lib = shim()
    pid = Path("/run/libvirtd.pid")
    if not pid.exists():
        pytest.skip("libvirtd was not started by ci/setup-host.sh (systemd: --gfapi-fix adds a drop-in)")
    maps = Path(f"/proc/{pid.read_text().strip()}/maps").read_text()
    assert lib in maps, f"libvirtd runs without {lib}: run `bash ci/setup-host.sh` (it restarts its own libvirtd)"
    pool = next(p for p in lab.plan.host.pools if p.type == "gluster" and p.host == "kvm")
    conn = connect(lab.plan.host.uri)
    try:
        obj = conn.storagePoolLookupByName(pool.object)
        took = []
        for _ in range(3):
            t = time.monotonic()
            obj.refresh(0)
            took.append(time.monotonic() - t)
        assert obj.listVolumes() is not None
    finally:
        conn.close()
    print(f"native gluster pool refresh: {[round(x, 2) for x in took]} s")
    assert max(took) < 2.5, f"refreshes of {pool.object} took {took}: the glfs_fini wait is back"
