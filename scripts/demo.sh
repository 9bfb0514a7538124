#!/usr/bin/env bash
# make demo: the main job, end to end, on the embedded simulator.
#   1. start `cinderwarden sim` (Keystone, Cinder, Nova, metadata on 127.0.0.1,
#      attachments backed by real loop devices) with two instances;
#   2. talk to it over the real OpenStack HTTP APIs: authenticate, create a
#      Cinder volume, attach it to vm-1 through Nova, find the disk by volume id
#      in vm-1's dev dir, detach it;
#   2b. the volume plugin on vm-1: `cinderwarden plugin` serves Docker's
#      volume protocol; through dockerd when it runs (docker volume create,
#      two containers writing and reading), else through the plugin socket;
#   3. the reconciler on a compute host: a second simulator hot-plugs Nova
#      attachments into a real qemu domain under libvirtd; seed a zombie disk
#      and a stale Cinder attachment, then `cinderwarden reconcile` dry-run,
#      --apply, and a clean run.
# Everything it starts is stopped and cleaned up on exit. Needs root (loop
# devices); run `make substrate` first on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/cinderwarden}
DEMO=${DEMO_DIR:-.demo}

say()  { printf '\n\033[1m== %s\033[0m\n' "$*"; }
need() { command -v "$1" >/dev/null || { echo "demo: needs $1 (make substrate installs it)" >&2; exit 1; }; }
need curl; need jq; need virsh
[ "$(id -u)" = 0 ] || { echo "demo: needs root (the simulator backs volumes with loop devices)" >&2; exit 1; }

rm -rf "$DEMO"; mkdir -p "$DEMO"
DEMO=$(cd "$DEMO" && pwd)
pids=()
DOMAIN=cinderwarden-demo-$$
cleanup() {
  # The domain goes first: the simulator would otherwise try to detach its
  # disks from a guest that never acknowledges (20 s x 8, as Nova does).
  virsh -q -c qemu:///system destroy "$DOMAIN" >/dev/null 2>&1 || true
  virsh -q -c qemu:///system undefine "$DOMAIN" >/dev/null 2>&1 || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

say "starting the simulator (two instances, real loop devices)"
"$BIN" sim --state-dir "$DEMO/sim" --instances 2 --attach-latency 300ms --detach-latency 300ms >"$DEMO/sim.out" 2>"$DEMO/sim.log" &
pids+=($!)
for _ in $(seq 1 100); do grep -q '^ready' "$DEMO/sim.out" 2>/dev/null && break; sleep 0.1; done
grep -q '^ready' "$DEMO/sim.out" || { cat "$DEMO/sim.log"; exit 1; }
cat "$DEMO/sim.out"

field() { sed -n "s/^$1: \([^ ]*\).*/\1/p" "$DEMO/sim.out" | head -1; }
inst() { grep "^instance: .*name=$1 " "$DEMO/sim.out" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
AUTH_URL=$(field auth_url); VOLUME_URL=$(field volume_url); COMPUTE_URL=$(field compute_url)
VM1=$(inst vm-1 id); VM1_DEV=$(inst vm-1 node_dev_dir)
PASSWORD=$(sed -n '/^    sim:/,/^    sim-admin:/s/^ *password: //p' "$DEMO/sim/clouds.yaml")

say "Keystone: password auth as the member user"
TOKEN=$(curl -sf -D - -o /dev/null -H 'Content-Type: application/json' "$AUTH_URL/auth/tokens" -d @- <<JSON | tr -d '\r' | sed -n 's/^[Xx]-[Ss]ubject-[Tt]oken: //p'
{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"demo","domain":{"name":"Default"},"password":"$PASSWORD"}}},
 "scope":{"project":{"name":"demo","domain":{"name":"Default"}}}}}
JSON
)
[ -n "$TOKEN" ] || { echo "no token" >&2; exit 1; }
echo "token issued (not shown)"
cinder() { curl -sf -H "X-Auth-Token: $TOKEN" -H 'OpenStack-API-Version: volume 3.44' -H 'Content-Type: application/json' "$@"; }
nova()   { curl -sf -H "X-Auth-Token: $TOKEN" -H 'OpenStack-API-Version: compute 2.89' -H 'Content-Type: application/json' "$@"; }
volstatus() { cinder "$VOLUME_URL/volumes/$1" | jq -r .volume.status; }
waitstatus() { for _ in $(seq 1 100); do [ "$(volstatus "$1")" = "$2" ] && return 0; sleep 0.05; done; echo "volume $1 never became $2" >&2; return 1; }

