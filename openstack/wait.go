package openstack

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Backoff is a short exponential backoff: the first poll after Initial, each
// next interval Factor times longer, never longer than Max. Waits are bounded
// only by their context.
type Backoff struct {
	Initial time.Duration
	Factor  float64
	Max     time.Duration
}

// DefaultBackoff polls first after 25 ms, then ×1.6, capped at 1 s: a
// transition that takes 300 ms is seen after ~330 ms, one that takes 1 s
// within ~1.2 s, with ~10 requests per second at most in steady state.
func DefaultBackoff() Backoff {
	return Backoff{Initial: 25 * time.Millisecond, Factor: 1.6, Max: time.Second}
}

// Next returns the interval following d (d == 0: the first interval).
func (b Backoff) Next(d time.Duration) time.Duration {
	if d <= 0 {
		return b.Initial
	}
	f := b.Factor
	if f < 1 {
		f = 1
	}
	n := time.Duration(float64(d) * f)
	if b.Max > 0 && n > b.Max {
		n = b.Max
	}
	return n
}

// Poll calls check immediately, then after each backoff interval, until it
// returns done or an error, or ctx ends (the context's error is returned).
func (b Backoff) Poll(ctx context.Context, check func(context.Context) (done bool, err error)) error {
	var d time.Duration
	for {
		done, err := check(ctx)
		if err != nil || done {
			return err
		}
		d = b.Next(d)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// VolumeCondition decides a wait: done when the volume reached the wanted
// state; an error stops the wait (e.g. the volume went to error_attaching).
type VolumeCondition func(v *Volume) (done bool, err error)

// ErrVolumeState: a wait stopped because the volume reached a state from
// which the wanted state will not come (error, error_attaching, ...).
var ErrVolumeState = errors.New("volume in a failed state")

func failedStatus(v *Volume) error {
	if strings.HasPrefix(v.Status, "error") {
		return fmt.Errorf("status %q: %w", v.Status, ErrVolumeState)
	}
	return nil
}

// StatusIs is done when the volume's status is one of statuses; any error*
// status (unless listed) fails the wait.
func StatusIs(statuses ...string) VolumeCondition {
	return func(v *Volume) (bool, error) {
		if slices.Contains(statuses, v.Status) {
			return true, nil
		}
		return false, failedStatus(v)
	}
}

// AttachedTo is done when the volume is in-use with an attachment to
// serverID; error* statuses fail the wait.
func AttachedTo(serverID string) VolumeCondition {
	return func(v *Volume) (bool, error) {
		if v.Status == "in-use" && v.AttachedTo(serverID) != nil {
			return true, nil
		}
		return false, failedStatus(v)
	}
}

// DetachedFrom is done when the volume has no attachment to serverID and is
// not detaching (available, or in-use elsewhere for multiattach);
// error_detaching fails the wait.
func DetachedFrom(serverID string) VolumeCondition {
	return func(v *Volume) (bool, error) {
		if v.AttachedTo(serverID) == nil && v.Status != "detaching" && v.Status != "attaching" && v.Status != "reserved" {
			return true, nil
		}
		return false, failedStatus(v)
	}
}

// WaitVolume polls the volume with the client's backoff until cond is done.
// It returns the last volume seen in every case: on success the volume in
// its wanted state; when cond fails, that volume and cond's error; when ctx
// ends, the last state seen and an error wrapping ErrTimeout and ctx.Err(),
// naming the last status, so the caller can treat it as uncertain rather
// than assume either outcome.
func (c *Client) WaitVolume(ctx context.Context, id string, cond VolumeCondition) (*Volume, error) {
	var last *Volume
	var lastErr, lastTransient error
	polls := 0
	start := time.Now()
	err := c.backoff.Poll(ctx, func(ctx context.Context) (bool, error) {
		polls++
		v, err := c.GetVolume(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				return false, nil // the deadline, not the API, ended this poll
			}
			if Transient(err) {
				// One 5xx or dropped connection says nothing about the
				// volume: keep polling until the caller's deadline.
				lastTransient = err
				c.log.Warn("wait volume: poll failed, retrying", "volume", id, "err", err)
				return false, nil
			}
			return false, err
		}
		last = v
		done, err := cond(v)
		if err != nil {
			lastErr = err
			return false, err
		}
		return done, nil
	})
	c.log.Debug("wait volume", "volume", id, "polls", polls, "duration", time.Since(start), "err", err)
	switch {
	case err == nil:
		return last, nil
	case lastErr != nil:
		return last, fmt.Errorf("volume %s: wait: %w", id, lastErr)
	case ctx.Err() != nil:
		status := "never seen"
		if last != nil {
			status = fmt.Sprintf("last status %q", last.Status)
		}
		if lastTransient != nil {
			status += fmt.Sprintf(" (last failed poll: %v)", lastTransient)
		}
		return last, fmt.Errorf("volume %s: wait: %s after %d polls in %s: %w: %w",
			id, status, polls, time.Since(start).Round(time.Millisecond), ErrTimeout, ctx.Err())
	default:
		return last, err // GetVolume's error, already naming the volume
	}
}

// WaitVolumeDeleted polls until the volume is gone (404). A volume in
// error_deleting fails the wait.
func (c *Client) WaitVolumeDeleted(ctx context.Context, id string) error {
	var last *Volume
	err := c.backoff.Poll(ctx, func(ctx context.Context) (bool, error) {
		v, err := c.GetVolume(ctx, id)
		if errors.Is(err, ErrNotFound) {
			return true, nil
		}
		if err != nil {
			if ctx.Err() != nil || Transient(err) {
				return false, nil // the deadline, or one failed poll: keep waiting
			}
			return false, err
		}
		last = v
		if v.Status == "error_deleting" {
			return false, fmt.Errorf("volume %s: delete: status %q: %w", id, v.Status, ErrVolumeState)
		}
		return false, nil
	})
	if err != nil && ctx.Err() != nil {
		status := "never seen"
		if last != nil {
			status = fmt.Sprintf("last status %q", last.Status)
		}
		return fmt.Errorf("volume %s: wait for deletion: %s: %w: %w", id, status, ErrTimeout, ctx.Err())
	}
	return err
}
