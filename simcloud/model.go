package simcloud

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// The in-memory model: Keystone users and tokens, Cinder volumes and
// attachments, Nova servers and their block-device mappings. It does no I/O
// and never reads the clock itself: every method takes now, applies the
// timed transitions that are due (tickLocked) and then acts. The HTTP
// handlers and the Nova worker goroutines are thin callers.

// Cinder volume statuses used by the simulator.
const (
	volCreating   = "creating"
	volAvailable  = "available"
	volReserved   = "reserved"
	volAttaching  = "attaching"
	volInUse      = "in-use"
	volDetaching  = "detaching"
	volDeleting   = "deleting"
	volExtending  = "extending"
	volError      = "error"
	volErrDeletng = "error_deleting"
)

// Cinder attachment attach_status values.
const (
	attReserved  = "reserved"
	attAttaching = "attaching"
	attAttached  = "attached"
	attDetached  = "detached"
)

// validVolumeStatuses is what os-reset_status accepts.
var validVolumeStatuses = []string{"creating", "available", "deleting", "error", "error_deleting",
	"error_managing", "managing", "attaching", "in-use", "detaching", "maintenance",
	"restoring-backup", "error_restoring", "reserved", "awaiting-transfer", "backing-up",
	"error_backing-up", "error_extending", "downloading", "uploading", "retyping", "extending"}

type project struct {
	ID, Name string
}

type user struct {
	ID, Name, Password, ProjectID string
	Roles                         []role
}

type role struct{ ID, Name string }

