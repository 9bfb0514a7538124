package simcloud_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/volumeattach"

	"github.com/cinderwarden/cinderwarden/simcloud"
)

func TestNovaAttachRefusals(t *testing.T) {
	s := startSim(t, simcloud.Options{Latency: simcloud.Latencies{Create: time.Hour}})
	ok, _ := s.AddInstance(simcloud.InstanceSpec{})
	broken, _ := s.AddInstance(simcloud.InstanceSpec{Status: simcloud.StatusError})
	c := connect(t, s.Member(), "3.44")
	creating, err := volumes.Create(context.Background(), c.volume, volumes.CreateOpts{Size: 1}, nil).Extract()
	if err != nil {
		t.Fatal(err)
	}
	url := func(server string) string { return c.compute.ServiceURL("servers", server, "os-volume_attachments") }
	body := func(vol string) string { return `{"volumeAttachment": {"volumeId": "` + vol + `"}}` }
	unknown := "00000000-0000-0000-0000-000000000000"
	cases := []struct {
		name, url, body string
		status          int
		key, inMessage  string
	}{
		{"unknown server", url(unknown), body(creating.ID), 404, "itemNotFound", "Instance " + unknown + " could not be found."},
		{"unknown volume", url(ok.ID), body(unknown), 404, "itemNotFound", "Volume " + unknown + " could not be found."},
		{"volume still creating", url(ok.ID), body(creating.ID), 400, "badRequest", "current status is creating"},
		{"instance in error", url(broken.ID), body(creating.ID), 409, "conflictingRequest", "vm_state error"},
		{"malformed JSON", url(ok.ID), `{"volumeAttachment": `, 400, "badRequest", "Malformed request body"},
		{"volumeId not a uuid", url(ok.ID), body("vol-1"), 400, "badRequest", "is not a 'uuid'"},
		{"volumeId missing", url(ok.ID), `{"volumeAttachment": {}}`, 400, "badRequest", "'volumeId' is a required property"},
	}
	for _, tc := range cases {
		status, got := raw(t, c.compute, "POST", tc.url, tc.body)
		e, _ := got[tc.key].(map[string]any)
		msg, _ := e["message"].(string)
		if status != tc.status || e == nil || e["code"] != float64(tc.status) || !strings.Contains(msg, tc.inMessage) {
			t.Errorf("%s: %d %v, want %d %s containing %q", tc.name, status, got, tc.status, tc.key, tc.inMessage)
		}
	}
	status, got := raw(t, c.compute, "DELETE", c.compute.ServiceURL("servers", ok.ID, "os-volume_attachments", creating.ID), "")
	if status != 404 || got["itemNotFound"] == nil {
		t.Errorf("detach without mapping: %d %v", status, got)
	}
}

func TestInstanceLifecycle(t *testing.T) {
	rec := newRecorders("loop")
	s := startSim(t, simcloud.Options{Backends: []simcloud.ComputeBackend{rec[0]}})
	inst, _ := s.AddInstance(simcloud.InstanceSpec{Name: "db", Host: "compute-9"})
	member := connect(t, s.Member(), "3.44")
	admin := connect(t, s.Admin(), "3.44")
	ctx := context.Background()

	if err := s.SetInstanceStatus(ctx, inst.ID, simcloud.StatusShutoff); err != nil {
		t.Fatal(err)
	}
	sv, err := servers.Get(ctx, member.compute, inst.ID).Extract()
	if err != nil || sv.Status != "SHUTOFF" || sv.VmState != "stopped" || sv.Host != "" {
		t.Fatalf("member view of a stopped server: %+v %v (host must be admin-only)", sv, err)
	}
	sv, _ = servers.Get(ctx, admin.compute, inst.ID).Extract()
	if sv.Host != "compute-9" || sv.InstanceName != inst.InstanceName || sv.AvailabilityZone != "nova" {
		t.Fatalf("admin view: host %q instance_name %q az %q", sv.Host, sv.InstanceName, sv.AvailabilityZone)
	}

	// A stopped server still takes volumes; deleting it detaches them the
	// way Nova does.
	v := createVolume(t, member.volume, "x")
	if _, err := volumeattach.Create(ctx, member.compute, inst.ID, volumeattach.CreateOpts{VolumeID: v.ID}).Extract(); err != nil {
		t.Fatal(err)
	}
	waitVolume(t, member.volume, v.ID, "in-use")
	if err := s.SetInstanceStatus(ctx, inst.ID, simcloud.StatusDeleted); err != nil {
		t.Fatal(err)
	}
	waitVolume(t, member.volume, v.ID, "available")
	if _, err := servers.Get(ctx, member.compute, inst.ID).Extract(); err == nil {
		t.Fatal("deleted server still shown")
	}
	if calls := rec[0].calls(); len(calls) != 2 || !strings.HasPrefix(calls[1], "loop detach") {
		t.Fatalf("backend calls %q", calls)
	}
	if len(s.Instances()) != 0 {
		t.Fatalf("instances after delete: %+v", s.Instances())
	}
	if err := s.SetInstanceStatus(ctx, inst.ID, simcloud.StatusActive); err == nil {
		t.Fatal("status change of a deleted instance accepted")
	}
}

