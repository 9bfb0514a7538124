package volumedriver

import "slices"

// writeNeeded decides whether a volume's new state must reach the state
// file before the next step (Drive's write-ahead), given the state last
// written (had: the file lists the volume).
//
// Within one Mount, attaching → waiting-device → mounting changes only
// what a restart re-derives anyway (the attachment from Cinder, the device
// by volume id, the mount from mountinfo): Reconcile treats a record in any
// of these phases alike (same mount ids: keep what is used, release the
// rest). So those writes are skipped — two fsyncs less per Mount, on the
// path measured against the attach latency. Every change of mount ids, of
// a steady phase, or into unmounting/detaching is written.
func writeNeeded(prev VolumeState, had bool, next VolumeState) bool {
	if !had {
		return true
	}
	inFlight := func(p Phase) bool {
		return p == PhaseAttaching || p == PhaseWaitingDevice || p == PhaseMounting
	}
	if !inFlight(prev.Phase) || !inFlight(next.Phase) {
		return true
	}
	return prev.Name != next.Name || prev.FSType != next.FSType || prev.MountDir != next.MountDir ||
		prev.ForceUnmount != next.ForceUnmount ||
		!slices.Equal(prev.Refs, next.Refs) || !slices.Equal(prev.Pending, next.Pending) ||
		!slices.Equal(prev.Releasing, next.Releasing)
}
