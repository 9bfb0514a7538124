package loopnode_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/volumeattach"

	"github.com/cinderwarden/cinderwarden/simcloud"
	"github.com/cinderwarden/cinderwarden/simcloud/loopnode"
	"github.com/cinderwarden/cinderwarden/simcloud/simtest"
)

// TestWithSimulator shows the simulator and loopnode together: a volume
// attached through Nova's HTTP API shows up in the instance's dev root as a
// by-id link to a real block device and carries a file system across a
// detach and a re-attach to another instance; deleting that instance while
// the volume is mounted unplugs the disk under the mount, and no loop device
// is left behind.
func TestWithSimulator(t *testing.T) {
	n := newNode(t) // root, leak check on n.dir
	ctx := t.Context()
	sim, err := simcloud.Start(ctx, simcloud.Options{
		StateDir: n.dir,
		Backends: []simcloud.ComputeBackend{n.b},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sim.Close(); err != nil {
			t.Errorf("close simulator: %v", err)
		}
	})
	vmA, err := sim.AddInstance(simcloud.InstanceSpec{Name: "vm-a"})
	if err != nil {
		t.Fatal(err)
	}
	vmB, err := sim.AddInstance(simcloud.InstanceSpec{Name: "vm-b"})
	if err != nil {
		t.Fatal(err)
	}

	member := simtest.Connect(t, sim.Member(), "", "") // base microversions, as a plain tenant
	cinder, nova := member.Volume, member.Compute

	vol, err := volumes.Create(ctx, cinder, volumes.CreateOpts{Size: 1, Name: "data"}, nil).Extract()
	if err != nil {
		t.Fatal(err)
	}
	waitVolume(t, cinder, vol.ID, "available")

	// attach asks Nova and waits for the guest-side link, as a plugin would.
	attach := func(vm simcloud.Instance) string {
		t.Helper()
		if _, err := volumeattach.Create(ctx, nova, vm.ID, volumeattach.CreateOpts{VolumeID: vol.ID}).Extract(); err != nil {
			t.Fatalf("nova attach to %s: %v", vm.Name, err)
		}
		waitVolume(t, cinder, vol.ID, "in-use")
		link := filepath.Join(vm.NodeDevDir, "disk", "by-id", "virtio-"+loopnode.Serial(vol.ID))
		waitFor(t, "by-id link on "+vm.Name, func() (bool, string) {
			_, err := os.Stat(link)
			return err == nil, fmt.Sprint(err)
		})
		return link
	}
	detach := func(vm simcloud.Instance, link string) {
		t.Helper()
		if err := volumeattach.Delete(ctx, nova, vm.ID, vol.ID).ExtractErr(); err != nil {
			t.Fatalf("nova detach from %s: %v", vm.Name, err)
		}
		waitVolume(t, cinder, vol.ID, "available")
		waitFor(t, "by-id link gone on "+vm.Name, func() (bool, string) {
			_, err := os.Lstat(link)
			return errors.Is(err, fs.ErrNotExist), fmt.Sprint(err)
		})
	}

	linkA := attach(vmA)
	mkfs(t, linkA)
	mnt, umount := n.mount(linkA)
	want := []byte("written on vm-a\n")
	if err := writeSynced(filepath.Join(mnt, "data.txt"), want); err != nil {
		t.Fatal(err)
	}
	umount()
	detach(vmA, linkA)
	if devs := n.devices(); len(devs) != 0 {
		t.Fatalf("after Nova detach Devices = %+v", devs)
	}

	linkB := attach(vmB)
	mnt, umount = n.mount(linkB)
	got, err := os.ReadFile(filepath.Join(mnt, "data.txt"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("vm-b read %q, %v; want %q", got, err, want)
	}

	// Deleting vm-b detaches the volume through the backend while it is
	// still mounted: the guest's disk disappears under the mount.
	if err := sim.SetInstanceStatus(ctx, vmB.ID, simcloud.StatusDeleted); err != nil {
		t.Fatal(err)
	}
	waitVolume(t, cinder, vol.ID, "available")
	if _, err := os.Lstat(linkB); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("by-id link on deleted vm-b: lstat %v", err)
	}
	if err := writeSynced(filepath.Join(mnt, "late.txt"), []byte("too late")); err == nil {
		t.Fatal("write through the mount of an unplugged disk succeeded")
	}
	umount()
	waitNoDevices(t, n)
}

func waitVolume(t *testing.T, cinder *gophercloud.ServiceClient, id, status string) {
	t.Helper()
	simtest.WaitVolume(t, cinder, id, status)
}

// waitFor polls cond with a short exponential backoff for up to 10 s; cond
// reports whether it holds and what it saw.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for delay := time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		ok, saw := cond()
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v; last saw %s", what, ctx.Err(), saw)
		case <-time.After(delay):
		}
	}
}
