package openstack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// fixtureVolume is volume_show_in_use as our struct, written out by hand.
func fixtureVolumeInUse(t *testing.T) Volume {
	return Volume{
		ID: volID, Name: "fixture-vol", Status: "in-use", SizeGiB: 1, VolumeType: "__DEFAULT__",
		AvailabilityZone: "nova", Metadata: map[string]string{"k": "v", "owner": "fixture"},
		Attachments: []VolumeAttachment{{
			AttachmentID: attID, ServerID: serverID, Device: "/dev/vdb",
			AttachedAt: mustTime(t, "2026-11-25T20:05:41.452990"),
		}},
		ProjectID: projectID, UserID: "802d1f681663440690d9d3f9ca78048e",
		CreatedAt: mustTime(t, "2026-11-25T20:05:40.206384"), UpdatedAt: mustTime(t, "2026-11-25T20:05:41.532670"),
	}
}

func TestGetVolume(t *testing.T) {
	fc := newFakeCloud(t)
	fc.serve("GET "+cinderBase+"/volumes/{id}", "volume_show_in_use")
	c := fc.client()
	got, err := c.GetVolume(ctxT(t), volID)
	if err != nil {
		t.Fatal(err)
	}
	if want := fixtureVolumeInUse(t); !reflect.DeepEqual(*got, want) {
		t.Errorf("GetVolume:\n got %+v\nwant %+v", *got, want)
	}
	if got.AttachedTo(serverID) == nil || got.AttachedTo("other") != nil {
		t.Errorf("AttachedTo wrong")
	}
	reqs := fc.requests("/volumes/" + volID)
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	if h := reqs[0].Header.Get("OpenStack-API-Version"); h != "volume 3.44" {
		t.Errorf("OpenStack-API-Version = %q, want volume 3.44", h)
	}
	if h := reqs[0].Header.Get("X-Auth-Token"); h != "token-1" {
		t.Errorf("X-Auth-Token = %q", h)
	}
}

func TestCreateVolume(t *testing.T) {
	fc := newFakeCloud(t)
	var body map[string]any
	fc.handle("POST "+cinderBase+"/volumes", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &body); err != nil {
			t.Error(err)
		}
		fc.write(w, "volume_create")
	})
	c := fc.client()
	got, err := c.CreateVolume(ctxT(t), CreateVolumeOpts{
		Name: "fixture-vol", SizeGiB: 1, VolumeType: "fast", AvailabilityZone: "nova", SnapshotID: "snap-1",
		SourceVolID: "", Description: "d", Metadata: map[string]string{"owner": "fixture"},
	})
	if err != nil {
		t.Fatal(err)
	}
	wantBody := map[string]any{"volume": map[string]any{
		"name": "fixture-vol", "size": float64(1), "volume_type": "fast", "availability_zone": "nova",
		"snapshot_id": "snap-1", "description": "d", "metadata": map[string]any{"owner": "fixture"},
	}}
	if !reflect.DeepEqual(body, wantBody) {
		t.Errorf("request body:\n got %v\nwant %v", body, wantBody)
	}
	want := Volume{
		ID: volID, Name: "fixture-vol", Status: "creating", SizeGiB: 1, VolumeType: "__DEFAULT__",
		AvailabilityZone: "nova", Metadata: map[string]string{"owner": "fixture"}, Attachments: []VolumeAttachment{},
		UserID: "802d1f681663440690d9d3f9ca78048e", CreatedAt: mustTime(t, "2026-11-25T20:05:40.206384"),
	}
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("CreateVolume:\n got %+v\nwant %+v", *got, want)
	}
}

