package volumedriver

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/cinderwarden/cinderwarden/hostdisk"
	"github.com/cinderwarden/cinderwarden/openstack"
)

// StaleMount decides whether a plugin-made mount with no recorded state
// (an orphan, or seen by `cinderwarden reconcile --scope node`, which does
// not own the plugin's state) is stale, and why: its device is gone, the
// mountpoint is corrupted, or Cinder (c, nil on 404) says the volume is not
// attached to this instance and not in transition. A 404 alone is not
// enough (the device decides then).
func StaleMount(m LiveMount, c *CinderVolume, instanceID string) (reason string, stale bool) {
	switch {
	case m.DeviceGone:
		return "device_gone", true
	case m.Corrupted:
		return "corrupted", true
	case c == nil:
		return "", false
	}
	if _, here := c.attachmentTo(instanceID); !here && !c.transitional() {
		return "not_attached", true
	}
	return "", false
}

// SweepResult is what the sweep did about one volume.
type SweepResult struct {
	VolumeID string
	// Event is the event driven ("Lost", "Release"), or "unmount" for an
	// orphan mount unmounted directly; empty when nothing was done.
	Event  string
	Reason string
	Err    error
}

// Sweep is one run of the stale-mount sweep: every volume this node holds
// is checked against mountinfo and Cinder (SweepEvent) under its lock, and
// mounts under the root the plugin has no state for are unmounted (force,
// then lazy) when StaleMount says so. Cinder failures skip the volume
// (never act on a partial view).
func (d *Driver) Sweep(ctx context.Context) ([]SweepResult, error) {
	vms, err := d.host.VolumeMounts()
	if err != nil {
		d.metrics.sweepRun(err)
		return nil, fmt.Errorf("sweep: %w", err)
	}
	mounts := map[string]LiveMount{}
	for _, m := range vms {
		mounts[m.VolumeID] = liveMount(m)
	}
	d.mu.Lock()
	held := map[string]*entry{}
	for id, e := range d.vols {
		held[id] = e
	}
	d.mu.Unlock()
	ids := make([]string, 0, len(held)+len(mounts))
	for id := range held {
		ids = append(ids, id)
	}
	for id := range mounts {
		if held[id] == nil {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	var out []SweepResult
	var errs []error
	for _, id := range ids {
		e := held[id]
		if e != nil {
			// The last saved state: never wait for a volume's lock here.
			if st := d.localState(id); st == nil || st.Phase == PhaseDetached {
				continue
			}
		}
		c, err := d.cloudView(ctx, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var r SweepResult
		if e == nil {
			r = d.sweepOrphan(ctx, mounts[id], c)
		} else {
			m, ok := mounts[id]
			var mp *LiveMount
			if ok {
				mp = &m
			}
			r = d.sweepHeld(ctx, e, mp, c)
		}
		if r.Event != "" {
			out = append(out, r)
			if r.Err != nil {
				errs = append(errs, r.Err)
			}
		}
	}
	err = errors.Join(errs...)
	d.metrics.sweepRun(err)
	return out, err
}

func liveMount(m hostdisk.VolumeMount) LiveMount {
	return LiveMount{VolumeID: m.VolumeID, Mountpoint: m.Mountpoint, Device: m.Source,
		DeviceGone: m.DeviceGone, Corrupted: m.State == hostdisk.StateCorrupted}
}

// cloudView is Cinder's view of one volume (nil on 404).
func (d *Driver) cloudView(ctx context.Context, id string) (*CinderVolume, error) {
	v, err := d.cloud.GetVolume(ctx, id)
	switch {
	case errors.Is(err, openstack.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("sweep: volume %s: %w", id, err)
	}
	return FromOpenStack(v), nil
}

func (d *Driver) sweepHeld(ctx context.Context, e *entry, m *LiveMount, c *CinderVolume) SweepResult {
	if !e.mu.TryLock() {
		return SweepResult{Reason: "operation in flight"} // next run
	}
	defer e.mu.Unlock()
	st := e.v.State()
	r := SweepResult{VolumeID: st.VolumeID}
	if e.broken != nil {
		return r
	}
	ev, reason := SweepEvent(st, m, c, d.inst)
	r.Reason = reason
	if ev == nil {
		if reason != "" && reason != "operation in flight" {
			d.log.Debug("sweep", "volume_id", st.VolumeID, "phase", st.Phase.String(), "why", reason)
		}
		return r
	}
	start := time.Now()
	r.Event = ev.eventName()
	_, err := Drive(ctx, e.v, ev, d.execute, d.persister(e))
	if err == nil && e.v.Phase() != PhaseDetached {
		err = fmt.Errorf("volume %s: still %s after the sweep: %s", st.VolumeID, e.v.Phase(), e.v.State().LastError)
	}
	r.Err = err
	label := sweepLabel(reason)
	d.metrics.sweptMount(label, err)
	args := []any{"volume", st.Name, "volume_id", st.VolumeID, "event", r.Event, "why", reason,
		"dropped_mount_ids", st.Refs, "duration", time.Since(start).Round(time.Millisecond)}
	if err != nil {
		d.log.Warn("sweep", append(args, "err", err)...)
	} else {
		d.log.Warn("sweep", args...)
	}
	return r
}

// sweepLabel maps SweepEvent's reason to the metric label.
func sweepLabel(reason string) string {
	switch reason {
	case "device gone":
		return "device_gone"
	case "mountpoint corrupted":
		return "corrupted"
	case "no longer attached here":
		return "not_attached"
	}
	return "idle"
}

func (d *Driver) sweepOrphan(ctx context.Context, m LiveMount, c *CinderVolume) SweepResult {
	r := SweepResult{VolumeID: m.VolumeID}
	reason, stale := StaleMount(m, c, d.inst)
	if !stale {
		return r
	}
	r.Event, r.Reason = "unmount", reason
	res, err := d.host.UnmountPath(ctx, m.Mountpoint, hostdisk.UnmountEscalate)
	r.Err = err
	d.metrics.sweptMount(reason, err)
	d.log.Warn("sweep: orphan mount", "volume_id", m.VolumeID, "mountpoint", m.Mountpoint, "why", reason,
		"method", string(res.Method), "err", err)
	return r
}

// SweepNode is the node-wide sweep without a running Driver (`cinderwarden
// reconcile --scope node`): every plugin mount under the host's root that
// StaleMount calls stale is unmounted (normal, force, then lazy). It does
// not touch the plugin's state file: the plugin drops the mount ids on its
// own next sweep (Cinder no longer shows the volume here). dryRun reports
// without unmounting.
func SweepNode(ctx context.Context, cloud *openstack.Client, host *hostdisk.Host, instanceID string, dryRun bool) ([]SweepResult, error) {
	vms, err := host.VolumeMounts()
	if err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	var out []SweepResult
	var errs []error
	for _, vm := range vms {
		m := liveMount(vm)
		var c *CinderVolume
		v, err := cloud.GetVolume(ctx, m.VolumeID)
		switch {
		case errors.Is(err, openstack.ErrNotFound):
		case err != nil:
			errs = append(errs, fmt.Errorf("sweep: volume %s: %w", m.VolumeID, err))
			continue
		default:
			c = FromOpenStack(v)
		}
		reason, stale := StaleMount(m, c, instanceID)
		if !stale {
			continue
		}
		r := SweepResult{VolumeID: m.VolumeID, Event: "unmount", Reason: reason}
		if !dryRun {
			_, r.Err = host.UnmountPath(ctx, m.Mountpoint, hostdisk.UnmountEscalate)
			if r.Err != nil {
				errs = append(errs, r.Err)
			}
		}
		out = append(out, r)
	}
	return out, errors.Join(errs...)
}
