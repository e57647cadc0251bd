#!/usr/bin/env bash
# Build / remove a multi-member Incus cluster on this one machine.
#
#   bash ci/incus-cluster.sh up [N]   # N members m1..mN (default 2); idempotent
#   bash ci/incus-cluster.sh down     # remove everything `up` created; never stops half-way
#   bash ci/incus-cluster.sh status   # member daemons + `incus cluster list storlab-cluster:`
#
# Layout (follows lxc/incus test/includes/clustering.sh, minus its NAT/ip_forward part):
#   - host bridge slcl0, 10.251.0.1/24, MTU 9000: the members' segment. Member mK has
#     10.251.0.(10+K)/24 on its eth0 (veth slclKc on the host side), no default route, so
#     nothing can leave the machine. The host reaches the members directly on that /24.
#     Instance networks span members with Incus's own bridge tunnels over eth0 (this kernel
#     has VXLAN but no 802.1Q), e.g. per network:
#       tunnel.lab.protocol=vxlan tunnel.lab.group=239.0.0.1 tunnel.lab.id=<VNI>
#       tunnel.lab.interface=eth0 bridge.mtu=1500   (eth0's 9000 leaves room for VXLAN)
#   - netns slcl-mK (ip netns); the member's incusd runs in it under its own mount
#     namespace (unshare -m, private propagation) with a fresh sysfs for that netns and the
#     host's cgroup mounts moved under it, INCUS_DIR=/var/lib/storlab/incus-cluster/mK,
#     log mK.log, pid mK.pid. Mounts the member makes stay inside its mount namespace.
#   - cluster: members m1..mN (cluster.https_address = member address:8443), storage pool
#     `storlab` (dir, created per member with --target then finalised), empty default
#     profile, images.auto_update_interval=0 (no internet).
#   - host client: remote `storlab-cluster` -> https://10.251.0.11:8443, added with a trust
#     token issued by m1 (`incus remote add NAME URL --accept-certificate --token T`).
set -uo pipefail

STATE=/var/lib/storlab/incus-cluster
LOCK=/var/lib/storlab/locks/incus-cluster.lock
BR=slcl0
MTU=9000
NETPFX=10.251.0
HOST_IP=$NETPFX.1
PORT=8443
REMOTE=storlab-cluster
TRUST_NAME=storlab-host
POOL=storlab
# btrfs where the kernel has it (each custom volume its own filesystem, as Gluster bricks need:
# it refuses a brick on the root filesystem; copy-on-write instances), else dir
POOL_SIZE=${STORLAB_CLUSTER_POOL_SIZE:-20GiB}
if grep -qw btrfs /proc/filesystems && command -v mkfs.btrfs >/dev/null; then POOL_DRIVER=btrfs; else POOL_DRIVER=dir; fi
INCUSD=/usr/libexec/incus/incusd
MAX_MEMBERS=20
export PATH=/usr/libexec/incus:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

T0=$(date +%s%N)
now() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", (b-a)/1e9}'; }
log() { printf '[incus-cluster +%ss] %s\n' "$(secs "$T0" "$(now)")" "$*"; }
warn() { log "WARNING: $*" >&2; }

maddr() { echo "$NETPFX.$((10 + $1))"; }
mdir() { echo "$STATE/m$1"; }
mns() { echo "slcl-m$1"; }

# incus client talking to member K's own unix socket (host namespaces are fine for that).
minc() {
  local k=$1; shift
  INCUS_DIR=$(mdir "$k") timeout "${INCUS_TIMEOUT:-120}" incus --force-local "$@"
}
# incus client run inside member K's network namespace (needed for joining: the client
# fetches the cluster certificate from the addresses in the join token).
minc_ns() {
  local k=$1; shift
  INCUS_DIR=$(mdir "$k") timeout "${INCUS_TIMEOUT:-180}" \
    nsenter --net=/run/netns/"$(mns "$k")" incus --force-local "$@"
}

