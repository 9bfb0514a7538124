package hostdisk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cinderwarden/cinderwarden/internal/testenv"
	"golang.org/x/sys/unix"
)

// TestUnmountBusy: a file held open keeps the filesystem busy. A normal
// unmount refuses with ErrBusy and leaves the volume mounted (Docker's
// Unmount must not detach a volume in use); escalation ends with a lazy
// unmount and says so.
func TestUnmountBusy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dev := loopDevice(t, 64<<20, nil)
	h, _ := realHost(t, Config{UnmountTimeout: 2 * time.Second})
	r, err := h.Mount(ctx, MountRequest{VolumeID: testVolumeID, Device: dev})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(r.DataDir, "held-open"))
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			f.Close()
		}
	})

	u, err := h.Unmount(ctx, testVolumeID, UnmountNormal)
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("normal Unmount of a busy volume = %+v, %v; want ErrBusy", u, err)
	}
	if st, _, _ := h.StateOf(r.Mountpoint); st != StateMounted {
		t.Fatalf("state after refused unmount = %s, want mounted", st)
	}
	if _, err := f.WriteString("still writable\n"); err != nil {
		t.Errorf("write after refused unmount: %v", err)
	}

	u, err = h.Unmount(ctx, testVolumeID, UnmountEscalate)
	if err != nil || u.Method != UnmountedLazy || !u.Removed {
		t.Fatalf("escalating Unmount = %+v, %v; want lazy", u, err)
	}
	if st, _, _ := h.StateOf(r.Mountpoint); st != StateNotMounted {
		t.Errorf("state after lazy unmount = %s", st)
	}
	if vms, _ := h.VolumeMounts(); len(vms) != 0 {
		t.Errorf("VolumeMounts after lazy unmount = %+v", vms)
	}
	// The open file still works: a lazy unmount only detaches the tree.
	if _, err := f.WriteString("after lazy\n"); err != nil {
		t.Errorf("write through the open file after lazy unmount: %v", err)
	}
	f.Close()
	closed = true
}

// TestUnmountEscalateIdle: escalation on an idle filesystem stops at the
// first step; read-only mounts neither format nor write.
func TestUnmountEscalateIdle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dev := loopDevice(t, 64<<20, nil)
	h, rec := realHost(t, Config{})
	if _, err := h.Mount(ctx, MountRequest{VolumeID: testVolumeID, Device: dev, Options: []string{"ro"}}); !errors.Is(err, ErrReadOnlyDevice) {
		t.Fatalf("read-only Mount of a blank device: err = %v, want ErrReadOnlyDevice", err)
	}
	if m := rec.mkfsCalls(); len(m) != 0 {
		t.Fatalf("a blank device was formatted for a read-only mount: %q", m)
	}
	if _, err := h.Mount(ctx, MountRequest{VolumeID: testVolumeID, Device: dev}); err != nil {
		t.Fatal(err)
	}
	u, err := h.Unmount(ctx, testVolumeID, UnmountEscalate)
	if err != nil || u.Method != UnmountedNormal {
		t.Fatalf("Unmount = %+v, %v; want normal", u, err)
	}
	// Now formatted with a data directory: read-only works.
	r, err := h.Mount(ctx, MountRequest{VolumeID: testVolumeID, Device: dev, Options: []string{"ro"}})
	if err != nil || r.Formatted {
		t.Fatalf("read-only Mount = %+v, %v", r, err)
	}
	if err := os.WriteFile(filepath.Join(r.DataDir, "x"), nil, 0o644); err == nil {
		t.Error("write on a read-only mount succeeded")
	}
	if _, err := h.Unmount(ctx, testVolumeID, UnmountNormal); err != nil {
		t.Fatal(err)
	}
}

func TestUnmountPathOutsideRoot(t *testing.T) {
	h := newFakeHost(t, &fakeDisks{})
	for _, p := range []string{"/", "/proc", filepath.Join(h.Config().MountRoot, "a", "b"), h.Config().MountRoot} {
		if _, err := h.UnmountPath(context.Background(), p, UnmountEscalate); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("UnmountPath(%s) err = %v, want ErrInvalidArgument", p, err)
		}
	}
}

