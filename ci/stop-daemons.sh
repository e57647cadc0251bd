#!/usr/bin/env bash
# Stop the daemons ci/setup-host.sh started by hand (recorded in /run/storlab-daemons).
set -u
# storlab's firewall table for lab bridges (harness/host/firewall.py), made by the first lab
command -v nft >/dev/null && nft delete table inet storlab 2>/dev/null
[ -f /run/storlab-daemons ] || exit 0
while read -r name pidfile; do
  pid=$(cat "$pidfile" 2>/dev/null)
  # without its pid file, libvirtd/virtlogd are found by name (one of each per host); never an sshd
  [ -z "$pid" ] && [ "$name" != sshd ] && pid=$(pgrep -xo "$name")
  # incusd: a clean shutdown stops instances and unmounts its storage pools (a kill leaves them)
  [ "$name" = incusd ] && [ -n "$pid" ] && timeout 120 incus admin shutdown >/dev/null 2>&1
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  if [ "$name" = incusd ]; then  # the storlab pool's loop device, left attached after the unmount
    for f in /var/lib/incus/disks/*.img; do
      [ -e "$f" ] && losetup -j "$f" | cut -d: -f1 | xargs -r -n1 losetup -d
    done
  fi
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
done < /run/storlab-daemons
rm -f /run/storlab-daemons
