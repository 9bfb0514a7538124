package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cinderwarden/cinderwarden/hostdisk"
	"github.com/cinderwarden/cinderwarden/internal/cloudconfig"
	"github.com/cinderwarden/cinderwarden/internal/dockertest"
	"github.com/cinderwarden/cinderwarden/internal/testenv"
	"github.com/cinderwarden/cinderwarden/openstack"
	"github.com/cinderwarden/cinderwarden/simcloud"
	"github.com/cinderwarden/cinderwarden/simcloud/loopnode"
)

// The second Docker daemon of the preempt tests: its own API socket, data
// root, exec root and pid file, no bridge and no iptables; it sees the same
// /run/docker/plugins as the system daemon.
const (
	dockerBHost     = "unix:///run/cw-docker-b.sock"
	dockerBSock     = "/run/cw-docker-b.sock"
	dockerBExecRoot = "/run/cw-docker-b"
	dockerBPidfile  = "/run/cw-docker-b.pid"
	dockerBDataRoot = "/var/lib/cinderwarden-e2e-docker-b"
)

// Driver names of the two nodes' plugins (fixed, so dockerd never
// accumulates vanished test drivers).
const (
	preemptDriverA = "cinderwarden-e2e-a"
	preemptDriverB = "cinderwarden-e2e-b"
)

