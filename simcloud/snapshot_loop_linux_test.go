package simcloud_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/snapshots"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/volumeattach"
	"golang.org/x/sys/unix"

	"github.com/cinderwarden/cinderwarden/internal/testenv"
	"github.com/cinderwarden/cinderwarden/simcloud"
	"github.com/cinderwarden/cinderwarden/simcloud/loopnode"
)

// TestSnapshotDataThroughLoopDevices: a file system written through a real
// loop device is in a snapshot taken while the volume is attached (force),
// and in a volume created from that snapshot and in a clone, each attached
// through Nova and mounted; later writes to the source are in neither.
func TestSnapshotDataThroughLoopDevices(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "mkfs.ext4")
	stateDir := t.TempDir()
	s := startSim(t, simcloud.Options{StateDir: stateDir,
		Latency:  simcloud.Latencies{Attach: 10 * time.Millisecond, Detach: 10 * time.Millisecond},
		Backends: []simcloud.ComputeBackend{loopnode.New(loopnode.Options{})}})
	t.Cleanup(func() {
		if busy, err := loopnode.DetachAll(context.Background(), filepath.Join(stateDir, "volumes")); err != nil || len(busy) > 0 {
			t.Errorf("loop devices left: %v %v", busy, err)
		}
	})
	inst, err := s.AddInstance(simcloud.InstanceSpec{Host: "compute-a"})
	if err != nil {
		t.Fatal(err)
	}
	c := connect(t, s.Member(), "3.44")
	ctx := context.Background()
	mnt := t.TempDir()

	attach := func(id string) string {
		t.Helper()
		if _, err := volumeattach.Create(ctx, c.compute, inst.ID, volumeattach.CreateOpts{VolumeID: id}).Extract(); err != nil {
			t.Fatal(err)
		}
		waitVolume(t, c.volume, id, "in-use")
		return waitLink(t, filepath.Join(inst.NodeDevDir, "disk", "by-id", "virtio-"+id[:20]), true)
	}
	detach := func(id string) {
		t.Helper()
		if err := volumeattach.Delete(ctx, c.compute, inst.ID, id).ExtractErr(); err != nil {
			t.Fatal(err)
		}
		waitVolume(t, c.volume, id, "available")
	}
	write := func(dev, content string) {
		t.Helper()
		if err := unix.Mount(dev, mnt, "ext4", 0, ""); err != nil {
			t.Fatalf("mount %s: %v", dev, err)
		}
		err := os.WriteFile(filepath.Join(mnt, "f"), []byte(content), 0o644)
		if uerr := unix.Unmount(mnt, 0); err == nil {
			err = uerr
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	read := func(dev string) string {
		t.Helper()
		if err := unix.Mount(dev, mnt, "ext4", unix.MS_RDONLY, ""); err != nil {
			t.Fatalf("mount %s: %v", dev, err)
		}
		b, err := os.ReadFile(filepath.Join(mnt, "f"))
		_ = unix.Unmount(mnt, 0)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	src := createVolume(t, c.volume, "src")
	dev := attach(src.ID)
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", dev).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 %s: %v: %s", dev, err, out)
	}
	write(dev, "before the snapshot")
	sn, err := snapshots.Create(ctx, c.volume, snapshots.CreateOpts{VolumeID: src.ID, Name: "snap", Force: true}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	waitSnapshot(t, c.volume, sn.ID, "available")
	write(dev, "after the snapshot")
	detach(src.ID)

	restored, err := volumes.Create(ctx, c.volume, volumes.CreateOpts{SnapshotID: sn.ID, Name: "restored"}, nil).Extract()
	if err != nil {
		t.Fatal(err)
	}
	waitVolume(t, c.volume, restored.ID, "available")
	clone, err := volumes.Create(ctx, c.volume, volumes.CreateOpts{SourceVolID: src.ID, Name: "clone"}, nil).Extract()
	if err != nil {
		t.Fatal(err)
	}
	waitVolume(t, c.volume, clone.ID, "available")

	if got := read(attach(restored.ID)); got != "before the snapshot" {
		t.Errorf("volume from snapshot reads %q, want %q", got, "before the snapshot")
	}
	detach(restored.ID)
	if got := read(attach(clone.ID)); got != "after the snapshot" {
		t.Errorf("clone reads %q, want %q", got, "after the snapshot")
	}
	detach(clone.ID)
}
