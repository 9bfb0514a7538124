package loopnode_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cinderwarden/cinderwarden/internal/testenv"
	"github.com/cinderwarden/cinderwarden/simcloud"
	"github.com/cinderwarden/cinderwarden/simcloud/loopnode"
)

const giB = 1 << 30

// node is one test's world: a state directory holding the volumes' backing
// files and the instances' dev roots, and a backend logging to the test.
type node struct {
	t   *testing.T
	dir string
	b   *loopnode.Backend
}

// newNode needs root and real loop devices. Its cleanup fails the test if
// any loop device backed by the test's files is still bound once the test's
// own cleanups (unmounts) ran, then frees them anyway.
func newNode(t *testing.T) *node {
	t.Helper()
	testenv.RequireRoot(t)
	dir := t.TempDir()
	t.Cleanup(func() {
		leaked, err := loopnode.Devices(dir)
		if err != nil {
			t.Errorf("scan for leaked loop devices: %v", err)
		}
		if len(leaked) > 0 {
			t.Errorf("loop devices leaked by the test: %+v", leaked)
		}
		if busy, err := loopnode.DetachAll(context.Background(), dir); err != nil || len(busy) > 0 {
			t.Errorf("DetachAll: busy %+v, err %v", busy, err)
		}
	})
	return &node{t: t, dir: dir, b: newBackend(t)}
}

func newBackend(t *testing.T) *loopnode.Backend {
	return loopnode.New(loopnode.Options{Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
}

// att describes volume vol attached to instance inst, whose dev root is
// <dir>/<inst>/dev.
func (n *node) att(vol, inst string, sizeGiB int) simcloud.Attachment {
	return attachment(n.dir, vol, inst, sizeGiB)
}

func attachment(dir, vol, inst string, sizeGiB int) simcloud.Attachment {
	return simcloud.Attachment{
		InstanceID:   inst,
		InstanceName: "instance-" + inst,
		VolumeID:     vol,
		SizeGiB:      sizeGiB,
		BackingFile:  filepath.Join(dir, "volumes", vol+".img"),
		NodeDevDir:   filepath.Join(dir, inst, "dev"),
	}
}

func (n *node) attach(a simcloud.Attachment) string {
	n.t.Helper()
	dev, err := n.b.AttachVolume(n.t.Context(), a)
	if err != nil {
		n.t.Fatalf("AttachVolume: %v", err)
	}
	return dev
}

func (n *node) detach(a simcloud.Attachment) {
	n.t.Helper()
	if err := n.b.DetachVolume(n.t.Context(), a); err != nil {
		n.t.Fatalf("DetachVolume: %v", err)
	}
}

func (n *node) devices() []loopnode.Device {
	n.t.Helper()
	devs, err := loopnode.Devices(n.dir)
	if err != nil {
		n.t.Fatalf("Devices: %v", err)
	}
	return devs
}

// mount mounts the block device behind path (ext4) and returns the mount
// point and a function that unmounts it; cleanup unmounts too if needed.
func (n *node) mount(path string) (string, func()) {
	n.t.Helper()
	mnt := n.t.TempDir()
	if err := unix.Mount(path, mnt, "ext4", 0, ""); err != nil {
		n.t.Fatalf("mount %s on %s: %v", path, mnt, err)
	}
	var once sync.Once
	umount := func() {
		once.Do(func() {
			if err := unix.Unmount(mnt, 0); err != nil {
				n.t.Errorf("umount %s: %v", mnt, err)
			}
		})
	}
	n.t.Cleanup(umount)
	return mnt, umount
}

func mkfs(t *testing.T, path string) {
	t.Helper()
	testenv.RequireCommand(t, "mkfs.ext4")
	if out, err := exec.CommandContext(t.Context(), "mkfs.ext4", "-q", "-F", path).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 %s: %v\n%s", path, err, out)
	}
}

func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	return errors.Join(err, f.Sync(), f.Close())
}

