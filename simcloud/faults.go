package simcloud

import (
	"context"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"
)

// Op names an API operation for fault injection.
type Op string

// Operations that faults can target.
const (
	OpAuth               Op = "identity.auth"
	OpVolumeCreate       Op = "volume.create"
	OpVolumeGet          Op = "volume.get"
	OpVolumeList         Op = "volume.list"
	OpVolumeUpdate       Op = "volume.update"
	OpVolumeDelete       Op = "volume.delete"
	OpVolumeMetadata     Op = "volume.metadata"
	OpVolumeAction       Op = "volume.action"
	OpAttachmentCreate   Op = "attachment.create"
	OpAttachmentGet      Op = "attachment.get"
	OpAttachmentList     Op = "attachment.list"
	OpAttachmentUpdate   Op = "attachment.update"
	OpAttachmentDelete   Op = "attachment.delete"
	OpAttachmentComplete Op = "attachment.complete"
	OpSnapshotCreate     Op = "snapshot.create"
	OpSnapshotGet        Op = "snapshot.get"
	OpSnapshotList       Op = "snapshot.list"
	OpSnapshotDelete     Op = "snapshot.delete"
	OpServerGet          Op = "compute.server_get"
	OpServerList         Op = "compute.server_list"
	OpNovaAttach         Op = "compute.volume_attach"
	OpNovaDetach         Op = "compute.volume_detach"
	OpNovaAttachmentList Op = "compute.volume_attachment_list"
	OpNovaAttachmentGet  Op = "compute.volume_attachment_get"
	OpMetadata           Op = "metadata"
)

// Faults injects failures. All methods are safe for concurrent use and
// take effect on the next request. Random draws come from the simulator's
// seed, so a run is reproducible.
type Faults struct {
	sim *Sim

	mu           sync.Mutex
	rng          *rand.Rand
	rules        map[Op]*faultRule
	pageFails    map[Op][]pageFail
	detachHang   bool
	attachFails  int
	detachFails  int
	hangReleased chan struct{}
}

type faultRule struct {
	latency     time.Duration
	errorRate   float64
	errorStatus int
	failNext    int
	failStatus  int
	timeoutRate float64
}

type pageFail struct {
	page   int
	status int
}

func newFaults(seed uint64, s *Sim) *Faults {
	return &Faults{sim: s, rng: rand.New(rand.NewPCG(seed, 0xfa017)), rules: map[Op]*faultRule{},
		pageFails: map[Op][]pageFail{}, hangReleased: make(chan struct{})}
}

func (f *Faults) rule(op Op) *faultRule {
	r := f.rules[op]
	if r == nil {
		r = &faultRule{}
		f.rules[op] = r
	}
	return r
}

// SetLatency delays every request of op by d (on the simulator's clock).
func (f *Faults) SetLatency(op Op, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rule(op).latency = d
}

// SetErrorRate makes a fraction rate (0..1) of op's requests fail with
// status (500 when 0), with the service's error body.
func (f *Faults) SetErrorRate(op Op, rate float64, status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.rule(op)
	r.errorRate, r.errorStatus = rate, orStatus(status)
}

// FailNext makes the next n requests of op fail with status (500 when 0).
func (f *Faults) FailNext(op Op, n, status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.rule(op)
	r.failNext, r.failStatus = n, orStatus(status)
}

// SetTimeoutRate makes a fraction rate of op's requests hang without an
// answer until the client gives up (or the simulator closes).
func (f *Faults) SetTimeoutRate(op Op, rate float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rule(op).timeoutRate = rate
}

// FailPage makes the listing op (OpVolumeList, OpAttachmentList,
// OpServerList) fail once with status (500 when 0) when page number page
// (1-based; page 1 has no marker) is requested.
func (f *Faults) FailPage(op Op, page, status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pageFails[op] = append(f.pageFails[op], pageFail{page: page, status: orStatus(status)})
}

// HangNovaDetach makes every Nova detach accepted from now on never
// complete (the guest never acknowledges the unplug): the volume stays
// detaching and the mapping stays. Turning it off releases the ones
// waiting.
func (f *Faults) HangNovaDetach(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.detachHang && !on {
		close(f.hangReleased)
		f.hangReleased = make(chan struct{})
	}
	f.detachHang = on
}

// FailNovaAttach makes the next n Nova attaches fail on the compute side
// (after the volume was reserved); Nova rolls them back.
func (f *Faults) FailNovaAttach(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attachFails = n
}

// FailNovaDetach makes the next n Nova detaches fail on the compute side;
// Nova rolls the volume back to in-use.
func (f *Faults) FailNovaDetach(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.detachFails = n
}

// ExpireTokens ends every token issued so far; clients must authenticate
// again.
func (f *Faults) ExpireTokens() {
	f.sim.model.expireTokens(f.sim.clock.Now())
}

// Reset clears every fault (and releases hung detaches).
func (f *Faults) Reset() {
	f.HangNovaDetach(false)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = map[Op]*faultRule{}
	f.pageFails = map[Op][]pageFail{}
	f.attachFails, f.detachFails = 0, 0
}

func orStatus(s int) int {
	if s == 0 {
		return http.StatusInternalServerError
	}
	return s
}

// verdict is what a fault decided for one request.
type verdict struct {
	latency time.Duration
	status  int  // non-zero: answer with this error
	hang    bool // never answer
}

func (f *Faults) decide(op Op) verdict {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.rules[op]
	if r == nil {
		return verdict{}
	}
	v := verdict{latency: r.latency}
	switch {
	case r.failNext > 0:
		r.failNext--
		v.status = r.failStatus
	case r.timeoutRate > 0 && f.rng.Float64() < r.timeoutRate:
		v.hang = true
	case r.errorRate > 0 && f.rng.Float64() < r.errorRate:
		v.status = r.errorStatus
	}
	return v
}

// pageStatus returns the status to fail page with, once, or 0.
func (f *Faults) pageStatus(op Op, page int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, p := range f.pageFails[op] {
		if p.page == page {
			f.pageFails[op] = append(f.pageFails[op][:i:i], f.pageFails[op][i+1:]...)
			return p.status
		}
	}
	return 0
}

func (f *Faults) takeAttachFail() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.attachFails > 0 {
		f.attachFails--
		return true
	}
	return false
}

func (f *Faults) takeDetachFail() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.detachFails > 0 {
		f.detachFails--
		return true
	}
	return false
}

// detachHold returns a channel closed when hung detaches are released, or
// nil when detaches are not hung.
func (f *Faults) detachHold() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.detachHang {
		return nil
	}
	return f.hangReleased
}

// sleep waits d on the simulator's clock, or until ctx ends.
func sleep(ctx context.Context, c Clock, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	select {
	case <-c.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
