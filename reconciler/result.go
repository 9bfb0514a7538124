package reconciler

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Class is a kind of discrepancy.
type Class string

const (
	// ClassZombieDisk: the domain has the disk; Nova has no mapping and
	// Cinder no attachment for this instance. Remedy: libvirt detach,
	// persistent config first, then live.
	ClassZombieDisk Class = "zombie_disk"
	// ClassStaleCinderAttachment: Cinder has an attachment for an instance
	// on this host; the domain lacks the disk and Nova has no mapping.
	// Remedy: Cinder attachment delete.
	ClassStaleCinderAttachment Class = "stale_cinder_attachment"
	// ClassMappingDiskMissing: Nova and Cinder say attached; the domain
	// lacks the disk. Report; optionally Nova detach.
	ClassMappingDiskMissing Class = "mapping_disk_missing"
	// ClassStaleNovaMapping: Nova maps the volume but its Cinder attachment
	// is gone. Report only (a reboot lets Nova clean it).
	ClassStaleNovaMapping Class = "stale_nova_mapping"
	// ClassDeviceNameMismatch: Nova's or Cinder's device name differs from
	// the domain's target. Report only; names are not authoritative.
	ClassDeviceNameMismatch Class = "device_name_mismatch"
	// ClassUnknownDomain: a libvirt domain Nova does not place on this
	// host (a leftover holding resources, or a migration's other half).
	// Report only.
	ClassUnknownDomain Class = "unknown_domain"
	// ClassStaleMount: a mount under a configured base whose source is
	// gone. Remedy: lazy unmount.
	ClassStaleMount Class = "stale_mount"
)

// Severity orders findings for humans and for the action cap.
type Severity string

const (
	SeverityInfo     Severity = "info"
	SeverityWarning  Severity = "warning"
	SeverityCritical Severity = "critical"
)

func (s Severity) rank() int {
	switch s {
	case SeverityCritical:
		return 2
	case SeverityWarning:
		return 1
	}
	return 0
}

// Finding is one discrepancy seen in this run.
type Finding struct {
	// Key identifies the discrepancy across runs (class plus the ids it is
	// about, never a device name); memory counts sightings under it.
	Key        string   `json:"key"`
	Class      Class    `json:"class"`
	Severity   Severity `json:"severity"`
	Domain     string   `json:"domain,omitempty"`      // libvirt domain UUID
	DomainName string   `json:"domain_name,omitempty"` // libvirt domain name
	Instance   string   `json:"instance,omitempty"`    // Nova instance UUID
	Volume     string   `json:"volume,omitempty"`      // Cinder volume id
	Attachment string   `json:"attachment,omitempty"`  // Cinder attachment id
	Disk       string   `json:"disk,omitempty"`        // domain target, for humans only
	Mountpoint string   `json:"mountpoint,omitempty"`
	Detail     string   `json:"detail"`
	// Sightings is how many consecutive runs saw it, this one included (0
	// when the run was aborted or the item is in transition).
	Sightings int `json:"sightings"`
	// FirstSeen is the first of those sightings.
	FirstSeen time.Time `json:"first_seen,omitzero"`
	// Skipped says why the item is left alone and its sighting counter
	// reset (transitional task state, migration, volume state).
	Skipped string `json:"skipped,omitempty"`
	// LiveDetachPendingSince is set on a zombie disk whose live detach an
	// earlier run left pending (Memory.PendingDetaches): the disk is out of
	// the persistent config, the guest has not acknowledged the unplug.
	LiveDetachPendingSince time.Time `json:"live_detach_pending_since,omitzero"`
}

// ActionKind is a remedy. None of them deletes a volume; there is no kind
// that could.
type ActionKind string