// assertLink checks that a's by-id link is an absolute link to dev and that
// it reaches a block device.
func assertLink(t *testing.T, a simcloud.Attachment, dev string) {
	t.Helper()
	link := loopnode.LinkPath(a)
	target, err := os.Readlink(link)
	if err != nil {
		t.Fatalf("by-id link: %v", err)
	}
	if target != dev || !filepath.IsAbs(target) {
		t.Fatalf("%s -> %q, want absolute link to %s", link, target, dev)
	}
	fi, err := os.Stat(link)
	if err != nil {
		t.Fatalf("follow by-id link: %v", err)
	}
	if fi.Mode()&fs.ModeDevice == 0 || fi.Mode()&fs.ModeCharDevice != 0 {
		t.Fatalf("%s reaches %v, not a block device", link, fi.Mode())
	}
}

func assertNoLink(t *testing.T, a simcloud.Attachment) {
	t.Helper()
	if _, err := os.Lstat(loopnode.LinkPath(a)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("by-id link %s still there after detach (lstat: %v)", loopnode.LinkPath(a), err)
	}
}

func volume(i int) string { return fmt.Sprintf("%08x-5a7d-4e21-9c8b-6f2d1e0a9b34", 0x0b3f1c00+i) }

const (
	instA = "5e1c2d3a-0000-4000-8000-00000000000a"
	instB = "5e1c2d3a-0000-4000-8000-00000000000b"
)

