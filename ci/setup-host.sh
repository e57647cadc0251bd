#!/usr/bin/env bash
# Prepare this host for storlab: Debian packages, the Python package, and the daemons it
# needs (started by hand where systemd is not PID 1). Idempotent; run as root.
#   ci/setup-host.sh          host for the lxc provider (the fast path) + libvirt pools
#   ci/setup-host.sh --vm     also vagrant, vagrant-libvirt and qemu (the VM provider)
#   ci/setup-host.sh --class  also OpenSSH server and storlab's jump sshd (training classes:
#                             students reach their nodes through it; port 2222)
#   ci/setup-host.sh --incus  also Incus 6.0 LTS from bookworm-backports (the incus provider):
#                             incusd started by hand where systemd is not PID 1, and the
#                             storage pool `storlab` (btrfs on a loop file where the kernel has
#                             btrfs, else dir; STORLAB_INCUS_POOL_SIZE, default 60GiB)
#   ci/setup-host.sh --gfapi-fix  also preload ci/gfapi's fix of libgfapi 10.3's 10 s glfs_fini into a
#                             libvirtd systemd runs (a drop-in); a libvirtd this script starts itself
#                             gets it anyway (STORLAB_GFAPI_FIX=0: never)
#   ci/setup-host.sh --web    also Debian's chromium and chromium-driver (the browser tests of
#                             `storlab serve`; the service itself needs neither)
# (flags combine: --vm --class --incus --web)
set -euo pipefail
cd "$(dirname "$0")/.."
VM=0
CLASS=0
INCUS=0
WEB=0
GFAPI_FIX=0
for arg in "$@"; do
  case "$arg" in
    --vm) VM=1 ;;
    --class) CLASS=1 ;;
    --incus) INCUS=1 ;;
    --web) WEB=1 ;;
    --gfapi-fix) GFAPI_FIX=1 ;;
    *) echo "setup-host.sh: unknown option $arg (use --vm, --class, --incus, --web, --gfapi-fix)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "setup-host.sh: run as root (it installs packages and starts libvirtd)" >&2; exit 1; }

PKGS=(lxc mmdebstrap iproute2 nftables rsync openssh-client xfsprogs e2fsprogs util-linux
      libvirt-daemon libvirt-daemon-system libvirt-clients libvirt-dev pkg-config gcc
      libvirt-daemon-driver-storage-gluster libvirt-daemon-driver-storage-rbd
      libvirt-daemon-driver-storage-iscsi-direct glusterfs-client qemu-utils
      libnfs-utils libiscsi-bin qemu-block-extra)
[ "$VM" = 1 ] && PKGS+=(vagrant vagrant-libvirt qemu-system-x86 qemu-utils ovmf)
[ "$CLASS" = 1 ] && PKGS+=(openssh-server openssl)
[ "$WEB" = 1 ] && PKGS+=(chromium chromium-driver)  # openssl: a remote class's Incus client certificate
# a KVM host whose kernel has an NFS client / iscsi_tcp wires netfs / iscsi pools itself
# (validation reads the same facts); hosts without them (e.g. this project's CI) skip this
modprobe -q nfs 2>/dev/null || true
modprobe -q iscsi_tcp 2>/dev/null || true
grep -qw nfs4 /proc/filesystems && PKGS+=(nfs-common)
[ -d /sys/module/iscsi_tcp ] && PKGS+=(open-iscsi)

if [ "$INCUS" = 1 ]; then
  # Incus 6.0 LTS is in bookworm-backports, on the same mirror as the host's own suites
  PKGS+=(btrfs-progs)
  incus_missing=()
  for p in incus-base incus-client; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || incus_missing+=("$p")
  done
  if [ "${#incus_missing[@]}" -gt 0 ]; then
    if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
      mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null)
      [ -n "$mirror" ] || mirror=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
      [ -n "$mirror" ] || { echo "setup-host: no Debian mirror found for bookworm-backports" >&2; exit 1; }
      printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$mirror" > /etc/apt/sources.list.d/storlab-backports.sources
    fi
    echo "setup-host: installing ${incus_missing[*]} (bookworm-backports)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -t bookworm-backports \
      "${incus_missing[@]}" >/var/log/storlab-apt-incus.log 2>&1 || { tail -20 /var/log/storlab-apt-incus.log; exit 1; }
  fi
fi

