package volumedriver

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Takeover (issue 4): the pure decisions of both sides. The I/O is in
// takeover.go.
//
// Protocol, all through the volume's Cinder metadata:
//
//  1. The taker (Mount here, volume attached to another instance, preempt
//     on) writes a TakeoverRequest plus MetaTakeoverHolder naming the
//     holder. Its token is larger than every generation and token seen on
//     the volume: a fencing token. Every attach by a plugin first writes
//     MetaGeneration (claimGeneration), so a request older than the
//     holder's attach (token ≤ the holder's generation) is stale and
//     ignored.
//  2. The holder's plugin lists the volumes whose MetaTakeoverHolder is its
//     own instance (one filtered, paginated listing every watch interval,
//     only while it holds volumes) and answers with AnswerTakeover: no
//     container → release (unmount, Nova detach of itself); containers and
//     not forced → refuse (MetaTakeoverRefused = token, with the reason);
//     forced → force-unmount and detach.
//  3. The taker polls the volume (NextTakerStep): the holder let go →
//     attach; refused → a *TakeoverRefusedError ("in use on <instance>");
//     no answer within the grace → it looks the holder up in Nova
//     (ClassifyHolder) and detaches through Nova; only if Nova cannot, and
//     force-detach is enabled, Cinder os-force_detach (admin), then the
//     volume is tagged MetaZombieInstance for the compute-side reconciler.

// More takeover metadata keys (the request's own are in metadata.go).
const (
	// MetaTakeoverHolder names the instance the request is addressed to;
	// holders find requests with one listing filtered on it.
	MetaTakeoverHolder = "cinderwarden.takeover.holder"
	// MetaTakeoverRefused is the token of the request the holder refused,
	// MetaTakeoverRefusedReason why ("in use on <instance> by 2 containers").
	MetaTakeoverRefused       = "cinderwarden.takeover.refused"
	MetaTakeoverRefusedReason = "cinderwarden.takeover.refused_reason"
	// MetaTakeoverReleased is the token of the request the holder answered
	// by releasing the volume (a record for operators).
	MetaTakeoverReleased = "cinderwarden.takeover.released"
	// MetaZombieInstance / MetaZombieHost / MetaZombieAt: a takeover
	// force-detached the volume in Cinder from that instance: its disk may
	// still be in that domain (a zombie) until the reconciler removes it.
	MetaZombieInstance = "cinderwarden.zombie.instance"
	MetaZombieHost     = "cinderwarden.zombie.host"
	MetaZombieAt       = "cinderwarden.zombie.at"
)

// requestKeys are the keys a finished takeover removes.
func requestKeys() []string {
	return append(TakeoverKeys(), MetaTakeoverHolder, MetaTakeoverRefused, MetaTakeoverRefusedReason)
}

// More error classes.
var (
	// ErrTakeoverRefused: the holder refused because containers use the
	// volume there. Also unwraps to ErrInUse.
	ErrTakeoverRefused = errors.New("takeover refused by the holder")
	// ErrTakeoverContended: another instance asked to take the volume over
	// at the same time, with a later request.
	ErrTakeoverContended = errors.New("takeover contended")
	// ErrTakeoverFailed: the holder did not let go and no safe way to
	// detach it worked; nothing was force-detached unless the error says so.
	ErrTakeoverFailed = errors.New("takeover failed")
)

// TakeoverRefusedError is the taker's answer when the holder refused.
type TakeoverRefusedError struct {
	Name, VolumeID string
	Holder, Host   string
	Reason         string // the holder's, from MetaTakeoverRefusedReason
}

func (e *TakeoverRefusedError) Error() string {
	host := e.Host
	if host == "" {
		host = "unknown host"
	}
	return fmt.Sprintf("volume %s (%s) is in use on instance %s (%s): %s; takeover refused: stop the containers "+
		"using it there, or take it over by force (metadata %s=true, or -o %s=true when creating it)",
		e.Name, e.VolumeID, e.Holder, host, e.Reason, MetaPreemptForce, OptPreemptForce)
}

func (e *TakeoverRefusedError) Unwrap() []error { return []error{ErrTakeoverRefused, ErrInUse} }

// NextToken is the fencing token for a new request: larger than the
// volume's generation and any request token already in its metadata
// (unreadable values count as 0: the request is rewritten anyway).
func NextToken(md map[string]string) uint64 {
	var max uint64
	for _, k := range []string{MetaGeneration, MetaTakeoverToken, MetaTakeoverRefused, MetaTakeoverReleased} {
		if n, err := strconv.ParseUint(md[k], 10, 64); err == nil && n > max {
			max = n
		}
	}
	return max + 1
}

// TakerStep is what the taker does after one look at the volume.
type TakerStep int

const (
	// TakerWait: the holder has not answered yet; poll again.
	TakerWait TakerStep = iota + 1
	// TakerAttach: the holder no longer has it: attach (plan again).
	TakerAttach
	// TakerRefused: the holder refused (containers use it there).
	TakerRefused
	// TakerContended: another taker replaced the request.
	TakerContended
	// TakerCheckHolder: the grace is over: look the holder up in Nova and
	// detach through Nova.
	TakerCheckHolder
)