const (
	// ActionLibvirtDetach detaches the disk like nova-compute: persistent
	// config first, then live with a DEVICE_REMOVED wait.
	ActionLibvirtDetach ActionKind = "libvirt_detach"
	// ActionCinderAttachmentDelete deletes one Cinder attachment record
	// (DELETE /attachments/{id}); the volume stays.
	ActionCinderAttachmentDelete ActionKind = "cinder_attachment_delete"
	// ActionNovaDetach asks Nova to detach the volume from the server
	// (DELETE /servers/{id}/os-volume_attachments/{volume}).
	ActionNovaDetach ActionKind = "nova_detach"
	// ActionLazyUnmount unmounts a stale mount with MNT_DETACH.
	ActionLazyUnmount ActionKind = "lazy_unmount"
)

// ActionState is where an action stands after Plan (and, filled in by the
// act step, after execution).
type ActionState string

const (
	// StateReady: all gates passed and Policy.Apply is set; the act step
	// executes it after re-checking its preconditions.
	StateReady ActionState = "ready"
	// StateDryRun: all gates passed but the run is a dry-run.
	StateDryRun ActionState = "dry_run"
	// StateWaiting: not seen in enough runs or for long enough yet.
	StateWaiting ActionState = "waiting"
	// StateBlocked: a safety gate forbids it (Reason says which).
	StateBlocked ActionState = "blocked"
	// StateDeferred: over the per-run action cap; a later run takes it.
	StateDeferred ActionState = "deferred"
	// StateAborted: a source failed or looked suspiciously empty; no
	// action of this run may run.
	StateAborted ActionState = "aborted"

	// States set by the act step.
	StateDone               ActionState = "done"
	StatePending            ActionState = "pending" // e.g. live detach not yet acknowledged by the guest
	StateFailed             ActionState = "failed"
	StatePreconditionFailed ActionState = "precondition_failed"
)

// Action is one remedy with its target and the preconditions the act step
// must re-check against freshly read state just before acting.
type Action struct {
	Kind       ActionKind `json:"kind"`
	FindingKey string     `json:"finding_key"`
	Class      Class      `json:"class"`
	Severity   Severity   `json:"severity"`
	Domain     string     `json:"domain,omitempty"`
	DomainName string     `json:"domain_name,omitempty"`
	Instance   string     `json:"instance,omitempty"`
	Volume     string     `json:"volume,omitempty"`
	Attachment string     `json:"attachment,omitempty"`
	Mountpoint string     `json:"mountpoint,omitempty"`
	// Disk is the disk to detach as libvirt showed it; the act step finds
	// it again by serial, alias or source, never by Target.
	Disk *Disk `json:"disk,omitempty"`
	// Config and Live say which definitions to detach from (libvirt_detach).
	Config bool `json:"config,omitempty"`
	Live   bool `json:"live,omitempty"`
	// LiveRetry (libvirt_detach, live only): an earlier run left this live
	// detach pending; ask once more with a single short attempt instead of
	// nova's full timeout × attempts, and report it pending again unless the
	// guest acknowledges.
	LiveRetry bool `json:"live_retry,omitempty"`

	Preconditions []Precondition `json:"preconditions"`
	State         ActionState    `json:"state"`
	Reason        string         `json:"reason,omitempty"` // why blocked/waiting/deferred/aborted, or the act outcome
}

// Target is a short human description of what the action touches.
func (a Action) Target() string {
	switch a.Kind {
	case ActionLibvirtDetach:
		return fmt.Sprintf("domain %s volume %s", nameOr(a.DomainName, a.Domain), a.Volume)
	case ActionCinderAttachmentDelete:
		return fmt.Sprintf("volume %s attachment %s", a.Volume, a.Attachment)
	case ActionNovaDetach:
		return fmt.Sprintf("server %s volume %s", a.Instance, a.Volume)
	case ActionLazyUnmount:
		return "mount " + a.Mountpoint
	}
	return string(a.Kind)
}

func nameOr(name, id string) string {
	if name != "" {
		return name
	}
	return id
}

