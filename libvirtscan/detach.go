package libvirtscan

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/digitalocean/go-libvirt"
)

// Nova's [libvirt] device_detach_timeout and device_detach_attempts.
const (
	DefaultDetachTimeout  = 20 * time.Second
	DefaultDetachAttempts = 8
)

// ErrAmbiguousDisk is wrapped when a selector matches more than one disk.
var ErrAmbiguousDisk = errors.New("selector matches more than one disk")

// ErrDetachFailed is wrapped when libvirt accepted a persistent detach but
// the disk is still in the persistent definition.
var ErrDetachFailed = errors.New("disk still present after detach")

// DiskSelector identifies one disk. Every non-empty field must match; at
// least one must be set. Prefer Serial (the volume id), then Alias, then
// Source: target names are hints to the guest and may differ between the
// live and the persistent definition.
type DiskSelector struct {
	Serial string
	Alias  string
	// Source matches Source.String(), the file or device path, or the
	// network name (rbd volumes/volume-<id>).
	Source string
	Target string
}

// Matches reports whether d is the disk the selector names.
func (s DiskSelector) Matches(d Disk) bool {
	if s == (DiskSelector{}) {
		return false
	}
	if s.Serial != "" && s.Serial != d.Serial {
		return false
	}
	if s.Alias != "" && s.Alias != d.Alias {
		return false
	}
	if s.Target != "" && s.Target != d.Target {
		return false
	}
	if s.Source != "" {
		src := d.Source
		if s.Source != src.String() && s.Source != src.Path && (src.Name == "" || s.Source != src.Name) {
			return false
		}
	}
	return true
}

func (s DiskSelector) String() string {
	return fmt.Sprintf("disk{serial=%q alias=%q source=%q target=%q}", s.Serial, s.Alias, s.Source, s.Target)
}

// find returns the one matching disk of def.
func (s DiskSelector) find(def *Definition) (Disk, bool, error) {
	var found []Disk
	for _, d := range def.Disks {
		if s.Matches(d) {
			found = append(found, d)
		}
	}
	switch len(found) {
	case 0:
		return Disk{}, false, nil
	case 1:
		return found[0], true, nil
	}
	return Disk{}, false, fmt.Errorf("%s: %w (%d)", s, ErrAmbiguousDisk, len(found))
}

// DetachOptions bound the live detach.
type DetachOptions struct {
	// Timeout is how long each attempt waits for the guest; default 20 s.
	Timeout time.Duration
	// Attempts is how often the live detach is asked for; default 8.
	Attempts int
}

// Outcome is what happened to the disk in one definition.
type Outcome string

// Outcomes of a detach, per definition.
const (
	// OutcomeRemoved: config: gone after the detach; live: gone, normally
	// with a DEVICE_REMOVED event seen.
	OutcomeRemoved Outcome = "removed"
	// OutcomeNotPresent: the disk was not in that definition to begin with
	// (libvirt's "device not found" means the same).
	OutcomeNotPresent Outcome = "not_present"
	// OutcomePending: live only: asked every attempt, the guest never
	// acknowledged (a firmware-only or hung guest); the disk is still
	// attached to the running domain.
	OutcomePending Outcome = "pending"
	// OutcomeNotApplicable: config of a transient domain, or live of a
	// domain that does not run.
	OutcomeNotApplicable Outcome = "not_applicable"
)

// DetachResult reports a nova-style detach.
type DetachResult struct {
	Domain string  `json:"domain"`
	UUID   string  `json:"uuid"`
	Config Outcome `json:"config"`
	Live   Outcome `json:"live"`
	// LiveAttempts counts the live detach requests made.
	LiveAttempts int `json:"live_attempts"`
	// RemovedEvent is true when libvirt's DEVICE_REMOVED for the disk's
	// alias was seen.
	RemovedEvent bool `json:"removed_event"`
	// RemovalFailedEvents counts DEVICE_REMOVAL_FAILED events.
	RemovalFailedEvents int `json:"removal_failed_events"`
	// LastLiveError is an error libvirt gave to a repeated live request
	// while an earlier one was still outstanding (kept for the operator).
	LastLiveError string `json:"last_live_error,omitempty"`
}

// Gone reports whether the disk is in neither definition any more. It is
// meaningful only when DetachDisk returned a nil error.
func (r DetachResult) Gone() bool { return r.Live != OutcomePending }

// NotPresent reports whether there was nothing to detach anywhere.
func (r DetachResult) NotPresent() bool {
	absent := func(o Outcome) bool { return o == OutcomeNotPresent || o == OutcomeNotApplicable }
	return absent(r.Config) && absent(r.Live)
}

