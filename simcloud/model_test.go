package simcloud

import (
	"errors"
	"testing"
	"time"
)

// The status machine driven directly with a manual clock: no HTTP, no sleeps.

var t0 = time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC)

func newTestModel(lat Latencies) (*model, caller, caller) {
	m := newModel(newIDGen(7), lat, false)
	p := m.addProject("demo")
	u := m.addUser("demo", "pw", p.ID, "member")
	ap := m.addProject("admin")
	au := m.addUser("admin", "pw", ap.ID, "admin")
	return m, caller{UserID: u.ID, ProjectID: p.ID}, caller{UserID: au.ID, ProjectID: ap.ID, Admin: true}
}

func kindOf(err error) errKind {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.kind
	}
	return 0
}

func mustStatus(t *testing.T, m *model, c caller, at time.Time, id, want string) {
	t.Helper()
	v, err := m.getVolume(at, c, id)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	if v.Status != want {
		t.Fatalf("at +%s volume status %q, want %q", at.Sub(t0), v.Status, want)
	}
}

func TestVolumeLifecycleFollowsLatencies(t *testing.T) {
	m, member, _ := newTestModel(Latencies{Create: 2 * time.Second, Delete: 3 * time.Second, Extend: time.Second})
	v, err := m.createVolume(t0, member, createVolumeReq{Size: 1, AZ: "nova"})
	if err != nil {
		t.Fatal(err)
	}
	if v.Status != volCreating || v.UpdatedAt != nil {
		t.Fatalf("new volume: status %q updated_at %v, want creating and null", v.Status, v.UpdatedAt)
	}
	mustStatus(t, m, member, t0.Add(1999*time.Millisecond), v.ID, volCreating)
	mustStatus(t, m, member, t0.Add(2*time.Second), v.ID, volAvailable)
	got, _ := m.getVolume(t0.Add(5*time.Second), member, v.ID)
	if got.UpdatedAt == nil || !got.UpdatedAt.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("updated_at %v, want the transition time %v", got.UpdatedAt, t0.Add(2*time.Second))
	}

	at := t0.Add(10 * time.Second)
	if err := m.extend(at, member, v.ID, 1, false); kindOf(err) != errBadRequest {
		t.Fatalf("extend to same size: %v, want bad request", err)
	}
	if err := m.extend(at, member, v.ID, 3, false); err != nil {
		t.Fatal(err)
	}
	mustStatus(t, m, member, at.Add(500*time.Millisecond), v.ID, volExtending)
	mustStatus(t, m, member, at.Add(time.Second), v.ID, volAvailable)
	if got, _ := m.getVolume(at.Add(time.Second), member, v.ID); got.Size != 3 {
		t.Fatalf("size after extend %d, want 3", got.Size)
	}

	at = t0.Add(20 * time.Second)
	if err := m.deleteVolume(at, member, v.ID); err != nil {
		t.Fatal(err)
	}
	mustStatus(t, m, member, at.Add(2*time.Second), v.ID, volDeleting)
	if _, err := m.getVolume(at.Add(3*time.Second), member, v.ID); kindOf(err) != errNotFound {
		t.Fatalf("after delete latency: %v, want not found", err)
	}
}

func TestAttachmentStatusMachine(t *testing.T) {
	m, member, admin := newTestModel(Latencies{})
	v, err := m.createVolume(t0, member, createVolumeReq{Size: 1})
	if err != nil {
		t.Fatal(err)
	}
	now := t0.Add(time.Second)
	inst := "11111111-2222-3333-4444-555555555555"

	steps := []struct {
		name       string
		do         func() error
		wantVolume string
	}{
		{"create reserves", func() error {
			_, err := m.attachmentCreate(now, member, v.ID, inst, nil, "")
			return err
		}, volReserved},
		{"second create refused (not multiattach)", func() error {
			_, err := m.attachmentCreate(now, member, v.ID, "other", nil, "")
			if kindOf(err) != errBadRequest {
				return errors.New("second attachment accepted")
			}
			return nil
		}, volReserved},
		{"update with connector → attaching", func() error {
			a := m.listAttachments(now, member, attachmentFilter{VolumeID: v.ID})[0]
			_, err := m.attachmentUpdate(now, member, a.ID, map[string]any{"host": "h1"})
			return err
		}, volAttaching},
		{"complete → in-use", func() error {
			a := m.listAttachments(now, member, attachmentFilter{VolumeID: v.ID})[0]
			got, err := m.attachmentComplete(now, member, a.ID)
			if err == nil && (got.Status != attAttached || got.AttachedAt == nil || got.ConnectionInfo["access_mode"] != "rw") {
				return errors.New("attachment not attached with attached_at and rw access")
			}
			return err
		}, volInUse},
		{"delete refused while attached", func() error {
			if err := m.deleteVolume(now, member, v.ID); kindOf(err) != errBadRequest {
				return errors.New("delete of in-use volume accepted")
			}
			return nil
		}, volInUse},
		{"member force-detach forbidden", func() error {
			if _, err := m.detachAction(now, member, v.ID, "", true); kindOf(err) != errForbidden {
				return errors.New("member force-detach allowed")
			}
			return nil
		}, volInUse},
		{"begin_detaching", func() error { return m.beginDetaching(now, member, v.ID) }, volDetaching},
		{"roll_detaching", func() error { return m.rollDetaching(now, member, v.ID) }, volInUse},
		{"admin force-detach (Nova does not hold it)", func() error {
			gone, err := m.detachAction(now, admin, v.ID, "", true)
			if err == nil && len(gone) != 1 {
				return errors.New("force-detach removed no attachment")
			}
			return err
		}, volAvailable},
		{"reserve", func() error { return m.reserve(now, member, v.ID) }, volAttaching},
		{"unreserve", func() error { return m.unreserve(now, member, v.ID) }, volAvailable},
		{"os-attach", func() error {
			_, err := m.attachAction(now, member, v.ID, attachReq{InstanceID: inst, Mountpoint: "/dev/vdb"})
			return err
		}, volInUse},
		{"reset_status detached drops attachments", func() error {
			gone, err := m.resetStatus(now, admin, v.ID, resetReq{Status: volAvailable, AttachStatus: attDetached})
			if err == nil && len(gone) != 1 {
				return errors.New("reset dropped no attachment")
			}
			return err
		}, volAvailable},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		mustStatus(t, m, member, now, v.ID, s.wantVolume)
	}
}

