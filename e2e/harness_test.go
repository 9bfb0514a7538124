package e2e

import (
	"bufio"
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
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cinderwarden/cinderwarden/hostdisk"
	"github.com/cinderwarden/cinderwarden/internal/cloudconfig"
	"github.com/cinderwarden/cinderwarden/internal/testenv"
	"github.com/cinderwarden/cinderwarden/openstack"
	"github.com/cinderwarden/cinderwarden/simcloud"
	"github.com/cinderwarden/cinderwarden/simcloud/loopnode"
)

// pluginBin is the cinderwarden binary built for this test run.
var pluginBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cinderwarden-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pluginBin = filepath.Join(dir, "cinderwarden")
	build := exec.Command("go", "build", "-o", pluginBin, "github.com/cinderwarden/cinderwarden/cmd/cinderwarden")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: build cinderwarden: %v\n", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is one simulated cloud with one instance whose node dev dir is a
// temp dir, and one plugin process serving that instance.
type env struct {
	t        *testing.T
	sim      *simcloud.Sim
	inst     simcloud.Instance
	cloud    *openstack.Client // for checks, over the simulator's HTTP API
	dir      string
	clouds   string
	driver   string // Docker driver name = socket name
	socket   string
	mounts   string
	state    string
	suffix   string // makes Docker volume names unique per test
	plugin   *pluginProc
	extraArg []string
}

type envOptions struct {
	latency simcloud.Latencies
	// docker: serve under /run/docker/plugins as DockerDriver so dockerd
	// finds it. Other tests keep their socket out of dockerd's sight: it
	// remembers every legacy plugin it saw and retries a vanished one for
	// ~15 s in every volume listing.
	docker bool
}

// DockerDriver is the driver name of every docker test (one name, so that
// dockerd reconnects to each test's plugin on the same socket).
const DockerDriver = "cinderwarden-e2e"

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "mkfs.ext4", "blkid")
	if o.latency == (simcloud.Latencies{}) {
		o.latency = simcloud.Latencies{Create: 50 * time.Millisecond, Delete: 50 * time.Millisecond,
			Attach: 100 * time.Millisecond, Detach: 100 * time.Millisecond}
	}
	dir := t.TempDir()
	e := &env{t: t, dir: dir, mounts: filepath.Join(dir, "mounts"), state: filepath.Join(dir, "state"),
		suffix: fmt.Sprintf("%s-%d", testSlug(t.Name()), os.Getpid())}
	e.driver = "cwtest-" + e.suffix
	e.socket = filepath.Join(dir, e.driver+".sock")
	if o.docker {
		e.driver = DockerDriver
		e.socket = filepath.Join("/run/docker/plugins", e.driver+".sock")
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	simDir := filepath.Join(dir, "sim")
	sim, err := simcloud.Start(ctx, simcloud.Options{StateDir: simDir, Latency: o.latency, Logger: logger,
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
	e.sim = sim
	e.inst, err = sim.AddInstance(simcloud.InstanceSpec{Name: "node-a", Host: "compute-a", NodeDevDir: filepath.Join(dir, "node-dev")})
	if err != nil {
		t.Fatal(err)
	}
	e.clouds = filepath.Join(dir, "clouds.yaml")
	if err := sim.WriteCloudsYAML(e.clouds); err != nil {
		t.Fatal(err)
	}
	cfg, err := cloudconfig.Resolve(cloudconfig.Options{Cloud: simcloud.CloudMember, CloudsFile: e.clouds})
	if err != nil {
		t.Fatal(err)
	}
	e.cloud, err = openstack.New(ctx, cfg, openstack.Options{RequireCompute: true})
	if err != nil {
		t.Fatal(err)
	}
	// Runs before the simulator closes: nothing may stay mounted.
	t.Cleanup(func() {
		h, err := hostdisk.New(hostdisk.Config{MountRoot: e.mounts, Logger: logger})
		if err != nil {
			return
		}
		vms, _ := h.VolumeMounts()
		for _, m := range vms {
			t.Errorf("left mounted after the test: %s", m.Mountpoint)
			_, _ = h.UnmountPath(context.Background(), m.Mountpoint, hostdisk.UnmountEscalate)
		}
	})
	return e
}

// pluginArgs are the plugin's flags for this env; devRoot overrides the
// node dev dir ("" keeps it).
func (e *env) pluginArgs(devRoot string) []string {
	if devRoot == "" {
		devRoot = e.inst.NodeDevDir
	}
	return append([]string{"plugin",
		"--os-cloud", simcloud.CloudMember, "--os-client-config-file", e.clouds,
		"--driver-name", e.driver, "--socket", e.socket,
		"--identity-order", "metadata", "--metadata-url", e.sim.MetadataURL(e.inst.ID),
		"--dev-root", devRoot, "--sys-root", filepath.Join(e.dir, "no-sys"),
		"--mount-root", e.mounts, "--state-dir", e.state,
		"--default-size", "1", "--max-size", "8",
		"--attach-timeout", "30s", "--device-timeout", "20s",
		"--metrics-listen", "127.0.0.1:0", "--log-level", "debug",
	}, e.extraArg...)
}

// startPlugin starts the plugin and waits until it serves.
func (e *env) startPlugin(devRoot string) *pluginProc {
	e.t.Helper()
	p := startProc(e.t, pluginBin, e.pluginArgs(devRoot)...)
	if _, err := p.waitLog(`msg=serving`, 60*time.Second); err != nil {
		p.kill()
		e.t.Fatalf("plugin did not start: %v\n%s", err, p.logText())
	}
	e.plugin = p
	return p
}

// pluginProc is a running plugin process; its stderr (the log) is kept.
type pluginProc struct {
	t     *testing.T
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	more  chan struct{} // closed and replaced on every new line
	done  chan struct{}
}

func startProc(t *testing.T, bin string, args ...string) *pluginProc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	p := &pluginProc{t: t, cmd: cmd, more: make(chan struct{}), done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			close(p.more)
			p.more = make(chan struct{})
			p.mu.Unlock()
		}
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() || os.Getenv("CINDERWARDEN_E2E_LOG") != "" {
			t.Logf("plugin log:\n%s", p.logText())
		}
	})
	return p
}

