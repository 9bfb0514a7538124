package simcloud_test

import (
	"context"
	"net/http"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/snapshots"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/volumeattach"
	"github.com/gophercloud/gophercloud/v2/pagination"

	"github.com/cinderwarden/cinderwarden/simcloud"
)

// waitSnapshot polls with short exponential backoff until the snapshot has
// status want ("" = gone).
func waitSnapshot(t *testing.T, c *gophercloud.ServiceClient, id, want string) *snapshots.Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	delay := 5 * time.Millisecond
	for {
		s, err := snapshots.Get(ctx, c, id).Extract()
		if want == "" && gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
			return nil
		}
		if err != nil {
			t.Fatalf("get snapshot %s: %v", id, err)
		}
		if s.Status == want {
			return s
		}
		select {
		case <-ctx.Done():
			t.Fatalf("snapshot %s: status %q, want %q: %v", id, s.Status, want, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(delay*2, 200*time.Millisecond)
	}
}

func wantAPIError(t *testing.T, what string, err error, status int, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: succeeded, want %d %q", what, status, msg)
	}
	code, body := apiError(t, err)
	var got string
	for _, v := range body {
		if m, ok := v.(map[string]any); ok {
			got, _ = m["message"].(string)
		}
	}
	if code != status || got != msg {
		t.Fatalf("%s: %d %q, want %d %q", what, code, got, status, msg)
	}
}

