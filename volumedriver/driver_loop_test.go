package volumedriver

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/go-plugins-helpers/volume"

	"github.com/cinderwarden/cinderwarden/hostdisk"
	"github.com/cinderwarden/cinderwarden/internal/testenv"
	"github.com/cinderwarden/cinderwarden/openstack"
	"github.com/cinderwarden/cinderwarden/simcloud"
)

func newLoopNode(t *testing.T) *simNode {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "mkfs.ext4", "blkid")
	return newSimNode(t, simNodeOptions{loop: true, latency: simcloud.Latencies{
		Create: 20 * time.Millisecond, Delete: 20 * time.Millisecond,
		Attach: 100 * time.Millisecond, Detach: 100 * time.Millisecond}})
}

func (n *simNode) volume(t *testing.T, name string) *openstack.Volume {
	t.Helper()
	v, err := n.drv.resolve(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestDriverLifecycle drives the Driver in-process against the simulator
// with real loop devices, mkfs and mount: create (managed metadata), two
// mount ids share one attachment, data survives a detach, Remove refuses
// while attached and deletes afterwards.
func TestDriverLifecycle(t *testing.T) {
	n := newLoopNode(t)
	d := n.drv
	if err := d.Create(&volume.CreateRequest{Name: "v1", Options: map[string]string{"size": "1"}}); err != nil {
		t.Fatal(err)
	}
	v := n.volume(t, "v1")
	if v.Status != "available" || v.SizeGiB != 1 || v.Metadata[MetaManaged] != "true" || v.Metadata[MetaFSType] != "ext4" ||
		v.AvailabilityZone != n.inst.AvailabilityZone {
		t.Fatalf("created volume: %+v", v)
	}
	// Create again adopts (idempotent).
	if err := d.Create(&volume.CreateRequest{Name: "v1"}); err != nil {
		t.Fatalf("second create: %v", err)
	}

	m1, err := d.Mount(&volume.MountRequest{Name: "v1", ID: "m1"})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(n.root, v.ID, "data"); m1.Mountpoint != want {
		t.Fatalf("mountpoint %s, want %s", m1.Mountpoint, want)
	}
	if err := os.WriteFile(filepath.Join(m1.Mountpoint, "f"), []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	m2, err := d.Mount(&volume.MountRequest{Name: "v1", ID: "m2"})
	if err != nil || m2.Mountpoint != m1.Mountpoint {
		t.Fatalf("second mount: %v %v", m2, err)
	}
	attaches := func() int {
		c := 0
		for _, e := range n.sim.Events() {
			if e.Kind == simcloud.EventAttach && e.VolumeID == v.ID {
				c++
			}
		}
		return c
	}
	if a := attaches(); a != 1 {
		t.Fatalf("%d attaches for two mount ids", a)
	}
	g, err := d.Get(&volume.GetRequest{Name: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	if g.Volume.Mountpoint != m1.Mountpoint || g.Volume.Status[StatusCinderStatus] != "in-use" ||
		g.Volume.Status[StatusMountIDs] != 2 || !strings.HasPrefix(g.Volume.Status[StatusDevice].(string), "/dev/loop") {
		t.Fatalf("Get: %+v", g.Volume)
	}
	err = d.Remove(&volume.RemoveRequest{Name: "v1"})
	if !errors.Is(err, ErrInUse) {
		t.Fatalf("Remove while mounted: %v", err)
	}

	if err := d.Unmount(&volume.UnmountRequest{Name: "v1", ID: "m1"}); err != nil {
		t.Fatal(err)
	}
	if v := n.volume(t, "v1"); v.Status != "in-use" {
		t.Fatalf("after the first unmount the volume is %s", v.Status)
	}
	if err := d.Unmount(&volume.UnmountRequest{Name: "v1", ID: "m2"}); err != nil {
		t.Fatal(err)
	}
	if v := n.volume(t, "v1"); v.Status != "available" || len(v.Attachments) != 0 {
		t.Fatalf("after the last unmount: %s %+v", v.Status, v.Attachments)
	}
	if _, err := os.Stat(filepath.Join(n.root, v.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("mountpoint left: %v", err)
	}
	if len(n.drv.State().Volumes) != 0 {
		t.Fatalf("state file still lists %+v", n.drv.State().Volumes)
	}

	// Data survives detach and re-attach (and the device is not formatted again).
	m3, err := d.Mount(&volume.MountRequest{Name: "v1", ID: "m3"})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(m3.Mountpoint, "f")); err != nil || string(b) != "hi" {
		t.Fatalf("read back %q %v", b, err)
	}
	if err := d.Unmount(&volume.UnmountRequest{Name: "v1", ID: "m3"}); err != nil {
		t.Fatal(err)
	}
	if err := d.Remove(&volume.RemoveRequest{Name: "v1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.cloud.GetVolume(context.Background(), v.ID); !errors.Is(err, openstack.ErrNotFound) {
		t.Fatalf("after Remove: %v", err)
	}
	if err := simcloud.CheckExclusive(n.sim.Events()); err != nil {
		t.Error(err)
	}
}

// TestDriverHeldElsewhere: a volume attached to another instance is not
// mounted; the error names that instance and host.
func TestDriverHeldElsewhere(t *testing.T) {
	n := newLoopNode(t)
	other, err := n.sim.AddInstance(simcloud.InstanceSpec{Name: "node-b", Host: "compute-b"})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.drv.Create(&volume.CreateRequest{Name: "shared"}); err != nil {
		t.Fatal(err)
	}
	v := n.volume(t, "shared")
	ctx := context.Background()
	if _, err := n.cloud.AttachVolume(ctx, other.ID, v.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := n.cloud.WaitVolume(ctx, v.ID, openstack.AttachedTo(other.ID)); err != nil {
		t.Fatal(err)
	}
	_, err = n.drv.Mount(&volume.MountRequest{Name: "shared", ID: "m1"})
	var he *HeldElsewhereError
	if !errors.As(err, &he) || he.Instance != other.ID || !strings.Contains(err.Error(), other.ID) {
		t.Fatalf("Mount of a volume held elsewhere: %v", err)
	}
	if err := n.drv.Remove(&volume.RemoveRequest{Name: "shared"}); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), other.ID) {
		t.Fatalf("Remove of a volume attached elsewhere: %v", err)
	}
	if err := n.cloud.DetachVolume(ctx, other.ID, v.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := n.cloud.WaitVolume(ctx, v.ID, openstack.DetachedFrom(other.ID)); err != nil {
		t.Fatal(err)
	}
}

// TestDriverRestartKeepsMounts: a new Driver on the same state dir (a
// restarted plugin) keeps a mounted volume and its mount ids; the next
// Unmount unmounts and detaches.
func TestDriverRestartKeepsMounts(t *testing.T) {
	n := newLoopNode(t)
	if err := n.drv.Create(&volume.CreateRequest{Name: "keep"}); err != nil {
		t.Fatal(err)
	}
	mr, err := n.drv.Mount(&volume.MountRequest{Name: "keep", ID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := n.drv.cfg
	d2, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, ok := d2.State().Volume(n.volume(t, "keep").ID)
	if !ok || st.Phase != PhaseMounted || len(st.Refs) != 1 || st.Refs[0] != "c1" {
		t.Fatalf("recovered state %+v", st)
	}
	p, err := d2.Path(&volume.PathRequest{Name: "keep"})
	if err != nil || p.Mountpoint != mr.Mountpoint {
		t.Fatalf("Path after restart: %v %v", p, err)
	}
	if err := d2.Unmount(&volume.UnmountRequest{Name: "keep", ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	if v := n.volume(t, "keep"); v.Status != "available" {
		t.Fatalf("after unmount: %s", v.Status)
	}
	if st, _, _ := n.drv.host.StateOf(filepath.Join(n.root, st.VolumeID)); st != hostdisk.StateNotMounted {
		t.Fatalf("still mounted: %s", st)
	}
}

// TestDriverBusyUnmount: an Unmount whose filesystem is busy fails, says
// why, and leaves the volume mounted and attached (never detached under a
// user); once the holder is gone, a Release unmounts and detaches.
func TestDriverBusyUnmount(t *testing.T) {
	n := newLoopNode(t)
	if err := n.drv.Create(&volume.CreateRequest{Name: "busy"}); err != nil {
		t.Fatal(err)
	}
	mr, err := n.drv.Mount(&volume.MountRequest{Name: "busy", ID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(mr.Mountpoint, "open"))
	if err != nil {
		t.Fatal(err)
	}
	err = n.drv.Unmount(&volume.UnmountRequest{Name: "busy", ID: "c1"})
	f.Close()
	if !errors.Is(err, hostdisk.ErrBusy) || !strings.Contains(err.Error(), "stays mounted and attached") {
		t.Fatalf("Unmount of a busy filesystem: %v", err)
	}
	v := n.volume(t, "busy")
	if v.Status != "in-use" {
		t.Fatalf("after a busy unmount the volume is %s", v.Status)
	}
	if st, _, _ := n.drv.host.StateOf(filepath.Join(n.root, v.ID)); st != hostdisk.StateMounted {
		t.Fatalf("after a busy unmount: %s", st)
	}
	// The idle sweep's Release (issue 4) retries once nobody holds it.
	e, _, _ := n.drv.lookupLocal("busy")
	e.mu.Lock()
	_, err = Drive(context.Background(), e.v, Release{}, n.drv.execute, n.drv.persister(e))
	e.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if v := n.volume(t, "busy"); v.Status != "available" {
		t.Fatalf("after release: %s", v.Status)
	}
}

// TestDriverDuplicateNames: two Cinder volumes with one name make Create,
// Mount and Get fail with an error naming both ids; nothing is attached.
func TestDriverDuplicateNames(t *testing.T) {
	n := newSimNode(t, simNodeOptions{})
	ctx := context.Background()
	var ids []string
	for range 2 {
		v, err := n.cloud.CreateVolume(ctx, openstack.CreateVolumeOpts{Name: "twin", SizeGiB: 1})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, v.ID)
	}
	errs := []error{
		n.drv.Create(&volume.CreateRequest{Name: "twin"}),
		func() error { _, err := n.drv.Mount(&volume.MountRequest{Name: "twin", ID: "m1"}); return err }(),
		func() error { _, err := n.drv.Get(&volume.GetRequest{Name: "twin"}); return err }(),
	}
	for i, err := range errs {
		if !errors.Is(err, ErrAmbiguousName) || !strings.Contains(err.Error(), ids[0]) || !strings.Contains(err.Error(), ids[1]) {
			t.Errorf("request %d: %v", i, err)
		}
	}
	for _, id := range ids {
		if v, err := n.cloud.GetVolume(ctx, id); err != nil || len(v.Attachments) != 0 {
			t.Errorf("volume %s: %+v %v", id, v, err)
		}
	}
}

// TestDriverNeverFormatsASignature: a volume whose disk carries a swap
// signature is refused by Mount (the error says why), detached again, and
// its disk is left exactly as it was: no mkfs.
func TestDriverNeverFormatsASignature(t *testing.T) {
	n := newLoopNode(t)
	testenv.RequireCommand(t, "mkswap")
	if err := n.drv.Create(&volume.CreateRequest{Name: "swapvol"}); err != nil {
		t.Fatal(err)
	}
	v := n.volume(t, "swapvol")
	back := n.sim.BackingFile(v.ID)
	if err := os.MkdirAll(filepath.Dir(back), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(back)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 30); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if out, err := exec.Command("mkswap", back).CombinedOutput(); err != nil {
		t.Fatalf("mkswap: %v %s", err, out)
	}
	// Any mkfs writes its superblock into the first MiBs.
	head := func() []byte {
		f, err := os.Open(back)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b := make([]byte, 4<<20)
		if _, err := io.ReadFull(f, b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	before := head()
	_, err = n.drv.Mount(&volume.MountRequest{Name: "swapvol", ID: "m1"})
	if !errors.Is(err, hostdisk.ErrHasSignature) || !strings.Contains(err.Error(), "swap") {
		t.Fatalf("Mount of a swap disk: %v", err)
	}
	if v := n.volume(t, "swapvol"); v.Status != "available" {
		t.Fatalf("after the refused mount the volume is %s", v.Status)
	}
	if !bytes.Equal(before, head()) {
		t.Fatal("the disk was written to")
	}
}
