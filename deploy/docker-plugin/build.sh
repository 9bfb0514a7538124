#!/usr/bin/env bash
# Builds the cinderwarden managed Docker plugin locally and registers it with
# the local dockerd (`docker plugin create`; no registry involved).
#
#   deploy/docker-plugin/build.sh [--name NAME] [--binary PATH] [--out DIR] [--tar FILE] [--force] [--no-create]
#
#   --name NAME     plugin name (default cinderwarden/cinder:latest); Docker
#                   users then say `docker volume create -d cinderwarden/cinder`
#   --binary PATH   a static cinderwarden binary (default: build one with
#                   CGO_ENABLED=0 from this checkout)
#   --out DIR       where to assemble config.json + rootfs/ (default
#                   bin/docker-plugin under the repository; removed first)
#   --tar FILE      also pack the assembled directory into FILE (one artifact
#                   to ship; the Ansible role's managed mode installs it)
#   --force         replace an existing plugin of that name (it must not be
#                   in use by any volume)
#   --no-create     assemble only; do not call docker
#
# The rootfs holds the binary, mkfs.ext4 (mke2fs), mkfs.xfs and blkid with
# exactly the shared libraries ldd reports for them on this host, the CA
# bundle for HTTPS to Keystone, and the empty directories the config mounts
# onto. Then enable it: see docs/install.md.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
name=cinderwarden/cinder:latest
binary=
out=$repo/bin/docker-plugin
tarfile=
force=0
create=1

while [ $# -gt 0 ]; do
  case $1 in
    --name) name=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --tar) tarfile=$2; shift 2 ;;
    --force) force=1; shift ;;
    --no-create) create=0; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

log() { printf '[docker-plugin] %s\n' "$*" >&2; }
die() { printf '[docker-plugin] error: %s\n' "$*" >&2; exit 1; }

case $out in
  /|"") die "--out must be a dedicated directory, not '$out'" ;;
esac
rm -rf "$out"
rootfs=$out/rootfs
mkdir -p "$rootfs"

# 1. The binary: static, or the plugin cannot start in an empty rootfs.
if [ -z "$binary" ]; then
  command -v go >/dev/null || die "go not found: pass --binary or install Go"
  log "building cinderwarden (CGO_ENABLED=0)"
  (cd "$repo" && CGO_ENABLED=0 go build -trimpath -o "$rootfs/cinderwarden" ./cmd/cinderwarden)
else
  [ -x "$binary" ] || die "--binary $binary is not an executable file"
  cp "$binary" "$rootfs/cinderwarden"
fi
if ldd "$rootfs/cinderwarden" >/dev/null 2>&1; then
  die "the cinderwarden binary is dynamically linked; build it with CGO_ENABLED=0"
fi

# 2. The filesystem tools with their shared libraries, at the host's paths.
copy_file() { # src: copy to the same path inside the rootfs, following links
  local src=$1 dst=$rootfs$1
  mkdir -p "$(dirname "$dst")"
  cp -L "$src" "$dst"
}
copy_with_libs() { # tool name, path inside the rootfs
  local tool=$1 dest=$2 path lib
  path=$(command -v "$tool" || true)
  [ -n "$path" ] || die "$tool not found (Debian: apt-get install e2fsprogs xfsprogs util-linux)"
  mkdir -p "$rootfs$(dirname "$dest")"
  cp -L "$path" "$rootfs$dest"
  # ldd prints "libx.so => /path (addr)" and the loader as "/lib64/ld-... (addr)".
  while read -r lib; do
    copy_file "$lib"
  done < <(ldd "$path" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
}
copy_with_libs mke2fs /usr/sbin/mke2fs
ln -s mke2fs "$rootfs/usr/sbin/mkfs.ext4" # mke2fs picks ext4 from its name
copy_with_libs mkfs.xfs /usr/sbin/mkfs.xfs
copy_with_libs blkid /usr/sbin/blkid
[ -f /etc/mke2fs.conf ] && copy_file /etc/mke2fs.conf

# 3. CA bundle for HTTPS (clouds.yaml's cacert can name another file under
# /etc/openstack).
for ca in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
  if [ -f "$ca" ]; then mkdir -p "$rootfs/etc/ssl/certs"; cp -L "$ca" "$rootfs/etc/ssl/certs/ca-certificates.crt"; break; fi
done

# 4. Mount points of config.json and what a container runtime expects.
for d in dev proc sys tmp run/docker/plugins etc/openstack var/lib/cinderwarden/mounts var/lib/cinderwarden/state; do
  mkdir -p "$rootfs/$d"
done
chmod 1777 "$rootfs/tmp"
cp "$here/config.json" "$out/config.json"
log "assembled $out ($(du -sh "$rootfs" | cut -f1))"
if [ -n "$tarfile" ]; then
  tar -C "$out" -cf "$tarfile" config.json rootfs
  log "packed $tarfile"
fi

[ "$create" = 1 ] || exit 0
command -v docker >/dev/null || die "docker CLI not found"
if docker plugin inspect "$name" >/dev/null 2>&1; then
  [ "$force" = 1 ] || die "plugin $name exists; pass --force to replace it"
  log "removing existing plugin $name"
  docker plugin disable "$name" >/dev/null 2>&1 || true
  docker plugin rm "$name" >/dev/null
fi
log "docker plugin create $name"
docker plugin create "$name" "$out" >/dev/null
log "created $name (disabled). Next, on each Docker host:"
log "  mkdir -p /var/lib/cinderwarden/state   # and put clouds.yaml in /etc/openstack"
log "  docker plugin set $name OS_CLOUD=<cloud>   # optional: args=\"--default-size=20 ...\""
log "  docker plugin enable $name"
