package reconciler

import (
	"errors"
	"fmt"
	"strings"
)

// CheckKind names one precondition an action needs right before it runs.
type CheckKind string

const (
	// CheckDomainHasDisk: the domain still has a disk for the volume
	// (matched by serial, alias or source) in either definition.
	CheckDomainHasDisk CheckKind = "domain_has_disk"
	// CheckDomainLacksDisk: the domain exists and has no disk for the volume.
	CheckDomainLacksDisk CheckKind = "domain_lacks_disk"
	// CheckVolumeSettled: the volume is available or in-use and none of its
	// attachments is attaching/detaching/reserved/error_*.
	CheckVolumeSettled CheckKind = "volume_settled"
	// CheckNoCinderAttachment: Cinder has no live attachment of the volume
	// to the instance.
	CheckNoCinderAttachment CheckKind = "cinder_no_attachment"
	// CheckCinderAttachmentPresent: the attachment still exists, for the
	// instance.
	CheckCinderAttachmentPresent CheckKind = "cinder_attachment_present"
	// CheckNoNovaMapping: Nova has no mapping of the volume on the server.
	CheckNoNovaMapping CheckKind = "nova_no_mapping"
	// CheckNovaMappingPresent: Nova still maps the volume on the server.
	CheckNovaMappingPresent CheckKind = "nova_mapping_present"
	// CheckServerIdle: the server is on this host, has no task state, no
	// migration and a settled vm_state.
	CheckServerIdle CheckKind = "server_idle"
	// CheckMountSourceGone: the mount is still there and its source gone.
	CheckMountSourceGone CheckKind = "mount_source_gone"
	// CheckMountUnused: no domain disk has its source below the mountpoint.
	CheckMountUnused CheckKind = "mount_unused"
)

// Precondition is one check of freshly read state; only the fields its
// Check needs are set.
type Precondition struct {
	Check      CheckKind `json:"check"`
	Domain     string    `json:"domain,omitempty"`
	Instance   string    `json:"instance,omitempty"`
	Volume     string    `json:"volume,omitempty"`
	Attachment string    `json:"attachment,omitempty"`
	Mountpoint string    `json:"mountpoint,omitempty"`
}

func (p Precondition) String() string {
	var parts []string
	for _, kv := range [][2]string{{"domain", p.Domain}, {"instance", p.Instance}, {"volume", p.Volume}, {"attachment", p.Attachment}, {"mountpoint", p.Mountpoint}} {
		if kv[1] != "" {
			parts = append(parts, kv[0]+"="+kv[1])
		}
	}
	return string(p.Check) + "(" + strings.Join(parts, " ") + ")"
}

// ErrPreconditionFailed is wrapped by every CheckPreconditions error: the
// state changed (or could not be re-read) since Plan, so the action must not
// run. It is not a failure of the run; the next run looks again.
var ErrPreconditionFailed = errors.New("precondition no longer holds")

// PreconditionError names the precondition that failed and why.
type PreconditionError struct {
	Precondition Precondition
	Reason       string
	// Unread is true when the precondition could not be checked because a
	// source failed on the re-read (libvirtd restarted, Cinder down): that
	// is an error of the run, not a discrepancy that cleared by itself.
	Unread bool
}

func (e *PreconditionError) Error() string {
	return fmt.Sprintf("%s: %s: %s", e.Precondition, ErrPreconditionFailed, e.Reason)
}

func (e *PreconditionError) Unwrap() []error {
	if e.Unread {
		return []error{ErrPreconditionFailed, ErrReread}
	}
	return []error{ErrPreconditionFailed}
}

// ErrReread marks a precondition that could not be checked because the
// re-read of a source failed.
var ErrReread = errors.New("re-read before acting failed")

// CheckPreconditions re-checks every precondition of a against fresh, the
// state of the action's items re-read just before acting (the act step
// reads only what the preconditions name: one domain, one volume, one
// server, the mount table). Each source a check needs must be SourceOK in
// fresh. It returns nil when the action may run, else a *PreconditionError
// wrapping ErrPreconditionFailed.
func CheckPreconditions(a Action, fresh Observation) error {
	switch a.Kind {
	case ActionLibvirtDetach, ActionCinderAttachmentDelete, ActionNovaDetach, ActionLazyUnmount:
	default:
		return &PreconditionError{Precondition: Precondition{Check: "known_action"}, Reason: fmt.Sprintf("unknown action kind %q", a.Kind)}
	}
	if len(a.Preconditions) == 0 {
		return &PreconditionError{Precondition: Precondition{Check: "has_preconditions"}, Reason: "action has no preconditions"}
	}
	ok := func(s SourceStatus) bool { return s.State == SourceOK }
	ix := buildIndex(fresh, ok(fresh.Libvirt.Source), ok(fresh.Nova.Source), ok(fresh.Cinder.Source))
	for _, p := range a.Preconditions {
		if reason, unread := check(p, fresh, ix); reason != "" {
			return &PreconditionError{Precondition: p, Reason: reason, Unread: unread}
		}
	}
	return nil
}

