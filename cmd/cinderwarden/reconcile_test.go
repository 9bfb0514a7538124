package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cinderwarden/cinderwarden/internal/cloudconfig"
	"github.com/cinderwarden/cinderwarden/internal/testenv"
	"github.com/cinderwarden/cinderwarden/openstack"
	"github.com/cinderwarden/cinderwarden/reconciler"
	"github.com/cinderwarden/cinderwarden/simcloud"
)

func TestReconcileFlags(t *testing.T) {
	base := []string{"--once", "--host", "compute-1"}
	cases := []struct {
		name string
		args []string
		code int
		want string // in stderr
	}{
		{"neither once nor schedule", []string{"--host", "h"}, 2, "give --once"},
		{"both once and schedule", []string{"--once", "--schedule", "@every 1m"}, 2, "--once and --schedule: give exactly one"},
		{"bad cron", []string{"--schedule", "every minute"}, 2, `--schedule "every minute": not a cron expression`},
		{"scope node", append(base, "--scope", "node"), 2, "--scope node: the node sweep has its own flags"},
		{"scope other", append(base, "--scope", "cluster"), 2, `--scope "cluster": want host`},
		{"output", append(base, "--output", "yaml"), 2, `--output "yaml": want table or json`},
		{"min sightings", append(base, "--min-sightings", "0"), 2, "--min-sightings 0: want 1 or more"},
		{"min age", append(base, "--min-age", "-1m"), 2, "--min-age -1m0s: want 0 or more"},
		{"max actions", append(base, "--max-actions", "-1"), 2, "--max-actions -1: want 0 or more"},
		{"relative mount base", append(base, "--mount-base", "var/lib/nova/mnt"), 2, `--mount-base "var/lib/nova/mnt": want an absolute`},
		{"root mount base", append(base, "--mount-base", "/"), 2, `--mount-base "/"`},
		{"unclean mount base", append(base, "--mount-base", "/var/lib/nova/mnt/"), 2, `--mount-base "/var/lib/nova/mnt/"`},
		{"empty host", []string{"--once", "--host", ""}, 2, "--host is empty"},
		{"remote libvirt", append(base, "--libvirt-uri", "qemu+ssh://other/system"), 2, "remote hosts are not supported"},
		{"bad libvirt", append(base, "--libvirt-uri", "::"), 2, "--libvirt-uri \"::\""},
		{"metrics listen", append(base, "--metrics-listen", "9478"), 2, `--metrics-listen "9478": want host:port or off`},
		{"textfile suffix", append(base, "--metrics-textfile", "/tmp/x.txt"), 2, "only files ending in .prom"},
		{"detach timeout", append(base, "--detach-timeout", "0s"), 2, "--detach-timeout 0s"},
		{"detach attempts", append(base, "--detach-attempts", "0"), 2, "--detach-attempts 0"},
		{"detach retry timeout", append(base, "--detach-retry-timeout", "0s"), 2, "--detach-retry-timeout 0s"},
		{"request timeout", append(base, "--request-timeout", "0s"), 2, "--request-timeout 0s: want more than 0"},
		{"state file", append(base, "--state-file", ""), 2, "--state-file is empty"},
		{"audit log", append(base, "--audit-log", ""), 2, "--audit-log is empty"},
		{"stray argument", append(base, "now"), 2, "unexpected arguments"},
		{"unknown flag", append(base, "--dry-run"), 2, "flag provided but not defined"},
		{"help", []string{"-h"}, 0, "usage: cinderwarden reconcile"},
		{"once ok", base, 0, ""},
		{"schedule ok", []string{"--schedule", "*/15 * * * *", "--metrics-listen", "off"}, 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			_, code, ok := parseReconcileFlags(tc.args, "compute-1", &stderr)
			if code != tc.code || ok != (tc.code == 0 && tc.want == "") {
				t.Errorf("code %d ok %v, want %d; stderr %s", code, ok, tc.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr %q lacks %q", stderr.String(), tc.want)
			}
		})
	}

	t.Run("defaults", func(t *testing.T) {
		c, _, ok := parseReconcileFlags([]string{"--once", "--mount-base", "/var/lib/nova/mnt", "--mount-base", "/mnt/x"}, "cmp-7", &bytes.Buffer{})
		if !ok {
			t.Fatal("defaults rejected")
		}
		want := reconciler.DefaultPolicy()
		if c.host != "cmp-7" || c.policy.Apply || c.policy.MinSightings != want.MinSightings || c.policy.MinAge != want.MinAge ||
			c.policy.MaxActions != want.MaxActions || c.metricsListen != "" || c.libvirtURI != "qemu:///system" || c.output != "table" ||
			len(c.policy.MountBases) != 2 || c.scope != "host" {
			t.Errorf("defaults = %+v", c)
		}
		s, _, _ := parseReconcileFlags([]string{"--schedule", "@every 5m"}, "cmp-7", &bytes.Buffer{})
		if s.metricsListen != defaultMetricsListen {
			t.Errorf("--schedule metrics listen %q, want %q", s.metricsListen, defaultMetricsListen)
		}
	})
}

