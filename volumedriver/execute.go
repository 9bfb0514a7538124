package volumedriver

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cinderwarden/cinderwarden/hostdisk"
	"github.com/cinderwarden/cinderwarden/openstack"
)

// execute is the Executor: it performs one Action and reports its outcome.
// Each step logs a "step" line when it starts and when it ends (tests and
// operators follow a volume through them).
func (d *Driver) execute(ctx context.Context, a Action) Event {
	start := time.Now()
	d.log.Info("step", "step", a.Kind.String(), "volume_id", a.VolumeID, "state", "start")
	var ev Event
	switch a.Kind {
	case ActAttach:
		ev = d.attach(ctx, a)
	case ActWaitDevice:
		ev = d.waitDevice(ctx, a)
	case ActMount:
		ev = d.mountFS(ctx, a)
	case ActUnmount:
		ev = d.unmountFS(ctx, a)
	case ActDetach:
		ev = d.detach(ctx, a)
	default:
		ev = DetachFailed{Err: fmt.Errorf("unknown action %v", a.Kind)}
	}
	err := eventErr(ev)
	d.metrics.observeStep(a.Kind, err != nil, time.Since(start))
	args := []any{"step", a.Kind.String(), "volume_id", a.VolumeID, "state", "end",
		"duration", time.Since(start).Round(time.Microsecond), "outcome", ev.eventName()}
	if err != nil {
		d.log.Warn("step", append(args, "err", err)...)
	} else {
		d.log.Info("step", args...)
	}
	return ev
}

func eventErr(ev Event) error {
	switch e := ev.(type) {
	case AttachFailed:
		return e.Err
	case DeviceFailed:
		return e.Err
	case MountFailed:
		return e.Err
	case UnmountFailed:
		return e.Err
	case DetachFailed:
		return e.Err
	}
	return nil
}

// poller polls with the driver's backoff; a kick (the by-id device
// appeared) makes the next poll immediate and the one after it come soon:
// Cinder completes the attachment right after the hypervisor plugged the
// disk.
type poller struct {
	b      openstack.Backoff
	next   time.Duration
	kicked bool
}

// afterKick is the interval after the poll a kick triggered.
const afterKick = 5 * time.Millisecond

// wait sleeps until the next poll; false when ctx ended.
func (p *poller) wait(ctx context.Context, kick <-chan struct{}) bool {
	d := p.b.Next(p.next)
	if p.kicked {
		d, p.kicked = afterKick, false
	}
	p.next = d
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-kick:
		p.next, p.kicked = 0, true
		return true
	case <-t.C:
		return true
	}
}

// watchDevice signals once when the volume's device shows up (inotify on
// the by-id directory), to cut the attach wait short.
func (d *Driver) watchDevice(ctx context.Context, volumeID string) <-chan struct{} {
	ch := make(chan struct{}, 1)
	go func() {
		if _, err := d.host.WaitForDevice(ctx, volumeID); err == nil {
			ch <- struct{}{}
		}
	}()
	return ch
}

// attach is ActAttach: idempotent. Already attached here → done; attaching
// here → wait; available → Nova attach, then wait until Cinder shows the
// attachment (polling with a short backoff, and at once when the device
// appears); attached elsewhere → refused (takeover is issue 4).
func (d *Driver) attach(ctx context.Context, a Action) Event {
	octx := ctx // a takeover waits on its own bounds, then the attach starts afresh
	ctx, cancel := context.WithTimeout(ctx, d.cfg.AttachTimeout)
	defer cancel()
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	var kick <-chan struct{} // nil (never ready) when the wake-up is off
	if !d.cfg.NoDeviceWake {
		kick = d.watchDevice(wctx, a.VolumeID)
	}
	p := poller{b: d.cfg.Backoff}
	requested := false // a Nova attach was sent (by us, or found in flight)
	var gen uint64     // the fencing token this attach claimed (issue 4)
	var last *openstack.Volume
	for {
		v, err := d.cloud.GetVolume(ctx, a.VolumeID)
		switch {
		case err != nil && ctx.Err() != nil:
		case errors.Is(err, openstack.ErrNotFound):
			return AttachFailed{Err: err}
		case err != nil:
			// A transient API failure: keep polling until the deadline.
			d.log.Warn("attach: poll failed", "volume_id", a.VolumeID, "err", err)
		default:
			last = v
			if att := v.AttachedTo(d.inst); att != nil && v.Status == "in-use" {
				if gen == 0 {
					set, _ := SettingsFromMetadata(v.Metadata, d.cfg.Policy)
					gen = set.Generation
				}
				return AttachDone{AttachmentID: att.AttachmentID, Generation: gen}
			}
			c := FromOpenStack(v)
			switch {
			case strings.HasPrefix(v.Status, "error"):
				return AttachFailed{Err: fmt.Errorf("Cinder status %s: %w", v.Status, ErrVolumeUnusable), MayBeAttached: requested}
			case requested && v.Status == "available":
				// Nova rolled the attach back (compute-side failure).
				return AttachFailed{Err: errors.New("Nova accepted the attach but the volume went back to available (the compute host failed to attach it)")}
			case !requested:
				set, _ := SettingsFromMetadata(v.Metadata, d.cfg.Policy)
				dec, err := PlanAttachment(c, d.inst, set.Preempt.Resolve(d.cfg.Preempt))
				if err != nil {
					return AttachFailed{Err: err}
				}
				switch dec.Plan {
				case PlanAttach:
					if gen, err = d.claimGeneration(ctx, v); err != nil {
						return AttachFailed{Err: err}
					}
					if _, err := d.cloud.AttachVolume(ctx, d.inst, a.VolumeID); err != nil {
						// No answer: the attach may still happen.
						return AttachFailed{Err: err, MayBeAttached: ctx.Err() != nil}
					}
					requested = true
					continue // poll at once: Nova has reserved it
				case PlanAlreadyHere:
					requested = true
				case PlanTakeover:
					if err := d.takeover(octx, v, dec); err != nil {
						return AttachFailed{Err: err}
					}
					cancel()
					return d.attach(octx, a)
				}
			}
		}
		if !p.wait(ctx, kick) {
			status := "never seen"
			if last != nil {
				status = "last status " + last.Status
			}
			return AttachFailed{Err: fmt.Errorf("not attached to instance %s after %s (%s): %w",
				d.inst, d.cfg.AttachTimeout, status, openstack.ErrTimeout), MayBeAttached: true}
		}
	}
}

