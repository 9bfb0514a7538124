#!/usr/bin/env bash
# Installs and starts the real substrate the tests use: dockerd, libvirtd +
# qemu (TCG), mkfs tools, busybox for test images and guests. Idempotent: safe
# to run on a machine that already has some or all of it. Needs root.
set -euo pipefail

log() { printf '[substrate] %s\n' "$*" >&2; }

if [ "$(id -u)" != 0 ]; then
  log "not root: cannot install packages or start daemons; root-only tests will skip loudly"
  exit 0
fi

pkgs=(docker.io libvirt-daemon-system qemu-system-x86 e2fsprogs xfsprogs busybox-static curl jq
      cryptsetup-bin util-linux fdisk kmod
      ansible-core prometheus systemd)  # the last three: deploy tests (ansible-playbook, promtool, systemd-analyze)
need=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  log "installing: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Loop devices: make sure the control node and a handful of nodes exist.
modprobe loop 2>/dev/null || true
[ -e /dev/loop-control ] || mknod -m 660 /dev/loop-control c 10 237 || true
for i in $(seq 0 63); do [ -e /dev/loop$i ] || mknod -m 660 /dev/loop$i b 7 $i 2>/dev/null || true; done

# Without udev, /dev/kvm stays root:root 0600; libvirtd then re-probes qemu on
# every domain define (~35 s each). Give it the group and mode udev would.
if [ -e /dev/kvm ]; then chgrp kvm /dev/kvm 2>/dev/null || true; chmod 0660 /dev/kvm || true; fi

wait_socket() { # path what seconds
  local i=0
  while [ $i -lt $(( $3 * 10 )) ]; do
    [ -S "$1" ] && return 0
    sleep 0.1; i=$((i+1))
  done
  log "$2 did not create $1 in $3 s"; return 1
}

if ! docker version >/dev/null 2>&1; then
  log "starting dockerd"
  mkdir -p /var/log/cinderwarden
  nohup dockerd >/var/log/cinderwarden/dockerd.log 2>&1 &
  wait_socket /var/run/docker.sock dockerd 60
  for i in $(seq 1 100); do docker version >/dev/null 2>&1 && break; sleep 0.2; done
fi

if ! pgrep -x virtlogd >/dev/null; then log "starting virtlogd"; virtlogd -d; fi
if ! pgrep -x libvirtd >/dev/null; then
  log "starting libvirtd"
  libvirtd -d
  wait_socket /var/run/libvirt/libvirt-sock libvirtd 60
fi
log "ready: dockerd $(docker version -f '{{.Server.Version}}' 2>/dev/null), libvirtd $(libvirtd --version | awk '{print $NF}')"
