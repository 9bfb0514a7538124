package volumedriver

import (
	"errors"
	"fmt"
	"reflect"
	"syscall"
	"testing"
)

const (
	tVol = "0b1d8c4e-5f5a-4a53-9a52-2f0d2f7f3c11"
	tDir = "/var/lib/cinderwarden/mounts/" + tVol
	tDev = "/dev/vdc"
	tAtt = "att-1"
)

var tData = tDir + "/data"

var errBoom = errors.New("boom")

// st builds a state in phase p with the fields a real run would have there.
func st(p Phase, mod ...func(*VolumeState)) VolumeState {
	s := VolumeState{VolumeID: tVol, Name: "v1", MountDir: tDir, FSType: FSExt4, Phase: p}
	switch p {
	case PhaseAttaching:
		s.Pending = []string{"m1"}
	case PhaseWaitingDevice:
		s.Pending, s.AttachmentID = []string{"m1"}, tAtt
	case PhaseMounting:
		s.Pending, s.AttachmentID, s.Device = []string{"m1"}, tAtt, tDev
	case PhaseMounted:
		s.Refs, s.AttachmentID, s.Device = []string{"m1"}, tAtt, tDev
	case PhaseUnmounting:
		s.Releasing, s.AttachmentID, s.Device = []string{"m1"}, tAtt, tDev
	case PhaseDetaching:
		s.Releasing, s.AttachmentID, s.Device = []string{"m1"}, tAtt, tDev
	case PhaseAttached:
		s.AttachmentID, s.Device = tAtt, tDev
	}
	for _, m := range mod {
		m(&s)
	}
	return s
}

func act(k ActionKind) Action {
	a := Action{Kind: k, VolumeID: tVol}
	switch k {
	case ActMount:
		a.Device, a.MountDir, a.FSType = tDev, tDir, FSExt4
	case ActUnmount:
		a.MountDir = tDir
	case ActDetach:
		a.AttachmentID = tAtt
	}
	return a
}

// rep is an expected reply; errIs is the class the reply's error must match.
type rep struct {
	op    ReplyOp
	id    string
	mp    string
	errIs error
}

func ok(id string) rep                { return rep{op: ReplyMount, id: id, mp: tData} }
func uok(id string) rep               { return rep{op: ReplyUnmount, id: id} }
func mErr(id string, class error) rep { return rep{op: ReplyMount, id: id, errIs: class} }
func uErr(id string, class error) rep { return rep{op: ReplyUnmount, id: id, errIs: class} }

func checkReplies(t *testing.T, got []Reply, want []rep) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("replies = %+v, want %d: %+v", got, len(want), want)
	}
	for i, w := range want {
		g := got[i]
		if g.Op != w.op || g.MountID != w.id || g.Mountpoint != w.mp {
			t.Errorf("reply %d = %+v, want %+v", i, g, w)
		}
		switch {
		case w.errIs == nil && g.Err != nil:
			t.Errorf("reply %d: unexpected error %v", i, g.Err)
		case w.errIs != nil && !errors.Is(g.Err, w.errIs):
			t.Errorf("reply %d: error %v, want class %v", i, g.Err, w.errIs)
		}
	}
}

