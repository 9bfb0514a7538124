package simcloud

import "context"

// Attachment is what a compute backend needs to make one Nova volume
// attachment real on the instance's side.
type Attachment struct {
	InstanceID   string // Nova server id
	InstanceName string // libvirt-style name, e.g. instance-00000001
	VolumeID     string // Cinder volume id; becomes the disk serial
	SizeGiB      int
	// BackingFile is the sparse file that holds the volume's bytes for the
	// volume's whole life, so data survives detach and re-attach. The
	// simulator chooses the path; a backend creates it if absent.
	BackingFile string
	// NodeDevDir is the instance's dev root (what the plugin on that node
	// uses instead of /dev): by-id links go under NodeDevDir/disk/by-id.
	NodeDevDir string
}

// ComputeBackend makes attachments real: loop devices for the node side,
// libvirt disks for a compute host. It is the simulator's seam to the OS; the
// simulator calls backends in order on attach and in reverse on detach.
type ComputeBackend interface {
	// AttachVolume makes the volume visible to the instance. It returns a
	// device path when it has one (informational; never trusted by clients).
	AttachVolume(ctx context.Context, a Attachment) (device string, err error)
	// DetachVolume removes it. Detaching something already gone is not an
	// error.
	DetachVolume(ctx context.Context, a Attachment) error
}
