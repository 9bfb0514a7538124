package simcloud

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
)

// Cinder v3 handlers: volumes, metadata, actions and attachments.

func (s *Sim) cinderVersions(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Openstack-Request-Id", s.reqIDs.requestID())
	w.Header().Set("Openstack-Api-Version", "volume "+cinderMin.String())
	root := volumeRoot
	if strings.HasPrefix(r.URL.Path, noAuthVolumeRoot+"/") {
		root = noAuthVolumeRoot
	}
	status := http.StatusMultipleChoices
	if strings.HasPrefix(r.URL.Path, root+"/v3") {
		status = http.StatusOK
	}
	s.writeJSON(w, status, map[string]any{"versions": []any{map[string]any{
		"id": "v3.0",
		"links": []any{
			map[string]any{"href": "https://docs.openstack.org/", "rel": "describedby", "type": "text/html"},
			map[string]any{"href": s.base + root + "/v3/", "rel": "self"},
		},
		"media-types": []any{map[string]any{"base": "application/json", "type": "application/vnd.openstack.volume+json;version=3"}},
		"min_version": cinderMin.String(), "status": "CURRENT", "updated": "2022-08-31T00:00:00Z",
		"version": cinderMax.String(),
	}}})
}

// volumeLinks are built from the URL the request came in on, as Cinder's
// view builder does.
func (s *Sim) volumeLinks(q *request, project, id string) []any {
	return []any{
		map[string]any{"href": s.base + q.root + "/v3/" + project + "/volumes/" + id, "rel": "self"},
		map[string]any{"href": s.base + q.root + "/" + project + "/volumes/" + id, "rel": "bookmark"},
	}
}

// renderVolume is Cinder's detailed volume view at the request's
// microversion. created=true is the create response (no tenant attribute).
func (s *Sim) renderVolume(q *request, v volumeView, created bool) map[string]any {
	atts := []any{}
	for _, a := range v.Attached {
		atts = append(atts, map[string]any{
			"attached_at": cinderTimePtr(a.AttachedAt), "attachment_id": a.ID,
			"device": nullIfEmpty(a.Mountpoint), "host_name": nullIfEmpty(a.HostName),
			"id": v.ID, "server_id": nullIfEmpty(a.InstanceID), "volume_id": v.ID,
		})
	}
	md := map[string]string{}
	for k, val := range v.Metadata {
		md[k] = val
	}
	out := map[string]any{
		"attachments":         atts,
		"availability_zone":   v.AZ,
		"bootable":            "false",
		"consistencygroup_id": nil,
		"created_at":          cinderTime(v.CreatedAt),
		"description":         strPtr(v.Description),
		"encrypted":           false,
		"id":                  v.ID,
		"links":               s.volumeLinks(q, v.ProjectID, v.ID),
		"metadata":            md,
		"multiattach":         v.Multiattach,
		"name":                strPtr(v.Name),
		"replication_status":  nil,
		"size":                v.Size,
		"snapshot_id":         nullIfEmpty(v.SnapshotID),
		"source_volid":        nullIfEmpty(v.SourceVolID),
		"status":              v.Status,
		"updated_at":          cinderTimePtr(v.UpdatedAt),
		"user_id":             v.UserID,
		"volume_type":         v.VolumeType,
	}
	if !created {
		out["os-vol-tenant-attr:tenant_id"] = v.ProjectID
		if q.caller.Admin {
			out["os-vol-host-attr:host"] = "sim@fake#fake"
			out["os-vol-mig-status-attr:migstat"] = nil
			out["os-vol-mig-status-attr:name_id"] = nil
		}
	}
	if q.ver.atLeast(3, 13) {
		out["group_id"] = nil
	}
	if q.ver.atLeast(3, 21) && q.caller.Admin {
		out["provider_id"] = nil
	}
	if q.ver.atLeast(3, 48) {
		out["shared_targets"] = false
		out["service_uuid"] = s.stableUUID("cinder-volume")
	}
	if q.ver.atLeast(3, 61) && q.caller.Admin {
		out["cluster_name"] = nil
	}
	if q.ver.atLeast(3, 63) {
		out["volume_type_id"] = s.stableUUID("volume-type-default")
	}
	if q.ver.atLeast(3, 65) {
		out["consumes_quota"] = true
	}
	return out
}

func (s *Sim) stableUUID(name string) string {
	h := s.stableID(name)
	return h[0:8] + "-" + h[8:12] + "-4" + h[13:16] + "-a" + h[17:20] + "-" + h[20:32]
}