missing=()
for p in "${PKGS[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
new_storage_drivers=0
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup-host: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/var/log/storlab-apt.log 2>&1 \
    || { tail -20 /var/log/storlab-apt.log; exit 1; }
  # only new libvirt drivers need a libvirtd restart (installing vagrant/qemu for --vm does not)
  case " ${missing[*]} " in *" libvirt-daemon"*) new_storage_drivers=1 ;; esac
fi

# libgfapi 10.3's glfs_fini waits up to 10 s for a timer it cannot cancel (gluster#2606): every start or
# refresh of a native gluster pool pays it in libvirtd. ci/gfapi/gfcancel.c cancels it; built against
# the same version's headers, for 10.3 only (ci/gfapi/build.sh prints nothing elsewhere)
gfapi_shim=""
if [ "${STORLAB_GFAPI_FIX:-1}" != 0 ] && [[ "$(dpkg-query -W -f='${Version}' libglusterfs0 2>/dev/null)" == 10.3-* ]]; then
  dev=()
  for p in libglusterfs-dev liburcu-dev gcc; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || dev+=("$p"); done
  if [ "${#dev[@]}" -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${dev[@]}" >>/var/log/storlab-apt.log 2>&1 || true
  fi
  gfapi_shim=$(bash ci/gfapi/build.sh 2>>/var/log/storlab-gfapi.log) || gfapi_shim=""
fi

# storlab must be installed from this checkout (not another one), with its provider entry points
# (an older install lacks them) and its command; checked from / so that this directory's own
# harness/ and storlab.egg-info cannot answer for an install
here=$(pwd)
command -v storlab >/dev/null && (cd / && python3 -c "
import os, sys, harness, libvirt, testinfra, vagrant, fabric, ruff, mypy, fastapi, uvicorn, python_multipart, selenium, httpx
from harness.providers.capabilities import available
assert available() and os.path.dirname(os.path.dirname(os.path.abspath(harness.__file__))) == sys.argv[1]
" "$here") 2>/dev/null \
  || { echo "setup-host: pip install -e ."; pip install -q -e '.[dev]' >/var/log/storlab-pip.log 2>&1 || { tail -20 /var/log/storlab-pip.log; exit 1; }; }

# libvirt without systemd: root-owned images and kernels, daemons started by hand.
conf=/etc/libvirt/qemu.conf
grep -q '^user = "root"' "$conf" || { echo 'user = "root"' >> "$conf"; new_storage_drivers=1; }
grep -q '^group = "root"' "$conf" || { echo 'group = "root"' >> "$conf"; new_storage_drivers=1; }
if [ "$new_storage_drivers" = 1 ] && [ -f /run/libvirtd.pid ] && kill -0 "$(cat /run/libvirtd.pid)" 2>/dev/null; then
  # a libvirtd started before the rbd/gluster/iscsi-direct drivers were installed does not know them
  kill "$(cat /run/libvirtd.pid)"; for _ in $(seq 50); do kill -0 "$(cat /run/libvirtd.pid 2>/dev/null)" 2>/dev/null || break; sleep 0.1; done
fi
if [ "$(cat /proc/1/comm)" != systemd ]; then
  # record what we start, so ci/stop-daemons.sh stops exactly that
  if ! pgrep -x virtlogd >/dev/null; then virtlogd -d; echo "virtlogd /run/virtlogd.pid" >> /run/storlab-daemons; fi
  running=0
  [ -f /run/libvirtd.pid ] && kill -0 "$(cat /run/libvirtd.pid)" 2>/dev/null && running=1
  if [ "$running" = 1 ] && [ -n "$gfapi_shim" ] && grep -qs "^libvirtd " /run/storlab-daemons \
     && ! grep -qs libgfcancel "/proc/$(cat /run/libvirtd.pid)/maps"; then
    # ours, started without the fix: once more with it (pools and domains outlive a libvirtd restart)
    pid=$(cat /run/libvirtd.pid); kill "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    running=0
  fi
  if [ "$running" = 0 ]; then
    if [ -n "$gfapi_shim" ]; then LD_PRELOAD=$gfapi_shim libvirtd -d; else libvirtd -d; fi
    grep -qs "^libvirtd " /run/storlab-daemons || echo "libvirtd /run/libvirtd.pid" >> /run/storlab-daemons
  fi
else
  if [ "$GFAPI_FIX" = 1 ] && [ -n "$gfapi_shim" ]; then
    mkdir -p /etc/systemd/system/libvirtd.service.d
    printf '[Service]\nEnvironment=LD_PRELOAD=%s\n' "$gfapi_shim" > /etc/systemd/system/libvirtd.service.d/storlab-gfapi.conf
    systemctl daemon-reload
    systemctl restart libvirtd
  fi
  systemctl start virtlogd libvirtd
fi
[ -n "$gfapi_shim" ] && pid=$(cat /run/libvirtd.pid 2>/dev/null) && grep -qs libgfcancel "/proc/$pid/maps" \
  && echo "setup-host: libvirtd runs with $gfapi_shim (native gluster pools: no 10 s glfs_fini wait)"
for _ in $(seq 100); do virsh -c qemu:///system pool-list >/dev/null 2>&1 && break; sleep 0.1; done
virsh -c qemu:///system pool-list >/dev/null || { echo "setup-host: libvirtd does not answer" >&2; exit 1; }
[ -e /dev/fuse ] || { echo "setup-host: /dev/fuse missing (gluster FUSE mounts need it)" >&2; exit 1; }
if [ "$VM" = 1 ]; then
  VAGRANT_CHECKPOINT_DISABLE=1 vagrant plugin list 2>/dev/null | grep -q '^vagrant-libvirt' \
    || { echo "setup-host: vagrant does not load the vagrant-libvirt plugin" >&2; exit 1; }
fi
if [ "$CLASS" = 1 ]; then
  # many system containers on one host (LXC's and Incus's production settings): every container's
  # systemd takes ~10 inotify instances, and at the default 128 a class died from about its 13th
  # container ("Failed to create control group inotify object: Too many open files"); only raised
  for kv in fs.inotify.max_user_instances=8192 fs.inotify.max_user_watches=1048576 \
            fs.inotify.max_queued_events=1048576 kernel.keys.maxkeys=2000 kernel.keys.maxbytes=2000000; do
    key=${kv%%=*}; want=${kv#*=}
    have=$(sysctl -n "$key" 2>/dev/null || echo 0)
    if [ "$have" -lt "$want" ]; then sysctl -qw "$key=$want" || echo "setup-host: could not raise $key to $want" >&2; fi
  done
  # storlab's own sshd (config, host key and pid file under STORLAB_HOME/jump), not the host's
  jump_pid="${STORLAB_HOME:-/var/lib/storlab}/jump/sshd.pid"
  running_before=0
  [ -f "$jump_pid" ] && kill -0 "$(cat "$jump_pid")" 2>/dev/null && running_before=1
  storlab class jump-setup
  [ "$running_before" = 0 ] && echo "sshd $jump_pid" >> /run/storlab-daemons
fi
if [ "$INCUS" = 1 ]; then
  if ! incus query /1.0 >/dev/null 2>&1; then
    if [ "$(cat /proc/1/comm)" != systemd ]; then
      mkdir -p /var/log/incus
      PATH=/usr/libexec/incus:$PATH setsid /usr/libexec/incus/incusd --group incus-admin \
        --logfile /var/log/incus/incus.log </dev/null >/dev/null 2>&1 &
      echo $! > /run/storlab-incusd.pid
      echo "incusd /run/storlab-incusd.pid" >> /run/storlab-daemons
    else
      systemctl start incus.socket incus.service
    fi
    /usr/libexec/incus/incusd waitready --timeout=60 || { tail -20 /var/log/incus/incus.log; exit 1; }
  fi
  if ! incus storage show storlab >/dev/null 2>&1; then
    if grep -qw btrfs /proc/filesystems && command -v mkfs.btrfs >/dev/null; then
      # btrfs: instances and snapshots are copy-on-write subvolumes (0.1 s per node, not a 1.4 GiB copy)
      incus storage create storlab btrfs size="${STORLAB_INCUS_POOL_SIZE:-60GiB}" >/dev/null
    else
      incus storage create storlab dir >/dev/null
    fi
  fi
fi
pool_driver=""
[ "$INCUS" = 1 ] && pool_driver=", incus $(incus version | awk '/Server/ {print $NF}'), pool storlab: $(incus query /1.0/storage-pools/storlab \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["driver"])')"
echo "setup-host: ready (libvirtd $(libvirtd --version | awk "{print \$NF}"), lxc $(lxc-start --version)$pool_driver)"
