package reconciler

import (
	"path"
	"strings"
)

// ivKey is an (instance, volume) pair, both lower case.
type ivKey struct{ inst, vol string }

// diskRef is a volume disk found in a domain.
type diskRef struct {
	dom  *Domain
	disk Disk
	by   string // how the disk was matched: serial, alias or source
}

// index is one observation indexed for the lookups Plan and
// CheckPreconditions share. Only sources that are usable are indexed.
type index struct {
	host             string
	domains          []*Domain          // sorted by UUID
	domainByInstance map[string]*Domain // instance id → domain
	servers          map[string]*Server // server id → server
	mappings         map[ivKey]*ServerVolume
	volumes          map[string]*Volume
	disks            map[ivKey]diskRef // volume disks present in domains
	volumeDisks      int               // disks that look like volumes (for the empty-Cinder check)
}

func buildIndex(obs Observation, lv, nova, cinder bool) *index {
	ix := &index{
		host:             obs.Host,
		domainByInstance: map[string]*Domain{},
		servers:          map[string]*Server{},
		mappings:         map[ivKey]*ServerVolume{},
		volumes:          map[string]*Volume{},
		disks:            map[ivKey]diskRef{},
	}
	if cinder {
		for i := range obs.Cinder.Volumes {
			v := &obs.Cinder.Volumes[i]
			ix.volumes[strings.ToLower(v.ID)] = v
		}
	}
	if nova {
		for i := range obs.Nova.Servers {
			s := &obs.Nova.Servers[i]
			id := strings.ToLower(s.ID)
			ix.servers[id] = s
			for j := range s.Volumes {
				m := &s.Volumes[j]
				ix.mappings[ivKey{id, strings.ToLower(m.VolumeID)}] = m
			}
		}
	}
	if lv {
		ix.domains = make([]*Domain, 0, len(obs.Libvirt.Domains))
		for i := range obs.Libvirt.Domains {
			ix.domains = append(ix.domains, &obs.Libvirt.Domains[i])
		}
		sortBy(ix.domains, func(d *Domain) string { return d.UUID })
		for _, d := range ix.domains {
			inst := d.InstanceID()
			ix.domainByInstance[inst] = d
			for _, disk := range d.Disks {
				vol, by := ix.volumeOf(disk, inst)
				if vol == "" {
					continue
				}
				ix.volumeDisks++
				k := ivKey{inst, vol}
				if _, dup := ix.disks[k]; !dup {
					ix.disks[k] = diskRef{dom: d, disk: disk, by: by}
				}
			}
		}
	}
	return ix
}

// known reports whether a volume id is known from Cinder or a Nova mapping
// of this instance.
func (ix *index) known(vol, inst string) bool {
	if _, ok := ix.volumes[vol]; ok {
		return true
	}
	_, ok := ix.mappings[ivKey{inst, vol}]
	return ok
}

// volumeOf returns the Cinder volume id a disk stands for and how it was
// matched: by serial (Nova sets it to the volume id), then by alias
// ua-<volume id>, then by a known volume id (or a volume-<uuid> name) in the
// source. Never by target name. Disks that match nothing (root disk, config
// drive) are not volume disks.
func (ix *index) volumeOf(d Disk, inst string) (string, string) {
	if s := strings.ToLower(strings.TrimSpace(d.Serial)); isUUID(s) {
		return s, "serial"
	}
	if a := strings.ToLower(d.Alias); strings.HasPrefix(a, "ua-") && isUUID(a[3:]) {
		return a[3:], "alias"
	}
	src := strings.ToLower(d.Source)
	var named string
	for i := 0; i+36 <= len(src); i++ {
		if src[i+8] != '-' || !isUUID(src[i:i+36]) {
			continue
		}
		id := src[i : i+36]
		if ix.known(id, inst) {
			return id, "source"
		}
		if named == "" && strings.HasSuffix(src[:i], "volume-") {
			named = id
		}
	}
	if named != "" {
		return named, "source"
	}
	return "", ""
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		}
	}
	return true
}

// liveAttachment is the volume's attachment record for inst that is not
// detached or deleted, if any.
func liveAttachment(v *Volume, inst string) *VolumeAttachment {
	if v == nil {
		return nil
	}
	for i := range v.Attachments {
		a := &v.Attachments[i]
		if strings.EqualFold(a.ServerID, inst) && attachmentLive(a.AttachStatus) {
			return a
		}
	}
	return nil
}

func attachmentByID(v *Volume, id string) *VolumeAttachment {
	if v == nil {
		return nil
	}
	for i := range v.Attachments {
		a := &v.Attachments[i]
		if strings.EqualFold(a.ID, id) && attachmentLive(a.AttachStatus) {
			return a
		}
	}
	return nil
}

// attachedElsewhere is a live attachment of v to an instance other than inst.
func attachedElsewhere(v *Volume, inst string) *VolumeAttachment {
	if v == nil {
		return nil
	}
	for i := range v.Attachments {
		a := &v.Attachments[i]
		if !strings.EqualFold(a.ServerID, inst) && attachmentLive(a.AttachStatus) {
			return a
		}
	}
	return nil
}

func attachmentLive(status string) bool {
	return status != "detached" && status != "deleted"
}

// settledVolumeStatuses are the only volume statuses an action may touch;
// everything else (creating, attaching, detaching, reserved, deleting,
// maintenance, retyping, extending, error_*, backing-up, ...) is in
// transition or broken.
func volumeStatusSettled(s string) bool { return s == "available" || s == "in-use" }

func attachStatusSettled(s string) bool { return s == "" || s == "attached" || !attachmentLive(s) }

// volumeSkip says why a volume is in transition ("" when settled).
func volumeSkip(v *Volume) string {
	if !volumeStatusSettled(v.Status) {
		return "volume " + v.ID + " is " + quoteOr(v.Status, "without status")
	}
	for _, a := range v.Attachments {
		if !attachStatusSettled(a.AttachStatus) {
			return "volume " + v.ID + " attachment " + a.ID + " is " + a.AttachStatus
		}
	}
	return ""
}

// vmStatesToActOn are the Nova vm_states in which an instance is settled.
func vmStateSettled(s string) bool {
	switch s {
	case "active", "stopped", "paused", "suspended":
		return true
	}
	return false
}

func serverStatusMigrating(s string) bool {
	switch strings.ToUpper(s) {
	case "MIGRATING", "RESIZE", "VERIFY_RESIZE", "REVERT_RESIZE":
		return true
	}
	return false
}

// serverSkip says why an instance is not settled on this host ("" when it
// is): another host, a task state, a migration, a vm_state in transition.
func serverSkip(s *Server, host string) string {
	switch {
	case !strings.EqualFold(s.Host, host):
		return "instance " + s.ID + " is on host " + quoteOr(s.Host, "none") + ", not " + host
	case s.TaskState != "":
		return "instance " + s.ID + " has task_state " + s.TaskState
	case s.MigrationInProgress || serverStatusMigrating(s.Status):
		return "instance " + s.ID + " is migrating (status " + quoteOr(s.Status, "unknown") + ")"
	case !vmStateSettled(s.VMState):
		return "instance " + s.ID + " has vm_state " + quoteOr(s.VMState, "unknown")
	}
	return ""
}

func quoteOr(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

// deviceBase is the last element of a device path (/dev/vdb → vdb).
func deviceBase(dev string) string {
	if dev == "" {
		return ""
	}
	return path.Base(dev)
}
