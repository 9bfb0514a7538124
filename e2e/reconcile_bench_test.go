package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cinderwarden/cinderwarden/internal/cloudconfig"
	"github.com/cinderwarden/cinderwarden/internal/testenv"
	"github.com/cinderwarden/cinderwarden/libvirtscan"
	"github.com/cinderwarden/cinderwarden/openstack"
	"github.com/cinderwarden/cinderwarden/reconciler"
	"github.com/cinderwarden/cinderwarden/simcloud"
)

// benchVolumes is how many volumes the simulator holds in every reconcile
// benchmark (the scale target of issue 5), at least 4 per domain.
const benchVolumes = 20000

// BenchmarkReconcileOnce measures whole `cinderwarden reconcile --once
// --output json` passes (process start, Keystone, libvirt through libvirtd,
// Nova and Cinder listings, plan, output) on a host with N test-driver
// domains × 4 volume disks, every volume attached through Nova, among
// 20,000 volumes. ns/op is the pass's wall time; excl-open-s/op the same
// minus open-s/op, the time libvirtd takes to open a test-driver
// connection (it parses the whole N-domain document; qemu:///system does
// not), measured in-process just before each pass; calls/op the Nova and
// Cinder requests of a pass (from its metrics textfile); auth-calls/op the
// Keystone requests (one token per process).
func BenchmarkReconcileOnce(b *testing.B) {
	for _, n := range []int{100, 1000, 5000} {
		b.Run(fmt.Sprintf("domains=%d", n), func(b *testing.B) {
			testenv.RequireLibvirt(b)
			setup := time.Now()
			rig := newReconcileBenchRig(b, n, 4, max(benchVolumes, 4*n))
			b.Logf("set-up of %d domains × 4 disks, %d volumes: %v", n, max(benchVolumes, 4*n), time.Since(setup).Round(time.Millisecond))
			var calls, auth int
			var open, exclOpen time.Duration
			for b.Loop() {
				// What only the test driver costs: libvirtd parses the
				// whole document when a connection opens.
				b.StopTimer()
				o := openTestDriver(b, "test+unix://"+rig.xmlPath)
				open += o
				textfile := filepath.Join(b.TempDir(), "m.prom")
				b.StartTimer()
				r := runCW(b, 0, rig.args("--once", "--output", "json", "--metrics-textfile", textfile)...)
				exclOpen += r.took - o
				if r.code != reconciler.ExitClean {
					b.Fatalf("exit %d on a consistent host, want %d:\n%s", r.code, reconciler.ExitClean, r.stderr)
				}
				all, failed := apiCalls(b, textfile)
				if failed > 0 {
					b.Fatalf("%d OpenStack requests failed", failed)
				}
				a := identityCalls(b, textfile)
				calls += all - a
				auth += a
			}
			b.ReportMetric(open.Seconds()/float64(b.N), "open-s/op")
			b.ReportMetric(exclOpen.Seconds()/float64(b.N), "excl-open-s/op")
			b.ReportMetric(float64(calls)/float64(b.N), "calls/op")
			b.ReportMetric(float64(auth)/float64(b.N), "auth-calls/op")
		})
	}
}

// openTestDriver times opening (and closing) a libvirt connection to uri.
func openTestDriver(tb testing.TB, uri string) time.Duration {
	tb.Helper()
	start := time.Now()
	c, err := libvirtscan.Dial(context.Background(), libvirtscan.Options{URI: uri})
	if err != nil {
		tb.Fatal(err)
	}
	took := time.Since(start)
	_ = c.Close()
	return took
}

// identityCalls counts the Keystone requests in a metrics textfile.
func identityCalls(tb testing.TB, textfile string) int {
	tb.Helper()
	b, err := os.ReadFile(textfile)
	if err != nil {
		tb.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "openstack_api_requests_total{") && strings.Contains(line, `service="identity"`) {
			var v float64
			if _, err := fmt.Sscanf(line[strings.LastIndex(line, " ")+1:], "%g", &v); err != nil {
				tb.Fatalf("bad metrics line %q", line)
			}
			n += int(v)
		}
	}
	return n
}

// reconcileBenchRig is a simulator with n servers on sceneHost, each with
// disks volumes attached through Nova, total volumes in all, and the
// matching test-driver document.
type reconcileBenchRig struct {
	dir, clouds, xmlPath string
}

