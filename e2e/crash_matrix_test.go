package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cinderwarden/cinderwarden/hostdisk"
	"github.com/cinderwarden/cinderwarden/openstack"
	"github.com/cinderwarden/cinderwarden/simcloud"
	"github.com/cinderwarden/cinderwarden/simcloud/loopnode"
	"github.com/cinderwarden/cinderwarden/volumedriver"
)

// The crash matrix completes the SIGKILL points of sigkill_test.go: the
// plugin binary is SIGKILLed while held in one step of Unmount, Remove,
// Create and both sides of a takeover, restarted, and Docker's retry is
// replayed on its socket. Every row checks the plugin's answers, the
// simulator's event log (CheckExclusive, no double attach), mountinfo (no
// stale mount of the volume on the killed node) and the loop devices.

// crashLatency is the default latency set with one step slowed.
func crashLatency(create, del, detach time.Duration) simcloud.Latencies {
	l := simcloud.Latencies{Create: 50 * time.Millisecond, Delete: 50 * time.Millisecond,
		Attach: 100 * time.Millisecond, Detach: 100 * time.Millisecond}
	if create > 0 {
		l.Create = create
	}
	if del > 0 {
		l.Delete = del
	}
	if detach > 0 {
		l.Detach = detach
	}
	return l
}

// takeoverArgs: preempt on, short grace and watch/sweep intervals.
var takeoverArgs = []string{"--preempt", "on", "--takeover-grace", "1s", "--takeover-watch-interval", "200ms",
	"--takeover-detach-timeout", "10s", "--sweep-interval", "300ms"}

// secondNode adds instance vm-2 with its own socket, node dev dir, mount
// root and state dir to e's simulator (same flags, same extra args).
func (e *env) secondNode(t *testing.T) *env {
	t.Helper()
	b := *e
	b.plugin = nil
	dir := filepath.Join(e.dir, "vm-2")
	var err error
	b.inst, err = e.sim.AddInstance(simcloud.InstanceSpec{Name: "vm-2", Host: "compute-b", NodeDevDir: filepath.Join(dir, "dev")})
	if err != nil {
		t.Fatal(err)
	}
	b.driver = e.driver + "-b"
	b.socket = filepath.Join(dir, "plugin.sock")
	b.mounts = filepath.Join(dir, "mounts")
	b.state = filepath.Join(dir, "state")
	if err := os.MkdirAll(b.mounts, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h, err := hostdisk.New(hostdisk.Config{MountRoot: b.mounts})
		if err != nil {
			return
		}
		vms, _ := h.VolumeMounts()
		for _, m := range vms {
			t.Errorf("vm-2: left mounted after the test: %s", m.Mountpoint)
			_, _ = h.UnmountPath(context.Background(), m.Mountpoint, hostdisk.UnmountEscalate)
		}
	})
	return &b
}

// mountedHere reports whether mountinfo shows the volume under e's mount
// root.
func (e *env) mountedHere(id string) bool {
	e.t.Helper()
	h, err := hostdisk.New(hostdisk.Config{MountRoot: e.mounts})
	if err != nil {
		e.t.Fatal(err)
	}
	vms, err := h.VolumeMounts()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, m := range vms {
		if m.VolumeID == id {
			return true
		}
	}
	return false
}

// requireNotMounted waits (bounded: the sweep runs every 300 ms) until
// mountinfo no longer shows the volume on e's node.
func (e *env) requireNotMounted(id string, within time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for wait := 20 * time.Millisecond; e.mountedHere(id); wait = min(wait*2, 300*time.Millisecond) {
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: volume %s still in mountinfo after %s", e.inst.Name, id, within)
		}
		time.Sleep(wait)
	}
}

// loopDevices is the number of loop devices the simulator holds.
func (e *env) loopDevices() int {
	e.t.Helper()
	devs, err := loopnode.Devices(filepath.Join(e.dir, "sim"))
	if err != nil {
		e.t.Fatal(err)
	}
	return len(devs)
}

