package volumedriver

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
)

// Phase is where one volume stands on this node. Three phases are steady
// (Detached, Attached, Mounted); in the others exactly one I/O operation is
// in flight and the machine waits for its result (at most one operation in
// flight per volume).
type Phase int

const (
	// PhaseDetached: not attached to this instance (as far as the plugin knows).
	PhaseDetached Phase = iota
	// PhaseAttaching: ActAttach in flight (Nova os-volume_attachments).
	PhaseAttaching
	// PhaseWaitingDevice: attached; ActWaitDevice in flight (by-id lookup).
	PhaseWaitingDevice
	// PhaseMounting: device known; ActMount in flight (format only if blank, mount).
	PhaseMounting
	// PhaseMounted: steady; mounted at MountDir, Refs are the containers using it
	// (zero refs only after a failed unmount).
	PhaseMounted
	// PhaseUnmounting: ActUnmount in flight.
	PhaseUnmounting
	// PhaseDetaching: ActDetach in flight (Nova DELETE, wait for Cinder and the device).
	PhaseDetaching
	// PhaseAttached: steady; attached here but not mounted (after a failed
	// detach, or recovered so after a restart).
	PhaseAttached
)

var phaseNames = [...]string{
	PhaseDetached:      "detached",
	PhaseAttaching:     "attaching",
	PhaseWaitingDevice: "waiting-device",
	PhaseMounting:      "mounting",
	PhaseMounted:       "mounted",
	PhaseUnmounting:    "unmounting",
	PhaseDetaching:     "detaching",
	PhaseAttached:      "attached",
}

func (p Phase) String() string {
	if p >= 0 && int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return fmt.Sprintf("Phase(%d)", int(p))
}

// Steady reports whether no operation is in flight in this phase.
func (p Phase) Steady() bool {
	return p == PhaseDetached || p == PhaseAttached || p == PhaseMounted
}

// MarshalText writes the phase name (the state file stores names, not numbers).
func (p Phase) MarshalText() ([]byte, error) {
	if p < 0 || int(p) >= len(phaseNames) {
		return nil, fmt.Errorf("unknown phase %d", int(p))
	}
	return []byte(phaseNames[p]), nil
}

// UnmarshalText reads a phase name.
func (p *Phase) UnmarshalText(b []byte) error {
	for i, n := range phaseNames {
		if n == string(b) {
			*p = Phase(i)
			return nil
		}
	}
	return fmt.Errorf("unknown phase %q", b)
}

// VolumeState is one volume's node state: what the state machine holds and
// what the state file records.
type VolumeState struct {
	VolumeID string `json:"volume_id"`
	Name     string `json:"name"`
	Phase    Phase  `json:"phase"`
	// FSType to make if the device is blank.
	FSType FSType `json:"fstype,omitempty"`
	// MountDir is <root>/<volume id>; Docker gets MountDir/data.
	MountDir string `json:"mount_dir"`
	// AttachmentID is Nova/Cinder's attachment id while attached here.
	AttachmentID string `json:"attachment_id,omitempty"`
	// Device is the block device found by volume id (never Nova's name).
	Device string `json:"device,omitempty"`
	// Generation is the fencing token this node attached with.
	Generation uint64 `json:"generation,omitempty"`
	// Refs are the Docker mount ids of answered Mount requests: containers
	// using the volume. Sorted.
	Refs []string `json:"refs,omitempty"`
	// Pending are mount ids whose Mount waits for attach/device/mount. Sorted.
	Pending []string `json:"pending,omitempty"`
	// Releasing are mount ids whose Unmount (the last one) waits for the
	// unmount and detach to finish. Sorted.
	Releasing []string `json:"releasing,omitempty"`
	// ForceUnmount: the release in flight is a stale-mount sweep.
	ForceUnmount bool `json:"force_unmount,omitempty"`
	// LastError is the last failure, for Get and logs.
	LastError string `json:"last_error,omitempty"`
}

// DataDir is the path Docker gets for this volume.
func (s VolumeState) DataDir() string { return filepath.Join(s.MountDir, DataDirName) }