say "Cinder: create a 1 GiB volume"
VOL=$(cinder "$VOLUME_URL/volumes" -d '{"volume":{"name":"demo-vol","size":1}}' | jq -r .volume.id)
waitstatus "$VOL" available
cinder "$VOLUME_URL/volumes/$VOL" | jq -c '.volume | {id, name, size, status}'

say "Nova: attach it to vm-1 (asynchronous; Cinder goes reserved → in-use)"
nova "$COMPUTE_URL/servers/$VM1/os-volume_attachments" -d "{\"volumeAttachment\":{\"volumeId\":\"$VOL\"}}" | jq -c .volumeAttachment
waitstatus "$VOL" in-use
echo "the disk, found by volume id the way a KVM guest's udev names it:"
ls -l "$VM1_DEV/disk/by-id/"
cinder "$VOLUME_URL/volumes/$VOL" | jq -c '.volume.attachments[] | {server_id, attachment_id, device}'

say "Nova: detach it again"
nova -X DELETE "$COMPUTE_URL/servers/$VM1/os-volume_attachments/$VOL"
waitstatus "$VOL" available
echo "by-id links left in vm-1: $(ls "$VM1_DEV/disk/by-id/" | wc -l)"

say "the simulator's attach/detach event log"
jq -c '{time, kind, volume_id, instance_id}' "$DEMO/sim/events.jsonl" 2>/dev/null || cat "$DEMO/sim/events.jsonl"


# ---------------------------------------------------------------------------
# Part 2: the Docker volume plugin on vm-1.
say "part 2: the volume plugin on vm-1 (identity from the metadata service, disks found by volume id)"
DRIVER=cinderwarden-demo
SOCK=/run/docker/plugins/$DRIVER.sock
mkdir -p /run/docker/plugins "$DEMO/node-1"
"$BIN" plugin --driver-name "$DRIVER" --socket "$SOCK" \
  --os-cloud sim --os-client-config-file "$DEMO/sim/clouds.yaml" \
  --identity-order metadata --metadata-url "$(inst vm-1 metadata_url)" \
  --dev-root "$VM1_DEV" --mount-root "$DEMO/node-1/mounts" --state-dir "$DEMO/node-1/state" \
  --default-size 1 --metrics-listen off >"$DEMO/plugin.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do [ -S "$SOCK" ] && break; sleep 0.1; done
[ -S "$SOCK" ] || { cat "$DEMO/plugin.log"; exit 1; }
echo "plugin serving $SOCK"
plug() { curl -sf --unix-socket "$SOCK" -H 'Content-Type: application/json' "http://plugin/VolumeDriver.$1" -d "$2"; }

if docker version >/dev/null 2>&1; then
  IMAGE=cinderwarden/busybox:demo
  if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    need busybox
    rootfs="$DEMO/rootfs"; mkdir -p "$rootfs/bin" "$rootfs/tmp"  # no /data: Docker would mount once more to copy it up
    cp "$(command -v busybox)" "$rootfs/bin/busybox"
    for a in sh cat echo ls; do ln -sf busybox "$rootfs/bin/$a"; done
    tar -C "$rootfs" -c . | docker import - "$IMAGE" >/dev/null
  fi
  say "docker volume create -d $DRIVER -o size=1 demo-data"
  docker volume rm demo-data >/dev/null 2>&1 || true
  docker volume create -d "$DRIVER" -o size=1 -o fstype=ext4 demo-data
  say "one container writes, another reads (the first attach formats the blank disk)"
  docker run --rm --network none -v demo-data:/data "$IMAGE" sh -c 'echo "hello from $(hostname)" > /data/greeting'
  docker run --rm --network none -v demo-data:/data "$IMAGE" cat /data/greeting
  say "docker volume inspect shows what Cinder knows"
  docker volume inspect demo-data | jq '.[0] | {Name, Driver, Status}'
  say "docker volume rm deletes the Cinder volume (the plugin created it, so it may)"
  docker volume rm demo-data
