package simcloud_test

import (
	"context"
	"encoding/json"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/attachments"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"

	"github.com/cinderwarden/cinderwarden/simcloud"
)

// Comparisons against responses captured from a real Cinder 21 (Zed):
// testdata/real-cinder-zed.json is /work/shared/fixtures/real-cinder-zed.

type fixture struct {
	Request string            `json:"request"`
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers"`
	Body    json.RawMessage   `json:"body"`
}

func loadFixtures(t *testing.T) map[string]fixture {
	t.Helper()
	b, err := os.ReadFile("testdata/real-cinder-zed.json")
	if err != nil {
		t.Fatal(err)
	}
	var fx map[string]fixture
	if err := json.Unmarshal(b, &fx); err != nil {
		t.Fatal(err)
	}
	return fx
}

// sameError checks status, error key and message against a fixture, after
// replacing the fixture's ids with ours (repl: fixture string → ours).
func sameError(t *testing.T, what string, status int, got map[string]any, fx fixture, repl map[string]string) {
	t.Helper()
	body := string(fx.Body)
	for from, to := range repl {
		body = strings.ReplaceAll(body, from, to)
	}
	var want map[string]any
	if err := json.Unmarshal([]byte(body), &want); err != nil {
		t.Fatal(err)
	}
	if status != fx.Status {
		t.Errorf("%s: status %d, real Cinder %d", what, status, fx.Status)
	}
	if !equalJSON(got, want) {
		t.Errorf("%s: body\n  %v\nreal Cinder\n  %v", what, got, want)
	}
}