func TestSameSeedSameIDs(t *testing.T) {
	ids := func(extraGets int) (string, string) {
		s := startSim(t, simcloud.Options{Seed: 42})
		inst, _ := s.AddInstance(simcloud.InstanceSpec{})
		c := connect(t, s.Member(), "3.44")
		for range extraGets {
			_, _ = volumes.List(c.volume, nil).AllPages(context.Background())
		}
		v := createVolume(t, c.volume, "v")
		return inst.ID, v.ID
	}
	i1, v1 := ids(0)
	i2, v2 := ids(5)
	if i1 != i2 || v1 != v2 {
		t.Fatalf("seed 42 gave %s/%s then %s/%s", i1, v1, i2, v2)
	}
}

func TestControlEndpoint(t *testing.T) {
	s := startSim(t, simcloud.Options{})
	member := connect(t, s.Member(), "3.44")
	admin := connect(t, s.Admin(), "3.44")
	post := func(token, path, body string) int {
		req, _ := http.NewRequest("POST", s.URL()+path, strings.NewReader(body))
		req.Header.Set("X-Auth-Token", token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := post(member.provider.Token(), "/_sim/expire-tokens", ""); st != 403 {
		t.Fatalf("member on /_sim: %d, want 403", st)
	}
	if st := post(admin.provider.Token(), "/_sim/faults", `{"op": "volume.list", "fail_next": 1, "status": 500}`); st != 204 {
		t.Fatalf("set fault: %d", st)
	}
	_, err := volumes.List(member.volume, nil).AllPages(context.Background())
	if status, body := apiError(t, err); status != 500 || body["computeFault"] == nil {
		t.Fatalf("injected 500 via /_sim: %d %v", status, body)
	}
	if st := post(admin.provider.Token(), "/_sim/expire-tokens", ""); st != 204 {
		t.Fatalf("expire tokens: %d", st)
	}
	if _, err := volumes.List(member.volume, nil).AllPages(context.Background()); err != nil {
		t.Fatalf("list after expiry (re-auth): %v", err)
	}
}

// TestManualClockDrivesNovaLatency: with a manual clock, a Nova attach with
// an hour of latency completes exactly when the clock is advanced.
func TestManualClockDrivesNovaLatency(t *testing.T) {
	clock := simcloud.NewManualClock(time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC))
	s := startSim(t, simcloud.Options{Clock: clock, TokenLifetime: 24 * time.Hour,
		Latency: simcloud.Latencies{Attach: time.Hour, Create: time.Minute}})
	inst, _ := s.AddInstance(simcloud.InstanceSpec{})
	c := connect(t, s.Member(), "3.44")
	ctx := context.Background()
	v, err := volumes.Create(ctx, c.volume, volumes.CreateOpts{Size: 1}, nil).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := volumes.Get(ctx, c.volume, v.ID).Extract(); got.Status != "creating" {
		t.Fatalf("before the create latency: %q", got.Status)
	}
	clock.Advance(time.Minute)
	waitVolume(t, c.volume, v.ID, "available")
	if _, err := volumeattach.Create(ctx, c.compute, inst.ID, volumeattach.CreateOpts{VolumeID: v.ID}).Extract(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); clock.Waiters() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("attach worker never waited on the clock")
		}
	}
	clock.Advance(59 * time.Minute)
	if got, _ := volumes.Get(ctx, c.volume, v.ID).Extract(); got.Status != "reserved" {
		t.Fatalf("59 min into a 1 h attach: %q, want reserved", got.Status)
	}
	clock.Advance(time.Minute)
	got := waitVolume(t, c.volume, v.ID, "in-use")
	if want := clock.Now(); !got.UpdatedAt.Equal(want) {
		t.Fatalf("updated_at %s, want the simulated %s", got.UpdatedAt, want)
	}
}