// Result is what Plan decided.
type Result struct {
	Host string    `json:"host"`
	Time time.Time `json:"time"`
	// DryRun is !Policy.Apply.
	DryRun bool `json:"dry_run"`
	// Aborted is set when no action may run this run; AbortReasons say why.
	Aborted      bool                    `json:"aborted"`
	AbortReasons []string                `json:"abort_reasons,omitempty"`
	Sources      map[string]SourceStatus `json:"sources"`
	Findings     []Finding               `json:"findings"`
	Actions      []Action                `json:"actions"`
	// Memory is the sighting memory to save for the next run.
	Memory Memory `json:"-"`
}

// Executable returns the actions the act step must carry out: those in
// StateReady, in cap order (most severe first).
func (r Result) Executable() []Action {
	var out []Action
	for _, a := range r.Actions {
		if a.State == StateReady {
			out = append(out, a)
		}
	}
	sortActionsForCap(out)
	return out
}

// SetOutcome records what the act step did with the action for findingKey:
// StateDone, StatePending, StateFailed or StatePreconditionFailed, with a
// reason. It reports whether such an action was found.
func (r *Result) SetOutcome(findingKey string, kind ActionKind, state ActionState, reason string) bool {
	for i := range r.Actions {
		if a := &r.Actions[i]; a.FindingKey == findingKey && a.Kind == kind {
			a.State, a.Reason = state, reason
			return true
		}
	}
	return false
}

// Exit codes of `cinderwarden reconcile`.
const (
	ExitClean    = 0 // no warning or critical findings, every source complete, no action failed
	ExitFindings = 1 // warning or critical findings (acted on or not), no error
	ExitError    = 2 // a source failed or looked empty, the run aborted, or an action failed
)

// ExitCode maps a Result to the process exit code: errors win over
// findings, findings over clean. Only findings that need attention count:
// info findings (device-name mismatches, which Nova produces routinely) and
// findings skipped because their item is in transition (an attach in
// progress, a migrating instance) are reported but leave the exit code at 0.
// A precondition that no longer holds at act time is not an error either
// (the discrepancy cleared by itself).
func ExitCode(r Result) int {
	if r.Aborted {
		return ExitError
	}
	for _, a := range r.Actions {
		if a.State == StateFailed {
			return ExitError
		}
	}
	for _, f := range r.Findings {
		if f.Skipped == "" && f.Severity != SeverityInfo {
			return ExitFindings
		}
	}
	return ExitClean
}

// NoteLiveDetach records in r.Memory what the libvirt_detach action for
// findingKey did to the live definition: pending (the guest did not
// acknowledge; attempts live requests were made this run, at at) keeps or
// starts a PendingDetach and returns it; not pending (removed, or not there
// any more) forgets it. It reports false when r has no such action. It is
// pure: the act step calls it, and the caller saves r.Memory afterwards.
func (r *Result) NoteLiveDetach(findingKey string, pending bool, attempts int, at time.Time) (PendingDetach, bool) {
	var act *Action
	for i := range r.Actions {
		if a := &r.Actions[i]; a.FindingKey == findingKey && a.Kind == ActionLibvirtDetach {
			act = a
			break
		}
	}
	if act == nil {
		return PendingDetach{}, false
	}
	if !pending {
		delete(r.Memory.PendingDetaches, findingKey)
		return PendingDetach{}, true
	}
	at = at.UTC()
	p, had := r.Memory.PendingDetaches[findingKey]
	if !had || at.Before(p.LastAttempt) {
		p = PendingDetach{Domain: act.Domain, Volume: act.Volume, Since: at}
	}
	if attempts < 1 {
		attempts = 1
	}
	if p.Attempts <= math.MaxInt-attempts {
		p.Attempts += attempts
	}
	p.LastAttempt = at
	if r.Memory.PendingDetaches == nil {
		r.Memory.PendingDetaches = map[string]PendingDetach{}
	}
	r.Memory.PendingDetaches[findingKey] = p
	return p, true
}

func joinReasons(rs []string) string { return strings.Join(rs, "; ") }
