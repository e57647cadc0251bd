#!/bin/sh
# storlab lab shared: the NVMe over TCP target on san1 (Linux nvmet, through configfs).
# `sh storlab-nvmet.sh up` makes what is missing and changes nothing that is right (a re-run passes);
# `sh storlab-nvmet.sh down` removes the subsystems, ports and hosts below (backing files stay).
# Every value is quoted for the shell (the topology's values are allow-listed before they get here).
set -eu
N=/sys/kernel/config/nvmet

# write $2 into $1 unless it holds it already: nvmet refuses to change an enabled port or namespace
put() { [ "$(cat "$1")" = "$2" ] || printf '%s\n' "$2" > "$1"; }
link() { [ -L "$2" ] || ln -s "$1" "$2"; }
unlink_() { if [ -L "$1" ]; then rm -f "$1"; fi; }
rmd() { if [ -d "$1" ]; then rmdir "$1"; fi; }

up() {
  modprobe nvmet
  modprobe nvmet-tcp
  mountpoint -q /sys/kernel/config || mount -t configfs none /sys/kernel/config
  mkdir -p "$N"/hosts/nqn.2014-08.org.nvmexpress:uuid:439e608d-bfb2-5516-9a1f-a2734c8f5c99
  mkdir -p "$N"/hosts/nqn.2014-08.org.nvmexpress:uuid:4eb9b677-ad6f-574d-9c13-0f5602338901
  mkdir -p "$N"/subsystems/nqn.2024-12.lab.storlab:shared
  put "$N"/subsystems/nqn.2024-12.lab.storlab:shared/attr_allow_any_host 0
  mkdir -p "$N"/subsystems/nqn.2024-12.lab.storlab:shared/namespaces/1
  put "$N"/subsystems/nqn.2024-12.lab.storlab:shared/namespaces/1/device_path /dev/vdc
  put "$N"/subsystems/nqn.2024-12.lab.storlab:shared/namespaces/1/device_uuid fbc0013f-e161-5ae9-bdcc-8ac372ffb4ef
  put "$N"/subsystems/nqn.2024-12.lab.storlab:shared/namespaces/1/device_nguid 1e298e4f-6692-5bac-a126-3cd678927b69
  put "$N"/subsystems/nqn.2024-12.lab.storlab:shared/namespaces/1/enable 1
  link "$N"/hosts/nqn.2014-08.org.nvmexpress:uuid:439e608d-bfb2-5516-9a1f-a2734c8f5c99 "$N"/subsystems/nqn.2024-12.lab.storlab:shared/allowed_hosts/nqn.2014-08.org.nvmexpress:uuid:439e608d-bfb2-5516-9a1f-a2734c8f5c99
  link "$N"/hosts/nqn.2014-08.org.nvmexpress:uuid:4eb9b677-ad6f-574d-9c13-0f5602338901 "$N"/subsystems/nqn.2024-12.lab.storlab:shared/allowed_hosts/nqn.2014-08.org.nvmexpress:uuid:4eb9b677-ad6f-574d-9c13-0f5602338901
  mkdir -p "$N"/ports/1
  put "$N"/ports/1/addr_trtype tcp
  put "$N"/ports/1/addr_adrfam ipv4
  put "$N"/ports/1/addr_traddr 192.168.119.11
  put "$N"/ports/1/addr_trsvcid 4420
  link "$N"/subsystems/nqn.2024-12.lab.storlab:shared "$N"/ports/1/subsystems/nqn.2024-12.lab.storlab:shared
}

down() {
  [ -d "$N" ] || return 0
  unlink_ "$N"/ports/1/subsystems/nqn.2024-12.lab.storlab:shared
  rmd "$N"/ports/1
  unlink_ "$N"/subsystems/nqn.2024-12.lab.storlab:shared/allowed_hosts/nqn.2014-08.org.nvmexpress:uuid:439e608d-bfb2-5516-9a1f-a2734c8f5c99
  unlink_ "$N"/subsystems/nqn.2024-12.lab.storlab:shared/allowed_hosts/nqn.2014-08.org.nvmexpress:uuid:4eb9b677-ad6f-574d-9c13-0f5602338901
  if [ -d "$N"/subsystems/nqn.2024-12.lab.storlab:shared/namespaces/1 ]; then
    put "$N"/subsystems/nqn.2024-12.lab.storlab:shared/namespaces/1/enable 0
    rmdir "$N"/subsystems/nqn.2024-12.lab.storlab:shared/namespaces/1
  fi
  rmd "$N"/subsystems/nqn.2024-12.lab.storlab:shared
  rmd "$N"/hosts/nqn.2014-08.org.nvmexpress:uuid:439e608d-bfb2-5516-9a1f-a2734c8f5c99
  rmd "$N"/hosts/nqn.2014-08.org.nvmexpress:uuid:4eb9b677-ad6f-574d-9c13-0f5602338901
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
