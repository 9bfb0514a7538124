package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cinderwarden/cinderwarden/internal/dockertest"
	"github.com/cinderwarden/cinderwarden/internal/testenv"
	"github.com/cinderwarden/cinderwarden/openstack"
	"github.com/cinderwarden/cinderwarden/simcloud"
)

func dockerEnv(t *testing.T) (*env, dockertest.CLI, context.Context) {
	t.Helper()
	testenv.RequireDocker(t)
	e := newEnv(t, envOptions{docker: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	d := dockertest.CLI{}
	if err := d.EnsureImage(ctx, "/bin/busybox"); err != nil {
		t.Fatal(err)
	}
	quietStaleDrivers(t, d, ctx)
	e.startPlugin("")
	return e, d, ctx
}

// quietStaleDrivers answers for the volume drivers an earlier run of these
// tests (before they kept non-docker sockets out of /run/docker/plugins)
// left in dockerd's memory: dockerd never forgets a legacy driver and
// retries a vanished one for ~15 s in every listing and lookup. Only
// names of this package's pattern (cwtest-*) whose socket is gone are
// served, with an empty List and "no such volume" for Get, during the test.
func quietStaleDrivers(t *testing.T, d dockertest.CLI, ctx context.Context) {
	out, err := d.Run(ctx, "info", "--format", "{{json .Plugins.Volume}}")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	if err := json.Unmarshal([]byte(out), &names); err != nil {
		t.Fatalf("docker info: %q: %v", out, err)
	}
	for _, n := range names {
		sock := filepath.Join("/run/docker/plugins", n+".sock")
		if !strings.HasPrefix(n, "cwtest-") {
			continue
		}
		if _, err := os.Lstat(sock); err == nil {
			continue
		}
		l, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		reply := func(body string) http.HandlerFunc {
			return func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/vnd.docker.plugins.v1+json")
				_, _ = io.WriteString(w, body)
			}
		}
		mux.HandleFunc("/Plugin.Activate", reply(`{"Implements":["VolumeDriver"]}`))
		mux.HandleFunc("/VolumeDriver.List", reply(`{"Volumes":[]}`))
		mux.HandleFunc("/VolumeDriver.Capabilities", reply(`{"Capabilities":{"Scope":"global"}}`))
		mux.HandleFunc("/", reply(`{"Err":"no such volume (stale test driver)"}`))
		srv := &http.Server{Handler: mux}
		go func() { _ = srv.Serve(l) }()
		t.Cleanup(func() { _ = srv.Close(); _ = os.Remove(sock) })
	}
}

// rmVolume removes a Docker volume at cleanup if the test left it (while
// the plugin still runs: cleanups run in reverse order).
func rmVolume(t *testing.T, d dockertest.CLI, name string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := d.Run(ctx, "volume", "inspect", name); err == nil {
			if _, err := d.Run(ctx, "volume", "rm", "-f", name); err != nil {
				t.Logf("cleanup: %v", err)
			}
		}
	})
}

