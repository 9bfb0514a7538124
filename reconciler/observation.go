package reconciler

import (
	"slices"
	"strings"
)

// Observation is everything one run saw on one compute host. The observe step
// fills it from libvirt, Nova, Cinder and the host's mount table; Plan only
// reads it. Every source carries its own completeness status: a source that
// failed, was cut short or came back suspiciously empty stops every action of
// the run.
type Observation struct {
	// Host is this compute host's name as Nova's OS-EXT-SRV-ATTR:host and
	// Cinder's attachment host_name spell it (nova.conf [DEFAULT] host).
	Host    string  `json:"host"`
	Libvirt Libvirt `json:"libvirt"`
	Nova    Nova    `json:"nova"`
	Cinder  Cinder  `json:"cinder"`
	Mounts  Mounts  `json:"mounts"`
}

// SourceState says how complete one source's data is.
type SourceState string

const (
	// SourceOK: the whole listing was read (every page).
	SourceOK SourceState = "ok"
	// SourceFailed: the listing failed, possibly part way through; the
	// data, if any, must not be trusted.
	SourceFailed SourceState = "failed"
	// SourceEmpty: the observer itself judged the data suspiciously empty.
	SourceEmpty SourceState = "empty"
	// SourceNotConfigured: the source is deliberately not used (Nova on a
	// Keystone-less Cinder; no mount bases configured). Allowed only for
	// Nova and Mounts.
	SourceNotConfigured SourceState = "not_configured"
)

// SourceStatus is a source's completeness plus a human reason when it is
// not OK (e.g. "cinder: list volumes page 3: 503").
type SourceStatus struct {
	State  SourceState `json:"state"`
	Reason string      `json:"reason,omitempty"`
}

// Libvirt is every domain on this host, active and inactive.
type Libvirt struct {
	Source  SourceStatus `json:"source"`
	Domains []Domain     `json:"domains,omitempty"`
}

// Domain is one libvirt domain.
type Domain struct {
	UUID string `json:"uuid"` // libvirt domain UUID (Nova uses the instance UUID)
	Name string `json:"name"` // e.g. instance-0000002a
	// State is libvirt's state: running, blocked, paused, shutdown,
	// shutoff, crashed, pmsuspended (as virsh spells them).
	State string `json:"state"`
	// NovaInstanceUUID is the instance UUID from Nova's domain metadata
	// (namespace http://openstack.org/xmlns/libvirt/nova/1.1) when present.
	NovaInstanceUUID string `json:"nova_instance_uuid,omitempty"`
	// HasNovaMetadata says Nova's metadata element was present at all.
	HasNovaMetadata bool   `json:"has_nova_metadata,omitempty"`
	Disks           []Disk `json:"disks,omitempty"`
}

// InstanceID is the Nova instance this domain stands for: the UUID from
// Nova's metadata when present, else the domain UUID (Nova creates domains
// with the instance UUID).
func (d Domain) InstanceID() string {
	if d.NovaInstanceUUID != "" {
		return strings.ToLower(d.NovaInstanceUUID)
	}
	return strings.ToLower(d.UUID)
}

// Active reports whether the domain has a live definition (a running qemu).
func (d Domain) Active() bool {
	switch d.State {
	case "shutoff", "", "nostate":
		return false
	}
	return true
}

// Disk is one <disk> of a domain, merged across the live and the persistent
// definition (see MergeDisks).
type Disk struct {
	Target string `json:"target"`           // <target dev>, e.g. vdb; never used to match volumes
	Bus    string `json:"bus,omitempty"`    // virtio, scsi, sata, ...
	Device string `json:"device,omitempty"` // disk, cdrom, lun
	Serial string `json:"serial,omitempty"` // Nova sets it to the Cinder volume id
	Alias  string `json:"alias,omitempty"`  // ua-<volume id> since Nova 2024.1
	// Source is the file path, block device path or network name
	// (pool/volume-<id> for RBD, iqn.../lun for iSCSI); a typed rendering
	// such as libvirtscan's Source.String() ("file:/path") works too.
	Source string `json:"source,omitempty"`
	Live   bool   `json:"live,omitempty"`   // present in the live definition
	Config bool   `json:"config,omitempty"` // present in the persistent definition
}

// Nova is the servers Nova places on this host.
type Nova struct {
	Source  SourceStatus `json:"source"`
	Servers []Server     `json:"servers,omitempty"`
}

// Server is one Nova server as an admin sees it.
type Server struct {
	ID           string `json:"id"`
	Name         string `json:"name,omitempty"`
	InstanceName string `json:"instance_name,omitempty"` // OS-EXT-SRV-ATTR:instance_name
	Host         string `json:"host"`                    // OS-EXT-SRV-ATTR:host
	Status       string `json:"status,omitempty"`        // ACTIVE, SHUTOFF, MIGRATING, ...
	VMState      string `json:"vm_state,omitempty"`      // OS-EXT-STS:vm_state
	TaskState    string `json:"task_state,omitempty"`    // OS-EXT-STS:task_state; empty when null
	// MigrationInProgress is set when the observer found an unfinished
	// migration (os-migrations / server migrations) for this server.
	MigrationInProgress bool           `json:"migration_in_progress,omitempty"`
	Volumes             []ServerVolume `json:"volumes,omitempty"`
}