// attachedOnlyTo fails unless Cinder shows the volume in-use on exactly
// the one instance.
func (e *env) attachedOnlyTo(id, inst string) *openstack.Volume {
	e.t.Helper()
	v, err := e.cloud.GetVolume(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	if v.Status != "in-use" || len(v.Attachments) != 1 || v.Attachments[0].ServerID != inst {
		e.t.Fatalf("volume %s: %s %+v, want in-use on %s only", id, v.Status, v.Attachments, inst)
	}
	return v
}

func writeSynced(t *testing.T, path, content string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// requestKeysLeft lists the takeover request keys still on the volume.
func requestKeysLeft(v *openstack.Volume) map[string]string {
	left := map[string]string{}
	for _, k := range append(volumedriver.TakeoverKeys(), volumedriver.MetaTakeoverHolder) {
		if val, ok := v.Metadata[k]; ok {
			left[k] = val
		}
	}
	return left
}

type crashRow struct {
	name    string
	latency simcloud.Latencies
	args    []string
	run     func(t *testing.T, e *env)
}

func TestCrashMatrix(t *testing.T) {
	for _, row := range []crashRow{
		{name: "unmount", run: crashUnmount},
		{name: "remove", latency: crashLatency(0, 1500*time.Millisecond, 0), run: crashRemove},
		{name: "create", latency: crashLatency(1500*time.Millisecond, 0, 0), run: crashCreate},
		{name: "taker-req", args: takeoverArgs, run: func(t *testing.T, e *env) { crashTaker(t, e, false) }},
		{name: "taker-nova", args: takeoverArgs, run: func(t *testing.T, e *env) { crashTaker(t, e, true) }},
		{name: "holder", args: takeoverArgs, run: crashHolder},
	} {
		t.Run(row.name, func(t *testing.T) {
			start := time.Now()
			e := newEnv(t, envOptions{latency: row.latency})
			e.extraArg = row.args
			row.run(t, e)
			t.Logf("row took %.1fs", time.Since(start).Seconds())
		})
	}
}

// crashUnmount: killed in the unmount step; Docker's retried Unmount
// succeeds, the volume ends detached, no loop device is left. umount(2)
// itself is atomic for SIGKILL, so the kill lands either before it (the
// filesystem still mounted) or after it (unmounted, not yet detached): the
// row repeats (at most 5 times) until it has seen both.
func crashUnmount(t *testing.T, e *env) {
	p := e.startPlugin("")
	id := e.createVolume("kumt")
	seen := map[bool]int{} // mounted at the kill → times
	for i := 0; i < 5 && (seen[true] == 0 || seen[false] == 0); i++ {
		mid := fmt.Sprintf("m%d", i)
		out := e.mustPost("/VolumeDriver.Mount", map[string]string{"Name": "kumt", "ID": mid})
		mp := out["Mountpoint"].(string)
		// Dirty, unsynced data: the unmount has to write it back.
		big := make([]byte, 8<<20)
		for j := range big {
			big[j] = byte(i + j)
		}
		if err := os.WriteFile(filepath.Join(mp, "big"), big, 0o644); err != nil {
			t.Fatal(err)
		}
		mark := p.mark()
		ch := e.postAsync("/VolumeDriver.Unmount", map[string]string{"Name": "kumt", "ID": mid})
		if _, err := p.waitLogFrom(mark, `msg=step .*step=unmount volume_id=`+id+` state=start`, 20*time.Second); err != nil {
			t.Fatal(err)
		}
		p.kill()
		killedRequest(t, ch)
		mounted := e.mountedHere(id)
		seen[mounted]++
		if v := e.waitCinder(id, time.Second, func(*openstack.Volume) bool { return true }); v.AttachedTo(e.inst.ID) == nil {
			t.Fatalf("detached before the kill: the kill missed the unmount step (%s)", v.Status)
		}

		p = e.startPlugin("")
		// Docker retries the Unmount of the same mount id.
		e.mustPost("/VolumeDriver.Unmount", map[string]string{"Name": "kumt", "ID": mid})
		e.assertDetached(id)
		if e.mountedHere(id) {
			t.Fatal("stale mount after recovery")
		}
		e.checkAttachHistory(id, simcloud.EventDetach)
		// The data written before the kill survived the interrupted unmount.
		out = e.mustPost("/VolumeDriver.Mount", map[string]string{"Name": "kumt", "ID": mid + "-check"})
		got, err := os.ReadFile(filepath.Join(out["Mountpoint"].(string), "big"))
		if err != nil || !bytes.Equal(got, big) {
			t.Fatalf("data after the interrupted unmount: %d bytes, %v", len(got), err)
		}
		e.mustPost("/VolumeDriver.Unmount", map[string]string{"Name": "kumt", "ID": mid + "-check"})
	}
	t.Logf("kills with the filesystem still mounted: %d, after umount(2): %d", seen[true], seen[false])
	e.finish("kumt", id)
}

// crashRemove: killed while Cinder deletes; after the restart the volume
// is gone or a second Remove succeeds; the name is free again.
func crashRemove(t *testing.T, e *env) {
	p := e.startPlugin("")
	id := e.createVolume("krm")
	ch := e.postAsync("/VolumeDriver.Remove", map[string]string{"Name": "krm"})
	e.waitCinder(id, 10*time.Second, func(v *openstack.Volume) bool { return v.Status == "deleting" })
	p.kill()
	killedRequest(t, ch)

	e.startPlugin("")
	start := time.Now()
	code, out, err := e.post("/VolumeDriver.Remove", map[string]string{"Name": "krm"})
	if err != nil || code != 200 {
		t.Fatalf("Remove again after the restart: %d %v %v", code, out, err)
	}
	t.Logf("second Remove answered 200 after %s", time.Since(start).Round(time.Millisecond))
	if _, err := e.cloud.GetVolume(context.Background(), id); !errors.Is(err, openstack.ErrNotFound) {
		t.Fatalf("volume after the second Remove: %v", err)
	}
	if code, out, _ := e.post("/VolumeDriver.Get", map[string]string{"Name": "krm"}); code == 200 {
		t.Fatalf("Get after Remove: %v", out)
	}
	list := e.mustPost("/VolumeDriver.List", map[string]string{})
	if vs, _ := list["Volumes"].([]any); len(vs) != 0 {
		t.Fatalf("List after Remove: %v", list)
	}
	if n := e.checkAttachHistory(id, ""); n != 0 {
		t.Fatalf("%d attaches of a volume never mounted", n)
	}
	if n := e.loopDevices(); n != 0 {
		t.Fatalf("%d loop devices", n)
	}
	// The name is usable again: a new volume, not a resurrected one.
	if nid := e.createVolume("krm"); nid == id {
		t.Fatalf("re-created volume has the deleted id %s", id)
	}
	e.mustPost("/VolumeDriver.Remove", map[string]string{"Name": "krm"})
}

// crashCreate: killed while Cinder creates; a retried Create adopts the
// volume (one Cinder volume with the name), and it mounts.
func crashCreate(t *testing.T, e *env) {
	p := e.startPlugin("")
	ch := e.postAsync("/VolumeDriver.Create", map[string]any{"Name": "kcr", "Opts": map[string]string{"size": "1"}})
	var id string
	deadline := time.Now().Add(10 * time.Second)
	for wait := 10 * time.Millisecond; id == ""; wait = min(wait*2, 100*time.Millisecond) {
		vs, err := e.cloud.ListVolumes(context.Background(), openstack.VolumeFilter{Name: "kcr"})
		if err == nil && len(vs) == 1 && vs[0].Status == "creating" {
			id = vs[0].ID
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no volume kcr in creating: %v %v", vs, err)
		}
		time.Sleep(wait)
	}
	p.kill()
	killedRequest(t, ch)

	e.startPlugin("")
	e.mustPost("/VolumeDriver.Create", map[string]any{"Name": "kcr", "Opts": map[string]string{"size": "1"}})
	vs, err := e.cloud.ListVolumes(context.Background(), openstack.VolumeFilter{})
	if err != nil || len(vs) != 1 || vs[0].ID != id || vs[0].Status != "available" {
		t.Fatalf("after the retried Create: want only %s available, got %+v %v", id, vs, err)
	}
	if got := e.mustPost("/VolumeDriver.Get", map[string]string{"Name": "kcr"}); got["Volume"] == nil {
		t.Fatalf("Get: %v", got)
	}
	e.finish("kcr", id)
	if n := e.loopDevices(); n != 0 {
		t.Fatalf("%d loop devices", n)
	}
}

// takeoverSetup: vm-1 (e) holds volume name mounted as h1 with "from
// holder" written and synced; vm-2 adopted the volume. Returns vm-2 and
// the volume id.
func takeoverSetup(t *testing.T, e *env, name string, opts map[string]string) (*env, string) {
	t.Helper()
	b := e.secondNode(t)
	e.startPlugin("")
	b.startPlugin("")
	e.mustPost("/VolumeDriver.Create", map[string]any{"Name": name, "Opts": opts})
	id := e.volumeByName(name).ID
	b.mustPost("/VolumeDriver.Create", map[string]any{"Name": name})
	if b.volumeByName(name).ID != id {
		t.Fatal("vm-2 did not adopt the volume")
	}
	out := e.mustPost("/VolumeDriver.Mount", map[string]string{"Name": name, "ID": "h1"})
	writeSynced(t, filepath.Join(out["Mountpoint"].(string), "f"), "from holder")
	e.attachedOnlyTo(id, e.inst.ID)
	return b, id
}

// takeoverEnd: vm-2 holds the volume (mount b1) and reads the holder's
// data; vm-1, restarted, has no stale mount and did not attach it again;
// then vm-2 unmounts and nothing is left.
func takeoverEnd(t *testing.T, a, b *env, name, id string, mountpoint string) {
	t.Helper()
	if got, err := os.ReadFile(filepath.Join(mountpoint, "f")); err != nil || string(got) != "from holder" {
		t.Fatalf("vm-2 reads %q %v, want the holder's data", got, err)
	}
	b.attachedOnlyTo(id, b.inst.ID)
	t.Logf("loop devices before vm-1's recovery: %d (2 = vm-1's stale mount still pins its unplugged device)", a.loopDevices())
	if err := simcloud.CheckExclusive(a.sim.Events()); err != nil {
		t.Fatal(err)
	}
	// vm-1 comes back: recovery and the sweep drop its stale mount; it
	// does not take the volume back.
	if a.plugin != nil {
		select {
		case <-a.plugin.done:
			a.startPlugin("")
		default:
		}
	}
	a.requireNotMounted(id, 5*time.Second)
	b.attachedOnlyTo(id, b.inst.ID)
	deadline := time.Now().Add(5 * time.Second)
	for wait := 20 * time.Millisecond; a.loopDevices() != 1; wait = min(wait*2, 300*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d loop devices after vm-1's recovery while vm-2 holds the volume, want 1", a.loopDevices())
		}
		time.Sleep(wait)
	}
	if got, err := os.ReadFile(filepath.Join(mountpoint, "f")); err != nil || string(got) != "from holder" {
		t.Fatalf("vm-2 after vm-1's restart reads %q %v", got, err)
	}
	b.mustPost("/VolumeDriver.Unmount", map[string]string{"Name": name, "ID": "b1"})
	v := b.waitCinder(id, 5*time.Second, func(v *openstack.Volume) bool { return v.Status == "available" })
	if left := requestKeysLeft(v); len(left) != 0 {
		t.Errorf("takeover request keys left after the handoff: %v", left)
	}
	b.requireNotMounted(id, time.Second)
	a.requireNotMounted(id, time.Second)
	if n := a.loopDevices(); n != 0 {
		t.Fatalf("%d loop devices after the last unmount", n)
	}
	evs := a.sim.Events()
	if err := simcloud.CheckExclusive(evs); err != nil {
		t.Fatal(err)
	}
	a.checkAttachHistory(id, simcloud.EventDetach)
	var attaches int
	for _, ev := range evs {
		if ev.VolumeID == id && ev.Kind == simcloud.EventAttach {
			attaches++
		}
	}
	t.Logf("attaches in the event log: %d", attaches)
}

// crashTaker: vm-1's plugin is silent (killed with the volume mounted);
// vm-2 is killed after recording its takeover request (novaWait false) or
// while it waits for Nova to detach vm-1 (novaWait true). Docker's retried
// Mount on the restarted vm-2 gets the volume.
func crashTaker(t *testing.T, a *env, novaWait bool) {
	b, id := takeoverSetup(t, a, "ktk", map[string]string{"size": "1", "preempt": "true"})
	a.plugin.kill() // the silent holder
	if novaWait {
		a.sim.Faults().HangNovaDetach(true)
		t.Cleanup(func() { a.sim.Faults().HangNovaDetach(false) })
	}
	mark := b.plugin.mark()
	ch := b.postAsync("/VolumeDriver.Mount", map[string]string{"Name": "ktk", "ID": "b1"})
	if novaWait {
		if _, err := b.plugin.waitLogFrom(mark, `msg=takeover .*step=nova_detach`, 20*time.Second); err != nil {
			t.Fatal(err)
		}
		b.waitCinder(id, 10*time.Second, func(v *openstack.Volume) bool { return v.Status == "detaching" })
	} else {
		if _, err := b.plugin.waitLogFrom(mark, `msg=takeover .*step=requested`, 20*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	b.plugin.kill()
	killedRequest(t, ch)
	v, err := b.cloud.GetVolume(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("at the kill: status %s, request keys %v", v.Status, requestKeysLeft(v))
	if len(requestKeysLeft(v)) == 0 {
		t.Fatal("the killed taker's request is not on the volume")
	}
	if novaWait {
		// Nova finishes the holder's unplug while vm-2 is down.
		a.sim.Faults().HangNovaDetach(false)
	} else {
		a.attachedOnlyTo(id, a.inst.ID) // nothing was detached yet
	}
	if err := simcloud.CheckExclusive(a.sim.Events()); err != nil {
		t.Fatal(err)
	}

	b.startPlugin("")
	start := time.Now()
	out := b.mustPost("/VolumeDriver.Mount", map[string]string{"Name": "ktk", "ID": "b1"})
	t.Logf("retried Mount on vm-2 answered after %s", time.Since(start).Round(time.Millisecond))
	takeoverEnd(t, a, b, "ktk", id, out["Mountpoint"].(string))
}

// crashHolder: vm-1 holds the volume with a container (mount h1) and the
// volume allows forced takeover; vm-1 releases on vm-2's request and is
// killed in the detach of its release. vm-2's Mount completes; no two
// writers.
func crashHolder(t *testing.T, a *env) {
	b, id := takeoverSetup(t, a, "khd", map[string]string{"size": "1", "preempt": "true", "preempt_force": "true"})
	a.sim.Faults().HangNovaDetach(true)
	t.Cleanup(func() { a.sim.Faults().HangNovaDetach(false) })
	mark := a.plugin.mark()
	ch := b.postAsync("/VolumeDriver.Mount", map[string]string{"Name": "khd", "ID": "b1"})
	if _, err := a.plugin.waitLogFrom(mark, `msg=step .*step=detach volume_id=`+id+` state=start`, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	a.waitCinder(id, 10*time.Second, func(v *openstack.Volume) bool { return v.Status == "detaching" })
	if _, err := a.plugin.waitLogFrom(mark, `msg="takeover request" .*answer=force-release`, time.Second); err != nil {
		t.Fatalf("the holder's detach is not its release: %v", err)
	}
	if a.mountedHere(id) {
		t.Fatal("the holder detaches with its filesystem still mounted")
	}
	a.plugin.kill()
	a.sim.Faults().HangNovaDetach(false)
	start := time.Now()
	var r result
	select {
	case r = <-ch:
	case <-time.After(30 * time.Second):
		t.Fatal("vm-2's Mount did not end")
	}
	if r.err != nil || r.code != 200 {
		t.Fatalf("vm-2's Mount after the holder died mid-release: %d %v %v", r.code, r.body, r.err)
	}
	t.Logf("vm-2's Mount answered %s after the holder's kill", time.Since(start).Round(time.Millisecond))
	takeoverEnd(t, a, b, "khd", id, r.body["Mountpoint"].(string))
}
