package volumedriver

import (
	"context"
	"fmt"
)

// Executor performs one Action (the I/O: Nova, Cinder, by-id lookup, mkfs,
// mount) and reports its outcome as the matching result event. It never
// returns "nothing": a failure is AttachFailed, DeviceFailed, MountFailed,
// UnmountFailed or DetachFailed.
type Executor func(ctx context.Context, a Action) Event

// Persister writes the volume's state durably (typically: NodeState.With,
// then SaveState, under the plugin's state-file lock).
type Persister func(VolumeState) error

// Drive feeds ev to v and then runs the machine until it is steady: for
// every Ready it persists first, then performs the action through exec and
// feeds the outcome back, collecting the replies. The caller holds the
// volume's lock for the whole call and answers its own request from the
// returned replies (op and mount id).
//
// ctx should not be the Docker request's context: a rollback (detach after
// a failed mount) must run even if Docker gave up; give it its own deadline.
//
// If a persist fails, the actions of that step are not performed and its
// successful replies are turned into errors, so Docker never hears success
// for a state that is not on disk; the error is returned and the in-memory
// machine is ahead of the file: the caller must treat the volume as
// unknown until it is reconciled again (Reconcile on the next start).
func Drive(ctx context.Context, v *Volume, ev Event, exec Executor, persist Persister) ([]Reply, error) {
	var replies []Reply
	queue := []Event{ev}
	for len(queue) > 0 {
		rd, err := v.Step(queue[0])
		queue = queue[1:]
		if err != nil {
			return replies, err
		}
		if rd.Persist {
			if perr := persist(v.State()); perr != nil {
				perr = fmt.Errorf("volume %s: save node state: %w", v.st.VolumeID, perr)
				for _, r := range rd.Replies {
					if r.Err == nil {
						r.Err, r.Mountpoint = perr, ""
					}
					replies = append(replies, r)
				}
				return replies, perr
			}
		}
		for _, a := range rd.Actions {
			queue = append(queue, exec(ctx, a))
		}
		replies = append(replies, rd.Replies...)
	}
	return replies, nil
}

// ReplyFor picks the reply to one request out of Drive's replies.
func ReplyFor(replies []Reply, op ReplyOp, mountID string) (Reply, bool) {
	for _, r := range replies {
		if r.Op == op && r.MountID == mountID {
			return r, true
		}
	}
	return Reply{}, false
}