// ServerVolume is one of Nova's block-device mappings for a volume
// (os-volume_attachments).
type ServerVolume struct {
	VolumeID     string `json:"volume_id"`
	AttachmentID string `json:"attachment_id,omitempty"` // Cinder attachment id (microversion 2.89), when known
	Device       string `json:"device,omitempty"`        // e.g. /dev/vdb; not authoritative
}

// Cinder is the volumes involved on this host: every volume a domain disk or
// a Nova mapping names, and every volume with an attachment for an instance
// of this host.
type Cinder struct {
	Source  SourceStatus `json:"source"`
	Volumes []Volume     `json:"volumes,omitempty"`
}

// Volume is one Cinder volume.
type Volume struct {
	ID          string             `json:"id"`
	Status      string             `json:"status"` // available, in-use, detaching, ...
	Multiattach bool               `json:"multiattach,omitempty"`
	Attachments []VolumeAttachment `json:"attachments,omitempty"`
}

// VolumeAttachment is one Cinder attachment record of a volume.
type VolumeAttachment struct {
	ID       string `json:"id"`                  // attachment id
	ServerID string `json:"server_id,omitempty"` // Nova instance; empty for non-Nova consumers
	HostName string `json:"host_name,omitempty"` // connector host; Cinder may return null
	Device   string `json:"device,omitempty"`
	// AttachStatus: attached, attaching, detached, reserved,
	// error_attaching, error_detaching, deleted. Empty means attached (a
	// volume's attachments[] lists only attached records).
	AttachStatus string `json:"attach_status,omitempty"`
}

// Mounts is this host's mount entries under the configured bases.
type Mounts struct {
	Source  SourceStatus `json:"source"`
	Entries []MountEntry `json:"entries,omitempty"`
}

// MountSourceState is what probing a mount's source (stat with a timeout)
// found.
type MountSourceState string

const (
	MountSourceReachable MountSourceState = "reachable"
	// MountSourceGone: the backing source no longer exists or answers
	// ENOTCONN/ESTALE/EIO/EHOSTDOWN and the like (a corrupted mountpoint).
	MountSourceGone MountSourceState = "gone"
	// MountSourceUnknown: the probe did not finish; never acted on.
	MountSourceUnknown MountSourceState = "unknown"
)

// MountEntry is one line of mountinfo under a configured base.
type MountEntry struct {
	Mountpoint  string           `json:"mountpoint"`
	Source      string           `json:"source"` // e.g. nfs-server:/export
	FSType      string           `json:"fstype,omitempty"`
	SourceState MountSourceState `json:"source_state"`
	Reason      string           `json:"reason,omitempty"` // e.g. "stat: stale file handle"
}

// MergeDisks merges a domain's live and persistent disk lists into one list
// with Live/Config set. Disks are paired by serial, then alias, then source;
// only disks with none of those (rare) fall back to the target name. The
// result is in live order followed by config-only disks.
func MergeDisks(live, config []Disk) []Disk {
	out := make([]Disk, 0, len(live)+len(config))
	index := make(map[string]int, len(live))
	for _, d := range live {
		d.Live, d.Config = true, false
		index[diskIdentity(d)] = len(out)
		out = append(out, d)
	}
	for _, d := range config {
		if i, ok := index[diskIdentity(d)]; ok && !out[i].Config {
			out[i].Config = true
			continue
		}
		d.Live, d.Config = false, true
		out = append(out, d)
	}
	return out
}

func diskIdentity(d Disk) string {
	switch {
	case d.Serial != "":
		return "serial:" + strings.ToLower(d.Serial)
	case d.Alias != "":
		return "alias:" + d.Alias
	case d.Source != "":
		return "source:" + d.Source
	}
	return "target:" + d.Target
}

// InvolvedVolumeIDs lists, sorted and lower case, the volume ids the observe
// step must read from Cinder besides the attachments of this host's
// instances: every volume a domain disk stands for (matched like Plan does:
// serial, alias, volume-<uuid> in the source) and every volume Nova maps on
// a server of this host.
func InvolvedVolumeIDs(l Libvirt, n Nova) []string {
	ix := buildIndex(Observation{Libvirt: l, Nova: n}, true, true, false)
	set := make(map[string]bool, len(ix.disks)+len(ix.mappings))
	for k := range ix.disks {
		set[k.vol] = true
	}
	for k := range ix.mappings {
		set[k.vol] = true
	}
	out := make([]string, 0, len(set))
	for v := range set {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}