// DetachDisk removes a disk the way nova-compute's _detach_with_retry does:
// first from the persistent definition (synchronous, verified), then from
// the live one, subscribing to DEVICE_REMOVED and DEVICE_REMOVAL_FAILED
// before asking, waiting up to opts.Timeout per attempt, for opts.Attempts
// attempts. A guest that never acknowledges leaves Live == OutcomePending
// with a nil error: the disk is out of the persistent config and will be
// gone after the next power cycle, but it is still attached now.
func (c *Conn) DetachDisk(ctx context.Context, domain string, sel DiskSelector, opts DetachOptions) (DetachResult, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultDetachTimeout
	}
	if opts.Attempts <= 0 {
		opts.Attempts = DefaultDetachAttempts
	}
	res := DetachResult{Domain: domain, Config: OutcomeNotApplicable, Live: OutcomeNotApplicable}
	if sel == (DiskSelector{}) {
		return res, fmt.Errorf("domain %s: detach: %w: empty selector", domain, ErrInvalidSpec)
	}
	d, err := c.lookup(domain)
	if err != nil {
		return res, err
	}
	res.Domain, res.UUID = d.Name, formatUUID(d.UUID)
	persistent, err := c.lv.DomainIsPersistent(d)
	if err != nil {
		return res, c.domainErr(d, "is persistent", err)
	}
	state, _, err := c.lv.DomainGetState(d, 0)
	if err != nil {
		return res, c.domainErr(d, "get state", err)
	}
	live := libvirt.DomainState(state) == libvirt.DomainRunning || libvirt.DomainState(state) == libvirt.DomainPaused
	log := c.log.With("domain", d.Name, "selector", sel.String())

	if persistent == 1 {
		if res.Config, err = c.detachConfig(d, sel); err != nil {
			return res, err
		}
		log.Info("detach from persistent config", "outcome", res.Config)
	}
	if live {
		err = c.detachLive(ctx, d, sel, opts, &res)
		log.Info("detach from live domain", "outcome", res.Live, "attempts", res.LiveAttempts, "removed_event", res.RemovedEvent, "removal_failed_events", res.RemovalFailedEvents)
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

func (c *Conn) definition(d libvirt.Domain, flags libvirt.DomainXMLFlags) (*Definition, error) {
	x, err := c.lv.DomainGetXMLDesc(d, flags)
	if err != nil {
		return nil, c.domainErr(d, "get XML", err)
	}
	def, err := ParseDomainBytes([]byte(x))
	if err != nil {
		return nil, c.domainErr(d, "parse XML", err)
	}
	return def, nil
}

func (c *Conn) detachConfig(d libvirt.Domain, sel DiskSelector) (Outcome, error) {
	def, err := c.definition(d, libvirt.DomainXMLInactive)
	if err != nil {
		return "", err
	}
	disk, ok, err := sel.find(def)
	if err != nil {
		return "", c.domainErr(d, "persistent config", err)
	}
	if !ok {
		return OutcomeNotPresent, nil
	}
	x, err := disk.raw.Marshal()
	if err != nil {
		return "", c.domainErr(d, "render disk "+disk.Target, err)
	}
	if err := c.lv.DomainDetachDeviceFlags(d, x, uint32(libvirt.DomainAffectConfig)); err != nil {
		if isCode(err, libvirt.ErrDeviceMissing) {
			return OutcomeNotPresent, nil
		}
		return "", c.domainErr(d, "detach disk "+disk.Target+" from persistent config", err)
	}
	def, err = c.definition(d, libvirt.DomainXMLInactive)
	if err != nil {
		return "", err
	}
	if _, still, err := sel.find(def); err != nil || still {
		return "", c.domainErr(d, "detach disk "+disk.Target+" from persistent config", errors.Join(ErrDetachFailed, err))
	}
	return OutcomeRemoved, nil
}

// detachLive is nova's _detach_from_live_with_retry.
func (c *Conn) detachLive(ctx context.Context, d libvirt.Domain, sel DiskSelector, opts DetachOptions, res *DetachResult) error {
	def, err := c.definition(d, 0)
	if err != nil {
		return err
	}
	disk, ok, err := sel.find(def)
	if err != nil {
		return c.domainErr(d, "live definition", err)
	}
	if !ok {
		res.Live = OutcomeNotPresent
		return nil
	}
	// Register before asking, so an acknowledgement that arrives between
	// the request and the wait is never missed.
	ev, err := c.subscribeDeviceEvents(ctx, d)
	if err != nil {
		return err
	}
	defer ev.close()

	for attempt := 1; attempt <= opts.Attempts; attempt++ {
		res.LiveAttempts = attempt
		if err := c.requestLiveDetach(d, disk); err != nil {
			switch {
			case isCode(err, libvirt.ErrDeviceMissing):
				res.Live = OutcomeRemoved
				return nil
			case attempt > 1 && isCode(err, libvirt.ErrInternalError, libvirt.ErrOperationFailed, libvirt.ErrOperationInvalid):
				// An earlier request is still outstanding (qemu answers
				// "already in the process of unplug" on some machine
				// types); keep waiting for the guest, as nova does.
				res.LastLiveError = err.Error()
			default:
				return c.domainErr(d, "detach disk "+disk.Target+" from live domain", err)
			}
		}
		switch got, err := ev.wait(ctx, disk.Alias, opts.Timeout); {
		case err != nil:
			res.Live = OutcomePending
			return c.domainErr(d, "wait for removal of "+disk.Target, err)
		case got == libvirt.DomainEventIDDeviceRemoved:
			res.RemovedEvent = true
		case got == libvirt.DomainEventIDDeviceRemovalFailed:
			res.RemovalFailedEvents++
		}
		def, err := c.definition(d, 0)
		if errors.Is(err, ErrDomainNotFound) {
			res.Live = OutcomeRemoved // the domain itself went away
			return nil
		}
		if err != nil {
			return err
		}
		if _, still, err := sel.find(def); err != nil {
			return c.domainErr(d, "live definition", err)
		} else if !still {
			res.Live = OutcomeRemoved
			return nil
		}
	}
	res.Live = OutcomePending
	return nil
}

func (c *Conn) requestLiveDetach(d libvirt.Domain, disk Disk) error {
	if disk.Alias != "" {
		// Asynchronous: returns once qemu has been asked; the guest's
		// answer comes as an event.
		return c.lv.DomainDetachDeviceAlias(d, disk.Alias, uint32(libvirt.DomainAffectLive))
	}
	x, err := disk.raw.Marshal()
	if err != nil {
		return err
	}
	return c.lv.DomainDetachDeviceFlags(d, x, uint32(libvirt.DomainAffectLive))
}

var errEventStreamClosed = errors.New("libvirt event stream closed")

// deviceEvents is a subscription to DEVICE_REMOVED and DEVICE_REMOVAL_FAILED
// for one domain.
type deviceEvents struct {
	uuid            libvirt.UUID
	cancel          context.CancelFunc
	removed, failed <-chan any
}

func (c *Conn) subscribeDeviceEvents(ctx context.Context, d libvirt.Domain) (*deviceEvents, error) {
	sub, cancel := context.WithCancel(ctx)
	removed, err := c.lv.SubscribeEvents(sub, libvirt.DomainEventIDDeviceRemoved, libvirt.OptDomain{d})
	if err != nil {
		cancel()
		return nil, c.domainErr(d, "subscribe to DEVICE_REMOVED", err)
	}
	failed, err := c.lv.SubscribeEvents(sub, libvirt.DomainEventIDDeviceRemovalFailed, libvirt.OptDomain{d})
	if err != nil {
		cancel()
		for range removed {
		}
		return nil, c.domainErr(d, "subscribe to DEVICE_REMOVAL_FAILED", err)
	}
	return &deviceEvents{uuid: d.UUID, cancel: cancel, removed: removed, failed: failed}, nil
}

// close ends the subscription and drains both streams so go-libvirt's
// forwarding goroutines can deregister and exit.
func (e *deviceEvents) close() {
	e.cancel()
	for range e.removed {
	}
	for range e.failed {
	}
}

// wait returns which event arrived for alias on this domain, 0 on timeout,
// or the context's error.
func (e *deviceEvents) wait(ctx context.Context, alias string, timeout time.Duration) (libvirt.DomainEventID, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-t.C:
			return 0, nil
		case m, ok := <-e.removed:
			if !ok {
				return 0, errors.Join(ctx.Err(), errEventStreamClosed)
			}
			if r, isMsg := m.(*libvirt.DomainEventCallbackDeviceRemovedMsg); isMsg && r.Msg.Dom.UUID == e.uuid && r.Msg.DevAlias == alias {
				return libvirt.DomainEventIDDeviceRemoved, nil
			}
		case m, ok := <-e.failed:
			if !ok {
				return 0, errors.Join(ctx.Err(), errEventStreamClosed)
			}
			if f, isMsg := m.(*libvirt.DomainEventCallbackDeviceRemovalFailedMsg); isMsg && f.Dom.UUID == e.uuid && f.DevAlias == alias {
				return libvirt.DomainEventIDDeviceRemovalFailed, nil
			}
		}
	}
}
