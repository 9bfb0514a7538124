package openstack

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"testing"
)

// Nova responses are not in the captured fixtures; these follow the
// Compute API reference (v2.1, microversion 2.89) field by field.

func novaServer(id, host, taskState string, vols ...string) map[string]any {
	attached := []map[string]any{}
	for _, v := range vols {
		attached = append(attached, map[string]any{"id": v, "delete_on_termination": false})
	}
	var ts any
	if taskState != "" {
		ts = taskState
	}
	return map[string]any{
		"id": id, "name": "srv-" + id, "status": "ACTIVE", "tenant_id": projectID, "user_id": "u",
		"created": "2026-11-25T20:00:00Z", "updated": "2026-11-25T20:01:00Z", "hostId": "abc",
		"OS-EXT-SRV-ATTR:host": host, "OS-EXT-SRV-ATTR:instance_name": "instance-0000000" + id[:1],
		"OS-EXT-SRV-ATTR:hypervisor_hostname": host + ".example", "OS-EXT-SRV-ATTR:hostname": "srv",
		"OS-EXT-STS:task_state": ts, "OS-EXT-STS:vm_state": "active", "OS-EXT-STS:power_state": 1,
		"OS-EXT-AZ:availability_zone": "nova", "OS-SRV-USG:launched_at": "2026-11-25T20:00:05.000000",
		"OS-SRV-USG:terminated_at": nil, "os-extended-volumes:volumes_attached": attached,
		"addresses": map[string]any{}, "flavor": map[string]any{"original_name": "m1"}, "image": "",
		"metadata": map[string]any{}, "locked": false, "links": []any{},
	}
}

func TestGetServer(t *testing.T) {
	fc := newFakeCloud(t)
	fc.handle("GET "+novaBase+"/servers/{id}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"server": novaServer(r.PathValue("id"), "compute-1", "", volID)})
	})
	c := fc.client()
	got, err := c.GetServer(ctxT(t), serverID)
	if err != nil {
		t.Fatal(err)
	}
	want := Server{ID: serverID, Name: "srv-" + serverID, Status: "ACTIVE", VMState: "active", Host: "compute-1",
		InstanceName: "instance-00000001", HypervisorHostname: "compute-1.example", AvailabilityZone: "nova",
		ProjectID: projectID, VolumesAttached: []string{volID}}
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("GetServer:\n got %+v\nwant %+v", *got, want)
	}
	if h := fc.requests("/servers/")[0].Header.Get("X-OpenStack-Nova-API-Version"); h != DefaultComputeMicroversion {
		t.Errorf("Nova microversion header %q", h)
	}
}

func TestListServersPagesAndFilters(t *testing.T) {
	fc := newFakeCloud(t)
	const n = 7
	fc.handle("GET "+novaBase+"/servers/detail", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("all_tenants") != "true" || q.Get("host") != "compute-1" {
			t.Errorf("query %s lacks all_tenants/host", q.Encode())
		}
		limit, _ := strconv.Atoi(q.Get("limit"))
		start := 0
		if m := q.Get("marker"); m != "" {
			start, _ = strconv.Atoi(m[len(m)-1:])
			start++
		}
		var page []map[string]any
		for i := start; i < n && i < start+limit; i++ {
			ts := ""
			if i == 2 {
				ts = "rebooting"
			}
			page = append(page, novaServer(fmt.Sprintf("%d000000-0000-0000-0000-00000000000%d", i, i), "compute-1", ts))
		}
		resp := map[string]any{"servers": page}
		if start+limit < n {
			last := page[len(page)-1]["id"].(string)
			resp["servers_links"] = []map[string]string{{"rel": "next",
				"href": fc.srv.URL + novaBase + "/servers/detail?all_tenants=true&host=compute-1&limit=" + strconv.Itoa(limit) + "&marker=" + last}}
		}
		writeJSON(w, http.StatusOK, resp)
	})
	c := fc.client()
	got, err := c.ListServers(ctxT(t), ServerFilter{AllTenants: true, Host: "compute-1", PageSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("%d servers, want %d", len(got), n)
	}
	if got[2].TaskState != "rebooting" || got[3].TaskState != "" || got[6].Host != "compute-1" {
		t.Errorf("fields wrong: %+v", got[2])
	}
	if calls := c.Metrics().CallsFor("server_list"); calls != 3 {
		t.Errorf("%d list calls, want 3", calls)
	}
}

