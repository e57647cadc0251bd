#!/usr/bin/env bash
# Stop the daemons ci/setup-host.sh started by hand (recorded in /run/storlab-daemons).
set -u
[ -f /run/storlab-daemons ] || exit 0
while read -r name pidfile; do
  pid=$(cat "$pidfile" 2>/dev/null)
  # without its pid file, libvirtd/virtlogd are found by name (one of each per host); never an sshd
  [ -z "$pid" ] && [ "$name" != sshd ] && pid=$(pgrep -xo "$name")
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
done < /run/storlab-daemons
rm -f /run/storlab-daemons
