package volumedriver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/cinderwarden/cinderwarden/openstack"
)

// TakeoverConfig tunes issue 4's takeover and sweep. Zero values get
// defaults (withDefaults).
type TakeoverConfig struct {
	// Grace is how long a taker waits for the holder's plugin to answer
	// before it looks the holder up in Nova and detaches it there
	// (default 30 s).
	Grace time.Duration
	// DetachTimeout bounds the wait for a Nova detach of the holder
	// (default: the attach timeout).
	DetachTimeout time.Duration
	// ForceDetach enables the last resort: Cinder os-force_detach when Nova
	// could not detach the holder. It needs admin credentials; a 403 or 409
	// is reported, never retried. Default off.
	ForceDetach bool
	// WatchInterval is how often the holder lists takeover requests
	// addressed to it (default 3 s; negative: never, for tests of a silent
	// holder).
	WatchInterval time.Duration
	// SweepInterval is how often the stale-mount sweep runs (default 30 s;
	// negative: never).
	SweepInterval time.Duration
	// Poll is the taker's backoff while it waits for the holder (default
	// 50 ms ×1.5 capped at 1 s).
	Poll openstack.Backoff
}

func (c TakeoverConfig) withDefaults(attachTimeout time.Duration) TakeoverConfig {
	if c.Grace <= 0 {
		c.Grace = 30 * time.Second
	}
	if c.DetachTimeout <= 0 {
		c.DetachTimeout = attachTimeout
	}
	if c.WatchInterval == 0 {
		c.WatchInterval = 3 * time.Second
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = 30 * time.Second
	}
	if c.Poll.Initial == 0 {
		c.Poll = openstack.Backoff{Initial: 50 * time.Millisecond, Factor: 1.5, Max: time.Second}
	}
	return c
}

// ForceDetachError is a Cinder os-force_detach that Cinder refused: 403
// (the credentials are not admin) or 409 (Nova still uses the attachment,
// bug 2004555's guard). Never retried. Unwraps to ErrTakeoverFailed and
// the openstack error (ErrForbidden / ErrConflict).
type ForceDetachError struct {
	Name, VolumeID, Holder string
	NovaErr                error // why Nova could not detach
	Err                    error
}

func (e *ForceDetachError) Error() string {
	why := "Cinder refused it"
	switch {
	case errors.Is(e.Err, openstack.ErrForbidden):
		why = "Cinder answered 403 Forbidden: os-force_detach needs admin credentials and the plugin's are not admin"
	case errors.Is(e.Err, openstack.ErrConflict):
		why = "Cinder answered 409 Conflict: Nova still uses the attachment, so Cinder only lets Nova detach it"
	}
	return fmt.Sprintf("volume %s (%s): takeover from instance %s failed: Nova did not detach it (%v); "+
		"the fallback os-force_detach was not done: %s (not retried); nothing was force-detached. "+
		"Detach it from instance %s through Nova (or stop that instance), then mount again: %v",
		e.Name, e.VolumeID, e.Holder, e.NovaErr, why, e.Holder, e.Err)
}

func (e *ForceDetachError) Unwrap() []error { return []error{ErrTakeoverFailed, e.Err} }

