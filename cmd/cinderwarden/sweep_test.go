package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cinderwarden/cinderwarden/hostdisk"
	"github.com/cinderwarden/cinderwarden/internal/cloudconfig"
	"github.com/cinderwarden/cinderwarden/internal/testenv"
	"github.com/cinderwarden/cinderwarden/openstack"
	"github.com/cinderwarden/cinderwarden/simcloud"
	"github.com/cinderwarden/cinderwarden/simcloud/loopnode"
)

func TestNodeScopeDispatch(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"--scope", "node", "--once"}, true},
		{[]string{"--once", "--scope=node"}, true},
		{[]string{"-scope", "node"}, true},
		{[]string{"--scope", "host", "--once"}, false},
		{[]string{"--once"}, false},
		{[]string{"--", "--scope", "node"}, false},
	} {
		if got := nodeScope(tc.args); got != tc.want {
			t.Errorf("nodeScope(%q) = %v", tc.args, got)
		}
	}
}

func TestNodeSweepFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no once", []string{"--scope", "node"}, "--scope node runs one sweep: give --once"},
		{"relative root", []string{"--scope", "node", "--once", "--mount-root", "m"}, `--mount-root "m": must be an absolute path`},
		{"bad output", []string{"--scope", "node", "--once", "--output", "yaml"}, `--output "yaml": want table or json`},
		{"bad instance", []string{"--scope", "node", "--once", "--instance-id", "a/b"}, `--instance-id "a/b": not an instance id`},
		{"bad order", []string{"--scope", "node", "--once", "--identity-order", "dns"}, "--identity-order: "},
		{"extra", []string{"--scope", "node", "--once", "x"}, `unexpected arguments ["x"]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if code := runReconcile(context.Background(), tc.args, &bytes.Buffer{}, &stderr); code != 2 {
				t.Fatalf("exit %d, want 2; stderr %s", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("stderr %q lacks %q", stderr.String(), tc.want)
			}
		})
	}
}

// TestNodeSweepRun: a plugin-style mount whose volume Nova detached behind
// its back (the loop device is yanked) is reported by --dry-run (exit 1,
// still mounted), then unmounted by a real run (exit 1), after which no
// mountinfo entry remains, the old path does not hang, and a third run
// finds nothing (exit 0). A healthy mount is never touched.
func TestNodeSweepRun(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "mkfs.ext4", "blkid")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	simDir := filepath.Join(dir, "sim")
	sim, err := simcloud.Start(ctx, simcloud.Options{StateDir: simDir, Logger: logger,
		Latency:  simcloud.Latencies{Attach: 10 * time.Millisecond, Detach: 10 * time.Millisecond},
		Backends: []simcloud.ComputeBackend{loopnode.New(loopnode.Options{Logger: logger})}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = sim.Close()
		if busy, err := loopnode.DetachAll(context.Background(), simDir); err != nil || len(busy) > 0 {
			t.Errorf("loop devices left: %v %v", busy, err)
		}
	})
	inst, err := sim.AddInstance(simcloud.InstanceSpec{Name: "node-a", NodeDevDir: filepath.Join(dir, "dev")})
	if err != nil {
		t.Fatal(err)
	}
	clouds := filepath.Join(dir, "clouds.yaml")
	if err := sim.WriteCloudsYAML(clouds); err != nil {
		t.Fatal(err)
	}
	cfg, err := cloudconfig.Resolve(cloudconfig.Options{Cloud: simcloud.CloudMember, CloudsFile: clouds})
	if err != nil {
		t.Fatal(err)
	}
	cloud, err := openstack.New(ctx, cfg, openstack.Options{RequireCompute: true})
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "mounts")
	host, err := hostdisk.New(hostdisk.Config{DevRoot: inst.NodeDevDir, SysRoot: filepath.Join(dir, "nosys"), MountRoot: root,
		DeviceTimeout: 10 * time.Second, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		vms, _ := host.VolumeMounts()
		for _, m := range vms {
			_, _ = host.UnmountPath(context.Background(), m.Mountpoint, hostdisk.UnmountEscalate)
		}
	})
	mount := func(name string) string {
		v, err := cloud.CreateVolume(ctx, openstack.CreateVolumeOpts{Name: name, SizeGiB: 1})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cloud.WaitVolume(ctx, v.ID, openstack.StatusIs("available")); err != nil {
			t.Fatal(err)
		}
		if _, err := cloud.AttachVolume(ctx, inst.ID, v.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := cloud.WaitVolume(ctx, v.ID, openstack.AttachedTo(inst.ID)); err != nil {
			t.Fatal(err)
		}
		dev, err := host.WaitForDevice(ctx, v.ID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := host.Mount(ctx, hostdisk.MountRequest{VolumeID: v.ID, Device: dev.Path, FSType: "ext4"}); err != nil {
			t.Fatal(err)
		}
		return v.ID
	}
	stale, healthy := mount("stale1"), mount("healthy1")
	if err := cloud.DetachVolume(ctx, inst.ID, stale); err != nil {
		t.Fatal(err)
	}
	if _, err := cloud.WaitVolume(ctx, stale, openstack.DetachedFrom(inst.ID)); err != nil {
		t.Fatal(err)
	}
	run := func(extra ...string) (int, []nodeSweepRecord) {
		t.Helper()
		args := append([]string{"--scope", "node", "--once", "--os-cloud", simcloud.CloudMember, "--os-client-config-file", clouds,
			"--instance-id", inst.ID, "--metadata-url", inst.MetadataURL, "--state-dir", filepath.Join(dir, "state"),
			"--dev-root", inst.NodeDevDir, "--sys-root", filepath.Join(dir, "nosys"), "--mount-root", root, "--output", "json"}, extra...)
		var stdout, stderr bytes.Buffer
		code := runReconcile(ctx, args, &stdout, &stderr)
		var out struct {
			Stale []nodeSweepRecord `json:"stale"`
			Error string            `json:"error"`
		}
		if err := json.Unmarshal(stdout.Bytes(), &out); err != nil || out.Error != "" {
			t.Fatalf("output %q (%v), stderr %s", stdout.String(), err, stderr.String())
		}
		return code, out.Stale
	}
	mounted := func(id string) bool {
		vms, err := host.VolumeMounts()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range vms {
			if m.VolumeID == id {
				return true
			}
		}
		return false
	}
	code, recs := run("--dry-run")
	if code != 1 || len(recs) != 1 || recs[0].VolumeID != stale || recs[0].Reason != "not_attached" || !mounted(stale) {
		t.Fatalf("dry run: exit %d %+v, mounted %v", code, recs, mounted(stale))
	}
	code, recs = run()
	if code != 1 || len(recs) != 1 || recs[0].VolumeID != stale || recs[0].Outcome != "unmounted" {
		t.Fatalf("run: exit %d %+v", code, recs)
	}
	if mounted(stale) || !mounted(healthy) {
		t.Fatalf("after the sweep: stale mounted %v, healthy mounted %v", mounted(stale), mounted(healthy))
	}
	done := make(chan struct{})
	go func() { _, _ = os.Stat(filepath.Join(root, stale, "data")); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("stat of the old path hangs")
	}
	if code, recs = run(); code != 0 || len(recs) != 0 {
		t.Fatalf("second run: exit %d %+v", code, recs)
	}
}