else
  say "dockerd is not running: speaking Docker's plugin protocol on the socket directly"
  plug Create '{"Name":"demo-data","Opts":{"size":"1"}}'; echo
  MP=$(plug Mount '{"Name":"demo-data","ID":"demo-mount-1"}' | jq -r .Mountpoint)
  echo "mounted at $MP"; echo hello > "$MP/greeting"; cat "$MP/greeting"
  plug Get '{"Name":"demo-data"}' | jq -c '.Volume | {Name, Status}'
  plug Unmount '{"Name":"demo-data","ID":"demo-mount-1"}'; echo
  plug Remove '{"Name":"demo-data"}'; echo
fi
echo; echo "the plugin's log (one line per request):"
grep 'msg=request' "$DEMO/plugin.log" | sed 's/^time=[^ ]* //' | cut -c1-200
echo; echo "the simulator's event log, part 2:"
jq -c '{kind, volume_id, instance_id}' "$DEMO/sim/events.jsonl" | tail -n +3

# ---------------------------------------------------------------------------
# Part 3: the reconciler on a compute host.
say "part 3: a compute host — a simulator whose Nova hot-plugs into a real qemu domain"
"$BIN" sim --state-dir "$DEMO/sim2" --seed 7 --backend none --instances 1 \
  --libvirt-uri qemu:///system --libvirt-domain "vm-1=$DOMAIN" \
  --attach-latency 200ms --detach-latency 200ms >"$DEMO/sim2.out" 2>"$DEMO/sim2.log" &
pids+=($!)
for _ in $(seq 1 100); do grep -q '^ready' "$DEMO/sim2.out" 2>/dev/null && break; sleep 0.1; done
grep -q '^ready' "$DEMO/sim2.out" || { cat "$DEMO/sim2.log"; exit 1; }
sim2() { sed -n "s/^$1: \([^ ]*\).*/\1/p" "$DEMO/sim2.out" | head -1; }
AUTH_URL=$(sim2 auth_url); VOLUME_URL=$(sim2 volume_url); COMPUTE_URL=$(sim2 compute_url); BASE=${AUTH_URL%/identity/v3}
VM1=$(grep '^instance: .*name=vm-1 ' "$DEMO/sim2.out" | tr ' ' '\n' | sed -n 's/^id=//p')
HOST=$(grep '^instance: .*name=vm-1 ' "$DEMO/sim2.out" | tr ' ' '\n' | sed -n 's/^host=//p')
pw() { sed -n "/^    $1:/,/^    [a-z]/s/^ *password: //p" "$DEMO/sim2/clouds.yaml" | head -1; }
token() { # user project password
  curl -sf -D - -o /dev/null -H 'Content-Type: application/json' "$AUTH_URL/auth/tokens" \
    -d "{\"auth\":{\"identity\":{\"methods\":[\"password\"],\"password\":{\"user\":{\"name\":\"$1\",\"domain\":{\"name\":\"Default\"},\"password\":\"$3\"}}},\"scope\":{\"project\":{\"name\":\"$2\",\"domain\":{\"name\":\"Default\"}}}}}" \
    | tr -d '\r' | sed -n 's/^[Xx]-[Ss]ubject-[Tt]oken: //p'
}
TOKEN=$(token demo demo "$(pw sim)"); ADMIN_TOKEN=$(token admin admin "$(pw sim-admin)")

# A firmware-only qemu (TCG) guest with Nova's instance uuid: it boots SeaBIOS
# and never acknowledges a hot-unplug — exactly how zombie disks persist.
install -d -m 0755 "$DEMO/libvirt"
cat >"$DEMO/libvirt/domain.xml" <<XML
<domain type='qemu'>
  <name>$DOMAIN</name><uuid>$VM1</uuid>
  <memory unit='MiB'>64</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <features><acpi/></features>
  <devices><graphics type='vnc' autoport='yes' listen='127.0.0.1'/></devices>
