package simcloud

import (
	"maps"
	"slices"
	"strings"
	"time"
)

// Cinder snapshots in the model: a point-in-time copy of a volume. Like
// volumes they go creating → available and deleting → gone on the model's
// clock (the volume create and delete latencies). The data is copied by the
// HTTP layer (the model does no I/O).

// Cinder snapshot statuses used by the simulator.
const (
	snapCreating  = "creating"
	snapAvailable = "available"
	snapDeleting  = "deleting"
	snapError     = "error"
)

type snapshot struct {
	ID          string
	Name        *string
	Description *string
	VolumeID    string
	Size        int // the volume's size when the snapshot was taken
	Status      string
	ProjectID   string
	UserID      string
	Metadata    map[string]string
	CreatedAt   time.Time
	UpdatedAt   *time.Time

	pendingTo string // "available" or "deleted"
	pendingAt time.Time
}

func cloneSnapshot(s *snapshot) snapshot {
	c := *s
	c.Metadata = maps.Clone(s.Metadata)
	return c
}

func errSnapshotNotFound(id string) error { return notFound("Snapshot %s could not be found.", id) }

// tickSnapshotsLocked applies the snapshots' due transitions.
func (m *model) tickSnapshotsLocked(now time.Time) {
	for id, s := range m.snapshots {
		if s.pendingTo == "" || now.Before(s.pendingAt) {
			continue
		}
		if s.pendingTo == "deleted" {
			delete(m.snapshots, id)
			continue
		}
		at := s.pendingAt
		s.Status, s.UpdatedAt, s.pendingTo = s.pendingTo, &at, ""
	}
}

func (m *model) snapshotLocked(c caller, id string) (*snapshot, error) {
	s, ok := m.snapshots[id]
	if !ok || (!c.Admin && s.ProjectID != c.ProjectID) {
		return nil, errSnapshotNotFound(id)
	}
	return s, nil
}

// hasSnapshotsLocked: Cinder refuses to delete a volume that has snapshots.
func (m *model) hasSnapshotsLocked(volumeID string) bool {
	for _, s := range m.snapshots {
		if s.VolumeID == volumeID {
			return true
		}
	}
	return false
}

type createSnapshotReq struct {
	VolumeID    string
	Name        *string
	Description *string
	Force       bool
	// InUseOK: microversion 3.66 and later snapshot an in-use volume
	// without force.
	InUseOK  bool
	Metadata map[string]string
}

// createSnapshot checks the volume as Cinder's API does
// (_create_snapshot_in_db_validate) and records a creating snapshot.
func (m *model) createSnapshot(now time.Time, c caller, r createSnapshotReq) (snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tickLocked(now)
	v, err := m.volumeLocked(c, r.VolumeID)
	if err != nil {
		return snapshot{}, err
	}
	switch {
	case v.Status == volAvailable:
	case v.Status == volInUse && (r.Force || r.InUseOK):
	case r.Force || r.InUseOK:
		return snapshot{}, badRequest("Invalid volume: Volume %s status must be available or in-use, but current status is: %s.", v.ID, v.Status)
	default:
		return snapshot{}, badRequest("Invalid volume: Volume %s status must be available, but current status is: %s.", v.ID, v.Status)
	}
	s := &snapshot{
		ID: m.ids.uuid(), Name: r.Name, Description: r.Description, VolumeID: v.ID, Size: v.Size,
		Status: snapCreating, ProjectID: v.ProjectID, UserID: c.UserID, Metadata: r.Metadata, CreatedAt: now,
		pendingTo: snapAvailable, pendingAt: now.Add(m.lat.Create),
	}
	if s.Metadata == nil {
		s.Metadata = map[string]string{}
	}
	m.snapshots[s.ID] = s
	return cloneSnapshot(s), nil
}

// failSnapshot puts a snapshot whose data could not be copied in error.
func (m *model) failSnapshot(now time.Time, id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.snapshots[id]; ok {
		t := now
		s.Status, s.UpdatedAt, s.pendingTo = snapError, &t, ""
	}
}

