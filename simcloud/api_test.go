package simcloud_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/attachments"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/volumeattach"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
	"github.com/gophercloud/gophercloud/v2/pagination"

	"github.com/cinderwarden/cinderwarden/simcloud"
	"github.com/cinderwarden/cinderwarden/simcloud/simtest"
)

// These tests drive the simulator only through gophercloud over HTTP, as
// the project's clients will.

func startSim(t *testing.T, opts simcloud.Options) *simcloud.Sim {
	t.Helper()
	if opts.StateDir == "" {
		opts.StateDir = t.TempDir()
	}
	s, err := simcloud.Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

type clients struct {
	provider *gophercloud.ProviderClient
	volume   *gophercloud.ServiceClient
	compute  *gophercloud.ServiceClient
}

func connect(t *testing.T, c simcloud.Credentials, volumeMV string) clients {
	t.Helper()
	sc := simtest.Connect(t, c, volumeMV, "2.79")
	return clients{provider: sc.Provider, volume: sc.Volume, compute: sc.Compute}
}

func waitVolume(t *testing.T, c *gophercloud.ServiceClient, id, want string) *volumes.Volume {
	t.Helper()
	return simtest.WaitVolume(t, c, id, want)
}

func createVolume(t *testing.T, c *gophercloud.ServiceClient, name string) *volumes.Volume {
	t.Helper()
	v, err := volumes.Create(context.Background(), c, volumes.CreateOpts{Size: 1, Name: name}, nil).Extract()
	if err != nil {
		t.Fatalf("create volume %s: %v", name, err)
	}
	return waitVolume(t, c, v.ID, "available")
}

// action posts a volume action with gophercloud and returns its error.
func action(c *gophercloud.ServiceClient, id string, body map[string]any) error {
	_, err := c.Post(context.Background(), c.ServiceURL("volumes", id, "action"), body, nil,
		&gophercloud.RequestOpts{OkCodes: []int{202}})
	return err
}

// apiError decodes an unexpected-response error's body.
func apiError(t *testing.T, err error) (int, map[string]any) {
	t.Helper()
	var ue gophercloud.ErrUnexpectedResponseCode
	if !errors.As(err, &ue) {
		t.Fatalf("error %v (%T) is not an HTTP error", err, err)
	}
	var body map[string]any
	if jerr := json.Unmarshal(ue.Body, &body); jerr != nil {
		t.Fatalf("error body %q is not JSON: %v", ue.Body, jerr)
	}
	return ue.Actual, body
}

func TestAuthAndCatalog(t *testing.T) {
	s := startSim(t, simcloud.Options{})
	member := connect(t, s.Member(), "3.44")
	if want := s.VolumeURL(s.Member().ProjectID) + "/"; member.volume.Endpoint != want {
		t.Errorf("block-storage endpoint %q, want %q", member.volume.Endpoint, want)
	}
	if want := s.ComputeURL() + "/"; member.compute.Endpoint != want {
		t.Errorf("compute endpoint %q, want %q", member.compute.Endpoint, want)
	}
	if member.provider.Token() == "" {
		t.Fatal("no token")
	}
	for _, iface := range []gophercloud.Availability{gophercloud.AvailabilityInternal, gophercloud.AvailabilityAdmin} {
		if _, err := openstack.NewBlockStorageV3(member.provider, gophercloud.EndpointOpts{Availability: iface}); err != nil {
			t.Errorf("%s endpoint: %v", iface, err)
		}
	}
	_, err := openstack.AuthenticatedClient(context.Background(), gophercloud.AuthOptions{
		IdentityEndpoint: s.AuthURL(), Username: "demo", Password: "wrong", DomainName: "Default"})
	if !gophercloud.ResponseCodeIs(err, http.StatusUnauthorized) {
		t.Errorf("wrong password: %v, want 401", err)
	}
	// No token: keystonemiddleware's 401.
	resp, err := http.Get(s.VolumeURL(s.Member().ProjectID) + "/volumes")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != 401 || body["error"]["message"] != "The request you have made requires authentication." ||
		!strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Keystone uri=") {
		t.Errorf("no token: %d %v %q", resp.StatusCode, body, resp.Header.Get("WWW-Authenticate"))
	}
}