func TestStepTransitions(t *testing.T) {
	busy := fmt.Errorf("umount: %w", syscall.EBUSY)
	tests := []struct {
		name    string
		from    VolumeState
		ev      Event
		want    VolumeState
		actions []Action
		replies []rep
		persist bool
	}{
		// Detached
		{"detached/mount attaches", st(PhaseDetached), Mount{"m1"},
			st(PhaseDetached, func(s *VolumeState) { s.Phase, s.Pending = PhaseAttaching, []string{"m1"} }),
			[]Action{act(ActAttach)}, nil, true},
		{"detached/mount clears an old error", st(PhaseDetached, func(s *VolumeState) { s.LastError = "old" }), Mount{"m1"},
			st(PhaseAttaching), []Action{act(ActAttach)}, nil, true},
		{"detached/unmount unknown id is idempotent", st(PhaseDetached), Unmount{"zz"},
			st(PhaseDetached), nil, []rep{uok("zz")}, false},
		{"detached/release is a no-op", st(PhaseDetached), Release{}, st(PhaseDetached), nil, nil, false},
		{"detached/lost is a no-op", st(PhaseDetached), Lost{"gone"}, st(PhaseDetached), nil, nil, false},

		// Attaching
		{"attaching/second mount rides on the attach", st(PhaseAttaching), Mount{"m2"},
			st(PhaseAttaching, func(s *VolumeState) { s.Pending = []string{"m1", "m2"} }), nil, nil, true},
		{"attaching/repeated mount id", st(PhaseAttaching), Mount{"m1"}, st(PhaseAttaching), nil, nil, false},
		{"attaching/unmount of a pending id cancels it", st(PhaseAttaching), Unmount{"m1"},
			st(PhaseAttaching, func(s *VolumeState) { s.Pending = nil }), nil,
			[]rep{mErr("m1", ErrMountCanceled), uok("m1")}, true},
		{"attaching/unmount unknown id", st(PhaseAttaching), Unmount{"zz"}, st(PhaseAttaching), nil, []rep{uok("zz")}, false},
		{"attaching/attach done waits for the device", st(PhaseAttaching), AttachDone{AttachmentID: tAtt, Generation: 7},
			st(PhaseWaitingDevice, func(s *VolumeState) { s.Generation = 7 }), []Action{act(ActWaitDevice)}, nil, true},
		{"attaching/attach done with nobody waiting detaches", st(PhaseAttaching, func(s *VolumeState) { s.Pending = nil }),
			AttachDone{AttachmentID: tAtt},
			st(PhaseDetaching, func(s *VolumeState) { s.Releasing, s.Device = nil, "" }), []Action{act(ActDetach)}, nil, true},
		{"attaching/attach refused fails the mounts", st(PhaseAttaching, func(s *VolumeState) { s.Pending = []string{"m1", "m2"} }),
			AttachFailed{Err: errBoom},
			st(PhaseDetached, func(s *VolumeState) { s.LastError = "volume " + tVol + ": attach: boom" }), nil,
			[]rep{mErr("m1", errBoom), mErr("m2", errBoom)}, true},
		{"attaching/attach timeout detaches so nothing leaks", st(PhaseAttaching), AttachFailed{Err: errBoom, MayBeAttached: true},
			st(PhaseDetaching, func(s *VolumeState) {
				s.Releasing, s.Device, s.AttachmentID, s.LastError = nil, "", "", "volume "+tVol+": attach: boom"
			}),
			[]Action{{Kind: ActDetach, VolumeID: tVol}}, []rep{mErr("m1", errBoom)}, true},

		// WaitingDevice
		{"waiting/mount rides", st(PhaseWaitingDevice), Mount{"m0"},
			st(PhaseWaitingDevice, func(s *VolumeState) { s.Pending = []string{"m0", "m1"} }), nil, nil, true},
		{"waiting/unmount of a pending id cancels it", st(PhaseWaitingDevice), Unmount{"m1"},
			st(PhaseWaitingDevice, func(s *VolumeState) { s.Pending = nil }), nil,
			[]rep{mErr("m1", ErrMountCanceled), uok("m1")}, true},
		{"waiting/device found mounts", st(PhaseWaitingDevice), DeviceFound{tDev},
			st(PhaseMounting), []Action{act(ActMount)}, nil, true},
		{"waiting/device found but unwanted detaches", st(PhaseWaitingDevice, func(s *VolumeState) { s.Pending = nil }), DeviceFound{tDev},
			st(PhaseDetaching, func(s *VolumeState) { s.Releasing = nil }), []Action{act(ActDetach)}, nil, true},
		{"waiting/device timeout fails mounts and detaches", st(PhaseWaitingDevice), DeviceFailed{errBoom},
			st(PhaseDetaching, func(s *VolumeState) {
				s.Releasing, s.Device, s.LastError = nil, "", "volume "+tVol+": find device: boom"
			}),
			[]Action{act(ActDetach)}, []rep{mErr("m1", errBoom)}, true},
		{"waiting/device timeout keeps a disk recovered users hold", st(PhaseWaitingDevice, func(s *VolumeState) { s.Refs = []string{"old"} }),
			DeviceFailed{errBoom},
			st(PhaseAttached, func(s *VolumeState) {
				s.Refs, s.Device, s.LastError = []string{"old"}, "", "volume "+tVol+": find device: boom"
			}),
			nil, []rep{mErr("m1", errBoom)}, true},

		// Mounting
		{"mounting/mount rides", st(PhaseMounting), Mount{"m2"},
			st(PhaseMounting, func(s *VolumeState) { s.Pending = []string{"m1", "m2"} }), nil, nil, true},
		{"mounting/unmount of a recovered ref answers at once", st(PhaseMounting, func(s *VolumeState) { s.Refs = []string{"old"} }),
			Unmount{"old"}, st(PhaseMounting), nil, []rep{uok("old")}, true},
		{"mounting/mount done answers every waiting mount", st(PhaseMounting, func(s *VolumeState) { s.Pending = []string{"m1", "m2"} }),
			MountDone{}, st(PhaseMounted, func(s *VolumeState) { s.Refs = []string{"m1", "m2"} }), nil,
			[]rep{ok("m1"), ok("m2")}, true},
		{"mounting/mount done with nobody left unmounts", st(PhaseMounting, func(s *VolumeState) { s.Pending = nil }), MountDone{},
			st(PhaseUnmounting, func(s *VolumeState) { s.Releasing = nil }), []Action{act(ActUnmount)}, nil, true},
		{"mounting/mount failed detaches", st(PhaseMounting), MountFailed{Err: errBoom},
			st(PhaseDetaching, func(s *VolumeState) {
				s.Releasing = nil
				s.LastError = "volume " + tVol + ": mount " + tDev + " at " + tDir + ": boom"
			}), []Action{act(ActDetach)}, []rep{mErr("m1", errBoom)}, true},
		{"mounting/mount failed but left mounted unmounts", st(PhaseMounting), MountFailed{Err: errBoom, LeftMounted: true},
			st(PhaseUnmounting, func(s *VolumeState) {
				s.Releasing = nil
				s.LastError = "volume " + tVol + ": mount " + tDev + " at " + tDir + ": boom"
			}), []Action{act(ActUnmount)}, []rep{mErr("m1", errBoom)}, true},
		{"mounting/mount failed with recovered users keeps the disk", st(PhaseMounting, func(s *VolumeState) { s.Refs = []string{"old"} }),
			MountFailed{Err: errBoom},
			st(PhaseAttached, func(s *VolumeState) {
				s.Refs, s.LastError = []string{"old"}, "volume "+tVol+": mount "+tDev+" at "+tDir+": boom"
			}), nil, []rep{mErr("m1", errBoom)}, true},
		{"mounting/left mounted with recovered users stays mounted", st(PhaseMounting, func(s *VolumeState) { s.Refs = []string{"old"} }),
			MountFailed{Err: errBoom, LeftMounted: true},
			st(PhaseMounted, func(s *VolumeState) {
				s.Refs, s.LastError = []string{"old"}, "volume "+tVol+": mount "+tDev+" at "+tDir+": boom"
			}), nil, []rep{mErr("m1", errBoom)}, true},

		// Mounted
		{"mounted/second mount id shares without re-attaching", st(PhaseMounted), Mount{"m2"},
			st(PhaseMounted, func(s *VolumeState) { s.Refs = []string{"m1", "m2"} }), nil, []rep{ok("m2")}, true},
		{"mounted/repeated mount id", st(PhaseMounted), Mount{"m1"}, st(PhaseMounted), nil, []rep{ok("m1")}, false},
		{"mounted/unmount of one of two keeps it mounted", st(PhaseMounted, func(s *VolumeState) { s.Refs = []string{"m1", "m2"} }),
			Unmount{"m1"}, st(PhaseMounted, func(s *VolumeState) { s.Refs = []string{"m2"} }), nil, []rep{uok("m1")}, true},
		{"mounted/last unmount unmounts and answers later", st(PhaseMounted), Unmount{"m1"},
			st(PhaseUnmounting), []Action{act(ActUnmount)}, nil, true},
		{"mounted/unmount unknown id is idempotent", st(PhaseMounted), Unmount{"zz"}, st(PhaseMounted), nil, []rep{uok("zz")}, false},
		{"mounted/release refused while in use", st(PhaseMounted), Release{}, st(PhaseMounted), nil, nil, false},
		{"mounted/release of an idle mount", st(PhaseMounted, func(s *VolumeState) { s.Refs = nil }), Release{},
			st(PhaseUnmounting, func(s *VolumeState) { s.Releasing = nil }), []Action{act(ActUnmount)}, nil, true},
		{"mounted/lost force-unmounts and drops refs", st(PhaseMounted), Lost{"device vanished"},
			st(PhaseUnmounting, func(s *VolumeState) { s.Releasing, s.ForceUnmount, s.LastError = nil, true, "device vanished" }),
			[]Action{{Kind: ActUnmount, VolumeID: tVol, MountDir: tDir, Force: true}}, nil, true},

		// Unmounting
		{"unmounting/mount waits for the release, then re-attaches", st(PhaseUnmounting), Mount{"m2"},
			st(PhaseUnmounting, func(s *VolumeState) { s.Pending = []string{"m2"} }), nil, nil, true},
		{"unmounting/unmount unknown id", st(PhaseUnmounting), Unmount{"zz"}, st(PhaseUnmounting), nil, []rep{uok("zz")}, false},
		{"unmounting/unmount done detaches", st(PhaseUnmounting, func(s *VolumeState) { s.ForceUnmount = true }), UnmountDone{},
			st(PhaseDetaching), []Action{act(ActDetach)}, nil, true},
		{"unmounting/busy keeps it mounted and attached and says why", st(PhaseUnmounting), UnmountFailed{busy},
			st(PhaseMounted, func(s *VolumeState) {
				s.Refs, s.Releasing = nil, nil
				s.LastError = "volume " + tVol + ": unmount " + tDir + ": umount: device or resource busy; the volume stays mounted and attached"
			}), nil, []rep{uErr("m1", syscall.EBUSY)}, true},
		{"unmounting/busy serves mounts that arrived meanwhile", st(PhaseUnmounting, func(s *VolumeState) { s.Pending = []string{"m2"} }),
			UnmountFailed{busy},
			st(PhaseMounted, func(s *VolumeState) {
				s.Refs, s.Releasing = []string{"m2"}, nil
				s.LastError = "volume " + tVol + ": unmount " + tDir + ": umount: device or resource busy; the volume stays mounted and attached"
			}), nil, []rep{uErr("m1", syscall.EBUSY), ok("m2")}, true},

		// Detaching
		{"detaching/mount waits", st(PhaseDetaching), Mount{"m2"},
			st(PhaseDetaching, func(s *VolumeState) { s.Pending = []string{"m2"} }), nil, nil, true},
		{"detaching/unmount of a waiting mount cancels it", st(PhaseDetaching, func(s *VolumeState) { s.Pending = []string{"m2"} }),
			Unmount{"m2"}, st(PhaseDetaching), nil, []rep{mErr("m2", ErrMountCanceled), uok("m2")}, true},
		{"detaching/detach done answers the last unmount", st(PhaseDetaching), DetachDone{},
			st(PhaseDetached, func(s *VolumeState) { s.Releasing, s.AttachmentID, s.Device = nil, "", "" }), nil, []rep{uok("m1")}, true},
		{"detaching/detach done with a waiting mount re-attaches", st(PhaseDetaching, func(s *VolumeState) { s.Pending = []string{"m2"} }),
			DetachDone{},
			st(PhaseAttaching, func(s *VolumeState) { s.Pending, s.Releasing, s.AttachmentID, s.Device = []string{"m2"}, nil, "", "" }),
			[]Action{act(ActAttach)}, []rep{uok("m1")}, true},
		{"detaching/detach failed stays attached and says why", st(PhaseDetaching), DetachFailed{errBoom},
			st(PhaseAttached, func(s *VolumeState) {
				s.Releasing, s.LastError = nil, "volume "+tVol+": detach from this instance: boom; the volume stays attached"
			}), nil, []rep{uErr("m1", errBoom)}, true},
		{"detaching/detach failed with a waiting mount re-verifies the attachment", st(PhaseDetaching, func(s *VolumeState) { s.Pending = []string{"m2"} }),
			DetachFailed{errBoom},
			st(PhaseAttaching, func(s *VolumeState) {
				s.Pending, s.Releasing, s.LastError = []string{"m2"}, nil, "volume "+tVol+": detach from this instance: boom; the volume stays attached"
			}), []Action{act(ActAttach)}, []rep{uErr("m1", errBoom)}, true},

		// Attached (steady, not mounted)
		// Attached but unmounted follows a failed/timed-out detach (Nova may
		// still finish it) or a restart: a Mount re-verifies with Cinder
		// instead of trusting a device that may vanish under it.
		{"attached/mount re-verifies the attachment", st(PhaseAttached), Mount{"m1"},
			st(PhaseAttaching), []Action{act(ActAttach)}, nil, true},
		{"attached/recovered ref re-sent re-verifies like any mount", st(PhaseAttached, func(s *VolumeState) { s.Refs = []string{"m1"} }), Mount{"m1"},
			st(PhaseAttaching), []Action{act(ActAttach)}, nil, true},
		{"attached/last recovered ref unmounted detaches", st(PhaseAttached, func(s *VolumeState) { s.Refs = []string{"m1"} }), Unmount{"m1"},
			st(PhaseDetaching), []Action{act(ActDetach)}, nil, true},
		{"attached/release detaches", st(PhaseAttached), Release{},
			st(PhaseDetaching, func(s *VolumeState) { s.Releasing = nil }), []Action{act(ActDetach)}, nil, true},
		{"attached/release refused with recovered users", st(PhaseAttached, func(s *VolumeState) { s.Refs = []string{"m1"} }), Release{},
			st(PhaseAttached, func(s *VolumeState) { s.Refs = []string{"m1"} }), nil, nil, false},
		{"attached/lost drops refs and detaches", st(PhaseAttached, func(s *VolumeState) { s.Refs = []string{"m1"} }), Lost{"taken over"},
			st(PhaseDetaching, func(s *VolumeState) { s.Releasing, s.LastError = nil, "taken over" }), []Action{act(ActDetach)}, nil, true},
	}
	// Every legal (phase, event) pair has at least one row: Mount and
	// Unmount in every phase, Release and Lost in the steady ones, each
	// result in the phase waiting for it.
	covered := map[string]bool{}
	for _, tc := range tests {
		covered[tc.from.Phase.String()+"+"+tc.ev.eventName()] = true
	}
	results := map[Phase][]string{
		PhaseAttaching: {"AttachDone", "AttachFailed"}, PhaseWaitingDevice: {"DeviceFound", "DeviceFailed"},
		PhaseMounting: {"MountDone", "MountFailed"}, PhaseUnmounting: {"UnmountDone", "UnmountFailed"},
		PhaseDetaching: {"DetachDone", "DetachFailed"},
	}
	legal := 0
	for p := PhaseDetached; p <= PhaseAttached; p++ {
		evs := append([]string{"Mount", "Unmount"}, results[p]...)
		if p.Steady() {
			evs = append(evs, "Release", "Lost")
		}
		for _, e := range evs {
			legal++
			if !covered[p.String()+"+"+e] {
				t.Errorf("no row for the legal transition %s + %s", p, e)
			}
		}
	}
	if legal != 32 {
		t.Errorf("%d legal pairs, want 32", legal)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := RestoreVolume(tc.from)
			if err != nil {
				t.Fatalf("RestoreVolume: %v", err)
			}
			rd, err := v.Step(tc.ev)
			if _, isRelease := tc.ev.(Release); isRelease && len(tc.from.Refs) > 0 {
				var iu *InUseError
				if !errors.As(err, &iu) || !errors.Is(err, ErrInUse) || !reflect.DeepEqual(iu.MountIDs, tc.from.Refs) {
					t.Fatalf("Release with users: err = %v, want *InUseError naming %v", err, tc.from.Refs)
				}
			} else if err != nil {
				t.Fatalf("Step(%T): %v", tc.ev, err)
			}
			if got := v.State(); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("state =\n %+v\nwant\n %+v", got, tc.want)
			}
			if !reflect.DeepEqual(rd.Actions, tc.actions) {
				t.Errorf("actions = %+v, want %+v", rd.Actions, tc.actions)
			}
			checkReplies(t, rd.Replies, tc.replies)
			if rd.Persist != tc.persist {
				t.Errorf("persist = %v, want %v", rd.Persist, tc.persist)
			}
			if err := v.State().Check(); err != nil {
				t.Errorf("result breaks an invariant: %v", err)
			}
		})
	}
}