func (r reconcileBenchRig) args(extra ...string) []string {
	return append([]string{"reconcile", "--os-cloud", simcloud.CloudAdmin, "--os-client-config-file", r.clouds,
		"--libvirt-uri", "test+unix://" + r.xmlPath, "--host", sceneHost,
		"--state-file", filepath.Join(r.dir, "state", "memory.json"), "--audit-log", filepath.Join(r.dir, "audit.jsonl"),
		"--metrics-listen", "off"}, extra...)
}

func newReconcileBenchRig(tb testing.TB, n, disks, total int) reconcileBenchRig {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := tb.TempDir()
	sim, err := simcloud.Start(context.Background(), simcloud.Options{Seed: 5, StateDir: filepath.Join(dir, "sim"),
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = sim.Close() })
	rig := reconcileBenchRig{dir: dir, clouds: filepath.Join(dir, "clouds.yaml"), xmlPath: filepath.Join(dir, "domains.xml")}
	if err := sim.WriteCloudsYAML(rig.clouds); err != nil {
		tb.Fatal(err)
	}
	cfg, err := cloudconfig.Resolve(cloudconfig.Options{Cloud: simcloud.CloudAdmin, CloudsFile: rig.clouds})
	if err != nil {
		tb.Fatal(err)
	}
	admin, err := openstack.New(ctx, cfg, openstack.Options{Registerer: prometheus.NewRegistry(), RequireCompute: true})
	if err != nil {
		tb.Fatal(err)
	}
	vols := make([]string, total)
	if err := parallelDo(ctx, total, 8, func(i int) error {
		v, err := admin.CreateVolume(ctx, openstack.CreateVolumeOpts{Name: fmt.Sprintf("v%d", i), SizeGiB: 1})
		if err == nil {
			vols[i] = v.ID
		}
		return err
	}); err != nil {
		tb.Fatalf("create volumes: %v", err)
	}
	insts := make([]simcloud.Instance, n)
	for i := range n {
		if insts[i], err = sim.AddInstance(simcloud.InstanceSpec{Host: sceneHost, Name: fmt.Sprintf("vm-%d", i)}); err != nil {
			tb.Fatal(err)
		}
	}
	// Volumes are created available at once (no create latency); wait
	// for the last one anyway before attaching.
	if _, err := admin.WaitVolume(ctx, vols[total-1], openstack.StatusIs("available")); err != nil {
		tb.Fatal(err)
	}
	if err := parallelDo(ctx, n*disks, 8, func(k int) error {
		_, err := admin.AttachVolume(ctx, insts[k/disks].ID, vols[k])
		return err
	}); err != nil {
		tb.Fatalf("attach: %v", err)
	}
	for delay := 10 * time.Millisecond; ; delay = min(2*delay, 500*time.Millisecond) {
		inUse, err := admin.ListVolumes(ctx, openstack.VolumeFilter{AllTenants: true, Status: "in-use"})
		if err != nil {
			tb.Fatal(err)
		}
		if len(inUse) == n*disks {
			break
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("%d of %d volumes in-use: %v", len(inUse), n*disks, ctx.Err())
		case <-time.After(delay):
		}
	}
	var x bytes.Buffer
	x.WriteString("<node>\n")
	for i, in := range insts {
		fmt.Fprintf(&x, `<domain type='test'><name>%s</name><uuid>%s</uuid>
<metadata><nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1"><nova:name>%s</nova:name></nova:instance></metadata>
<memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os><devices>
<disk type='file' device='disk'><source file='/var/lib/nova/instances/%[2]s/disk'/><target dev='vda' bus='virtio'/></disk>
`, in.InstanceName, in.ID, in.Name)
		for j := range disks {
			v := vols[i*disks+j]
			fmt.Fprintf(&x, "<disk type='block' device='disk'><source dev='/dev/disk/by-id/virtio-%s'/><target dev='vd%c' bus='virtio'/><serial>%s</serial><alias name='ua-%s'/></disk>\n", v[:20], 'b'+j, v, v)
		}
		x.WriteString("</devices></domain>\n")
	}
	x.WriteString("</node>\n")
	if err := os.WriteFile(rig.xmlPath, x.Bytes(), 0o644); err != nil {
		tb.Fatal(err)
	}
	return rig
}

