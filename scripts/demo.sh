#!/usr/bin/env bash
# make demo: the main job, end to end, on the embedded simulator.
#   1. start `cinderwarden sim` (Keystone, Cinder, Nova, metadata on 127.0.0.1,
#      attachments backed by real loop devices) with two instances;
#   2. talk to it over the real OpenStack HTTP APIs: authenticate, create a
#      Cinder volume, attach it to vm-1 through Nova, find the disk by volume id
#      in vm-1's dev dir, detach it.
# Everything it starts is stopped and cleaned up on exit. Needs root (loop
# devices); run `make substrate` first on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/cinderwarden}
DEMO=${DEMO_DIR:-.demo}

say()  { printf '\n\033[1m== %s\033[0m\n' "$*"; }
need() { command -v "$1" >/dev/null || { echo "demo: needs $1 (make substrate installs it)" >&2; exit 1; }; }
need curl; need jq
[ "$(id -u)" = 0 ] || { echo "demo: needs root (the simulator backs volumes with loop devices)" >&2; exit 1; }

rm -rf "$DEMO"; mkdir -p "$DEMO"
DEMO=$(cd "$DEMO" && pwd)
pids=()
cleanup() {
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

say "done"