// TestStepIllegal feeds every action result to every phase that is not
// waiting for it, and Release/Lost to every phase with an operation in
// flight: each must be refused with ErrIllegalTransition, state unchanged.
func TestStepIllegal(t *testing.T) {
	results := []struct {
		ev    Event
		legal Phase
	}{
		{AttachDone{AttachmentID: tAtt}, PhaseAttaching},
		{AttachFailed{Err: errBoom}, PhaseAttaching},
		{DeviceFound{tDev}, PhaseWaitingDevice},
		{DeviceFailed{errBoom}, PhaseWaitingDevice},
		{MountDone{}, PhaseMounting},
		{MountFailed{Err: errBoom}, PhaseMounting},
		{UnmountDone{}, PhaseUnmounting},
		{UnmountFailed{errBoom}, PhaseUnmounting},
		{DetachDone{}, PhaseDetaching},
		{DetachFailed{errBoom}, PhaseDetaching},
	}
	phases := []Phase{PhaseDetached, PhaseAttaching, PhaseWaitingDevice, PhaseMounting, PhaseMounted,
		PhaseUnmounting, PhaseDetaching, PhaseAttached}
	refused := 0
	for _, p := range phases {
		var evs []Event
		for _, r := range results {
			if r.legal != p {
				evs = append(evs, r.ev)
			}
		}
		if !p.Steady() {
			evs = append(evs, Release{}, Lost{"x"})
		}
		for _, ev := range evs {
			from := st(p)
			v, err := RestoreVolume(from)
			if err != nil {
				t.Fatal(err)
			}
			rd, err := v.Step(ev)
			var te *TransitionError
			if !errors.Is(err, ErrIllegalTransition) || !errors.As(err, &te) || te.Phase != p || te.Event != ev.eventName() {
				t.Errorf("%s + %s: err = %v, want a TransitionError", p, ev.eventName(), err)
				continue
			}
			want := fmt.Sprintf("volume %s: %s not allowed while %s", tVol, ev.eventName(), p)
			if err.Error() != want {
				t.Errorf("message %q, want %q", err, want)
			}
			if !reflect.DeepEqual(v.State(), from) || len(rd.Actions)+len(rd.Replies) != 0 || rd.Persist {
				t.Errorf("%s + %s changed something: %+v %+v", p, ev.eventName(), v.State(), rd)
			}
			refused++
		}
	}
	// 8 phases × 10 results, minus the 10 legal pairs, plus 2 × 5 busy phases.
	if refused != 8*10-10+2*5 {
		t.Errorf("refused %d events, want %d", refused, 8*10-10+2*5)
	}
}