func TestSnapshotLifecycle(t *testing.T) {
	s := startSim(t, simcloud.Options{Latency: simcloud.Latencies{Create: 40 * time.Millisecond,
		Delete: 40 * time.Millisecond, Attach: 10 * time.Millisecond, Detach: 10 * time.Millisecond}})
	c := connect(t, s.Member(), "3.44")
	ctx := context.Background()
	v := createVolume(t, c.volume, "src")

	sn, err := snapshots.Create(ctx, c.volume, snapshots.CreateOpts{VolumeID: v.ID, Name: "s1", Description: "first"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if sn.Status != "creating" || sn.Size != 1 || sn.VolumeID != v.ID || sn.Name != "s1" || sn.Description != "first" {
		t.Fatalf("created: %+v", sn)
	}
	got := waitSnapshot(t, c.volume, sn.ID, "available")
	if got.Progress != "100%" || got.ProjectID != s.Member().ProjectID {
		t.Fatalf("available snapshot: progress %q project %q", got.Progress, got.ProjectID)
	}

	// A volume with snapshots cannot be deleted (Cinder's message).
	err = volumes.Delete(ctx, c.volume, v.ID, nil).ExtractErr()
	wantAPIError(t, "delete volume with a snapshot", err, 400, "Invalid volume: Volume status must be available or error or error_restoring or error_extending or error_managing and must not be migrating, attached, belong to a group, have snapshots, awaiting a transfer, or be disassociated from snapshots after volume transfer.")

	// In use: refused without force below 3.66, taken with force.
	inst, err := s.AddInstance(simcloud.InstanceSpec{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := volumeattach.Create(ctx, c.compute, inst.ID, volumeattach.CreateOpts{VolumeID: v.ID}).Extract(); err != nil {
		t.Fatal(err)
	}
	waitVolume(t, c.volume, v.ID, "in-use")
	_, err = snapshots.Create(ctx, c.volume, snapshots.CreateOpts{VolumeID: v.ID, Name: "s2"}).Extract()
	wantAPIError(t, "snapshot in-use without force", err, 400, "Invalid volume: Volume "+v.ID+" status must be available, but current status is: in-use.")
	forced, err := snapshots.Create(ctx, c.volume, snapshots.CreateOpts{VolumeID: v.ID, Name: "s1", Force: true}).Extract()
	if err != nil {
		t.Fatalf("snapshot in-use with force: %v", err)
	}
	waitSnapshot(t, c.volume, forced.ID, "available")
	c366 := connect(t, s.Member(), "3.66")
	late, err := snapshots.Create(ctx, c366.volume, snapshots.CreateOpts{VolumeID: v.ID, Name: "s3"}).Extract()
	if err != nil {
		t.Fatalf("snapshot in-use at 3.66 without force: %v", err)
	}
	waitSnapshot(t, c.volume, late.ID, "available")

	// Listing: filters, and marker/limit pages linked like volumes.
	var pages int
	var names []string
	err = snapshots.List(c.volume, snapshots.ListOpts{Limit: 1}).EachPage(ctx, func(_ context.Context, p pagination.Page) (bool, error) {
		ss, err := snapshots.ExtractSnapshots(p)
		pages++
		for _, x := range ss {
			names = append(names, x.Name)
		}
		return true, err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"s1", "s1", "s3"}) || pages < 3 {
		t.Fatalf("paged listing: %v in %d pages, want s1 s1 s3 in at least 3", names, pages)
	}
	byName := listSnapshots(t, c.volume, snapshots.ListOpts{Name: "s1"})
	if len(byName) != 2 {
		t.Fatalf("name=s1: %d snapshots, want 2", len(byName))
	}
	if n := len(listSnapshots(t, c.volume, snapshots.ListOpts{VolumeID: v.ID, Status: "available"})); n != 3 {
		t.Fatalf("volume_id+status: %d snapshots, want 3", n)
	}
	if n := len(listSnapshots(t, c.volume, snapshots.ListOpts{VolumeID: "nope"})); n != 0 {
		t.Fatalf("volume_id=nope: %d snapshots, want 0", n)
	}
	admin := connect(t, s.Admin(), "3.44")
	if n := len(listSnapshots(t, admin.volume, snapshots.ListOpts{})); n != 0 {
		t.Fatalf("admin without all_tenants sees %d member snapshots, want 0", n)
	}
	if n := len(listSnapshots(t, admin.volume, snapshots.ListOpts{AllTenants: true})); n != 3 {
		t.Fatalf("admin all_tenants: %d snapshots, want 3", n)
	}
	_, err = snapshots.Get(ctx, admin.volume, "00000000-0000-4000-8000-000000000000").Extract()
	wantAPIError(t, "get unknown", err, 404, "Snapshot 00000000-0000-4000-8000-000000000000 could not be found.")

	// Delete: deleting, then gone; the volume can go after its snapshots.
	for _, id := range []string{sn.ID, forced.ID, late.ID} {
		if err := snapshots.Delete(ctx, c.volume, id).ExtractErr(); err != nil {
			t.Fatal(err)
		}
		if st, _ := snapshots.Get(ctx, c.volume, id).Extract(); st != nil && st.Status != "deleting" {
			t.Fatalf("after delete: status %q, want deleting", st.Status)
		}
		waitSnapshot(t, c.volume, id, "")
		if _, err := os.Stat(s.SnapshotFile(id)); !os.IsNotExist(err) {
			t.Fatalf("snapshot file of %s left: %v", id, err)
		}
	}
}

func listSnapshots(t *testing.T, c *gophercloud.ServiceClient, o snapshots.ListOpts) []snapshots.Snapshot {
	t.Helper()
	p, err := snapshots.List(c, o).AllPages(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ss, err := snapshots.ExtractSnapshots(p)
	if err != nil {
		t.Fatal(err)
	}
	return ss
}

// Volumes from a snapshot or a clone: the size defaults to the source's, a
// smaller one is refused, and the data file is a copy of the source's.
func TestVolumeFromSnapshotAndClone(t *testing.T) {
	s := startSim(t, simcloud.Options{})
	c := connect(t, s.Member(), "3.44")
	ctx := context.Background()
	v, err := volumes.Create(ctx, c.volume, volumes.CreateOpts{Size: 2, Name: "src"}, nil).Extract()
	if err != nil {
		t.Fatal(err)
	}
	waitVolume(t, c.volume, v.ID, "available")
	// Data the way a backend leaves it: a sparse file with a few bytes.
	back := s.BackingFile(v.ID)
	if err := os.MkdirAll(s.StateDir()+"/volumes", 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(back)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("at one GiB"), 1<<30); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(2 << 30); err != nil {
		t.Fatal(err)
	}
	f.Close()

	sn, err := snapshots.Create(ctx, c.volume, snapshots.CreateOpts{VolumeID: v.ID, Name: "s"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	waitSnapshot(t, c.volume, sn.ID, "available")
	// Changing the volume afterwards does not change the snapshot.
	if err := os.WriteFile(back, []byte("overwritten"), 0o600); err != nil {
		t.Fatal(err)
	}

	_, err = volumes.Create(ctx, c.volume, volumes.CreateOpts{Size: 1, SnapshotID: sn.ID}, nil).Extract()
	wantAPIError(t, "smaller than the snapshot", err, 400, "Invalid input received: Volume size '1'GB cannot be smaller than the snapshot size 2GB. They must be >= original snapshot size.")
	_, err = volumes.Create(ctx, c.volume, volumes.CreateOpts{Size: 1, SourceVolID: v.ID}, nil).Extract()
	wantAPIError(t, "smaller than the source", err, 400, "Invalid input received: Volume size '1'GB cannot be smaller than original volume size  2GB. They must be >= original volume size.")
	_, err = volumes.Create(ctx, c.volume, volumes.CreateOpts{SnapshotID: "00000000-0000-4000-8000-000000000000"}, nil).Extract()
	wantAPIError(t, "unknown snapshot", err, 404, "Snapshot 00000000-0000-4000-8000-000000000000 could not be found.")

	fromSnap, err := volumes.Create(ctx, c.volume, volumes.CreateOpts{SnapshotID: sn.ID, Name: "restored"}, nil).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if fromSnap.Size != 2 || fromSnap.SnapshotID != sn.ID {
		t.Fatalf("from snapshot: size %d snapshot_id %q, want 2 and %s", fromSnap.Size, fromSnap.SnapshotID, sn.ID)
	}
	clone, err := volumes.Create(ctx, c.volume, volumes.CreateOpts{SourceVolID: v.ID, Size: 3}, nil).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if clone.Size != 3 || clone.SourceVolID != v.ID {
		t.Fatalf("clone: size %d source_volid %q, want 3 and %s", clone.Size, clone.SourceVolID, v.ID)
	}
	waitVolume(t, c.volume, fromSnap.ID, "available")
	waitVolume(t, c.volume, clone.ID, "available")

	read := func(path string, off int64, n int) string {
		t.Helper()
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b := make([]byte, n)
		if _, err := f.ReadAt(b, off); err != nil {
			t.Fatalf("read %s: %v", path, err)
		}
		return string(b)
	}
	if got := read(s.BackingFile(fromSnap.ID), 1<<30, 10); got != "at one GiB" {
		t.Fatalf("volume from snapshot reads %q at 1 GiB, want the snapshot's data", got)
	}
	if got := read(s.BackingFile(clone.ID), 0, 11); got != "overwritten" {
		t.Fatalf("clone reads %q, want the source's current data", got)
	}
	for path, size := range map[string]int64{s.BackingFile(fromSnap.ID): 2 << 30, s.BackingFile(clone.ID): 3 << 30} {
		fi, err := os.Stat(path)
		if err != nil || fi.Size() != size {
			t.Fatalf("%s: %v, %v; want %d bytes", path, fi, err, size)
		}
		// Sparse: the copy allocates the data, not the holes.
		if used := fi.Sys().(*syscall.Stat_t).Blocks * 512; used > 1<<20 {
			t.Fatalf("%s: %d bytes allocated for a few bytes of data: the copy filled the holes", path, used)
		}
	}
}