func strPtr(p *string) any {
	if p == nil {
		return nil
	}
	return *p
}

func nullIfEmpty(v string) any {
	if v == "" {
		return nil
	}
	return v
}

var digitsRE = regexp.MustCompile(`^[0-9]+$`)

// parseSize validates "size" as Cinder's JSON schema and API do.
func parseSize(raw json.RawMessage, present bool) (int, error) {
	if !present || string(raw) == "null" {
		return 0, badRequest("Invalid input received: Volume size 'None' must be an integer and greater than 0")
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err == nil {
		i, err := strconv.ParseInt(n.String(), 10, 64)
		if err != nil {
			return 0, badRequest("Invalid input for field/attribute size. Value: %s. %s is not of type 'integer', 'string', 'null'", n, n)
		}
		if i < 1 {
			return 0, badRequest("Invalid input for field/attribute size. Value: %d. %d is less than the minimum of 1", i, i)
		}
		if i > 2147483647 {
			return 0, badRequest("Invalid input for field/attribute size. Value: %d. %d is greater than the maximum of 2147483647", i, i)
		}
		return int(i), nil
	}
	var str string
	if err := json.Unmarshal(raw, &str); err == nil {
		if !digitsRE.MatchString(str) {
			return 0, badRequest("Invalid input for field/attribute size. Value: %s. '%s' does not match '^[0-9]+$'", str, str)
		}
		i, err := strconv.Atoi(str)
		if err != nil || i < 1 || i > 2147483647 {
			return 0, badRequest("Invalid input received: Volume size '%s' must be an integer and greater than 0", str)
		}
		return i, nil
	}
	return 0, badRequest("Invalid input for field/attribute size. Value: %s. %s is not of type 'integer', 'string', 'null'", raw, raw)
}

func (s *Sim) volumeCreate(q *request) (int, any, error) {
	body, err := decodeBody(q.r)
	if err != nil {
		return 0, nil, err
	}
	vb, err := object(body, "volume")
	if err != nil {
		return 0, nil, err
	}
	snapID, err := optString(vb, "snapshot_id", 36)
	if err != nil {
		return 0, nil, err
	}
	srcID, err := optString(vb, "source_volid", 36)
	if err != nil {
		return 0, nil, err
	}
	req := createVolumeReq{AZ: "nova", VolumeType: "__DEFAULT__"}
	if snapID != nil {
		req.SnapshotID = *snapID
	}
	if srcID != nil {
		req.SourceVolID = *srcID
	}
	// With a snapshot or source the size may be left out (the source's).
	raw, present := vb["size"]
	if present || (req.SnapshotID == "" && req.SourceVolID == "") {
		if req.Size, err = parseSize(raw, present); err != nil {
			return 0, nil, err
		}
	}
	if req.Name, err = optString(vb, "name", 255); err != nil {
		return 0, nil, err
	}
	if req.Description, err = optString(vb, "description", 255); err != nil {
		return 0, nil, err
	}
	if req.Metadata, err = stringMap(vb, "metadata"); err != nil {
		return 0, nil, err
	}
	az, err := optString(vb, "availability_zone", 255)
	if err != nil {
		return 0, nil, err
	}
	if az != nil && *az != "nova" {
		return 0, nil, badRequest("Invalid input received: Availability zone '%s' is invalid.", *az)
	}
	vt, err := optString(vb, "volume_type", 255)
	if err != nil {
		return 0, nil, err
	}
	if vt != nil && *vt != "__DEFAULT__" && *vt != s.stableUUID("volume-type-default") {
		return 0, nil, notFound("Volume type with name %s could not be found.", *vt)
	}
	if raw, ok := vb["multiattach"]; ok {
		if err := json.Unmarshal(raw, &req.Multiattach); err != nil {
			return 0, nil, badRequest("Invalid input for field/attribute multiattach. Value: %s. %s is not of type 'boolean'", raw, raw)
		}
	}
	v, err := s.model.createVolume(s.clock.Now(), q.caller, req)
	if err != nil {
		return 0, nil, err
	}
	s.seedVolumeData(v.volume)
	return http.StatusAccepted, map[string]any{"volume": s.renderVolume(q, v, true)}, nil
}

func (s *Sim) volumeGet(q *request) (int, any, error) {
	v, err := s.model.getVolume(s.clock.Now(), q.caller, q.r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"volume": s.renderVolume(q, v, false)}, nil
}

// memberVolumeFilters is Cinder's resource_filters.json for volumes, plus
// paging and sorting parameters.
var memberVolumeFilters = map[string]bool{"name": true, "status": true, "metadata": true, "bootable": true,
	"migration_status": true, "availability_zone": true, "group_id": true, "size": true, "created_at": true,
	"updated_at": true, "limit": true, "marker": true, "offset": true, "sort": true, "sort_key": true,
	"sort_dir": true, "with_count": true, "all_tenants": true, "project_id": true}

func (s *Sim) volumeList(detail bool) handler {
	return func(q *request) (int, any, error) {
		qv := q.r.URL.Query()
		if !q.caller.Admin {
			var bad []string
			for k := range qv {
				if !memberVolumeFilters[k] {
					bad = append(bad, k)
				}
			}
			if len(bad) > 0 {
				return 0, nil, badRequest("Invalid input received: Invalid filter keys: %s", strings.Join(bad, ", "))
			}
		}
		f := volumeFilter{Name: qv.Get("name"), Status: qv.Get("status")}
		if at := qv.Get("all_tenants"); at != "" && at != "0" && !strings.EqualFold(at, "false") {
			f.AllTenants = true
			f.ProjectID = qv.Get("project_id")
		}
		if raw := qv.Get("metadata"); raw != "" {
			md, err := parsePyDict(raw)
			if err != nil {
				return 0, nil, badRequest("Invalid input received: Invalid metadata filter %s", raw)
			}
			f.Metadata = md
		}
		marker, limit, err := pageParams(qv)
		if err != nil {
			return 0, nil, err
		}
		all := s.model.listVolumes(s.clock.Now(), q.caller, f)
		page, next, pageNo, err := paginate(all, func(v volumeView) string { return v.ID }, marker, limit)
		if err != nil {
			return 0, nil, err
		}
		if st := s.faults.pageStatus(OpVolumeList, pageNo); st != 0 {
			return 0, nil, &injected{status: st}
		}
		items := make([]any, 0, len(page))
		for _, v := range page {
			if detail {
				items = append(items, s.renderVolume(q, v, false))
			} else {
				items = append(items, map[string]any{"id": v.ID, "links": s.volumeLinks(q, v.ProjectID, v.ID), "name": strPtr(v.Name)})
			}
		}
		out := map[string]any{"volumes": items}
		if next {
			out["volumes_links"] = []any{map[string]any{"href": s.nextLink(q.r, page[len(page)-1].ID, limit), "rel": "next"}}
		}
		if qv.Get("with_count") == "true" && q.ver.atLeast(3, 45) {
			out["count"] = len(all)
		}
		return http.StatusOK, out, nil
	}
}

// injected is a fault-injected error answered with its status.
type injected struct{ status int }

func (e *injected) Error() string { return faultMessage(e.status) }

// parsePyDict parses Cinder's metadata filter, a Python dict literal such
// as {'k':'v', 'k2':'v2'} (JSON objects work too).
func parsePyDict(s string) (map[string]string, error) {
	out := map[string]string{}
	if err := json.Unmarshal([]byte(s), &out); err == nil {
		return out, nil
	}
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "{") || !strings.HasSuffix(s, "}") {
		return nil, fmt.Errorf("not a dict: %q", s)
	}
	body := s[1 : len(s)-1]
	var toks []string
	for i := 0; i < len(body); {
		c := body[i]
		switch {
		case c == ' ' || c == ',' || c == ':':
			toks = append(toks, string(c))
			i++
		case c == '\'' || c == '"':
			j := strings.IndexByte(body[i+1:], c)
			if j < 0 {
				return nil, fmt.Errorf("unterminated string in %q", s)
			}
			toks = append(toks, "s"+body[i+1:i+1+j])
			i += j + 2
		default:
			return nil, fmt.Errorf("unexpected %q in %q", c, s)
		}
	}
	var strs []string
	var seps []string
	for _, t := range toks {
		switch {
		case t == " ":
		case strings.HasPrefix(t, "s"):
			strs = append(strs, t[1:])
		default:
			seps = append(seps, t)
		}
	}
	if len(strs)%2 != 0 {
		return nil, fmt.Errorf("odd number of items in %q", s)
	}
	for i := 0; i+1 < len(strs); i += 2 {
		out[strs[i]] = strs[i+1]
	}
	_ = seps
	return out, nil
}