// waitLog waits for a log line matching re (from the start of the log)
// and returns it.
func (p *pluginProc) waitLog(re string, timeout time.Duration) (string, error) {
	return p.waitLogFrom(0, re, timeout)
}

func (p *pluginProc) mark() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.lines)
}

func (p *pluginProc) waitLogFrom(from int, re string, timeout time.Duration) (string, error) {
	rx := regexp.MustCompile(re)
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for i := from; ; {
		p.mu.Lock()
		for ; i < len(p.lines); i++ {
			if rx.MatchString(p.lines[i]) {
				l := p.lines[i]
				p.mu.Unlock()
				return l, nil
			}
		}
		more := p.more
		p.mu.Unlock()
		select {
		case <-more:
		case <-p.done:
			p.mu.Lock()
			n := len(p.lines)
			p.mu.Unlock()
			if i >= n {
				return "", fmt.Errorf("plugin exited (%v) before logging %q", p.cmd.ProcessState, re)
			}
		case <-deadline.C:
			return "", fmt.Errorf("no log line matching %q after %s", re, timeout)
		}
	}
}

func (p *pluginProc) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *pluginProc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM, waits up to 30 s, then kills.
func (p *pluginProc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.t.Errorf("plugin did not stop on SIGTERM within 30 s")
		p.kill()
	}
}

// exitCode is the process's exit code (-1 if killed by a signal).
func (p *pluginProc) exitCode() int {
	<-p.done
	return p.cmd.ProcessState.ExitCode()
}

// client is an HTTP client on the plugin socket.
func (e *env) client() *http.Client {
	return &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", e.socket)
		},
	}}
}

// post sends one plugin request; it returns the status and decoded body.
func (e *env) post(path string, body any) (int, map[string]any, error) {
	var b []byte
	switch v := body.(type) {
	case string:
		b = []byte(v)
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			return 0, nil, err
		}
	}
	resp, err := e.client().Post("http://plugin"+path, "application/vnd.docker.plugins.v1+json", bytes.NewReader(b))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return resp.StatusCode, nil, fmt.Errorf("%s: decode answer: %w", path, err)
	}
	return resp.StatusCode, out, nil
}

// mustPost fails the test unless the request succeeds; returns the body.
func (e *env) mustPost(path string, body any) map[string]any {
	e.t.Helper()
	code, out, err := e.post(path, body)
	if err != nil || code != 200 {
		e.t.Fatalf("%s %v: %d %v %v", path, body, code, out, err)
	}
	return out
}

// volumeByName returns the Cinder volume named name (exactly one).
func (e *env) volumeByName(name string) *openstack.Volume {
	e.t.Helper()
	vs, err := e.cloud.ListVolumes(context.Background(), openstack.VolumeFilter{Name: name})
	if err != nil || len(vs) != 1 {
		e.t.Fatalf("volume %s in Cinder: %v %v", name, vs, err)
	}
	return &vs[0]
}

// waitStatus waits (bounded) until Cinder shows the volume in status.
func (e *env) waitStatus(id, status string, timeout time.Duration) *openstack.Volume {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	v, err := e.cloud.WaitVolume(ctx, id, openstack.StatusIs(status))
	if err != nil {
		e.t.Fatalf("volume %s: waiting for %s: %v", id, status, err)
	}
	return v
}

// checkAttachHistory proves, from the simulator's event log, that the
// volume was never attached to two instances at once, never attached
// twice to this instance without a detach in between, and (when wantEnd is
// "detach") ends detached.
func (e *env) checkAttachHistory(volumeID string, wantEnd simcloud.EventKind) (attaches int) {
	e.t.Helper()
	evs := e.sim.Events()
	if err := simcloud.CheckExclusive(evs); err != nil {
		e.t.Error(err)
	}
	var last simcloud.EventKind
	for _, ev := range evs {
		if ev.VolumeID != volumeID || (ev.Kind != simcloud.EventAttach && ev.Kind != simcloud.EventDetach) {
			continue
		}
		if ev.Kind == last {
			e.t.Errorf("volume %s: two %s events in a row (double %s): %+v", volumeID, ev.Kind, ev.Kind, evs)
		}
		if ev.Kind == simcloud.EventAttach {
			attaches++
		}
		last = ev.Kind
	}
	if wantEnd != "" && last != wantEnd && !(wantEnd == simcloud.EventDetach && last == "") {
		e.t.Errorf("volume %s: history ends with %q, want %q", volumeID, last, wantEnd)
	}
	return attaches
}

// testSlug makes a test name usable in Docker volume and driver names.
func testSlug(name string) string {
	s := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			return r
		case r >= 'A' && r <= 'Z':
			return r - 'A' + 'a'
		}
		return '-'
	}, strings.TrimPrefix(name, "Test"))
	if len(s) > 40 {
		s = s[:40]
	}
	return s
}