</domain>
XML
chmod -R a+rX "$DEMO"
virsh -q -c qemu:///system define "$DEMO/libvirt/domain.xml" >/dev/null
virsh -q -c qemu:///system start "$DOMAIN" >/dev/null
echo "domain $DOMAIN (uuid $VM1) running on libvirtd as Nova instance vm-1 on host $HOST"

newvol() { local id; id=$(cinder "$VOLUME_URL/volumes" -d "{\"volume\":{\"name\":\"$1\",\"size\":1}}" | jq -r .volume.id); waitstatus "$id" available; echo "$id"; }
attach() { nova "$COMPUTE_URL/servers/$VM1/os-volume_attachments" -d "{\"volumeAttachment\":{\"volumeId\":\"$1\"}}" >/dev/null; waitstatus "$1" in-use; }
HEALTHY=$(newvol healthy); ZOMBIE=$(newvol zombie); STALE=$(newvol stale)
attach "$HEALTHY"; attach "$ZOMBIE"

say "seed a zombie: Nova loses its mapping, then an admin Cinder force-detach (Cinder only)"
curl -sf -H "X-Auth-Token: $ADMIN_TOKEN" -H 'Content-Type: application/json' "$BASE/_sim/forget-nova-mapping" \
  -d "{\"instance_id\":\"$VM1\",\"volume_id\":\"$ZOMBIE\"}" >/dev/null
ATT=$(cinder "$VOLUME_URL/volumes/$ZOMBIE" | jq -r '.volume.attachments[0].attachment_id')
curl -sf -H "X-Auth-Token: $ADMIN_TOKEN" -H 'OpenStack-API-Version: volume 3.44' -H 'Content-Type: application/json' \
  "$(sim2 volume_url_admin)/volumes/$ZOMBIE/action" -d "{\"os-force_detach\":{\"attachment_id\":\"$ATT\"}}"
echo "Cinder says $ZOMBIE is $(volstatus "$ZOMBIE"); libvirt still has it:"
virsh -c qemu:///system domblklist "$DOMAIN" --details | sed '/^$/d'

say "seed a stale Cinder attachment: a record for vm-1 with no disk and no Nova mapping"
SATT=$(cinder "$VOLUME_URL/attachments" -d "{\"attachment\":{\"volume_uuid\":\"$STALE\",\"instance_uuid\":\"$VM1\",\"connector\":{\"host\":\"$HOST\",\"initiator\":\"iqn.demo\"}}}" | jq -r .attachment.id)
cinder "$VOLUME_URL/attachments/$SATT/action" -d '{"os-complete":null}'
echo "Cinder says $STALE is $(volstatus "$STALE")"

R=("$BIN" reconcile --once --os-cloud sim-admin --os-client-config-file "$DEMO/sim2/clouds.yaml"
   --host "$HOST" --libvirt-uri qemu:///system --state-file "$DEMO/reconcile/state.json"
   --audit-log "$DEMO/reconcile/audit.jsonl" --metrics-textfile "$DEMO/reconcile/cinderwarden.prom"
   --min-sightings 2 --min-age 0s --detach-timeout 1s --detach-attempts 2)
run() { local rc=0; "${R[@]}" "$@" || rc=$?; echo "(exit code $rc)"; }

say "reconcile, run 1 (dry-run; a finding must be seen twice before anything is done)"
run
say "reconcile, run 2 with --apply"
run --apply
echo "audit log:"; jq -c '{time, action, volume, result}' "$DEMO/reconcile/audit.jsonl" 2>/dev/null || cat "$DEMO/reconcile/audit.jsonl"
echo "Cinder says $STALE is now $(volstatus "$STALE")"
echo "persistent definition of $DOMAIN now:"; virsh -c qemu:///system domblklist "$DOMAIN" --inactive | sed '/^$/d'

say "the firmware guest never acknowledged the live unplug; a power cycle drops it, as on a real host"
virsh -q -c qemu:///system destroy "$DOMAIN" >/dev/null; virsh -q -c qemu:///system start "$DOMAIN" >/dev/null
say "reconcile, run 3: clean"
run
echo; echo "metrics written for node_exporter:"; grep -E '^cinderwarden_reconcile_(findings|last_success)' "$DEMO/reconcile/cinderwarden.prom" | head -8

say "done"
