#!/usr/bin/env bash
# Builds a tiny Linux guest for libvirt tests: Debian's cloud kernel (ACPI PCI
# hotplug built in, so the guest acknowledges disk unplug) and a busybox-static
# initramfs whose /init just mounts /proc and /sys and sleeps. Output dir
# (default /var/cache/cinderwarden/guest) gets vmlinuz and initrd.gz, readable
# by the libvirt-qemu user. Idempotent; needs root and Debian's package lists.
set -euo pipefail
out=${1:-/var/cache/cinderwarden/guest}
[ -s "$out/vmlinuz" ] && [ -s "$out/initrd.gz" ] && { echo "$out"; exit 0; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

# The meta package only depends on the versioned image package: read which.
apt-get download linux-image-cloud-amd64 >/dev/null 2>&1 || { apt-get update -qq; apt-get download linux-image-cloud-amd64 >/dev/null; }
dep=$(dpkg-deb -f linux-image-cloud-amd64_*.deb Depends | grep -o 'linux-image-[^ ,]*-cloud-amd64' | head -1)
apt-get download "$dep" >/dev/null
dpkg-deb -x "$dep"_*.deb kernel

mkdir -p initramfs/bin initramfs/proc initramfs/sys initramfs/dev
cp /bin/busybox initramfs/bin/busybox
for l in sh mount sleep echo cat ls; do ln -s busybox "initramfs/bin/$l"; done
cat > initramfs/init <<'INIT'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
echo "cinderwarden-guest: up"
while :; do sleep 3600; done
INIT
chmod +x initramfs/init
(cd initramfs && find . | /bin/busybox cpio -o -H newc 2>/dev/null) | gzip -1 > initrd.gz

install -d -m 0755 "$out"
install -m 0644 kernel/boot/vmlinuz-* "$out/vmlinuz"
install -m 0644 initrd.gz "$out/initrd.gz"
echo "$out"
