#!/usr/bin/env bash
# Prepare this host and run the whole test suite:
#   1. unit tests and every lab test on the fast provider (LXC system containers);
#   2. on vagrant-libvirt VMs (KVM where usable, else TCG): the VM-only tests (-m vm) and the
#      gluster, NFS (kernel nfsd) and iSCSI (LIO) tests again. STORLAB_SKIP_VM=1 skips 2.
#   sudo bash ci/test.sh [extra pytest args]
# Leaves nothing running: labs are torn down, orphans reaped, daemons this script started stopped.
set -uo pipefail
cd "$(dirname "$0")/.."
vm_flag=(--vm)
[ "${STORLAB_SKIP_VM:-0}" = 1 ] && vm_flag=()
t0=$SECONDS
bash ci/setup-host.sh "${vm_flag[@]}" || exit 1
trap 'storlab reap >/dev/null 2>&1; bash ci/stop-daemons.sh' EXIT
echo "== host set up in $((SECONDS - t0))s"

rc=0
t=$SECONDS
echo "== unit tests and lab tests on LXC"
python3 -m pytest tests -m "not vm" "$@" || rc=$?
echo "== LXC part: $((SECONDS - t))s"
if [ "${#vm_flag[@]}" -gt 0 ]; then
  t=$SECONDS
  echo "== lab tests on vagrant-libvirt VMs ($(python3 -c 'from harness.hostfacts import kvm_status; print("kvm" if kvm_status()[0] else "tcg")'))"
  python3 -m pytest tests/lab -m vm "$@" || rc=$?
  python3 -m pytest tests/lab/test_gluster_failover.py tests/lab/test_nfs.py tests/lab/test_iscsi.py \
    --lab-provider vagrant "$@" || rc=$?
  echo "== VM part: $((SECONDS - t))s"
fi
echo "== total $((SECONDS - t0))s"
exit $rc