// takeover runs the taker's side of the protocol for volume v, held by
// dec.Holder. It returns nil once the holder no longer has the volume (the
// caller then plans the attach again), or why it could not get it.
func (d *Driver) takeover(ctx context.Context, v *openstack.Volume, dec Decision) (err error) {
	start := time.Now()
	holder := dec.Holder.ServerID
	outcome := "failed"
	log := d.log.With("volume", v.Name, "volume_id", v.ID, "holder", holder, "holder_host", dec.Holder.HostName,
		"taker", d.inst, "force", dec.Force)
	defer func() {
		d.metrics.takeoverDone(outcome, time.Since(start))
		args := []any{"step", "done", "outcome", outcome, "duration", time.Since(start).Round(time.Millisecond)}
		if err != nil {
			log.Warn("takeover", append(args, "err", err)...)
		} else {
			log.Info("takeover", args...)
		}
	}()
	tc := d.cfg.Takeover
	req := TakeoverRequest{Taker: d.inst, RequestedAt: time.Now().UTC().Truncate(time.Second), Token: NextToken(v.Metadata), Force: dec.Force}
	md := req.Metadata()
	md[MetaTakeoverHolder] = holder
	_, err = d.cloud.SetVolumeMetadata(ctx, v.ID, md)
	d.metrics.takeoverStep("requested", err)
	if err != nil {
		return fmt.Errorf("volume %s (%s): takeover from instance %s: record the request: %w", v.Name, v.ID, holder, err)
	}
	log.Info("takeover", "step", "requested", "token", req.Token, "grace", tc.Grace)
	clear := true
	defer func() {
		if clear {
			d.clearRequest(v.ID, req.Token)
		}
	}()

	p := poller{b: tc.Poll}
	var step TakerStep
	var why string
	var cv *openstack.Volume
	for {
		cv, err = d.cloud.GetVolume(ctx, v.ID)
		switch {
		case errors.Is(err, openstack.ErrNotFound):
			return fmt.Errorf("volume %s (%s): takeover: %w", v.Name, v.ID, err)
		case err != nil && ctx.Err() == nil:
			log.Warn("takeover: poll failed", "err", err)
		case err == nil:
			step, why = NextTakerStep(TakerView{Volume: FromOpenStack(cv), Taker: d.inst, Holder: holder,
				Token: req.Token, Elapsed: time.Since(start), Grace: tc.Grace})
			switch step {
			case TakerAttach:
				outcome = "released"
				log.Info("takeover", "step", "released", "why", why)
				return nil
			case TakerRefused:
				outcome = "refused"
				return &TakeoverRefusedError{Name: v.Name, VolumeID: v.ID, Holder: holder, Host: dec.Holder.HostName,
					Reason: cv.Metadata[MetaTakeoverRefusedReason]}
			case TakerContended:
				outcome, clear = "contended", false
				return fmt.Errorf("volume %s (%s): takeover from instance %s: %s: %w", v.Name, v.ID, holder, why, ErrTakeoverContended)
			}
		}
		if step == TakerCheckHolder {
			break
		}
		if !p.wait(ctx, nil) {
			return fmt.Errorf("volume %s (%s): takeover from instance %s: %s: %w", v.Name, v.ID, holder, why, openstack.ErrTimeout)
		}
	}
	log.Info("takeover", "step", "holder-silent", "why", why)

	// The holder did not answer: ask Nova about it.
	srv, serr := d.cloud.GetServer(ctx, holder)
	if serr != nil && !errors.Is(serr, openstack.ErrNotFound) {
		return fmt.Errorf("volume %s (%s): takeover: the holder did not answer within %s and looking it up failed: %w",
			v.Name, v.ID, tc.Grace, serr)
	}
	var status, task string
	if srv != nil {
		status, task = srv.Status, srv.TaskState
	}
	hs := ClassifyHolder(serr == nil, status, task)
	log.Info("takeover", "step", "holder-checked", "holder_state", hs.String(), "status", status, "task_state", task)
	var novaErr error
	switch hs {
	case HolderBusy:
		return fmt.Errorf("volume %s (%s): takeover from instance %s: its plugin did not answer within %s and Nova is busy with it (task %s); try again later: %w",
			v.Name, v.ID, holder, tc.Grace, task, ErrTakeoverFailed)
	case HolderGone:
		novaErr = fmt.Errorf("Nova does not know instance %s", holder)
	default:
		novaErr = d.novaDetachHolder(ctx, v, holder, log)
		d.metrics.takeoverStep("nova_detach", novaErr)
		if novaErr == nil {
			outcome = "nova_detach"
			return nil
		}
	}
	// Nova could not detach: Cinder's force-detach, only when enabled.
	cv, err = d.cloud.GetVolume(ctx, v.ID)
	if err != nil {
		return fmt.Errorf("volume %s (%s): takeover: %w", v.Name, v.ID, err)
	}
	att := cv.AttachedTo(holder)
	if att == nil && cv.Status != "detaching" {
		outcome = "nova_detach"
		return nil // it finished after all
	}
	if !tc.ForceDetach {
		return fmt.Errorf("volume %s (%s): takeover from instance %s failed: Nova did not detach it (%v); "+
			"Cinder force-detach is disabled (--takeover-force-detach), so nothing was force-detached: %w",
			v.Name, v.ID, holder, novaErr, ErrTakeoverFailed)
	}
	var attID string
	if att != nil {
		attID = att.AttachmentID
	}
	ferr := d.cloud.ForceDetach(ctx, v.ID, attID)
	d.metrics.takeoverStep("force_detach", ferr)
	if ferr != nil {
		return &ForceDetachError{Name: v.Name, VolumeID: v.ID, Holder: holder, NovaErr: novaErr, Err: ferr}
	}
	host := dec.Holder.HostName
	if srv != nil && srv.Host != "" {
		host = srv.Host
	}
	log.Warn("takeover", "step", "force_detach", "msg", "Cinder force-detached the volume: the holder's disk may be a zombie until the reconciler removes it")
	if _, err := d.cloud.SetVolumeMetadata(ctx, v.ID, map[string]string{MetaZombieInstance: holder, MetaZombieHost: host,
		MetaZombieAt: time.Now().UTC().Format(time.RFC3339)}); err != nil {
		log.Error("takeover: tag the possible zombie", "err", err)
	}
	outcome = "force_detach"
	return nil
}