func (s VolumeState) clone() VolumeState {
	s.Refs = slices.Clone(s.Refs)
	s.Pending = slices.Clone(s.Pending)
	s.Releasing = slices.Clone(s.Releasing)
	return s
}

// wanted: some container uses or waits for the volume.
func (s VolumeState) wanted() bool { return len(s.Refs)+len(s.Pending) > 0 }

// Event is an input to Volume.Step: a Docker request, or the result of an
// Action the caller performed.
type Event interface{ eventName() string }

// Docker requests and operator triggers.
type (
	// Mount is Docker's Mount(name, id).
	Mount struct{ ID string }
	// Unmount is Docker's Unmount(name, id).
	Unmount struct{ ID string }
	// Release asks an unused volume to unmount and detach (idle sweep, or a
	// holder answering a takeover request). Refused with ErrInUse while a
	// container uses the volume.
	Release struct{}
	// Lost: the volume's device vanished or Cinder says it is no longer
	// attached here (taken over, or detached behind the plugin's back). Refs
	// are dropped, the mount is force-unmounted and the (idempotent) detach
	// is issued.
	Lost struct{ Reason string }
)

// Results of actions.
type (
	// AttachDone: Cinder shows the volume attached to this instance.
	AttachDone struct {
		AttachmentID string
		Generation   uint64
	}
	// AttachFailed: the attach did not happen. MayBeAttached is set when
	// it may still complete (timeout, lost answer): the machine then detaches
	// so that no attachment is left unaccounted for.
	AttachFailed struct {
		Err           error
		MayBeAttached bool
	}
	// DeviceFound: the block device for the volume id exists.
	DeviceFound struct{ Device string }
	// DeviceFailed: the device did not show up in time.
	DeviceFailed struct{ Err error }
	// MountDone: the filesystem is mounted at MountDir and MountDir/data exists.
	MountDone struct{}
	// MountFailed: the mount failed. LeftMounted is set if the filesystem
	// is nevertheless mounted (a later step failed) and must be unmounted.
	MountFailed struct {
		Err         error
		LeftMounted bool
	}
	// UnmountDone: MountDir is no longer a mountpoint.
	UnmountDone struct{}
	// UnmountFailed: the unmount failed (busy...): still mounted.
	UnmountFailed struct{ Err error }
	// DetachDone: Cinder says detached from this instance and the device is gone.
	DetachDone struct{}
	// DetachFailed: still attached.
	DetachFailed struct{ Err error }
)

func (Mount) eventName() string         { return "Mount" }
func (Unmount) eventName() string       { return "Unmount" }
func (Release) eventName() string       { return "Release" }
func (Lost) eventName() string          { return "Lost" }
func (AttachDone) eventName() string    { return "AttachDone" }
func (AttachFailed) eventName() string  { return "AttachFailed" }
func (DeviceFound) eventName() string   { return "DeviceFound" }
func (DeviceFailed) eventName() string  { return "DeviceFailed" }
func (MountDone) eventName() string     { return "MountDone" }
func (MountFailed) eventName() string   { return "MountFailed" }
func (UnmountDone) eventName() string   { return "UnmountDone" }
func (UnmountFailed) eventName() string { return "UnmountFailed" }
func (DetachDone) eventName() string    { return "DetachDone" }
func (DetachFailed) eventName() string  { return "DetachFailed" }

// ActionKind is an I/O operation the caller performs for the machine.
type ActionKind int

const (
	// ActAttach: attach VolumeID to this instance through Nova and wait
	// until Cinder shows it attached. Idempotent: if it is already attached
	// or attaching to this instance, just wait. Report AttachDone or AttachFailed.
	ActAttach ActionKind = iota + 1
	// ActWaitDevice: find the device by volume id and wait for it. Report
	// DeviceFound or DeviceFailed.
	ActWaitDevice
	// ActMount: format Device with FSType only if it carries no signature,
	// mount it at MountDir, create MountDir/data. Report MountDone or MountFailed.
	ActMount
	// ActUnmount: unmount MountDir (Force: force, then lazy if still busy).
	// Report UnmountDone or UnmountFailed.
	ActUnmount
	// ActDetach: detach through Nova and wait until Cinder says detached and
	// the device is gone. Idempotent: not attached here counts as done.
	// Report DetachDone or DetachFailed.
	ActDetach
)

