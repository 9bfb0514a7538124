package deploytest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cinderwarden/cinderwarden/internal/cloudconfig"
	"github.com/cinderwarden/cinderwarden/internal/dockertest"
	"github.com/cinderwarden/cinderwarden/internal/testenv"
	"github.com/cinderwarden/cinderwarden/openstack"
	"github.com/cinderwarden/cinderwarden/simcloud"
	"github.com/cinderwarden/cinderwarden/simcloud/loopnode"
)

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestManagedPlugin is the acceptance path for the managed plugin,
// through the real dockerd and the simulator: build.sh assembles the rootfs
// and runs `docker plugin create`; the plugin is pointed at the simulator
// with `docker plugin set` (mount sources, env, args) and enabled; a volume
// is created, written and read by two containers; the plugin's /metrics
// serves only registered names; then disable → set → enable changes the
// default size and a new volume gets it.
func TestManagedPlugin(t *testing.T) {
	testenv.RequireDocker(t)
	testenv.RequireCommand(t, "bash", "ldd", "mke2fs", "mkfs.xfs", "blkid", "go")
	bin := cinderwardenBin.get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	docker := dockertest.CLI{}
	if err := docker.EnsureImage(ctx, "/bin/busybox"); err != nil {
		t.Fatal(err)
	}

	ps := startPluginSim(ctx, t)
	sim, inst, devRoot, osDir, stateDir, cloud := ps.sim, ps.inst, ps.devRoot, ps.osDir, ps.stateDir, ps.cloud
	dir := ps.dir

	// make plugin's script, as an operator would run it.
	// Names are per process: Docker volume names are global across drivers
	// and another `go test` may run this package at the same time.
	name := fmt.Sprintf("cinderwarden-deploytest/cinder:%d", os.Getpid())
	volA, volB := fmt.Sprintf("cwdeploy-a-%d", os.Getpid()), fmt.Sprintf("cwdeploy-b-%d", os.Getpid())
	if _, _, err := run(ctx, repoRoot, nil, repoPath("deploy", "docker-plugin", "build.sh"),
		"--name", name, "--binary", bin, "--out", filepath.Join(dir, "plugin"), "--force"); err != nil {
		t.Fatal(err)
	}
	// Volumes still to remove at cleanup (only those that exist: removing
	// an unknown name makes dockerd poll every plugin socket it knows).
	leftVolumes := map[string]bool{}
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		defer ccancel()
		for v := range leftVolumes {
			if _, err := docker.Run(cctx, "volume", "rm", "-f", v); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		_, _ = docker.Run(cctx, "plugin", "disable", "-f", name)
		if _, err := docker.Run(cctx, "plugin", "rm", "-f", name); err != nil {
			t.Errorf("remove plugin: %v", err)
		}
	})
	out, err := docker.Run(ctx, "plugin", "inspect", "-f", "{{.Config.Interface.Types}} {{.Config.Network.Type}} {{.Config.PropagatedMount}} {{.Config.Linux.Capabilities}} {{.Enabled}}", name)
	if err != nil {
		t.Fatal(err)
	}
	if want := "[docker.volumedriver/1.0] host /var/lib/cinderwarden/mounts [CAP_SYS_ADMIN] false"; out != want {
		t.Errorf("created plugin: %q, want %q", out, want)
	}

	metricsPort := freePort(t)
	args := func(defaultSize int) string {
		return strings.Join([]string{"--identity-order=metadata", "--metadata-url=" + sim.MetadataURL(inst.ID),
			"--dev-root=" + devRoot, "--sys-root=/nonexistent", fmt.Sprintf("--default-size=%d", defaultSize), "--max-size=8",
			"--attach-timeout=30s", "--device-timeout=20s", fmt.Sprintf("--metrics-listen=127.0.0.1:%d", metricsPort)}, " ")
	}
	if _, err := docker.Run(ctx, "plugin", "set", name, "openstack.source="+osDir, "state.source="+stateDir,
		"OS_CLOUD="+simcloud.CloudMember, "args="+args(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := docker.Run(ctx, "plugin", "enable", "--timeout", "60", name); err != nil {
		t.Fatal(err)
	}

	// A volume through the managed plugin: created in Cinder, written by
	// one container, read by the next.
	if _, err := docker.Run(ctx, "volume", "create", "-d", name, "-o", "size=1", volA); err != nil {
		t.Fatal(err)
	}
	leftVolumes[volA] = true
	va := volumeNamed(ctx, t, cloud, volA)
	if va.SizeGiB != 1 {
		t.Errorf("%s: %d GiB in Cinder, want 1", volA, va.SizeGiB)
	}
	if _, err := docker.Run(ctx, "run", "--rm", "--network", "none", "-v", volA+":/data", dockertest.Image, "sh", "-c", "echo written-through-managed-plugin > /data/f"); err != nil {
		t.Fatal(err)
	}
	got, err := docker.Run(ctx, "run", "--rm", "--network", "none", "-v", volA+":/data", dockertest.Image, "cat", "/data/f")
	if err != nil {
		t.Fatal(err)
	}
	if got != "written-through-managed-plugin" {
		t.Errorf("second container read %q", got)
	}

	// The running plugin's /metrics: only names the registries describe,
	// and the request, step and OpenStack families the dashboard reads.
	names := registeredMetricNames(t)
	served := scrape(ctx, t, fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort))
	for n := range served {
		if !names[n] && !strings.HasPrefix(n, "go_") && !strings.HasPrefix(n, "process_") && !strings.HasPrefix(n, "promhttp_") {
			t.Errorf("plugin serves %s, which the registries do not describe", n)
		}
	}
	for _, n := range []string{"cinderwarden_plugin_requests_total", "cinderwarden_plugin_request_duration_seconds",
		"cinderwarden_volume_step_duration_seconds", "openstack_api_request_duration_seconds", "openstack_api_requests_total"} {
		if !served[n] {
			t.Errorf("plugin /metrics lacks %s after create/mount/unmount", n)
		}
	}

	if _, err := docker.Run(ctx, "volume", "rm", volA); err != nil {
		t.Fatal(err)
	}
	delete(leftVolumes, volA)

	// docker plugin set: disable → set → enable changes the default size.
	if _, err := docker.Run(ctx, "plugin", "disable", name); err != nil {
		t.Fatal(err)
	}
	if _, err := docker.Run(ctx, "plugin", "set", name, "args="+args(2)); err != nil {
		t.Fatal(err)
	}
	settings, err := docker.Run(ctx, "plugin", "inspect", "-f", "{{.Settings.Args}}", name)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(settings, "--default-size=2") {
		t.Errorf("after docker plugin set: args %s", settings)
	}
	if _, err := docker.Run(ctx, "plugin", "enable", "--timeout", "60", name); err != nil {
		t.Fatal(err)
	}
	if _, err := docker.Run(ctx, "volume", "create", "-d", name, "-o", "fstype=xfs", volB); err != nil {
		t.Fatal(err)
	}
	leftVolumes[volB] = true
	if vb := volumeNamed(ctx, t, cloud, volB); vb.SizeGiB != 2 {
		t.Errorf("%s created after `docker plugin set args=...--default-size=2`: %d GiB, want 2", volB, vb.SizeGiB)
	}
	// mkfs.xfs and blkid from the plugin's rootfs: the container sees an
	// xfs filesystem at /data.
	mounts, err := docker.Run(ctx, "run", "--rm", "--network", "none", "-v", volB+":/data", dockertest.Image, "cat", "/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(mounts, " /data xfs ") {
		t.Errorf("%s (-o fstype=xfs) in the container:\n%s", volB, mounts)
	}
	if _, err := docker.Run(ctx, "volume", "rm", volB); err != nil {
		t.Fatal(err)
	}
	delete(leftVolumes, volB)
	if vs, err := cloud.ListVolumes(ctx, openstack.VolumeFilter{}); err != nil || len(vs) != 0 {
		t.Errorf("volumes left in Cinder after docker volume rm: %v %v", vs, err)
	}
}