func TestMemberVersusAdmin(t *testing.T) {
	s := startSim(t, simcloud.Options{})
	member := connect(t, s.Member(), "3.44")
	admin := connect(t, s.Admin(), "3.44")
	fx := loadFixtures(t)
	v := createVolume(t, member.volume, "mine")

	for _, c := range []struct {
		action  string
		body    map[string]any
		fixture string
	}{
		{"os-force_detach", map[string]any{}, "error_member_force_detach"},
		{"os-reset_status", map[string]any{"status": "error"}, "error_member_reset_status"},
	} {
		err := action(member.volume, v.ID, map[string]any{c.action: c.body})
		status, body := apiError(t, err)
		sameError(t, c.action+" as member", status, body, fx[c.fixture], nil)
	}
	if err := action(admin.volume, v.ID, map[string]any{"os-reset_status": map[string]any{"status": "error"}}); err != nil {
		t.Fatalf("admin reset-status: %v", err)
	}
	if err := action(admin.volume, v.ID, map[string]any{"os-force_detach": map[string]any{}}); err != nil {
		t.Fatalf("admin force-detach: %v", err)
	}
	got, err := volumes.Get(context.Background(), member.volume, v.ID).Extract()
	if err != nil || got.Status != "available" {
		t.Fatalf("after admin reset + force-detach: %v %v, want available", got, err)
	}

	// all_tenants: the admin sees the member's volume only when asking.
	count := func(c *gophercloud.ServiceClient, all bool) int {
		pages, err := volumes.List(c, volumes.ListOpts{AllTenants: all}).AllPages(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		vs, _ := volumes.ExtractVolumes(pages)
		return len(vs)
	}
	if n := count(admin.volume, false); n != 0 {
		t.Errorf("admin without all_tenants sees %d volumes, want 0", n)
	}
	if n := count(admin.volume, true); n != 1 {
		t.Errorf("admin with all_tenants sees %d volumes, want 1", n)
	}
	if n := count(member.volume, true); n != 1 {
		t.Errorf("member with all_tenants (ignored) sees %d volumes, want 1", n)
	}
}

func TestPaginationOver2500Volumes(t *testing.T) {
	s := startSim(t, simcloud.Options{})
	member := connect(t, s.Member(), "3.44")
	const n = 2500
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 8)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			md := map[string]string{"batch": "pages"}
			if i%100 == 0 {
				md["hundred"] = "yes"
			}
			_, err := volumes.Create(context.Background(), member.volume,
				volumes.CreateOpts{Size: 1, Name: fmt.Sprintf("vol-%04d", i), Metadata: md}, nil).Extract()
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("create: %v", err)
	}

	walk := func(opts volumes.ListOpts) (ids map[string]bool, pages int, err error) {
		ids = map[string]bool{}
		err = volumes.List(member.volume, opts).EachPage(context.Background(), func(_ context.Context, p pagination.Page) (bool, error) {
			vs, err := volumes.ExtractVolumes(p)
			if err != nil {
				return false, err
			}
			pages++
			for _, v := range vs {
				if ids[v.ID] {
					return false, fmt.Errorf("volume %s listed twice", v.ID)
				}
				ids[v.ID] = true
			}
			return true, nil
		})
		return ids, pages, err
	}
	ids, pages, err := walk(volumes.ListOpts{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != n || pages < 3 {
		t.Fatalf("default paging: %d volumes in %d pages, want %d in >=3 (max 1000 a page)", len(ids), pages, n)
	}
	ids, pages, err = walk(volumes.ListOpts{Limit: 300})
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != n || pages != 9 {
		t.Fatalf("limit 300: %d volumes in %d pages, want %d in 9", len(ids), pages, n)
	}
	ids, _, err = walk(volumes.ListOpts{Metadata: map[string]string{"hundred": "yes"}, Limit: 7})
	if err != nil || len(ids) != n/100 {
		t.Fatalf("metadata filter: %d volumes, %v; want %d", len(ids), err, n/100)
	}
	ids, _, err = walk(volumes.ListOpts{Name: "vol-0042"})
	if err != nil || len(ids) != 1 {
		t.Fatalf("name filter: %d volumes, %v; want 1", len(ids), err)
	}

	// A listing that fails at page 3 must fail the whole walk.
	s.Faults().FailPage(simcloud.OpVolumeList, 3, 503)
	_, pages, err = walk(volumes.ListOpts{Limit: 300})
	if !gophercloud.ResponseCodeIs(err, http.StatusServiceUnavailable) || pages != 2 {
		t.Fatalf("fail at page 3: %d pages then %v, want 2 pages then 503", pages, err)
	}
}

func TestMicroversions(t *testing.T) {
	s := startSim(t, simcloud.Options{})
	fx := loadFixtures(t)
	c := connect(t, s.Member(), "3.999")
	_, err := volumes.List(c.volume, nil).AllPages(context.Background())
	status, body := apiError(t, err)
	sameError(t, "microversion 3.999", status, body, fx["error_microversion_too_high"], nil)

	c.volume.Microversion = "3.x"
	_, err = volumes.List(c.volume, nil).AllPages(context.Background())
	if status, body := apiError(t, err); status != 400 || body["badRequest"] == nil {
		t.Fatalf("malformed microversion: %d %v, want 400 badRequest", status, body)
	}

	// The answer carries the negotiated version.
	c.volume.Microversion = "latest"
	resp, err := c.volume.Get(context.Background(), c.volume.ServiceURL("volumes"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Header.Get("OpenStack-API-Version"); got != "volume 3.70" {
		t.Fatalf("latest negotiated %q, want volume 3.70", got)
	}

	// The attachments API does not exist before 3.27.
	c.volume.Microversion = "3.26"
	_, err = attachments.List(c.volume, nil).AllPages(context.Background())
	if !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		t.Fatalf("attachments at 3.26: %v, want 404", err)
	}
	c.compute.Microversion = "2.999"
	_, err = servers.Get(context.Background(), c.compute, "x").Extract()
	if status, body := apiError(t, err); status != 406 || body["computeFault"] == nil {
		t.Fatalf("compute 2.999: %d %v, want 406 computeFault", status, body)
	}
}

// recorder is a ComputeBackend at the simulator's OS seam that records the
// calls and creates the backing file, as a real backend would.
type recorder struct {
	name string
	mu   *sync.Mutex
	log  *[]string
	fail bool
}

func (r recorder) AttachVolume(_ context.Context, a simcloud.Attachment) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	*r.log = append(*r.log, r.name+" attach "+a.VolumeID+" "+a.InstanceID)
	if r.fail {
		return "", errors.New("refused")
	}
	f, err := os.OpenFile(a.BackingFile, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return "/dev/loop-test", f.Truncate(int64(a.SizeGiB) << 30)
}

func (r recorder) DetachVolume(_ context.Context, a simcloud.Attachment) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	*r.log = append(*r.log, r.name+" detach "+a.VolumeID+" "+a.InstanceID)
	if a.BackingFile == "" || a.NodeDevDir == "" || a.InstanceName == "" {
		return fmt.Errorf("detach of %s without backing file, node dev dir or instance name: %+v", a.VolumeID, a)
	}
	return nil
}

func (r recorder) calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(*r.log)
}