// reconcileFixture is the simulator over HTTP (clouds.yaml) with one
// instance on compute-1, and libvirt's test driver (through the real
// libvirtd) holding its domain with a Nova-attached volume (healthy) and a
// zombie disk (its volume available in Cinder, unknown to Nova).
type reconcileFixture struct {
	dir, clouds, xmlPath string
	healthy, zombie      string
	sim                  *simcloud.Sim
}

func newReconcileFixture(t *testing.T, ctx context.Context) reconcileFixture {
	t.Helper()
	testenv.RequireLibvirt(t)
	sim, err := simcloud.Start(context.Background(), simcloud.Options{Seed: uint64(time.Now().UnixNano()) | 1, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	f := reconcileFixture{dir: t.TempDir(), sim: sim}
	f.clouds = filepath.Join(f.dir, "clouds.yaml")
	if err := sim.WriteCloudsYAML(f.clouds); err != nil {
		t.Fatal(err)
	}
	cfg, err := cloudconfig.Resolve(cloudconfig.Options{Cloud: simcloud.CloudAdmin, CloudsFile: f.clouds})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := openstack.New(ctx, cfg, openstack.Options{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	inst, err := sim.AddInstance(simcloud.InstanceSpec{Host: "compute-1"})
	if err != nil {
		t.Fatal(err)
	}
	newVolume := func(name string) string {
		v, err := admin.CreateVolume(ctx, openstack.CreateVolumeOpts{Name: name, SizeGiB: 1})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := admin.WaitVolume(ctx, v.ID, openstack.StatusIs("available")); err != nil {
			t.Fatal(err)
		}
		return v.ID
	}
	f.healthy, f.zombie = newVolume("healthy"), newVolume("zombie")
	if _, err := admin.AttachVolume(ctx, inst.ID, f.healthy); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.WaitVolume(ctx, f.healthy, openstack.AttachedTo(inst.ID)); err != nil {
		t.Fatal(err)
	}
	xml := fmt.Sprintf(`<node><domain type='test'>
  <name>%s</name><uuid>%s</uuid>
  <metadata><nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1"><nova:name>vm</nova:name></nova:instance></metadata>
  <memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'><source file='/var/lib/nova/instances/%[2]s/disk'/><target dev='vda' bus='virtio'/></disk>
    <disk type='block' device='disk'><source dev='/dev/sdb'/><target dev='vdb' bus='virtio'/><serial>%[3]s</serial><alias name='ua-%[3]s'/></disk>
    <disk type='block' device='disk'><source dev='/dev/sdc'/><target dev='vdc' bus='virtio'/><serial>%[4]s</serial><alias name='ua-%[4]s'/></disk>
  </devices>
</domain></node>`, inst.InstanceName, inst.ID, f.healthy, f.zombie)
	f.xmlPath = filepath.Join(f.dir, "domains.xml")
	if err := os.WriteFile(f.xmlPath, []byte(xml), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f reconcileFixture) args(cloud string, extra ...string) []string {
	return append([]string{"reconcile", "--os-cloud", cloud, "--os-client-config-file", f.clouds,
		"--libvirt-uri", "test+unix://" + f.xmlPath, "--host", "compute-1", "--state-file", filepath.Join(f.dir, "state", "memory.json"),
		"--audit-log", filepath.Join(f.dir, "audit.jsonl"), "--metrics-listen", "off"}, extra...)
}

// checkZombie decodes a JSON result and checks the zombie finding (seen
// `seen` times, action in state want) and that the healthy volume is not
// reported.
func (f reconcileFixture) checkZombie(t *testing.T, out []byte, seen int, want reconciler.ActionState) reconciler.Result {
	t.Helper()
	var res reconciler.Result
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("output is not a JSON result: %v\n%s", err, out)
	}
	if res.Aborted || !res.DryRun || res.Host != "compute-1" {
		t.Errorf("aborted %v (%v) dry-run %v host %q", res.Aborted, res.AbortReasons, res.DryRun, res.Host)
	}
	var found bool
	for _, fd := range res.Findings {
		switch {
		case fd.Class == reconciler.ClassZombieDisk && fd.Volume == f.zombie:
			found = true
			if fd.Sightings != seen {
				t.Errorf("zombie seen %d times, want %d", fd.Sightings, seen)
			}
		case fd.Volume == f.healthy && fd.Severity != reconciler.SeverityInfo:
			t.Errorf("healthy volume reported: %+v", fd)
		}
	}
	if !found {
		t.Errorf("no zombie finding for %s in %+v", f.zombie, res.Findings)
	}
	for _, a := range res.Actions {
		if a.Volume == f.zombie && a.State != want {
			t.Errorf("zombie action %s %q, want %s", a.State, a.Reason, want)
		}
	}
	return res
}

// TestReconcileOnceJSON runs `cinderwarden reconcile --once --output json`
// end to end, twice: exit code 1 (findings), the zombie in the JSON with
// one sighting then two (the memory file), waiting for the default three;
// the metrics textfile carries findings, actions and API calls; a dry-run
// writes no audit log.
func TestReconcileOnceJSON(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := newReconcileFixture(t, ctx)
	textfile := filepath.Join(f.dir, "cinderwarden.prom")
	args := f.args(simcloud.CloudAdmin, "--once", "--output", "json", "--metrics-textfile", textfile)
	for run := 1; run <= 2; run++ {
		var stdout, stderr bytes.Buffer
		code := dispatch(ctx, args, &stdout, &stderr)
		if code != reconciler.ExitFindings {
			t.Fatalf("run %d: exit %d, want %d; stderr:\n%s\nstdout:\n%s", run, code, reconciler.ExitFindings, stderr.String(), stdout.String())
		}
		f.checkZombie(t, stdout.Bytes(), run, reconciler.StateWaiting)
	}
	prom, err := os.ReadFile(textfile)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`cinderwarden_reconcile_findings{class="zombie_disk",severity="warning"} 1`,
		`cinderwarden_reconcile_actions{class="zombie_disk",kind="libvirt_detach",state="waiting"} 1`,
		"cinderwarden_reconcile_runs_total 1", "cinderwarden_reconcile_last_success_timestamp_seconds",
		`openstack_api_requests_total{code="200",request="server_list",service="compute"} 1`} {
		if !strings.Contains(string(prom), want) {
			t.Errorf("metrics textfile lacks %q:\n%s", want, prom)
		}
	}
	if _, err := os.Stat(filepath.Join(f.dir, "audit.jsonl")); !os.IsNotExist(err) {
		t.Errorf("a dry-run wrote the audit log: %v", err)
	}
}

// TestReconcileNoAuthCinder runs against the simulator's Keystone-less
// Cinder: Nova is not configured, the zombie is still found, and --apply
// does not act on it (act-without-nova is off), so the exit code is 1.
func TestReconcileNoAuthCinder(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := newReconcileFixture(t, ctx)
	var stdout, stderr bytes.Buffer
	code := dispatch(ctx, f.args(simcloud.CloudNoAuth, "--once", "--output", "json", "--min-sightings", "1", "--min-age", "0s", "--apply"), &stdout, &stderr)
	if code != reconciler.ExitFindings {
		t.Fatalf("exit %d, want %d; stderr:\n%s\nstdout:\n%s", code, reconciler.ExitFindings, stderr.String(), stdout.String())
	}
	var res reconciler.Result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	if res.Sources["nova"].State != reconciler.SourceNotConfigured || res.Sources["cinder"].State != reconciler.SourceOK {
		t.Errorf("sources %+v", res.Sources)
	}
	var found bool
	for _, a := range res.Actions {
		if a.Volume == f.zombie && a.Kind == reconciler.ActionLibvirtDetach {
			found = true
			if a.State != reconciler.StateBlocked || !strings.Contains(a.Reason, "nova is not configured") {
				t.Errorf("zombie action without Nova: %s %q, want blocked", a.State, a.Reason)
			}
		}
	}
	if !found {
		t.Errorf("no libvirt_detach action for the zombie: %+v", res.Actions)
	}
}

// TestReconcileSchedule runs the long-running mode on "@every 1s" until
// the first run has written its textfile, then cancels: it exits 0.
func TestReconcileSchedule(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f := newReconcileFixture(t, ctx)
	textfile := filepath.Join(f.dir, "cinderwarden.prom")
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan int, 1)
	var stdout, stderr bytes.Buffer
	go func() {
		done <- dispatch(runCtx, f.args(simcloud.CloudAdmin, "--schedule", "@every 1s", "--metrics-textfile", textfile), &stdout, &stderr)
	}()
	for delay := 20 * time.Millisecond; ; delay = min(delay*2, 200*time.Millisecond) {
		if b, err := os.ReadFile(textfile); err == nil && strings.Contains(string(b), "cinderwarden_reconcile_runs_total 1") {
			break
		}
		select {
		case <-ctx.Done():
			stop()
			t.Fatalf("no run within the deadline; stderr:\n%s", stderr.String())
		case <-time.After(delay):
		}
	}
	stop()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d after cancel, want 0; stderr:\n%s", code, stderr.String())
		}
	case <-ctx.Done():
		t.Fatal("reconcile --schedule did not stop after cancel")
	}
	if !strings.Contains(stdout.String(), "zombie_disk") {
		t.Errorf("scheduled run printed no zombie finding:\n%s", stdout.String())
	}
}

