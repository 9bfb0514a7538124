package reconciler_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/volumeattach"

	"github.com/cinderwarden/cinderwarden/libvirtscan/libvirttest"
	"github.com/cinderwarden/cinderwarden/openstack"
	"github.com/cinderwarden/cinderwarden/reconciler"
	"github.com/cinderwarden/cinderwarden/simcloud"
)

// scaleRig is a simulator holding `instances` Nova servers on simHost with
// `disks` volumes attached to each through Nova, plus unattached volumes up
// to `total`, and a libvirt test-driver document (opened through libvirtd)
// whose domains are those servers with those volumes as disks (serial and
// ua- alias, as nova-compute writes them).
type scaleRig struct {
	obs   *reconciler.Observer
	cloud *openstack.Client
}

func newScaleRig(tb testing.TB, instances, disks, total int) scaleRig {
	tb.Helper()
	testingLibvirt(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	sim, err := simcloud.Start(context.Background(), simcloud.Options{Seed: uint64(time.Now().UnixNano()) | 1, StateDir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = sim.Close() })
	m := member(tb, sim.Member())

	vols := make([]string, total)
	var mu sync.Mutex
	var firstErr error
	parallel(total, 8, func(i int) {
		v, err := volumes.Create(ctx, m.volume, volumes.CreateOpts{Size: 1, Name: fmt.Sprintf("vol-%d", i)}, nil).Extract()
		mu.Lock()
		defer mu.Unlock()
		if err != nil && firstErr == nil {
			firstErr = err
		}
		if err == nil {
			vols[i] = v.ID
		}
	})
	if firstErr != nil {
		tb.Fatalf("create volumes: %v", firstErr)
	}
	insts := make([]string, instances)
	for i := range instances {
		in, err := sim.AddInstance(simcloud.InstanceSpec{ID: libvirttest.TestDriverInstanceID(i), Host: simHost, Name: fmt.Sprintf("vm-%d", i)})
		if err != nil {
			tb.Fatal(err)
		}
		insts[i] = in.ID
	}
	// The first instances*disks volumes go to the servers, disks each.
	parallel(instances*disks, 8, func(k int) {
		_, err := volumeattach.Create(ctx, m.compute, insts[k/disks], volumeattach.CreateOpts{VolumeID: vols[k]}).Extract()
		if err != nil {
			mu.Lock()
			if firstErr == nil {
				firstErr = fmt.Errorf("attach %s to %s: %w", vols[k], insts[k/disks], err)
			}
			mu.Unlock()
		}
	})
	if firstErr != nil {
		tb.Fatal(firstErr)
	}
	cloud := adminClient(tb, sim)
	// Wait until every attach has completed (one listing per poll).
	for delay := 10 * time.Millisecond; ; delay = min(delay*2, 500*time.Millisecond) {
		inUse, err := cloud.ListVolumes(ctx, openstack.VolumeFilter{AllTenants: true, Status: "in-use"})
		if err != nil {
			tb.Fatal(err)
		}
		if len(inUse) == instances*disks {
			break
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("%d of %d volumes in-use: %v", len(inUse), instances*disks, ctx.Err())
		case <-time.After(delay):
		}
	}

	path := filepath.Join(tb.TempDir(), "domains.xml")
	if err := os.WriteFile(path, testDriverXML(insts, vols, disks), 0o644); err != nil {
		tb.Fatal(err)
	}
	conn := libvirttest.Dial(tb, "test+unix://"+path)
	return scaleRig{obs: &reconciler.Observer{Host: simHost, Libvirt: conn, Cloud: cloud, ScanParallelism: 16}, cloud: cloud}
}

func testingLibvirt(tb testing.TB) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("scale test: not in -short")
	}
}

func parallel(n, workers int, fn func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// testDriverXML renders one test-driver domain per instance with a root
// disk and `disks` volume disks as nova-compute defines them.
func testDriverXML(insts, vols []string, disks int) []byte {
	var b bytes.Buffer
	b.WriteString("<node>\n")
	for i, id := range insts {
		fmt.Fprintf(&b, `<domain type='test'>
  <name>%s</name>
  <uuid>%s</uuid>
  <metadata><nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1"><nova:name>vm-%d</nova:name></nova:instance></metadata>
  <memory unit='MiB'>64</memory>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'><source file='/var/lib/nova/instances/%s/disk'/><target dev='vda' bus='virtio'/></disk>
`, libvirttest.TestDriverInstanceName(i), id, i, id)
		for j := range disks {
			v := vols[i*disks+j]
			fmt.Fprintf(&b, "    <disk type='block' device='disk'><source dev='/dev/disk/by-id/virtio-%s'/><target dev='vd%c' bus='virtio'/><serial>%s</serial><alias name='ua-%s'/></disk>\n", v[:20], 'b'+j, v, v)
		}
		b.WriteString("  </devices>\n</domain>\n")
	}
	b.WriteString("</node>\n")
	return b.Bytes()
}

// observePlan is one dry-run pass; it returns the result and the OpenStack
// calls it made.
func (r scaleRig) observePlan(ctx context.Context) (reconciler.Result, int64) {
	before := r.cloud.APICalls()
	obs := r.obs.Observe(ctx)
	res := reconciler.Plan(obs, reconciler.NewMemory(), reconciler.DefaultPolicy(), time.Now())
	return res, r.cloud.APICalls() - before
}

// TestScaleCallCount: 1,000 test-driver domains × 4 volume disks, 20,000
// volumes in the simulator. A dry-run observe+plan is clean and makes at
// most 10 OpenStack API calls (the token is fetched once, before). The wall
// time is logged, not asserted (2 shared cores).
func TestScaleCallCount(t *testing.T) {
	r := newScaleRig(t, 1000, 4, 20000)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	setup := r.cloud.Metrics().CallsByRequest()
	start := time.Now()
	res, calls := r.observePlan(ctx)
	elapsed := time.Since(start)
	pass := map[string]int64{}
	for req, n := range r.cloud.Metrics().CallsByRequest() {
		if d := n - setup[req]; d > 0 {
			pass[req] = d
		}
	}
	t.Logf("1000 domains x 4 disks, 20000 volumes: %d OpenStack calls, %v, by request %v", calls, elapsed, pass)
	if res.Aborted {
		t.Fatalf("aborted: %v", res.AbortReasons)
	}
	if calls > 10 {
		t.Errorf("%d OpenStack calls, want at most 10", calls)
	}
	for _, f := range res.Findings {
		if f.Severity != reconciler.SeverityInfo && f.Class != reconciler.ClassUnknownDomain {
			t.Errorf("unexpected finding on a consistent host: %+v", f)
			break
		}
	}
	if got := len(res.Sources); got != 4 || res.Sources["cinder"].State != reconciler.SourceOK || res.Sources["nova"].State != reconciler.SourceOK {
		t.Errorf("sources %+v", res.Sources)
	}
}

// BenchmarkObservePlan reports OpenStack calls and time per dry-run pass
// as the number of instances (each with 4 volumes, 20 volumes per instance
// in the simulator) grows.
func BenchmarkObservePlan(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			r := newScaleRig(b, n, 4, n*20)
			ctx := context.Background()
			var calls int64
			b.ResetTimer()
			for b.Loop() {
				_, c := r.observePlan(ctx)
				calls += c
			}
			b.ReportMetric(float64(calls)/float64(b.N), "calls/op")
		})
	}
}