// TestNovaAttachAcceptedShape pins the create response to real Nova's: the
// attach is asynchronous, so at every microversion it answers with the legacy
// id (= volume id) and never attachment_id or bdm_uuid, which only list and
// show carry from 2.89 on.
func TestNovaAttachAcceptedShape(t *testing.T) {
	s := startSim(t, simcloud.Options{})
	inst, _ := s.AddInstance(simcloud.InstanceSpec{})
	c := connect(t, s.Member(), "3.44")
	for _, mv := range []string{"2.1", "2.79", "2.89"} {
		v := createVolume(t, c.volume, "shape-"+mv)
		waitVolume(t, c.volume, v.ID, "available")
		c.compute.Microversion = mv
		status, got := raw(t, c.compute, "POST", c.compute.ServiceURL("servers", inst.ID, "os-volume_attachments"),
			`{"volumeAttachment": {"volumeId": "`+v.ID+`"}}`)
		va, _ := got["volumeAttachment"].(map[string]any)
		if status != 200 || va == nil {
			t.Fatalf("%s: attach answered %d %v", mv, status, got)
		}
		if va["id"] != v.ID || va["volumeId"] != v.ID || va["serverId"] != inst.ID {
			t.Errorf("%s: ids wrong: %v", mv, va)
		}
		for _, k := range []string{"attachment_id", "bdm_uuid"} {
			if _, ok := va[k]; ok {
				t.Errorf("%s: create response has %q, real Nova's never does: %v", mv, k, va)
			}
		}
		_, hasDOT := va["delete_on_termination"]
		if want := mv != "2.1"; hasDOT != want {
			t.Errorf("%s: delete_on_termination present=%v, want %v", mv, hasDOT, want)
		}
		waitVolume(t, c.volume, v.ID, "in-use")
	}
}

// TestControlForgetNovaMapping: the /_sim endpoint lets a process outside the
// simulator (the demo, the CLI) make Nova lose a mapping — the first step of
// a zombie disk — while Cinder's attachment stays.
func TestControlForgetNovaMapping(t *testing.T) {
	s := startSim(t, simcloud.Options{})
	inst, _ := s.AddInstance(simcloud.InstanceSpec{})
	member := connect(t, s.Member(), "3.44")
	admin := connect(t, s.Admin(), "3.44")
	v := createVolume(t, member.volume, "forget-me")
	waitVolume(t, member.volume, v.ID, "available")
	if _, err := volumeattach.Create(context.Background(), member.compute, inst.ID, volumeattach.CreateOpts{VolumeID: v.ID}).Extract(); err != nil {
		t.Fatal(err)
	}
	waitVolume(t, member.volume, v.ID, "in-use")
	post := func(body string) (int, string) {
		req, _ := http.NewRequest("POST", s.URL()+"/_sim/forget-nova-mapping", strings.NewReader(body))
		req.Header.Set("X-Auth-Token", admin.provider.Token())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	if st, _ := post(`{"instance_id": "` + inst.ID + `"}`); st != 400 {
		t.Errorf("missing volume_id: %d, want 400", st)
	}
	if st, _ := post(`{"instance_id": "00000000-0000-0000-0000-000000000000", "volume_id": "` + v.ID + `"}`); st != 404 {
		t.Errorf("unknown instance: %d, want 404", st)
	}
	if st, body := post(`{"instance_id": "` + inst.ID + `", "volume_id": "` + v.ID + `"}`); st != 200 || body != `{"forgotten":1}` {
		t.Fatalf("forget: %d %s", st, body)
	}
	pages, err := volumeattach.List(member.compute, inst.ID).AllPages(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := volumeattach.ExtractVolumeAttachments(pages); len(got) != 0 {
		t.Errorf("Nova still lists %d mappings", len(got))
	}
	if got := waitVolume(t, member.volume, v.ID, "in-use"); len(got.Attachments) != 1 {
		t.Errorf("Cinder attachments after forget: %d, want 1 (only Nova forgot)", len(got.Attachments))
	}
}
