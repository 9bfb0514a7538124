package simcloud_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cinderwarden/cinderwarden/internal/cloudconfig"
	cw "github.com/cinderwarden/cinderwarden/openstack"
	"github.com/cinderwarden/cinderwarden/simcloud"
)

// noauthEnv starts a simulator, writes its clouds.yaml and returns clients
// built the way cinderwarden builds them: cloudconfig.Resolve, then
// openstack.New.
func noauthEnv(t *testing.T) (*simcloud.Sim, func(cloud string) (*cloudconfig.Resolved, *cw.Client)) {
	t.Helper()
	for _, v := range []string{"OS_CLOUD", "OS_CLIENT_CONFIG_FILE", "OS_INTERFACE", "OS_CACERT"} {
		t.Setenv(v, "")
	}
	s := startSim(t, simcloud.Options{Latency: simcloud.Latencies{Create: 20 * time.Millisecond}})
	path := filepath.Join(t.TempDir(), "clouds.yaml")
	if err := s.WriteCloudsYAML(path); err != nil {
		t.Fatal(err)
	}
	return s, func(cloud string) (*cloudconfig.Resolved, *cw.Client) {
		t.Helper()
		cfg, err := cloudconfig.Resolve(cloudconfig.Options{Cloud: cloud, CloudsFile: path})
		if err != nil {
			t.Fatalf("resolve %s: %v", cloud, err)
		}
		c, err := cw.New(context.Background(), cfg, cw.Options{})
		if err != nil {
			t.Fatalf("client for %s: %v", cloud, err)
		}
		return cfg, c
	}
}

func volumeIDs(vs []cw.Volume) []string {
	var ids []string
	for _, v := range vs {
		ids = append(ids, v.ID)
	}
	slices.Sort(ids)
	return ids
}

// The sim-noauth cloud, resolved by cloudconfig, gives a Cinder-only client
// (no Keystone, no Nova) that works on the very volumes the Keystone clouds
// see, with the admin powers real noauth Cinder grants.
func TestNoAuthCloudThroughCloudconfig(t *testing.T) {
	s, client := noauthEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	member := s.Member()

	cfg, na := client(simcloud.CloudNoAuth)
	if !cfg.IsNoAuth() || cfg.NoAuth.Endpoint != s.NoAuthVolumeEndpoint() || cfg.NoAuth.ProjectID != member.ProjectID {
		t.Fatalf("resolved %v, want noauth %s project %s", cfg, s.NoAuthVolumeEndpoint(), member.ProjectID)
	}
	if got, want := na.VolumeEndpoint(), s.NoAuthVolumeURL(member.ProjectID)+"/"; got != want {
		t.Errorf("volume endpoint %s, want %s", got, want)
	}
	if na.HasCompute() {
		t.Fatal("noauth client claims a Nova")
	}
	if _, err := na.ListServers(ctx, cw.ServerFilter{}); !errors.Is(err, cw.ErrNoCompute) {
		t.Errorf("ListServers over noauth: %v, want ErrNoCompute", err)
	}
	if _, err := cw.New(ctx, cfg, cw.Options{RequireCompute: true}); !errors.Is(err, cw.ErrNoCompute) {
		t.Errorf("New(RequireCompute) for noauth: %v, want ErrNoCompute", err)
	}

	// Created without Keystone, seen through Keystone (one model).
	created, err := na.CreateVolume(ctx, cw.CreateVolumeOpts{Name: "via-noauth", SizeGiB: 1})
	if err != nil {
		t.Fatal(err)
	}
	v, err := na.WaitVolume(ctx, created.ID, cw.StatusIs("available"))
	if err != nil {
		t.Fatal(err)
	}
	// Cinder takes user and project from the noauth token; gophercloud's
	// noauth client sends "<username>:<project>".
	if v.ProjectID != member.ProjectID || v.UserID != "cinderwarden" {
		t.Errorf("noauth volume project %q user %q, want %q and cinderwarden", v.ProjectID, v.UserID, member.ProjectID)
	}
	_, mc := client(simcloud.CloudMember)
	if !mc.HasCompute() {
		t.Fatal("keystone member client has no Nova")
	}
	got, err := mc.GetVolume(ctx, created.ID)
	if err != nil || got.Name != "via-noauth" || got.Status != "available" {
		t.Fatalf("member sees noauth volume as %+v, %v", got, err)
	}
	viaKeystone, err := mc.CreateVolume(ctx, cw.CreateVolumeOpts{Name: "via-keystone", SizeGiB: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mc.WaitVolume(ctx, viaKeystone.ID, cw.StatusIs("available")); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*cw.Client{"noauth": na, "member": mc} {
		vs, err := c.ListVolumes(ctx, cw.VolumeFilter{})
		if err != nil {
			t.Fatalf("%s list: %v", name, err)
		}
		want := []string{created.ID, viaKeystone.ID}
		slices.Sort(want)
		if ids := volumeIDs(vs); !slices.Equal(ids, want) {
			t.Errorf("%s lists %v, want %v", name, ids, want)
		}
	}
	if g, err := na.GetVolume(ctx, viaKeystone.ID); err != nil || g.SizeGiB != 2 {
		t.Errorf("noauth get of keystone volume: %+v, %v", g, err)
	}

	// noauth is an admin context: os-reset_status, refused to the member,
	// is allowed.
	if err := mc.ResetStatus(ctx, viaKeystone.ID, cw.ResetStatusOpts{Status: "error"}); !errors.Is(err, cw.ErrForbidden) {
		t.Fatalf("member reset-status: %v, want ErrForbidden", err)
	}
	if err := na.ResetStatus(ctx, viaKeystone.ID, cw.ResetStatusOpts{Status: "error"}); err != nil {
		t.Fatalf("noauth reset-status: %v", err)
	}
	if g, err := mc.GetVolume(ctx, viaKeystone.ID); err != nil || g.Status != "error" {
		t.Errorf("after noauth reset-status the member sees %+v, %v", g, err)
	}
	if err := na.DeleteVolume(ctx, created.ID); err != nil {
		t.Fatal(err)
	}
	if err := mc.WaitVolumeDeleted(ctx, created.ID); err != nil {
		t.Errorf("member still sees the volume noauth deleted: %v", err)
	}
}

type rawResp struct {
	status int
	header http.Header
	body   map[string]any
}

func rawCall(t *testing.T, method, url string, hdr map[string]string, body string) rawResp {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := rawResp{status: resp.StatusCode, header: resp.Header}
	if len(b) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &out.body); err != nil {
			t.Fatalf("%s %s: body %q: %v", method, url, b, err)
		}
	} else if len(b) > 0 {
		t.Fatalf("%s %s: unexpected non-JSON body %q", method, url, b)
	}
	return out
}

