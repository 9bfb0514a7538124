package volumedriver

import (
	"testing"
	"time"

	"github.com/cinderwarden/cinderwarden/openstack"
)

// The comparison rows of the performance report: the same Mount benchmarks
// with the attach wait REX-Ray and cinder-csi use, a fixed 1 s poll of
// Cinder (initial = cap = 1 s, no growth) and no wake-up when the by-id
// device appears. Only the wait policy differs from the default Driver.

// fixedPoll makes the Driver poll Cinder every second, like REX-Ray.
func fixedPoll(c *Config) {
	c.Backoff = openstack.Backoff{Initial: time.Second, Factor: 1, Max: time.Second}
	c.NoDeviceWake = true
}

// BenchmarkMountVsAttachLatencyFixedPoll is BenchmarkMountVsAttachLatency
// with the fixed 1 s poll (x_attach).
func BenchmarkMountVsAttachLatencyFixedPoll(b *testing.B) {
	benchMountLatency(b, fixedPoll)
}

// BenchmarkParallelMountsFixedPoll is BenchmarkParallelMounts with the
// fixed 1 s poll (x_one).
func BenchmarkParallelMountsFixedPoll(b *testing.B) {
	benchParallel(b, fixedPoll)
}

// TestFixedPollPolicy checks the comparison policy really is a fixed 1 s
// interval (every interval 1 s, never shorter or growing) and that the
// default Driver keeps its short backoff and the device wake-up.
func TestFixedPollPolicy(t *testing.T) {
	var c Config
	fixedPoll(&c)
	if !c.NoDeviceWake {
		t.Error("fixed poll keeps the device wake-up")
	}
	var d time.Duration
	for i := range 10 {
		d = c.Backoff.Next(d)
		if d != time.Second {
			t.Fatalf("interval %d = %s, want 1s", i, d)
		}
	}
	var def Config
	if def.NoDeviceWake {
		t.Error("the zero Config turns the device wake-up off")
	}
}
