package volumedriver

// SweepEvent is the stale-mount sweep for one volume the plugin holds
// (issue 4), run periodically under the volume's lock: given the volume's
// state, its live mount (nil if mountinfo has none under the root) and
// Cinder's view (nil on 404), it returns the event to Drive, or nil.
//
//   - an operation in flight: nothing (at most one at a time);
//   - mounted, and the device is gone, the mountpoint corrupted, or Cinder
//     says the volume is no longer attached here: Lost (force-unmount, drop
//     the mount ids, idempotent detach);
//   - attached but not mounted, and Cinder says not attached here: Lost;
//   - mounted with no container (a busy unmount earlier) or attached with no
//     container: Release, to retry;
//   - a mount that vanished while containers are recorded, or a Cinder 404:
//     nothing (reported by the reason), never a detach on that alone.
//
// reason says why (for the log), also when no event is returned.
func SweepEvent(s VolumeState, m *LiveMount, c *CinderVolume, instanceID string) (ev Event, reason string) {
	if !s.Phase.Steady() {
		return nil, "operation in flight"
	}
	if s.Phase == PhaseDetached {
		return nil, ""
	}
	attachedHere := false
	if c != nil {
		_, attachedHere = c.attachmentTo(instanceID)
	}
	goneHere := c != nil && !attachedHere && !c.transitional()
	switch s.Phase {
	case PhaseMounted:
		switch {
		case m == nil && goneHere:
			// Unmounted behind the plugin's back (the node-scope sweep)
			// and no longer attached here: drop the mount ids.
			return Lost{Reason: "stale mount already gone and Cinder says it is no longer attached to this instance"}, "no longer attached here"
		case m == nil:
			return nil, "recorded as mounted but not in mountinfo: left for an operator"
		case m.DeviceGone:
			return Lost{Reason: "stale mount: its device " + m.Device + " is gone"}, "device gone"
		case m.Corrupted:
			return Lost{Reason: "stale mount: the mountpoint is corrupted"}, "mountpoint corrupted"
		case goneHere:
			return Lost{Reason: "stale mount: Cinder says it is no longer attached to this instance"}, "no longer attached here"
		case c == nil:
			return nil, "Cinder does not know the volume: left as is"
		case len(s.Refs) == 0:
			return Release{}, "mounted with no container"
		}
	case PhaseAttached:
		switch {
		case goneHere:
			return Lost{Reason: "Cinder says it is no longer attached to this instance"}, "no longer attached here"
		case c == nil:
			return nil, "Cinder does not know the volume: left as is"
		case len(s.Refs) == 0:
			return Release{}, "attached with no container"
		}
	}
	return nil, ""
}