func TestStepRejectsEmptyIDs(t *testing.T) {
	for _, ev := range []Event{Mount{}, Unmount{}} {
		v := NewVolume(tVol, "v1", tDir, FSExt4)
		if _, err := v.Step(ev); !errors.Is(err, ErrMalformedRequest) {
			t.Errorf("%s with empty id: err = %v, want ErrMalformedRequest", ev.eventName(), err)
		}
	}
	v, _ := RestoreVolume(st(PhaseWaitingDevice))
	if _, err := v.Step(DeviceFound{}); !errors.Is(err, ErrMalformedRequest) || v.Phase() != PhaseWaitingDevice {
		t.Errorf("DeviceFound without device: err = %v, phase %s", err, v.Phase())
	}
}

// driver performs the actions of a Ready with scripted outcomes and counts
// them, the way the plugin wiring will (lock, Step, persist, act, feed back).
type driver struct {
	t        *testing.T
	v        *Volume
	outcome  map[ActionKind]Event // result to report; default success
	done     map[ActionKind]int
	replies  []Reply
	persists int
}

func newDriver(t *testing.T) *driver {
	return &driver{t: t, v: NewVolume(tVol, "v1", tDir, FSExt4), outcome: map[ActionKind]Event{}, done: map[ActionKind]int{}}
}