// parallelDo runs fn(0..n-1) on workers goroutines; the first error stops
// handing out work and is returned.
func parallelDo(ctx context.Context, n, workers int, fn func(i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := fn(i); err != nil {
					cancel(fmt.Errorf("item %d: %w", i, err))
				}
			}
		})
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	return context.Cause(ctx)
}

// BenchmarkPluginRSS measures the plugin's memory with many volumes: the
// plugin (debug logging off, default metrics) serves a simulator project
// in which it created N volumes through its socket; after a List and a
// Get of each, rss-MiB is its resident set (VmRSS) and hwm-MiB the peak
// (VmHWM), from /proc/<pid>/status.
func BenchmarkPluginRSS(b *testing.B) {
	for _, n := range []int{1000} {
		b.Run(fmt.Sprintf("volumes=%d", n), func(b *testing.B) {
			testenv.RequireRoot(b)
			var rss, hwm float64
			for b.Loop() {
				rss, hwm = pluginRSS(b, n)
			}
			b.ReportMetric(rss, "rss-MiB")
			b.ReportMetric(hwm, "hwm-MiB")
		})
	}
}

func pluginRSS(b *testing.B, n int) (rss, hwm float64) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := b.TempDir()
	sim, err := simcloud.Start(context.Background(), simcloud.Options{Seed: 9, StateDir: filepath.Join(dir, "sim"),
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer sim.Close()
	inst, err := sim.AddInstance(simcloud.InstanceSpec{Host: sceneHost, Name: "node"})
	if err != nil {
		b.Fatal(err)
	}
	clouds := filepath.Join(dir, "clouds.yaml")
	if err := sim.WriteCloudsYAML(clouds); err != nil {
		b.Fatal(err)
	}
	socket := filepath.Join(dir, "rss.sock")
	cmd := exec.Command(pluginBin, "plugin", "--os-cloud", simcloud.CloudMember, "--os-client-config-file", clouds,
		"--driver-name", "cwrss", "--socket", socket, "--instance-id", inst.ID,
		"--dev-root", filepath.Join(dir, "dev"), "--sys-root", filepath.Join(dir, "sys"),
		"--mount-root", filepath.Join(dir, "mounts"), "--state-dir", filepath.Join(dir, "state"),
		"--default-size", "1", "--metrics-listen", "127.0.0.1:0")
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		}}}
	post := func(path, body string) error {
		resp, err := client.Post("http://plugin"+path, "application/json", strings.NewReader(body))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var ans struct{ Err string }
		if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if ans.Err != "" {
			return fmt.Errorf("%s %s: %s", path, body, ans.Err)
		}
		return nil
	}
	for delay := 10 * time.Millisecond; post("/VolumeDriver.Capabilities", "{}") != nil; delay = min(2*delay, 500*time.Millisecond) {
		if ctx.Err() != nil {
			b.Fatal("plugin did not serve within 5 minutes")
		}
		time.Sleep(delay)
	}
	if err := parallelDo(ctx, n, 8, func(i int) error {
		return post("/VolumeDriver.Create", fmt.Sprintf(`{"Name":"rss-%d","Opts":{"size":"1"}}`, i))
	}); err != nil {
		b.Fatal(err)
	}
	if err := post("/VolumeDriver.List", "{}"); err != nil {
		b.Fatal(err)
	}
	if err := parallelDo(ctx, n, 8, func(i int) error {
		return post("/VolumeDriver.Get", fmt.Sprintf(`{"Name":"rss-%d"}`, i))
	}); err != nil {
		b.Fatal(err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		var kb float64
		switch {
		case strings.HasPrefix(line, "VmRSS:"):
			if _, err := fmt.Sscanf(strings.TrimPrefix(line, "VmRSS:"), "%g kB", &kb); err == nil {
				rss = kb / 1024
			}
		case strings.HasPrefix(line, "VmHWM:"):
			if _, err := fmt.Sscanf(strings.TrimPrefix(line, "VmHWM:"), "%g kB", &kb); err == nil {
				hwm = kb / 1024
			}
		}
	}
	if rss == 0 || hwm == 0 {
		b.Fatalf("no VmRSS/VmHWM in /proc/%d/status", cmd.Process.Pid)
	}
	return rss, hwm
}
