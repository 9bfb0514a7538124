package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cinderwarden/cinderwarden/internal/dockertest"
	"github.com/cinderwarden/cinderwarden/openstack"
	"github.com/cinderwarden/cinderwarden/simcloud"
)

// Restart of dockerd while containers use volumes (issue 7, item 2).
//
// Gated: restarting the machine's dockerd breaks every docker call made
// meanwhile, and `go test ./...` runs packages in parallel — the docker
// tests of deploy/deploytest and internal/dockertest (and, on a shared
// machine, anyone's docker work) would fail for the ~10 s dockerd is down.
// So `go test ./...` skips it; run it alone (a step of its own in `make
// test`, after the parallel run, is where it belongs):
//
//	CINDERWARDEN_E2E_DOCKERD_RESTART=1 go test -count=1 ./e2e -run TestDockerdRestart
const dockerdRestartEnv = "CINDERWARDEN_E2E_DOCKERD_RESTART"

// dockerdPIDFile is where dockerd writes its pid (its default --pidfile).
const dockerdPIDFile = "/var/run/docker.pid"

// TestDockerdRestart: two containers use a cinderwarden volume each, one
// with --restart=always, one without a restart policy; dockerd is stopped
// with SIGTERM (as systemd does) and started again with the same arguments
// and environment. Afterwards, for each container, the plugin's state is
// exact, checked against the simulator's event log, mountinfo, the loop
// devices and the plugin's own answers:
//   - running again (restart policy, or live-restore kept it): the volume
//     is attached here and mounted, the data written before is read back
//     inside it, and no double attach happened;
//   - not running: the volume was unmounted and detached cleanly (one
//     attach, one detach, no loop device, no mount, Path answers "").
//
// Without live-restore (this machine's default) dockerd unmounts every
// volume when it stops its containers, so the restarted one is attached
// a second time; with live-restore both containers keep running and no
// detach may happen. Finally the containers are removed: every volume
// detaches (no mount id survived the restart), and docker volume rm
// deletes both.
func TestDockerdRestart(t *testing.T) {
	if os.Getenv(dockerdRestartEnv) != "1" {
		t.Skipf("restarts the machine's dockerd, which breaks docker tests running meanwhile in other packages "+
			"(go test ./... runs packages in parallel); set %s=1 to run it alone", dockerdRestartEnv)
	}
	e, d, _ := dockerEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	lr, err := d.Run(ctx, "info", "--format", "{{.LiveRestoreEnabled}}")
	if err != nil {
		t.Fatal(err)
	}
	liveRestore := lr == "true"

	type user struct {
		vol, ctr, restart string
		id                string
	}
	users := []*user{
		{vol: "keep-" + e.suffix, ctr: "cw-keep-" + e.suffix, restart: "always"},
		{vol: "die-" + e.suffix, ctr: "cw-die-" + e.suffix, restart: "no"},
	}
	for _, u := range users {
		rmVolume(t, d, u.vol)
		if _, err := d.Run(ctx, "volume", "create", "-d", e.driver, "-o", "size=1", u.vol); err != nil {
			t.Fatal(err)
		}
		u.id = e.volumeByName(u.vol).ID
		ctr := u.ctr
		t.Cleanup(func() { _, _ = d.Run(context.Background(), "rm", "-f", ctr) })
		// busybox sleep as pid 1 ignores SIGTERM: --stop-timeout 1 keeps
		// dockerd's shutdown short. nocopy: no extra Mount/Unmount for the
		// image copy-up at create, so the attach count is exact.
		if _, err := d.Run(ctx, "run", "-d", "--name", u.ctr, "--restart", u.restart, "--stop-timeout", "1",
			"--network", "none", "-v", u.vol+":/data:nocopy", dockertest.Image,
			"sh", "-c", "echo before-"+u.vol+" > /data/f && exec sleep 3600"); err != nil {
			t.Fatal(err)
		}
		e.waitStatus(u.id, "in-use", 30*time.Second)
	}
	// The file is written before the restart.
	for _, u := range users {
		waitExec(t, ctx, d, u.ctr, "before-"+u.vol)
	}
	eventsBefore := len(e.sim.Events())

	restartDockerd(t, ctx)

	s := &faultScene{env: e}
	attached, odd := s.attachedHere()
	if len(odd) > 0 {
		t.Fatalf("forced or Cinder-only detaches: %+v", odd)
	}
	for _, u := range users {
		running := waitRunning(t, ctx, d, u.ctr, u.restart == "always" || liveRestore)
		want := u.restart == "always" || liveRestore
		if running != want {
			t.Fatalf("container %s (--restart %s, live-restore %v): running=%v after the dockerd restart, want %v",
				u.ctr, u.restart, liveRestore, running, want)
		}
		attached, _ = s.attachedHere()
		mounted := s.mountedVolumes()
		_, path, err := e.post("/VolumeDriver.Path", map[string]string{"Name": u.vol})
		if err != nil {
			t.Fatal(err)
		}
		mp, _ := path["Mountpoint"].(string)
		var kinds []string
		for _, ev := range e.sim.Events()[eventsBefore:] {
			if ev.VolumeID == u.id {
				kinds = append(kinds, string(ev.Kind))
			}
		}
		if running {
			// Attached and mounted, the data is there, and (without
			// live-restore) one detach at the stop and one attach at the
			// restart; with live-restore nothing happened.
			if !attached[u.id] || !mounted[u.id] || mp != filepath.Join(e.mounts, u.id, "data") {
				t.Errorf("volume %s (%s) of running container %s: attached=%v mounted=%v Path=%q", u.vol, u.id, u.ctr, attached[u.id], mounted[u.id], mp)
			}
			waitExec(t, ctx, d, u.ctr, "before-"+u.vol)
			wantKinds := "detach attach"
			if liveRestore {
				wantKinds = ""
			}
			if strings.Join(kinds, " ") != wantKinds {
				t.Errorf("volume %s: events during the restart %v, want [%s]", u.vol, kinds, wantKinds)
			}
			wantAttaches := 2
			if liveRestore {
				wantAttaches = 1
			}
			if n := e.checkAttachHistory(u.id, simcloud.EventAttach); n != wantAttaches {
				t.Errorf("volume %s: %d attaches, want %d", u.vol, n, wantAttaches)
			}
		} else {
			if attached[u.id] || mounted[u.id] || mp != "" {
				t.Errorf("volume %s (%s) of stopped container %s: attached=%v mounted=%v Path=%q (want detached, unmounted)", u.vol, u.id, u.ctr, attached[u.id], mounted[u.id], mp)
			}
			v := e.waitStatus(u.id, "available", 30*time.Second)
			if len(v.Attachments) != 0 {
				t.Errorf("volume %s: Cinder attachments %+v", u.vol, v.Attachments)
			}
			if strings.Join(kinds, " ") != "detach" {
				t.Errorf("volume %s: events during the restart %v, want [detach]", u.vol, kinds)
			}
			if n := e.checkAttachHistory(u.id, simcloud.EventDetach); n != 1 {
				t.Errorf("volume %s: %d attaches, want 1", u.vol, n)
			}
		}
		t.Logf("container %s (--restart %s): running=%v after the restart; volume %s events during it %v", u.ctr, u.restart, running, u.id, kinds)
	}
	if loops, err := s.loopVolumes(); err != nil || len(loops) != len(attached) {
		t.Errorf("loop devices %v (%v) vs attachments %v", loops, err, sortedKeys(attached))
	}

	// No mount id outlived the restart: removing the containers detaches
	// every volume, and the volumes can be removed.
	for _, u := range users {
		if _, err := d.Run(ctx, "rm", "-f", u.ctr); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range users {
		e.waitCinder(u.id, 30*time.Second, func(v *openstack.Volume) bool { return v.Status == "available" && len(v.Attachments) == 0 })
		e.checkAttachHistory(u.id, simcloud.EventDetach)
		if _, err := d.Run(ctx, "volume", "rm", u.vol); err != nil {
			t.Fatalf("docker volume rm %s after the restart: %v", u.vol, err)
		}
		if _, err := e.cloud.GetVolume(ctx, u.id); !errors.Is(err, openstack.ErrNotFound) {
			t.Errorf("volume %s after docker volume rm: %v", u.vol, err)
		}
	}
	if loops, err := s.loopVolumes(); err != nil || len(loops) != 0 {
		t.Errorf("loop devices left: %v %v", loops, err)
	}
	if m := s.mountedVolumes(); len(m) != 0 {
		t.Errorf("still mounted: %v", m)
	}
}

// waitExec waits (bounded) until `cat /data/f` in the container prints want.
func waitExec(t *testing.T, ctx context.Context, d dockertest.CLI, ctr, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for delay := 20 * time.Millisecond; ; delay = min(2*delay, 500*time.Millisecond) {
		out, err := d.Run(ctx, "exec", ctr, "cat", "/data/f")
		if err == nil && out == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s: /data/f reads %q (%v), want %q", ctr, out, err, want)
		}
		time.Sleep(delay)
	}
}