func (d *driver) run(ev Event) {
	d.t.Helper()
	queue := []Event{ev}
	for len(queue) > 0 {
		rd, err := d.v.Step(queue[0])
		queue = queue[1:]
		if err != nil {
			d.t.Fatalf("step: %v", err)
		}
		if rd.Persist {
			d.persists++
		}
		for _, a := range rd.Actions {
			d.done[a.Kind]++
			if res, ok := d.outcome[a.Kind]; ok {
				queue = append(queue, res)
				continue
			}
			switch a.Kind {
			case ActAttach:
				queue = append(queue, AttachDone{AttachmentID: tAtt, Generation: 1})
			case ActWaitDevice:
				queue = append(queue, DeviceFound{tDev})
			case ActMount:
				queue = append(queue, MountDone{})
			case ActUnmount:
				queue = append(queue, UnmountDone{})
			case ActDetach:
				queue = append(queue, DetachDone{})
			}
		}
		d.replies = append(d.replies, rd.Replies...)
	}
}

func TestTwoContainersShareOneAttach(t *testing.T) {
	d := newDriver(t)
	d.run(Mount{"c1"})
	d.run(Mount{"c2"})
	if d.done[ActAttach] != 1 || d.done[ActMount] != 1 {
		t.Fatalf("attached %d times, mounted %d times; want 1 and 1", d.done[ActAttach], d.done[ActMount])
	}
	d.run(Unmount{"c1"})
	if d.v.Phase() != PhaseMounted || d.done[ActUnmount] != 0 {
		t.Fatalf("after the first unmount: phase %s, unmounts %d", d.v.Phase(), d.done[ActUnmount])
	}
	d.run(Unmount{"c1"}) // Docker repeating itself changes nothing
	d.run(Unmount{"c2"})
	if d.v.Phase() != PhaseDetached || d.done[ActUnmount] != 1 || d.done[ActDetach] != 1 {
		t.Fatalf("after the last unmount: phase %s, unmounts %d, detaches %d", d.v.Phase(), d.done[ActUnmount], d.done[ActDetach])
	}
	checkReplies(t, d.replies, []rep{ok("c1"), ok("c2"), uok("c1"), uok("c1"), uok("c2")})
	if s := d.v.State(); s.AttachmentID != "" || s.Device != "" || len(s.Refs) != 0 {
		t.Errorf("detached state keeps %+v", s)
	}
}