// novaDetachHolder asks Nova to detach the volume from the holder and waits
// (bounded by the takeover's detach timeout) until Cinder says detached.
func (d *Driver) novaDetachHolder(ctx context.Context, v *openstack.Volume, holder string, log *slog.Logger) error {
	log.Info("takeover", "step", "nova_detach")
	if err := d.cloud.DetachVolume(ctx, holder, v.ID); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, d.cfg.Takeover.DetachTimeout)
	defer cancel()
	if _, err := d.cloud.WaitVolume(wctx, v.ID, openstack.DetachedFrom(holder)); err != nil {
		return fmt.Errorf("Nova accepted the detach but it did not complete within %s: %w", d.cfg.Takeover.DetachTimeout, err)
	}
	return nil
}

// clearRequest removes the request keys if the request is still ours (best
// effort: a left-over request is stale for the next holder anyway).
func (d *Driver) clearRequest(volumeID string, token uint64) {
	ctx, cancel := context.WithTimeout(d.ctx, 30*time.Second)
	defer cancel()
	v, err := d.cloud.GetVolume(ctx, volumeID)
	if err != nil {
		d.log.Warn("takeover: clear the request", "volume_id", volumeID, "err", err)
		return
	}
	if v.Metadata[MetaTakeoverToken] != strconv.FormatUint(token, 10) {
		return
	}
	for _, k := range requestKeys() {
		if _, ok := v.Metadata[k]; !ok {
			continue
		}
		if err := d.cloud.DeleteVolumeMetadataKey(ctx, volumeID, k); err != nil && !errors.Is(err, openstack.ErrNotFound) {
			d.log.Warn("takeover: clear the request", "volume_id", volumeID, "key", k, "err", err)
		}
	}
}

// claimGeneration writes the fencing token this attach holds with: larger
// than every generation and request token on the volume, so requests
// written before this attach are stale for it.
func (d *Driver) claimGeneration(ctx context.Context, v *openstack.Volume) (uint64, error) {
	g := NextToken(v.Metadata)
	if _, err := d.cloud.SetVolumeMetadata(ctx, v.ID, map[string]string{MetaGeneration: strconv.FormatUint(g, 10)}); err != nil {
		return 0, fmt.Errorf("volume %s (%s): record the attach generation: %w", v.Name, v.ID, err)
	}
	return g, nil
}

