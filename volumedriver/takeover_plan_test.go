package volumedriver

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cinderwarden/cinderwarden/openstack"
)

func TestNextTakerStep(t *testing.T) {
	held := func(status string, md map[string]string) *CinderVolume {
		return &CinderVolume{ID: "v", Status: status, Metadata: md,
			Attachments: []CinderAttachment{{ServerID: "vm-1", HostName: "h1"}}}
	}
	ours := map[string]string{MetaTakeoverTaker: "vm-2", MetaTakeoverToken: "7"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{MetaTakeoverTaker: "vm-2", MetaTakeoverToken: "7"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name    string
		v       *CinderVolume
		elapsed time.Duration
		want    TakerStep
	}{
		{"holder let go", &CinderVolume{Status: "available", Metadata: ours}, 0, TakerAttach},
		{"now held by a third instance", &CinderVolume{Status: "in-use", Metadata: ours,
			Attachments: []CinderAttachment{{ServerID: "vm-3"}}}, 0, TakerAttach},
		{"refused our token", held("in-use", with(MetaTakeoverRefused, "7", MetaTakeoverRefusedReason, "in use")), 0, TakerRefused},
		{"refusal of an older token", held("in-use", with(MetaTakeoverRefused, "6")), 0, TakerWait},
		{"replaced by another taker", held("in-use", map[string]string{MetaTakeoverTaker: "vm-3", MetaTakeoverToken: "8"}), 0, TakerContended},
		{"request deleted", held("in-use", map[string]string{}), 0, TakerContended},
		{"within grace", held("in-use", ours), time.Second, TakerWait},
		{"grace over", held("in-use", ours), 5 * time.Second, TakerCheckHolder},
		{"grace over but the holder is detaching", held("detaching", ours), time.Minute, TakerWait},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, why := NextTakerStep(TakerView{Volume: tc.v, Taker: "vm-2", Holder: "vm-1", Token: 7,
				Elapsed: tc.elapsed, Grace: 5 * time.Second})
			if got != tc.want || why == "" {
				t.Fatalf("got %s (%q), want %s", got, why, tc.want)
			}
		})
	}
}

func TestClassifyHolder(t *testing.T) {
	for _, tc := range []struct {
		found        bool
		status, task string
		want         HolderState
	}{
		{false, "", "", HolderGone},
		{true, "DELETED", "", HolderGone},
		{true, "SOFT_DELETED", "", HolderGone},
		{true, "SHUTOFF", "", HolderDown},
		{true, "ERROR", "", HolderDown},
		{true, "PAUSED", "", HolderDown},
		{true, "ACTIVE", "", HolderSilent},
		{true, "ACTIVE", "rebooting", HolderBusy},
		{true, "SHUTOFF", "powering-on", HolderBusy},
	} {
		if got := ClassifyHolder(tc.found, tc.status, tc.task); got != tc.want {
			t.Errorf("ClassifyHolder(%v, %q, %q) = %s, want %s", tc.found, tc.status, tc.task, got, tc.want)
		}
	}
}

func TestAnswerTakeover(t *testing.T) {
	req := TakeoverRequest{Taker: "vm-2", Token: 5}
	forced := TakeoverRequest{Taker: "vm-2", Token: 5, Force: true}
	st := func(p Phase, gen uint64, refs ...string) VolumeState {
		return VolumeState{VolumeID: "v", Phase: p, Generation: gen, Refs: refs}
	}
	for _, tc := range []struct {
		name    string
		r       TakeoverRequest
		s       VolumeState
		refused uint64
		want    HolderAnswer
	}{
		{"own request", TakeoverRequest{Taker: "vm-1", Token: 5}, st(PhaseMounted, 1), 0, AnswerIgnore},
		{"not held", req, st(PhaseDetached, 0), 0, AnswerIgnore},
		{"stale token", req, st(PhaseMounted, 5), 0, AnswerIgnore},
		{"operation in flight", req, st(PhaseAttaching, 1), 0, AnswerLater},
		{"unused mounted", req, st(PhaseMounted, 1), 0, AnswerRelease},
		{"unused attached", req, st(PhaseAttached, 1), 0, AnswerRelease},
		{"in use", req, st(PhaseMounted, 1, "c1", "c2"), 0, AnswerRefuse},
		{"in use, already refused", req, st(PhaseMounted, 1, "c1"), 5, AnswerIgnore},
		{"in use, older refusal", req, st(PhaseMounted, 1, "c1"), 4, AnswerRefuse},
		{"in use, forced", forced, st(PhaseMounted, 1, "c1"), 0, AnswerForceRelease},
		{"forced, unused", forced, st(PhaseMounted, 1), 0, AnswerRelease},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, why := AnswerTakeover(tc.r, tc.s, "vm-1", tc.refused)
			if got != tc.want || why == "" {
				t.Fatalf("got %s (%q), want %s", got, why, tc.want)
			}
		})
	}
	if _, why := AnswerTakeover(req, st(PhaseMounted, 1, "c1", "c2"), "vm-1", 0); why != "in use on vm-1 by 2 container(s)" {
		t.Errorf("refusal reason %q", why)
	}
}