func newRecorders(names ...string) []recorder {
	mu, log := &sync.Mutex{}, &[]string{}
	var out []recorder
	for _, n := range names {
		out = append(out, recorder{name: n, mu: mu, log: log})
	}
	return out
}

func TestNovaAttachDetachKeepsCinderInStep(t *testing.T) {
	rec := newRecorders("loop", "libvirt")
	s := startSim(t, simcloud.Options{
		Latency:  simcloud.Latencies{Attach: 80 * time.Millisecond, Detach: 80 * time.Millisecond, Create: 20 * time.Millisecond},
		Backends: []simcloud.ComputeBackend{rec[0], rec[1]},
	})
	inst, err := s.AddInstance(simcloud.InstanceSpec{Name: "node-a", Host: "compute-a"})
	if err != nil {
		t.Fatal(err)
	}
	member := connect(t, s.Member(), "3.44")
	admin := connect(t, s.Admin(), "3.44")
	ctx := context.Background()
	v := createVolume(t, member.volume, "data")

	va, err := volumeattach.Create(ctx, member.compute, inst.ID, volumeattach.CreateOpts{VolumeID: v.ID}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if va.VolumeID != v.ID || va.ServerID != inst.ID || va.Device != "/dev/vdb" {
		t.Fatalf("attach answer %+v", va)
	}
	// Accepted, not done: Cinder shows the reservation at once.
	if got, _ := volumes.Get(ctx, member.volume, v.ID).Extract(); got.Status != "reserved" {
		t.Fatalf("right after Nova accepted the attach: status %q, want reserved", got.Status)
	}
	got := waitVolume(t, member.volume, v.ID, "in-use")
	if len(got.Attachments) != 1 || got.Attachments[0].ServerID != inst.ID || got.Attachments[0].HostName != "compute-a" {
		t.Fatalf("in-use volume attachments %+v", got.Attachments)
	}
	if want := []string{"loop attach " + v.ID + " " + inst.ID, "libvirt attach " + v.ID + " " + inst.ID}; !slices.Equal(rec[0].calls(), want) {
		t.Fatalf("backend calls %q, want %q", rec[0].calls(), want)
	}
	if fi, err := os.Stat(s.BackingFile(v.ID)); err != nil || fi.Size() != 1<<30 {
		t.Fatalf("backing file: %v %v", fi, err)
	}

	// Cinder's attachment record and Nova's mapping agree.
	pages, err := attachments.List(member.volume, attachments.ListOpts{VolumeID: v.ID}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	atts, _ := attachments.ExtractAttachments(pages)
	if len(atts) != 1 || atts[0].Status != "attached" || atts[0].Instance != inst.ID || atts[0].ID != got.Attachments[0].AttachmentID {
		t.Fatalf("attachments %+v", atts)
	}

	// Admin's servers/detail with all_tenants and host filters.
	listHost := func(host string) []servers.Server {
		pages, err := servers.List(admin.compute, servers.ListOpts{AllTenants: true, Host: host}).AllPages(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ss, err := servers.ExtractServers(pages)
		if err != nil {
			t.Fatal(err)
		}
		return ss
	}
	ss := listHost("compute-a")
	if len(ss) != 1 || ss[0].Host != "compute-a" || ss[0].InstanceName != inst.InstanceName ||
		len(ss[0].AttachedVolumes) != 1 || ss[0].AttachedVolumes[0].ID != v.ID || ss[0].TaskState != "" {
		t.Fatalf("servers on compute-a: %+v", ss)
	}
	if other := listHost("compute-b"); len(other) != 0 {
		t.Fatalf("servers on compute-b: %d, want 0", len(other))
	}
	// A member may not list all tenants.
	_, err = servers.List(member.compute, servers.ListOpts{AllTenants: true}).AllPages(ctx)
	if !gophercloud.ResponseCodeIs(err, http.StatusForbidden) {
		t.Fatalf("member all_tenants: %v, want 403", err)
	}

	// Attaching the same volume again: it is in use.
	_, err = volumeattach.Create(ctx, member.compute, inst.ID, volumeattach.CreateOpts{VolumeID: v.ID}).Extract()
	if !gophercloud.ResponseCodeIs(err, http.StatusBadRequest) {
		t.Fatalf("second attach: %v, want 400", err)
	}
	// Deleting an attached volume is refused as Cinder does.
	err = volumes.Delete(ctx, member.volume, v.ID, nil).ExtractErr()
	status, body := apiError(t, err)
	sameError(t, "delete in-use", status, body, loadFixtures(t)["error_delete_in_use"], nil)

	if err := volumeattach.Delete(ctx, member.compute, inst.ID, v.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if got, _ := volumes.Get(ctx, member.volume, v.ID).Extract(); got.Status != "detaching" {
		t.Fatalf("right after Nova accepted the detach: %q, want detaching", got.Status)
	}
	waitVolume(t, member.volume, v.ID, "available")
	if calls := rec[0].calls(); len(calls) != 4 || !strings.HasPrefix(calls[2], "libvirt detach") || !strings.HasPrefix(calls[3], "loop detach") {
		t.Fatalf("backend calls %q, want detach in reverse order", calls)
	}
	if err := volumeattach.Delete(ctx, member.compute, inst.ID, v.ID).ExtractErr(); !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		t.Fatalf("detach without mapping: %v, want 404", err)
	}
	if _, err := os.Stat(s.BackingFile(v.ID)); err != nil {
		t.Fatalf("backing file must survive detach: %v", err)
	}

	evs := s.Events()
	kinds := []simcloud.EventKind{}
	for _, e := range evs {
		kinds = append(kinds, e.Kind)
	}
	if !slices.Equal(kinds, []simcloud.EventKind{simcloud.EventAttach, simcloud.EventDetach}) || evs[0].Host != "compute-a" || evs[0].NodeDevDir != inst.NodeDevDir {
		t.Fatalf("events %+v", evs)
	}
	fromFile, err := simcloud.ReadEvents(s.EventLogPath())
	if err != nil || len(fromFile) != len(evs) {
		t.Fatalf("event log file: %d events, %v; want %d", len(fromFile), err, len(evs))
	}
	if err := simcloud.CheckExclusive(evs); err != nil {
		t.Fatal(err)
	}
}

func TestGuard409UntilNovaForgets(t *testing.T) {
	s := startSim(t, simcloud.Options{Backends: []simcloud.ComputeBackend{newRecorders("loop")[0]}})
	a, _ := s.AddInstance(simcloud.InstanceSpec{Host: "compute-a"})
	b, _ := s.AddInstance(simcloud.InstanceSpec{Host: "compute-b"})
	member := connect(t, s.Member(), "3.44")
	admin := connect(t, s.Admin(), "3.44")
	ctx := context.Background()
	v := createVolume(t, member.volume, "shared")
	if _, err := volumeattach.Create(ctx, member.compute, a.ID, volumeattach.CreateOpts{VolumeID: v.ID}).Extract(); err != nil {
		t.Fatal(err)
	}
	got := waitVolume(t, member.volume, v.ID, "in-use")
	attID := got.Attachments[0].AttachmentID

	err := action(admin.volume, v.ID, map[string]any{"os-force_detach": map[string]any{"attachment_id": attID}})
	status, body := apiError(t, err)
	want := fmt.Sprintf("Detach volume from instance %s using the Compute API", a.ID)
	if status != 409 || body["conflictingRequest"].(map[string]any)["message"] != want {
		t.Fatalf("force-detach while Nova holds: %d %v", status, body)
	}
	err = attachments.Delete(ctx, admin.volume, attID).ExtractErr()
	if !gophercloud.ResponseCodeIs(err, http.StatusConflict) {
		t.Fatalf("attachment delete while Nova holds: %v, want 409", err)
	}
	err = action(member.volume, v.ID, map[string]any{"os-detach": map[string]any{"attachment_id": attID}})
	if !gophercloud.ResponseCodeIs(err, http.StatusConflict) {
		t.Fatalf("os-detach while Nova holds: %v, want 409", err)
	}

	if n, err := s.ForgetNovaMapping(a.ID, v.ID); err != nil || n != 1 {
		t.Fatalf("forget: %d %v", n, err)
	}
	if err := action(admin.volume, v.ID, map[string]any{"os-force_detach": map[string]any{"attachment_id": attID}}); err != nil {
		t.Fatalf("force-detach after Nova forgot: %v", err)
	}
	waitVolume(t, member.volume, v.ID, "available")

	// The disk is still on instance a (a zombie); attaching it to b makes
	// the event log show two read-write holders.
	if _, err := volumeattach.Create(ctx, member.compute, b.ID, volumeattach.CreateOpts{VolumeID: v.ID}).Extract(); err != nil {
		t.Fatal(err)
	}
	waitVolume(t, member.volume, v.ID, "in-use")
	var oe *simcloud.OverlapError
	if err := simcloud.CheckExclusive(s.Events()); !errors.As(err, &oe) || oe.VolumeID != v.ID {
		t.Fatalf("CheckExclusive after a force-detach zombie: %v, want overlap on %s", err, v.ID)
	}
}

func TestTokenExpiryReauthenticates(t *testing.T) {
	s := startSim(t, simcloud.Options{TokenLifetime: time.Hour})
	member := connect(t, s.Member(), "3.44")
	ctx := context.Background()
	before := member.provider.Token()
	s.Faults().ExpireTokens()
	if _, err := volumes.List(member.volume, nil).AllPages(ctx); err != nil {
		t.Fatalf("list after tokens expired: %v (gophercloud should have re-authenticated)", err)
	}
	if after := member.provider.Token(); after == before || after == "" {
		t.Fatal("token did not change: no re-authentication happened")
	}

	// A short lifetime expires by itself (on the simulator's clock).
	clock := simcloud.NewManualClock(time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC))
	s2 := startSim(t, simcloud.Options{Clock: clock, TokenLifetime: time.Minute})
	c := connect(t, s2.Member(), "3.44")
	first := c.provider.Token()
	clock.Advance(61 * time.Second)
	if _, err := volumes.List(c.volume, nil).AllPages(ctx); err != nil {
		t.Fatalf("list after lifetime: %v", err)
	}
	if c.provider.Token() == first {
		t.Fatal("expired token still in use")
	}
}

func TestMetadataService(t *testing.T) {
	s := startSim(t, simcloud.Options{})
	inst, err := s.AddInstance(simcloud.InstanceSpec{Name: "web-1", AvailabilityZone: "az-2"})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(inst.MetadataURL + "/openstack/latest/meta_data.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var md map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&md); err != nil {
		t.Fatal(err)
	}
	if md["uuid"] != inst.ID || md["name"] != "web-1" || md["availability_zone"] != "az-2" ||
		md["hostname"] != "web-1.novalocal" || md["project_id"] != s.Member().ProjectID {
		t.Fatalf("meta_data.json %v", md)
	}
	if err := s.SetInstanceStatus(context.Background(), inst.ID, simcloud.StatusDeleted); err != nil {
		t.Fatal(err)
	}
	resp2, err := http.Get(inst.MetadataURL + "/openstack/latest/meta_data.json")
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != 404 {
		t.Fatalf("metadata of a deleted instance: %d, want 404", resp2.StatusCode)
	}
}

func TestFaults(t *testing.T) {
	rec := newRecorders("loop")
	s := startSim(t, simcloud.Options{Backends: []simcloud.ComputeBackend{rec[0]}})
	inst, _ := s.AddInstance(simcloud.InstanceSpec{})
	member := connect(t, s.Member(), "3.44")
	ctx := context.Background()
	v := createVolume(t, member.volume, "f")

	s.Faults().FailNext(simcloud.OpVolumeGet, 1, 503)
	_, err := volumes.Get(ctx, member.volume, v.ID).Extract()
	if status, body := apiError(t, err); status != 503 || body["serviceUnavailable"] == nil {
		t.Fatalf("injected 503: %d %v", status, body)
	}
	if _, err := volumes.Get(ctx, member.volume, v.ID).Extract(); err != nil {
		t.Fatalf("after the injected failure: %v", err)
	}

	s.Faults().SetTimeoutRate(simcloud.OpVolumeGet, 1)
	tctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = volumes.Get(tctx, member.volume, v.ID).Extract()
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timeout fault: %v, want deadline exceeded", err)
	}
	s.Faults().Reset()

	// A compute-side attach failure is rolled back.
	s.Faults().FailNovaAttach(1)
	if _, err := volumeattach.Create(ctx, member.compute, inst.ID, volumeattach.CreateOpts{VolumeID: v.ID}).Extract(); err != nil {
		t.Fatal(err)
	}
	waitVolume(t, member.volume, v.ID, "available")
	if pages, _ := volumeattach.List(member.compute, inst.ID).AllPages(ctx); pages != nil {
		if l, _ := volumeattach.ExtractVolumeAttachments(pages); len(l) != 0 {
			t.Fatalf("mapping kept after failed attach: %+v", l)
		}
	}

	// A detach that never completes leaves the volume detaching.
	if _, err := volumeattach.Create(ctx, member.compute, inst.ID, volumeattach.CreateOpts{VolumeID: v.ID}).Extract(); err != nil {
		t.Fatal(err)
	}
	waitVolume(t, member.volume, v.ID, "in-use")
	s.Faults().HangNovaDetach(true)
	if err := volumeattach.Delete(ctx, member.compute, inst.ID, v.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if got, _ := volumes.Get(ctx, member.volume, v.ID).Extract(); got.Status != "detaching" {
		t.Fatalf("hung detach: %q, want detaching", got.Status)
	}
	s.Faults().HangNovaDetach(false)
	waitVolume(t, member.volume, v.ID, "available")
}

// TestHungDetachNeverCompletes proves on a manual clock that a hung detach
// stays detaching however much time passes, and finishes once released.
func TestHungDetachNeverCompletes(t *testing.T) {
	clock := simcloud.NewManualClock(time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC))
	rec := newRecorders("loop")
	s := startSim(t, simcloud.Options{Clock: clock, TokenLifetime: 1000 * time.Hour,
		Latency: simcloud.Latencies{Detach: time.Second}, Backends: []simcloud.ComputeBackend{rec[0]}})
	inst, _ := s.AddInstance(simcloud.InstanceSpec{})
	c := connect(t, s.Member(), "3.44")
	ctx := context.Background()
	v := createVolume(t, c.volume, "h")
	if _, err := volumeattach.Create(ctx, c.compute, inst.ID, volumeattach.CreateOpts{VolumeID: v.ID}).Extract(); err != nil {
		t.Fatal(err)
	}
	waitVolume(t, c.volume, v.ID, "in-use")
	s.Faults().HangNovaDetach(true)
	if err := volumeattach.Delete(ctx, c.compute, inst.ID, v.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	clock.Advance(100 * time.Hour)
	if got, _ := volumes.Get(ctx, c.volume, v.ID).Extract(); got.Status != "detaching" || clock.Waiters() != 0 {
		t.Fatalf("hung detach after 100 h: %q (waiters %d), want detaching with no timer", got.Status, clock.Waiters())
	}
	if n := len(rec[0].calls()); n != 1 {
		t.Fatalf("backend calls %q: the hung detach reached the backend", rec[0].calls())
	}
	s.Faults().HangNovaDetach(false)
	for deadline := time.Now().Add(5 * time.Second); clock.Waiters() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("released detach never waited its latency")
		}
	}
	clock.Advance(time.Second)
	waitVolume(t, c.volume, v.ID, "available")
}