// TestVolumeMountsDeviceGone: the node's device node vanishes while its
// filesystem is mounted (what a detach behind the plugin's back looks
// like): VolumeMounts reports DeviceGone, and the sweep's escalating
// unmount cleans it up.
func TestVolumeMountsDeviceGone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	loop := loopDevice(t, 64<<20, nil)
	var st unix.Stat_t
	if err := unix.Stat(loop, &st); err != nil {
		t.Fatal(err)
	}
	// A node of our own for the same device, in a simulated dev root.
	node := filepath.Join(t.TempDir(), "vdb")
	if err := unix.Mknod(node, unix.S_IFBLK|0o600, int(st.Rdev)); err != nil {
		t.Fatal(err)
	}
	h, _ := realHost(t, Config{})
	if _, err := h.Mount(ctx, MountRequest{VolumeID: testVolumeID, Device: node}); err != nil {
		t.Fatal(err)
	}
	vms, err := h.VolumeMounts()
	if err != nil || len(vms) != 1 || vms[0].DeviceGone || vms[0].Source != node {
		t.Fatalf("before: VolumeMounts = %+v, %v", vms, err)
	}
	if err := os.Remove(node); err != nil {
		t.Fatal(err)
	}
	vms, err = h.VolumeMounts()
	if err != nil || len(vms) != 1 || !vms[0].DeviceGone || vms[0].State != StateMounted {
		t.Fatalf("after: VolumeMounts = %+v, %v; want DeviceGone", vms, err)
	}
	u, err := h.UnmountPath(ctx, vms[0].Mountpoint, UnmountEscalate)
	if err != nil || u.Method != UnmountedNormal {
		t.Fatalf("UnmountPath = %+v, %v", u, err)
	}
	if vms, _ := h.VolumeMounts(); len(vms) != 0 {
		t.Errorf("still mounted: %+v", vms)
	}
}

// deadFuseMount mounts a FUSE filesystem at mp whose daemon is already gone
// (the /dev/fuse descriptor is closed right after mount(2)): every access
// answers ENOTCONN, exactly like a crashed FUSE daemon. It needs no FUSE
// library, only /dev/fuse.
func deadFuseMount(t *testing.T, mp string) {
	t.Helper()
	testenv.RequireRoot(t)
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		if testenv.Required() {
			t.Fatalf("SUBSTRATE MISSING: /dev/fuse: %v", err)
		}
		t.Skipf("SKIPPED, NOT TESTED: no usable /dev/fuse for a real ENOTCONN mountpoint: %v", err)
	}
	if err := os.MkdirAll(mp, 0o755); err != nil {
		t.Fatal(err)
	}
	data := fmt.Sprintf("fd=%d,rootmode=40000,user_id=0,group_id=0", f.Fd())
	if err := unix.Mount("cinderwarden-test", mp, "fuse.cinderwarden-test", unix.MS_NOSUID|unix.MS_NODEV, data); err != nil {
		f.Close()
		t.Fatalf("mount fuse: %v", err)
	}
	f.Close()
	t.Cleanup(func() { _ = unix.Unmount(mp, unix.MNT_DETACH); _ = os.Remove(mp) })
}

// TestCorruptedMountpointRealENOTCONN: a mountpoint whose stat fails with
// ENOTCONN is corrupted — not "not mounted" — for StateOf and VolumeMounts;
// Mount refuses it; the escalating unmount removes it without hanging.
func TestCorruptedMountpointRealENOTCONN(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, _ := realHost(t, Config{})
	mp, _ := h.Mountpoint(testVolumeID)
	deadFuseMount(t, mp)

	_, statErr := os.Stat(mp)
	if !errors.Is(statErr, syscall.ENOTCONN) || !IsCorruptedMnt(statErr) {
		t.Fatalf("stat = %v, want a corrupted ENOTCONN", statErr)
	}
	st, top, err := h.StateOf(mp)
	if err != nil || st != StateCorrupted || top == nil || top.FSType != "fuse.cinderwarden-test" {
		t.Fatalf("StateOf = %s, %+v, %v; want corrupted with the fuse entry", st, top, err)
	}
	vms, err := h.VolumeMounts()
	if err != nil || len(vms) != 1 || vms[0].State != StateCorrupted || !vms[0].DeviceGone {
		t.Fatalf("VolumeMounts = %+v, %v; want one corrupted mount whose device is gone", vms, err)
	}

	dev := loopDevice(t, 64<<20, nil)
	if _, err := h.Mount(ctx, MountRequest{VolumeID: testVolumeID, Device: dev}); !errors.Is(err, ErrCorruptedMount) {
		t.Fatalf("Mount over a corrupted mountpoint: err = %v, want ErrCorruptedMount", err)
	}
	if got := blkidValue(t, dev, "TYPE"); got != "" {
		t.Errorf("device formatted (%s) although the mount was refused", got)
	}

	u, err := h.Unmount(ctx, testVolumeID, UnmountEscalate)
	if err != nil || !u.WasCorrupt || u.Method == UnmountedNot || !u.Removed {
		t.Fatalf("Unmount = %+v, %v", u, err)
	}
	t.Logf("corrupted mountpoint unmounted by step %q", u.Method)
	if st, _, _ := h.StateOf(mp); st != StateNotMounted {
		t.Errorf("state after unmount = %s", st)
	}
}