member_pid() {
  local pid
  pid=$(cat "$(mdir "$1").pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "incusd --logfile $(mdir "$1").log" || return 1
  echo "$pid"
}

show_member_log() {
  local k=$1 f
  for f in "$(mdir "$k").out" "$(mdir "$k").log"; do
    [ -s "$f" ] || continue
    echo "----- tail of $f -----" >&2
    tail -n 40 "$f" >&2
  done
}

die_member() {
  local k=$1; shift
  log "FAILED (m$k): $*" >&2
  show_member_log "$k"
  exit 1
}

take_lock() {
  mkdir -p "$(dirname "$LOCK")"
  exec 9>"$LOCK"
  if ! flock -w 300 9; then
    log "could not take $LOCK within 300 s (held by: $(fuser "$LOCK" 2>/dev/null))" >&2
    exit 1
  fi
}

# ---------------------------------------------------------------- host networking
ensure_bridge() { # name [cidr]
  local br=$1 cidr=${2:-}
  if ! ip link show "$br" >/dev/null 2>&1; then
    ip link add "$br" mtu "$MTU" type bridge || return 1
  fi
  if [ -n "$cidr" ] && ! ip -4 -o addr show dev "$br" | grep -q " ${cidr} "; then
    ip addr add "$cidr" dev "$br" || return 1
  fi
  ip link set "$br" up
}

# veth pair: host end slclKc on bridge slcl0, peer moved into netns slcl-mK as eth0
ensure_veth() { # k
  local k=$1 ns host
  ns=$(mns "$k"); host="slcl${k}c"
  if ! ip -n "$ns" link show eth0 >/dev/null 2>&1; then
    ip link del "$host" >/dev/null 2>&1
    ip link add "$host" mtu "$MTU" type veth peer name "${host}p" mtu "$MTU" || return 1
    ip link set "${host}p" netns "$ns" || return 1
    ip -n "$ns" link set "${host}p" name eth0 || return 1
  fi
  ip link set "$host" master "$BR" up || return 1
  ip -n "$ns" link set eth0 up
}

ensure_netns() { # k
  local k=$1 ns
  ns=$(mns "$k")
  if [ ! -e "/run/netns/$ns" ]; then
    if ! mountpoint -q /run/netns && [ ! -e "$STATE/.run-netns-created" ]; then
      touch "$STATE/.run-netns-created" # we are about to create the /run/netns mount
    fi
    ip netns add "$ns" || return 1
  fi
  ip -n "$ns" link set lo up || return 1
  ensure_veth "$k" || return 1
  ip -n "$ns" addr replace "$(maddr "$k")/24" dev eth0 || return 1
}

# ---------------------------------------------------------------- member daemons
# Runs inside the member's netns, as the first process of a new private mount namespace:
# swap in a sysfs of this netns (so incusd sees and can create its own interfaces), keep
# the host's cgroup (and similar) mounts underneath it, then become incusd.
# shellcheck disable=SC2016
MEMBER_INNER='
set -e
d="$SLCL_DIR"; old="$d/.oldsys"
mkdir -p "$old"
mount --make-rprivate /
mount --move /sys "$old"
mount -t sysfs sysfs /sys
for sub in fs/cgroup kernel/security kernel/debug kernel/tracing kernel/config fs/fuse/connections fs/bpf fs/pstore; do
  if mountpoint -q "$old/$sub" && [ -d "/sys/$sub" ]; then mount --move "$old/$sub" "/sys/$sub"; fi
done
umount -l "$old"
rmdir "$old" 2>/dev/null || true
# Drop the copies of all other host mounts (storage pools of other daemons, loop-backed
# filesystems, /run/netns entries, ...): a copy held here would keep such a filesystem
# alive after the host unmounts it.
awk "{print \$5}" /proc/self/mountinfo | sort -r | while read -r m; do
  case "$m" in
    /|/proc|/proc/*|/sys|/sys/*|/dev|/dev/*|/run|/run/lock|/run/shm|/tmp) ;;
    *) umount -l "$m" 2>/dev/null || true ;;
  esac
done
echo $$ >"$d.pid"
cd /
exec "$INCUSD" --logfile "$d.log"
'

start_member() { # k ; starts incusd if it is not running (does not wait)
  local k=$1 d
  d=$(mdir "$k")
  member_pid "$k" >/dev/null && return 0
  mkdir -p "$d"
  rm -f "$d.pid"
  echo "=== $(date -Is) start" >>"$d.out"
  (
    exec 9>&- # the lock fd must not live on in the daemon
    cd / || exit 1
    export SLCL_DIR="$d" INCUSD INCUS_DIR="$d"
    exec setsid nsenter --net=/run/netns/"$(mns "$k")" \
      unshare --mount --propagation private sh -c "$MEMBER_INNER"
  ) </dev/null >>"$d.out" 2>&1 &
  return 0
}

wait_member() { # k ; waits (max 90 s) until the member's API answers on its unix socket
  local k=$1 d t pid el
  d=$(mdir "$k"); t=$(now)
  while :; do
    el=$(( ($(now) - t) / 1000000000 ))
    pid=$(member_pid "$k") || pid=
    if [ -n "$pid" ] && INCUS_DIR="$d" timeout 5 "$INCUSD" waitready --timeout=2 >/dev/null 2>&1; then
      log "m$k: incusd ready (pid $pid, $(secs "$t" "$(now)") s)"
      return 0
    fi
    if [ -z "$pid" ] && { [ -e "$d.pid" ] || [ "$el" -ge 10 ]; }; then
      die_member "$k" "incusd exited during start-up (or its namespace set-up failed)"
    fi
    [ "$el" -ge 90 ] && die_member "$k" "incusd did not become ready within 90 s"
    sleep 0.5
  done
}

member_clustered() { # k -> true if the member's daemon has clustering enabled
  [ "$(minc "$1" query /1.0/cluster 2>/dev/null | jq -r .enabled 2>/dev/null)" = true ]
}

cluster_members() { # names of the cluster members as seen by m1
  minc 1 query '/1.0/cluster/members?recursion=1' 2>/dev/null | jq -r '.[].server_name'
}

bootstrap_m1() {
  local t f
  t=$(now)
  f=$(mdir 1)/preseed.yaml
  cat >"$f" <<EOF
config:
  core.https_address: $(maddr 1):$PORT
  cluster.https_address: $(maddr 1):$PORT
  images.auto_update_interval: "0"
cluster:
  server_name: m1
  enabled: true
EOF
  minc_ns 1 admin init --preseed <"$f" || die_member 1 "bootstrap (incus admin init --preseed) failed"
  log "m1: cluster bootstrapped ($(secs "$t" "$(now)") s)"
}

join_member() { # k
  local k=$1 t f token pools p
  t=$(now)
  f=$(mdir "$k")/preseed.yaml
  minc 1 cluster revoke-token "m$k" >/dev/null 2>&1
  token=$(minc 1 cluster add "m$k" --quiet) || die_member 1 "could not issue a join token for m$k"
  pools=$(minc 1 query '/1.0/storage-pools?recursion=1' 2>/dev/null | jq -r '.[] | select(.driver=="dir") | .name')
  {
    echo "cluster:"
    echo "  enabled: true"
    echo "  server_name: m$k"
    echo "  server_address: $(maddr "$k"):$PORT"
    echo "  cluster_token: $token"
    if [ -z "$pools" ]; then
      echo "  member_config: []"
    else
      echo "  member_config:"
      for p in $pools; do # a pool's member-specific keys: source (dir, btrfs) and size (btrfs loop file)
        printf '  - entity: storage-pool\n    name: %s\n    key: source\n    value: ""\n' "$p"
        [ "$POOL_DRIVER" = btrfs ] && printf '  - entity: storage-pool\n    name: %s\n    key: size\n    value: "%s"\n' "$p" "$POOL_SIZE"
      done
    fi
  } >"$f"
  minc_ns "$k" admin init --preseed <"$f" || return 1
  log "m$k: joined the cluster ($(secs "$t" "$(now)") s)"
}

reset_member() { # k ; kill a member that failed to join and wipe its state
  local k=$1
  kill_member_procs "$k"
  rm -rf "$(mdir "$k")" "$(mdir "$k").pid"
}

ensure_pool() {
  local n=$1 status k t
  t=$(now)
  status=$(minc 1 query "/1.0/storage-pools/$POOL" 2>/dev/null | jq -r .status 2>/dev/null)
  if [ "$status" = Created ]; then
    # pool exists; every member must have it (members joined later got it via member_config)
    return 0
  fi
  local per=()
  [ "$POOL_DRIVER" = btrfs ] && per=(size="$POOL_SIZE")
  for k in $(seq 1 "$n"); do
    minc 1 storage create "$POOL" "$POOL_DRIVER" "${per[@]}" --target "m$k" >/dev/null 2>&1 ||
      log "m$k: pool $POOL already defined on this member (or failed; finalising will tell)"
  done
  minc 1 storage create "$POOL" "$POOL_DRIVER" || die_member 1 "could not finalise storage pool $POOL"
  log "cluster: storage pool $POOL ($POOL_DRIVER) created on m1..m$n ($(secs "$t" "$(now)") s)"
}

wait_online() { # n
  local n=$1 t out online
  t=$(now)
  for _ in $(seq 60); do
    out=$(minc 1 query '/1.0/cluster/members?recursion=1' 2>/dev/null |
      jq -r '.[] | "\(.server_name) \(.status)"' 2>/dev/null)
    online=$(grep -c ' Online$' <<<"$out")
    if [ "$online" -ge "$n" ]; then
      log "cluster: $online members online ($(secs "$t" "$(now)") s)"
      return 0
    fi
    sleep 1
  done
  log "cluster members not all online after 60 s:" >&2
  echo "$out" >&2
  return 1
}

remote_names() { incus remote list -f csv 2>/dev/null | cut -d, -f1 | sed 's/ (current)$//'; }

remote_ok() { timeout 30 incus cluster list "$REMOTE:" -f csv >/dev/null 2>&1; }

ensure_remote() {
  local t token fps fp
  t=$(now)
  if remote_names | grep -qx "$REMOTE" && remote_ok; then
    log "host: remote $REMOTE already works"
    return 0
  fi
  remote_remove
  # drop a stale trust entry / pending token of ours so the new token can be used
  fps=$(minc 1 query '/1.0/certificates?recursion=1' 2>/dev/null |
    jq -r --arg n "$TRUST_NAME" '.[] | select(.name==$n) | .fingerprint')
  for fp in $fps; do minc 1 config trust remove "$fp" >/dev/null 2>&1; done
  minc 1 config trust revoke-token "$TRUST_NAME" >/dev/null 2>&1
  token=$(minc 1 config trust add "$TRUST_NAME" --quiet) || die_member 1 "could not issue a trust token"
  timeout 60 incus remote add "$REMOTE" "https://$(maddr 1):$PORT" --accept-certificate \
    --token "$token" </dev/null || die_member 1 "incus remote add $REMOTE failed"
  remote_ok || die_member 1 "remote $REMOTE added but 'incus cluster list $REMOTE:' fails"
  log "host: remote $REMOTE -> https://$(maddr 1):$PORT ($(secs "$t" "$(now)") s)"
}

remote_remove() {
  remote_names | grep -qx "$REMOTE" || return 0
  if [ "$(incus remote get-default 2>/dev/null)" = "$REMOTE" ]; then
    incus remote switch local || true
  fi
  incus remote remove "$REMOTE" || return 1
  log "host: remote $REMOTE removed"
}

cmd_up() {
  local n=${1:-2} k t existing
  case "$n" in '' | *[!0-9]*) echo "usage: $0 up [N]" >&2; exit 2 ;; esac
  if [ "$n" -lt 1 ] || [ "$n" -gt "$MAX_MEMBERS" ]; then
    echo "N must be 1..$MAX_MEMBERS" >&2; exit 2
  fi
  command -v incus >/dev/null && [ -x "$INCUSD" ] || { echo "incus/incusd not installed" >&2; exit 1; }
  command -v jq >/dev/null || { echo "jq is required" >&2; exit 1; }
  take_lock
  mkdir -p "$STATE"
  t=$(now)
  ensure_bridge "$BR" "$HOST_IP/24" || { log "could not set up bridge $BR" >&2; exit 1; }
  for k in $(seq 1 "$n"); do
    ensure_netns "$k" || { log "m$k: could not set up netns $(mns "$k")" >&2; exit 1; }
  done
  log "host: bridge $BR ($HOST_IP/24) and netns slcl-m1..m$n ready ($(secs "$t" "$(now)") s)"

  # start every member daemon that is not running (clustered members need each other to
  # come up, so start them all before waiting)
  for k in $(seq 1 "$n"); do
    if member_pid "$k" >/dev/null; then continue; fi
    log "m$k: starting incusd (INCUS_DIR=$(mdir "$k"), netns $(mns "$k"), log $(mdir "$k").log)"
    start_member "$k"
  done
  for k in $(seq 1 "$n"); do wait_member "$k"; done

  member_clustered 1 || bootstrap_m1
  existing=$(cluster_members)
  for k in $(seq 2 "$n"); do
    if grep -qx "m$k" <<<"$existing"; then continue; fi
    if member_clustered "$k"; then
      # clustered but unknown to m1 (left over from an older cluster): start it afresh
      log "m$k: stale cluster state, resetting"
      reset_member "$k"; start_member "$k"; wait_member "$k"
    fi
    if ! join_member "$k"; then
      warn "m$k: join failed, resetting the member and retrying once"
      show_member_log "$k"
      reset_member "$k"; start_member "$k"; wait_member "$k"
      join_member "$k" || die_member "$k" "join failed twice"
    fi
  done
  existing=$(cluster_members)
  if [ "$(grep -c . <<<"$existing")" -gt "$n" ]; then
    warn "the cluster has more members than requested ($(tr '\n' ' ' <<<"$existing")); leaving them"
  fi

  ensure_pool "$n"
  wait_online "$n" || die_member 1 "cluster not online"
  ensure_remote
  log "up: done (members m1..m$n, remote $REMOTE:), total $(secs "$T0" "$(now)") s"
}

# ---------------------------------------------------------------- teardown
descendants() { # pids... -> those pids and all their descendants (still alive)
  ps -eo pid=,ppid= | awk -v roots="$*" '
    BEGIN { n = split(roots, r, " "); for (i = 1; i <= n; i++) keep[r[i]] = 1 }
    { pp[$1] = $2 }
    END {
      changed = 1
      while (changed) { changed = 0; for (p in pp) if (!(p in keep) && (pp[p] in keep)) { keep[p] = 1; changed = 1 } }
      for (p in keep) if (p in pp) print p
    }'
}

member_procs() { # k -> every process belonging to member k (daemon tree, netns, lxc monitors)
  local k=$1 roots pid
  roots=$(member_pid "$k" || true)
  if [ -e "/run/netns/$(mns "$k")" ]; then
    roots="$roots $(ip netns pids "$(mns "$k")" 2>/dev/null | tr '\n' ' ')"
  fi
  # lxc monitors ("[lxc monitor] <INCUS_DIR>/containers <name>") and anything else run with
  # the member's directory on its command line
  for pid in $(pgrep -f "$(mdir "$k")/" 2>/dev/null); do
    [ "$pid" = "$$" ] || roots="$roots $pid"
  done
  roots=$(tr ' ' '\n' <<<"$roots" | grep -E '^[0-9]+$' | grep -vx "$$" | sort -u | tr '\n' ' ')
  [ -n "${roots// /}" ] || return 0
  descendants "$roots" | grep -vx "$$"
}

kill_member_procs() { # k ; SIGTERM and up to 10 s for them to go, then SIGKILL and up to 5 s
  local k=$1 pids sig tries
  for step in TERM:20 KILL:10; do
    sig=${step%%:*} tries=${step##*:}
    pids=$(member_procs "$k" | tr '\n' ' ')
    [ -n "${pids// /}" ] || return 0
    # shellcheck disable=SC2086
    kill -"$sig" $pids 2>/dev/null
    for _ in $(seq "$tries"); do
      pids=$(member_procs "$k" | tr '\n' ' ')
      [ -n "${pids// /}" ] || return 0
      sleep 0.5
    done
  done
  warn "m$k: processes still alive after SIGKILL: $pids"
}

known_members() { # every K for which anything of ours exists
  {
    for d in "$STATE"/m*; do
      [ -e "$d" ] || continue
      d=${d##*/m}; d=${d%%.*}; echo "$d"
    done
    ip netns list 2>/dev/null | awk '{print $1}' | sed -n 's/^slcl-m\([0-9]\+\)$/\1/p'
    ip -o link show 2>/dev/null | sed -n 's/^[0-9]*: slcl\([0-9]\+\)c[@:].*/\1/p'
  } | grep -E '^[0-9]+$' | sort -nu
}