func TestListVolumesFilters(t *testing.T) {
	fc := newFakeCloud(t)
	fc.serve("GET "+cinderBase+"/volumes/detail", "volume_detail_filter_name")
	c := fc.client()
	got, err := c.ListVolumes(ctxT(t), VolumeFilter{Name: "fixture-vol", Status: "available",
		Metadata: map[string]string{"owner": "fixture"}, AllTenants: true, PageSize: 50})
	if err != nil {
		t.Fatal(err)
	}
	want := []Volume{{
		ID: volID, Name: "fixture-vol", Status: "available", SizeGiB: 1, VolumeType: "__DEFAULT__",
		AvailabilityZone: "nova", Metadata: map[string]string{"owner": "fixture"}, Attachments: []VolumeAttachment{},
		ProjectID: projectID, UserID: "802d1f681663440690d9d3f9ca78048e",
		CreatedAt: mustTime(t, "2026-11-25T20:05:40.206384"), UpdatedAt: mustTime(t, "2026-11-25T20:05:40.380680"),
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ListVolumes:\n got %+v\nwant %+v", got, want)
	}
	q := fc.requests("/volumes/detail")[0].URL.Query()
	for k, v := range map[string]string{"name": "fixture-vol", "status": "available", "all_tenants": "true",
		"limit": "50", "metadata": "{'owner':'fixture'}"} {
		if q.Get(k) != v {
			t.Errorf("query %s = %q, want %q (query %s)", k, q.Get(k), v, q.Encode())
		}
	}
}

// pagedVolumes serves n volumes built from the captured detail volume, limit
// per page (the request's limit, else 1000 like osapi_max_limit), with
// Cinder-style volumes_links next links; the page numbered failPage (1-based)
// answers 500.
func pagedVolumes(t testing.TB, fc *fakeCloud, n, failPage int) {
	t.Helper()
	var tmpl struct {
		Volumes []map[string]any `json:"volumes"`
	}
	if err := json.Unmarshal(fc.body("volume_detail_filter_name"), &tmpl); err != nil {
		t.Fatal(err)
	}
	fc.handle("GET "+cinderBase+"/volumes/detail", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		limit := 1000
		if l, err := strconv.Atoi(q.Get("limit")); err == nil && l > 0 {
			limit = l
		}
		start := 0
		if m := q.Get("marker"); m != "" {
			start, _ = strconv.Atoi(strings.TrimPrefix(m, "vol-"))
			start++
		}
		if failPage > 0 && start/limit+1 == failPage {
			writeJSON(w, http.StatusInternalServerError, map[string]any{"computeFault": map[string]any{
				"code": 500, "message": "The server has either erred or is incapable of performing the requested operation."}})
			return
		}
		page := []map[string]any{}
		for i := start; i < n && i < start+limit; i++ {
			v := map[string]any{}
			for k, val := range tmpl.Volumes[0] {
				v[k] = val
			}
			v["id"] = fmt.Sprintf("vol-%05d", i)
			v["name"] = fmt.Sprintf("v%d", i)
			page = append(page, v)
		}
		resp := map[string]any{"volumes": page}
		if last := start + len(page) - 1; len(page) == limit && last < n-1 {
			next := fmt.Sprintf("%s%s/volumes/detail?limit=%d&marker=vol-%05d", fc.srv.URL, cinderBase, limit, last)
			resp["volumes_links"] = []map[string]string{{"href": next, "rel": "next"}}
		}
		writeJSON(w, http.StatusOK, resp)
	})
}