func TestNextToken(t *testing.T) {
	for _, tc := range []struct {
		md   map[string]string
		want uint64
	}{
		{nil, 1},
		{map[string]string{MetaGeneration: "4"}, 5},
		{map[string]string{MetaGeneration: "4", MetaTakeoverToken: "9"}, 10},
		{map[string]string{MetaGeneration: "12", MetaTakeoverToken: "9", MetaTakeoverReleased: "11"}, 13},
		{map[string]string{MetaGeneration: "x", MetaTakeoverRefused: "3"}, 4},
	} {
		if got := NextToken(tc.md); got != tc.want {
			t.Errorf("NextToken(%v) = %d, want %d", tc.md, got, tc.want)
		}
	}
}

func TestStaleMount(t *testing.T) {
	here := &CinderVolume{Status: "in-use", Attachments: []CinderAttachment{{ServerID: "vm-1"}}}
	elsewhere := &CinderVolume{Status: "in-use", Attachments: []CinderAttachment{{ServerID: "vm-2"}}}
	for _, tc := range []struct {
		name   string
		m      LiveMount
		c      *CinderVolume
		reason string
	}{
		{"healthy", LiveMount{}, here, ""},
		{"device gone", LiveMount{DeviceGone: true}, here, "device_gone"},
		{"corrupted", LiveMount{Corrupted: true}, here, "corrupted"},
		{"taken over", LiveMount{}, elsewhere, "not_attached"},
		{"available", LiveMount{}, &CinderVolume{Status: "available"}, "not_attached"},
		{"attaching here", LiveMount{}, &CinderVolume{Status: "attaching"}, ""},
		{"404 alone", LiveMount{}, nil, ""},
		{"404, device gone", LiveMount{DeviceGone: true}, nil, "device_gone"},
	} {
		reason, stale := StaleMount(tc.m, tc.c, "vm-1")
		if reason != tc.reason || stale != (tc.reason != "") {
			t.Errorf("%s: got %q %v, want %q", tc.name, reason, stale, tc.reason)
		}
	}
}

func TestSweepEventUnmountedBehindOurBack(t *testing.T) {
	st := VolumeState{VolumeID: "v", Phase: PhaseMounted, Device: "/dev/x", MountDir: "/m/v", Refs: []string{"c1"}}
	ev, why := SweepEvent(st, nil, &CinderVolume{Status: "available"}, "vm-1")
	if _, ok := ev.(Lost); !ok || why != "no longer attached here" {
		t.Fatalf("got %v %q", ev, why)
	}
	if ev, _ := SweepEvent(st, nil, &CinderVolume{Status: "in-use", Attachments: []CinderAttachment{{ServerID: "vm-1"}}}, "vm-1"); ev != nil {
		t.Fatalf("still attached here: %v", ev)
	}
}

func TestTakeoverErrors(t *testing.T) {
	r := &TakeoverRefusedError{Name: "db", VolumeID: "v1", Holder: "vm-1", Host: "h1", Reason: "in use on vm-1 by 1 container(s)"}
	if !errors.Is(r, ErrTakeoverRefused) || !errors.Is(r, ErrInUse) || ErrorClass(r) != "in_use" {
		t.Errorf("classes of %v", r)
	}
	want := "volume db (v1) is in use on instance vm-1 (h1): in use on vm-1 by 1 container(s); takeover refused: stop the containers using it there, or take it over by force (metadata cinderwarden.preempt_force=true, or -o preempt_force=true when creating it)"
	if r.Error() != want {
		t.Errorf("got  %s\nwant %s", r.Error(), want)
	}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{openstack.ErrForbidden, "403 Forbidden: os-force_detach needs admin credentials"},
		{openstack.ErrConflict, "409 Conflict: Nova still uses the attachment"},
	} {
		e := &ForceDetachError{Name: "db", VolumeID: "v1", Holder: "vm-1", NovaErr: errors.New("timed out"),
			Err: fmt.Errorf("volume v1: force-detach: %w", tc.err)}
		if !errors.Is(e, tc.err) || !errors.Is(e, ErrTakeoverFailed) {
			t.Errorf("classes of %v", e)
		}
		if s := e.Error(); !containsAll(s, tc.want, "nothing was force-detached", "not retried", "instance vm-1") {
			t.Errorf("message %q lacks %q", s, tc.want)
		}
	}
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
