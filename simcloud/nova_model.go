package simcloud

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Nova's half of the model: servers and block-device mappings, and the
// steps of Nova's volume attach/detach as real Nova performs them against
// Cinder (attachment create → update → complete; begin_detaching →
// attachment delete). The worker in nova.go runs the steps with latency and
// calls the compute backends between them.

const (
	taskAttaching = "attaching_volume"
	taskDetaching = "detaching_volume"
)

func (m *model) addServer(now time.Time, s *server) (server, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.ID == "" {
		s.ID = m.ids.uuid()
	}
	if _, dup := m.servers[s.ID]; dup {
		return server{}, fmt.Errorf("instance %s already exists", s.ID)
	}
	m.serverSeq++
	s.InstanceName = fmt.Sprintf("instance-%08x", m.serverSeq)
	if s.Name == "" {
		s.Name = fmt.Sprintf("vm-%d", m.serverSeq)
	}
	s.CreatedAt, s.UpdatedAt = now, now
	m.servers[s.ID] = s
	return cloneServer(s), nil
}

func cloneServer(s *server) server {
	c := *s
	c.BDMs = make([]*bdm, len(s.BDMs))
	for i, b := range s.BDMs {
		bb := *b
		c.BDMs[i] = &bb
	}
	return c
}

// serverLocked finds a live server the caller may see.
func (m *model) serverLocked(c caller, id string) (*server, error) {
	s, ok := m.servers[id]
	if !ok || s.Deleted || (!c.Admin && s.ProjectID != c.ProjectID) {
		return nil, errInstanceNotFound(id)
	}
	return s, nil
}

func (m *model) getServer(now time.Time, c caller, id string) (server, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tickLocked(now)
	s, err := m.serverLocked(c, id)
	if err != nil {
		return server{}, err
	}
	return cloneServer(s), nil
}

type serverFilter struct {
	AllTenants bool
	ProjectID  string
	Host       string
	Name       string
	Status     string
}