func (s *Sim) volumeUpdate(q *request) (int, any, error) {
	body, err := decodeBody(q.r)
	if err != nil {
		return 0, nil, err
	}
	vb, err := object(body, "volume")
	if err != nil {
		return 0, nil, err
	}
	name, err := optString(vb, "name", 255)
	if err != nil {
		return 0, nil, err
	}
	desc, err := optString(vb, "description", 255)
	if err != nil {
		return 0, nil, err
	}
	md, err := stringMap(vb, "metadata")
	if err != nil {
		return 0, nil, err
	}
	v, err := s.model.updateVolume(s.clock.Now(), q.caller, q.r.PathValue("id"), name, desc, md)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"volume": s.renderVolume(q, v, false)}, nil
}

func (s *Sim) volumeDelete(q *request) (int, any, error) {
	id := q.r.PathValue("id")
	if err := s.model.deleteVolume(s.clock.Now(), q.caller, id); err != nil {
		return 0, nil, err
	}
	s.removeBackingFile(id)
	return http.StatusAccepted, nil, nil
}

func (s *Sim) metadataGet(q *request) (int, any, error) {
	v, err := s.model.getVolume(s.clock.Now(), q.caller, q.r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"metadata": v.Metadata}, nil
}

func (s *Sim) metadataSet(replace bool) handler {
	return func(q *request) (int, any, error) {
		body, err := decodeBody(q.r)
		if err != nil {
			return 0, nil, err
		}
		if _, ok := body["metadata"]; !ok {
			return 0, nil, badRequest("Malformed request body")
		}
		md, err := stringMap(body, "metadata")
		if err != nil {
			return 0, nil, err
		}
		out, err := s.model.setMetadata(s.clock.Now(), q.caller, q.r.PathValue("id"), md, replace)
		if err != nil {
			return 0, nil, err
		}
		if replace {
			out = md
			if out == nil {
				out = map[string]string{}
			}
		}
		return http.StatusOK, map[string]any{"metadata": out}, nil
	}
}