// waitRunning reports whether the container runs; when expectRunning it
// waits (bounded) for dockerd to have restarted it.
func waitRunning(t *testing.T, ctx context.Context, d dockertest.CLI, ctr string, expectRunning bool) bool {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for delay := 20 * time.Millisecond; ; delay = min(2*delay, 500*time.Millisecond) {
		out, err := d.Run(ctx, "inspect", "--format", "{{.State.Running}}", ctr)
		if err != nil {
			t.Fatalf("inspect %s: %v", ctr, err)
		}
		if out == "true" || !expectRunning || time.Now().After(deadline) {
			return out == "true"
		}
		time.Sleep(delay)
	}
}

// dockerdCmd is how the running dockerd was started.
type dockerdCmd struct {
	args, env []string
	dir       string
}

// runningDockerd reads the running dockerd's pid, arguments and
// environment.
func runningDockerd(t *testing.T) (int, dockerdCmd) {
	t.Helper()
	b, err := os.ReadFile(dockerdPIDFile)
	if err != nil {
		t.Fatalf("dockerd pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("%s: %q: %v", dockerdPIDFile, b, err)
	}
	split := func(name string) []string {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), name))
		if err != nil {
			t.Fatalf("dockerd %d: %v", pid, err)
		}
		return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	}
	c := dockerdCmd{args: split("cmdline"), env: split("environ")}
	if c.dir, err = os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "cwd")); err != nil {
		c.dir = "/"
	}
	if comm, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm")); strings.TrimSpace(string(comm)) != "dockerd" {
		t.Fatalf("%s names pid %d, which is %q, not dockerd", dockerdPIDFile, pid, bytes.TrimSpace(comm))
	}
	return pid, c
}

