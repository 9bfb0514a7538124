package reconciler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cinderwarden/cinderwarden/libvirtscan"
	"github.com/cinderwarden/cinderwarden/openstack"
)

// Actor is the act step: it carries out Result.Executable(), re-reading
// each action's items just before acting.
type Actor struct {
	// Observer supplies the host name, the libvirt connection, the cloud
	// client and the mount settings used to re-read items.
	Observer *Observer
	// Audit receives one record per action (required).
	Audit *AuditLog
	// Detach bounds each live detach (nova: 20 s × 8 attempts; zero
	// values take libvirtscan's defaults).
	Detach libvirtscan.DetachOptions
	// RetryTimeout bounds the single live attempt of a retry (an action with
	// LiveRetry: an earlier run left the live detach pending); default
	// DefaultRetryTimeout.
	RetryTimeout time.Duration
	// Now defaults to time.Now.
	Now func() time.Time
}

// DefaultRetryTimeout is how long the one live attempt of a pending
// detach's retry waits for the guest.
const DefaultRetryTimeout = 5 * time.Second

// ErrAudit is wrapped when the audit log cannot be written; no further
// action runs after it.
var ErrAudit = errors.New("audit log write failed")

// Execute runs every executable action of r in order and records each
// outcome in r (SetOutcome) and in the audit log:
//
//   - libvirt_detach: done when the disk left both definitions, pending when
//     it left the persistent one but the guest has not acknowledged the
//     live unplug (a firmware-only or hung guest). A pending live detach is
//     remembered in r.Memory (NoteLiveDetach); a later run's retry
//     (Action.LiveRetry) makes one attempt of RetryTimeout and stays
//     pending unless the guest acknowledges;
//   - cinder_attachment_delete, nova_detach: done once the API accepted it
//     (an attachment already gone counts as done);
//   - lazy_unmount: done after umount -l.
//
// An action whose preconditions no longer hold is precondition_failed (not
// an error). Execute returns an error only when the audit log cannot be
// written; the remaining actions are then marked failed and not run.
func (a *Actor) Execute(ctx context.Context, r *Result) error {
	now := a.Now
	if now == nil {
		now = time.Now
	}
	acts := r.Executable()
	for i, act := range acts {
		if err := ctx.Err(); err != nil {
			for _, rest := range acts[i:] {
				r.SetOutcome(rest.FindingKey, rest.Kind, StateFailed, "not run: "+err.Error())
			}
			return nil
		}
		state, reason, before, after, actErr := a.one(ctx, r, act, now)
		rec := NewAuditRecord(now(), r.Host, act, state, before, after, actErr)
		r.SetOutcome(act.FindingKey, act.Kind, state, reason)
		a.Observer.log().Info("reconcile action", "action", act.Kind, "target", act.Target(), "result", state, "reason", reason)
		if err := a.Audit.Append(rec); err != nil {
			r.SetOutcome(act.FindingKey, act.Kind, StateFailed, reason+"; "+err.Error())
			for _, rest := range acts[i+1:] {
				r.SetOutcome(rest.FindingKey, rest.Kind, StateFailed, "not run: audit log unwritable")
			}
			return fmt.Errorf("%w: %w", ErrAudit, err)
		}
	}
	return nil
}

