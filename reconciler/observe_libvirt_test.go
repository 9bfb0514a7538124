package reconciler_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/attachments"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/volumeattach"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cinderwarden/cinderwarden/internal/cloudconfig"
	"github.com/cinderwarden/cinderwarden/libvirtscan"
	"github.com/cinderwarden/cinderwarden/libvirtscan/libvirttest"
	"github.com/cinderwarden/cinderwarden/openstack"
	"github.com/cinderwarden/cinderwarden/reconciler"
	"github.com/cinderwarden/cinderwarden/simcloud"
	"github.com/cinderwarden/cinderwarden/simcloud/libvirtcompute"
	"github.com/cinderwarden/cinderwarden/simcloud/simtest"
)

const simHost = "compute-1"

// memberClients are plain gophercloud clients of the simulator's member
// user: the tenant who attaches volumes through Nova.
type memberClients struct{ volume, compute *gophercloud.ServiceClient }

func member(t testing.TB, c simcloud.Credentials) memberClients {
	t.Helper()
	sc := simtest.Connect(t, c, "3.44", "2.79")
	return memberClients{volume: sc.Volume, compute: sc.Compute}
}

// adminClient is cinderwarden's own client, configured the way the command
// does it: clouds.yaml → cloudconfig → openstack.New.
func adminClient(t testing.TB, sim *simcloud.Sim) *openstack.Client {
	t.Helper()
	path := filepath.Join(t.TempDir(), "clouds.yaml")
	if err := sim.WriteCloudsYAML(path); err != nil {
		t.Fatal(err)
	}
	cfg, err := cloudconfig.Resolve(cloudconfig.Options{Cloud: simcloud.CloudAdmin, CloudsFile: path})
	if err != nil {
		t.Fatal(err)
	}
	c, err := openstack.New(context.Background(), cfg, openstack.Options{Registerer: prometheus.NewRegistry(), RequireCompute: true})
	if err != nil {
		t.Fatalf("openstack client: %v", err)
	}
	return c
}

func createVolume(t *testing.T, ctx context.Context, c *openstack.Client, m memberClients, name string) string {
	t.Helper()
	v, err := volumes.Create(ctx, m.volume, volumes.CreateOpts{Size: 1, Name: name}, nil).Extract()
	if err != nil {
		t.Fatalf("create volume %s: %v", name, err)
	}
	if _, err := c.WaitVolume(ctx, v.ID, openstack.StatusIs("available")); err != nil {
		t.Fatal(err)
	}
	return v.ID
}

