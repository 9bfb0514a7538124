package openstack_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cinderwarden/cinderwarden/openstack"
	"github.com/cinderwarden/cinderwarden/simcloud"
)

// Snapshots through the client against the simulator over HTTP: create,
// wait, list by name across pages, get, delete; errors keep their class.
func TestSnapshotsAgainstSimulator(t *testing.T) {
	e := startSim(t, simcloud.Latencies{Create: 30 * time.Millisecond, Delete: 30 * time.Millisecond})
	c := e.client(t, simcloud.CloudMember, prometheus.NewRegistry())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	v, err := c.CreateVolume(ctx, openstack.CreateVolumeOpts{Name: "src", SizeGiB: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitVolume(ctx, v.ID, openstack.StatusIs("available")); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, name := range []string{"daily", "daily", "weekly"} {
		s, err := c.CreateSnapshot(ctx, openstack.CreateSnapshotOpts{VolumeID: v.ID, Name: name})
		if err != nil {
			t.Fatal(err)
		}
		if s.Status != "creating" || s.SizeGiB != 2 || s.VolumeID != v.ID {
			t.Fatalf("created snapshot %+v: want creating, 2 GiB, volume %s", s, v.ID)
		}
		if _, err := c.WaitSnapshotAvailable(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, s.ID)
	}

	// Page size 1 makes the client follow snapshots_links.
	daily, err := c.ListSnapshots(ctx, openstack.SnapshotFilter{Name: "daily", PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range daily {
		if s.Name != "daily" || s.Status != "available" {
			t.Errorf("listed %+v: want name daily, available", s)
		}
		got = append(got, s.ID)
	}
	slices.Sort(got)
	want := slices.Sorted(slices.Values(ids[:2]))
	if !slices.Equal(got, want) {
		t.Fatalf("snapshots named daily: got %v, want %v", got, want)
	}
	all, err := c.ListSnapshots(ctx, openstack.SnapshotFilter{VolumeID: v.ID, PageSize: 2})
	if err != nil || len(all) != 3 {
		t.Fatalf("snapshots of the volume: %d (%v), want 3", len(all), err)
	}

	s, err := c.GetSnapshot(ctx, ids[2])
	if err != nil || s.Name != "weekly" || s.ProjectID == "" {
		t.Fatalf("get snapshot: %+v, %v; want weekly with its project", s, err)
	}
	if _, err := c.GetSnapshot(ctx, "00000000-0000-4000-8000-000000000000"); !errors.Is(err, openstack.ErrNotFound) {
		t.Fatalf("get unknown snapshot: %v, want ErrNotFound", err)
	}
	// A volume with snapshots cannot be deleted.
	if err := c.DeleteVolume(ctx, v.ID); !errors.Is(err, openstack.ErrBadRequest) {
		t.Fatalf("delete volume with snapshots: %v, want ErrBadRequest", err)
	}
	for _, id := range ids {
		if err := c.DeleteSnapshot(ctx, id); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitSnapshotDeleted(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.DeleteVolume(ctx, v.ID); err != nil {
		t.Fatalf("delete volume after its snapshots: %v", err)
	}
}