// one re-reads, re-checks and runs one action.
func (a *Actor) one(ctx context.Context, r *Result, act Action, now func() time.Time) (state ActionState, reason string, before, after any, err error) {
	fresh := a.Fresh(ctx, act)
	before = itemView(act, fresh)
	if err := CheckPreconditions(act, fresh); err != nil {
		if errors.Is(err, ErrReread) {
			// Not a discrepancy that cleared: we could not look. An error
			// of the run (exit 2), and nothing was done.
			return StateFailed, err.Error(), before, nil, err
		}
		return StatePreconditionFailed, err.Error(), before, nil, err
	}
	o := a.Observer
	switch act.Kind {
	case ActionLibvirtDetach:
		sel := selectorFor(act.Disk)
		opts := a.Detach
		if act.LiveRetry {
			opts = libvirtscan.DetachOptions{Timeout: a.RetryTimeout, Attempts: 1}
			if opts.Timeout <= 0 {
				opts.Timeout = DefaultRetryTimeout
			}
		}
		res, err := o.Libvirt.DetachDisk(ctx, act.Domain, sel, opts)
		after = a.afterView(ctx, act)
		if err != nil {
			return StateFailed, err.Error(), before, after, err
		}
		after = map[string]any{"detach": res, "domain": after}
		pending := res.Live == libvirtscan.OutcomePending
		p, _ := r.NoteLiveDetach(act.FindingKey, pending, res.LiveAttempts, now())
		switch {
		case pending && act.LiveRetry:
			return StatePending, fmt.Sprintf("live removal still pending since %s: one more attempt (%s) not acknowledged, %d attempts so far; the persistent config no longer has the disk",
				p.Since.Format(time.RFC3339), opts.Timeout, p.Attempts), before, after, nil
		case pending:
			return StatePending, fmt.Sprintf("removed from the persistent config (%s); live removal pending: the guest did not acknowledge the unplug after %d attempts", res.Config, res.LiveAttempts), before, after, nil
		}
		return StateDone, fmt.Sprintf("config %s, live %s (device-removed event seen: %v)", res.Config, res.Live, res.RemovedEvent), before, after, nil
	case ActionCinderAttachmentDelete:
		err := o.Cloud.DeleteAttachment(ctx, act.Attachment)
		after = a.afterView(ctx, act)
		if errors.Is(err, openstack.ErrNotFound) {
			return StateDone, "attachment " + act.Attachment + " was already gone", before, after, nil
		}
		if err != nil {
			return StateFailed, err.Error(), before, after, err
		}
		return StateDone, "attachment " + act.Attachment + " deleted", before, after, nil
	case ActionNovaDetach:
		if err := o.Cloud.DetachVolume(ctx, act.Instance, act.Volume); err != nil {
			return StateFailed, err.Error(), before, a.afterView(ctx, act), err
		}
		return StateDone, "Nova accepted the detach (it finishes asynchronously)", before, a.afterView(ctx, act), nil
	case ActionLazyUnmount:
		if err := lazyUnmount(act.Mountpoint); err != nil {
			return StateFailed, err.Error(), before, a.afterView(ctx, act), err
		}
		return StateDone, "lazily unmounted", before, a.afterView(ctx, act), nil
	}
	err = fmt.Errorf("unknown action kind %q", act.Kind)
	return StateFailed, err.Error(), before, nil, err
}

// selectorFor finds the disk again by serial, else alias, else source;
// never by target.
func selectorFor(d *Disk) libvirtscan.DiskSelector {
	switch {
	case d == nil:
		return libvirtscan.DiskSelector{}
	case d.Serial != "":
		return libvirtscan.DiskSelector{Serial: d.Serial}
	case d.Alias != "":
		return libvirtscan.DiskSelector{Alias: d.Alias}
	}
	return libvirtscan.DiskSelector{Source: d.Source}
}

func (a *Actor) afterView(ctx context.Context, act Action) any {
	return itemView(act, a.Fresh(ctx, act))
}

// Fresh re-reads exactly the items act's preconditions name: one domain
// (all of them for a mount-in-use check), one volume with its attachment
// records, one server, one mountpoint. Sources it does not need stay
// unreported, so CheckPreconditions refuses any check that would need them.
func (a *Actor) Fresh(ctx context.Context, act Action) Observation {
	o := a.Observer
	fresh := Observation{Host: o.Host}
	need := map[CheckKind]Precondition{}
	for _, p := range act.Preconditions {
		need[p.Check] = p
	}
	has := func(ks ...CheckKind) (Precondition, bool) {
		for _, k := range ks {
			if p, ok := need[k]; ok {
				return p, true
			}
		}
		return Precondition{}, false
	}
	if _, ok := has(CheckMountUnused); ok {
		fresh.Libvirt = o.observeLibvirt(ctx)
	} else if p, ok := has(CheckDomainHasDisk, CheckDomainLacksDisk); ok {
		fresh.Libvirt = o.freshDomain(ctx, p.Domain)
	}
	if p, ok := has(CheckVolumeSettled, CheckNoCinderAttachment, CheckCinderAttachmentPresent); ok {
		fresh.Cinder = o.freshVolume(ctx, p.Volume)
	}
	if p, ok := has(CheckServerIdle, CheckNoNovaMapping, CheckNovaMappingPresent); ok {
		fresh.Nova = o.freshServer(ctx, p.Instance)
	}
	if p, ok := has(CheckMountSourceGone); ok {
		fresh.Mounts = o.freshMount(ctx, p.Mountpoint)
	}
	return fresh
}