stop_instances() { # via the first member whose API answers
  local k list p name ok=0
  for k in $(known_members); do
    member_pid "$k" >/dev/null || continue
    list=$(INCUS_TIMEOUT=20 minc "$k" query '/1.0/instances?recursion=1&all-projects=true' 2>/dev/null) || continue
    ok=1
    while read -r p name; do
      [ -n "$name" ] || continue
      log "m$k: stopping instance $name (project $p)"
      INCUS_TIMEOUT=60 minc "$k" stop --force --project "$p" "$name" ||
        warn "could not stop $p/$name (its processes will be killed)"
    done < <(jq -r '.[] | select(.status != "Stopped") | "\(.project) \(.name)"' <<<"$list")
    break
  done
  [ "$ok" = 1 ] || log "no member API answered; skipping instance stop (processes will be killed)"
}

member_cgroups() { # k -> "<hierarchy mount>/lxc.{payload,monitor}.X" dirs its processes are in
  local k=$1 pid id ctrl path mnt
  for pid in $(member_procs "$k"); do
    while IFS=: read -r id ctrl path; do
      case "$path" in /lxc.payload.* | /lxc.monitor.*) ;; *) continue ;; esac
      path=$(cut -d/ -f2 <<<"$path") # the top-level lxc.* directory
      mnt=$(awk -v c="${ctrl%%,*}" '
        c == "" && $3 == "cgroup2" { print $2; exit }
        c != "" && $3 == "cgroup" { n = split($4, o, ","); for (i = 1; i <= n; i++) if (o[i] == c) { print $2; exit } }' /proc/self/mounts)
      [ -n "$mnt" ] && echo "$mnt/$path"
    done <"/proc/$pid/cgroup"
  done 2>/dev/null | sort -u
}