func (k ActionKind) String() string {
	switch k {
	case ActAttach:
		return "attach"
	case ActWaitDevice:
		return "wait-device"
	case ActMount:
		return "mount"
	case ActUnmount:
		return "unmount"
	case ActDetach:
		return "detach"
	}
	return fmt.Sprintf("ActionKind(%d)", int(k))
}

// Action is one I/O step to perform; its fields are what that step needs.
type Action struct {
	Kind         ActionKind
	VolumeID     string
	AttachmentID string // ActDetach (may be empty after a restart: detach by volume id)
	Device       string // ActMount
	MountDir     string // ActMount, ActUnmount
	FSType       FSType // ActMount
	Force        bool   // ActUnmount
}

// ReplyOp says which Docker request a Reply answers.
type ReplyOp int

const (
	ReplyMount ReplyOp = iota + 1
	ReplyUnmount
)

func (o ReplyOp) String() string {
	if o == ReplyMount {
		return "Mount"
	}
	return "Unmount"
}

// Reply answers the Docker request with this mount id.
type Reply struct {
	Op         ReplyOp
	MountID    string
	Mountpoint string // ReplyMount success: the data directory
	Err        error
}

// Ready is what the caller must do after a Step, in this order: if Persist,
// write the state file (write-ahead: a mount id is durable before Docker
// hears success, so a restarted plugin knows every container using a
// volume); perform Actions and feed each result back through Step; send
// Replies.
type Ready struct {
	Persist bool
	Actions []Action
	Replies []Reply
}

// ErrMountCanceled answers a Mount whose id was unmounted before the mount
// finished.
var ErrMountCanceled = errors.New("mount canceled by an unmount with the same id")

// InUseError refuses to release a volume containers on this node use.
// Unwraps to ErrInUse.
type InUseError struct {
	VolumeID string
	MountIDs []string
}

func (e *InUseError) Error() string {
	return fmt.Sprintf("volume %s is in use on this node by %d container mount(s): %s",
		e.VolumeID, len(e.MountIDs), strings.Join(e.MountIDs, ", "))
}

func (e *InUseError) Unwrap() error { return ErrInUse }

// Volume is the pure state machine of one volume on this node. It does no
// I/O: Step returns what to do. Not safe for concurrent use: the caller holds
// the volume's lock around Step and the I/O it asks for.
type Volume struct {
	st VolumeState
}

// NewVolume is a volume in PhaseDetached.
func NewVolume(volumeID, name, mountDir string, fs FSType) *Volume {
	return &Volume{st: VolumeState{VolumeID: volumeID, Name: name, MountDir: mountDir, FSType: fs}}
}

// RestoreVolume resumes a machine from a recovered state (see Reconcile),
// after checking the state's invariants.
func RestoreVolume(st VolumeState) (*Volume, error) {
	if err := st.Check(); err != nil {
		return nil, err
	}
	return &Volume{st: st.clone()}, nil
}

// Check verifies a state's invariants.
func (s VolumeState) Check() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("volume %s: inconsistent state: %s", s.VolumeID, fmt.Sprintf(format, a...))
	}
	switch {
	case !ValidVolumeID(s.VolumeID):
		return fmt.Errorf("inconsistent state: invalid volume id %q", s.VolumeID)
	case s.MountDir == "":
		return bad("no mount dir")
	case s.Phase < PhaseDetached || s.Phase > PhaseAttached:
		return bad("unknown phase %d", int(s.Phase))
	case s.Phase.Steady() && (len(s.Pending) > 0 || len(s.Releasing) > 0):
		return bad("%s with requests waiting", s.Phase)
	case s.Phase == PhaseDetached && len(s.Refs) > 0:
		return bad("detached with mount ids %v", s.Refs)
	case (s.Phase == PhaseMounting || s.Phase == PhaseMounted) && s.Device == "":
		return bad("%s without a device", s.Phase)
	}
	for _, l := range [][]string{s.Refs, s.Pending, s.Releasing} {
		if !slices.IsSorted(l) || len(slices.Compact(slices.Clone(l))) != len(l) {
			return bad("mount id list %v not sorted and unique", l)
		}
	}
	return nil
}