// pluginSim is a simulator cloud for a plugin running in Docker's plugin
// runtime: its by-id links live in a directory under the host's /dev (the
// plugin sees the host's /dev, so the links and the loop devices they
// point at resolve inside it), and clouds.yaml in a directory of its own
// (the plugin's openstack mount).
type pluginSim struct {
	dir      string
	sim      *simcloud.Sim
	inst     simcloud.Instance
	devRoot  string
	osDir    string // holds clouds.yaml
	stateDir string
	cloud    *openstack.Client // member credentials, for checks
}

func startPluginSim(ctx context.Context, t *testing.T) *pluginSim {
	t.Helper()
	dir := t.TempDir()
	devRoot, err := os.MkdirTemp("/dev", "cinderwarden-deploytest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(devRoot) })
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	simDir := filepath.Join(dir, "sim")
	sim, err := simcloud.Start(ctx, simcloud.Options{StateDir: simDir, Logger: logger,
		Latency:  simcloud.Latencies{Create: 50 * time.Millisecond, Delete: 50 * time.Millisecond, Attach: 100 * time.Millisecond, Detach: 100 * time.Millisecond},
		Backends: []simcloud.ComputeBackend{loopnode.New(loopnode.Options{Logger: logger})}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sim.Close(); err != nil {
			t.Errorf("close simulator: %v", err)
		}
		if busy, err := loopnode.DetachAll(context.Background(), simDir); err != nil || len(busy) > 0 {
			t.Errorf("loop devices left: busy %v, err %v", busy, err)
		}
	})
	inst, err := sim.AddInstance(simcloud.InstanceSpec{Name: "agent-1", Host: "compute-1", NodeDevDir: devRoot})
	if err != nil {
		t.Fatal(err)
	}
	ps := &pluginSim{dir: dir, sim: sim, inst: inst, devRoot: devRoot,
		osDir: filepath.Join(dir, "openstack"), stateDir: filepath.Join(dir, "state")}
	for _, d := range []string{ps.osDir, ps.stateDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := sim.WriteCloudsYAML(filepath.Join(ps.osDir, "clouds.yaml")); err != nil {
		t.Fatal(err)
	}
	cfg, err := cloudconfig.Resolve(cloudconfig.Options{Cloud: simcloud.CloudMember, CloudsFile: filepath.Join(ps.osDir, "clouds.yaml")})
	if err != nil {
		t.Fatal(err)
	}
	if ps.cloud, err = openstack.New(ctx, cfg, openstack.Options{}); err != nil {
		t.Fatal(err)
	}
	return ps
}

// removePluginOnCleanup disables and removes the named plugin at the end.
func removePluginOnCleanup(t *testing.T, docker dockertest.CLI, name string) {
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		defer ccancel()
		if _, err := docker.Run(cctx, "plugin", "inspect", name); err != nil {
			return // never created
		}
		_, _ = docker.Run(cctx, "plugin", "disable", "-f", name)
		if _, err := docker.Run(cctx, "plugin", "rm", "-f", name); err != nil {
			t.Errorf("remove plugin: %v", err)
		}
	})
}

// volumeNamed returns the one Cinder volume with that name.
func volumeNamed(ctx context.Context, t *testing.T, cloud *openstack.Client, name string) openstack.Volume {
	t.Helper()
	vs, err := cloud.ListVolumes(ctx, openstack.VolumeFilter{Name: name})
	if err != nil || len(vs) != 1 {
		t.Fatalf("volume %s in Cinder: %v %v", name, vs, err)
	}
	return vs[0]
}

// scrape fetches a /metrics endpoint and returns its family names.
func scrape(ctx context.Context, t *testing.T, url string) map[string]bool {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %d %v", url, resp.StatusCode, err)
	}
	return parseExposition(t, string(b))
}