// The acceptance test for nodes: a file system written through the
// by-id link survives detach and a re-attach to another instance, by a new
// backend (as after a restart of the simulator).
func TestFilesystemSurvivesDetachAndReattachElsewhere(t *testing.T) {
	n := newNode(t)
	a := n.att(volume(1), instA, 1)
	dev := n.attach(a)
	assertLink(t, a, dev)

	devs := n.devices()
	if len(devs) != 1 || devs[0].Path != dev || devs[0].Size != giB || devs[0].Autoclear {
		t.Fatalf("Devices = %+v, want only %s with 1 GiB", devs, dev)
	}
	var st unix.Stat_t
	if err := unix.Stat(a.BackingFile, &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != giB || st.Blocks*512 >= 1<<20 {
		t.Fatalf("backing file: size %d, %d bytes allocated; want a sparse 1 GiB file", st.Size, st.Blocks*512)
	}

	mkfs(t, loopnode.LinkPath(a))
	mnt, umount := n.mount(loopnode.LinkPath(a))
	want := []byte("written on " + instA + " through " + dev + "\n")
	if err := writeSynced(filepath.Join(mnt, "data.txt"), want); err != nil {
		t.Fatal(err)
	}
	umount()
	n.detach(a)
	assertNoLink(t, a)
	if devs := n.devices(); len(devs) != 0 {
		t.Fatalf("after detach Devices = %+v, want none", devs)
	}
	if fi, err := os.Stat(a.BackingFile); err != nil || fi.Size() != giB {
		t.Fatalf("backing file after detach: %v, %v", fi, err)
	}

	// Another instance, another backend: only the files on disk carry over.
	n.b = newBackend(t)
	b := n.att(a.VolumeID, instB, 1)
	dev2 := n.attach(b)
	assertLink(t, b, dev2)
	mnt2, umount2 := n.mount(loopnode.LinkPath(b))
	got, err := os.ReadFile(filepath.Join(mnt2, "data.txt"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("after re-attach read %q, %v; want %q", got, err, want)
	}
	umount2()
	n.detach(b)
	assertNoLink(t, b)

	// Detaching what is already detached is fine, from either instance.
	n.detach(b)
	n.detach(a)
	// So is detaching a volume that never had a backing file.
	n.detach(n.att(volume(99), instA, 1))
	if _, err := os.Stat(n.att(volume(99), instA, 1).BackingFile); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("detach created a backing file (stat: %v)", err)
	}
}

// Attach is idempotent, picks up os-extend while attached and on re-attach,
// and never shrinks or truncates the backing file.
func TestAttachIsIdempotentAndFollowsSize(t *testing.T) {
	n := newNode(t)
	a := n.att(volume(2), instA, 1)
	dev := n.attach(a)
	if again := n.attach(a); again != dev {
		t.Fatalf("second attach gave %s, first %s", again, dev)
	}
	if devs := n.devices(); len(devs) != 1 {
		t.Fatalf("after two attaches Devices = %+v, want one", devs)
	}

	marker := []byte("marker at 1 MiB")
	if err := pwriteSync(dev, marker, 1<<20); err != nil {
		t.Fatal(err)
	}

	a.SizeGiB = 2 // os-extend while attached
	if again := n.attach(a); again != dev {
		t.Fatalf("attach after extend gave %s, want the same %s", again, dev)
	}
	if devs := n.devices(); len(devs) != 1 || devs[0].Size != 2*giB {
		t.Fatalf("after extend Devices = %+v, want one device of 2 GiB", devs)
	}
	n.detach(a)

	a.SizeGiB = 1 // a smaller size never shrinks the volume
	dev = n.attach(a)
	if devs := n.devices(); len(devs) != 1 || devs[0].Size != 2*giB {
		t.Fatalf("re-attach with a smaller size: Devices = %+v, want 2 GiB kept", devs)
	}
	got := make([]byte, len(marker))
	if err := pread(dev, got, 1<<20); err != nil || !bytes.Equal(got, marker) {
		t.Fatalf("marker after re-attach: %q, %v; want %q", got, err, marker)
	}
	n.detach(a)
}

// Eight attachments in parallel get eight distinct loop devices (allocation
// races are retried), each behind its own link, and all go away again.
func TestParallelAttachGetsDistinctDevices(t *testing.T) {
	n := newNode(t)
	const count = 8
	atts := make([]simcloud.Attachment, count)
	devs := make([]string, count)
	errs := make([]error, count)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range count {
		atts[i] = n.att(volume(10+i), instA, 1)
		wg.Go(func() { devs[i], errs[i] = n.b.AttachVolume(t.Context(), atts[i]) })
	}
	wg.Wait()
	t.Logf("%d parallel attaches took %v", count, time.Since(start))
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i, dev := range devs {
		if seen[dev] {
			t.Errorf("device %s handed out twice: %v", dev, devs)
		}
		seen[dev] = true
		assertLink(t, atts[i], dev)
	}
	bound := n.devices()
	if len(bound) != count {
		t.Fatalf("Devices = %d devices, want %d: %+v", len(bound), count, bound)
	}
	for _, d := range bound {
		i := indexOf(devs, d.Path)
		if i < 0 || d.BackingFile != resolved(t, atts[i].BackingFile) {
			t.Errorf("device %+v does not back the file of the attachment it was handed to", d)
		}
	}

	for i := range count {
		wg.Go(func() { errs[i] = n.b.DetachVolume(t.Context(), atts[i]) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if left := n.devices(); len(left) != 0 {
		t.Fatalf("after parallel detach Devices = %+v", left)
	}
	for _, a := range atts {
		assertNoLink(t, a)
	}
}

// One volume attached to two instances at once (what a Cinder-only
// force-detach followed by a new attach produces) gets two devices over the
// same bytes; detaching one instance leaves the other's disk alone.
func TestSameVolumeOnTwoInstancesDetachesIndependently(t *testing.T) {
	n := newNode(t)
	a, b := n.att(volume(3), instA, 1), n.att(volume(3), instB, 1)
	devA, devB := n.attach(a), n.attach(b)
	if devA == devB {
		t.Fatalf("both instances got %s", devA)
	}
	marker := []byte("written by A, read by B")
	if err := pwriteSync(devA, marker, 4096); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(marker))
	if err := pread(devB, got, 4096); err != nil || !bytes.Equal(got, marker) {
		t.Fatalf("B read %q, %v; want %q", got, err, marker)
	}

	n.detach(a)
	assertNoLink(t, a)
	assertLink(t, b, devB)
	if devs := n.devices(); len(devs) != 1 || devs[0].Path != devB {
		t.Fatalf("after detaching A Devices = %+v, want only B's %s", devs, devB)
	}
	n.detach(b)
}

// A detach while the volume is mounted behaves like hot-unplug in a guest:
// the link goes, I/O through the stale mount fails, and what was synced
// before the detach is intact. A re-attach while the stale mount lingers
// gets a fresh device, as the guest would get a new disk; the yanked one is
// freed when the stale mount is unmounted.
func TestDetachWhileMountedModelsHotUnplug(t *testing.T) {
	n := newNode(t)
	a := n.att(volume(4), instA, 1)
	dev := n.attach(a)
	mkfs(t, loopnode.LinkPath(a))
	stale, umountStale := n.mount(dev)
	before := []byte("synced before the unplug\n")
	if err := writeSynced(filepath.Join(stale, "before.txt"), before); err != nil {
		t.Fatal(err)
	}

	n.detach(a)
	assertNoLink(t, a)
	devs := n.devices()
	if len(devs) != 1 || devs[0].Path != dev || !devs[0].Autoclear || devs[0].Size != 0 {
		t.Fatalf("after busy detach Devices = %+v, want %s yanked (autoclear, size 0)", devs, dev)
	}
	if err := writeSynced(filepath.Join(stale, "after.txt"), bytes.Repeat([]byte("x"), 1<<16)); err == nil {
		t.Fatal("writing through the stale mount after detach succeeded; want an I/O error")
	} else {
		t.Logf("write after detach failed as on an unplugged disk: %v", err)
	}

	fresh := n.attach(a)
	if fresh == dev {
		t.Fatalf("re-attach reused the yanked device %s", dev)
	}
	assertLink(t, a, fresh)
	mnt, umount := n.mount(fresh)
	got, err := os.ReadFile(filepath.Join(mnt, "before.txt"))
	if err != nil || !bytes.Equal(got, before) {
		t.Fatalf("after re-attach before.txt = %q, %v; want %q", got, err, before)
	}
	umount()
	n.detach(a)
	if devs := n.devices(); len(devs) != 1 || devs[0].Path != dev {
		t.Fatalf("after second detach Devices = %+v, want only the yanked %s", devs, dev)
	}

	umountStale()
	waitNoDevices(t, n)
}

// DetachAll frees every device under a directory, busy or not, and reports
// the busy ones until they are unmounted.
func TestDetachAll(t *testing.T) {
	n := newNode(t)
	a, b := n.att(volume(5), instA, 1), n.att(volume(6), instA, 1)
	n.attach(a)
	devB := n.attach(b)
	mkfs(t, devB)
	_, umount := n.mount(devB)

	busy, err := loopnode.DetachAll(t.Context(), n.dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(busy) != 1 || busy[0].Path != devB {
		t.Fatalf("DetachAll busy = %+v, want only the mounted %s", busy, devB)
	}
	umount()
	waitNoDevices(t, n)
	// The links are the instance's; a detach afterwards removes them.
	n.detach(a)
	n.detach(b)
	assertNoLink(t, a)
	assertNoLink(t, b)
}

// waitNoDevices waits, with a short backoff, for the kernel to free the
// test's devices (autoclear runs at the last close).
func waitNoDevices(t *testing.T, n *node) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for delay := time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		devs := n.devices()
		if len(devs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("devices not freed after unmount: %+v", devs)
		}
		time.Sleep(delay)
	}
}

func pwriteSync(dev string, b []byte, off int64) error {
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(b, off)
	return errors.Join(err, f.Sync(), f.Close())
}

func pread(dev string, b []byte, off int64) error {
	f, err := os.Open(dev)
	if err != nil {
		return err
	}
	_, err = f.ReadAt(b, off)
	return errors.Join(err, f.Close())
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func resolved(t *testing.T, p string) string {
	t.Helper()
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