func (s *Sim) metadataKeyGet(q *request) (int, any, error) {
	id, key := q.r.PathValue("id"), q.r.PathValue("key")
	v, err := s.model.getVolume(s.clock.Now(), q.caller, id)
	if err != nil {
		return 0, nil, err
	}
	val, ok := v.Metadata[key]
	if !ok {
		return 0, nil, notFound("Volume %s has no metadata with key %s.", id, key)
	}
	return http.StatusOK, map[string]any{"meta": map[string]string{key: val}}, nil
}

func (s *Sim) metadataKeyPut(q *request) (int, any, error) {
	id, key := q.r.PathValue("id"), q.r.PathValue("key")
	body, err := decodeBody(q.r)
	if err != nil {
		return 0, nil, err
	}
	md, err := stringMap(body, "meta")
	if err != nil {
		return 0, nil, err
	}
	if _, ok := md[key]; !ok || len(md) != 1 {
		return 0, nil, badRequest("Request body and URI mismatch")
	}
	if _, err := s.model.setMetadata(s.clock.Now(), q.caller, id, md, false); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"meta": md}, nil
}

func (s *Sim) metadataKeyDelete(q *request) (int, any, error) {
	if err := s.model.deleteMetadataKey(s.clock.Now(), q.caller, q.r.PathValue("id"), q.r.PathValue("key")); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, nil, nil
}