// State returns a copy of the current state.
func (v *Volume) State() VolumeState { return v.st.clone() }

// Phase is the current phase.
func (v *Volume) Phase() Phase { return v.st.Phase }

// CheckRemovable refuses Remove unless the volume is detached from this
// node. (Attachments elsewhere are Cinder's to report.)
func (v *Volume) CheckRemovable() error {
	if v.st.Phase == PhaseDetached {
		return nil
	}
	if len(v.st.Refs) > 0 {
		return &InUseError{VolumeID: v.st.VolumeID, MountIDs: slices.Clone(v.st.Refs)}
	}
	return fmt.Errorf("volume %s is %s on this node: %w", v.st.VolumeID, v.st.Phase, ErrInUse)
}

// Step feeds one event and returns what to do. An event the current phase
// cannot take returns a *TransitionError and leaves the state unchanged.
func (v *Volume) Step(ev Event) (Ready, error) {
	before := v.st.clone()
	var rd Ready
	if err := v.step(ev, &rd); err != nil {
		v.st = before
		return Ready{}, err
	}
	rd.Persist = !reflect.DeepEqual(before, v.st)
	return rd, nil
}

func (v *Volume) illegal(ev Event) error {
	return &TransitionError{VolumeID: v.st.VolumeID, Phase: v.st.Phase, Event: ev.eventName()}
}

func (v *Volume) action(k ActionKind) Action {
	a := Action{Kind: k, VolumeID: v.st.VolumeID}
	switch k {
	case ActMount:
		a.Device, a.MountDir, a.FSType = v.st.Device, v.st.MountDir, v.st.FSType
	case ActUnmount:
		a.MountDir, a.Force = v.st.MountDir, v.st.ForceUnmount
	case ActDetach:
		a.AttachmentID = v.st.AttachmentID
	}
	return a
}

// to moves to phase p and, for a phase with an operation, asks for it.
func (v *Volume) to(p Phase, rd *Ready) {
	v.st.Phase = p
	switch p {
	case PhaseAttaching:
		rd.Actions = append(rd.Actions, v.action(ActAttach))
	case PhaseWaitingDevice:
		v.st.Device = "" // found again by volume id: device names are not stable
		rd.Actions = append(rd.Actions, v.action(ActWaitDevice))
	case PhaseMounting:
		rd.Actions = append(rd.Actions, v.action(ActMount))
	case PhaseUnmounting:
		rd.Actions = append(rd.Actions, v.action(ActUnmount))
	case PhaseDetaching:
		rd.Actions = append(rd.Actions, v.action(ActDetach))
	}
}

// failPending answers every waiting Mount with err.
func (v *Volume) failPending(err error, rd *Ready) {
	for _, id := range v.st.Pending {
		rd.Replies = append(rd.Replies, Reply{Op: ReplyMount, MountID: id, Err: err})
	}
	v.st.Pending = nil
}

// answerReleasing answers the Unmounts that waited for the release.
func (v *Volume) answerReleasing(err error, rd *Ready) {
	for _, id := range v.st.Releasing {
		rd.Replies = append(rd.Replies, Reply{Op: ReplyUnmount, MountID: id, Err: err})
	}
	v.st.Releasing = nil
}