func (o *Observer) freshDomain(ctx context.Context, uuid string) Libvirt {
	d, err := o.Libvirt.Domain(ctx, uuid)
	if errors.Is(err, libvirtscan.ErrDomainNotFound) {
		return Libvirt{Source: SourceStatus{State: SourceOK}}
	}
	if err != nil {
		return Libvirt{Source: SourceStatus{State: SourceFailed, Reason: err.Error()}}
	}
	return Libvirt{Source: SourceStatus{State: SourceOK}, Domains: []Domain{DomainFromScan(d)}}
}

func (o *Observer) freshVolume(ctx context.Context, id string) Cinder {
	v, err := o.Cloud.GetVolume(ctx, id)
	if errors.Is(err, openstack.ErrNotFound) {
		return Cinder{Source: SourceStatus{State: SourceOK}}
	}
	if err != nil {
		return Cinder{Source: SourceStatus{State: SourceFailed, Reason: err.Error()}}
	}
	recs, err := o.Cloud.ListAttachments(ctx, openstack.AttachmentFilter{VolumeID: id, AllTenants: true})
	if err != nil {
		return Cinder{Source: SourceStatus{State: SourceFailed, Reason: err.Error()}}
	}
	return Cinder{Source: SourceStatus{State: SourceOK}, Volumes: []Volume{VolumeFromCinder(*v, recs)}}
}

func (o *Observer) freshServer(ctx context.Context, id string) Nova {
	if o.Cloud == nil || !o.Cloud.HasCompute() {
		return Nova{Source: SourceStatus{State: SourceNotConfigured}}
	}
	s, err := o.Cloud.GetServer(ctx, id)
	if errors.Is(err, openstack.ErrNotFound) {
		return Nova{Source: SourceStatus{State: SourceOK}}
	}
	if err != nil {
		return Nova{Source: SourceStatus{State: SourceFailed, Reason: err.Error()}}
	}
	return Nova{Source: SourceStatus{State: SourceOK}, Servers: []Server{ServerFromNova(*s)}}
}

func (o *Observer) freshMount(ctx context.Context, mountpoint string) Mounts {
	timeout := o.MountProbeTimeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	es, err := mountEntry(ctx, mountpoint, timeout)
	if err != nil {
		return Mounts{Source: SourceStatus{State: SourceFailed, Reason: err.Error()}}
	}
	return Mounts{Source: SourceStatus{State: SourceOK}, Entries: es}
}

// itemView is the part of a fresh observation an audit record shows.
func itemView(act Action, fresh Observation) any {
	v := map[string]any{}
	if fresh.Libvirt.Source.State != "" {
		var disks []Disk
		for _, d := range fresh.Libvirt.Domains {
			if !equalFoldID(d.UUID, act.Domain) {
				continue
			}
			for _, disk := range d.Disks {
				if diskMatches(disk, act) {
					disks = append(disks, disk)
				}
			}
		}
		v["libvirt"] = map[string]any{"source": fresh.Libvirt.Source, "disks": disks}
	}
	if fresh.Cinder.Source.State != "" {
		v["cinder"] = map[string]any{"source": fresh.Cinder.Source, "volumes": fresh.Cinder.Volumes}
	}
	if fresh.Nova.Source.State != "" {
		v["nova"] = map[string]any{"source": fresh.Nova.Source, "servers": fresh.Nova.Servers}
	}
	if fresh.Mounts.Source.State != "" {
		v["mounts"] = map[string]any{"source": fresh.Mounts.Source, "entries": fresh.Mounts.Entries}
	}
	return v
}

func equalFoldID(a, b string) bool { return a != "" && strings.EqualFold(a, b) }

func diskMatches(d Disk, act Action) bool {
	vol := strings.ToLower(act.Volume)
	switch {
	case vol != "" && strings.ToLower(d.Serial) == vol:
		return true
	case vol != "" && strings.ToLower(d.Alias) == "ua-"+vol:
		return true
	case act.Disk != nil && act.Disk.Source != "" && d.Source == act.Disk.Source:
		return true
	}
	return false
}