// listServers sorts like Nova (created_at desc, id desc).
func (m *model) listServers(now time.Time, c caller, f serverFilter) []server {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []server
	for _, s := range m.servers {
		if s.Deleted {
			continue
		}
		if !(c.Admin && f.AllTenants) && s.ProjectID != c.ProjectID {
			continue
		}
		if f.ProjectID != "" && s.ProjectID != f.ProjectID {
			continue
		}
		if f.Host != "" && s.Host != f.Host {
			continue
		}
		if f.Name != "" && !strings.Contains(s.Name, f.Name) {
			continue
		}
		if f.Status != "" && !strings.EqualFold(s.Status, f.Status) {
			continue
		}
		out = append(out, cloneServer(s))
	}
	slices.SortFunc(out, func(a, b server) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	return out
}

func (m *model) setServerStatus(now time.Time, id, status string) (server, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.servers[id]
	if !ok || s.Deleted {
		return server{}, fmt.Errorf("instance %s: %w", id, ErrNoSuchInstance)
	}
	if status == StatusDeleted {
		s.Deleted = true
	} else {
		s.Status = status
	}
	s.UpdatedAt = now
	return cloneServer(s), nil
}

// bdmFor returns a server's mapping of a volume.
func (s *server) bdmFor(volumeID string) *bdm {
	for _, b := range s.BDMs {
		if b.VolumeID == volumeID {
			return b
		}
	}
	return nil
}

func nextDevice(s *server) string {
	used := map[string]bool{}
	for _, b := range s.BDMs {
		used[b.Device] = true
	}
	for c := 'b'; c <= 'z'; c++ {
		d := "/dev/vd" + string(c)
		if !used[d] {
			return d
		}
	}
	return "/dev/vdz"
}

// novaAttachRequest is the synchronous part of POST
// /servers/{id}/os-volume_attachments: check the server and the volume,
// create the Cinder attachment (volume reserved) and the BDM.
func (m *model) novaAttachRequest(now time.Time, c caller, serverID, volumeID string, tag *string, dot bool) (server, bdm, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tickLocked(now)
	s, err := m.serverLocked(c, serverID)
	if err != nil {
		return server{}, bdm{}, err
	}
	if s.Status == "ERROR" {
		return server{}, bdm{}, conflict("Cannot 'attach_volume' instance %s while it is in vm_state error", s.ID)
	}
	if s.TaskState != nil {
		return server{}, bdm{}, conflict("Cannot 'attach_volume' instance %s while it is in task_state %s", s.ID, *s.TaskState)
	}
	v, err := m.volumeLocked(c, volumeID)
	if err != nil {
		return server{}, bdm{}, err
	}
	if s.bdmFor(volumeID) != nil {
		return server{}, bdm{}, badRequest("Invalid volume: volume %s already attached", volumeID)
	}
	a, err := m.attachmentCreateLocked(now, v, s.ID, nil, "")
	if err != nil {
		return server{}, bdm{}, err
	}
	b := &bdm{UUID: m.ids.uuid(), VolumeID: volumeID, AttachmentID: a.ID, Device: nextDevice(s),
		Tag: tag, DeleteOnTermination: dot, CreatedAt: now}
	s.BDMs = append(s.BDMs, b)
	if m.taskStates {
		ts := taskAttaching
		s.TaskState = &ts
	}
	s.UpdatedAt = now
	return cloneServer(s), *b, nil
}

// novaConnect is the compute manager's attachment_update with the host's
// connector. ok is false when the server, mapping or attachment vanished.
func (m *model) novaConnect(now time.Time, serverID, volumeID string) (Attachment, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tickLocked(now)
	s, b, a, ok := m.novaLookupLocked(serverID, volumeID)
	if !ok {
		return Attachment{}, false
	}
	m.attachmentUpdateLocked(now, a, map[string]any{
		"host": s.Host, "mountpoint": b.Device, "mode": "rw", "platform": "x86_64", "os_type": "linux",
		"multipath": false, "initiator": "iqn.2004-10.org.sim:" + s.Host,
	})
	v := m.volumes[volumeID]
	return Attachment{InstanceID: s.ID, InstanceName: s.InstanceName, VolumeID: volumeID, SizeGiB: v.Size,
		NodeDevDir: s.NodeDevDir}, true
}

func (m *model) novaLookupLocked(serverID, volumeID string) (*server, *bdm, *attachment, bool) {
	s, ok := m.servers[serverID]
	if !ok || s.Deleted {
		return nil, nil, nil, false
	}
	b := s.bdmFor(volumeID)
	if b == nil {
		return nil, nil, nil, false
	}
	a, ok := m.attachments[b.AttachmentID]
	if !ok {
		return nil, nil, nil, false
	}
	if _, ok := m.volumes[volumeID]; !ok {
		return nil, nil, nil, false
	}
	return s, b, a, true
}

// novaAttachDone completes (ok) or rolls back (!ok) an attach.
func (m *model) novaAttachDone(now time.Time, serverID, volumeID string, success bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tickLocked(now)
	s, b, a, ok := m.novaLookupLocked(serverID, volumeID)
	if s != nil {
		s.TaskState = nil
		s.UpdatedAt = now
	}
	if !ok {
		return
	}
	if success {
		m.attachmentCompleteLocked(now, a)
		return
	}
	m.attachmentDeleteLocked(now, a)
	s.BDMs = slices.DeleteFunc(s.BDMs, func(x *bdm) bool { return x == b })
}

// novaDetachRequest is the synchronous part of DELETE
// /servers/{id}/os-volume_attachments/{volume}: 404 without a mapping,
// then Cinder begin_detaching.
func (m *model) novaDetachRequest(now time.Time, c caller, serverID, volumeID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tickLocked(now)
	s, err := m.serverLocked(c, serverID)
	if err != nil {
		return err
	}
	if s.TaskState != nil {
		return conflict("Cannot 'detach_volume' instance %s while it is in task_state %s", s.ID, *s.TaskState)
	}
	b := s.bdmFor(volumeID)
	if b == nil {
		return notFound("Instance %s is not attached to volume %s", serverID, volumeID)
	}
	v, ok := m.volumes[volumeID]
	a, aok := m.attachments[b.AttachmentID]
	if !ok || !aok || v.Status != volInUse || a.Status != attAttached {
		return badRequest("%s", msgDetachState)
	}
	v.Status = volDetaching
	m.touch(v, now)
	if m.taskStates {
		ts := taskDetaching
		s.TaskState = &ts
	}
	s.UpdatedAt = now
	return nil
}

// novaDetachInfo returns what the backends need to detach.
func (m *model) novaDetachInfo(serverID, volumeID string) (Attachment, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.servers[serverID]
	if !ok {
		return Attachment{}, false
	}
	b := s.bdmFor(volumeID)
	v, vok := m.volumes[volumeID]
	if b == nil || !vok {
		return Attachment{}, false
	}
	return Attachment{InstanceID: s.ID, InstanceName: s.InstanceName, VolumeID: volumeID, SizeGiB: v.Size,
		NodeDevDir: s.NodeDevDir}, true
}

// novaDetachDone finishes a detach: on success the Cinder attachment is
// deleted (as the Nova service, so the guard does not apply) and the BDM
// destroyed; on failure Nova rolls the volume back to in-use.
func (m *model) novaDetachDone(now time.Time, serverID, volumeID string, success bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tickLocked(now)
	s, ok := m.servers[serverID]
	if !ok {
		return
	}
	s.TaskState = nil
	s.UpdatedAt = now
	b := s.bdmFor(volumeID)
	if b == nil {
		return
	}
	if !success {
		if v, ok := m.volumes[volumeID]; ok && v.Status == volDetaching {
			v.Status = volInUse
			m.touch(v, now)
		}
		return
	}
	if a, ok := m.attachments[b.AttachmentID]; ok {
		m.attachmentDeleteLocked(now, a)
	}
	s.BDMs = slices.DeleteFunc(s.BDMs, func(x *bdm) bool { return x == b })
}

// forgetMappings drops a server's BDMs for volumeID (all when empty)
// without touching Cinder or the backends: Nova has lost track.
func (m *model) forgetMappings(serverID, volumeID string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.servers[serverID]
	if !ok {
		return 0, fmt.Errorf("instance %s: %w", serverID, ErrNoSuchInstance)
	}
	n := len(s.BDMs)
	s.BDMs = slices.DeleteFunc(s.BDMs, func(b *bdm) bool { return volumeID == "" || b.VolumeID == volumeID })
	return n - len(s.BDMs), nil
}

// serverBDMs returns a server's mappings for the Nova API.
func (m *model) serverBDMs(now time.Time, c caller, serverID string) ([]bdm, server, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tickLocked(now)
	s, err := m.serverLocked(c, serverID)
	if err != nil {
		return nil, server{}, err
	}
	out := make([]bdm, 0, len(s.BDMs))
	for _, b := range s.BDMs {
		out = append(out, *b)
	}
	return out, cloneServer(s), nil
}
