package volumedriver

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// world is what the cloud and the kernel would hold while a random sequence
// of Docker requests and action outcomes drives one Volume.
type world struct {
	t         *testing.T
	v         *Volume
	inflight  *Action
	attached  bool // may be attached to this instance
	mounted   bool
	open      map[string]int // outstanding Docker requests per "op/id"
	answered  int
	attachOps int
}

func (w *world) fail(format string, a ...any) {
	w.t.Helper()
	w.t.Fatalf("%s\nstate: %+v", fmt.Sprintf(format, a...), w.v.State())
}

func (w *world) step(ev Event) error {
	w.t.Helper()
	switch e := ev.(type) {
	case Mount:
		w.open["Mount/"+e.ID]++
	case Unmount:
		w.open["Unmount/"+e.ID]++
	}
	before := w.v.State()
	rd, err := w.v.Step(ev)
	if err != nil {
		if !reflect_equal(before, w.v.State()) {
			w.fail("refused %T changed the state", ev)
		}
		switch e := ev.(type) {
		case Mount:
			w.open["Mount/"+e.ID]--
		case Unmount:
			w.open["Unmount/"+e.ID]--
		}
		return err
	}
	if err := w.v.State().Check(); err != nil {
		w.fail("after %T: %v", ev, err)
	}
	for _, r := range rd.Replies {
		key := r.Op.String() + "/" + r.MountID
		if w.open[key] == 0 {
			w.fail("reply %+v to no request", r)
		}
		w.open[key]--
		w.answered++
		if r.Op == ReplyMount && r.Err == nil {
			if !w.mounted || r.Mountpoint != tData || !slices.Contains(w.v.State().Refs, r.MountID) {
				w.fail("mount %s answered ok while mounted=%v", r.MountID, w.mounted)
			}
		}
	}
	if len(rd.Actions) > 1 || (len(rd.Actions) == 1 && w.inflight != nil) {
		w.fail("more than one operation in flight: %+v (in flight %+v)", rd.Actions, w.inflight)
	}
	if len(rd.Actions) == 1 {
		a := rd.Actions[0]
		switch a.Kind {
		case ActAttach:
			// Allowed while attached: after a failed or timed-out detach the
			// machine re-verifies through the attach step, which asks Cinder
			// first and returns at once when the volume is attached here; it
			// never sends a second Nova attach.
			w.attachOps++
		case ActMount:
			if w.mounted || !w.attached {
				w.fail("mount with mounted=%v attached=%v", w.mounted, w.attached)
			}
		case ActUnmount:
			if !w.mounted {
				w.fail("unmount while not mounted")
			}
		case ActDetach:
			if w.mounted {
				w.fail("detach of a mounted disk")
			}
		}
		w.inflight = &a
	}
	if (w.inflight == nil) != w.v.Phase().Steady() {
		w.fail("phase %s with in-flight %+v", w.v.Phase(), w.inflight)
	}
	return nil
}

func reflect_equal(a, b VolumeState) bool { return fmt.Sprintf("%+v", a) == fmt.Sprintf("%+v", b) }

// outcome reports the in-flight action's result, success or not.
func (w *world) outcome(success bool, r *rand.Rand) Event {
	a := *w.inflight
	w.inflight = nil
	switch a.Kind {
	case ActAttach:
		if success {
			w.attached = true
			return AttachDone{AttachmentID: tAtt}
		}
		maybe := r.IntN(2) == 0
		w.attached = maybe // a timed-out attach may have happened
		return AttachFailed{Err: errBoom, MayBeAttached: maybe}
	case ActWaitDevice:
		if success {
			return DeviceFound{tDev}
		}
		return DeviceFailed{errBoom}
	case ActMount:
		if success {
			w.mounted = true
			return MountDone{}
		}
		left := r.IntN(3) == 0
		w.mounted = left
		return MountFailed{Err: errBoom, LeftMounted: left}
	case ActUnmount:
		if success || a.Force {
			w.mounted = false
			return UnmountDone{}
		}
		return UnmountFailed{errBoom}
	case ActDetach:
		if success {
			w.attached = false
			return DetachDone{}
		}
		return DetachFailed{errBoom}
	}
	panic("unknown action")
}

// TestStepRandomized drives the machine with 3000 random interleavings of
// Docker requests, outcomes (20% failures), Release and Lost, checking after
// every step: invariants hold, at most one operation is in flight, a disk is
// never attached twice nor detached while mounted, a Mount is answered ok
// only when mounted, and every Docker request gets exactly one reply once the
// machine is drained.
func TestStepRandomized(t *testing.T) {
	ids := []string{"a", "b", "c", "d"}
	for seed := uint64(0); seed < 3000; seed++ {
		r := rand.New(rand.NewPCG(seed, 42))
		w := &world{t: t, v: NewVolume(tVol, "v1", tDir, FSExt4), open: map[string]int{}}
		for i := 0; i < 40; i++ {
			switch k := r.IntN(10); {
			case k < 3:
				id := ids[r.IntN(len(ids))]
				if w.open["Mount/"+id] > 0 || slices.Contains(w.v.State().Refs, id) {
					continue // Docker does not re-send a Mount it is waiting for
				}
				w.step(Mount{id})
			case k < 5:
				w.step(Unmount{ids[r.IntN(len(ids))]})
			case k < 9:
				if w.inflight != nil {
					w.step(w.outcome(r.IntN(5) != 0, r))
				}
			default:
				ev := Event(Release{})
				if r.IntN(2) == 0 {
					ev = Lost{"gone"}
				}
				err := w.step(ev)
				switch {
				case err == nil:
				case errors.Is(err, ErrInUse):
				case errors.Is(err, ErrIllegalTransition) && !w.v.Phase().Steady():
				default:
					t.Fatalf("seed %d: %T: %v", seed, ev, err)
				}
			}
		}
		// Drain: finish operations, let every container go, release.
		for round := 0; round < 20 && (w.inflight != nil || !w.v.Phase().Steady() || len(w.v.State().Refs) > 0 || w.v.Phase() != PhaseDetached); round++ {
			for w.inflight != nil {
				w.step(w.outcome(true, r))
			}
			for _, id := range w.v.State().Refs {
				w.step(Unmount{id})
				for w.inflight != nil {
					w.step(w.outcome(true, r))
				}
			}
			if err := w.step(Release{}); err != nil {
				t.Fatalf("seed %d: release after drain: %v", seed, err)
			}
		}
		if w.v.Phase() != PhaseDetached || w.attached || w.mounted {
			t.Fatalf("seed %d: drained to %s attached=%v mounted=%v", seed, w.v.Phase(), w.attached, w.mounted)
		}
		for k, n := range w.open {
			if n != 0 {
				t.Fatalf("seed %d: request %s has %d replies missing", seed, k, n)
			}
		}
	}
}
