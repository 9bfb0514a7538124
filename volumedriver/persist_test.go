package volumedriver

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestWriteNeeded(t *testing.T) {
	base := VolumeState{VolumeID: "v", Name: "n", MountDir: "/m/v", FSType: FSExt4, Pending: []string{"m1"}}
	with := func(f func(*VolumeState)) VolumeState {
		s := base.clone()
		f(&s)
		return s
	}
	attaching := with(func(s *VolumeState) { s.Phase = PhaseAttaching })
	waiting := with(func(s *VolumeState) { s.Phase = PhaseWaitingDevice; s.AttachmentID = "a1" })
	mounting := with(func(s *VolumeState) { s.Phase = PhaseMounting; s.AttachmentID = "a1"; s.Device = "/dev/vdb" })
	mounted := with(func(s *VolumeState) {
		s.Phase, s.Device, s.Pending, s.Refs = PhaseMounted, "/dev/vdb", nil, []string{"m1"}
	})
	for _, tc := range []struct {
		name string
		prev VolumeState
		had  bool
		next VolumeState
		want bool
	}{
		{"first record", VolumeState{}, false, attaching, true},
		{"attach done: re-derived from Cinder", attaching, true, waiting, false},
		{"device found: re-derived by volume id", waiting, true, mounting, false},
		{"attaching to mounting", attaching, true, mounting, false},
		{"mount done: the id Docker hears about", mounting, true, mounted, true},
		{"from a steady phase", with(func(s *VolumeState) { s.Phase = PhaseAttached }), true, waiting, true},
		{"to detaching", attaching, true, with(func(s *VolumeState) { s.Phase = PhaseDetaching }), true},
		{"another mount id waits", attaching, true, with(func(s *VolumeState) {
			s.Phase, s.Pending = PhaseWaitingDevice, []string{"m1", "m2"}
		}), true},
		{"a waiting mount id canceled", waiting, true, with(func(s *VolumeState) { s.Phase, s.Pending = PhaseWaitingDevice, nil }), true},
		{"recorded refs change", with(func(s *VolumeState) { s.Phase, s.Refs = PhaseMounting, []string{"c1"} }), true, mounting, true},
	} {
		if got := writeNeeded(tc.prev, tc.had, tc.next); got != tc.want {
			t.Errorf("%s: writeNeeded = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestStateWriterGroupCommit: concurrent Puts all reach the file, each
// caller returning only once its change is on disk, in fewer writes than
// callers when they overlap.
func TestStateWriterGroupCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", StateFileName)
	w := newStateWriter(path, "inst-1", "boot-1", NodeState{Version: StateVersion, Volumes: []VolumeState{}})
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("vol-%02d", i)
			s := VolumeState{VolumeID: id, Name: id, MountDir: "/m/" + id, Phase: PhaseAttaching, Pending: []string{"m"}}
			if errs[i] = w.Put(s); errs[i] != nil {
				return
			}
			// On return the file already holds this volume.
			got, err := LoadState(path)
			if err != nil {
				errs[i] = err
				return
			}
			if _, ok := got.Volume(id); !ok {
				errs[i] = fmt.Errorf("%s: Put returned before the file held it", id)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := LoadState(path)
	if err != nil || len(got.Volumes) != n || got.InstanceID != "inst-1" || got.BootID != "boot-1" {
		t.Fatalf("file: %+v %v", got, err)
	}
	if w.writes > n {
		t.Fatalf("%d writes for %d changes", w.writes, n)
	}
	t.Logf("%d concurrent changes in %d writes", n, w.writes)

	// A failed write fails its callers and leaves the file as it was.
	if err := os.Chmod(filepath.Dir(path), 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(filepath.Dir(path), 0o700) })
	if os.Geteuid() != 0 { // root ignores the directory's mode
		if err := w.Put(VolumeState{VolumeID: "vol-x", MountDir: "/m/x", Phase: PhaseAttaching, Pending: []string{"m"}}); err == nil {
			t.Fatal("Put into a read-only directory succeeded")
		}
	}
}