func TestNovaVolumeAttachments(t *testing.T) {
	fc := newFakeCloud(t)
	var attachBody string
	fc.handle("POST "+novaBase+"/servers/{id}/os-volume_attachments", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		attachBody = string(b)
		// 2.89 POST response: no attachment_id yet.
		writeJSON(w, http.StatusOK, map[string]any{"volumeAttachment": map[string]any{
			"device": "/dev/vdb", "serverId": r.PathValue("id"), "volumeId": volID, "tag": nil,
			"delete_on_termination": false}})
	})
	novaAtt := map[string]any{"device": "/dev/vdb", "serverId": serverID, "volumeId": volID, "tag": "data",
		"delete_on_termination": false, "attachment_id": attID, "bdm_uuid": "b-1"}
	fc.handle("GET "+novaBase+"/servers/{id}/os-volume_attachments", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"volumeAttachments": []any{novaAtt}})
	})
	fc.handle("GET "+novaBase+"/servers/{id}/os-volume_attachments/{vol}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("vol") != volID {
			writeJSON(w, http.StatusNotFound, map[string]any{"itemNotFound": map[string]any{"code": 404,
				"message": "volume_id not found: " + r.PathValue("vol")}})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"volumeAttachment": novaAtt})
	})
	var detached string
	fc.handle("DELETE "+novaBase+"/servers/{id}/os-volume_attachments/{vol}", func(w http.ResponseWriter, r *http.Request) {
		detached = r.PathValue("id") + "/" + r.PathValue("vol")
		w.WriteHeader(http.StatusAccepted)
	})
	c := fc.client()
	ctx := ctxT(t)

	sv, err := c.AttachVolume(ctx, serverID, volID)
	if err != nil {
		t.Fatal(err)
	}
	if want := (ServerVolume{ServerID: serverID, VolumeID: volID, Device: "/dev/vdb"}); *sv != want {
		t.Errorf("AttachVolume = %+v, want %+v", *sv, want)
	}
	var b map[string]map[string]string
	if err := json.Unmarshal([]byte(attachBody), &b); err != nil || b["volumeAttachment"]["volumeId"] != volID || len(b["volumeAttachment"]) != 1 {
		t.Errorf("attach body %s: only volumeId must be sent (never a device name)", attachBody)
	}
	full := ServerVolume{ServerID: serverID, VolumeID: volID, Device: "/dev/vdb", AttachmentID: attID, BDMUUID: "b-1", Tag: "data"}
	list, err := c.ListServerVolumes(ctx, serverID)
	if err != nil || !reflect.DeepEqual(list, []ServerVolume{full}) {
		t.Errorf("ListServerVolumes = %+v, %v", list, err)
	}
	one, err := c.GetServerVolume(ctx, serverID, volID)
	if err != nil || *one != full {
		t.Errorf("GetServerVolume = %+v, %v", one, err)
	}
	if _, err := c.GetServerVolume(ctx, serverID, "other"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetServerVolume(other) err = %v, want ErrNotFound", err)
	}
	if err := c.DetachVolume(ctx, serverID, volID); err != nil || detached != serverID+"/"+volID {
		t.Errorf("DetachVolume: %v (%q)", err, detached)
	}
	for req, want := range map[string]int64{"volume_attach": 1, "server_volume_list": 1, "server_volume_get": 2, "volume_detach": 1} {
		if got := c.Metrics().CallsFor(req); got != want {
			t.Errorf("CallsFor(%s) = %d, want %d", req, got, want)
		}
	}
}

func TestAttachments(t *testing.T) {
	fc := newFakeCloud(t)
	var show map[string]map[string]any
	if err := json.Unmarshal(fc.body("attachment_show"), &show); err != nil {
		t.Fatal(err)
	}
	fc.serve("GET "+cinderBase+"/attachments/{id}", "attachment_show")
	fc.serve("DELETE "+cinderBase+"/attachments/{id}", "attachment_delete")
	fc.serve("POST "+cinderBase+"/attachments/{id}/action", "attachment_complete")
	// Detail listing over two pages, linked by attachments_links: the
	// link key gophercloud's own AttachmentPage does not follow.
	fc.handle("GET "+cinderBase+"/attachments/detail", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("volume_id") != volID || q.Get("instance_id") != serverID || q.Get("status") != "attached" {
			t.Errorf("query %s", q.Encode())
		}
		a := map[string]any{}
		for k, v := range show["attachment"] {
			a[k] = v
		}
		if q.Get("marker") == "" {
			writeJSON(w, http.StatusOK, map[string]any{"attachments": []any{a}, "attachments_links": []any{
				map[string]string{"rel": "next", "href": fc.srv.URL + cinderBase + "/attachments/detail?" + q.Encode() + "&marker=" + attID}}})
			return
		}
		a["id"] = "second"
		writeJSON(w, http.StatusOK, map[string]any{"attachments": []any{a}})
	})
	c := fc.client()
	ctx := ctxT(t)
	want := Attachment{ID: attID, VolumeID: volID, InstanceID: serverID, Status: "attached", AttachMode: "null",
		AttachedAt: mustTime(t, "2026-11-25T20:05:41.452990")}
	got, err := c.GetAttachment(ctx, attID)
	if err != nil || *got != want {
		t.Errorf("GetAttachment = %+v, %v\nwant %+v", got, err, want)
	}
	list, err := c.ListAttachments(ctx, AttachmentFilter{VolumeID: volID, InstanceID: serverID, Status: "attached"})
	if err != nil {
		t.Fatal(err)
	}
	second := want
	second.ID = "second"
	if !reflect.DeepEqual(list, []Attachment{want, second}) {
		t.Errorf("ListAttachments = %+v", list)
	}
	if err := c.CompleteAttachment(ctx, attID); err != nil {
		t.Error(err)
	}
	if err := c.DeleteAttachment(ctx, attID); err != nil {
		t.Error(err)
	}
}

func TestListServersHostFilterIgnored(t *testing.T) {
	fc := newFakeCloud(t)
	// What Nova answers a member: host filter dropped, host attribute hidden.
	fc.handle("GET "+novaBase+"/servers/detail", func(w http.ResponseWriter, r *http.Request) {
		s := novaServer(serverID, "", "")
		delete(s, "OS-EXT-SRV-ATTR:host")
		writeJSON(w, http.StatusOK, map[string]any{"servers": []any{s}})
	})
	c := fc.client()
	got, err := c.ListServers(ctxT(t), ServerFilter{Host: "compute-1"})
	if !errors.Is(err, ErrFilterIgnored) || got != nil {
		t.Fatalf("ListServers = %v, %v; want ErrFilterIgnored", got, err)
	}
	if got, err := c.ListServers(ctxT(t), ServerFilter{}); err != nil || len(got) != 1 {
		t.Errorf("without host filter: %v, %v", got, err)
	}
}
