package volumedriver

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/docker/go-plugins-helpers/volume"

	"github.com/cinderwarden/cinderwarden/internal/testenv"
	"github.com/cinderwarden/cinderwarden/simcloud"
)

// The issue 3 benchmarks drive the Driver in-process against the simulator
// with real loop devices and mounts (root). Volumes are formatted before
// the clock runs: what is measured is Mount of an existing volume — Cinder
// lookup, Nova attach, the wait for Cinder and the by-id device, probe and
// mount(2) — against the simulator's configured attach latency. Run with
// e.g. -bench=Mount -benchtime=5x.

// benchNode is a simulator node with the given attach latency; tune (may
// be nil) changes the Driver's Config (the fixed-poll comparison).
func benchNode(b *testing.B, attach time.Duration, tune func(*Config)) *simNode {
	b.Helper()
	testenv.RequireRoot(b)
	testenv.RequireCommand(b, "mkfs.ext4", "blkid")
	return newSimNode(b, simNodeOptions{loop: true, tune: tune, latency: simcloud.Latencies{
		Create: 10 * time.Millisecond, Delete: 10 * time.Millisecond, Attach: attach, Detach: 20 * time.Millisecond}})
}

// prepare creates and formats n volumes (mount and unmount once each).
func (n *simNode) prepare(b *testing.B, count int) []string {
	b.Helper()
	names := make([]string, count)
	for i := range names {
		names[i] = fmt.Sprintf("bench-%02d", i)
		if err := n.drv.Create(&volume.CreateRequest{Name: names[i]}); err != nil {
			b.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, count)
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := n.drv.Mount(&volume.MountRequest{Name: name, ID: "prep"}); err != nil {
				errs[i] = err
				return
			}
			errs[i] = n.drv.Unmount(&volume.UnmountRequest{Name: name, ID: "prep"})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	return names
}

// mountAll mounts every name in parallel with mount id id and returns the
// wall time.
func (n *simNode) mountAll(b *testing.B, names []string, id string) time.Duration {
	b.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(names))
	start := time.Now()
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = n.drv.Mount(&volume.MountRequest{Name: name, ID: id})
		}()
	}
	wg.Wait()
	d := time.Since(start)
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	return d
}

func (n *simNode) unmountAll(b *testing.B, names []string, id string) {
	b.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(names))
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = n.drv.Unmount(&volume.UnmountRequest{Name: name, ID: id})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMountVsAttachLatency reports Mount's wall time as a multiple of
// the simulator's attach latency (x_attach; target ≤ 1.05 at 1 s).
func BenchmarkMountVsAttachLatency(b *testing.B) {
	benchMountLatency(b, nil)
}

// benchMountLatency runs one sub-benchmark per attach latency (0.2, 1 and
// 3 s) on a node whose Driver Config tune changed (nil: the default).
func benchMountLatency(b *testing.B, tune func(*Config)) {
	for _, lat := range []time.Duration{time.Second, 200 * time.Millisecond, 3 * time.Second} {
		b.Run(fmt.Sprintf("attach=%s", lat), func(b *testing.B) {
			n := benchNode(b, lat, tune)
			names := n.prepare(b, 1)
			b.ResetTimer()
			var total, after time.Duration
			for i := 0; i < b.N; i++ {
				id := fmt.Sprintf("m%d", i)
				start := time.Now()
				total += n.mountAll(b, names, id)
				end := time.Now()
				b.StopTimer()
				// The plugin's own time after the simulated hypervisor
				// plugged the disk (separates our overhead from the
				// simulator's and the machine's).
				for _, ev := range n.sim.Events() {
					if ev.Kind == simcloud.EventAttach && ev.Time.After(start) {
						after += end.Sub(ev.Time)
					}
				}
				n.unmountAll(b, names, id)
				b.StartTimer()
			}
			mean := total / time.Duration(b.N)
			b.ReportMetric(float64(mean)/float64(lat), "x_attach")
			b.ReportMetric(float64(mean.Microseconds())/1000, "ms/mount")
			b.ReportMetric(float64((after/time.Duration(b.N)).Microseconds())/1000, "ms_after_plug/mount")
		})
	}
}

// BenchmarkParallelMounts reports the wall time of n Mounts of distinct
// volumes started together (n=16, n=64) as a multiple of one Mount alone
// (x_one; target ≤ 1.3 at 16), at a 1 s attach latency.
func BenchmarkParallelMounts(b *testing.B) {
	benchParallel(b, nil)
}

// benchParallel runs n=16 and n=64 on one node (64 volumes prepared once)
// whose Driver Config tune changed (nil: the default).
func benchParallel(b *testing.B, tune func(*Config)) {
	const lat = time.Second
	sizes := []int{16, 64}
	n := benchNode(b, lat, tune)
	all := n.prepare(b, sizes[len(sizes)-1])
	for _, size := range sizes {
		b.Run(fmt.Sprintf("n=%d", size), func(b *testing.B) {
			names := all[:size]
			b.ResetTimer()
			var one, par, lastPlug time.Duration
			for i := 0; i < b.N; i++ {
				id := fmt.Sprintf("n%d-m%d", size, i)
				one += n.mountAll(b, names[:1], id)
				b.StopTimer()
				n.unmountAll(b, names[:1], id)
				b.StartTimer()
				start := time.Now()
				par += n.mountAll(b, names, id)
				b.StopTimer()
				// When the simulated hypervisor plugged the last of the n
				// disks: the part of the parallel time that is the
				// simulator's (its loop devices are set up one by one in
				// the kernel), not the plugin's.
				var last time.Time
				for _, ev := range n.sim.Events() {
					if ev.Kind == simcloud.EventAttach && ev.Time.After(last) {
						last = ev.Time
					}
				}
				lastPlug += last.Sub(start)
				n.unmountAll(b, names, id)
				b.StartTimer()
			}
			b.ReportMetric(float64(par)/float64(one), "x_one")
			b.ReportMetric(float64((one/time.Duration(b.N)).Microseconds())/1000, "ms/one")
			b.ReportMetric(float64((par/time.Duration(b.N)).Microseconds())/1000, "ms/parallel")
			b.ReportMetric(float64((lastPlug/time.Duration(b.N)).Microseconds())/1000, "ms_to_last_plug/parallel")
		})
	}
}
