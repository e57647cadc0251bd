#!/bin/sh
# storlab lab nvme-auth: the NVMe over TCP target on nvme1 (Linux nvmet, through configfs).
# `sh storlab-nvmet.sh up` makes what is missing and changes nothing that is right (a re-run passes);
# `sh storlab-nvmet.sh down` removes the subsystems, ports and hosts below (backing files stay).
# Every value is quoted for the shell (the topology's values are allow-listed before they get here).
# DH-HMAC-CHAP keys are not in this script: it copies them from the 0600 files the role put in
# /root/storlab-nvme-keys/ (a key is never an argument of a command).
set -eu
N=/sys/kernel/config/nvmet

# write $2 into $1 unless it holds it already: nvmet refuses to change an enabled port or namespace
put() { [ "$(cat "$1")" = "$2" ] || printf '%s\n' "$2" > "$1"; }
link() { [ -L "$2" ] || ln -s "$1" "$2"; }
unlink_() { if [ -L "$1" ]; then rm -f "$1"; fi; }
rmd() { if [ -d "$1" ]; then rmdir "$1"; fi; }
# a host's DH-HMAC-CHAP: hash, DH group, then its key (and the controller's) copied from their files,
# before the host is linked into any subsystem (no moment where it is admitted without its key)
auth() {
  if [ ! -e "$1/dhchap_key" ]; then
    echo "this kernel's nvmet has no DH-HMAC-CHAP ($1/dhchap_key is missing): it is built without CONFIG_NVME_TARGET_AUTH" >&2
    exit 3
  fi
  put "$1/dhchap_hash" "$2"
  put "$1/dhchap_dhgroup" "$3"
  cat "$4" > "$1/dhchap_key"
  if [ -n "${5:-}" ]; then cat "$5" > "$1/dhchap_ctrl_key"; fi
}

up() {
  modprobe nvmet
  modprobe nvmet-tcp
  mountpoint -q /sys/kernel/config || mount -t configfs none /sys/kernel/config
  mkdir -p "$N"/hosts/nqn.2014-08.org.nvmexpress:uuid:0d53ed80-2773-5def-b9d2-a38024e43954
  auth "$N"/hosts/nqn.2014-08.org.nvmexpress:uuid:0d53ed80-2773-5def-b9d2-a38024e43954 'hmac(sha256)' ffdhe2048 /root/storlab-nvme-keys/nvme-dhchap-key-kvm1 /root/storlab-nvme-keys/nvme-dhchap-ctrl-key-kvm1
  mkdir -p "$N"/subsystems/nqn.2024-12.lab.storlab:kvm
  put "$N"/subsystems/nqn.2024-12.lab.storlab:kvm/attr_allow_any_host 0
  mkdir -p "$N"/subsystems/nqn.2024-12.lab.storlab:kvm/namespaces/1
  put "$N"/subsystems/nqn.2024-12.lab.storlab:kvm/namespaces/1/device_path /dev/vdb
  put "$N"/subsystems/nqn.2024-12.lab.storlab:kvm/namespaces/1/device_uuid bc521bc3-5f6c-59d6-b217-0966575731bd
  put "$N"/subsystems/nqn.2024-12.lab.storlab:kvm/namespaces/1/device_nguid c0e678a5-d960-5df7-84da-5e63fe4c6e0d
  put "$N"/subsystems/nqn.2024-12.lab.storlab:kvm/namespaces/1/enable 1
  link "$N"/hosts/nqn.2014-08.org.nvmexpress:uuid:0d53ed80-2773-5def-b9d2-a38024e43954 "$N"/subsystems/nqn.2024-12.lab.storlab:kvm/allowed_hosts/nqn.2014-08.org.nvmexpress:uuid:0d53ed80-2773-5def-b9d2-a38024e43954
  mkdir -p "$N"/subsystems/nqn.2024-12.lab.storlab:scratch
  put "$N"/subsystems/nqn.2024-12.lab.storlab:scratch/attr_allow_any_host 0
  mkdir -p "$(dirname /nvme/scratch.img)"
  [ -e /nvme/scratch.img ] || truncate -s 268435456 /nvme/scratch.img
  mkdir -p "$N"/subsystems/nqn.2024-12.lab.storlab:scratch/namespaces/1
  put "$N"/subsystems/nqn.2024-12.lab.storlab:scratch/namespaces/1/device_path /nvme/scratch.img
  put "$N"/subsystems/nqn.2024-12.lab.storlab:scratch/namespaces/1/device_uuid 7d33908b-ea43-5832-aff5-9b29d841d377
  put "$N"/subsystems/nqn.2024-12.lab.storlab:scratch/namespaces/1/device_nguid c649ae67-2013-5447-81f1-61834eae4d89
  put "$N"/subsystems/nqn.2024-12.lab.storlab:scratch/namespaces/1/enable 1
  link "$N"/hosts/nqn.2014-08.org.nvmexpress:uuid:0d53ed80-2773-5def-b9d2-a38024e43954 "$N"/subsystems/nqn.2024-12.lab.storlab:scratch/allowed_hosts/nqn.2014-08.org.nvmexpress:uuid:0d53ed80-2773-5def-b9d2-a38024e43954
  mkdir -p "$N"/ports/1
  put "$N"/ports/1/addr_trtype tcp
  put "$N"/ports/1/addr_adrfam ipv4
  put "$N"/ports/1/addr_traddr 192.168.164.11
  put "$N"/ports/1/addr_trsvcid 4420
  mkdir -p "$N"/ports/2
  put "$N"/ports/2/addr_trtype tcp
  put "$N"/ports/2/addr_adrfam ipv4
  put "$N"/ports/2/addr_traddr 192.168.140.11
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
  unlink_ "$N"/subsystems/nqn.2024-12.lab.storlab:kvm/allowed_hosts/nqn.2014-08.org.nvmexpress:uuid:0d53ed80-2773-5def-b9d2-a38024e43954
  if [ -d "$N"/subsystems/nqn.2024-12.lab.storlab:kvm/namespaces/1 ]; then
    put "$N"/subsystems/nqn.2024-12.lab.storlab:kvm/namespaces/1/enable 0
    rmdir "$N"/subsystems/nqn.2024-12.lab.storlab:kvm/namespaces/1
  fi
  rmd "$N"/subsystems/nqn.2024-12.lab.storlab:kvm
  unlink_ "$N"/subsystems/nqn.2024-12.lab.storlab:scratch/allowed_hosts/nqn.2014-08.org.nvmexpress:uuid:0d53ed80-2773-5def-b9d2-a38024e43954
  if [ -d "$N"/subsystems/nqn.2024-12.lab.storlab:scratch/namespaces/1 ]; then
    put "$N"/subsystems/nqn.2024-12.lab.storlab:scratch/namespaces/1/enable 0
    rmdir "$N"/subsystems/nqn.2024-12.lab.storlab:scratch/namespaces/1
  fi
  rmd "$N"/subsystems/nqn.2024-12.lab.storlab:scratch
  rmd "$N"/hosts/nqn.2014-08.org.nvmexpress:uuid:0d53ed80-2773-5def-b9d2-a38024e43954
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