// WatchTakeovers is one round of the holder's watch: one listing of the
// volumes whose takeover request names this instance (none when the node
// holds nothing), each answered under its volume's lock.
func (d *Driver) WatchTakeovers(ctx context.Context) error {
	if !d.holdsAny() {
		return nil
	}
	vs, err := d.cloud.ListVolumes(ctx, openstack.VolumeFilter{Metadata: map[string]string{MetaTakeoverHolder: d.inst}})
	if err != nil {
		return fmt.Errorf("takeover watch: %w", err)
	}
	var errs []error
	for i := range vs {
		if err := d.answer(ctx, &vs[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// holdsAny reads the last saved state (never waits for a volume's lock: an
// operation in flight may take as long as a takeover).
func (d *Driver) holdsAny() bool {
	for _, v := range d.State().Volumes {
		if v.Phase != PhaseDetached {
			return true
		}
	}
	return false
}

// answer answers one takeover request addressed to this instance.
func (d *Driver) answer(ctx context.Context, v *openstack.Volume) error {
	r, ok, err := ParseTakeoverRequest(v.Metadata)
	if err != nil {
		d.log.Warn("takeover request unreadable", "volume_id", v.ID, "err", err)
		return nil
	}
	if !ok {
		return nil
	}
	d.mu.Lock()
	e := d.vols[v.ID]
	d.mu.Unlock()
	if e == nil {
		d.log.Debug("takeover request for a volume this plugin does not hold", "volume_id", v.ID, "taker", r.Taker)
		return nil
	}
	if !e.mu.TryLock() {
		// An operation is in flight (it may be long): answer next round
		// rather than stall the watch of every other volume.
		d.log.Debug("takeover request: operation in flight, next round", "volume_id", v.ID, "taker", r.Taker)
		return nil
	}
	defer e.mu.Unlock()
	if e.broken != nil {
		return nil
	}
	st := e.v.State()
	refused, _ := strconv.ParseUint(v.Metadata[MetaTakeoverRefused], 10, 64)
	ans, why := AnswerTakeover(r, st, d.inst, refused)
	if v.AttachedTo(d.inst) == nil && ans != AnswerIgnore {
		ans, why = AnswerIgnore, "Cinder no longer shows it attached here (the sweep cleans up)"
	}
	log := d.log.With("volume", v.Name, "volume_id", v.ID, "taker", r.Taker, "token", r.Token, "force", r.Force)
	switch ans {
	case AnswerIgnore, AnswerLater:
		log.Debug("takeover request", "answer", ans.String(), "why", why)
		return nil
	case AnswerRefuse:
		_, err := d.cloud.SetVolumeMetadata(ctx, v.ID, map[string]string{
			MetaTakeoverRefused: strconv.FormatUint(r.Token, 10), MetaTakeoverRefusedReason: why})
		d.metrics.takeoverStep("refused", err)
		log.Warn("takeover request", "answer", "refuse", "why", why, "mount_ids", st.Refs)
		if err != nil {
			return fmt.Errorf("volume %s: refuse the takeover by %s: %w", v.ID, r.Taker, err)
		}
		return nil
	}
	start := time.Now()
	var ev Event = Release{}
	if ans == AnswerForceRelease {
		ev = Lost{Reason: "taken over by force by instance " + r.Taker}
	}
	log.Info("takeover request", "answer", ans.String(), "why", why, "mount_ids", st.Refs)
	_, err = Drive(ctx, e.v, ev, d.execute, d.persister(e))
	if err == nil && e.v.Phase() != PhaseDetached {
		err = fmt.Errorf("still %s: %s", e.v.Phase(), e.v.State().LastError)
	}
	d.metrics.takeoverStep("released", err)
	if err != nil {
		log.Warn("takeover request", "step", "released", "duration", time.Since(start).Round(time.Millisecond), "err", err)
		return fmt.Errorf("volume %s: release for the takeover by %s: %w", v.ID, r.Taker, err)
	}
	log.Info("takeover request", "step", "released", "duration", time.Since(start).Round(time.Millisecond))
	if _, err := d.cloud.SetVolumeMetadata(ctx, v.ID, map[string]string{MetaTakeoverReleased: strconv.FormatUint(r.Token, 10)}); err != nil {
		log.Warn("takeover: record the release", "err", err)
	}
	return nil
}

// startBackground starts the holder's watch and the stale-mount sweep; both
// end with the driver's context.
func (d *Driver) startBackground() {
	tc := d.cfg.Takeover
	if tc.WatchInterval > 0 {
		go d.every(tc.WatchInterval, "takeover watch", d.WatchTakeovers)
	}
	if tc.SweepInterval > 0 {
		go d.every(tc.SweepInterval, "stale-mount sweep", func(ctx context.Context) error {
			_, err := d.Sweep(ctx)
			return err
		})
	}
}

func (d *Driver) every(interval time.Duration, what string, fn func(context.Context) error) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(d.ctx, 10*interval+time.Minute)
		if err := fn(ctx); err != nil && d.ctx.Err() == nil {
			d.log.Warn(what, "err", err)
		}
		cancel()
	}
}