func TestListVolumesWalksEveryPage(t *testing.T) {
	fc := newFakeCloud(t)
	pagedVolumes(t, fc, 2500, 0)
	c := fc.client()
	before := c.APICalls()
	got, err := c.ListVolumes(ctxT(t), VolumeFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2500 {
		t.Fatalf("%d volumes, want 2500", len(got))
	}
	for i, v := range got {
		if v.ID != fmt.Sprintf("vol-%05d", i) {
			t.Fatalf("volume %d is %s: order or duplicates wrong", i, v.ID)
		}
	}
	if calls := c.APICalls() - before; calls != 3 {
		t.Errorf("%d API calls for 2500 volumes at 1000/page, want 3", calls)
	}
	if n := c.Metrics().CallsFor("volume_list"); n != 3 {
		t.Errorf("CallsFor(volume_list) = %d, want 3", n)
	}
}

func TestListVolumesFailureOnPage3(t *testing.T) {
	fc := newFakeCloud(t)
	pagedVolumes(t, fc, 50, 3)
	c := fc.client()
	got, err := c.ListVolumes(ctxT(t), VolumeFilter{PageSize: 10})
	if err == nil || got != nil {
		t.Fatalf("ListVolumes = %d volumes, %v; want nil and an error", len(got), err)
	}
	if !errors.Is(err, ErrServer) || !strings.Contains(err.Error(), "list volumes: page 3: volume volume_list: 500 computeFault") {
		t.Errorf("error %q: want ErrServer naming page 3", err)
	}

	// The per-page variant hands over two pages, then reports the error.
	var pages [][]Volume
	err = c.EachVolumePage(ctxT(t), VolumeFilter{PageSize: 10}, func(vs []Volume) error {
		pages = append(pages, vs)
		return nil
	})
	if err == nil || len(pages) != 2 || len(pages[0]) != 10 {
		t.Errorf("EachVolumePage: %d pages, err %v; want 2 pages then an error", len(pages), err)
	}

	// A callback error stops the walk and comes back unchanged.
	stop := errors.New("enough")
	calls := 0
	err = c.EachVolumePage(ctxT(t), VolumeFilter{PageSize: 10}, func([]Volume) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("callback error: %v after %d calls", err, calls)
	}
}

func TestVolumeMetadata(t *testing.T) {
	fc := newFakeCloud(t)
	var body string
	fc.handle("POST "+cinderBase+"/volumes/{id}/metadata", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		body = string(b)
		fc.write(w, "volume_metadata_set")
	})
	var deleted string
	fc.handle("DELETE "+cinderBase+"/volumes/{id}/metadata/{key}", func(w http.ResponseWriter, r *http.Request) {
		deleted = r.PathValue("key")
		w.WriteHeader(http.StatusOK)
	})
	c := fc.client()
	md, err := c.SetVolumeMetadata(ctxT(t), volID, map[string]string{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"k": "v", "owner": "fixture"}; !reflect.DeepEqual(md, want) {
		t.Errorf("metadata %v, want %v", md, want)
	}
	if body != `{"metadata":{"k":"v"}}` {
		t.Errorf("request body %s", body)
	}
	if err := c.DeleteVolumeMetadataKey(ctxT(t), volID, "cinderwarden/takeover"); err != nil {
		t.Fatal(err)
	}
	if deleted != "cinderwarden/takeover" {
		t.Errorf("deleted key %q", deleted)
	}
}

func TestAdminActionsRequestBodies(t *testing.T) {
	fc := newFakeCloud(t)
	var bodies []string
	fc.handle("POST "+cinderBase+"/volumes/{id}/action", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, string(b))
		w.WriteHeader(http.StatusAccepted)
	})
	c := fc.client()
	if err := c.ForceDetach(ctxT(t), volID, attID); err != nil {
		t.Fatal(err)
	}
	if err := c.ResetStatus(ctxT(t), volID, ResetStatusOpts{Status: "available", AttachStatus: "detached"}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`{"os-force_detach":{"attachment_id":"` + attID + `"}}`,
		`{"os-reset_status":{"attach_status":"detached","status":"available"}}`,
	}
	if !reflect.DeepEqual(bodies, want) {
		t.Errorf("bodies:\n got %q\nwant %q", bodies, want)
	}
}

// BenchmarkListVolumes20000 lists 20,000 volumes (20 pages of 1000, the
// reconciler's scale target) from a local HTTP server and reports the API
// calls per listing.
func BenchmarkListVolumes20000(b *testing.B) {
	fc := newFakeCloud(b)
	pagedVolumes(b, fc, 20000, 0)
	c := fc.client()
	ctx := context.Background()
	before := c.APICalls()
	b.ResetTimer()
	for b.Loop() {
		vs, err := c.ListVolumes(ctx, VolumeFilter{})
		if err != nil || len(vs) != 20000 {
			b.Fatalf("%d volumes, %v", len(vs), err)
		}
	}
	b.ReportMetric(float64(c.APICalls()-before)/float64(b.N), "calls/op")
}

func TestListBrokenPagination(t *testing.T) {
	fc := newFakeCloud(t)
	fc.handle("GET "+cinderBase+"/volumes/detail", func(w http.ResponseWriter, r *http.Request) {
		// A next link back to the first page would loop forever.
		writeJSON(w, http.StatusOK, map[string]any{"volumes": []any{map[string]any{"id": "a"}},
			"volumes_links": []any{map[string]string{"rel": "next", "href": fc.srv.URL + r.URL.RequestURI()}}})
	})
	fc.handle("GET "+cinderBase+"/attachments/detail", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"volumes": []any{}}) // wrong key
	})
	c := fc.client()
	if vs, err := c.ListVolumes(ctxT(t), VolumeFilter{}); err == nil || vs != nil || !strings.Contains(err.Error(), "pagination loop") {
		t.Errorf("self-linked page: %v, %v", vs, err)
	}
	if as, err := c.ListAttachments(ctxT(t), AttachmentFilter{}); err == nil || as != nil || !strings.Contains(err.Error(), `no "attachments"`) {
		t.Errorf("wrong key: %v, %v", as, err)
	}
}
