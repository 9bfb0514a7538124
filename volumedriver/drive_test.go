package volumedriver

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
)

// TestDriveWritesAheadToARealStateFile drives Mount and Unmount through the
// real state file: at the moment each action runs, and when Docker gets its
// answer, the file on disk already says so.
func TestDriveWritesAheadToARealStateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "state.json")
	node := NodeState{InstanceID: tInst, BootID: tBoot}
	persist := func(s VolumeState) error {
		node = node.With(s)
		return SaveState(path, node)
	}
	onDisk := func() (VolumeState, bool) {
		n, err := LoadState(path)
		if err != nil {
			t.Fatal(err)
		}
		return n.Volume(tVol)
	}
	var log []string
	exec := func(ctx context.Context, a Action) Event {
		s, ok := onDisk()
		log = append(log, a.Kind.String()+"@"+s.Phase.String())
		if !ok {
			t.Fatalf("%s ran before the volume was on disk", a.Kind)
		}
		switch a.Kind {
		case ActAttach:
			if !slices.Contains(s.Pending, "m1") {
				t.Errorf("attach ran before mount id m1 was recorded: %+v", s)
			}
			return AttachDone{AttachmentID: tAtt, Generation: 4}
		case ActWaitDevice:
			return DeviceFound{tDev}
		case ActMount:
			return MountDone{}
		case ActUnmount:
			return UnmountDone{}
		default:
			return DetachDone{}
		}
	}
	v := NewVolume(tVol, "v1", tDir, FSExt4)
	replies, err := Drive(context.Background(), v, Mount{"m1"}, exec, persist)
	if err != nil {
		t.Fatal(err)
	}
	r, ok := ReplyFor(replies, ReplyMount, "m1")
	if !ok || r.Err != nil || r.Mountpoint != tData {
		t.Fatalf("mount reply %+v %v", r, ok)
	}
	if s, _ := onDisk(); s.Phase != PhaseMounted || !slices.Equal(s.Refs, []string{"m1"}) || s.Generation != 4 {
		t.Fatalf("on disk after mount: %+v", s)
	}
	replies, err = Drive(context.Background(), v, Unmount{"m1"}, exec, persist)
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := ReplyFor(replies, ReplyUnmount, "m1"); !ok || r.Err != nil {
		t.Fatalf("unmount reply %+v %v", r, ok)
	}
	if _, ok := onDisk(); ok {
		t.Error("a detached volume is still in the state file")
	}
	want := []string{"attach@attaching", "wait-device@waiting-device", "mount@mounting", "unmount@unmounting", "detach@detaching"}
	if !slices.Equal(log, want) {
		t.Errorf("actions %v, want %v", log, want)
	}
}

func TestDriveFailsClosedWhenTheStateCannotBeSaved(t *testing.T) {
	diskFull := errors.New("no space left on device")
	saves := 0
	persist := func(VolumeState) error {
		saves++
		if saves == 4 { // the save that records the mount as done
			return diskFull
		}
		return nil
	}
	ran := 0
	exec := func(ctx context.Context, a Action) Event {
		ran++
		switch a.Kind {
		case ActAttach:
			return AttachDone{AttachmentID: tAtt}
		case ActWaitDevice:
			return DeviceFound{tDev}
		default:
			return MountDone{}
		}
	}
	v := NewVolume(tVol, "v1", tDir, FSExt4)
	replies, err := Drive(context.Background(), v, Mount{"m1"}, exec, persist)
	if !errors.Is(err, diskFull) {
		t.Fatalf("err = %v", err)
	}
	r, ok := ReplyFor(replies, ReplyMount, "m1")
	if !ok || !errors.Is(r.Err, diskFull) || r.Mountpoint != "" {
		t.Errorf("Docker must not hear success for an unsaved mount: %+v", r)
	}
	if ran != 3 {
		t.Errorf("ran %d actions, want 3", ran)
	}
	// An illegal event surfaces as an error, nothing runs.
	if _, err := Drive(context.Background(), NewVolume(tVol, "v1", tDir, FSExt4), MountDone{}, exec, persist); !errors.Is(err, ErrIllegalTransition) {
		t.Errorf("illegal event: %v", err)
	}
}
