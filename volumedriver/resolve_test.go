package volumedriver

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/cinderwarden/cinderwarden/openstack"
)

func TestPickOne(t *testing.T) {
	id1, id2 := "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"
	cases := []struct {
		ref   string
		cands []Candidate
		want  string
		class error
		msg   string
	}{
		{"v1", []Candidate{{id1, "v1"}}, id1, nil, ""},
		{id2, []Candidate{{id1, id2}, {id2, "other"}}, id2, nil, ""}, // an id beats a name
		{"v1", []Candidate{{id1, "v1"}, {id1, "v1"}}, id1, nil, ""},  // the same volume seen twice
		{"v9", nil, "", ErrNoSuchVolume, `no volume has the id or name "v9": no such volume`},
		{"v1", []Candidate{{id2, "v1"}, {id1, "v1"}}, "", ErrAmbiguousName,
			`2 volumes are named "v1": ` + id1 + ", " + id2 + "; use the id: ambiguous name"},
	}
	for _, c := range cases {
		got, err := PickOne("volume", c.ref, c.cands)
		if got != c.want || (c.class == nil) != (err == nil) || (err != nil && (!errors.Is(err, c.class) || err.Error() != c.msg)) {
			t.Errorf("PickOne(%q, %v) = %q, %v; want %q, %q", c.ref, c.cands, got, err, c.want, c.msg)
		}
	}
}

func TestPlanAttachment(t *testing.T) {
	cases := []struct {
		name string
		c    *CinderVolume
		mode PreemptMode
		want Decision
		err  error
	}{
		{"available", cv("available"), PreemptOff, Decision{Plan: PlanAttach}, nil},
		{"already here", cv("in-use", tInst), PreemptOff, Decision{Plan: PlanAlreadyHere}, nil},
		{"attaching here", cv("attaching", tInst), PreemptOff, Decision{Plan: PlanAlreadyHere}, nil},
		{"held elsewhere, takeover off", cv("in-use", tOther), PreemptOff, Decision{}, ErrHeldElsewhere},
		{"held elsewhere, takeover on", cv("in-use", tOther), PreemptOn,
			Decision{Plan: PlanTakeover, Holder: CinderAttachment{ServerID: tOther, AttachmentID: tAtt, HostName: "host-" + tOther, Device: "/dev/vdb"}}, nil},
		{"held elsewhere, forced", cv("in-use", tOther), PreemptForce,
			Decision{Plan: PlanTakeover, Force: true, Holder: CinderAttachment{ServerID: tOther, AttachmentID: tAtt, HostName: "host-" + tOther, Device: "/dev/vdb"}}, nil},
		{"detaching elsewhere", cv("detaching"), PreemptOff, Decision{Plan: PlanWait}, nil},
		{"reserved", cv("reserved"), PreemptOff, Decision{Plan: PlanWait}, nil},
		{"error", cv("error"), PreemptForce, Decision{}, ErrVolumeUnusable},
		{"error_restoring", cv("error_restoring"), PreemptOff, Decision{}, ErrVolumeUnusable},
		{"deleting", cv("deleting"), PreemptOff, Decision{}, ErrVolumeUnusable},
	}
	for _, c := range cases {
		got, err := PlanAttachment(c.c, tInst, c.mode)
		if !reflect.DeepEqual(got, c.want) || !errors.Is(err, c.err) || (c.err == nil) != (err == nil) {
			t.Errorf("%s: %+v, %v; want %+v, %v", c.name, got, err, c.want, c.err)
		}
	}
	_, err := PlanAttachment(cv("in-use", tOther), tInst, PreemptOff)
	want := "volume v1 (" + tVol + ") is attached to instance inst-b on host-inst-b and takeover is off: " +
		"stop its containers there, or enable takeover for this volume (metadata cinderwarden.preempt=true, " +
		"or -o preempt=true when creating it) or in the plugin configuration"
	var he *HeldElsewhereError
	if !errors.As(err, &he) || err.Error() != want || he.Instance != tOther {
		t.Errorf("message:\n got %v\nwant %s", err, want)
	}
}

func TestFromOpenStack(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	got := FromOpenStack(&openstack.Volume{
		ID: tVol, Name: "v1", Status: "in-use", SizeGiB: 3, VolumeType: "ssd", AvailabilityZone: "nova", CreatedAt: at,
		Metadata:    map[string]string{MetaManaged: "true"},
		Attachments: []openstack.VolumeAttachment{{AttachmentID: tAtt, ServerID: tInst, HostName: "cmp", Device: "/dev/vdb"}},
	})
	want := &CinderVolume{ID: tVol, Name: "v1", Status: "in-use", SizeGiB: 3, VolumeType: "ssd", AvailabilityZone: "nova",
		CreatedAt: at, Metadata: map[string]string{MetaManaged: "true"},
		Attachments: []CinderAttachment{{ServerID: tInst, AttachmentID: tAtt, HostName: "cmp", Device: "/dev/vdb"}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("FromOpenStack = %+v", got)
	}
	if FromOpenStack(nil) != nil {
		t.Error("nil volume")
	}
}

func TestSweepEvent(t *testing.T) {
	m := func(mod ...func(*LiveMount)) *LiveMount { l := live(mod...); return &l[0] }
	idle := func(s *VolumeState) { s.Refs = nil }
	cases := []struct {
		name string
		s    VolumeState
		m    *LiveMount
		c    *CinderVolume
		want Event
	}{
		{"healthy mount in use", st(PhaseMounted), m(), cv("in-use", tInst), nil},
		{"device gone", st(PhaseMounted), m(func(l *LiveMount) { l.DeviceGone = true }), cv("in-use", tInst),
			Lost{Reason: "stale mount: its device " + tDev + " is gone"}},
		{"corrupted", st(PhaseMounted), m(func(l *LiveMount) { l.Corrupted = true }), cv("in-use", tInst),
			Lost{Reason: "stale mount: the mountpoint is corrupted"}},
		{"taken over", st(PhaseMounted), m(), cv("in-use", tOther),
			Lost{Reason: "stale mount: Cinder says it is no longer attached to this instance"}},
		{"detaching is not yet gone", st(PhaseMounted), m(), cv("detaching"), nil},
		{"404 alone changes nothing", st(PhaseMounted), m(), nil, nil},
		{"mount vanished: reported only", st(PhaseMounted), nil, cv("in-use", tInst), nil},
		{"busy unmount earlier: retry", st(PhaseMounted, idle), m(), cv("in-use", tInst), Release{}},
		{"attached, unused: release", st(PhaseAttached), nil, cv("in-use", tInst), Release{}},
		{"attached, gone", st(PhaseAttached), nil, cv("available"),
			Lost{Reason: "Cinder says it is no longer attached to this instance"}},
		{"attached with recorded containers", st(PhaseAttached, func(s *VolumeState) { s.Refs = []string{"m1"} }), nil, cv("in-use", tInst), nil},
		{"operation in flight", st(PhaseAttaching), nil, cv("available"), nil},
		{"detached", st(PhaseDetached), nil, cv("available"), nil},
	}
	for _, c := range cases {
		got, reason := SweepEvent(c.s, c.m, c.c, tInst)
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %#v (%s), want %#v", c.name, got, reason, c.want)
		}
		if got != nil {
			// The event is one the machine takes in that phase.
			v, _ := RestoreVolume(c.s)
			if _, err := v.Step(got); err != nil {
				t.Errorf("%s: machine refuses the sweep's event: %v", c.name, err)
			}
		}
		if c.name == "operation in flight" && reason != "operation in flight" {
			t.Errorf("reason %q", reason)
		}
	}
}