func TestBusyUnmountThenRelease(t *testing.T) {
	d := newDriver(t)
	d.run(Mount{"c1"})
	d.outcome[ActUnmount] = UnmountFailed{syscall.EBUSY}
	d.run(Unmount{"c1"})
	if d.v.Phase() != PhaseMounted || d.done[ActDetach] != 0 {
		t.Fatalf("busy unmount: phase %s, detaches %d", d.v.Phase(), d.done[ActDetach])
	}
	delete(d.outcome, ActUnmount)
	d.run(Release{}) // the idle sweep retries
	if d.v.Phase() != PhaseDetached || d.done[ActDetach] != 1 {
		t.Fatalf("release: phase %s, detaches %d", d.v.Phase(), d.done[ActDetach])
	}
	checkReplies(t, d.replies, []rep{ok("c1"), uErr("c1", syscall.EBUSY)})
}

func TestCheckRemovable(t *testing.T) {
	for _, p := range []Phase{PhaseDetached, PhaseAttaching, PhaseMounted, PhaseAttached} {
		v, _ := RestoreVolume(st(p))
		err := v.CheckRemovable()
		if (p == PhaseDetached) != (err == nil) || (err != nil && !errors.Is(err, ErrInUse)) {
			t.Errorf("%s: CheckRemovable = %v", p, err)
		}
	}
	v, _ := RestoreVolume(st(PhaseMounted))
	if got, want := v.CheckRemovable().Error(), "volume "+tVol+" is in use on this node by 1 container mount(s): m1"; got != want {
		t.Errorf("message %q, want %q", got, want)
	}
}

func TestRestoreVolumeRejectsBrokenStates(t *testing.T) {
	bad := []VolumeState{
		st(PhaseMounted, func(s *VolumeState) { s.VolumeID = "../etc" }),
		st(PhaseMounted, func(s *VolumeState) { s.MountDir = "" }),
		st(PhaseMounted, func(s *VolumeState) { s.Device = "" }),
		st(PhaseMounted, func(s *VolumeState) { s.Pending = []string{"x"} }),
		st(PhaseDetached, func(s *VolumeState) { s.Refs = []string{"x"} }),
		st(PhaseMounted, func(s *VolumeState) { s.Refs = []string{"b", "a"} }),
		st(PhaseMounted, func(s *VolumeState) { s.Refs = []string{"a", "a"} }),
		st(PhaseMounted, func(s *VolumeState) { s.Phase = Phase(42) }),
	}
	for i, s := range bad {
		if _, err := RestoreVolume(s); err == nil {
			t.Errorf("case %d: RestoreVolume(%+v) accepted", i, s)
		}
	}
}