// TestReconcileScheduleNoOverlap: with Nova's server listing slowed to
// 1.5 s, every run takes longer than the 1 s schedule interval. The runs
// never overlap (each start follows the previous end in the log, written
// under the run lock), cron skips the ticks that fall inside a run rather
// than queueing them, and runs_total counts only the runs that happened.
func TestReconcileScheduleNoOverlap(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	f := newReconcileFixture(t, ctx)
	const interval, latency = time.Second, 1500 * time.Millisecond
	f.sim.Faults().SetLatency(simcloud.OpServerList, latency)
	textfile := filepath.Join(f.dir, "cinderwarden.prom")
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan int, 1)
	var stdout, stderr bytes.Buffer
	began := time.Now()
	go func() {
		done <- dispatch(runCtx, f.args(simcloud.CloudAdmin, "--schedule", "@every "+interval.String(), "--metrics-textfile", textfile, "-v"), &stdout, &stderr)
	}()
	for delay := 20 * time.Millisecond; ; delay = min(delay*2, 200*time.Millisecond) {
		if b, err := os.ReadFile(textfile); err == nil && strings.Contains(string(b), "cinderwarden_reconcile_runs_total 2") {
			break
		}
		select {
		case <-ctx.Done():
			stop()
			t.Fatalf("no second run within the deadline; stderr:\n%s", stderr.String())
		case <-time.After(delay):
		}
	}
	stop()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d after cancel, want 0", code)
		}
	case <-ctx.Done():
		t.Fatal("reconcile --schedule did not stop after cancel")
	}
	elapsed := time.Since(began)

	var seq []string
	skips := 0
	for _, line := range strings.Split(stderr.String(), "\n") {
		switch {
		case strings.Contains(line, `msg="reconcile run start"`):
			seq = append(seq, "start")
		case strings.Contains(line, `msg="reconcile run end"`):
			seq = append(seq, "end")
		case strings.Contains(line, `msg="cron: skip"`):
			skips++
		}
	}
	starts, inFlight := 0, 0
	for i, ev := range seq {
		if ev == "start" {
			starts++
			inFlight++
		} else {
			inFlight--
		}
		if inFlight < 0 || inFlight > 1 {
			t.Fatalf("runs overlap at event %d of %v", i, seq)
		}
	}
	if starts < 2 || skips < 1 {
		t.Errorf("%d runs, %d skipped ticks in %s; want ≥ 2 runs and ≥ 1 skip (each run takes > %s)\nstderr:\n%s", starts, skips, elapsed, interval, stderr.String())
	}
	// Ticks that did not become runs: at most one run per latency.
	if maxRuns := int(elapsed/latency) + 1; starts > maxRuns {
		t.Errorf("%d runs in %s with runs of ≥ %s: runs were queued or overlapped", starts, elapsed, latency)
	}
	t.Logf("%d runs, %d skipped ticks, no overlap, in %s (interval %s, each run ≥ %s)", starts, skips, elapsed.Round(time.Millisecond), interval, latency)
}
