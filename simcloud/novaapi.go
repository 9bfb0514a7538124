package simcloud

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
)

// Nova v2.1 handlers: servers (show, list, detail) and
// os-volume_attachments.

func (s *Sim) novaVersionDoc() map[string]any {
	return map[string]any{
		"id": "v2.1", "status": "CURRENT", "version": novaMax.String(), "min_version": novaMin.String(),
		"updated": "2013-07-23T11:33:21Z",
		"links":   []any{map[string]any{"href": s.ComputeURL() + "/", "rel": "self"}},
	}
}

func (s *Sim) novaVersions(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Openstack-Request-Id", s.reqIDs.requestID())
	s.writeJSON(w, http.StatusOK, map[string]any{"versions": []any{s.novaVersionDoc()}})
}

func (s *Sim) novaVersion(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Openstack-Request-Id", s.reqIDs.requestID())
	s.writeJSON(w, http.StatusOK, map[string]any{"version": s.novaVersionDoc()})
}

func vmState(status string) (vm string, power int) {
	switch status {
	case StatusShutoff:
		return "stopped", 4
	case StatusError:
		return "error", 0
	default:
		return "active", 1
	}
}

func (s *Sim) serverLinks(id string) []any {
	return []any{
		map[string]any{"href": s.ComputeURL() + "/servers/" + id, "rel": "self"},
		map[string]any{"href": s.base + "/compute/servers/" + id, "rel": "bookmark"},
	}
}

// renderServer is Nova's detailed server view; admin-only extended
// attributes appear only for admins, as with Nova's default policy.
func (s *Sim) renderServer(q *request, sv server) map[string]any {
	vm, power := vmState(sv.Status)
	vols := []any{}
	for _, b := range sv.BDMs {
		vols = append(vols, map[string]any{"id": b.VolumeID, "delete_on_termination": b.DeleteOnTermination})
	}
	var task any
	if sv.TaskState != nil {
		task = *sv.TaskState
	}
	out := map[string]any{
		"id":                                   sv.ID,
		"name":                                 sv.Name,
		"status":                               sv.Status,
		"tenant_id":                            sv.ProjectID,
		"user_id":                              sv.UserID,
		"metadata":                             map[string]any{},
		"hostId":                               s.stableID("host-" + sv.Host + sv.ProjectID)[:28],
		"image":                                "",
		"flavor":                               map[string]any{"id": "1", "links": []any{}},
		"created":                              novaTime(sv.CreatedAt),
		"updated":                              novaTime(sv.UpdatedAt),
		"addresses":                            map[string]any{},
		"accessIPv4":                           "",
		"accessIPv6":                           "",
		"links":                                s.serverLinks(sv.ID),
		"OS-DCF:diskConfig":                    "MANUAL",
		"progress":                             0,
		"config_drive":                         "",
		"key_name":                             nil,
		"security_groups":                      []any{map[string]any{"name": "default"}},
		"OS-EXT-AZ:availability_zone":          sv.AZ,
		"OS-EXT-STS:task_state":                task,
		"OS-EXT-STS:vm_state":                  vm,
		"OS-EXT-STS:power_state":               power,
		"OS-SRV-USG:launched_at":               cinderTime(sv.CreatedAt),
		"OS-SRV-USG:terminated_at":             nil,
		"os-extended-volumes:volumes_attached": vols,
	}
	if q.caller.Admin {
		out["OS-EXT-SRV-ATTR:host"] = sv.Host
		out["OS-EXT-SRV-ATTR:hypervisor_hostname"] = sv.Host
		out["OS-EXT-SRV-ATTR:instance_name"] = sv.InstanceName
	}
	if q.ver.atLeast(2, 9) {
		out["locked"] = false
	}
	if q.ver.atLeast(2, 19) {
		out["description"] = nil
	}
	if q.ver.atLeast(2, 26) {
		out["tags"] = []any{}
	}
	if q.ver.atLeast(2, 47) {
		out["flavor"] = map[string]any{"original_name": "m1.tiny", "vcpus": 1, "ram": 512, "disk": 1,
			"ephemeral": 0, "swap": 0, "extra_specs": map[string]any{}}
	}
	if q.ver.atLeast(2, 73) {
		out["locked_reason"] = nil
	}
	if q.ver.atLeast(2, 16) && q.caller.Admin {
		out["host_status"] = "UP"
	}
	return out
}