func TestGuardAnswers409WhileNovaHoldsAttachment(t *testing.T) {
	m, member, admin := newTestModel(Latencies{})
	v, err := m.createVolume(t0, member, createVolumeReq{Size: 1})
	if err != nil {
		t.Fatal(err)
	}
	now := t0.Add(time.Second)
	sv, err := m.addServer(now, &server{Name: "vm", Host: "h1", ProjectID: member.ProjectID, Status: StatusActive})
	if err != nil {
		t.Fatal(err)
	}
	_, b, err := m.novaAttachRequest(now, member, sv.ID, v.ID, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.novaConnect(now, sv.ID, v.ID); !ok {
		t.Fatal("connect: mapping vanished")
	}
	m.novaAttachDone(now, sv.ID, v.ID, true)
	mustStatus(t, m, member, now, v.ID, volInUse)

	if _, err := m.detachAction(now, admin, v.ID, "", true); kindOf(err) != errConflict {
		t.Fatalf("force-detach while Nova holds: %v, want conflict", err)
	}
	if _, err := m.attachmentDelete(now, admin, b.AttachmentID); kindOf(err) != errConflict {
		t.Fatalf("attachment delete while Nova holds: %v, want conflict", err)
	}
	if n, err := m.forgetMappings(sv.ID, v.ID); err != nil || n != 1 {
		t.Fatalf("forget: %d, %v", n, err)
	}
	if _, err := m.attachmentDelete(now, admin, b.AttachmentID); err != nil {
		t.Fatalf("attachment delete after Nova forgot: %v", err)
	}
	mustStatus(t, m, member, now, v.ID, volAvailable)
}

func TestTokensExpire(t *testing.T) {
	m, _, _ := newTestModel(Latencies{})
	tok, ok := m.authenticate(t0, "", "demo", "pw", time.Minute)
	if !ok {
		t.Fatal("password auth failed")
	}
	if _, ok := m.authenticate(t0, "", "demo", "wrong", time.Minute); ok {
		t.Fatal("wrong password accepted")
	}
	if _, _, ok := m.validate(t0.Add(59*time.Second), tok.ID); !ok {
		t.Fatal("token invalid before its lifetime ended")
	}
	if _, _, ok := m.validate(t0.Add(time.Minute), tok.ID); ok {
		t.Fatal("token valid after its lifetime")
	}
	tok2, _ := m.authenticate(t0, "", "demo", "pw", time.Hour)
	m.expireTokens(t0.Add(time.Second))
	if _, _, ok := m.validate(t0.Add(time.Second), tok2.ID); ok {
		t.Fatal("token valid after expireTokens")
	}
}

func TestManualClockAfter(t *testing.T) {
	c := NewManualClock(t0)
	ch := c.After(time.Second)
	c.Advance(999 * time.Millisecond)
	select {
	case <-ch:
		t.Fatal("fired early")
	default:
	}
	c.Advance(time.Millisecond)
	select {
	case at := <-ch:
		if !at.Equal(t0.Add(time.Second)) {
			t.Fatalf("fired at %s", at)
		}
	default:
		t.Fatal("did not fire when due")
	}
}

func TestParsePyDict(t *testing.T) {
	cases := []struct {
		in   string
		want map[string]string
		ok   bool
	}{
		{"{'k':'v'}", map[string]string{"k": "v"}, true},
		{"{'a':'1', 'b':'x:y,z'}", map[string]string{"a": "1", "b": "x:y,z"}, true},
		{`{"a":"1"}`, map[string]string{"a": "1"}, true},
		{"{'a'}", nil, false},
		{"k=v", nil, false},
	}
	for _, c := range cases {
		got, err := parsePyDict(c.in)
		if (err == nil) != c.ok {
			t.Errorf("%q: err %v, want ok=%v", c.in, err, c.ok)
			continue
		}
		if len(got) != len(c.want) {
			t.Errorf("%q: got %v, want %v", c.in, got, c.want)
		}
		for k, v := range c.want {
			if got[k] != v {
				t.Errorf("%q: %s=%q, want %q", c.in, k, got[k], v)
			}
		}
	}
}

func TestCheckExclusive(t *testing.T) {
	ev := func(k EventKind, vol, inst string, sec int) Event {
		return Event{Kind: k, VolumeID: vol, InstanceID: inst, Time: t0.Add(time.Duration(sec) * time.Second), Mode: "rw"}
	}
	ok := []Event{ev(EventAttach, "v", "a", 0), ev(EventDetach, "v", "a", 1), ev(EventAttach, "v", "b", 2),
		ev(EventForceDetach, "v", "b", 3), ev(EventAttach, "w", "a", 3)}
	if err := CheckExclusive(ok); err != nil {
		t.Fatalf("sequential attaches: %v", err)
	}
	bad := append(ok, ev(EventAttach, "v", "c", 4))
	err := CheckExclusive(bad)
	var oe *OverlapError
	if !errors.As(err, &oe) || oe.VolumeID != "v" || len(oe.Instances) != 2 {
		t.Fatalf("overlap after force-detach: %v", err)
	}
}
