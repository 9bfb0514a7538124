package simcloud

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strings"
)

// Cinder v3 snapshot handlers, and the data behind snapshots and volumes
// created from them: a snapshot copies the volume's backing file
// (SnapshotFile), a volume created from a snapshot or cloned from a volume
// starts with a copy of that file. Copies are sparse (reflink, or
// copy_file_range over the data extents).

// renderSnapshot is Cinder's snapshot view (the summary and detailed views
// are the same for snapshots) at the request's microversion.
func renderSnapshot(q *request, sn snapshot) map[string]any {
	md := map[string]string{}
	for k, v := range sn.Metadata {
		md[k] = v
	}
	progress := "0%"
	if sn.Status == snapAvailable {
		progress = "100%"
	}
	out := map[string]any{
		"id":          sn.ID,
		"created_at":  cinderTime(sn.CreatedAt),
		"updated_at":  cinderTimePtr(sn.UpdatedAt),
		"name":        strPtr(sn.Name),
		"description": strPtr(sn.Description),
		"volume_id":   sn.VolumeID,
		"status":      sn.Status,
		"size":        sn.Size,
		"metadata":    md,
		"os-extended-snapshot-attributes:progress":   progress,
		"os-extended-snapshot-attributes:project_id": sn.ProjectID,
	}
	if q.ver.atLeast(3, 14) {
		out["group_snapshot_id"] = nil
	}
	if q.ver.atLeast(3, 41) {
		out["user_id"] = sn.UserID
	}
	if q.ver.atLeast(3, 65) {
		out["consumes_quota"] = true
	}
	return out
}

// parseForce reads "force" as Cinder's strutils.bool_from_string(strict)
// does: a JSON boolean or a boolean-like string.
func parseForce(raw json.RawMessage, present bool) (bool, error) {
	if !present || string(raw) == "null" {
		return false, nil
	}
	var b bool
	if err := json.Unmarshal(raw, &b); err == nil {
		return b, nil
	}
	var str string
	if err := json.Unmarshal(raw, &str); err == nil {
		switch strings.ToLower(strings.TrimSpace(str)) {
		case "1", "t", "true", "on", "y", "yes":
			return true, nil
		case "0", "f", "false", "off", "n", "no":
			return false, nil
		}
	}
	return false, badRequest("Invalid input for field/attribute force. Value: %s. %s is not of type 'boolean', 'string'", raw, raw)
}

func (s *Sim) snapshotCreate(q *request) (int, any, error) {
	body, err := decodeBody(q.r)
	if err != nil {
		return 0, nil, err
	}
	sb, err := object(body, "snapshot")
	if err != nil {
		return 0, nil, err
	}
	volID, err := optString(sb, "volume_id", 36)
	if err != nil {
		return 0, nil, err
	}
	if volID == nil {
		return 0, nil, badRequest("Invalid input for field/attribute snapshot. Value: %s. 'volume_id' is a required property", body["snapshot"])
	}
	req := createSnapshotReq{VolumeID: *volID, InUseOK: q.ver.atLeast(3, 66)}
	if req.Name, err = optString(sb, "name", 255); err != nil {
		return 0, nil, err
	}
	if req.Description, err = optString(sb, "description", 255); err != nil {
		return 0, nil, err
	}
	if req.Metadata, err = stringMap(sb, "metadata"); err != nil {
		return 0, nil, err
	}
	raw, present := sb["force"]
	if req.Force, err = parseForce(raw, present); err != nil {
		return 0, nil, err
	}
	now := s.clock.Now()
	sn, err := s.model.createSnapshot(now, q.caller, req)
	if err != nil {
		return 0, nil, err
	}
	if err := sparseCopy(s.BackingFile(sn.VolumeID), s.SnapshotFile(sn.ID), int64(sn.Size)<<30); err != nil {
		s.log.Warn("simcloud: snapshot data", "snapshot", sn.ID, "volume", sn.VolumeID, "err", err)
		s.model.failSnapshot(now, sn.ID)
		sn.Status = snapError
	}
	return http.StatusAccepted, map[string]any{"snapshot": renderSnapshot(q, sn)}, nil
}

// seedVolumeData gives a volume created from a snapshot or a source volume
// its initial bytes; a failed copy puts the volume in error, as a failed
// create does in Cinder.
func (s *Sim) seedVolumeData(v volume) {
	var src string
	switch {
	case v.SnapshotID != "":
		src = s.SnapshotFile(v.SnapshotID)
	case v.SourceVolID != "":
		src = s.BackingFile(v.SourceVolID)
	default:
		return
	}
	if err := sparseCopy(src, s.BackingFile(v.ID), int64(v.Size)<<30); err != nil {
		s.log.Warn("simcloud: volume data from source", "volume", v.ID, "source", src, "err", err)
		s.model.failVolume(s.clock.Now(), v.ID)
	}
}

func (s *Sim) snapshotGet(q *request) (int, any, error) {
	sn, err := s.model.getSnapshot(s.clock.Now(), q.caller, q.r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"snapshot": renderSnapshot(q, sn)}, nil
}

// memberSnapshotFilters is Cinder's resource_filters.json for snapshots,
// plus paging and sorting parameters.
var memberSnapshotFilters = map[string]bool{"name": true, "status": true, "volume_id": true, "metadata": true,
	"availability_zone": true, "limit": true, "marker": true, "offset": true, "sort": true, "sort_key": true,
	"sort_dir": true, "with_count": true, "all_tenants": true, "project_id": true}

func (s *Sim) snapshotList(q *request) (int, any, error) {
	qv := q.r.URL.Query()
	if !q.caller.Admin {
		var bad []string
		for k := range qv {
			if !memberSnapshotFilters[k] {
				bad = append(bad, k)
			}
		}
		if len(bad) > 0 {
			return 0, nil, badRequest("Invalid input received: Invalid filter keys: %s", strings.Join(bad, ", "))
		}
	}
	f := snapshotFilter{Name: qv.Get("name"), Status: qv.Get("status"), VolumeID: qv.Get("volume_id")}
	if at := qv.Get("all_tenants"); at != "" && at != "0" && !strings.EqualFold(at, "false") {
		f.AllTenants = true
		f.ProjectID = qv.Get("project_id")
	}
	marker, limit, err := pageParams(qv)
	if err != nil {
		return 0, nil, err
	}
	all := s.model.listSnapshots(s.clock.Now(), q.caller, f)
	page, next, pageNo, err := paginate(all, func(sn snapshot) string { return sn.ID }, marker, limit)
	if err != nil {
		return 0, nil, err
	}
	if st := s.faults.pageStatus(OpSnapshotList, pageNo); st != 0 {
		return 0, nil, &injected{status: st}
	}
	items := make([]any, 0, len(page))
	for _, sn := range page {
		items = append(items, renderSnapshot(q, sn))
	}
	out := map[string]any{"snapshots": items}
	if next {
		out["snapshots_links"] = []any{map[string]any{"href": s.nextLink(q.r, page[len(page)-1].ID, limit), "rel": "next"}}
	}
	if qv.Get("with_count") == "true" && q.ver.atLeast(3, 45) {
		out["count"] = len(all)
	}
	return http.StatusOK, out, nil
}

func (s *Sim) snapshotDelete(q *request) (int, any, error) {
	id := q.r.PathValue("id")
	if err := s.model.deleteSnapshot(s.clock.Now(), q.caller, id); err != nil {
		return 0, nil, err
	}
	s.removeFile(s.SnapshotFile(id))
	return http.StatusAccepted, nil, nil
}

func (s *Sim) removeFile(path string) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("simcloud: remove data file", "path", path, "err", err)
	}
}
