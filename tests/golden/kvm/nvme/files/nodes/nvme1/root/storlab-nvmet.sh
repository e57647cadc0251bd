#!/bin/sh
# storlab lab nvme: the NVMe over TCP target on nvme1 (Linux nvmet, through configfs).
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
  mkdir -p "$N"/hosts/nqn.2014-08.org.nvmexpress:uuid:0ff0d74b-e1cf-50c5-b26a-7828ae54fd6b
  mkdir -p "$N"/subsystems/nqn.2024-12.lab.storlab:kvm
  put "$N"/subsystems/nqn.2024-12.lab.storlab:kvm/attr_allow_any_host 0
  mkdir -p "$N"/subsystems/nqn.2024-12.lab.storlab:kvm/namespaces/1
  put "$N"/subsystems/nqn.2024-12.lab.storlab:kvm/namespaces/1/device_path /dev/vdb
  put "$N"/subsystems/nqn.2024-12.lab.storlab:kvm/namespaces/1/device_uuid 82095877-02bd-5784-b6d3-39297880a08b
  put "$N"/subsystems/nqn.2024-12.lab.storlab:kvm/namespaces/1/device_nguid b06ab6bb-dab4-5b8c-99d6-446c77e1527f
  put "$N"/subsystems/nqn.2024-12.lab.storlab:kvm/namespaces/1/enable 1
  link "$N"/hosts/nqn.2014-08.org.nvmexpress:uuid:0ff0d74b-e1cf-50c5-b26a-7828ae54fd6b "$N"/subsystems/nqn.2024-12.lab.storlab:kvm/allowed_hosts/nqn.2014-08.org.nvmexpress:uuid:0ff0d74b-e1cf-50c5-b26a-7828ae54fd6b
  mkdir -p "$N"/subsystems/nqn.2024-12.lab.storlab:scratch
  put "$N"/subsystems/nqn.2024-12.lab.storlab:scratch/attr_allow_any_host 0
  mkdir -p "$(dirname /nvme/scratch.img)"
  [ -e /nvme/scratch.img ] || truncate -s 268435456 /nvme/scratch.img
  mkdir -p "$N"/subsystems/nqn.2024-12.lab.storlab:scratch/namespaces/1
  put "$N"/subsystems/nqn.2024-12.lab.storlab:scratch/namespaces/1/device_path /nvme/scratch.img
  put "$N"/subsystems/nqn.2024-12.lab.storlab:scratch/namespaces/1/device_uuid 561a0723-a584-5055-855f-5e443e122b23
  put "$N"/subsystems/nqn.2024-12.lab.storlab:scratch/namespaces/1/device_nguid c07423d3-4a16-5b79-b310-41a90704e45f
  put "$N"/subsystems/nqn.2024-12.lab.storlab:scratch/namespaces/1/enable 1
  link "$N"/hosts/nqn.2014-08.org.nvmexpress:uuid:0ff0d74b-e1cf-50c5-b26a-7828ae54fd6b "$N"/subsystems/nqn.2024-12.lab.storlab:scratch/allowed_hosts/nqn.2014-08.org.nvmexpress:uuid:0ff0d74b-e1cf-50c5-b26a-7828ae54fd6b
  mkdir -p "$N"/ports/1
  put "$N"/ports/1/addr_trtype tcp
  put "$N"/ports/1/addr_adrfam ipv4
  put "$N"/ports/1/addr_traddr 192.168.182.11
  put "$N"/ports/1/addr_trsvcid 4420
  mkdir -p "$N"/ports/2
  put "$N"/ports/2/addr_trtype tcp
  put "$N"/ports/2/addr_adrfam ipv4
  put "$N"/ports/2/addr_traddr 192.168.175.11
  put "$N"/ports/2/addr_trsvcid 4420
  link "$N"/subsystems/nqn.2024-12.lab.storlab:kvm "$N"/ports/1/subsystems/nqn.2024-12.lab.storlab:kvm
  link "$N"/subsystems/nqn.2024-12.lab.storlab:kvm "$N"/ports/2/subsystems/nqn.2024-12.lab.storlab:kvm
  link "$N"/subsystems/nqn.2024-12.lab.storlab:scratch "$N"/ports/1/subsystems/nqn.2024-12.lab.storlab:scratch
}

down() {
  [ -d "$N" ] || return 0
  unlink_ "$N"/ports/1/subsystems/nqn.2024-12.lab.storlab:kvm
  unlink_ "$N"/ports/2/subsystems/nqn.2024-12.lab.storlab:kvm
  unlink_ "$N"/ports/1/subsystems/nqn.2024-12.lab.storlab:scratch
  rmd "$N"/ports/1
  rmd "$N"/ports/2
  unlink_ "$N"/subsystems/nqn.2024-12.lab.storlab:kvm/allowed_hosts/nqn.2014-08.org.nvmexpress:uuid:0ff0d74b-e1cf-50c5-b26a-7828ae54fd6b
  if [ -d "$N"/subsystems/nqn.2024-12.lab.storlab:kvm/namespaces/1 ]; then
    put "$N"/subsystems/nqn.2024-12.lab.storlab:kvm/namespaces/1/enable 0
    rmdir "$N"/subsystems/nqn.2024-12.lab.storlab:kvm/namespaces/1
  fi
  rmd "$N"/subsystems/nqn.2024-12.lab.storlab:kvm
  unlink_ "$N"/subsystems/nqn.2024-12.lab.storlab:scratch/allowed_hosts/nqn.2014-08.org.nvmexpress:uuid:0ff0d74b-e1cf-50c5-b26a-7828ae54fd6b
  if [ -d "$N"/subsystems/nqn.2024-12.lab.storlab:scratch/namespaces/1 ]; then
    put "$N"/subsystems/nqn.2024-12.lab.storlab:scratch/namespaces/1/enable 0
    rmdir "$N"/subsystems/nqn.2024-12.lab.storlab:scratch/namespaces/1
  fi
  rmd "$N"/subsystems/nqn.2024-12.lab.storlab:scratch
  rmd "$N"/hosts/nqn.2014-08.org.nvmexpress:uuid:0ff0d74b-e1cf-50c5-b26a-7828ae54fd6b
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