// restartDockerd stops dockerd with SIGTERM, waits for it to exit, starts
// it again with the same arguments and environment (in its own session,
// logging where scripts/substrate.sh logs it) and waits until it answers.
// A cleanup starts it again if the test ends with dockerd down.
func restartDockerd(t *testing.T, ctx context.Context) {
	t.Helper()
	pid, c := runningDockerd(t)
	t.Cleanup(func() { ensureDockerd(t, c) })
	t0 := time.Now()
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM dockerd %d: %v", pid, err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for delay := 10 * time.Millisecond; ; delay = min(2*delay, 250*time.Millisecond) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dockerd %d still running 60 s after SIGTERM", pid)
		}
		time.Sleep(delay)
	}
	stopped := time.Since(t0)
	startDockerd(t, c)
	if err := waitDockerd(ctx, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("dockerd restarted: stopped in %s, answering %s after SIGTERM", stopped.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
}

func startDockerd(t *testing.T, c dockerdCmd) {
	t.Helper()
	out, err := os.OpenFile("/var/log/cinderwarden/dockerd.log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		if out, err = os.OpenFile(os.DevNull, os.O_WRONLY, 0); err != nil {
			t.Fatal(err)
		}
	}
	defer out.Close()
	cmd := exec.Command(c.args[0], c.args[1:]...)
	cmd.Env, cmd.Dir = c.env, c.dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dockerd %v: %v", c.args, err)
	}
	// dockerd outlives the test; it is not waited for.
	if err := cmd.Process.Release(); err != nil {
		t.Fatal(err)
	}
}

// waitDockerd waits until `docker version` answers.
func waitDockerd(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for delay := 20 * time.Millisecond; ; delay = min(2*delay, 500*time.Millisecond) {
		if _, last = (dockertest.CLI{}).Run(ctx, "version", "--format", "{{.Server.Version}}"); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(errors.New("dockerd not answering after the restart"), last)
		case <-time.After(delay):
		}
	}
}

// ensureDockerd starts dockerd again unless it answers (a test that failed
// between the stop and the start).
func ensureDockerd(t *testing.T, c dockerdCmd) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if waitDockerd(ctx, 2*time.Second) == nil {
		return
	}
	if b, err := os.ReadFile(dockerdPIDFile); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && syscall.Kill(pid, 0) == nil {
			// Starting: wait for it rather than start a second one.
			if err := waitDockerd(ctx, 60*time.Second); err == nil {
				return
			}
		}
	}
	startDockerd(t, c)
	if err := waitDockerd(ctx, 60*time.Second); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}