// check returns "" when p holds, else why not; unread says the reason is a
// source that failed on the re-read.
func check(p Precondition, fresh Observation, ix *index) (reason string, unread bool) {
	need := func(name string, s SourceStatus) string {
		if s.State != SourceOK {
			unread = true
			return fmt.Sprintf("%s not re-read (%s)", name, quoteOr(string(s.State), "no state"))
		}
		return ""
	}
	return checkWith(p, fresh, ix, need), unread
}

// checkWith checks p against fresh; need says why a source p depends on
// cannot be trusted, or "".
func checkWith(p Precondition, fresh Observation, ix *index, need func(name string, s SourceStatus) string) string {
	inst, vol := strings.ToLower(p.Instance), strings.ToLower(p.Volume)
	switch p.Check {
	case CheckDomainHasDisk, CheckDomainLacksDisk:
		if r := need("libvirt", fresh.Libvirt.Source); r != "" {
			return r
		}
		var d *Domain
		for _, x := range ix.domains {
			if strings.EqualFold(x.UUID, p.Domain) {
				d = x
			}
		}
		if d == nil {
			return "domain " + p.Domain + " is gone"
		}
		ref, has := ix.disks[ivKey{d.InstanceID(), vol}]
		if p.Check == CheckDomainHasDisk && !has {
			return "domain " + d.Name + " no longer has a disk for volume " + p.Volume
		}
		if p.Check == CheckDomainLacksDisk && has {
			return "domain " + d.Name + " now has disk " + ref.disk.Target + " for volume " + p.Volume
		}
	case CheckVolumeSettled, CheckNoCinderAttachment, CheckCinderAttachmentPresent:
		if r := need("cinder", fresh.Cinder.Source); r != "" {
			return r
		}
		v := ix.volumes[vol]
		if v == nil {
			return "volume " + p.Volume + " is not in Cinder"
		}
		switch p.Check {
		case CheckVolumeSettled:
			return volumeSkip(v)
		case CheckNoCinderAttachment:
			if a := liveAttachment(v, inst); a != nil {
				return "Cinder now has attachment " + a.ID + " for instance " + p.Instance
			}
		case CheckCinderAttachmentPresent:
			a := attachmentByID(v, p.Attachment)
			if a == nil {
				return "attachment " + p.Attachment + " is gone"
			}
			if !strings.EqualFold(a.ServerID, inst) {
				return "attachment " + p.Attachment + " now belongs to instance " + quoteOr(a.ServerID, "none")
			}
		}
	case CheckNoNovaMapping, CheckNovaMappingPresent, CheckServerIdle:
		if r := need("nova", fresh.Nova.Source); r != "" {
			return r
		}
		s := ix.servers[inst]
		switch p.Check {
		case CheckServerIdle:
			if s == nil {
				return "server " + p.Instance + " is not on host " + fresh.Host
			}
			return serverSkip(s, fresh.Host)
		case CheckNoNovaMapping:
			if _, mapped := ix.mappings[ivKey{inst, vol}]; mapped {
				return "Nova now maps volume " + p.Volume + " on server " + p.Instance
			}
		case CheckNovaMappingPresent:
			if _, mapped := ix.mappings[ivKey{inst, vol}]; !mapped {
				return "Nova no longer maps volume " + p.Volume + " on server " + p.Instance
			}
		}
	case CheckMountSourceGone:
		if r := need("mounts", fresh.Mounts.Source); r != "" {
			return r
		}
		for _, e := range fresh.Mounts.Entries {
			if e.Mountpoint == p.Mountpoint {
				if e.SourceState != MountSourceGone {
					return "source of " + p.Mountpoint + " is " + quoteOr(string(e.SourceState), "unknown")
				}
				return ""
			}
		}
		return p.Mountpoint + " is no longer mounted"
	case CheckMountUnused:
		if r := need("libvirt", fresh.Libvirt.Source); r != "" {
			return r
		}
		if u := mountUser(ix, p.Mountpoint); u != "" {
			return "in use: " + u
		}
	default:
		return fmt.Sprintf("unknown check %q", p.Check)
	}
	return ""
}
