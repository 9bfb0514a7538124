package volumedriver

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/go-plugins-helpers/volume"

	"github.com/cinderwarden/cinderwarden/openstack"
)

// TestCreateFromSnapshotAndSource: with real loop devices, data written
// through Mount is in a volume created with -o snapshot=<name> and in one
// created with -o source=<name>; their size defaults to the source's. Bad
// references fail before any create, naming the option (and every id when
// a name is ambiguous).
func TestCreateFromSnapshotAndSource(t *testing.T) {
	n := newLoopNode(t)
	d := n.drv
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if err := d.Create(&volume.CreateRequest{Name: "v1", Options: map[string]string{"size": "2"}}); err != nil {
		t.Fatal(err)
	}
	m, err := d.Mount(&volume.MountRequest{Name: "v1", ID: "m1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(m.Mountpoint, "f"), []byte("from v1"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.Unmount(&volume.UnmountRequest{Name: "v1", ID: "m1"}); err != nil {
		t.Fatal(err)
	}
	v1 := n.volume(t, "v1")
	snap := func(name string) string {
		t.Helper()
		s, err := n.cloud.CreateSnapshot(ctx, openstack.CreateSnapshotOpts{VolumeID: v1.ID, Name: name})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := n.cloud.WaitSnapshotAvailable(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
		return s.ID
	}
	s1 := snap("snap1")

	readBack := func(name string) {
		t.Helper()
		m, err := d.Mount(&volume.MountRequest{Name: name, ID: "r-" + name})
		if err != nil {
			t.Fatalf("mount %s: %v", name, err)
		}
		got, err := os.ReadFile(filepath.Join(m.Mountpoint, "f"))
		if err != nil || string(got) != "from v1" {
			t.Errorf("%s reads %q (%v), want %q", name, got, err, "from v1")
		}
		if err := d.Unmount(&volume.UnmountRequest{Name: name, ID: "r-" + name}); err != nil {
			t.Fatal(err)
		}
	}

	if err := d.Create(&volume.CreateRequest{Name: "v2", Options: map[string]string{"snapshot": "snap1"}}); err != nil {
		t.Fatal(err)
	}
	if v2 := n.volume(t, "v2"); v2.SnapshotID != s1 || v2.SizeGiB != 2 || v2.Metadata[MetaManaged] != "true" {
		t.Fatalf("v2: snapshot %q size %d metadata %v; want %s, 2 GiB, managed", v2.SnapshotID, v2.SizeGiB, v2.Metadata, s1)
	}
	readBack("v2")

	if err := d.Create(&volume.CreateRequest{Name: "v3", Options: map[string]string{"source": "v1"}}); err != nil {
		t.Fatal(err)
	}
	if v3 := n.volume(t, "v3"); v3.SourceVolID != v1.ID || v3.SizeGiB != 2 {
		t.Fatalf("v3: source %q size %d; want %s, 2 GiB", v3.SourceVolID, v3.SizeGiB, v1.ID)
	}
	readBack("v3")

	// Bad references: nothing is created.
	err = d.Create(&volume.CreateRequest{Name: "v4", Options: map[string]string{"snapshot": "nope"}})
	if want := `create v4: option snapshot=nope: no snapshot has the id or name "nope": no such volume`; err == nil || err.Error() != want || !errors.Is(err, ErrNoSuchVolume) {
		t.Fatalf("unknown snapshot: %v, want %q", err, want)
	}
	err = d.Create(&volume.CreateRequest{Name: "v4", Options: map[string]string{"source": "nope"}})
	if want := `create v4: option source=nope: no volume has the id or name "nope": no such volume`; err == nil || err.Error() != want {
		t.Fatalf("unknown source: %v, want %q", err, want)
	}
	s2 := snap("snap1")
	err = d.Create(&volume.CreateRequest{Name: "v4", Options: map[string]string{"snapshot": "snap1"}})
	if !errors.Is(err, ErrAmbiguousName) || !strings.Contains(err.Error(), "option snapshot=snap1: 2 snapshots are named \"snap1\"") ||
		!strings.Contains(err.Error(), s1) || !strings.Contains(err.Error(), s2) {
		t.Fatalf("ambiguous snapshot: %v, want both ids %s and %s", err, s1, s2)
	}
	// By id, the same snapshot is fine.
	if err := d.Create(&volume.CreateRequest{Name: "v5", Options: map[string]string{"snapshot": s2, "size": "3"}}); err != nil {
		t.Fatalf("create from snapshot id: %v", err)
	}
	if v5 := n.volume(t, "v5"); v5.SnapshotID != s2 || v5.SizeGiB != 3 {
		t.Fatalf("v5: snapshot %q size %d, want %s and 3", v5.SnapshotID, v5.SizeGiB, s2)
	}
	// A size below the source's is Cinder's refusal, passed on.
	err = d.Create(&volume.CreateRequest{Name: "v6", Options: map[string]string{"source": "v1", "size": "1"}})
	if !errors.Is(err, openstack.ErrBadRequest) {
		t.Fatalf("clone smaller than its source: %v, want ErrBadRequest", err)
	}
	dup, err := n.cloud.CreateVolume(ctx, openstack.CreateVolumeOpts{Name: "v1", SizeGiB: 1})
	if err != nil {
		t.Fatal(err)
	}
	err = d.Create(&volume.CreateRequest{Name: "v6", Options: map[string]string{"source": "v1"}})
	if !errors.Is(err, ErrAmbiguousName) || !strings.Contains(err.Error(), "option source=v1") ||
		!strings.Contains(err.Error(), v1.ID) || !strings.Contains(err.Error(), dup.ID) {
		t.Fatalf("ambiguous source: %v, want both ids %s and %s", err, v1.ID, dup.ID)
	}
	if vs, err := n.cloud.ListVolumes(ctx, openstack.VolumeFilter{Name: "v4"}); err != nil || len(vs) != 0 {
		t.Fatalf("volumes named v4 after failed creates: %v %v", vs, err)
	}
}
