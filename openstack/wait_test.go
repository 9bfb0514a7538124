package openstack

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestBackoffNext(t *testing.T) {
	b := DefaultBackoff()
	var got []time.Duration
	var d time.Duration
	for range 12 {
		d = b.Next(d)
		got = append(got, d)
	}
	want := []float64{25, 40, 64, 102.4, 163.84, 262.144, 419.4304, 671.08864, 1000, 1000, 1000, 1000}
	for i := range want {
		w := time.Duration(want[i] * float64(time.Millisecond))
		if got[i] != w {
			t.Errorf("interval %d = %v, want %v", i, got[i], w)
		}
	}
}

// volumeStates serves GET /volumes/{id} from the captured available
// volume, with a status chosen by the test per poll, and records poll times.
type volumeStates struct {
	mu     sync.Mutex
	status func(poll int) string
	polls  []time.Time
}

func serveVolumeStates(t *testing.T, fc *fakeCloud, status func(poll int) string) *volumeStates {
	vs := &volumeStates{status: status}
	var tmpl map[string]map[string]any
	if err := json.Unmarshal(fc.body("volume_show_in_use"), &tmpl); err != nil {
		t.Fatal(err)
	}
	fc.handle("GET "+cinderBase+"/volumes/{id}", func(w http.ResponseWriter, r *http.Request) {
		vs.mu.Lock()
		vs.polls = append(vs.polls, time.Now())
		st := vs.status(len(vs.polls))
		vs.mu.Unlock()
		v := map[string]any{}
		for k, val := range tmpl["volume"] {
			v[k] = val
		}
		v["status"] = st
		if st != "in-use" {
			v["attachments"] = []any{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"volume": v})
	})
	return vs
}

func (vs *volumeStates) intervals() []time.Duration {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	var out []time.Duration
	for i := 1; i < len(vs.polls); i++ {
		out = append(out, vs.polls[i].Sub(vs.polls[i-1]))
	}
	return out
}

func TestWaitVolumePollsQuicklyFirst(t *testing.T) {
	fc := newFakeCloud(t)
	// attaching for the first 4 polls, then in-use.
	vs := serveVolumeStates(t, fc, func(poll int) string {
		if poll <= 4 {
			return "attaching"
		}
		return "in-use"
	})
	c := fc.client()
	start := time.Now()
	v, err := c.WaitVolume(ctxT(t), volID, AttachedTo(serverID))
	if err != nil {
		t.Fatal(err)
	}
	if v.Status != "in-use" || v.AttachedTo(serverID) == nil {
		t.Fatalf("returned %s, want in-use attached to %s", v.Status, serverID)
	}
	iv := vs.intervals()
	if len(iv) != 4 {
		t.Fatalf("%d polls, want 5", len(iv)+1)
	}
	// Backoff 25, 40, 64, 102 ms: the first re-poll comes in tens of
	// milliseconds (bounds generous for a loaded 2-core machine), and the
	// intervals grow.
	if iv[0] > 400*time.Millisecond { // a fixed 1 s poll would be 1 s
		t.Errorf("first re-poll after %v, want tens of ms", iv[0])
	}
	if iv[3] < 90*time.Millisecond {
		t.Errorf("fourth interval %v, want >= ~100ms (backoff growing)", iv[3])
	}
	if total := time.Since(start); total > 2*time.Second {
		t.Errorf("5 polls took %v; backoff should need ~0.25 s", total)
	}
}

func TestWaitVolumeTimeoutReturnsLastState(t *testing.T) {
	fc := newFakeCloud(t)
	serveVolumeStates(t, fc, func(int) string { return "detaching" })
	c := fc.client()
	ctx, cancel := context.WithTimeout(ctxT(t), 300*time.Millisecond)
	defer cancel()
	v, err := c.WaitVolume(ctx, volID, DetachedFrom(serverID))
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrTimeout and DeadlineExceeded", err)
	}
	if v == nil || v.Status != "detaching" {
		t.Fatalf("last volume = %+v, want the detaching volume", v)
	}
	if !strings.Contains(err.Error(), `volume `+volID+`: wait: last status "detaching" after`) {
		t.Errorf("error lacks the last state: %v", err)
	}
}

func TestWaitVolumeStopsOnErrorState(t *testing.T) {
	fc := newFakeCloud(t)
	vs := serveVolumeStates(t, fc, func(poll int) string {
		if poll < 3 {
			return "attaching"
		}
		return "error_attaching"
	})
	c := fc.client()
	v, err := c.WaitVolume(ctxT(t), volID, AttachedTo(serverID))
	if !errors.Is(err, ErrVolumeState) || v == nil || v.Status != "error_attaching" {
		t.Fatalf("WaitVolume = %v, %v; want error_attaching and ErrVolumeState", v, err)
	}
	if n := len(vs.intervals()) + 1; n != 3 {
		t.Errorf("%d polls, want 3 (stop at the error state)", n)
	}
}