type token struct {
	ID        string
	UserID    string
	ProjectID string
	Roles     []role
	Methods   []string
	AuditID   string
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// caller is who makes an API request, as Keystone's token says.
type caller struct {
	UserID    string
	ProjectID string
	Admin     bool
}

type volume struct {
	ID          string
	Name        *string
	Description *string
	Size        int
	Status      string
	ProjectID   string
	UserID      string
	AZ          string
	VolumeType  string
	Multiattach bool
	Metadata    map[string]string
	CreatedAt   time.Time
	UpdatedAt   *time.Time
	SnapshotID  string // created from this snapshot; "" for none
	SourceVolID string // cloned from this volume; "" for none

	// A timed transition (creating→available, deleting→gone,
	// extending→available) due at pendingAt.
	pendingTo   string
	pendingAt   time.Time
	pendingSize int
}

type attachment struct {
	ID             string
	VolumeID       string
	InstanceID     string // "" when none
	ProjectID      string
	Status         string // attach_status
	Mode           string // "null" until connected, then "rw"/"ro"
	HostName       string
	Mountpoint     string
	Connector      map[string]any
	ConnectionInfo map[string]any
	AttachedAt     *time.Time
	DetachedAt     *time.Time
	CreatedAt      time.Time
}

// bdm is a Nova block-device mapping of a volume to a server.
type bdm struct {
	UUID                string
	VolumeID            string
	AttachmentID        string
	Device              string
	Tag                 *string
	DeleteOnTermination bool
	CreatedAt           time.Time
}

type server struct {
	ID           string
	Name         string
	InstanceName string
	Host         string
	AZ           string
	NodeDevDir   string
	ProjectID    string
	UserID       string
	Status       string // ACTIVE, SHUTOFF, ERROR
	TaskState    *string
	Deleted      bool
	CreatedAt    time.Time
	UpdatedAt    time.Time
	BDMs         []*bdm
}

// volumeView is a consistent copy of a volume with its attached attachments.
type volumeView struct {
	volume
	Attached []attachment
}

type model struct {
	mu          sync.Mutex
	ids         *idGen
	tokenIDs    *idGen // tokens and audit ids, apart so auth does not shift resource ids
	lat         Latencies
	taskStates  bool
	projects    map[string]*project
	users       map[string]*user
	tokens      map[string]*token
	volumes     map[string]*volume
	attachments map[string]*attachment
	servers     map[string]*server
	serverSeq   int
	snapshots   map[string]*snapshot
}

func newModel(ids *idGen, lat Latencies, taskStates bool) *model {
	return &model{
		ids:         ids,
		tokenIDs:    ids,
		lat:         lat,
		taskStates:  taskStates,
		projects:    map[string]*project{},
		users:       map[string]*user{},
		tokens:      map[string]*token{},
		volumes:     map[string]*volume{},
		attachments: map[string]*attachment{},
		servers:     map[string]*server{},
		snapshots:   map[string]*snapshot{},
	}
}

// tickLocked applies every timed transition due at now.
func (m *model) tickLocked(now time.Time) {
	for id, v := range m.volumes {
		if v.pendingTo == "" || now.Before(v.pendingAt) {
			continue
		}
		at := v.pendingAt
		switch v.pendingTo {
		case "":
		case "deleted":
			delete(m.volumes, id)
			continue
		default:
			if v.pendingSize > 0 {
				v.Size = v.pendingSize
			}
			v.Status = v.pendingTo
		}
		v.UpdatedAt = &at
		v.pendingTo, v.pendingSize = "", 0
	}
	m.tickSnapshotsLocked(now)
}

func (m *model) touch(v *volume, now time.Time) {
	t := now
	v.UpdatedAt = &t
}

func cloneVolume(v *volume) volume {
	c := *v
	c.Metadata = maps.Clone(v.Metadata)
	return c
}

func (m *model) viewLocked(v *volume) volumeView {
	return viewOf(v, m.attachmentsOfLocked(v.ID))
}

// viewOf builds a volume's view from its attachments (oldest first).
func viewOf(v *volume, atts []*attachment) volumeView {
	vv := volumeView{volume: cloneVolume(v)}
	for _, a := range atts {
		if a.Status == attAttached {
			vv.Attached = append(vv.Attached, cloneAttachment(a))
		}
	}
	return vv
}

// attachmentsByVolumeLocked indexes every attachment by volume, oldest
// first, so a listing does not scan all attachments per volume.
func (m *model) attachmentsByVolumeLocked() map[string][]*attachment {
	by := map[string][]*attachment{}
	for _, a := range m.attachments {
		by[a.VolumeID] = append(by[a.VolumeID], a)
	}
	for _, l := range by {
		slices.SortFunc(l, func(a, b *attachment) int {
			if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
				return c
			}
			return strings.Compare(a.ID, b.ID)
		})
	}
	return by
}

func cloneAttachment(a *attachment) attachment {
	c := *a
	c.Connector = maps.Clone(a.Connector)
	c.ConnectionInfo = maps.Clone(a.ConnectionInfo)
	return c
}

