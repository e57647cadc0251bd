#!/usr/bin/env bash
# The main job: prepare this host and bring a lab up.   sudo bash ci/up.sh [TOPOLOGY] [storlab up options]
# Default topology: topologies/gluster-3.yaml. Afterwards: storlab ssh LAB NODE / storlab down LAB.
set -euo pipefail
cd "$(dirname "$0")/.."
topology="${1:-topologies/gluster-3.yaml}"
[ $# -gt 0 ] && shift
vm=()
if grep -qE '^provider:\s*vagrant' "$topology" || [[ " $* " == *" --provider vagrant "* ]]; then vm=(--vm); fi
bash ci/setup-host.sh "${vm[@]}"
storlab validate "$topology"
exec storlab up "$topology" "$@"