func TestConditions(t *testing.T) {
	att := []VolumeAttachment{{ServerID: serverID}}
	tests := []struct {
		name    string
		cond    VolumeCondition
		v       Volume
		done    bool
		failErr bool
	}{
		{"status available", StatusIs("available"), Volume{Status: "available"}, true, false},
		{"status creating", StatusIs("available"), Volume{Status: "creating"}, false, false},
		{"status error", StatusIs("available"), Volume{Status: "error"}, false, true},
		{"status error wanted", StatusIs("available", "error"), Volume{Status: "error"}, true, false},
		{"attached", AttachedTo(serverID), Volume{Status: "in-use", Attachments: att}, true, false},
		{"attached elsewhere", AttachedTo("other"), Volume{Status: "in-use", Attachments: att}, false, false},
		{"attaching", AttachedTo(serverID), Volume{Status: "attaching"}, false, false},
		{"error_attaching", AttachedTo(serverID), Volume{Status: "error_attaching"}, false, true},
		{"detached", DetachedFrom(serverID), Volume{Status: "available"}, true, false},
		{"detaching", DetachedFrom(serverID), Volume{Status: "detaching", Attachments: att}, false, false},
		{"detaching without attachment", DetachedFrom(serverID), Volume{Status: "detaching"}, false, false},
		{"in-use here", DetachedFrom(serverID), Volume{Status: "in-use", Attachments: att}, false, false},
		{"in-use elsewhere", DetachedFrom("other"), Volume{Status: "in-use", Attachments: att}, true, false},
		{"error_detaching", DetachedFrom(serverID), Volume{Status: "error_detaching", Attachments: att}, false, true},
	}
	for _, tt := range tests {
		done, err := tt.cond(&tt.v)
		if done != tt.done || (err != nil) != tt.failErr {
			t.Errorf("%s: done=%v err=%v, want done=%v fail=%v", tt.name, done, err, tt.done, tt.failErr)
		}
		if err != nil && !errors.Is(err, ErrVolumeState) {
			t.Errorf("%s: err %v is not ErrVolumeState", tt.name, err)
		}
	}
}

func TestWaitVolumeDeleted(t *testing.T) {
	fc := newFakeCloud(t)
	var mu sync.Mutex
	polls := 0
	fc.handle("GET "+cinderBase+"/volumes/{id}", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		polls++
		p := polls
		mu.Unlock()
		if p < 3 {
			fc.write(w, "volume_show_available")
			return
		}
		fc.write(w, "error_not_found")
	})
	c := fc.client()
	if err := c.WaitVolumeDeleted(ctxT(t), volID); err != nil {
		t.Fatal(err)
	}
	if polls != 3 {
		t.Errorf("%d polls, want 3", polls)
	}
}

// TestWaitVolumeRidesOutTransientFailures: a 5xx between polls says nothing
// about the volume, so the wait goes on (the plugin fault suite saw one 503
// fail a whole Create); a 404 is an answer and ends it.
func TestWaitVolumeRidesOutTransientFailures(t *testing.T) {
	fc := newFakeCloud(t)
	var tmpl map[string]map[string]any
	if err := json.Unmarshal(fc.body("volume_show_in_use"), &tmpl); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	polls, gone := 0, false
	fc.handle("GET "+cinderBase+"/volumes/{id}", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		polls++
		n, g := polls, gone
		mu.Unlock()
		switch {
		case g:
			writeJSON(w, http.StatusNotFound, map[string]any{"itemNotFound": map[string]any{"code": 404, "message": "Volume could not be found."}})
		case n == 2 || n == 3:
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"computeFault": map[string]any{"code": 503, "message": "busy"}})
		case n < 5:
			v := map[string]any{}
			for k, val := range tmpl["volume"] {
				v[k] = val
			}
			v["status"], v["attachments"] = "attaching", []any{}
			writeJSON(w, http.StatusOK, map[string]any{"volume": v})
		default:
			writeJSON(w, http.StatusOK, tmpl)
		}
	})
	c := fc.client()
	v, err := c.WaitVolume(ctxT(t), volID, AttachedTo(serverID))
	if err != nil || v.Status != "in-use" {
		t.Fatalf("WaitVolume through two 503s = %v, %v; want in-use", v, err)
	}
	mu.Lock()
	gone = true
	mu.Unlock()
	if _, err := c.WaitVolume(ctxT(t), volID, AttachedTo(serverID)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("WaitVolume on a 404 = %v, want ErrNotFound at once", err)
	}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{&APIError{StatusCode: 503}, true},
		{&APIError{StatusCode: 404}, false},
		{&APIError{StatusCode: 409}, false},
		{errors.New("dial tcp: connection refused"), true},
	} {
		if got := Transient(tc.err); got != tc.want {
			t.Errorf("Transient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