cleanup_cgroups() { # dirs... ; rmdir (depth first) the lxc cgroups SIGKILL left behind
  local dir
  for dir in "$@"; do
    [ -d "$dir" ] || continue
    find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null
    if [ -d "$dir" ]; then warn "cgroup $dir still exists"; else log "removed leftover cgroup $dir"; fi
  done
}

cmd_down() {
  local k t l mnt rc=0 created_runns=0 cgroups
  take_lock
  t=$(now)
  remote_remove || { warn "could not remove remote $REMOTE"; rc=1; }
  stop_instances
  # cgroups of whatever still runs (only matters if it has to be SIGKILLed)
  mapfile -t cgroups < <(for k in $(known_members); do member_cgroups "$k"; done | sort -u)
  for k in $(known_members); do
    log "m$k: stopping incusd and its processes"
    kill_member_procs "$k" &
  done
  wait
  for k in $(known_members); do
    [ -n "$(member_procs "$k")" ] && { warn "m$k: processes left: $(member_procs "$k" | tr '\n' ' ')"; rc=1; }
  done
  cleanup_cgroups "${cgroups[@]}"
  log "members stopped ($(secs "$t" "$(now)") s)"

  for k in $(known_members); do
    if [ -e "/run/netns/$(mns "$k")" ]; then
      ip netns delete "$(mns "$k")" || { warn "could not delete netns $(mns "$k")"; rc=1; }
    fi
  done
  # every host link named slcl* is ours (veth ends vanish with their netns; bridge last)
  for l in $(ip -o link show 2>/dev/null | awk -F': ' '{sub(/@.*/, "", $2); print $2}' |
    grep '^slcl' | sort -r); do
    ip link del "$l" >/dev/null 2>&1
    ip link show "$l" >/dev/null 2>&1 && { warn "could not delete link $l"; rc=1; }
  done
  # mounts of ours visible on the host (should be none: members mount in their own namespace)
  for mnt in $(awk -v s="$STATE" 'index($2, s) == 1 {print $2}' /proc/self/mounts | sort -r); do
    umount -l "$mnt" || { warn "could not unmount $mnt"; rc=1; }
  done
  [ -e "$STATE/.run-netns-created" ] && created_runns=1
  if [ -e "$STATE" ]; then
    rm -rf "$STATE" || { warn "could not remove $STATE"; rc=1; }
  fi
  # ip netns made /run/netns a mount point on our first `ip netns add`; undo if now unused
  if [ "$created_runns" = 1 ] && [ -z "$(ls -A /run/netns 2>/dev/null)" ]; then
    while mountpoint -q /run/netns; do umount /run/netns || break; done
  fi
  log "down: done ($(secs "$T0" "$(now)") s)"
  return "$rc"
}

cmd_status() {
  local k pid rc=0
  for k in $(known_members); do
    if pid=$(member_pid "$k"); then
      echo "m$k: incusd pid $pid, netns $(mns "$k"), address $(maddr "$k"), INCUS_DIR $(mdir "$k")"
    else
      echo "m$k: incusd NOT running (netns $(mns "$k"))"; rc=1
    fi
  done
  [ -n "$(known_members)" ] || { echo "no cluster (nothing under $STATE)"; return 1; }
  if remote_names | grep -qx "$REMOTE"; then
    timeout 30 incus cluster list "$REMOTE:" || rc=1
  elif member_pid 1 >/dev/null; then
    echo "(remote $REMOTE not configured; asking m1 directly)"
    minc 1 cluster list || rc=1
  fi
  return "$rc"
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) echo "usage: $0 up [N] | down | status" >&2; exit 2 ;;
esac