func TestCloudsYAML(t *testing.T) {
	s := startSim(t, simcloud.Options{})
	p := filepath.Join(t.TempDir(), "clouds.yaml")
	if err := s.WriteCloudsYAML(p); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"sim:", "sim-admin:", s.AuthURL(), s.Member().Password, s.Admin().Password, "region_name: RegionOne"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("clouds.yaml lacks %q", want)
		}
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("clouds.yaml mode %v, want 0600", fi.Mode().Perm())
	}
	// gophercloud's own clouds.yaml reader can use both clouds.
	for cloud, wantAdmin := range map[string]bool{simcloud.CloudMember: false, simcloud.CloudAdmin: true} {
		ao, eo, _, err := clouds.Parse(clouds.WithCloudName(cloud), clouds.WithLocations(p))
		if err != nil {
			t.Fatalf("parse %s: %v", cloud, err)
		}
		ao.AllowReauth = true
		pc, err := openstack.AuthenticatedClient(context.Background(), ao)
		if err != nil {
			t.Fatalf("%s: authenticate: %v", cloud, err)
		}
		cc, err := openstack.NewComputeV2(pc, eo)
		if err != nil {
			t.Fatalf("%s: compute endpoint: %v", cloud, err)
		}
		_, err = servers.List(cc, servers.ListOpts{AllTenants: true}).AllPages(context.Background())
		if (err == nil) != wantAdmin {
			t.Errorf("%s: all_tenants listing: %v (admin %v)", cloud, err, wantAdmin)
		}
	}
}