// novaAttach attaches through Nova (gophercloud over HTTP); the simulator's
// libvirt compute backend hot-plugs the disk into the real domain.
func novaAttach(t *testing.T, ctx context.Context, c *openstack.Client, m memberClients, inst, vol string) *openstack.Volume {
	t.Helper()
	if _, err := volumeattach.Create(ctx, m.compute, inst, volumeattach.CreateOpts{VolumeID: vol}).Extract(); err != nil {
		t.Fatalf("nova attach %s: %v", vol, err)
	}
	v, err := c.WaitVolume(ctx, vol, openstack.AttachedTo(inst))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// zombie attaches through Nova, then makes Nova forget the mapping and
// force-detaches in Cinder as admin: the disk stays in the domain.
func zombie(t *testing.T, ctx context.Context, sim *simcloud.Sim, c *openstack.Client, m memberClients, inst, name string) string {
	t.Helper()
	vol := createVolume(t, ctx, c, m, name)
	v := novaAttach(t, ctx, c, m, inst, vol)
	if n, err := sim.ForgetNovaMapping(inst, vol); err != nil || n != 1 {
		t.Fatalf("forget Nova mapping of %s: %d, %v", vol, n, err)
	}
	if err := c.ForceDetach(ctx, vol, v.Attachments[0].AttachmentID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitVolume(ctx, vol, openstack.StatusIs("available")); err != nil {
		t.Fatal(err)
	}
	return vol
}

func findingsFor(r reconciler.Result, inst string) map[string]reconciler.Finding {
	out := map[string]reconciler.Finding{}
	for _, f := range r.Findings {
		if f.Instance == inst {
			out[string(f.Class)+"/"+f.Volume] = f
		}
	}
	return out
}

func actionFor(t *testing.T, r reconciler.Result, inst string, kind reconciler.ActionKind, vol string) reconciler.Action {
	t.Helper()
	for _, a := range r.Actions {
		if a.Kind == kind && a.Volume == vol && a.Instance == inst {
			return a
		}
	}
	t.Fatalf("no %s action for volume %s in %+v", kind, vol, r.Actions)
	return reconciler.Action{}
}

func diskIn(def *libvirtscan.Definition, serial string) bool {
	if def == nil {
		return false
	}
	for _, d := range def.Disks {
		if d.Serial == serial {
			return true
		}
	}
	return false
}

// TestReconcileRealLibvirtAndSim runs observe → plan → act against a real
// qemu TCG firmware-only domain that the simulator's libvirt compute driver
// attaches to, and the simulator's Cinder and Nova over HTTP:
//
//   - a zombie (Nova attach, Nova forgets, Cinder force-detach) is found as
//     zombie_disk; a stale Cinder attachment (created and completed in
//     Cinder for the instance, never in the domain) as
//     stale_cinder_attachment; a second zombie whose volume is reset to
//     detaching is skipped, and so is an attachment only reserved for the
//     instance (seen only through GET /attachments);
//   - seen once with MinSightings 2 nothing is acted on; with a cap of one
//     action per run, one is ready and the other deferred;
//   - with --apply on the second run the zombie leaves the persistent
//     config while the live removal is reported pending (the firmware never
//     acknowledges), the stale attachment is deleted, the detaching volume's
//     disk is untouched, and every action is in the audit log;
//   - a Cinder listing failing on page 3 aborts every action.
func TestReconcileRealLibvirtAndSim(t *testing.T) {
	conn := libvirttest.Dial(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Second)
	defer cancel()
	fw := libvirttest.FirmwareDomain(t, conn, libvirttest.FirmwareOptions{})
	sim, m, cloud, inst := simOnDomain(t, conn, fw.UUID, fw.Name)

	zVol := zombie(t, ctx, sim, cloud, m, inst.ID, "zombie")
	dVol := zombie(t, ctx, sim, cloud, m, inst.ID, "zombie-detaching")
	if err := cloud.ResetStatus(ctx, dVol, openstack.ResetStatusOpts{Status: "detaching"}); err != nil {
		t.Fatal(err)
	}
	healthy := createVolume(t, ctx, cloud, m, "healthy")
	novaAttach(t, ctx, cloud, m, inst.ID, healthy)
	sVol := createVolume(t, ctx, cloud, m, "stale")
	att, err := attachments.Create(ctx, m.volume, attachments.CreateOpts{VolumeUUID: sVol, InstanceUUID: inst.ID,
		Connector: map[string]any{"host": simHost, "initiator": "iqn.1993-08.org.debian:01:test"}}).Extract()
	if err != nil {
		t.Fatalf("create Cinder attachment: %v", err)
	}
	if err := attachments.Complete(ctx, m.volume, att.ID).ExtractErr(); err != nil {
		t.Fatalf("complete Cinder attachment: %v", err)
	}
	// A Cinder attachment reserved for the instance (no connector yet):
	// the volume is "reserved", the record shows only in GET /attachments.
	rVol := createVolume(t, ctx, cloud, m, "reserved")
	reserved, err := attachments.Create(ctx, m.volume, attachments.CreateOpts{VolumeUUID: rVol, InstanceUUID: inst.ID}).Extract()
	if err != nil {
		t.Fatalf("reserve volume: %v", err)
	}
	for range 3 { // more in-use volumes so the in-use listing has ≥ 3 pages of 1
		novaAttach(t, ctx, cloud, m, inst.ID, createVolume(t, ctx, cloud, m, "filler"))
	}

	dir := t.TempDir()
	audit, err := reconciler.OpenAuditLog(filepath.Join(dir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = audit.Close() })
	obs := &reconciler.Observer{Host: simHost, Libvirt: conn, Cloud: cloud}
	actor := &reconciler.Actor{Observer: obs, Audit: audit, Detach: libvirtscan.DetachOptions{Timeout: 300 * time.Millisecond, Attempts: 2}}
	pol := reconciler.Policy{MinSightings: 2, MinAge: 0, MaxActions: 5}
	now := time.Now()

	// Run 1: dry-run, seen once.
	o1 := obs.Observe(ctx)
	for name, s := range map[string]reconciler.SourceStatus{"libvirt": o1.Libvirt.Source, "nova": o1.Nova.Source, "cinder": o1.Cinder.Source} {
		if s.State != reconciler.SourceOK {
			t.Fatalf("%s source %+v", name, s)
		}
	}
	r1 := reconciler.Plan(o1, reconciler.NewMemory(), pol, now)
	if r1.Aborted {
		t.Fatalf("run 1 aborted: %v", r1.AbortReasons)
	}
	got := findingsFor(r1, inst.ID)
	if f, ok := got["zombie_disk/"+zVol]; !ok || f.Skipped != "" || f.Sightings != 1 {
		t.Errorf("zombie %s: %+v (found %v)", zVol, f, ok)
	}
	if f, ok := got["zombie_disk/"+dVol]; !ok || !strings.Contains(f.Skipped, "detaching") {
		t.Errorf("detaching zombie %s: %+v, want skipped for detaching", dVol, f)
	}
	if f, ok := got["stale_cinder_attachment/"+sVol]; !ok || f.Attachment != att.ID {
		t.Errorf("stale attachment %s: %+v", att.ID, f)
	}
	if f, ok := got["stale_cinder_attachment/"+rVol]; !ok || f.Attachment != reserved.ID || !strings.Contains(f.Skipped, "reserved") {
		t.Errorf("reserved attachment %s: %+v (found %v), want skipped as reserved", reserved.ID, f, ok)
	}
	for k, f := range got {
		if strings.HasSuffix(k, healthy) && f.Severity != reconciler.SeverityInfo {
			t.Errorf("healthy volume reported: %s", k)
		}
	}
	if a := actionFor(t, r1, inst.ID, reconciler.ActionLibvirtDetach, zVol); a.State != reconciler.StateWaiting {
		t.Errorf("seen once: %s %s, want waiting", a.State, a.Reason)
	}
	if ex := r1.Executable(); len(ex) != 0 {
		t.Errorf("run 1 executable: %+v", ex)
	}

	// Run 2: --apply, seen twice.
	pol.Apply = true
	o2 := obs.Observe(ctx)
	r2 := reconciler.Plan(o2, r1.Memory, pol, now.Add(time.Minute))
	if r2.Aborted {
		t.Fatalf("run 2 aborted: %v", r2.AbortReasons)
	}
	capPol := pol
	capPol.MaxActions = 1
	capped := reconciler.Plan(o2, r1.Memory, capPol, now.Add(time.Minute))
	deferred := 0
	for _, a := range capped.Actions {
		if a.State == reconciler.StateDeferred {
			deferred++
		}
	}
	if n := len(capped.Executable()); n != 1 || deferred != 1 {
		t.Errorf("cap of 1: %d executable, %d deferred; want 1 and 1", n, deferred)
	}
	if err := actor.Execute(ctx, &r2); err != nil {
		t.Fatal(err)
	}
	za := actionFor(t, r2, inst.ID, reconciler.ActionLibvirtDetach, zVol)
	if za.State != reconciler.StatePending || !strings.Contains(za.Reason, "pending") {
		t.Errorf("zombie detach on the firmware guest: %s %q, want pending", za.State, za.Reason)
	}
	if a := actionFor(t, r2, inst.ID, reconciler.ActionCinderAttachmentDelete, sVol); a.State != reconciler.StateDone {
		t.Errorf("stale attachment delete: %s %q", a.State, a.Reason)
	}
	if a := actionFor(t, r2, inst.ID, reconciler.ActionLibvirtDetach, dVol); a.State != reconciler.StateBlocked {
		t.Errorf("detaching zombie: %s %q, want blocked", a.State, a.Reason)
	}
	dom, err := conn.Domain(ctx, fw.UUID)
	if err != nil {
		t.Fatal(err)
	}
	if diskIn(dom.Config, zVol) || !diskIn(dom.Live, zVol) {
		t.Errorf("zombie %s: in config %v (want false), live %v (want true: unplug never acknowledged)", zVol, diskIn(dom.Config, zVol), diskIn(dom.Live, zVol))
	}
	if !diskIn(dom.Config, dVol) || !diskIn(dom.Live, dVol) || !diskIn(dom.Config, healthy) {
		t.Errorf("untouched disks changed: detaching %v/%v healthy %v", diskIn(dom.Config, dVol), diskIn(dom.Live, dVol), diskIn(dom.Config, healthy))
	}
	if _, err := cloud.GetAttachment(ctx, att.ID); err == nil {
		t.Errorf("attachment %s still exists", att.ID)
	}
	recs := readAudit(t, filepath.Join(dir, "audit.jsonl"))
	if len(recs) != 2 {
		t.Fatalf("audit log has %d records, want 2: %+v", len(recs), recs)
	}
	for _, rec := range recs {
		if rec["before"] == nil || rec["after"] == nil || rec["host"] != simHost {
			t.Errorf("audit record lacks before/after/host: %v", rec)
		}
	}
	if got := reconciler.ExitCode(r2); got != reconciler.ExitFindings {
		t.Errorf("exit code %d, want %d", got, reconciler.ExitFindings)
	}

	// Run 2b: --apply again. The pending live detach is remembered, so the
	// zombie gets one live retry of RetryTimeout, not Timeout × Attempts
	// again, and is reported still pending, with since when.
	zkey := za.FindingKey
	p2, ok := r2.Memory.PendingDetaches[zkey]
	if !ok || p2.Attempts != 2 || p2.Domain != fw.UUID || p2.Volume != zVol {
		t.Fatalf("run 2 memory: pending detach %+v (present %v), want 2 attempts on %s/%s", p2, ok, fw.UUID, zVol)
	}
	mem2, err := reconciler.LoadMemory(saveMemory(t, dir, r2.Memory))
	if err != nil {
		t.Fatal(err)
	}
	r2b := reconciler.Plan(obs.Observe(ctx), mem2, pol, now.Add(90*time.Second))
	retry := actionFor(t, r2b, inst.ID, reconciler.ActionLibvirtDetach, zVol)
	if !retry.LiveRetry || retry.Config || !retry.Live || retry.State != reconciler.StateReady {
		t.Fatalf("run 2b zombie action %+v, want a ready live-only retry", retry)
	}
	if f := findingsFor(r2b, inst.ID)["zombie_disk/"+zVol]; !strings.Contains(f.Detail, "live detach pending since") || !f.LiveDetachPendingSince.Equal(p2.Since) {
		t.Errorf("run 2b finding %+v, want the pending note since %s", f, p2.Since)
	}
	actor.RetryTimeout = 100 * time.Millisecond
	start := time.Now()
	if err := actor.Execute(ctx, &r2b); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	retry = actionFor(t, r2b, inst.ID, reconciler.ActionLibvirtDetach, zVol)
	if retry.State != reconciler.StatePending || !strings.Contains(retry.Reason, "still pending since") {
		t.Errorf("run 2b retry: %s %q, want still pending", retry.State, retry.Reason)
	}
	if p := r2b.Memory.PendingDetaches[zkey]; p.Attempts != 3 || !p.Since.Equal(p2.Since) {
		t.Errorf("run 2b memory: %+v, want 3 attempts (one more) since %s", p, p2.Since)
	}
	recs = readAudit(t, filepath.Join(dir, "audit.jsonl"))
	last := recs[len(recs)-1]
	detach, _ := last["after"].(map[string]any)["detach"].(map[string]any)
	if len(recs) != 3 || last["result"] != "pending" || detach["live_attempts"] != 1.0 {
		t.Errorf("run 2b audit: %d records, last %v; want a third, pending, with live_attempts 1", len(recs), last)
	}
	t.Logf("run 2b: one live retry in %s (run 2 spent %d attempts of %s)", took.Round(time.Millisecond), p2.Attempts, actor.Detach.Timeout)
	if dom, err := conn.Domain(ctx, fw.UUID); err != nil || diskIn(dom.Config, zVol) || !diskIn(dom.Live, zVol) {
		t.Errorf("after the retry: config %v live %v (%v), want live only", diskIn(dom.Config, zVol), diskIn(dom.Live, zVol), err)
	}

	// Run 3: Cinder listing page 3 fails → aborted, nothing executable.
	sim.Faults().FailPage(simcloud.OpVolumeList, 3, 503)
	paged := &reconciler.Observer{Host: simHost, Libvirt: conn, Cloud: cloud, PageSize: 1}
	o3 := paged.Observe(ctx)
	if o3.Cinder.Source.State != reconciler.SourceFailed || !strings.Contains(o3.Cinder.Source.Reason, "page 3") {
		t.Errorf("cinder source %+v, want failed on page 3", o3.Cinder.Source)
	}
	r3 := reconciler.Plan(o3, r2b.Memory, pol, now.Add(2*time.Minute))
	if !r3.Aborted || len(r3.Executable()) != 0 || reconciler.ExitCode(r3) != reconciler.ExitError {
		t.Errorf("page-3 failure: aborted %v, executable %d, exit %d", r3.Aborted, len(r3.Executable()), reconciler.ExitCode(r3))
	}
	for _, a := range r3.Actions {
		if a.State != reconciler.StateAborted {
			t.Errorf("action %s %s is %s, want aborted", a.Kind, a.Volume, a.State)
		}
	}
	if _, ok := r3.Memory.PendingDetaches[zkey]; !ok {
		t.Errorf("aborted run forgot the pending live detach")
	}
}

func saveMemory(t *testing.T, dir string, m reconciler.Memory) string {
	t.Helper()
	path := filepath.Join(dir, "memory.json")
	if err := reconciler.SaveMemory(path, m); err != nil {
		t.Fatal(err)
	}
	return path
}

// simOnDomain starts a simulator whose libvirt compute backend maps one
// Nova instance on simHost (id = the domain uuid, as with real Nova) to the
// domain.
func simOnDomain(t *testing.T, conn *libvirtscan.Conn, uuid, name string) (*simcloud.Sim, memberClients, *openstack.Client, simcloud.Instance) {
	t.Helper()
	backend, err := libvirtcompute.New(libvirtcompute.Options{Conn: conn, Domains: map[string]string{uuid: name},
		Detach: libvirtscan.DetachOptions{Timeout: 300 * time.Millisecond, Attempts: 1}})
	if err != nil {
		t.Fatal(err)
	}
	// A seed of its own: other tests' simulators (seed 1) generate the same
	// volume ids, and their domains share this libvirtd.
	sim, err := simcloud.Start(context.Background(), simcloud.Options{Seed: uint64(time.Now().UnixNano()) | 1,
		StateDir: libvirttest.SharedDir(t), Backends: []simcloud.ComputeBackend{backend}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		backend.SetDomain(uuid, "") // a firmware guest would refuse the detach on Close
		if err := sim.Close(); err != nil {
			t.Errorf("close simulator: %v", err)
		}
	})
	inst, err := sim.AddInstance(simcloud.InstanceSpec{ID: uuid, Host: simHost})
	if err != nil {
		t.Fatal(err)
	}
	return sim, member(t, sim.Member()), adminClient(t, sim), inst
}

// TestReconcileLinuxGuestZombie: on a qemu TCG domain booting a real Linux
// kernel (it acknowledges ACPI hot-unplug), --apply removes a zombie disk
// from both definitions and sees libvirt's DEVICE_REMOVED event: the action
// is done, not pending.
func TestReconcileLinuxGuestZombie(t *testing.T) {
	conn := libvirttest.Dial(t, "")
	g := libvirttest.LinuxDomain(t, conn)
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Second)
	defer cancel()
	sim, m, cloud, inst := simOnDomain(t, conn, g.UUID, g.Name)
	zVol := zombie(t, ctx, sim, cloud, m, inst.ID, "zombie")

	audit, err := reconciler.OpenAuditLog(filepath.Join(t.TempDir(), "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer audit.Close()
	obs := &reconciler.Observer{Host: simHost, Libvirt: conn, Cloud: cloud}
	res := reconciler.Plan(obs.Observe(ctx), reconciler.NewMemory(), reconciler.Policy{Apply: true, MinSightings: 1, MaxActions: 5}, time.Now())
	if res.Aborted {
		t.Fatalf("aborted: %v", res.AbortReasons)
	}
	if f := findingsFor(res, inst.ID)["zombie_disk/"+zVol]; f.Class != reconciler.ClassZombieDisk {
		t.Fatalf("no zombie finding for %s: %+v", zVol, res.Findings)
	}
	actor := &reconciler.Actor{Observer: obs, Audit: audit, Detach: libvirtscan.DetachOptions{Timeout: 10 * time.Second, Attempts: 3}}
	if err := actor.Execute(ctx, &res); err != nil {
		t.Fatal(err)
	}
	a := actionFor(t, res, inst.ID, reconciler.ActionLibvirtDetach, zVol)
	if a.State != reconciler.StateDone || !strings.Contains(a.Reason, "device-removed event seen: true") {
		t.Errorf("zombie detach on the Linux guest: %s %q, want done with the device-removed event", a.State, a.Reason)
	}
	dom, err := conn.Domain(ctx, g.UUID)
	if err != nil {
		t.Fatal(err)
	}
	if diskIn(dom.Config, zVol) || diskIn(dom.Live, zVol) {
		t.Errorf("zombie %s still in config %v / live %v", zVol, diskIn(dom.Config, zVol), diskIn(dom.Live, zVol))
	}
}

func readAudit(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}