// volumeAction dispatches POST /volumes/{id}/action.
func (s *Sim) volumeAction(q *request) (int, any, error) {
	body, err := decodeBody(q.r)
	if err != nil {
		return 0, nil, err
	}
	if len(body) != 1 {
		return 0, nil, badRequest("Malformed request body")
	}
	var name string
	var raw json.RawMessage
	for k, v := range body {
		name, raw = k, v
	}
	args := map[string]json.RawMessage{}
	if string(raw) != "null" && len(raw) > 0 {
		_ = json.Unmarshal(raw, &args)
	}
	str := func(k string) string {
		var v string
		_ = json.Unmarshal(args[k], &v)
		return v
	}
	now := s.clock.Now()
	id := q.r.PathValue("id")
	c := q.caller
	switch name {
	case "os-reserve":
		err = s.model.reserve(now, c, id)
	case "os-unreserve":
		err = s.model.unreserve(now, c, id)
	case "os-begin_detaching":
		err = s.model.beginDetaching(now, c, id)
	case "os-roll_detaching":
		err = s.model.rollDetaching(now, c, id)
	case "os-attach":
		var a attachment
		a, err = s.model.attachAction(now, c, id, attachReq{InstanceID: str("instance_uuid"), HostName: str("host_name"),
			Mountpoint: str("mountpoint"), Mode: str("mode")})
		if err == nil {
			s.events.add(Event{Time: now, Kind: EventCinderAttach, VolumeID: id, InstanceID: a.InstanceID,
				Host: a.HostName, AttachmentID: a.ID, Mode: a.Mode, Device: a.Mountpoint})
		}
	case "os-detach", "os-force_detach":
		force := name == "os-force_detach"
		var gone []attachment
		gone, err = s.model.detachAction(now, c, id, str("attachment_id"), force)
		kind := EventCinderDetach
		if force {
			kind = EventForceDetach
		}
		for _, a := range gone {
			s.events.add(Event{Time: now, Kind: kind, VolumeID: id, InstanceID: a.InstanceID, Host: a.HostName,
				AttachmentID: a.ID})
		}
		if err == nil && len(gone) == 0 {
			s.events.add(Event{Time: now, Kind: kind, VolumeID: id})
		}
	case "os-reset_status":
		var gone []attachment
		gone, err = s.model.resetStatus(now, c, id, resetReq{Status: str("status"), AttachStatus: str("attach_status")})
		if err == nil {
			s.events.add(Event{Time: now, Kind: EventResetStatus, VolumeID: id,
				Detail: fmt.Sprintf("status=%s attach_status=%s dropped_attachments=%d", str("status"), str("attach_status"), len(gone))})
		}
	case "os-extend":
		var n json.Number
		if e := json.Unmarshal(args["new_size"], &n); e != nil {
			var sv string
			if e2 := json.Unmarshal(args["new_size"], &sv); e2 != nil || !digitsRE.MatchString(sv) {
				return 0, nil, badRequest("Invalid input for field/attribute new_size. Value: %s. %s is not of type 'integer', 'string'", args["new_size"], args["new_size"])
			}
			n = json.Number(sv)
		}
		size, e := strconv.Atoi(n.String())
		if e != nil || size < 1 {
			return 0, nil, badRequest("Invalid input for field/attribute new_size. Value: %s. %s is less than the minimum of 1", n, n)
		}
		err = s.model.extend(now, c, id, size, q.ver.atLeast(3, 42))
		if err == nil {
			s.growBackingFile(id, size)
		}
	default:
		return 0, nil, badRequest("There is no such action: %s", name)
	}
	if err != nil {
		return 0, nil, err
	}
	return http.StatusAccepted, nil, nil
}

// ---- attachments API ----

func (s *Sim) requireVersion(q *request, major, minor int) error {
	if !q.ver.atLeast(major, minor) {
		return notFound("The resource could not be found.")
	}
	return nil
}

func renderAttachment(a attachment, detail bool) map[string]any {
	out := map[string]any{"id": a.ID, "instance": nullIfEmpty(a.InstanceID), "status": a.Status, "volume_id": a.VolumeID}
	if !detail {
		return out
	}
	at, dt := "", ""
	if a.AttachedAt != nil {
		at = cinderTime(*a.AttachedAt)
	}
	if a.DetachedAt != nil {
		dt = cinderTime(*a.DetachedAt)
	}
	ci := map[string]any{}
	for k, v := range a.ConnectionInfo {
		ci[k] = v
	}
	out["attach_mode"] = a.Mode
	out["attached_at"] = at
	out["detached_at"] = dt
	out["connection_info"] = ci
	return out
}

func (s *Sim) attachmentCreate(q *request) (int, any, error) {
	if err := s.requireVersion(q, 3, 27); err != nil {
		return 0, nil, err
	}
	body, err := decodeBody(q.r)
	if err != nil {
		return 0, nil, err
	}
	ab, err := object(body, "attachment")
	if err != nil {
		return 0, nil, err
	}
	var volumeID, instanceID, mode string
	_ = json.Unmarshal(ab["volume_uuid"], &volumeID)
	_ = json.Unmarshal(ab["instance_uuid"], &instanceID)
	_ = json.Unmarshal(ab["mode"], &mode)
	if volumeID == "" {
		return 0, nil, badRequest("Must specify 'volume_uuid' to create attachment.")
	}
	if instanceID == "" {
		return 0, nil, badRequest("Must specify 'instance_uuid' to create attachment.")
	}
	if mode != "" && (!q.ver.atLeast(3, 54) || (mode != "rw" && mode != "ro")) {
		return 0, nil, badRequest("Invalid input for field/attribute mode. Value: %s. '%s' is not one of ['rw', 'ro']", mode, mode)
	}
	var connector map[string]any
	if raw, ok := ab["connector"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &connector); err != nil {
			return 0, nil, badRequest("Invalid input for field/attribute connector. Value: %s. %s is not of type 'object', 'null'", raw, raw)
		}
	}
	a, err := s.model.attachmentCreate(s.clock.Now(), q.caller, volumeID, instanceID, connector, mode)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"attachment": renderAttachment(a, true)}, nil
}