// waitDevice is ActWaitDevice: the device by volume id (never Nova's name).
func (d *Driver) waitDevice(ctx context.Context, a Action) Event {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.DeviceTimeout)
	defer cancel()
	dev, err := d.host.WaitForDevice(ctx, a.VolumeID)
	if err != nil {
		return DeviceFailed{Err: err}
	}
	return DeviceFound{Device: dev.Path}
}

// mountFS is ActMount. A blank device gets the volume's filesystem; a
// device with a filesystem is mounted as what it holds (an adopted volume's
// recorded type may be the default, not the truth); anything else is
// refused by hostdisk's format guard. A failed mount never formats.
func (d *Driver) mountFS(ctx context.Context, a Action) Event {
	// hostdisk mounts "" as whatever filesystem the device holds and
	// formats a blank one with its default, ext4: for ext4 (the common
	// case) no probe of our own is needed.
	fs := string(a.FSType)
	if a.FSType == FSExt4 && hostdisk.DefaultFSType == string(FSExt4) {
		fs = ""
	} else if p, err := d.host.ProbeDevice(ctx, a.Device); err == nil && !p.Blank() {
		fs = ""
	}
	res, err := d.host.Mount(ctx, hostdisk.MountRequest{VolumeID: a.VolumeID, Device: a.Device, FSType: fs})
	if err != nil {
		return MountFailed{Err: err}
	}
	if res.Formatted {
		d.log.Info("formatted blank volume", "volume_id", a.VolumeID, "device", a.Device, "fstype", res.FSType)
	}
	return MountDone{}
}

// unmountFS is ActUnmount (Force: escalate to force and lazy).
func (d *Driver) unmountFS(ctx context.Context, a Action) Event {
	mode := hostdisk.UnmountNormal
	if a.Force {
		mode = hostdisk.UnmountEscalate
	}
	if _, err := d.host.Unmount(ctx, a.VolumeID, mode); err != nil {
		return UnmountFailed{Err: err}
	}
	return UnmountDone{}
}

// detach is ActDetach: idempotent. Not attached here → wait for the device
// to go; attached → Nova DELETE, wait until Cinder says detached and the
// device is gone. An attach to this instance still in flight is waited for
// first (then detached).
func (d *Driver) detach(ctx context.Context, a Action) Event {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.AttachTimeout)
	defer cancel()
	p := poller{b: d.cfg.Backoff}
	requested := false
	var last *openstack.Volume
	for {
		v, err := d.cloud.GetVolume(ctx, a.VolumeID)
		switch {
		case err != nil && ctx.Err() != nil:
		case errors.Is(err, openstack.ErrNotFound):
			return d.deviceGone(ctx, a)
		case err != nil:
			d.log.Warn("detach: poll failed", "volume_id", a.VolumeID, "err", err)
		default:
			last = v
			att := v.AttachedTo(d.inst)
			switch {
			case att == nil && (v.Status == "attaching" || v.Status == "reserved") && !requested:
				// Possibly our own attach still in flight: let it settle.
			case att == nil:
				return d.deviceGone(ctx, a)
			case v.Status == "detaching":
				requested = true
			case requested && v.Status == "in-use":
				return DetachFailed{Err: errors.New("Nova accepted the detach but the volume is in-use again (the compute host failed to detach it)")}
			case !requested:
				if err := d.cloud.DetachVolume(ctx, d.inst, a.VolumeID); err != nil {
					if errors.Is(err, openstack.ErrNotFound) {
						return DetachFailed{Err: fmt.Errorf("%w: Cinder shows the volume attached here but Nova has no attachment for it", err)}
					}
					if ctx.Err() == nil {
						return DetachFailed{Err: err}
					}
				} else {
					requested = true
					continue
				}
			}
		}
		if !p.wait(ctx, nil) {
			status := "never seen"
			if last != nil {
				status = "last status " + last.Status
			}
			return DetachFailed{Err: fmt.Errorf("still attached to instance %s after %s (%s): %w",
				d.inst, d.cfg.AttachTimeout, status, openstack.ErrTimeout)}
		}
	}
}

func (d *Driver) deviceGone(ctx context.Context, a Action) Event {
	dctx, cancel := context.WithTimeout(ctx, d.cfg.DeviceTimeout)
	defer cancel()
	if err := d.host.WaitForDeviceGone(dctx, a.VolumeID); err != nil {
		return DetachFailed{Err: fmt.Errorf("Cinder says detached but the device is still here: %w", err)}
	}
	return DetachDone{}
}
