package openstack_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cinderwarden/cinderwarden/internal/cloudconfig"
	"github.com/cinderwarden/cinderwarden/openstack"
	"github.com/cinderwarden/cinderwarden/simcloud"
)

// The whole chain as the plugin and reconciler use it: the simulator writes
// clouds.yaml, cloudconfig resolves it, Client authenticates against the
// simulated Keystone and drives Cinder and Nova over HTTP.

var osEnv = []string{"OS_CLOUD", "OS_CLIENT_CONFIG_FILE", "OS_REGION_NAME", "OS_INTERFACE", "OS_CACERT",
	"OS_CERT", "OS_KEY", "OS_AUTH_URL", "OS_AUTH_TYPE", "OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_ID"}

type simEnv struct {
	sim    *simcloud.Sim
	clouds string
	inst   simcloud.Instance
}

func startSim(t *testing.T, lat simcloud.Latencies) *simEnv {
	t.Helper()
	for _, v := range osEnv {
		t.Setenv(v, "")
	}
	s, err := simcloud.Start(context.Background(), simcloud.Options{StateDir: t.TempDir(), Latency: lat})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close simulator: %v", err)
		}
	})
	path := filepath.Join(t.TempDir(), "clouds.yaml")
	if err := s.WriteCloudsYAML(path); err != nil {
		t.Fatal(err)
	}
	inst, err := s.AddInstance(simcloud.InstanceSpec{Name: "agent-1", Host: "compute-7"})
	if err != nil {
		t.Fatal(err)
	}
	return &simEnv{sim: s, clouds: path, inst: inst}
}