func (s *Sim) attachmentList(detail bool) handler {
	return func(q *request) (int, any, error) {
		if err := s.requireVersion(q, 3, 27); err != nil {
			return 0, nil, err
		}
		qv := q.r.URL.Query()
		f := attachmentFilter{VolumeID: qv.Get("volume_id"), InstanceID: qv.Get("instance_id"), Status: qv.Get("status")}
		if f.Status == "" {
			f.Status = qv.Get("attach_status")
		}
		if at := qv.Get("all_tenants"); at != "" && at != "0" && !strings.EqualFold(at, "false") {
			f.AllTenants = true
		}
		marker, limit, err := pageParams(qv)
		if err != nil {
			return 0, nil, err
		}
		all := s.model.listAttachments(s.clock.Now(), q.caller, f)
		page, next, pageNo, err := paginate(all, func(a attachment) string { return a.ID }, marker, limit)
		if err != nil {
			return 0, nil, err
		}
		if st := s.faults.pageStatus(OpAttachmentList, pageNo); st != 0 {
			return 0, nil, &injected{status: st}
		}
		items := make([]any, 0, len(page))
		for _, a := range page {
			items = append(items, renderAttachment(a, detail))
		}
		out := map[string]any{"attachments": items}
		if next {
			out["attachments_links"] = []any{map[string]any{"href": s.nextLink(q.r, page[len(page)-1].ID, limit), "rel": "next"}}
		}
		return http.StatusOK, out, nil
	}
}

func (s *Sim) attachmentGet(q *request) (int, any, error) {
	if err := s.requireVersion(q, 3, 27); err != nil {
		return 0, nil, err
	}
	a, err := s.model.getAttachment(s.clock.Now(), q.caller, q.r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"attachment": renderAttachment(a, true)}, nil
}

func (s *Sim) attachmentUpdate(q *request) (int, any, error) {
	if err := s.requireVersion(q, 3, 27); err != nil {
		return 0, nil, err
	}
	body, err := decodeBody(q.r)
	if err != nil {
		return 0, nil, err
	}
	ab, err := object(body, "attachment")
	if err != nil {
		return 0, nil, err
	}
	var connector map[string]any
	_ = json.Unmarshal(ab["connector"], &connector)
	if len(connector) == 0 {
		return 0, nil, badRequest("Must specify 'connector' to update attachment.")
	}
	a, err := s.model.attachmentUpdate(s.clock.Now(), q.caller, q.r.PathValue("id"), connector)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"attachment": renderAttachment(a, true)}, nil
}

func (s *Sim) attachmentDelete(q *request) (int, any, error) {
	if err := s.requireVersion(q, 3, 27); err != nil {
		return 0, nil, err
	}
	now := s.clock.Now()
	a, err := s.model.attachmentDelete(now, q.caller, q.r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	s.events.add(Event{Time: now, Kind: EventCinderDetach, VolumeID: a.VolumeID, InstanceID: a.InstanceID,
		Host: a.HostName, AttachmentID: a.ID})
	return http.StatusOK, map[string]any{"attachments": []any{}}, nil
}

func (s *Sim) attachmentAction(q *request) (int, any, error) {
	body, err := decodeBody(q.r)
	if err != nil {
		return 0, nil, err
	}
	if _, ok := body["os-complete"]; !ok || len(body) != 1 {
		for k := range body {
			return 0, nil, badRequest("There is no such action: %s", k)
		}
		return 0, nil, badRequest("Malformed request body")
	}
	if err := s.requireVersion(q, 3, 44); err != nil {
		return 0, nil, err
	}
	now := s.clock.Now()
	a, err := s.model.attachmentComplete(now, q.caller, q.r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	s.events.add(Event{Time: now, Kind: EventCinderAttach, VolumeID: a.VolumeID, InstanceID: a.InstanceID,
		Host: a.HostName, AttachmentID: a.ID, Mode: "rw", Device: a.Mountpoint})
	return http.StatusNoContent, nil, nil
}
