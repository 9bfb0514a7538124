package simcloud_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/volumeattach"
	"golang.org/x/sys/unix"

	"github.com/cinderwarden/cinderwarden/internal/testenv"
	"github.com/cinderwarden/cinderwarden/simcloud"
	"github.com/cinderwarden/cinderwarden/simcloud/loopnode"
)

// waitLink waits (short exponential backoff) until the by-id link exists
// (want=true) or is gone, and returns its target.
func waitLink(t *testing.T, link string, want bool) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	delay := 5 * time.Millisecond
	for {
		target, err := os.Readlink(link)
		if (err == nil) == want {
			return target
		}
		if time.Now().After(deadline) {
			t.Fatalf("link %s: present=%v after 10 s, want %v", link, err == nil, want)
		}
		time.Sleep(delay)
		delay = min(delay*2, 200*time.Millisecond)
	}
}

// TestDataSurvivesNovaDetachAndReattach attaches a volume through Nova with
// the real loop-device backend, writes a file system through the loop
// device, detaches, re-attaches and reads the same data back.
func TestDataSurvivesNovaDetachAndReattach(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "mkfs.ext4")
	stateDir := t.TempDir()
	s := startSim(t, simcloud.Options{StateDir: stateDir,
		Latency:  simcloud.Latencies{Attach: 20 * time.Millisecond, Detach: 20 * time.Millisecond},
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
	v := createVolume(t, c.volume, "data")
	link := filepath.Join(inst.NodeDevDir, "disk", "by-id", "virtio-"+v.ID[:20])

	attach := func() string {
		if _, err := volumeattach.Create(ctx, c.compute, inst.ID, volumeattach.CreateOpts{VolumeID: v.ID}).Extract(); err != nil {
			t.Fatal(err)
		}
		waitVolume(t, c.volume, v.ID, "in-use")
		return waitLink(t, link, true)
	}
	detach := func() {
		if err := volumeattach.Delete(ctx, c.compute, inst.ID, v.ID).ExtractErr(); err != nil {
			t.Fatal(err)
		}
		waitVolume(t, c.volume, v.ID, "available")
		waitLink(t, link, false)
	}
	mnt := t.TempDir()
	dev := attach()
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", dev).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 %s: %v: %s", dev, err, out)
	}
	if err := unix.Mount(dev, mnt, "ext4", 0, ""); err != nil {
		t.Fatalf("mount %s: %v", dev, err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "hello"), []byte("kept across detach"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Unmount(mnt, 0); err != nil {
		t.Fatal(err)
	}
	detach()

	dev = attach()
	if err := unix.Mount(dev, mnt, "ext4", unix.MS_RDONLY, ""); err != nil {
		t.Fatalf("mount after re-attach %s: %v", dev, err)
	}
	got, err := os.ReadFile(filepath.Join(mnt, "hello"))
	_ = unix.Unmount(mnt, 0)
	if err != nil || string(got) != "kept across detach" {
		t.Fatalf("after re-attach: %q %v", got, err)
	}
	detach()
	if err := simcloud.CheckExclusive(s.Events()); err != nil {
		t.Fatal(err)
	}
}