// failVolume puts a volume whose initial data could not be copied in error.
func (m *model) failVolume(now time.Time, id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.volumes[id]; ok {
		v.Status, v.pendingTo = volError, ""
		m.touch(v, now)
	}
}

func (m *model) getSnapshot(now time.Time, c caller, id string) (snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tickLocked(now)
	s, err := m.snapshotLocked(c, id)
	if err != nil {
		return snapshot{}, err
	}
	return cloneSnapshot(s), nil
}

type snapshotFilter struct {
	AllTenants bool
	ProjectID  string // only with AllTenants
	Name       string
	Status     string
	VolumeID   string
}

// listSnapshots sorts like Cinder (created_at desc, id desc).
func (m *model) listSnapshots(now time.Time, c caller, f snapshotFilter) []snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tickLocked(now)
	var out []snapshot
	for _, s := range m.snapshots {
		switch {
		case c.Admin && f.AllTenants:
			if f.ProjectID != "" && s.ProjectID != f.ProjectID {
				continue
			}
		case s.ProjectID != c.ProjectID:
			continue
		}
		if (f.Name != "" && (s.Name == nil || *s.Name != f.Name)) || (f.Status != "" && s.Status != f.Status) ||
			(f.VolumeID != "" && s.VolumeID != f.VolumeID) {
			continue
		}
		out = append(out, cloneSnapshot(s))
	}
	slices.SortFunc(out, func(a, b snapshot) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	return out
}

// deleteSnapshot starts deleting: available or error → deleting → gone
// after the delete latency.
func (m *model) deleteSnapshot(now time.Time, c caller, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tickLocked(now)
	s, err := m.snapshotLocked(c, id)
	if err != nil {
		return err
	}
	if s.Status != snapAvailable && s.Status != snapError {
		return badRequest("Invalid snapshot: Volume Snapshot status must be available or error and must not be part of a group.")
	}
	t := now
	s.Status, s.UpdatedAt = snapDeleting, &t
	s.pendingTo, s.pendingAt = "deleted", now.Add(m.lat.Delete)
	return nil
}

// checkVolumeSourceLocked validates a create's snapshot_id or source_volid
// as Cinder's create flow does, and sets the size from the source when none
// was given.
func (m *model) checkVolumeSourceLocked(c caller, r *createVolumeReq) error {
	switch {
	case r.SnapshotID != "" && r.SourceVolID != "":
		return badRequest("Invalid input received: Cannot create a volume from both a snapshot and a source volume.")
	case r.SnapshotID != "":
		s, err := m.snapshotLocked(c, r.SnapshotID)
		if err != nil {
			return err
		}
		if s.Status != snapAvailable {
			return badRequest("Invalid snapshot: Originating snapshot status must be one of 'available' values")
		}
		if r.Size == 0 {
			r.Size = s.Size
		}
		if r.Size < s.Size {
			return badRequest("Invalid input received: Volume size '%d'GB cannot be smaller than the snapshot size %dGB. They must be >= original snapshot size.", r.Size, s.Size)
		}
	case r.SourceVolID != "":
		v, err := m.volumeLocked(c, r.SourceVolID)
		if err != nil {
			return err
		}
		if v.Status != volAvailable && v.Status != volInUse {
			return badRequest("Invalid volume: Unable to create a volume from an originating source volume when its status is not one of 'available', 'in-use' values")
		}
		if r.Size == 0 {
			r.Size = v.Size
		}
		if r.Size < v.Size {
			return badRequest("Invalid input received: Volume size '%d'GB cannot be smaller than original volume size  %dGB. They must be >= original volume size.", r.Size, v.Size)
		}
	}
	if r.Size < 1 {
		return badRequest("Invalid input received: Volume size 'None' must be an integer and greater than 0")
	}
	return nil
}