func (s TakerStep) String() string {
	switch s {
	case TakerWait:
		return "wait"
	case TakerAttach:
		return "attach"
	case TakerRefused:
		return "refused"
	case TakerContended:
		return "contended"
	case TakerCheckHolder:
		return "check-holder"
	}
	return fmt.Sprintf("TakerStep(%d)", int(s))
}

// TakerView is one poll of the taker.
type TakerView struct {
	Volume  *CinderVolume // Cinder's view now
	Taker   string        // this instance
	Holder  string        // the instance asked to let go
	Token   uint64        // this request's token
	Elapsed time.Duration // since the request was written
	Grace   time.Duration // how long the holder may take to answer
}

// NextTakerStep decides the taker's next step, with the reason for the log.
// A holder that is detaching is answering: it is waited for even past the
// grace (the caller's deadline still bounds the wait).
func NextTakerStep(v TakerView) (TakerStep, string) {
	c := v.Volume
	if _, held := c.attachmentTo(v.Holder); !held {
		return TakerAttach, "the holder no longer has the volume"
	}
	md := c.Metadata
	if md[MetaTakeoverRefused] == strconv.FormatUint(v.Token, 10) {
		return TakerRefused, "the holder refused: " + md[MetaTakeoverRefusedReason]
	}
	if md[MetaTakeoverTaker] != v.Taker || md[MetaTakeoverToken] != strconv.FormatUint(v.Token, 10) {
		return TakerContended, fmt.Sprintf("the request was replaced by instance %q (token %q)", md[MetaTakeoverTaker], md[MetaTakeoverToken])
	}
	if c.Status == "detaching" {
		return TakerWait, "the holder is detaching"
	}
	if v.Elapsed < v.Grace {
		return TakerWait, "waiting for the holder"
	}
	return TakerCheckHolder, fmt.Sprintf("no answer from the holder within %s", v.Grace)
}

// HolderState is the holder's instance as Nova reports it after the grace.
type HolderState int

const (
	// HolderGone: Nova does not know the instance (404) or it is deleted.
	HolderGone HolderState = iota + 1
	// HolderDown: SHUTOFF, ERROR, or another non-running status.
	HolderDown
	// HolderSilent: ACTIVE, but its plugin did not answer within the grace.
	HolderSilent
	// HolderBusy: Nova has a task running on it (task_state set): a detach
	// now would be refused with 409.
	HolderBusy
)

func (s HolderState) String() string {
	switch s {
	case HolderGone:
		return "gone"
	case HolderDown:
		return "down"
	case HolderSilent:
		return "active-silent"
	case HolderBusy:
		return "busy"
	}
	return fmt.Sprintf("HolderState(%d)", int(s))
}

// ClassifyHolder says what the holder's Nova record means: status and
// task_state of the server, found=false for a 404. Gone, down and silent
// holders are all detached through Nova (which keeps libvirt, its mappings
// and Cinder consistent); a busy one is reported (Nova answers 409).
func ClassifyHolder(found bool, status, taskState string) HolderState {
	switch {
	case !found || status == "DELETED" || status == "SOFT_DELETED":
		return HolderGone
	case taskState != "":
		return HolderBusy
	case status == "ACTIVE":
		return HolderSilent
	}
	return HolderDown
}

// HolderAnswer is what the holder does about a takeover request.
type HolderAnswer int

const (
	// AnswerIgnore: not for this node, stale, or already answered.
	AnswerIgnore HolderAnswer = iota + 1
	// AnswerLater: an operation is in flight on the volume: next round.
	AnswerLater
	// AnswerRelease: no container uses it: unmount and detach now.
	AnswerRelease
	// AnswerRefuse: containers use it and the request is not forced.
	AnswerRefuse
	// AnswerForceRelease: containers use it but the request is forced:
	// force-unmount (then lazy), drop the mount ids, detach.
	AnswerForceRelease
)

func (a HolderAnswer) String() string {
	switch a {
	case AnswerIgnore:
		return "ignore"
	case AnswerLater:
		return "later"
	case AnswerRelease:
		return "release"
	case AnswerRefuse:
		return "refuse"
	case AnswerForceRelease:
		return "force-release"
	}
	return fmt.Sprintf("HolderAnswer(%d)", int(a))
}

// AnswerTakeover decides the holder's answer to request r, given this
// node's state of the volume, this instance and the token it already
// refused (0: none), with the reason for the log.
func AnswerTakeover(r TakeoverRequest, st VolumeState, self string, refused uint64) (HolderAnswer, string) {
	switch {
	case r.Taker == self:
		return AnswerIgnore, "our own request"
	case st.Phase == PhaseDetached:
		return AnswerIgnore, "not held by this node"
	case r.Token <= st.Generation:
		return AnswerIgnore, fmt.Sprintf("stale request: token %d is not above our generation %d", r.Token, st.Generation)
	case !st.Phase.Steady():
		return AnswerLater, "an operation is in flight (" + st.Phase.String() + ")"
	case len(st.Refs) > 0 && r.Force:
		return AnswerForceRelease, fmt.Sprintf("forced by instance %s while %d container(s) use it", r.Taker, len(st.Refs))
	case len(st.Refs) > 0 && refused == r.Token:
		return AnswerIgnore, "already refused"
	case len(st.Refs) > 0:
		return AnswerRefuse, fmt.Sprintf("in use on %s by %d container(s)", self, len(st.Refs))
	}
	return AnswerRelease, "no container uses it"
}