// TestDockerVolumeLifecycle is issue 3's acceptance through a real dockerd:
// create with -o size=1, write in one container, read in another, inspect
// shows Cinder's details, ls lists a volume made directly in Cinder, rm
// deletes the Cinder volume.
func TestDockerVolumeLifecycle(t *testing.T) {
	e, d, ctx := dockerEnv(t)
	v1 := "v1-" + e.suffix
	rmVolume(t, d, v1)
	if _, err := d.Run(ctx, "volume", "create", "-d", e.driver, "-o", "size=1", v1); err != nil {
		t.Fatal(err)
	}
	cv := e.volumeByName(v1)
	if cv.Status != "available" || cv.SizeGiB != 1 || cv.Metadata["cinderwarden.managed"] != "true" {
		t.Fatalf("Cinder volume after docker volume create: %+v", cv)
	}

	if _, err := d.Run(ctx, "run", "--rm", "--network", "none", "-v", v1+":/data", dockertest.Image, "sh", "-c", "echo hi > /data/f"); err != nil {
		t.Fatal(err)
	}
	out, err := d.Run(ctx, "run", "--rm", "--network", "none", "-v", v1+":/data", dockertest.Image, "cat", "/data/f")
	if err != nil || out != "hi" {
		t.Fatalf("second container read %q, %v", out, err)
	}
	// No lost+found in the container's view: Docker got the data subdir.
	if out, err := d.Run(ctx, "run", "--rm", "--network", "none", "-v", v1+":/data", dockertest.Image, "ls", "-a", "/data"); err != nil || strings.Contains(out, "lost+found") {
		t.Fatalf("ls /data: %q %v", out, err)
	}
	if v := e.waitStatus(cv.ID, "available", 20*time.Second); len(v.Attachments) != 0 {
		t.Fatalf("attachments after the containers exited: %+v", v.Attachments)
	}

	insp, err := d.Run(ctx, "volume", "inspect", "--format", "{{.Driver}} {{json .Status}}", v1)
	if err != nil {
		t.Fatal(err)
	}
	drv, js, _ := strings.Cut(insp, " ")
	var st map[string]any
	if err := json.Unmarshal([]byte(js), &st); err != nil {
		t.Fatalf("inspect %q: %v", insp, err)
	}
	if drv != e.driver || st["status"] != "available" || st["volume_id"] != cv.ID || st["size_gib"] != float64(1) ||
		st["availability_zone"] != e.inst.AvailabilityZone || st["managed"] != true || st["fstype"] != "ext4" {
		t.Fatalf("docker volume inspect: %s", insp)
	}

	// A volume created directly in Cinder shows up in docker volume ls.
	direct := "direct-" + e.suffix
	dv, err := e.cloud.CreateVolume(ctx, openstack.CreateVolumeOpts{Name: direct, SizeGiB: 1})
	if err != nil {
		t.Fatal(err)
	}
	e.waitStatus(dv.ID, "available", 20*time.Second)
	rmVolume(t, d, direct)
	ls, err := d.Run(ctx, "volume", "ls", "--format", "{{.Driver}} {{.Name}}")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{e.driver + " " + v1, e.driver + " " + direct} {
		if !strings.Contains(ls+"\n", want+"\n") {
			t.Errorf("docker volume ls lacks %q:\n%s", want, ls)
		}
	}

	if _, err := d.Run(ctx, "volume", "rm", v1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cloud.GetVolume(ctx, cv.ID); !errors.Is(err, openstack.ErrNotFound) {
		t.Fatalf("Cinder volume after docker volume rm: %v", err)
	}
	// An adopted (unmanaged) volume is not deleted by default.
	if _, err := d.Run(ctx, "volume", "rm", direct); err == nil || !strings.Contains(err.Error(), "not created by cinderwarden") {
		t.Fatalf("rm of an unmanaged volume: %v", err)
	}
	if _, err := e.cloud.GetVolume(ctx, dv.ID); err != nil {
		t.Fatalf("unmanaged volume after a refused rm: %v", err)
	}
	if err := e.cloud.DeleteVolume(ctx, dv.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.cloud.WaitVolumeDeleted(ctx, dv.ID); err != nil {
		t.Fatal(err)
	}

	e.checkAttachHistory(cv.ID, simcloud.EventDetach)

	// Metrics: per-operation requests and step durations, and the API metrics.
	line, err := e.plugin.waitLog(`msg=metrics .*listen=`, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	addr := regexp.MustCompile(`listen=(\S+)`).FindStringSubmatch(line)[1]
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`cinderwarden_plugin_requests_total{operation="mount",result="ok"}`,
		`cinderwarden_plugin_requests_total{operation="remove",result="ok"}`,
		`cinderwarden_volume_step_duration_seconds_count{result="ok",step="attach"}`,
		`cinderwarden_volume_step_duration_seconds_count{result="ok",step="wait-device"}`,
		`cinderwarden_volume_step_duration_seconds_count{result="ok",step="detach"}`,
		`openstack_api_request_duration_seconds_count{request="volume_attach",service="compute"}`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// One log line per operation, with volume, mount id, duration, outcome.
	if _, err := e.plugin.waitLog(`msg=request .*op=mount volume=`+v1+` mount_id=[0-9a-f]{64} duration=\S+ outcome=ok`, time.Second); err != nil {
		t.Error(err)
	}
}

// TestDockerSharedVolume: two containers share one volume; it stays
// attached while either runs and detaches only after the second stops.
func TestDockerSharedVolume(t *testing.T) {
	e, d, ctx := dockerEnv(t)
	name := "shared-" + e.suffix
	rmVolume(t, d, name)
	if _, err := d.Run(ctx, "volume", "create", "-d", e.driver, name); err != nil {
		t.Fatal(err)
	}
	cv := e.volumeByName(name)
	long := "long-" + e.suffix
	t.Cleanup(func() { _, _ = d.Run(context.Background(), "rm", "-f", long) })
	// Docker mounts the volume once at container create (to copy the
	// image's /data) and again at start; count from the start on.
	if _, err := d.Run(ctx, "create", "--network", "none", "--name", long, "-v", name+":/data", dockertest.Image, "sh", "-c", "echo one > /data/a; sleep 600"); err != nil {
		t.Fatal(err)
	}
	mark := len(e.sim.Events())
	if _, err := d.Run(ctx, "start", long); err != nil {
		t.Fatal(err)
	}
	out, err := d.Run(ctx, "run", "--rm", "--network", "none", "-v", name+":/data", dockertest.Image, "sh", "-c",
		"for i in 1 2 3 4 5 6 7 8 9 10; do test -f /data/a && break; sleep 0.2; done; cat /data/a; echo two > /data/b")
	if err != nil || out != "one" {
		t.Fatalf("second container: %q %v", out, err)
	}
	// The second container stopped; the first still uses the volume.
	v, err := e.cloud.GetVolume(ctx, cv.ID)
	if err != nil || v.Status != "in-use" || v.AttachedTo(e.inst.ID) == nil {
		t.Fatalf("after the second container exited: %+v %v", v, err)
	}
	if out, err := d.Run(ctx, "exec", long, "cat", "/data/b"); err != nil || out != "two" {
		t.Fatalf("first container reads the second's write: %q %v", out, err)
	}
	if _, err := d.Run(ctx, "rm", "-f", long); err != nil {
		t.Fatal(err)
	}
	e.waitStatus(cv.ID, "available", 20*time.Second)
	e.checkAttachHistory(cv.ID, simcloud.EventDetach)
	var kinds []simcloud.EventKind
	for _, ev := range e.sim.Events()[mark:] {
		if ev.VolumeID == cv.ID {
			kinds = append(kinds, ev.Kind)
		}
	}
	if !slices.Equal(kinds, []simcloud.EventKind{simcloud.EventAttach, simcloud.EventDetach}) {
		t.Errorf("while two containers shared the volume the simulator saw %v, want one attach and one detach", kinds)
	}
	if _, err := d.Run(ctx, "volume", "rm", name); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cloud.GetVolume(ctx, cv.ID); !errors.Is(err, openstack.ErrNotFound) {
		t.Fatalf("after rm: %v", err)
	}
}

// TestPluginFlagErrors: bad flags are refused before anything starts, with
// the flag and the allowed values named.
func TestPluginFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--log-format", "xml"}, `--log-format "xml": allowed values: text, json`},
		{[]string{"--default-fstype", "btrfs"}, `--default-fstype "btrfs": allowed values: ext4, xfs`},
		{[]string{"--identity-order", "metadata,bios"}, `--identity-order: unknown identity source "bios": allowed sources: config-drive, metadata, dmi`},
		{[]string{"--mount-root", "relative"}, `--mount-root "relative": must be an absolute path`},
		{[]string{"--default-size", "0"}, `--default-size 0: must be at least 1 (GiB)`},
		{[]string{"--metrics-listen", "nope"}, `--metrics-listen "nope": want host:port or off`},
	} {
		p := startProc(t, pluginBin, append([]string{"plugin"}, tc.args...)...)
		if code := p.exitCode(); code != 2 {
			t.Errorf("%v: exit code %d, want 2", tc.args, code)
		}
		if !strings.Contains(p.logText(), tc.want) {
			t.Errorf("%v: output %q lacks %q", tc.args, p.logText(), tc.want)
		}
	}
}