func (e *simEnv) client(t *testing.T, cloud string, reg prometheus.Registerer) *openstack.Client {
	t.Helper()
	cfg, err := cloudconfig.Resolve(cloudconfig.Options{Cloud: cloud, CloudsFile: e.clouds})
	if err != nil {
		t.Fatal(err)
	}
	c, err := openstack.New(context.Background(), cfg, openstack.Options{Registerer: reg, RequireCompute: true})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSimLifecycleThroughNova(t *testing.T) {
	const attachLatency = 300 * time.Millisecond
	e := startSim(t, simcloud.Latencies{Create: 50 * time.Millisecond, Attach: attachLatency,
		Detach: attachLatency, Delete: 50 * time.Millisecond})
	reg := prometheus.NewRegistry()
	c := e.client(t, simcloud.CloudMember, reg)
	admin := e.client(t, simcloud.CloudAdmin, reg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	md, err := c.InstanceMetadata(ctx, e.inst.MetadataURL)
	if err != nil {
		t.Fatal(err)
	}
	if md.UUID != e.inst.ID || md.Name != "agent-1" {
		t.Fatalf("metadata %+v, want instance %s", md, e.inst.ID)
	}

	v, err := c.CreateVolume(ctx, openstack.CreateVolumeOpts{Name: "data-1", SizeGiB: 1,
		Metadata: map[string]string{"cinderwarden.managed": "true"}})
	if err != nil {
		t.Fatal(err)
	}
	if v, err = c.WaitVolume(ctx, v.ID, openstack.StatusIs("available")); err != nil {
		t.Fatal(err)
	}
	if v.Metadata["cinderwarden.managed"] != "true" || v.SizeGiB != 1 {
		t.Errorf("created volume %+v", v)
	}
	got, err := c.ListVolumes(ctx, openstack.VolumeFilter{Metadata: map[string]string{"cinderwarden.managed": "true"}})
	if err != nil || len(got) != 1 || got[0].ID != v.ID {
		t.Fatalf("list by metadata = %v, %v", got, err)
	}

	// Attach through Nova and wait with the default backoff.
	before := c.Metrics().CallsFor("volume_get")
	start := time.Now()
	sv, err := c.AttachVolume(ctx, e.inst.ID, v.ID)
	if err != nil {
		t.Fatal(err)
	}
	if v, err = c.WaitVolume(ctx, v.ID, openstack.AttachedTo(e.inst.ID)); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	polls := c.Metrics().CallsFor("volume_get") - before
	t.Logf("attach with %v latency: in-use after %v and %d polls (device %s)", attachLatency, took, polls, sv.Device)
	if polls > 12 {
		t.Errorf("%d polls for a %v attach: backoff too eager", polls, attachLatency)
	}
	att := v.AttachedTo(e.inst.ID)
	if att == nil || att.AttachmentID == "" {
		t.Fatalf("volume attachments %+v", v.Attachments)
	}

	// Nova and Cinder agree on the attachment.
	svs, err := c.ListServerVolumes(ctx, e.inst.ID)
	if err != nil || len(svs) != 1 || svs[0].VolumeID != v.ID || svs[0].AttachmentID != att.AttachmentID {
		t.Fatalf("Nova attachments %+v (%v), want attachment %s", svs, err, att.AttachmentID)
	}
	cas, err := c.ListAttachments(ctx, openstack.AttachmentFilter{VolumeID: v.ID})
	if err != nil || len(cas) != 1 || cas[0].ID != att.AttachmentID || cas[0].Status != "attached" || cas[0].InstanceID != e.inst.ID {
		t.Fatalf("Cinder attachments %+v (%v)", cas, err)
	}
	srv, err := admin.GetServer(ctx, e.inst.ID)
	if err != nil || !slices.Contains(srv.VolumesAttached, v.ID) || srv.Host != "compute-7" {
		t.Fatalf("server %+v (%v)", srv, err)
	}
	onHost, err := admin.ListServers(ctx, openstack.ServerFilter{AllTenants: true, Host: "compute-7"})
	if err != nil || len(onHost) != 1 || onHost[0].ID != e.inst.ID {
		t.Fatalf("servers on compute-7: %+v (%v)", onHost, err)
	}

	// Refusals come back as our sentinels.
	if err := c.ForceDetach(ctx, v.ID, att.AttachmentID); !errors.Is(err, openstack.ErrForbidden) {
		t.Errorf("member force-detach: %v, want ErrForbidden", err)
	}
	if err := admin.ForceDetach(ctx, v.ID, att.AttachmentID); !errors.Is(err, openstack.ErrConflict) {
		t.Errorf("admin force-detach while Nova holds it: %v, want ErrConflict", err)
	}
	if err := c.DeleteAttachment(ctx, att.AttachmentID); !errors.Is(err, openstack.ErrConflict) {
		t.Errorf("attachment delete while Nova holds it: %v, want ErrConflict", err)
	}
	if err := c.DeleteVolume(ctx, v.ID); !errors.Is(err, openstack.ErrBadRequest) {
		t.Errorf("delete in-use volume: %v, want ErrBadRequest", err)
	}

	// Token expiry: the next call re-authenticates transparently.
	e.sim.Faults().ExpireTokens()
	if _, err := c.GetVolume(ctx, v.ID); err != nil {
		t.Fatalf("after token expiry: %v", err)
	}

	// Detach through Nova, then delete.
	if err := c.DetachVolume(ctx, e.inst.ID, v.ID); err != nil {
		t.Fatal(err)
	}
	if v, err = c.WaitVolume(ctx, v.ID, openstack.DetachedFrom(e.inst.ID)); err != nil {
		t.Fatal(err)
	}
	if v.Status != "available" {
		t.Errorf("after detach: %s", v.Status)
	}
	if err := c.DetachVolume(ctx, e.inst.ID, v.ID); !errors.Is(err, openstack.ErrNotFound) {
		t.Errorf("second Nova detach: %v, want ErrNotFound", err)
	}
	if err := c.DeleteVolume(ctx, v.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitVolumeDeleted(ctx, v.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetVolume(ctx, v.ID); !errors.Is(err, openstack.ErrNotFound) {
		t.Errorf("deleted volume: %v", err)
	}
	calls := c.Metrics().CallsByRequest()
	if calls["token_create"] != 2 { // login + re-auth (the admin client counts its own)
		t.Errorf("token_create = %d, want 2 (re-auth counted)", calls["token_create"])
	}
	t.Logf("API calls: %v", calls)
}

func TestSimPaginationAndPageFailure(t *testing.T) {
	e := startSim(t, simcloud.Latencies{})
	c := e.client(t, simcloud.CloudMember, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const n = 25
	for i := range n {
		if _, err := c.CreateVolume(ctx, openstack.CreateVolumeOpts{Name: fmt.Sprintf("p-%02d", i), SizeGiB: 1}); err != nil {
			t.Fatal(err)
		}
	}
	before := c.APICalls()
	vs, err := c.ListVolumes(ctx, openstack.VolumeFilter{PageSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != n {
		t.Fatalf("%d volumes, want %d", len(vs), n)
	}
	ids := map[string]bool{}
	for _, v := range vs {
		ids[v.ID] = true
	}
	if len(ids) != n {
		t.Errorf("duplicates across pages: %d distinct", len(ids))
	}
	if calls := c.APICalls() - before; calls != 3 {
		t.Errorf("%d calls for 25 volumes at 10/page, want 3", calls)
	}

	e.sim.Faults().FailPage(simcloud.OpVolumeList, 3, 500)
	vs, err = c.ListVolumes(ctx, openstack.VolumeFilter{PageSize: 10})
	if err == nil || vs != nil || !errors.Is(err, openstack.ErrServer) {
		t.Fatalf("page 3 failure: %d volumes, %v; want nil and ErrServer", len(vs), err)
	}
}