// attachmentsOfLocked returns a volume's attachment records, oldest first.
func (m *model) attachmentsOfLocked(volumeID string) []*attachment {
	var out []*attachment
	for _, a := range m.attachments {
		if a.VolumeID == volumeID {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, func(a, b *attachment) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// volumeLocked finds a volume the caller may see.
func (m *model) volumeLocked(c caller, id string) (*volume, error) {
	v, ok := m.volumes[id]
	if !ok || (!c.Admin && v.ProjectID != c.ProjectID) {
		return nil, errVolumeNotFound(id)
	}
	return v, nil
}

// ---- Keystone ----

func (m *model) addProject(name string) *project {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := &project{ID: m.ids.hexID(), Name: name}
	m.projects[p.ID] = p
	return p
}

func (m *model) addUser(name, password, projectID string, roleNames ...string) *user {
	m.mu.Lock()
	defer m.mu.Unlock()
	u := &user{ID: m.ids.hexID(), Name: name, Password: password, ProjectID: projectID}
	for _, r := range roleNames {
		u.Roles = append(u.Roles, role{ID: roleID(r), Name: r})
	}
	m.users[u.ID] = u
	return u
}

// roleID is a stable id per role name, as Keystone's are per deployment.
func roleID(name string) string {
	switch name {
	case "admin":
		return "3f1b7f0ab0b04d1a9a0c2b5c1e8f6a01"
	case "member":
		return "8ccfa670c71745b0898a3b08052daf10"
	default:
		return "a3a65aa6112f4312bcef08e5d145af22"
	}
}

func (m *model) userByName(name string) *user {
	for _, u := range m.users {
		if u.Name == name {
			return u
		}
	}
	return nil
}

// authenticate checks a password (by user id or name) and issues a token
// scoped to the user's project. ok is false on bad credentials.
func (m *model) authenticate(now time.Time, userID, userName, password string, lifetime time.Duration) (token, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u := m.users[userID]
	if u == nil && userName != "" {
		u = m.userByName(userName)
	}
	if u == nil || u.Password != password {
		return token{}, false
	}
	return m.issueLocked(now, u, []string{"password"}, lifetime, ""), true
}

// reissue exchanges a valid token for a new one (the "token" auth method);
// the new token keeps the old one's expiry and audit chain like Keystone.
func (m *model) reissue(now time.Time, old string) (token, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tokens[old]
	if !ok || !now.Before(t.ExpiresAt) {
		return token{}, false
	}
	u := m.users[t.UserID]
	nt := m.issueLocked(now, u, []string{"token"}, t.ExpiresAt.Sub(now), t.AuditID)
	nt.ExpiresAt = t.ExpiresAt
	m.tokens[nt.ID] = &nt
	return nt, true
}

func (m *model) issueLocked(now time.Time, u *user, methods []string, lifetime time.Duration, audit string) token {
	if audit == "" {
		audit = m.tokenIDs.auditID()
	}
	t := token{
		ID:        m.tokenIDs.token(),
		UserID:    u.ID,
		ProjectID: u.ProjectID,
		Roles:     slices.Clone(u.Roles),
		Methods:   methods,
		AuditID:   audit,
		IssuedAt:  now.Truncate(time.Second),
		ExpiresAt: now.Add(lifetime).Truncate(time.Second),
	}
	m.tokens[t.ID] = &t
	return t
}

// validate returns the caller a token stands for, or false when the token
// is unknown or expired.
func (m *model) validate(now time.Time, id string) (token, caller, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tokens[id]
	if !ok || !now.Before(t.ExpiresAt) {
		return token{}, caller{}, false
	}
	c := caller{UserID: t.UserID, ProjectID: t.ProjectID}
	for _, r := range t.Roles {
		if r.Name == "admin" {
			c.Admin = true
		}
	}
	return *t, c, true
}

// expireTokens ends the life of every token issued so far.
func (m *model) expireTokens(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, t := range m.tokens {
		if t.ExpiresAt.After(now) {
			t.ExpiresAt = now
		}
	}
}

// ---- Cinder volumes ----

type createVolumeReq struct {
	Name        *string
	Description *string
	Size        int
	AZ          string
	VolumeType  string
	Multiattach bool
	Metadata    map[string]string
	// SnapshotID or SourceVolID: the volume starts with that one's data.
	// Size 0 takes the source's size; a smaller size than the source's is
	// refused.
	SnapshotID  string
	SourceVolID string
}

func (m *model) createVolume(now time.Time, c caller, r createVolumeReq) (volumeView, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tickLocked(now)
	if err := m.checkVolumeSourceLocked(c, &r); err != nil {
		return volumeView{}, err
	}
	v := &volume{
		SnapshotID:  r.SnapshotID,
		SourceVolID: r.SourceVolID,
		ID:          m.ids.uuid(),
		Name:        r.Name,
		Description: r.Description,
		Size:        r.Size,
		Status:      volCreating,
		ProjectID:   c.ProjectID,
		UserID:      c.UserID,
		AZ:          r.AZ,
		VolumeType:  r.VolumeType,
		Multiattach: r.Multiattach,
		Metadata:    r.Metadata,
		CreatedAt:   now,
		pendingTo:   volAvailable,
		pendingAt:   now.Add(m.lat.Create),
	}
	if v.Metadata == nil {
		v.Metadata = map[string]string{}
	}
	m.volumes[v.ID] = v
	return m.viewLocked(v), nil
}

func (m *model) getVolume(now time.Time, c caller, id string) (volumeView, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tickLocked(now)
	v, err := m.volumeLocked(c, id)
	if err != nil {
		return volumeView{}, err
	}
	return m.viewLocked(v), nil
}

type volumeFilter struct {
	AllTenants bool
	ProjectID  string // only with AllTenants
	Name       string
	Status     string
	Metadata   map[string]string
}

// listVolumes returns the volumes the caller may list, sorted as Cinder
// sorts by default (created_at desc, id desc).
func (m *model) listVolumes(now time.Time, c caller, f volumeFilter) []volumeView {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tickLocked(now)
	byVol := m.attachmentsByVolumeLocked()
	var out []volumeView
	for _, v := range m.volumes {
		switch {
		case c.Admin && f.AllTenants:
			if f.ProjectID != "" && v.ProjectID != f.ProjectID {
				continue
			}
		case v.ProjectID != c.ProjectID:
			continue
		}
		if f.Name != "" && (v.Name == nil || *v.Name != f.Name) {
			continue
		}
		if f.Status != "" && v.Status != f.Status {
			continue
		}
		match := true
		for k, want := range f.Metadata {
			if got, ok := v.Metadata[k]; !ok || got != want {
				match = false
			}
		}
		if !match {
			continue
		}
		out = append(out, viewOf(v, byVol[v.ID]))
	}
	slices.SortFunc(out, func(a, b volumeView) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	return out
}

func (m *model) updateVolume(now time.Time, c caller, id string, name, desc *string, md map[string]string) (volumeView, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tickLocked(now)
	v, err := m.volumeLocked(c, id)
	if err != nil {
		return volumeView{}, err
	}
	if name != nil {
		v.Name = name
	}
	if desc != nil {
		v.Description = desc
	}
	if md != nil {
		v.Metadata = md
	}
	m.touch(v, now)
	return m.viewLocked(v), nil
}

// deleteVolume starts deleting; the volume disappears after the delete
// latency. It refuses, like Cinder, while the volume is attached or busy.
func (m *model) deleteVolume(now time.Time, c caller, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tickLocked(now)
	v, err := m.volumeLocked(c, id)
	if err != nil {
		return err
	}
	switch v.Status {
	case volAvailable, volError, "error_restoring", "error_extending", "error_managing":
	default:
		return badRequest("%s", msgDeleteInUse)
	}
	if len(m.attachmentsOfLocked(id)) > 0 || m.hasSnapshotsLocked(id) {
		return badRequest("%s", msgDeleteInUse)
	}
	v.Status = volDeleting
	m.touch(v, now)
	v.pendingTo, v.pendingAt = "deleted", now.Add(m.lat.Delete)
	return nil
}

// Metadata operations. replace=true replaces the whole set.
func (m *model) setMetadata(now time.Time, c caller, id string, md map[string]string, replace bool) (map[string]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tickLocked(now)
	v, err := m.volumeLocked(c, id)
	if err != nil {
		return nil, err
	}
	if replace {
		v.Metadata = map[string]string{}
	}
	for k, val := range md {
		v.Metadata[k] = val
	}
	m.touch(v, now)
	return maps.Clone(v.Metadata), nil
}

func (m *model) deleteMetadataKey(now time.Time, c caller, id, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tickLocked(now)
	v, err := m.volumeLocked(c, id)
	if err != nil {
		return err
	}
	if _, ok := v.Metadata[key]; !ok {
		return notFound("Volume %s has no metadata with key %s.", id, key)
	}
	delete(v.Metadata, key)
	m.touch(v, now)
	return nil
}

// ---- Cinder volume actions ----

// reserve is os-reserve: available → attaching, with a reserved attachment
// record that has no instance yet.
func (m *model) reserve(now time.Time, c caller, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tickLocked(now)
	v, err := m.volumeLocked(c, id)
	if err != nil {
		return err
	}
	if v.Status != volAvailable && !(v.Multiattach && v.Status == volInUse) {
		return badRequest("Invalid volume: Volume status must be available to reserve, but the status is %s.", v.Status)
	}
	v.Status = volAttaching
	m.touch(v, now)
	m.newAttachmentLocked(now, v, "", attReserved)
	return nil
}

func (m *model) newAttachmentLocked(now time.Time, v *volume, instanceID, status string) *attachment {
	a := &attachment{
		ID:         m.ids.uuid(),
		VolumeID:   v.ID,
		InstanceID: instanceID,
		ProjectID:  v.ProjectID,
		Status:     status,
		Mode:       "null",
		CreatedAt:  now,
	}
	m.attachments[a.ID] = a
	return a
}

// unreserve is os-unreserve: drops reserved attachments without an
// instance and returns an attaching volume to available.
func (m *model) unreserve(now time.Time, c caller, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tickLocked(now)
	v, err := m.volumeLocked(c, id)
	if err != nil {
		return err
	}
	for _, a := range m.attachmentsOfLocked(id) {
		if a.Status == attReserved && a.InstanceID == "" {
			delete(m.attachments, a.ID)
		}
	}
	if v.Status == volAttaching {
		m.settleLocked(now, v)
	}
	return nil
}

// settleLocked sets a volume's status from its remaining attachments.
func (m *model) settleLocked(now time.Time, v *volume) {
	status := volAvailable
	for _, a := range m.attachmentsOfLocked(v.ID) {
		if a.Status == attAttached {
			status = volInUse
			break
		}
		if a.Status == attReserved || a.Status == attAttaching {
			status = volReserved
		}
	}
	v.Status = status
	m.touch(v, now)
}

func (m *model) beginDetaching(now time.Time, c caller, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tickLocked(now)
	v, err := m.volumeLocked(c, id)
	if err != nil {
		return err
	}
	if v.Status != volInUse {
		return badRequest("%s", msgDetachState)
	}
	v.Status = volDetaching
	m.touch(v, now)
	return nil
}

func (m *model) rollDetaching(now time.Time, c caller, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tickLocked(now)
	v, err := m.volumeLocked(c, id)
	if err != nil {
		return err
	}
	if v.Status == volDetaching {
		v.Status = volInUse
		m.touch(v, now)
	}
	return nil
}

type attachReq struct {
	InstanceID string
	HostName   string
	Mountpoint string
	Mode       string
}

// attachAction is os-attach: Cinder's record only (no compute involved). A
// reserved attachment without an instance (left by os-reserve) is reused.
func (m *model) attachAction(now time.Time, c caller, id string, r attachReq) (attachment, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tickLocked(now)
	v, err := m.volumeLocked(c, id)
	if err != nil {
		return attachment{}, err
	}
	if r.InstanceID == "" && r.HostName == "" {
		return attachment{}, badRequest("Invalid request to attach volume to an invalid target")
	}
	if r.Mode == "" {
		r.Mode = "rw"
	}
	if r.Mode != "rw" && r.Mode != "ro" {
		return attachment{}, badRequest("Invalid request to attach volume with an invalid mode. Attaching mode should be 'rw' or 'ro'")
	}
	switch v.Status {
	case volAvailable, volAttaching, volReserved:
	case volInUse:
		if !v.Multiattach {
			return attachment{}, badRequest("Invalid volume: Volume %s status must be available or downloading to reserve, but the current status is in-use.", v.ID)
		}
	default:
		return attachment{}, badRequest("Invalid volume: Volume %s status must be available or downloading to reserve, but the current status is %s.", v.ID, v.Status)
	}
	var a *attachment
	for _, x := range m.attachmentsOfLocked(id) {
		if x.Status == attReserved && (x.InstanceID == "" || x.InstanceID == r.InstanceID) {
			a = x
			break
		}
	}
	if a == nil {
		a = m.newAttachmentLocked(now, v, r.InstanceID, attAttaching)
	}
	t := now
	a.InstanceID, a.HostName, a.Mountpoint = r.InstanceID, r.HostName, r.Mountpoint
	a.Status, a.Mode, a.AttachedAt = attAttached, r.Mode, &t
	v.Status = volInUse
	m.touch(v, now)
	return cloneAttachment(a), nil
}

// pickAttachmentLocked resolves the attachment an os-detach or
// os-force_detach names (or the only one when none is named).
func (m *model) pickAttachmentLocked(v *volume, attachmentID string) ([]*attachment, error) {
	all := m.attachmentsOfLocked(v.ID)
	if attachmentID != "" {
		for _, a := range all {
			if a.ID == attachmentID {
				return []*attachment{a}, nil
			}
		}
		return nil, errAttachmentNotFound(attachmentID)
	}
	if len(all) > 1 {
		return nil, badRequest("Invalid volume: Detach volume failed: More than one attachment, but no attachment_id provided.")
	}
	return all, nil
}

// novaHoldsLocked is the bug 2004555 guard's question to Nova: does a live
// server hold this attachment through a block-device mapping?
func (m *model) novaHoldsLocked(a *attachment) bool {
	if a.InstanceID == "" {
		return false
	}
	s, ok := m.servers[a.InstanceID]
	if !ok || s.Deleted {
		return false
	}
	for _, b := range s.BDMs {
		if b.VolumeID == a.VolumeID && b.AttachmentID == a.ID {
			return true
		}
	}
	return false
}

// detachAction is os-detach (force=false) or os-force_detach (force=true).
// Both change Cinder's records only; the guard answers 409 while Nova still
// holds the attachment. It returns the attachments removed.
func (m *model) detachAction(now time.Time, c caller, id, attachmentID string, force bool) ([]attachment, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tickLocked(now)
	if force && !c.Admin {
		return nil, errPolicy("volume_extension:volume_admin_actions:force_detach")
	}
	v, err := m.volumeLocked(c, id)
	if err != nil {
		return nil, err
	}
	atts, err := m.pickAttachmentLocked(v, attachmentID)
	if err != nil {
		return nil, err
	}
	for _, a := range atts {
		if m.novaHoldsLocked(a) {
			return nil, errNovaUsingAttachment(a.InstanceID)
		}
	}
	if !force {
		switch v.Status {
		case volInUse, volDetaching, volAttaching, volReserved:
		default:
			return nil, badRequest("%s", msgDetachState)
		}
	}
	var gone []attachment
	for _, a := range atts {
		t := now
		a.Status, a.DetachedAt = attDetached, &t
		gone = append(gone, cloneAttachment(a))
		delete(m.attachments, a.ID)
	}
	m.settleLocked(now, v)
	return gone, nil
}

type resetReq struct {
	Status       string
	AttachStatus string
}

// resetStatus is os-reset_status (admin only): it rewrites Cinder's records
// and nothing else. attach_status=detached drops every attachment.
func (m *model) resetStatus(now time.Time, c caller, id string, r resetReq) ([]attachment, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tickLocked(now)
	if !c.Admin {
		return nil, errPolicy("volume_extension:volume_admin_actions:reset_status")
	}
	v, err := m.volumeLocked(c, id)
	if err != nil {
		return nil, err
	}
	if r.Status == "" && r.AttachStatus == "" {
		return nil, badRequest("Must specify 'status', 'attach_status' or 'migration_status' for update.")
	}
	if r.Status != "" && !slices.Contains(validVolumeStatuses, r.Status) {
		return nil, badRequest("Must specify a valid status")
	}
	if r.AttachStatus != "" && r.AttachStatus != attAttached && r.AttachStatus != attDetached {
		return nil, badRequest("Must specify a valid attach status")
	}
	var gone []attachment
	if r.AttachStatus == attDetached {
		for _, a := range m.attachmentsOfLocked(id) {
			t := now
			a.Status, a.DetachedAt = attDetached, &t
			gone = append(gone, cloneAttachment(a))
			delete(m.attachments, a.ID)
		}
	}
	if r.Status != "" {
		v.Status = r.Status
		v.pendingTo = ""
	}
	m.touch(v, now)
	return gone, nil
}

// extend is os-extend: available (or in-use, from 3.42) → extending →
// available with the new size after the extend latency.
func (m *model) extend(now time.Time, c caller, id string, newSize int, inUseOK bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tickLocked(now)
	v, err := m.volumeLocked(c, id)
	if err != nil {
		return err
	}
	if v.Status != volAvailable && !(inUseOK && v.Status == volInUse) {
		return badRequest("Invalid volume: Volume %s status must be available or in-use, but current status is: %s.", id, v.Status)
	}
	if newSize <= v.Size {
		return badRequest("Invalid input received: New size for extend must be greater than current size. (current: %d, extended: %d).", v.Size, newSize)
	}
	back := v.Status
	v.Status = volExtending
	m.touch(v, now)
	v.pendingTo, v.pendingAt, v.pendingSize = back, now.Add(m.lat.Extend), newSize
	return nil
}

// ---- Cinder attachments API ----

func (m *model) attachmentLocked(c caller, id string) (*attachment, error) {
	a, ok := m.attachments[id]
	if !ok || (!c.Admin && a.ProjectID != c.ProjectID) {
		return nil, errAttachmentNotFound(id)
	}
	return a, nil
}

// connectionInfo is what the simulated iSCSI backend hands out.
func connectionInfo(a *attachment) map[string]any {
	mode := a.Mode
	if mode == "null" || mode == "" {
		mode = modeOf("", a.Connector)
	}
	return map[string]any{
		"access_mode":        mode,
		"attachment_id":      a.ID,
		"cacheable":          false,
		"driver_volume_type": "iscsi",
		"encrypted":          false,
		"qos_specs":          nil,
	}
}

// attachmentCreate is POST /attachments: the volume becomes reserved.
func (m *model) attachmentCreate(now time.Time, c caller, volumeID, instanceID string, connector map[string]any, mode string) (attachment, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tickLocked(now)
	v, err := m.volumeLocked(c, volumeID)
	if err != nil {
		return attachment{}, err
	}
	a, err := m.attachmentCreateLocked(now, v, instanceID, connector, mode)
	if err != nil {
		return attachment{}, err
	}
	return cloneAttachment(a), nil
}

func (m *model) attachmentCreateLocked(now time.Time, v *volume, instanceID string, connector map[string]any, mode string) (*attachment, error) {
	ok := v.Status == volAvailable || (v.Multiattach && (v.Status == volInUse || v.Status == volReserved))
	if !ok {
		return nil, badRequest("Invalid volume: Volume %s status must be available or downloading to reserve, but the current status is %s.", v.ID, v.Status)
	}
	a := m.newAttachmentLocked(now, v, instanceID, attReserved)
	if connector != nil {
		a.Connector = connector
		if mode != "" {
			a.Mode = mode
		}
		a.HostName, _ = connector["host"].(string)
		a.Mountpoint, _ = connector["mountpoint"].(string)
		a.ConnectionInfo = connectionInfo(a)
	}
	if v.Status == volAvailable {
		v.Status = volReserved
	}
	m.touch(v, now)
	return a, nil
}

func modeOf(mode string, connector map[string]any) string {
	if mode != "" {
		return mode
	}
	if cm, ok := connector["mode"].(string); ok && cm != "" {
		return cm
	}
	return "rw"
}

func (m *model) getAttachment(now time.Time, c caller, id string) (attachment, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tickLocked(now)
	a, err := m.attachmentLocked(c, id)
	if err != nil {
		return attachment{}, err
	}
	return cloneAttachment(a), nil
}

type attachmentFilter struct {
	AllTenants bool
	VolumeID   string
	InstanceID string
	Status     string
}

// listAttachments sorts like Cinder (created_at desc, id desc).
func (m *model) listAttachments(now time.Time, c caller, f attachmentFilter) []attachment {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tickLocked(now)
	var out []attachment
	for _, a := range m.attachments {
		if !(c.Admin && f.AllTenants) && a.ProjectID != c.ProjectID {
			continue
		}
		if (f.VolumeID != "" && a.VolumeID != f.VolumeID) || (f.InstanceID != "" && a.InstanceID != f.InstanceID) ||
			(f.Status != "" && a.Status != f.Status) {
			continue
		}
		out = append(out, cloneAttachment(a))
	}
	slices.SortFunc(out, func(a, b attachment) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	return out
}

// attachmentUpdate is PUT /attachments/{id} with a connector: the record
// gets connection info and the volume goes attaching.
func (m *model) attachmentUpdate(now time.Time, c caller, id string, connector map[string]any) (attachment, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tickLocked(now)
	a, err := m.attachmentLocked(c, id)
	if err != nil {
		return attachment{}, err
	}
	m.attachmentUpdateLocked(now, a, connector)
	return cloneAttachment(a), nil
}

func (m *model) attachmentUpdateLocked(now time.Time, a *attachment, connector map[string]any) {
	a.Connector = connector
	a.HostName, _ = connector["host"].(string)
	if mp, ok := connector["mountpoint"].(string); ok {
		a.Mountpoint = mp
	}
	a.ConnectionInfo = connectionInfo(a)
	if a.Status == attReserved {
		a.Status = attAttaching
	}
	if v, ok := m.volumes[a.VolumeID]; ok && (v.Status == volReserved || v.Status == volAvailable) {
		v.Status = volAttaching
		m.touch(v, now)
	}
}

// attachmentComplete is os-complete: attached, volume in-use. attach_mode
// stays "null" unless the 3.54 mode was given, as real Cinder shows it.
func (m *model) attachmentComplete(now time.Time, c caller, id string) (attachment, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tickLocked(now)
	a, err := m.attachmentLocked(c, id)
	if err != nil {
		return attachment{}, err
	}
	m.attachmentCompleteLocked(now, a)
	return cloneAttachment(a), nil
}

func (m *model) attachmentCompleteLocked(now time.Time, a *attachment) {
	t := now
	a.Status, a.AttachedAt = attAttached, &t
	if v, ok := m.volumes[a.VolumeID]; ok {
		v.Status = volInUse
		m.touch(v, now)
	}
}

// attachmentDelete is DELETE /attachments/{id}, guarded against deleting
// an attachment Nova still holds.
func (m *model) attachmentDelete(now time.Time, c caller, id string) (attachment, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tickLocked(now)
	a, err := m.attachmentLocked(c, id)
	if err != nil {
		return attachment{}, err
	}
	if m.novaHoldsLocked(a) {
		return attachment{}, errNovaUsingAttachment(a.InstanceID)
	}
	return m.attachmentDeleteLocked(now, a), nil
}

func (m *model) attachmentDeleteLocked(now time.Time, a *attachment) attachment {
	t := now
	a.Status, a.DetachedAt = attDetached, &t
	gone := cloneAttachment(a)
	delete(m.attachments, a.ID)
	if v, ok := m.volumes[a.VolumeID]; ok {
		m.settleLocked(now, v)
	}
	return gone
}
