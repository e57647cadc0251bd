#!/usr/bin/env bash
# Labs on demand: prepare this host and serve a class from the web (a warm pool of labs, the
# instructor's and the join link printed).   sudo bash ci/serve.sh [storlab serve options]
# Default: class `demo`, topology gluster-3, 2 labs kept ready, 10 seats, 2 h a seat, on this
# host's loopback (127.0.0.1:8080). Students who may not be root on this host need an isolating
# provider (the default: the topology's provider must isolate, else `--provider vagrant`);
# `--trusted-students` runs the labs as LXC containers (a demo, or students who are this host's admins).
# Stop with Ctrl-C: the labs stay and a new start re-attaches to them; end the class (every lab
# removed, every link revoked) with `storlab serve end demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
flags=(--class)
[[ " $* " == *" --provider vagrant "* ]] && flags+=(--vm)
bash ci/setup-host.sh "${flags[@]}"
args=("$@")
[[ " $* " == *" --class "* ]] || args+=(--class demo --topology gluster-3 --warm 2 --seats 10 --lease 2h)
exec storlab serve "${args[@]}"