// The noauth path behaves as Cinder's NoAuthMiddleware: the token names
// user and project unchecked, a missing token gets a 204 with a made-up
// one, the URL project must match, and the context is admin.
func TestNoAuthMiddlewareSemantics(t *testing.T) {
	s := startSim(t, simcloud.Options{})
	proj := s.Member().ProjectID
	base := s.NoAuthVolumeURL(proj)

	// No X-Auth-Token: no API answer, a token and management URL instead.
	r := rawCall(t, "GET", base+"/volumes", nil, "")
	if r.status != http.StatusNoContent || r.header.Get("X-Auth-Token") != "admin:admin" ||
		r.header.Get("X-Server-Management-Url") != base+"/volumes/admin" {
		t.Errorf("no token: %d token %q url %q", r.status, r.header.Get("X-Auth-Token"), r.header.Get("X-Server-Management-Url"))
	}
	r = rawCall(t, "GET", base+"/volumes/detail", map[string]string{"X-Auth-User": "alice", "X-Auth-Project-Id": "p1"}, "")
	if r.status != http.StatusNoContent || r.header.Get("X-Auth-Token") != "alice:p1" ||
		r.header.Get("X-Server-Management-Url") != base+"/volumes/detail/p1" {
		t.Errorf("no token, named user: %d token %q url %q", r.status, r.header.Get("X-Auth-Token"), r.header.Get("X-Server-Management-Url"))
	}

	// A volume in a project Keystone has never heard of.
	other := s.NoAuthVolumeURL("elsewhere")
	r = rawCall(t, "POST", other+"/volumes", map[string]string{"X-Auth-Token": "bob:elsewhere"}, `{"volume":{"size":1,"name":"far"}}`)
	if r.status != http.StatusAccepted {
		t.Fatalf("create in project elsewhere: %d %v", r.status, r.body)
	}
	vol := r.body["volume"].(map[string]any)
	id := vol["id"].(string)
	if self := vol["links"].([]any)[0].(map[string]any)["href"]; self != other+"/volumes/"+id {
		t.Errorf("self link %v, want %s", self, other+"/volumes/"+id)
	}
	// A bare token is both user and project.
	r = rawCall(t, "GET", other+"/volumes/"+id, map[string]string{"X-Auth-Token": "elsewhere"}, "")
	if r.status != http.StatusOK || r.body["volume"].(map[string]any)["user_id"] != "bob" {
		t.Errorf("bare token get: %d %v", r.status, r.body)
	}

	cases := []struct {
		name, method, url, token string
		want                     int
	}{
		// The URL project must be the token's, as with Keystone.
		{"url project differs", "GET", other + "/volumes", "bob:" + proj, http.StatusBadRequest},
		// Admin context: another project's volume by id, and all_tenants.
		{"other project's volume by id", "GET", base + "/volumes/" + id, "carol:" + proj, http.StatusOK},
		{"reset-status allowed (admin)", "POST", base + "/volumes/" + id + "/action", "carol:" + proj, http.StatusAccepted},
		// A noauth token means nothing to the Keystone-protected Cinder.
		{"noauth token on keystone path", "GET", s.VolumeURL(proj) + "/volumes", "carol:" + proj, http.StatusUnauthorized},
		{"unknown path", "GET", base + "/nothing", "carol:" + proj, http.StatusNotFound},
	}
	for _, c := range cases {
		body := ""
		if c.method == "POST" {
			body = `{"os-reset_status":{"status":"available"}}`
		}
		r := rawCall(t, c.method, c.url, map[string]string{"X-Auth-Token": c.token}, body)
		if r.status != c.want {
			t.Errorf("%s: %d %v, want %d", c.name, r.status, r.body, c.want)
		}
	}
	if r := rawCall(t, "GET", other+"/volumes", map[string]string{"X-Auth-Token": "bob:" + proj}, ""); r.body["badRequest"].(map[string]any)["message"] != "Malformed request url" {
		t.Errorf("project mismatch body %v", r.body)
	}

	// Listing stays per project unless all_tenants, as in Cinder.
	list := func(url string) []string {
		r := rawCall(t, "GET", url, map[string]string{"X-Auth-Token": "carol:" + proj}, "")
		if r.status != http.StatusOK {
			t.Fatalf("list %s: %d %v", url, r.status, r.body)
		}
		var ids []string
		for _, v := range r.body["volumes"].([]any) {
			ids = append(ids, v.(map[string]any)["id"].(string))
		}
		return ids
	}
	if ids := list(base + "/volumes"); len(ids) != 0 {
		t.Errorf("own-project listing shows %v", ids)
	}
	if ids := list(base + "/volumes?all_tenants=1"); !slices.Equal(ids, []string{id}) {
		t.Errorf("all_tenants listing %v, want [%s]", ids, id)
	}
}