func (v *Volume) step(ev Event, rd *Ready) error {
	s := &v.st
	switch e := ev.(type) {
	case Mount:
		if e.ID == "" {
			return &RequestError{Reason: "mount id is required"}
		}
		switch {
		case s.Phase == PhaseMounted:
			s.Refs = insertSorted(s.Refs, e.ID)
			rd.Replies = append(rd.Replies, Reply{Op: ReplyMount, MountID: e.ID, Mountpoint: s.DataDir()})
			return nil
		case slices.Contains(s.Pending, e.ID):
			return nil // a repeated request; answered with the first
		}
		s.Refs = removeSorted(s.Refs, e.ID) // a ref re-sent while not mounted waits like any mount
		s.Pending = insertSorted(s.Pending, e.ID)
		switch s.Phase {
		case PhaseDetached:
			s.LastError = ""
			v.to(PhaseAttaching, rd)
		case PhaseAttached:
			// Attached but unmounted only after a detach that failed or timed
			// out (Nova may still finish it) or a restart: re-verify through
			// the idempotent attach, which asks Cinder, rather than trust a
			// device that may vanish under the new mount.
			s.AttachmentID, s.Device = "", ""
			v.to(PhaseAttaching, rd)
		}
		// In any other phase an operation is in flight; the mount rides on it.
		return nil

	case Unmount:
		if e.ID == "" {
			return &RequestError{Reason: "mount id is required"}
		}
		switch {
		case slices.Contains(s.Pending, e.ID):
			s.Pending = removeSorted(s.Pending, e.ID)
			rd.Replies = append(rd.Replies,
				Reply{Op: ReplyMount, MountID: e.ID, Err: fmt.Errorf("volume %s: %w", s.VolumeID, ErrMountCanceled)},
				Reply{Op: ReplyUnmount, MountID: e.ID})
		case slices.Contains(s.Refs, e.ID):
			s.Refs = removeSorted(s.Refs, e.ID)
			if len(s.Refs) > 0 || len(s.Pending) > 0 || !s.Phase.Steady() {
				rd.Replies = append(rd.Replies, Reply{Op: ReplyUnmount, MountID: e.ID})
				return nil
			}
			// The last user is gone: release, and answer when done.
			s.Releasing = insertSorted(s.Releasing, e.ID)
			if s.Phase == PhaseMounted {
				v.to(PhaseUnmounting, rd)
			} else {
				v.to(PhaseDetaching, rd)
			}
		default:
			// Unknown id: already unmounted (a repeated request, or one from
			// before a restart that found nothing to keep). Idempotent.
			rd.Replies = append(rd.Replies, Reply{Op: ReplyUnmount, MountID: e.ID})
		}
		return nil

	case Release:
		switch s.Phase {
		case PhaseDetached:
			return nil
		case PhaseMounted, PhaseAttached:
			if len(s.Refs) > 0 {
				return &InUseError{VolumeID: s.VolumeID, MountIDs: slices.Clone(s.Refs)}
			}
			if s.Phase == PhaseMounted {
				v.to(PhaseUnmounting, rd)
			} else {
				v.to(PhaseDetaching, rd)
			}
			return nil
		}
		return v.illegal(ev)

	case Lost:
		switch s.Phase {
		case PhaseDetached:
			return nil
		case PhaseMounted:
			s.Refs, s.ForceUnmount, s.LastError = nil, true, e.Reason
			v.to(PhaseUnmounting, rd)
			return nil
		case PhaseAttached:
			s.Refs, s.LastError = nil, e.Reason
			v.to(PhaseDetaching, rd)
			return nil
		}
		return v.illegal(ev)

	case AttachDone:
		if s.Phase != PhaseAttaching {
			return v.illegal(ev)
		}
		s.AttachmentID, s.Generation = e.AttachmentID, e.Generation
		if s.wanted() {
			v.to(PhaseWaitingDevice, rd)
		} else {
			v.to(PhaseDetaching, rd)
		}
		return nil

	case AttachFailed:
		if s.Phase != PhaseAttaching {
			return v.illegal(ev)
		}
		err := fmt.Errorf("volume %s: attach: %w", s.VolumeID, e.Err)
		s.LastError = err.Error()
		v.failPending(err, rd)
		if e.MayBeAttached {
			v.to(PhaseDetaching, rd)
		} else {
			v.to(PhaseDetached, rd)
		}
		return nil

	case DeviceFound:
		if s.Phase != PhaseWaitingDevice {
			return v.illegal(ev)
		}
		if e.Device == "" {
			return &RequestError{Reason: "DeviceFound without a device"}
		}
		s.Device = e.Device
		if s.wanted() {
			v.to(PhaseMounting, rd)
		} else {
			v.to(PhaseDetaching, rd)
		}
		return nil

	case DeviceFailed:
		if s.Phase != PhaseWaitingDevice {
			return v.illegal(ev)
		}
		err := fmt.Errorf("volume %s: find device: %w", s.VolumeID, e.Err)
		s.LastError = err.Error()
		v.failPending(err, rd)
		if len(s.Refs) > 0 {
			v.to(PhaseAttached, rd) // recovered users: keep the disk
		} else {
			v.to(PhaseDetaching, rd)
		}
		return nil

	case MountDone:
		if s.Phase != PhaseMounting {
			return v.illegal(ev)
		}
		for _, id := range s.Pending {
			s.Refs = insertSorted(s.Refs, id)
			rd.Replies = append(rd.Replies, Reply{Op: ReplyMount, MountID: id, Mountpoint: s.DataDir()})
		}
		s.Pending, s.LastError = nil, ""
		if len(s.Refs) > 0 {
			v.to(PhaseMounted, rd)
		} else {
			v.to(PhaseUnmounting, rd)
		}
		return nil

	case MountFailed:
		if s.Phase != PhaseMounting {
			return v.illegal(ev)
		}
		err := fmt.Errorf("volume %s: mount %s at %s: %w", s.VolumeID, s.Device, s.MountDir, e.Err)
		s.LastError = err.Error()
		v.failPending(err, rd)
		switch {
		case len(s.Refs) > 0 && e.LeftMounted:
			v.to(PhaseMounted, rd)
		case len(s.Refs) > 0:
			v.to(PhaseAttached, rd)
		case e.LeftMounted:
			v.to(PhaseUnmounting, rd)
		default:
			v.to(PhaseDetaching, rd)
		}
		return nil

	case UnmountDone:
		if s.Phase != PhaseUnmounting {
			return v.illegal(ev)
		}
		s.ForceUnmount = false
		v.to(PhaseDetaching, rd)
		return nil

	case UnmountFailed:
		if s.Phase != PhaseUnmounting {
			return v.illegal(ev)
		}
		err := fmt.Errorf("volume %s: unmount %s: %w; the volume stays mounted and attached", s.VolumeID, s.MountDir, e.Err)
		s.LastError, s.ForceUnmount = err.Error(), false
		v.answerReleasing(err, rd)
		// Still mounted: mounts that arrived meanwhile can be served.
		for _, id := range s.Pending {
			s.Refs = insertSorted(s.Refs, id)
			rd.Replies = append(rd.Replies, Reply{Op: ReplyMount, MountID: id, Mountpoint: s.DataDir()})
		}
		s.Pending = nil
		v.to(PhaseMounted, rd)
		return nil

	case DetachDone:
		if s.Phase != PhaseDetaching {
			return v.illegal(ev)
		}
		s.AttachmentID, s.Device = "", ""
		v.answerReleasing(nil, rd)
		if len(s.Pending) > 0 {
			v.to(PhaseAttaching, rd)
		} else {
			v.to(PhaseDetached, rd)
		}
		return nil

	case DetachFailed:
		if s.Phase != PhaseDetaching {
			return v.illegal(ev)
		}
		err := fmt.Errorf("volume %s: detach from this instance: %w; the volume stays attached", s.VolumeID, e.Err)
		s.LastError = err.Error()
		v.answerReleasing(err, rd)
		if len(s.Pending) > 0 {
			s.AttachmentID, s.Device = "", "" // the detach may still complete: re-verify (see Mount)
			v.to(PhaseAttaching, rd)
		} else {
			v.to(PhaseAttached, rd)
		}
		return nil
	}
	return fmt.Errorf("volume %s: unknown event %T: %w", s.VolumeID, ev, ErrIllegalTransition)
}

func insertSorted(l []string, s string) []string {
	i, found := slices.BinarySearch(l, s)
	if found {
		return l
	}
	return slices.Insert(l, i, s)
}

func removeSorted(l []string, s string) []string {
	i, found := slices.BinarySearch(l, s)
	if !found {
		return l
	}
	l = slices.Delete(l, i, i+1)
	if len(l) == 0 {
		return nil
	}
	return l
}

// sortedUnique returns a sorted copy without duplicates (nil when empty).
func sortedUnique(l []string) []string {
	if len(l) == 0 {
		return nil
	}
	c := slices.Clone(l)
	sort.Strings(c)
	return slices.Compact(c)
}
