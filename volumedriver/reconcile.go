package volumedriver

import (
	"fmt"
	"slices"
	"sort"
	"time"
)

// LiveMount is a filesystem mounted directly under the mount root, as
// hostdisk reads it from mountinfo.
type LiveMount struct {
	VolumeID   string // from the mountpoint's last element
	Mountpoint string
	Device     string // mount source
	// DeviceGone: the device node no longer exists (the disk was pulled).
	DeviceGone bool
	// Corrupted: stat on the mountpoint failed with EIO, ESTALE, ENOTCONN,
	// ENODEV... (a mount that is there but broken, not "not mounted").
	Corrupted bool
}

// CinderAttachment is one entry of a Cinder volume's attachments[].
type CinderAttachment struct {
	ServerID     string
	AttachmentID string
	HostName     string
	Device       string // Nova's device name: shown, never trusted
}

// CinderVolume is what Cinder says about a volume (the wiring converts the
// openstack package's view into this).
type CinderVolume struct {
	ID               string
	Name             string
	Status           string // available, in-use, attaching, detaching, reserved, error...
	SizeGiB          int
	VolumeType       string
	AvailabilityZone string
	CreatedAt        time.Time
	Attachments      []CinderAttachment
	Metadata         map[string]string
}

// attachmentTo returns the attachment to the given server.
func (c *CinderVolume) attachmentTo(server string) (CinderAttachment, bool) {
	for _, a := range c.Attachments {
		if a.ServerID == server {
			return a, true
		}
	}
	return CinderAttachment{}, false
}

// transitional: Cinder is in the middle of an attach or detach.
func (c *CinderVolume) transitional() bool {
	switch c.Status {
	case "attaching", "detaching", "reserved":
		return true
	}
	return false
}

// ReconcileInput is everything restart recovery looks at. Views must be
// complete: the caller fails instead of calling Reconcile when a source
// could not be read (no destructive step on a partial view).
type ReconcileInput struct {
	InstanceID string // this instance
	BootID     string // current /proc/sys/kernel/random/boot_id
	Layout     Layout
	State      NodeState   // from LoadState
	Mounts     []LiveMount // every mount under Layout.Root
	// Cinder has an entry for every volume id in State and Mounts, and for
	// every volume Cinder lists as attached to this instance. A nil value
	// means Cinder answered 404. A missing id is ErrIncompleteView.
	Cinder map[string]*CinderVolume
	// Policy gives the filesystem of volumes without recorded metadata
	// (zero value: ext4).
	Policy OptionPolicy
}

// Finding is something recovery noticed and decided about, for the log.
type Finding struct {
	VolumeID string
	Code     string // stable identifier, see the Find* constants
	Message  string
}

// Finding codes.
const (
	FindPendingDropped    = "pending-dropped"     // requests in flight at the crash were dropped
	FindRefsDroppedReboot = "refs-dropped-reboot" // the node rebooted: the old containers are gone
	FindOtherInstance     = "state-other-instance"
	FindStaleMount        = "stale-mount"      // device gone, mount broken, or attached elsewhere now
	FindUnusedMount       = "unused-mount"     // mounted, no container: unmount and detach
	FindUnrecordedMount   = "unrecorded-mount" // mounted but not in the state file: kept
	FindMountVanished     = "mount-vanished"   // containers recorded, mount gone: kept attached
	FindRolledBack        = "rolled-back"      // an operation was cut short: attachment released
	FindUnrecordedManaged = "unrecorded-attachment"
	FindUnmanagedIgnored  = "unmanaged-attachment" // attached here, not ours: left alone
	FindTransitional      = "transitional"         // Cinder mid-change, not ours: left alone
	FindVolumeMissing     = "volume-missing"       // Cinder says 404
	FindNotAttached       = "not-attached"         // recorded, but Cinder says not attached here
	FindBadMetadata       = "bad-metadata"
)

// RecoveredVolume is one volume's recovered state and the actions that
// finish recovering it; the caller persists the state, then runs the
// actions through the volume's machine (RestoreVolume, Step with results).
type RecoveredVolume struct {
	State   VolumeState
	Actions []Action
}

// Recovery is Reconcile's result.
type Recovery struct {
	// State is the node state to save before serving.
	State NodeState
	// Volumes are the volumes this node holds or is releasing, sorted by id.
	Volumes []RecoveredVolume
	// Findings, sorted by volume id then code.
	Findings []Finding
}

