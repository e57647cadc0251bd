#!/usr/bin/env bash
# Prepare this host and run the whole test suite: unit tests, then the real lab tests
# (LXC provider), then the VM lab tests on vagrant-libvirt unless STORLAB_SKIP_VM=1.
#   sudo bash ci/test.sh [extra pytest args]
# Leaves nothing running: labs are torn down, orphans reaped, daemons this script
# started are stopped.
set -uo pipefail
cd "$(dirname "$0")/.."
vm_flag=(--vm)
[ "${STORLAB_SKIP_VM:-0}" = 1 ] && vm_flag=()
bash ci/setup-host.sh "${vm_flag[@]}" || exit 1
trap 'storlab reap >/dev/null 2>&1; bash ci/stop-daemons.sh' EXIT

rc=0
echo "== unit tests and LXC lab tests"
python3 -m pytest tests -m "not vm" "$@" || rc=$?
if [ "${#vm_flag[@]}" -gt 0 ]; then
  echo "== VM lab tests (vagrant-libvirt, $(python3 -c 'from harness.hostfacts import kvm_status; print("kvm" if kvm_status()[0] else "tcg")'))"
  python3 -m pytest tests/lab -m vm "$@" || rc=$?
fi
exit $rc