// startDockerB starts the second dockerd and stops it (and removes its
// directories) at cleanup.
func startDockerB(t *testing.T) dockertest.CLI {
	t.Helper()
	testenv.RequireCommand(t, "dockerd")
	if _, err := os.Stat(dockerBSock); err == nil {
		t.Fatalf("%s exists: a second daemon from an earlier run is still there (kill $(cat %s))", dockerBSock, dockerBPidfile)
	}
	logf, err := os.Create(filepath.Join(t.TempDir(), "dockerd-b.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("dockerd", "-H", dockerBHost, "--data-root", dockerBDataRoot, "--exec-root", dockerBExecRoot,
		"--pidfile", dockerBPidfile, "--bridge=none", "--iptables=false", "--ip-masq=false")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	d := dockertest.CLI{Host: dockerBHost}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if ids, err := d.Run(ctx, "ps", "-aq"); err == nil && ids != "" {
			_, _ = d.Run(ctx, append([]string{"rm", "-f"}, strings.Fields(ids)...)...)
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Errorf("second dockerd did not stop on SIGTERM")
			_ = cmd.Process.Kill()
			<-done
		}
		_ = logf.Close()
		for _, dir := range []string{dockerBExecRoot, dockerBDataRoot} {
			if err := os.RemoveAll(dir); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("dockerd-b log (tail):\n%s", tail(string(b), 40))
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for wait := 50 * time.Millisecond; ; wait = min(wait*2, time.Second) {
		if _, err := d.Run(ctx, "version", "--format", "{{.Server.Version}}"); err == nil {
			break
		}
		select {
		case <-done:
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("second dockerd exited:\n%s", tail(string(b), 40))
		case <-ctx.Done():
			t.Fatal("second dockerd did not answer within a minute")
		case <-time.After(wait):
		}
	}
	if err := d.EnsureImage(ctx, "/bin/busybox"); err != nil {
		t.Fatal(err)
	}
	return d
}

func tail(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// preemptNode is one node: a simulated instance, its Docker daemon and
// its plugin process.
type preemptNode struct {
	name, driver string
	inst         simcloud.Instance
	docker       dockertest.CLI
	dir, mounts  string
	args         []string
	plugin       *pluginProc
	host         *hostdisk.Host
}

func (n *preemptNode) start(t *testing.T) {
	t.Helper()
	n.plugin = startProc(t, pluginBin, n.args...)
	if _, err := n.plugin.waitLog(`msg=serving`, time.Minute); err != nil {
		n.plugin.kill()
		t.Fatalf("%s: plugin did not start: %v\n%s", n.name, err, n.plugin.logText())
	}
}

// metric scrapes the plugin's /metrics and returns the value of the line
// starting with series (0 when absent).
func (n *preemptNode) metric(t *testing.T, series string) string {
	t.Helper()
	l, err := n.plugin.waitLog(`msg=metrics .*listen=`, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	addr := regexp.MustCompile(`listen=(\S+)`).FindStringSubmatch(l)[1]
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, series+" ") {
			return strings.TrimPrefix(line, series+" ")
		}
	}
	return "0"
}

// requireNoStaleMount: no mountinfo entry under the node's root for the
// volume, and its old data path answers stat at once.
func (n *preemptNode) requireNoStaleMount(t *testing.T, volumeID string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for wait := 20 * time.Millisecond; ; wait = min(wait*2, 500*time.Millisecond) {
		vms, err := n.host.VolumeMounts()
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, m := range vms {
			found = found || m.VolumeID == volumeID
		}
		if !found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s still in mountinfo: %+v", n.name, volumeID, vms)
		}
		time.Sleep(wait)
	}
	done := make(chan struct{})
	go func() { _, _ = os.Stat(filepath.Join(n.mounts, volumeID, "data")); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatalf("%s: stat of the old path hangs", n.name)
	}
}

// TestDockerPreempt is issue 4's acceptance with two real Docker daemons,
// each with its own plugin process (own instance, node dev dir, mount
// root, state dir) against one simulator with real loop devices. Data
// written on one node is read on the other after (a) a cooperative
// handoff, a refusal while a container runs and a forced takeover, (b) the
// holder's plugin killed, (c) the holder's instance shut off; the
// simulator's event log never shows the volume attached to both.
func TestDockerPreempt(t *testing.T) {
	testenv.RequireDocker(t)
	testenv.RequireCommand(t, "mkfs.ext4", "blkid")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dockerA := dockertest.CLI{}
	if err := dockerA.EnsureImage(ctx, "/bin/busybox"); err != nil {
		t.Fatal(err)
	}
	dockerB := startDockerB(t)

	dir := t.TempDir()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	simDir := filepath.Join(dir, "sim")
	// The simulator outlives ctx: cleanups (volume rm, unmounts) need it.
	sim, err := simcloud.Start(context.Background(), simcloud.Options{StateDir: simDir, Logger: logger,
		Latency: simcloud.Latencies{Create: 20 * time.Millisecond, Delete: 20 * time.Millisecond,
			Attach: 50 * time.Millisecond, Detach: 50 * time.Millisecond},
		Backends: []simcloud.ComputeBackend{loopnode.New(loopnode.Options{Logger: logger})}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = sim.Close()
		if busy, err := loopnode.DetachAll(context.Background(), simDir); err != nil || len(busy) > 0 {
			t.Errorf("loop devices left: busy %v, err %v", busy, err)
		}
	})
	clouds := filepath.Join(dir, "clouds.yaml")
	if err := sim.WriteCloudsYAML(clouds); err != nil {
		t.Fatal(err)
	}
	ccfg, err := cloudconfig.Resolve(cloudconfig.Options{Cloud: simcloud.CloudMember, CloudsFile: clouds})
	if err != nil {
		t.Fatal(err)
	}
	cloud, err := openstack.New(ctx, ccfg, openstack.Options{RequireCompute: true})
	if err != nil {
		t.Fatal(err)
	}

	var nodes [2]*preemptNode
	for i, spec := range []struct {
		name, driver string
		docker       dockertest.CLI
	}{{"node-a", preemptDriverA, dockerA}, {"node-b", preemptDriverB, dockerB}} {
		n := &preemptNode{name: spec.name, driver: spec.driver, docker: spec.docker, dir: filepath.Join(dir, spec.name)}
		n.mounts = filepath.Join(n.dir, "mounts")
		n.inst, err = sim.AddInstance(simcloud.InstanceSpec{Name: spec.name, Host: "compute-" + spec.name[5:],
			NodeDevDir: filepath.Join(n.dir, "dev")})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(n.mounts, 0o755); err != nil {
			t.Fatal(err)
		}
		n.host, err = hostdisk.New(hostdisk.Config{MountRoot: n.mounts, Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		// Runs after the containers are gone and the plugin stopped:
		// nothing may stay mounted.
		t.Cleanup(func() {
			vms, _ := n.host.VolumeMounts()
			for _, m := range vms {
				t.Errorf("%s: left mounted after the test: %s", n.name, m.Mountpoint)
				_, _ = n.host.UnmountPath(context.Background(), m.Mountpoint, hostdisk.UnmountEscalate)
			}
		})
		n.args = []string{"plugin", "--os-cloud", simcloud.CloudMember, "--os-client-config-file", clouds,
			"--driver-name", n.driver, "--socket", filepath.Join("/run/docker/plugins", n.driver+".sock"),
			"--identity-order", "metadata", "--metadata-url", sim.MetadataURL(n.inst.ID),
			"--dev-root", n.inst.NodeDevDir, "--sys-root", filepath.Join(dir, "no-sys"),
			"--mount-root", n.mounts, "--state-dir", filepath.Join(n.dir, "state"),
			"--default-size", "1", "--max-size", "4", "--attach-timeout", "30s", "--device-timeout", "20s",
			"--preempt", "off", "--takeover-grace", "1s", "--takeover-watch-interval", "200ms",
			"--takeover-detach-timeout", "3s", "--takeover-force-detach", "--sweep-interval", "500ms",
			"--metrics-listen", "127.0.0.1:0", "--log-level", "debug"}
		n.start(t)
		nodes[i] = n
	}
	a, b := nodes[0], nodes[1]

	vol := fmt.Sprintf("pre-%d", os.Getpid())
	if _, err := a.docker.Run(ctx, "volume", "create", "-d", a.driver, "-o", "size=1", "-o", "preempt=true", vol); err != nil {
		t.Fatal(err)
	}
	if _, err := b.docker.Run(ctx, "volume", "create", "-d", b.driver, vol); err != nil { // adopts the same Cinder volume
		t.Fatal(err)
	}
	removed := false
	t.Cleanup(func() {
		if removed {
			// A lookup of a missing name asks every driver the daemon ever
			// knew, including vanished ones of other tests: ~15 s each.
			return
		}
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		defer ccancel()
		for _, n := range []*preemptNode{b, a} {
			// A daemon whose driver is gone keeps the record forever and
			// retries the driver in every listing: revive the plugin first.
			select {
			case <-n.plugin.done:
				n.start(t)
			default:
			}
			if _, err := n.docker.Run(cctx, "volume", "inspect", vol); err == nil {
				if _, err := n.docker.Run(cctx, "volume", "rm", "-f", vol); err != nil {
					t.Logf("cleanup: %v", err)
				}
			}
		}
	})
	vs, err := cloud.ListVolumes(ctx, openstack.VolumeFilter{Name: vol})
	if err != nil || len(vs) != 1 {
		t.Fatalf("volume %s in Cinder: %v %v", vol, vs, err)
	}
	id := vs[0].ID
	mnt := vol + ":/data"
	run := func(n *preemptNode, args ...string) (string, error) {
		return n.docker.Run(ctx, append([]string{"run", "--rm", "--network", "none", "-v", mnt}, append([]string{dockertest.Image}, args...)...)...)
	}
	hold := func(n *preemptNode, name, content string) {
		t.Helper()
		if _, err := n.docker.Run(ctx, "run", "-d", "--name", name, "--network", "none", "-v", mnt, dockertest.Image,
			"sh", "-c", "echo "+content+" > /data/f && sync && exec sleep 600"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _, _ = n.docker.Run(context.Background(), "rm", "-f", name) })
		for wait := 20 * time.Millisecond; ; wait = min(wait*2, 500*time.Millisecond) {
			if out, err := n.docker.Run(ctx, "exec", name, "cat", "/data/f"); err == nil && out == content {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("%s: container %s did not write %q", n.name, name, content)
			}
			time.Sleep(wait)
		}
	}
	readOn := func(n *preemptNode, want string) {
		t.Helper()
		out, err := run(n, "cat", "/data/f")
		if err != nil || out != want {
			t.Fatalf("%s reads %q (%v), want %q", n.name, out, err, want)
		}
	}
	attachedTo := func(want string) {
		t.Helper()
		v, err := cloud.GetVolume(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, at := range v.Attachments {
			got = append(got, at.ServerID)
		}
		if (want == "" && len(got) != 0) || (want != "" && (len(got) != 1 || got[0] != want)) {
			t.Fatalf("attachments %v, want %q", got, want)
		}
	}
	suffix := fmt.Sprint(os.Getpid())

	start := time.Now()
	phase := func(name string) { t.Logf("%6.1fs %s", time.Since(start).Seconds(), name) }
	// (a) A container on A holds the volume: B's takeover is refused
	// clearly; once A's container stopped, B reads A's data.
	if _, err := run(a, "sh", "-c", "echo a0 > /data/f"); err != nil {
		t.Fatal(err)
	}
	hold(a, "cwa1-"+suffix, "a1")
	_, err = run(b, "cat", "/data/f")
	if err == nil || !strings.Contains(err.Error(), "is in use on instance "+a.inst.ID) ||
		!strings.Contains(err.Error(), "takeover refused") || !strings.Contains(err.Error(), "preempt_force=true") {
		t.Fatalf("takeover while a container on A uses the volume: %v", err)
	}
	attachedTo(a.inst.ID)
	if _, err := a.docker.Run(ctx, "rm", "-f", "cwa1-"+suffix); err != nil {
		t.Fatal(err)
	}
	readOn(b, "a1")
	attachedTo("")

	phase("(a) refused, then cooperative handoff")
	// Forced: a container on B holds it, the volume now allows force: A
	// takes it over, B's stale mount is gone from B's mountinfo.
	hold(b, "cwb1-"+suffix, "b1")
	if _, err := cloud.SetVolumeMetadata(ctx, id, map[string]string{"cinderwarden.preempt_force": "true"}); err != nil {
		t.Fatal(err)
	}
	readOn(a, "b1")
	b.requireNoStaleMount(t, id)
	if _, err := b.docker.Run(ctx, "rm", "-f", "cwb1-"+suffix); err != nil {
		t.Fatal(err)
	}
	if err := cloud.DeleteVolumeMetadataKey(ctx, id, "cinderwarden.preempt_force"); err != nil {
		t.Fatal(err)
	}
	attachedTo("")

	phase("forced takeover")
	// (b) A's plugin killed while A's container holds the volume: after
	// the grace B detaches A through Nova and reads A's data; A's plugin,
	// restarted, sweeps its stale mount.
	hold(a, "cwa2-"+suffix, "a2")
	a.plugin.kill()
	readOn(b, "a2")
	a.start(t)
	a.requireNoStaleMount(t, id)
	if _, err := a.docker.Run(ctx, "rm", "-f", "cwa2-"+suffix); err != nil {
		t.Fatal(err)
	}
	if got := b.metric(t, `cinderwarden_takeover_steps_total{result="ok",step="nova_detach"}`); got != "1" {
		t.Errorf("B's nova_detach count %s, want 1", got)
	}

	phase("(b) plugin killed")
	// (c) A's instance shut off (its plugin gone with it): B gets it
	// through Nova's detach of a SHUTOFF instance.
	hold(a, "cwa3-"+suffix, "a3")
	if err := sim.SetInstanceStatus(ctx, a.inst.ID, simcloud.StatusShutoff); err != nil {
		t.Fatal(err)
	}
	a.plugin.kill()
	readOn(b, "a3")
	if err := sim.SetInstanceStatus(ctx, a.inst.ID, simcloud.StatusActive); err != nil {
		t.Fatal(err)
	}
	a.start(t)
	a.requireNoStaleMount(t, id)
	if _, err := a.docker.Run(ctx, "rm", "-f", "cwa3-"+suffix); err != nil {
		t.Fatal(err)
	}
	attachedTo("")
	if got := b.metric(t, `cinderwarden_takeover_steps_total{result="ok",step="nova_detach"}`); got != "2" {
		t.Errorf("B's nova_detach count %s, want 2", got)
	}
	if got := a.metric(t, `cinderwarden_takeover_steps_total{result="ok",step="force_detach"}`); got != "0" {
		t.Errorf("A force-detached: %s", got)
	}

	phase("(c) instance shut off")

	// (d) Member credentials, force-detach enabled, and a Nova detach that
	// never completes: B's takeover fails explaining Cinder's 403, nothing
	// is force-detached, the volume stays A's. Once Nova's detach goes
	// through, A's restarted plugin cleans up.
	hold(a, "cwa4-"+suffix, "a4")
	sim.Faults().HangNovaDetach(true)
	a.plugin.kill()
	_, err = run(b, "cat", "/data/f")
	if err == nil || !strings.Contains(err.Error(), "403 Forbidden") || !strings.Contains(err.Error(), "needs admin credentials") ||
		!strings.Contains(err.Error(), "nothing was force-detached") {
		t.Fatalf("takeover with a hung Nova detach: %v", err)
	}
	for _, ev := range sim.Events() {
		if ev.Kind == simcloud.EventForceDetach {
			t.Fatalf("force-detached: %+v", ev)
		}
	}
	attachedTo(a.inst.ID)
	sim.Faults().HangNovaDetach(false)
	if _, err := cloud.WaitVolume(ctx, id, openstack.DetachedFrom(a.inst.ID)); err != nil {
		t.Fatal(err)
	}
	a.start(t)
	a.requireNoStaleMount(t, id)
	if _, err := a.docker.Run(ctx, "rm", "-f", "cwa4-"+suffix); err != nil {
		t.Fatal(err)
	}
	readOn(b, "a4")
	if got := b.metric(t, `cinderwarden_takeover_steps_total{result="error",step="force_detach"}`); got != "1" {
		t.Errorf("B's failed force_detach count %s, want 1", got)
	}
	phase("(d) hung Nova detach, member credentials")
	if err := simcloud.CheckExclusive(sim.Events()); err != nil {
		t.Fatal(err)
	}
	// Remove while both plugins run: B deletes the Cinder volume; A's
	// daemon then only forgets its record (-f: its driver says it is gone).
	if _, err := b.docker.Run(ctx, "volume", "rm", vol); err != nil {
		t.Fatal(err)
	}
	if _, err := a.docker.Run(ctx, "volume", "rm", "-f", vol); err != nil {
		t.Fatal(err)
	}
	if vs, err := cloud.ListVolumes(ctx, openstack.VolumeFilter{Name: vol}); err != nil || len(vs) != 0 {
		t.Fatalf("after volume rm: %v %v", vs, err)
	}
	removed = true
	phase("volume removed")
}