func equalJSON(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// raw sends a request through gophercloud with a raw body and returns the
// status and decoded body of whatever came back.
func raw(t *testing.T, c *gophercloud.ServiceClient, method, url string, body string) (int, map[string]any) {
	t.Helper()
	opts := &gophercloud.RequestOpts{OkCodes: []int{200, 202, 204}, KeepResponseBody: true}
	if body != "" {
		opts.RawBody = strings.NewReader(body)
		opts.MoreHeaders = map[string]string{"Content-Type": "application/json"}
	}
	resp, err := c.Request(context.Background(), method, url, opts)
	if err != nil {
		return apiError(t, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func TestBadInputAnswersLikeRealCinder(t *testing.T) {
	s := startSim(t, simcloud.Options{})
	fx := loadFixtures(t)
	c := connect(t, s.Member(), "3.44")
	url := c.volume.ServiceURL("volumes")

	status, body := raw(t, c.volume, "POST", url, `{"volume": {"size": 1,`)
	sameError(t, "malformed JSON", status, body, fx["error_malformed_json"], nil)

	status, body = raw(t, c.volume, "POST", url, `{"volume": {"size": 0}}`)
	sameError(t, "size 0", status, body, fx["error_bad_size"], nil)

	for _, bad := range []string{`"abc"`, `1.5`, `-3`, `null`} {
		status, body = raw(t, c.volume, "POST", url, `{"volume": {"size": `+bad+`}}`)
		if status != 400 || body["badRequest"] == nil {
			t.Errorf("size %s: %d %v, want 400 badRequest", bad, status, body)
		}
	}

	unknown := "00000000-0000-0000-0000-000000000000"
	status, body = raw(t, c.volume, "GET", c.volume.ServiceURL("volumes", unknown), "")
	sameError(t, "unknown volume", status, body, fx["error_not_found"], nil)

	// A second attachment on a volume that is not multiattach.
	v := createVolume(t, c.volume, "fixture-vol")
	inst := "11111111-2222-3333-4444-555555555555"
	a, err := attachments.Create(context.Background(), c.volume, attachments.CreateOpts{VolumeUUID: v.ID, InstanceUUID: inst,
		Connector: map[string]any{"host": "h", "mode": "rw"}}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if err := attachments.Complete(context.Background(), c.volume, a.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	_, err = attachments.Create(context.Background(), c.volume, attachments.CreateOpts{VolumeUUID: v.ID, InstanceUUID: inst}).Extract()
	status, body = apiError(t, err)
	sameError(t, "second attachment", status, body, fx["error_second_attachment_not_multiattach"],
		map[string]string{"e87533fd-68d5-47f7-a751-ecdb7b81369d": v.ID})

	status, body = raw(t, c.volume, "DELETE", c.volume.ServiceURL("volumes", v.ID), "")
	sameError(t, "delete in-use", status, body, fx["error_delete_in_use"], nil)

	status, body = raw(t, c.volume, "POST", c.volume.ServiceURL("volumes", v.ID, "action"), `{"os-frobnicate": {}}`)
	if status != 400 || body["badRequest"] == nil {
		t.Errorf("unknown action: %d %v", status, body)
	}
}

// keysOf returns a JSON object's keys, sorted.
func keysOf(m map[string]any) []string {
	return slices.Sorted(maps.Keys(m))
}

func TestResponseShapesMatchRealCinder(t *testing.T) {
	s := startSim(t, simcloud.Options{})
	fx := loadFixtures(t)
	c := connect(t, s.Member(), "3.44")
	ctx := context.Background()
	fxBody := func(name, key string) map[string]any {
		var b map[string]any
		if err := json.Unmarshal(fx[name].Body, &b); err != nil {
			t.Fatal(err)
		}
		return b[key].(map[string]any)
	}

	status, created := raw(t, c.volume, "POST", c.volume.ServiceURL("volumes"),
		`{"volume": {"size": 1, "name": "fixture-vol", "metadata": {"owner": "fixture"}}}`)
	cv := created["volume"].(map[string]any)
	want := fxBody("volume_create", "volume")
	if status != fx["volume_create"].Status || !slices.Equal(keysOf(cv), keysOf(want)) {
		t.Errorf("create: %d keys %v\nreal %d keys %v", status, keysOf(cv), fx["volume_create"].Status, keysOf(want))
	}
	for _, k := range []string{"status", "updated_at", "description", "bootable", "volume_type", "availability_zone"} {
		if !equalJSON(cv[k], want[k]) {
			t.Errorf("create: %s = %v, real %v", k, cv[k], want[k])
		}
	}
	id := cv["id"].(string)
	waitVolume(t, c.volume, id, "available")
	_, shown := raw(t, c.volume, "GET", c.volume.ServiceURL("volumes", id), "")
	sv := shown["volume"].(map[string]any)
	want = fxBody("volume_show_available", "volume")
	if !slices.Equal(keysOf(sv), keysOf(want)) {
		t.Errorf("show keys %v\nreal %v", keysOf(sv), keysOf(want))
	}
	if ts, _ := sv["created_at"].(string); len(ts) != len("2026-11-25T20:05:40.206384") || strings.HasSuffix(ts, "Z") {
		t.Errorf("created_at %q is not Cinder's zone-less microsecond format", ts)
	}

	_, list := raw(t, c.volume, "GET", c.volume.ServiceURL("volumes")+"?limit=1", "")
	var wantList map[string]any
	_ = json.Unmarshal(fx["volume_list_limit1"].Body, &wantList)
	item := list["volumes"].([]any)[0].(map[string]any)
	if !slices.Equal(keysOf(item), keysOf(wantList["volumes"].([]any)[0].(map[string]any))) {
		t.Errorf("summary list item keys %v", keysOf(item))
	}
	link := list["volumes_links"].([]any)[0].(map[string]any)
	if link["rel"] != "next" || link["href"] != c.volume.ServiceURL("volumes")+"?limit=1&marker="+id {
		t.Errorf("next link %v", link)
	}

	status, md := raw(t, c.volume, "POST", c.volume.ServiceURL("volumes", id, "metadata"), `{"metadata": {"k": "v"}}`)
	if !equalJSON(md, mustJSON(t, fx["volume_metadata_set"].Body)) || status != 200 {
		t.Errorf("metadata set: %d %v", status, md)
	}

	inst := "11111111-2222-3333-4444-555555555555"
	status, ac := raw(t, c.volume, "POST", c.volume.ServiceURL("attachments"),
		`{"attachment": {"volume_uuid": "`+id+`", "instance_uuid": "`+inst+`", "connector": {"host": "h", "mode": "rw"}}}`)
	att := ac["attachment"].(map[string]any)
	wantAtt := fxBody("attachment_create", "attachment")
	if status != fx["attachment_create"].Status || !slices.Equal(keysOf(att), keysOf(wantAtt)) {
		t.Errorf("attachment create: %d keys %v, real %d %v", status, keysOf(att), fx["attachment_create"].Status, keysOf(wantAtt))
	}
	for _, k := range []string{"attach_mode", "attached_at", "detached_at", "status"} {
		if !equalJSON(att[k], wantAtt[k]) {
			t.Errorf("attachment create: %s = %v, real %v", k, att[k], wantAtt[k])
		}
	}
	if !slices.Equal(keysOf(att["connection_info"].(map[string]any)), keysOf(wantAtt["connection_info"].(map[string]any))) {
		t.Errorf("connection_info keys %v", keysOf(att["connection_info"].(map[string]any)))
	}
	aid := att["id"].(string)
	status, _ = raw(t, c.volume, "POST", c.volume.ServiceURL("attachments", aid, "action"), `{"os-complete": null}`)
	if status != fx["attachment_complete"].Status {
		t.Errorf("os-complete: %d, real %d", status, fx["attachment_complete"].Status)
	}
	_, inUse := raw(t, c.volume, "GET", c.volume.ServiceURL("volumes", id), "")
	atts := inUse["volume"].(map[string]any)["attachments"].([]any)
	wantIU := fxBody("volume_show_in_use", "volume")["attachments"].([]any)
	if len(atts) != 1 || !slices.Equal(keysOf(atts[0].(map[string]any)), keysOf(wantIU[0].(map[string]any))) {
		t.Errorf("in-use attachments %v", atts)
	}
	status, del := raw(t, c.volume, "DELETE", c.volume.ServiceURL("attachments", aid), "")
	if status != fx["attachment_delete"].Status || !equalJSON(del, mustJSON(t, fx["attachment_delete"].Body)) {
		t.Errorf("attachment delete: %d %v", status, del)
	}
	v, err := volumes.Get(ctx, c.volume, id).Extract()
	if err != nil || v.Status != "available" || len(v.Attachments) != 0 {
		t.Errorf("after attachment delete: %+v %v", v, err)
	}
}

func mustJSON(t *testing.T, b json.RawMessage) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}