func (s *Sim) serverGet(q *request) (int, any, error) {
	sv, err := s.model.getServer(s.clock.Now(), q.caller, q.r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"server": s.renderServer(q, sv)}, nil
}

func (s *Sim) serverList(detail bool) handler {
	return func(q *request) (int, any, error) {
		qv := q.r.URL.Query()
		f := serverFilter{Name: qv.Get("name"), Status: qv.Get("status")}
		if at := qv.Get("all_tenants"); qv.Has("all_tenants") && at != "0" && !strings.EqualFold(at, "false") {
			if !q.caller.Admin {
				return 0, nil, errPolicy("os_compute_api:servers:detail:get_all_tenants")
			}
			f.AllTenants = true
		}
		if q.caller.Admin {
			// Nova ignores host and project filters for non-admins.
			f.Host = qv.Get("host")
			f.ProjectID = qv.Get("project_id")
			if f.ProjectID == "" {
				f.ProjectID = qv.Get("tenant_id")
			}
			if f.ProjectID != "" {
				f.AllTenants = true
			}
		}
		marker, limit, err := pageParams(qv)
		if err != nil {
			return 0, nil, err
		}
		all := s.model.listServers(s.clock.Now(), q.caller, f)
		page, next, pageNo, err := paginate(all, func(sv server) string { return sv.ID }, marker, limit)
		if err != nil {
			return 0, nil, badRequest("marker [%s] not found", marker)
		}
		if st := s.faults.pageStatus(OpServerList, pageNo); st != 0 {
			return 0, nil, &injected{status: st}
		}
		items := make([]any, 0, len(page))
		for _, sv := range page {
			if detail {
				items = append(items, s.renderServer(q, sv))
			} else {
				items = append(items, map[string]any{"id": sv.ID, "name": sv.Name, "links": s.serverLinks(sv.ID)})
			}
		}
		out := map[string]any{"servers": items}
		if next {
			out["servers_links"] = []any{map[string]any{"href": s.nextLink(q.r, page[len(page)-1].ID, limit), "rel": "next"}}
		}
		return http.StatusOK, out, nil
	}
}

// renderVolumeAttachment is Nova's volumeAttachment view by microversion.
func renderVolumeAttachment(q *request, serverID string, b bdm) map[string]any {
	out := map[string]any{"device": b.Device, "serverId": serverID, "volumeId": b.VolumeID}
	if q.ver.atLeast(2, 89) {
		out["attachment_id"] = b.AttachmentID
		out["bdm_uuid"] = b.UUID
	} else {
		out["id"] = b.VolumeID
	}
	if q.ver.atLeast(2, 70) {
		out["tag"] = b.Tag
	}
	if q.ver.atLeast(2, 79) {
		out["delete_on_termination"] = b.DeleteOnTermination
	}
	return out
}

// renderAttachAccepted is what Nova's create answers at every microversion:
// the attach is still asynchronous, so it carries the legacy id (the volume
// id) and never attachment_id or bdm_uuid, which only list/show have (2.89+).
func renderAttachAccepted(q *request, serverID string, b bdm) map[string]any {
	out := map[string]any{"id": b.VolumeID, "device": b.Device, "serverId": serverID, "volumeId": b.VolumeID}
	if q.ver.atLeast(2, 70) {
		out["tag"] = b.Tag
	}
	if q.ver.atLeast(2, 79) {
		out["delete_on_termination"] = b.DeleteOnTermination
	}
	return out
}