// Reconcile rebuilds this node's view after a (re)start from the state
// file, the live mounts and Cinder, before the plugin serves requests.
//
// What Docker does: a legacy plugin that restarts is not told anything;
// Docker does not re-send Mount for running containers and later sends
// Unmount with the old mount id when they stop (vsphere-storage-for-docker
// #226/#1112; docker/for-linux #404 shows Unmount may even be skipped after
// a dockerd restart). A Mount cut short by the crash failed for Docker (its
// retry, if any, arrives as a new request). Hence the rules:
//
//   - The state file is written ahead: a mount id is recorded before Docker
//     hears success. So a recorded mount id is a container that may run, and
//     a mount with no recorded id has no container. Ids of a previous boot
//     are dropped (no container survives a reboot).
//   - Mounted with recorded ids: kept as is. Never unmounted — unless the mount
//     is stale (device gone, mount corrupted, or Cinder says the volume is no
//     longer attached here): then it is force-unmounted (issue 4 sweep).
//   - Mounted with no recorded id but a state record: unmounted and detached.
//   - Mounted with no state record at all (state file lost): kept mounted,
//     reported — a container might use it.
//   - Attached here, not mounted: detached if recorded without ids or if the
//     volume carries cinderwarden.managed; an unmanaged volume the state does
//     not know is someone else's (a boot volume...) and is left alone.
//     Recorded ids with the mount gone in the same boot: kept attached, reported.
//   - Cinder attaching/detaching: a recorded attach is resumed (ActAttach is
//     idempotent, then released); anything else recorded is detached.
//   - Recorded but not attached here: dropped.
//
// Every attachment to this instance is thus either held, released, or
// reported as not ours.
func Reconcile(in ReconcileInput) (Recovery, error) {
	var rec Recovery
	find := func(id, code, format string, a ...any) {
		rec.Findings = append(rec.Findings, Finding{VolumeID: id, Code: code, Message: fmt.Sprintf(format, a...)})
	}

	recorded := map[string]VolumeState{}
	if in.State.InstanceID != "" && in.State.InstanceID != in.InstanceID {
		for _, s := range in.State.Volumes {
			find(s.VolumeID, FindOtherInstance, "state file was written by instance %s, this is %s: record ignored",
				in.State.InstanceID, in.InstanceID)
		}
	} else {
		for _, s := range in.State.Volumes {
			recorded[s.VolumeID] = s
		}
	}
	sameBoot := in.State.BootID == "" || in.BootID == "" || in.State.BootID == in.BootID

	mounts := map[string]LiveMount{}
	for _, m := range in.Mounts {
		if _, dup := mounts[m.VolumeID]; dup {
			return Recovery{}, fmt.Errorf("volume %s mounted twice under %s: %w", m.VolumeID, in.Layout.Root, ErrIncompleteView)
		}
		mounts[m.VolumeID] = m
	}

	ids := map[string]bool{}
	for id := range recorded {
		ids[id] = true
	}
	for id := range mounts {
		ids[id] = true
	}
	for id, c := range in.Cinder {
		if c != nil {
			if _, here := c.attachmentTo(in.InstanceID); here {
				ids[id] = true
			}
		}
	}
	sorted := make([]string, 0, len(ids))
	for id := range ids {
		if _, ok := in.Cinder[id]; !ok {
			return Recovery{}, fmt.Errorf("volume %s: no Cinder view: %w", id, ErrIncompleteView)
		}
		sorted = append(sorted, id)
	}
	sort.Strings(sorted)

	for _, id := range sorted {
		s, hasS := recorded[id]
		m, hasM := mounts[id]
		c := in.Cinder[id]
		att, attachedHere := CinderAttachment{}, false
		if c != nil {
			att, attachedHere = c.attachmentTo(in.InstanceID)
		}

		managed := false
		fs := in.Policy.DefaultFSType
		if fs == "" {
			fs = FSExt4
		}
		if c != nil {
			set, err := SettingsFromMetadata(c.Metadata, in.Policy)
			if err != nil {
				find(id, FindBadMetadata, "%v: treated as not managed", err)
			} else {
				managed, fs = set.Managed, set.FSType
			}
		}

		v := VolumeState{VolumeID: id, MountDir: in.Layout.MountDir(id), FSType: fs}
		if c != nil {
			v.Name = c.Name
		}
		if hasS {
			v = s.clone()
			if len(v.Pending) > 0 {
				find(id, FindPendingDropped, "mount ids %v were waiting when the plugin stopped: their requests failed for Docker", v.Pending)
			}
			v.Pending, v.Releasing, v.ForceUnmount = nil, nil, false
			if !sameBoot && len(v.Refs) > 0 {
				find(id, FindRefsDroppedReboot, "mount ids %v are from a previous boot: dropped", v.Refs)
				v.Refs = nil
			}
		}
		if attachedHere {
			v.AttachmentID = att.AttachmentID
		}

		var out RecoveredVolume
		keep := func(p Phase) {
			v.Phase = p
			out = RecoveredVolume{State: v.clone()}
		}
		// then puts the volume in steady phase p and feeds ev to its machine.
		then := func(p Phase, ev Event) error {
			v.Phase = p
			vm := &Volume{st: v.clone()}
			rd, err := vm.Step(ev)
			if err != nil {
				return fmt.Errorf("volume %s: recover: %w", id, err)
			}
			out = RecoveredVolume{State: vm.State(), Actions: rd.Actions}
			return nil
		}
		var err error

		switch {
		case hasM:
			v.Device = m.Device
			stale := ""
			switch {
			case m.DeviceGone:
				stale = "its device " + m.Device + " is gone"
			case m.Corrupted:
				stale = "the mountpoint is corrupted"
			case c != nil && !attachedHere && !c.transitional():
				stale = "Cinder says it is no longer attached to this instance"
			}
			switch {
			case stale != "":
				find(id, FindStaleMount, "stale mount %s: %s: force-unmounting, dropping mount ids %v", m.Mountpoint, stale, v.Refs)
				err = then(PhaseMounted, Lost{Reason: "stale mount: " + stale})
			case c == nil:
				find(id, FindVolumeMissing, "mounted at %s but Cinder does not know the volume: left as is", m.Mountpoint)
				keep(PhaseMounted)
			case len(v.Refs) > 0:
				keep(PhaseMounted)
			case hasS:
				find(id, FindUnusedMount, "mounted at %s with no container recorded: unmounting and detaching", m.Mountpoint)
				err = then(PhaseMounted, Release{})
			default:
				find(id, FindUnrecordedMount, "mounted at %s but not in the state file: kept mounted (a container may use it)", m.Mountpoint)
				keep(PhaseMounted)
			}

		case c == nil:
			if hasS {
				find(id, FindVolumeMissing, "recorded as %s but Cinder does not know the volume: dropped", s.Phase)
			}
			continue

		case c.transitional() && hasS:
			v.Device = ""
			if s.Phase == PhaseAttaching && c.Status != "detaching" {
				find(id, FindRolledBack, "attach was in flight (Cinder: %s): waiting for it, then detaching", c.Status)
				v.Phase = PhaseAttaching
				vm := &Volume{st: v.clone()}
				var rd Ready
				vm.to(PhaseAttaching, &rd)
				out = RecoveredVolume{State: vm.State(), Actions: rd.Actions}
			} else {
				find(id, FindRolledBack, "was %s (Cinder: %s): detaching", s.Phase, c.Status)
				v.Phase = PhaseDetaching
				vm := &Volume{st: v.clone()}
				vm.st.Refs = nil
				var rd Ready
				vm.to(PhaseDetaching, &rd)
				out = RecoveredVolume{State: vm.State(), Actions: rd.Actions}
			}

		case c.transitional():
			find(id, FindTransitional, "Cinder says %s and the plugin has no record: left alone", c.Status)
			continue

		case attachedHere && hasS:
			v.Device = ""
			switch {
			case len(v.Refs) > 0:
				find(id, FindMountVanished, "mount ids %v recorded but the volume is not mounted: kept attached", v.Refs)
				keep(PhaseAttached)
			default:
				if !s.Phase.Steady() {
					find(id, FindRolledBack, "%s was cut short: detaching", s.Phase)
				}
				err = then(PhaseAttached, Release{})
			}

		case attachedHere && managed:
			find(id, FindUnrecordedManaged, "attached here, managed, not recorded and not mounted: detaching")
			err = then(PhaseAttached, Release{})

		case attachedHere:
			find(id, FindUnmanagedIgnored, "attached here but not created or recorded by the plugin: left alone")
			continue

		default:
			if hasS {
				find(id, FindNotAttached, "recorded as %s but Cinder says not attached here (%s): dropped", s.Phase, c.Status)
			}
			continue
		}
		if err != nil {
			return Recovery{}, err
		}
		if err := out.State.Check(); err != nil {
			return Recovery{}, fmt.Errorf("recover: %w", err)
		}
		rec.Volumes = append(rec.Volumes, out)
	}

	rec.State = NodeState{Version: StateVersion, InstanceID: in.InstanceID, BootID: in.BootID, Volumes: []VolumeState{}}
	for _, rv := range rec.Volumes {
		rec.State = rec.State.With(rv.State)
	}
	slices.SortStableFunc(rec.Findings, func(a, b Finding) int {
		if a.VolumeID != b.VolumeID {
			if a.VolumeID < b.VolumeID {
				return -1
			}
			return 1
		}
		return 0
	})
	return rec, nil
}
