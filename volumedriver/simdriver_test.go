package volumedriver

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cinderwarden/cinderwarden/hostdisk"
	"github.com/cinderwarden/cinderwarden/internal/cloudconfig"
	"github.com/cinderwarden/cinderwarden/openstack"
	"github.com/cinderwarden/cinderwarden/simcloud"
	"github.com/cinderwarden/cinderwarden/simcloud/loopnode"
)

// simNode is a Driver wired to a real simulator (HTTP) on one instance;
// with loop set, attachments are real loop devices under the instance's
// node dev dir and mounts are real.
type simNode struct {
	sim   *simcloud.Sim
	inst  simcloud.Instance
	drv   *Driver
	cloud *openstack.Client
	root  string // mount root
	state string // state dir
}

type simNodeOptions struct {
	loop    bool
	latency simcloud.Latencies
	logger  *slog.Logger
	policy  *OptionPolicy // default: 1 GiB default, 64 GiB max, ext4
	tune    func(*Config) // changes the Driver's Config before New
}

func newSimNode(tb testing.TB, o simNodeOptions) *simNode {
	tb.Helper()
	dir := tb.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	logger := o.logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	simOpts := simcloud.Options{StateDir: filepath.Join(dir, "sim"), Latency: o.latency, Logger: logger}
	if o.loop {
		simOpts.Backends = []simcloud.ComputeBackend{loopnode.New(loopnode.Options{Logger: logger})}
	}
	sim, err := simcloud.Start(ctx, simOpts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := sim.Close(); err != nil {
			tb.Errorf("close simulator: %v", err)
		}
		if o.loop {
			if busy, err := loopnode.DetachAll(context.Background(), filepath.Join(dir, "sim")); err != nil || len(busy) > 0 {
				tb.Errorf("loop devices left: busy %v, err %v", busy, err)
			}
		}
	})
	inst, err := sim.AddInstance(simcloud.InstanceSpec{Name: "node-a", Host: "compute-a", NodeDevDir: filepath.Join(dir, "node-dev")})
	if err != nil {
		tb.Fatal(err)
	}
	clouds := filepath.Join(dir, "clouds.yaml")
	if err := sim.WriteCloudsYAML(clouds); err != nil {
		tb.Fatal(err)
	}
	cfg, err := cloudconfig.Resolve(cloudconfig.Options{Cloud: simcloud.CloudMember, CloudsFile: clouds})
	if err != nil {
		tb.Fatal(err)
	}
	cloud, err := openstack.New(ctx, cfg, openstack.Options{RequireCompute: true})
	if err != nil {
		tb.Fatal(err)
	}
	root := filepath.Join(dir, "mounts")
	if err := os.MkdirAll(root, 0o755); err != nil {
		tb.Fatal(err)
	}
	host, err := hostdisk.New(hostdisk.Config{DevRoot: inst.NodeDevDir, SysRoot: filepath.Join(dir, "no-sys"),
		MountRoot: root, DeviceTimeout: 20 * time.Second, Logger: logger})
	if err != nil {
		tb.Fatal(err)
	}
	id, err := ResolveIdentity(ctx, IdentityConfig{Order: []string{IdentityMetadata}, MetadataURL: sim.MetadataURL(inst.ID)})
	if err != nil {
		tb.Fatal(err)
	}
	policy := OptionPolicy{DefaultSizeGiB: 1, MaxSizeGiB: 64, DefaultFSType: FSExt4}
	if o.policy != nil {
		policy = *o.policy
	}
	n := &simNode{sim: sim, inst: inst, cloud: cloud, root: root, state: filepath.Join(dir, "state")}
	dcfg := Config{Cloud: cloud, Host: host, Identity: id, StateDir: n.state,
		Policy:        policy,
		AttachTimeout: 30 * time.Second, DeviceTimeout: 20 * time.Second, CreateTimeout: 30 * time.Second, Logger: logger}
	if o.tune != nil {
		o.tune(&dcfg)
	}
	n.drv, err = New(ctx, dcfg)
	if err != nil {
		tb.Fatal(err)
	}
	if o.loop {
		// Nothing may stay mounted under the root after the test.
		tb.Cleanup(func() {
			vms, _ := host.VolumeMounts()
			for _, m := range vms {
				tb.Errorf("left mounted: %s", m.Mountpoint)
				_, _ = host.UnmountPath(context.Background(), m.Mountpoint, hostdisk.UnmountEscalate)
			}
		})
	}
	return n
}

// serve serves the driver's handler on a unix socket in a temp dir and
// returns an HTTP client dialing it.
func (n *simNode) serve(tb testing.TB) *http.Client {
	tb.Helper()
	sock := filepath.Join(tb.TempDir(), "plugin.sock")
	l, err := ListenUnix(sock)
	if err != nil {
		tb.Fatal(err)
	}
	fi, err := os.Stat(sock)
	if err != nil {
		tb.Fatal(err)
	}
	if fi.Mode().Perm()&0o007 != 0 {
		tb.Errorf("socket mode %v is open to others", fi.Mode().Perm())
	}
	srv := &http.Server{Handler: n.drv.Handler()}
	go func() { _ = srv.Serve(l) }()
	tb.Cleanup(func() { _ = srv.Close() })
	return &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
}