func (s *Sim) novaAttachmentList(q *request) (int, any, error) {
	bdms, sv, err := s.model.serverBDMs(s.clock.Now(), q.caller, q.r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	items := make([]any, 0, len(bdms))
	for _, b := range bdms {
		items = append(items, renderVolumeAttachment(q, sv.ID, b))
	}
	return http.StatusOK, map[string]any{"volumeAttachments": items}, nil
}

func (s *Sim) novaAttachmentGet(q *request) (int, any, error) {
	serverID, volumeID := q.r.PathValue("id"), q.r.PathValue("volume")
	bdms, sv, err := s.model.serverBDMs(s.clock.Now(), q.caller, serverID)
	if err != nil {
		return 0, nil, err
	}
	for _, b := range bdms {
		if b.VolumeID == volumeID {
			return http.StatusOK, map[string]any{"volumeAttachment": renderVolumeAttachment(q, sv.ID, b)}, nil
		}
	}
	return 0, nil, notFound("Instance %s is not attached to volume %s", serverID, volumeID)
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$`)

// novaAttach accepts an attach: the Cinder attachment is created (volume
// reserved) and the mapping recorded now; nova-compute connects and calls
// the backends after the attach latency.
func (s *Sim) novaAttach(q *request) (int, any, error) {
	body, err := decodeBody(q.r)
	if err != nil {
		return 0, nil, err
	}
	ab, err := object(body, "volumeAttachment")
	if err != nil {
		return 0, nil, err
	}
	var volumeID string
	if raw, ok := ab["volumeId"]; !ok {
		return 0, nil, badRequest("Invalid input for field/attribute volumeAttachment. Value: %s. 'volumeId' is a required property", body["volumeAttachment"])
	} else if err := json.Unmarshal(raw, &volumeID); err != nil || !uuidRE.MatchString(volumeID) {
		return 0, nil, badRequest("Invalid input for field/attribute volumeId. Value: %s. %s is not a 'uuid'", raw, raw)
	}
	var tag *string
	if raw, ok := ab["tag"]; ok {
		if !q.ver.atLeast(2, 49) {
			return 0, nil, badRequest("Invalid input for field/attribute volumeAttachment. Value: %s. Additional properties are not allowed ('tag' was unexpected)", body["volumeAttachment"])
		}
		var t string
		if err := json.Unmarshal(raw, &t); err != nil {
			return 0, nil, badRequest("Invalid input for field/attribute tag. Value: %s. %s is not of type 'string'", raw, raw)
		}
		tag = &t
	}
	dot := false
	if raw, ok := ab["delete_on_termination"]; ok {
		if !q.ver.atLeast(2, 79) {
			return 0, nil, badRequest("Invalid input for field/attribute volumeAttachment. Value: %s. Additional properties are not allowed ('delete_on_termination' was unexpected)", body["volumeAttachment"])
		}
		if err := json.Unmarshal(raw, &dot); err != nil {
			return 0, nil, badRequest("Invalid input for field/attribute delete_on_termination. Value: %s. %s is not of type 'boolean', 'string'", raw, raw)
		}
	}
	sv, b, err := s.model.novaAttachRequest(s.clock.Now(), q.caller, q.r.PathValue("id"), volumeID, tag, dot)
	if err != nil {
		return 0, nil, err
	}
	s.startNovaAttach(sv.ID, volumeID, sv.Host, b.AttachmentID)
	return http.StatusOK, map[string]any{"volumeAttachment": renderAttachAccepted(q, sv.ID, b)}, nil
}

// novaDetach accepts a detach (202): the volume goes detaching now;
// nova-compute calls the backends after the detach latency and then
// deletes the Cinder attachment and the mapping.
func (s *Sim) novaDetach(q *request) (int, any, error) {
	serverID, volumeID := q.r.PathValue("id"), q.r.PathValue("volume")
	now := s.clock.Now()
	if err := s.model.novaDetachRequest(now, q.caller, serverID, volumeID); err != nil {
		return 0, nil, err
	}
	bdms, sv, err := s.model.serverBDMs(now, caller{Admin: true}, serverID)
	if err != nil {
		return 0, nil, err
	}
	attachmentID := ""
	for _, b := range bdms {
		if b.VolumeID == volumeID {
			attachmentID = b.AttachmentID
		}
	}
	s.startNovaDetach(serverID, volumeID, sv.Host, attachmentID)
	return http.StatusAccepted, nil, nil
}
