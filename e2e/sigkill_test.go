package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cinderwarden/cinderwarden/hostdisk"
	"github.com/cinderwarden/cinderwarden/openstack"
	"github.com/cinderwarden/cinderwarden/simcloud"
	"github.com/cinderwarden/cinderwarden/simcloud/loopnode"
)

// The SIGKILL tests drive the plugin binary through its socket, kill it
// with SIGKILL while one volume is held in a step (observed in the
// plugin's log and the simulator's state), restart it, and prove: the
// restarted plugin reconciled before serving (the volume is in the right
// state the moment the socket answers), no attachment is leaked, the event
// log shows no double attach, and the next Mount/Unmount/Remove work.

type result struct {
	code int
	body map[string]any
	err  error
}

// postAsync sends a request in the background.
func (e *env) postAsync(path string, body any) <-chan result {
	ch := make(chan result, 1)
	go func() {
		code, out, err := e.post(path, body)
		ch <- result{code, out, err}
	}()
	return ch
}

// killedRequest checks that a request in flight when the plugin was killed
// did not report success.
func killedRequest(t *testing.T, ch <-chan result) {
	t.Helper()
	select {
	case r := <-ch:
		if r.err == nil && r.code == 200 {
			t.Errorf("request in flight during SIGKILL succeeded: %v", r.body)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("request in flight during SIGKILL did not end")
	}
}

// waitCinder polls Cinder until cond holds (bounded).
func (e *env) waitCinder(id string, timeout time.Duration, cond func(*openstack.Volume) bool) *openstack.Volume {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for d := 10 * time.Millisecond; ; d = min(d*2, 200*time.Millisecond) {
		v, err := e.cloud.GetVolume(context.Background(), id)
		if err == nil && cond(v) {
			return v
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("volume %s: condition not met after %s (last %+v, %v)", id, timeout, v, err)
		}
		time.Sleep(d)
	}
}

// assertDetached: Cinder shows no attachment, nothing is mounted under the
// mount root, and the simulator holds no loop device for the volume.
func (e *env) assertDetached(id string) {
	e.t.Helper()
	v, err := e.cloud.GetVolume(context.Background(), id)
	if err != nil || v.Status != "available" || len(v.Attachments) != 0 {
		e.t.Fatalf("volume %s not cleanly detached: %+v %v", id, v, err)
	}
	h, err := hostdisk.New(hostdisk.Config{MountRoot: e.mounts})
	if err != nil {
		e.t.Fatal(err)
	}
	if st, _, err := h.StateOf(filepath.Join(e.mounts, id)); err != nil || st != hostdisk.StateNotMounted {
		e.t.Fatalf("volume %s: mountpoint %s %v", id, st, err)
	}
	devs, err := loopnode.Devices(filepath.Join(e.dir, "sim"))
	if err != nil {
		e.t.Fatal(err)
	}
	if len(devs) != 0 {
		e.t.Fatalf("loop devices still attached: %+v", devs)
	}
}

// createVolume creates a managed volume through the socket.
func (e *env) createVolume(name string) string {
	e.t.Helper()
	e.mustPost("/VolumeDriver.Create", map[string]any{"Name": name, "Opts": map[string]string{"size": "1"}})
	return e.volumeByName(name).ID
}

// finish mounts, writes, unmounts and removes the volume with a fresh
// mount id: the restarted plugin's refcounts and records are right.
func (e *env) finish(name, id string) {
	e.t.Helper()
	out := e.mustPost("/VolumeDriver.Mount", map[string]string{"Name": name, "ID": "after-restart"})
	mp, _ := out["Mountpoint"].(string)
	if mp != filepath.Join(e.mounts, id, "data") {
		e.t.Fatalf("Mount after restart: %v", out)
	}
	if err := os.WriteFile(filepath.Join(mp, "f"), []byte("ok"), 0o644); err != nil {
		e.t.Fatal(err)
	}
	e.mustPost("/VolumeDriver.Unmount", map[string]string{"Name": name, "ID": "after-restart"})
	e.assertDetached(id)
	e.mustPost("/VolumeDriver.Remove", map[string]string{"Name": name})
	if _, err := e.cloud.GetVolume(context.Background(), id); !errors.Is(err, openstack.ErrNotFound) {
		e.t.Fatalf("after Remove: %v", err)
	}
	e.checkAttachHistory(id, simcloud.EventDetach)
}

func TestKillDuringAttach(t *testing.T) {
	e := newEnv(t, envOptions{latency: simcloud.Latencies{Create: 50 * time.Millisecond, Delete: 50 * time.Millisecond,
		Attach: 1500 * time.Millisecond, Detach: 100 * time.Millisecond}})
	p := e.startPlugin("")
	id := e.createVolume("katt")
	mark := p.mark()
	ch := e.postAsync("/VolumeDriver.Mount", map[string]string{"Name": "katt", "ID": "m1"})
	if _, err := p.waitLogFrom(mark, `msg=step .*step=attach volume_id=`+id+` state=start`, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	// Nova accepted the attach; the compute host has not finished it.
	e.waitCinder(id, 10*time.Second, func(v *openstack.Volume) bool { return v.Status == "reserved" || v.Status == "attaching" })
	p.kill()
	killedRequest(t, ch)

	p2 := e.startPlugin("")
	if _, err := p2.waitLog(`code=rolled-back`, time.Second); err != nil {
		t.Error(err)
	}
	// Recovery waited for the attach in flight and released it before serving.
	e.assertDetached(id)
	e.finish("katt", id)
	if n := e.checkAttachHistory(id, simcloud.EventDetach); n != 2 {
		t.Errorf("%d attaches, want 2 (the interrupted one, rolled back, and the next mount)", n)
	}
}

func TestKillDuringDeviceWait(t *testing.T) {
	e := newEnv(t, envOptions{})
	// The first plugin looks for devices where udev never creates them, so
	// it stays in the device wait.
	slow := filepath.Join(e.dir, "slow-udev")
	if err := os.MkdirAll(slow, 0o755); err != nil {
		t.Fatal(err)
	}
	p := e.startPlugin(slow)
	id := e.createVolume("kdev")
	mark := p.mark()
	ch := e.postAsync("/VolumeDriver.Mount", map[string]string{"Name": "kdev", "ID": "m1"})
	if _, err := p.waitLogFrom(mark, `msg=step .*step=wait-device volume_id=`+id+` state=start`, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if v := e.waitCinder(id, time.Second, func(v *openstack.Volume) bool { return v.Status == "in-use" }); v.AttachedTo(e.inst.ID) == nil {
		t.Fatalf("not attached here during the device wait: %+v", v)
	}
	p.kill()
	killedRequest(t, ch)

	e.startPlugin("")
	// Attached, no container recorded: recovery detached it before serving.
	e.assertDetached(id)
	e.finish("kdev", id)
}

func TestKillDuringMount(t *testing.T) {
	e := newEnv(t, envOptions{})
	p := e.startPlugin("")
	id := e.createVolume("kmnt")
	// Format once, so the killed mount is a plain mount(2) of a filesystem.
	e.mustPost("/VolumeDriver.Mount", map[string]string{"Name": "kmnt", "ID": "m0"})
	e.mustPost("/VolumeDriver.Unmount", map[string]string{"Name": "kmnt", "ID": "m0"})
	mark := p.mark()
	ch := e.postAsync("/VolumeDriver.Mount", map[string]string{"Name": "kmnt", "ID": "m1"})
	if _, err := p.waitLogFrom(mark, `msg=step .*step=mount volume_id=`+id+` state=start`, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	p.kill()
	r := <-ch
	p = e.startPlugin("")
	if r.err == nil && r.code == 200 {
		// The answer beat the kill: m1 was recorded before Docker heard
		// success, so the restarted plugin must still hold it.
		v := e.waitCinder(id, time.Second, func(v *openstack.Volume) bool { return true })
		if v.Status != "in-use" {
			t.Fatalf("m1 answered, but after the restart the volume is %s", v.Status)
		}
		e.mustPost("/VolumeDriver.Unmount", map[string]string{"Name": "kmnt", "ID": "m1"})
	}
	// Either way, no container holds it now: recovery (or the unmount)
	// unmounted and detached it.
	e.assertDetached(id)

	// Refcounts survive a SIGKILL: two mount ids, kill, restart; the
	// volume stays mounted for both and detaches after the second Unmount.
	out := e.mustPost("/VolumeDriver.Mount", map[string]string{"Name": "kmnt", "ID": "c1"})
	e.mustPost("/VolumeDriver.Mount", map[string]string{"Name": "kmnt", "ID": "c2"})
	mp := out["Mountpoint"].(string)
	if err := os.WriteFile(filepath.Join(mp, "g"), []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	p.kill()
	e.startPlugin("") // stopped by the test's cleanup
	if b, err := os.ReadFile(filepath.Join(mp, "g")); err != nil || string(b) != "kept" {
		t.Fatalf("a running container's mount was disturbed by the restart: %q %v", b, err)
	}
	if out := e.mustPost("/VolumeDriver.Path", map[string]string{"Name": "kmnt"}); out["Mountpoint"] != mp {
		t.Fatalf("Path after restart: %v", out)
	}
	e.mustPost("/VolumeDriver.Unmount", map[string]string{"Name": "kmnt", "ID": "c1"})
	if v := e.waitCinder(id, time.Second, func(*openstack.Volume) bool { return true }); v.Status != "in-use" {
		t.Fatalf("after one of two unmounts: %s", v.Status)
	}
	e.mustPost("/VolumeDriver.Unmount", map[string]string{"Name": "kmnt", "ID": "c2"})
	e.assertDetached(id)
	e.finish("kmnt", id)
}

func TestKillDuringDetach(t *testing.T) {
	e := newEnv(t, envOptions{})
	p := e.startPlugin("")
	id := e.createVolume("kdet")
	e.mustPost("/VolumeDriver.Mount", map[string]string{"Name": "kdet", "ID": "m1"})
	e.sim.Faults().HangNovaDetach(true)
	t.Cleanup(func() { e.sim.Faults().HangNovaDetach(false) })
	mark := p.mark()
	ch := e.postAsync("/VolumeDriver.Unmount", map[string]string{"Name": "kdet", "ID": "m1"})
	if _, err := p.waitLogFrom(mark, `msg=step .*step=detach volume_id=`+id+` state=start`, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	e.waitCinder(id, 10*time.Second, func(v *openstack.Volume) bool { return v.Status == "detaching" })
	p.kill()
	killedRequest(t, ch)
	// The compute host finishes the unplug while the plugin is down.
	e.sim.Faults().HangNovaDetach(false)

	p2 := e.startPlugin("")
	if _, err := p2.waitLog(`code=rolled-back`, time.Second); err != nil {
		t.Error(err)
	}
	e.assertDetached(id)
	e.finish("kdet", id)
}

// TestPluginSIGTERM: the socket is 0660 and the state dir 0700 while
// serving; SIGTERM stops the plugin cleanly (exit 0, socket removed) and
// leaves a mounted volume mounted for its running container.
func TestPluginSIGTERM(t *testing.T) {
	e := newEnv(t, envOptions{})
	p := e.startPlugin("")
	for path, want := range map[string]os.FileMode{e.socket: 0o660, e.state: 0o700} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
		}
	}
	id := e.createVolume("kterm")
	out := e.mustPost("/VolumeDriver.Mount", map[string]string{"Name": "kterm", "ID": "c1"})
	p.stop()
	if code := p.exitCode(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	if _, err := os.Lstat(e.socket); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left after SIGTERM: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out["Mountpoint"].(string))); err != nil {
		t.Fatalf("the container's mount went away with the plugin: %v", err)
	}
	e.startPlugin("")
	e.mustPost("/VolumeDriver.Unmount", map[string]string{"Name": "kterm", "ID": "c1"})
	e.assertDetached(id)
}

// TestBadInputThroughBinary: the built plugin answers malformed and
// invalid requests on its socket with the exact messages of the
// bad-input table (volumedriver's TestBadInputOverSocket runs all rows).
func TestBadInputThroughBinary(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.startPlugin("")
	for _, tc := range []struct{ path, body, want string }{
		{"/VolumeDriver.Create", `{"Name":`, `malformed request: truncated JSON body: unexpected EOF`},
		{"/VolumeDriver.Create", `{"Name":"v1","Opts":{"sise":"1"}}`,
			`unknown option "sise": valid options: availability_zone, description, fstype, preempt, preempt_force, size, snapshot, source, type`},
		{"/VolumeDriver.Create", `{"Name":"v1","Opts":{"size":"9"}}`, `option size="9": exceeds the maximum of 8 GiB`},
		{"/VolumeDriver.Mount", `{"Name":"my/vol","ID":"m1"}`,
			`volume name "my/vol" is invalid: character '/' at position 3 is not allowed (allowed: letters, digits, '_', '.', '-')`},
		{"/VolumeDriver.Unmount", `{"Name":"v1","ID":""}`, `malformed request: mount ID is required`},
	} {
		code, out, err := e.post(tc.path, tc.body)
		if err != nil || code != 500 || out["Err"] != tc.want {
			t.Errorf("%s %s: %d %v %v, want Err %q", tc.path, tc.body, code, out, err, tc.want)
		}
	}
	if vs, err := e.cloud.ListVolumes(context.Background(), openstack.VolumeFilter{}); err != nil || len(vs) != 0 {
		t.Errorf("bad requests created volumes: %v %v", vs, err)
	}
}
