package openstack

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

// metaDataJSON follows the example of the Nova metadata service
// (openstack/latest/meta_data.json), trimmed to typical keys.
const metaDataJSON = `{"uuid": "` + serverID + `", "meta": {"role": "agent"}, "keys": [], "hostname": "agent-1.novalocal",
 "name": "agent-1", "launch_index": 0, "availability_zone": "az-2", "random_seed": "xyz",
 "project_id": "` + projectID + `", "devices": [], "dedicated_cpus": []}`

func TestInstanceMetadata(t *testing.T) {
	fc := newFakeCloud(t)
	var token string
	var path string
	md := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, path = r.Header.Get("X-Auth-Token"), r.URL.Path
		if r.URL.Path != "/openstack/latest/meta_data.json" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(metaDataJSON))
	}))
	t.Cleanup(md.Close)
	c := fc.client()
	got, err := c.InstanceMetadata(ctxT(t), md.URL+"/")
	if err != nil {
		t.Fatal(err)
	}
	want := InstanceMetadata{UUID: serverID, Name: "agent-1", AvailabilityZone: "az-2", Hostname: "agent-1.novalocal", ProjectID: projectID}
	if *got != want {
		t.Errorf("got %+v, want %+v", *got, want)
	}
	if token != "" {
		t.Errorf("the cloud token was sent to the metadata service")
	}
	if path != "/openstack/latest/meta_data.json" {
		t.Errorf("path %s", path)
	}
	if n := c.Metrics().CallsFor("metadata_get"); n != 1 {
		t.Errorf("metadata_get counted %d", n)
	}

	// Not found / not JSON / no uuid are ErrMetadata.
	for _, tc := range []struct{ name, body string }{{"notjson", "<html>"}, {"nouuid", `{"name": "x"}`}} {
		bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(tc.body)) }))
		_, err := FetchInstanceMetadata(ctxT(t), bad.Client(), bad.URL)
		bad.Close()
		if !errors.Is(err, ErrMetadata) {
			t.Errorf("%s: err = %v, want ErrMetadata", tc.name, err)
		}
	}
	if _, err := c.InstanceMetadata(ctxT(t), md.URL+"/nested"); !errors.Is(err, ErrMetadata) {
		t.Errorf("404: err = %v, want ErrMetadata", err)
	}
}
