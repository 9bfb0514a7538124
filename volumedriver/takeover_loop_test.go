package volumedriver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/go-plugins-helpers/volume"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cinderwarden/cinderwarden/hostdisk"
	"github.com/cinderwarden/cinderwarden/internal/cloudconfig"
	"github.com/cinderwarden/cinderwarden/internal/testenv"
	"github.com/cinderwarden/cinderwarden/openstack"
	"github.com/cinderwarden/cinderwarden/simcloud"
	"github.com/cinderwarden/cinderwarden/simcloud/loopnode"
)

// twoNodes is one simulator (loop backend: real loop devices, mkfs, mount)
// with two instances, each served by its own Driver: own instance
// identity, node dev dir, mount root and state dir. A driver can be killed
// (its context canceled: no more watch, sweep or answers) and restarted on
// the same directories.
type twoNodes struct {
	sim    *simcloud.Sim
	clouds string
	logger *slog.Logger
	nodes  [2]*takeNode
}

type takeNode struct {
	name   string
	inst   simcloud.Instance
	cloud  *openstack.Client
	host   *hostdisk.Host
	root   string
	state  string
	drv    *Driver
	m      *Metrics
	cancel context.CancelFunc
}

type twoNodesOptions struct {
	takeover TakeoverConfig
	// admin: the plugins use the admin's credentials and the instances
	// belong to the admin's project.
	admin bool
}

func newTwoNodes(t *testing.T, o twoNodesOptions) *twoNodes {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "mkfs.ext4", "blkid")
	dir := t.TempDir()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	simDir := filepath.Join(dir, "sim")
	sim, err := simcloud.Start(context.Background(), simcloud.Options{StateDir: simDir, Logger: logger,
		Latency:  simcloud.Latencies{Create: 10 * time.Millisecond, Delete: 10 * time.Millisecond, Attach: 20 * time.Millisecond, Detach: 20 * time.Millisecond},
		Backends: []simcloud.ComputeBackend{loopnode.New(loopnode.Options{Logger: logger})}})
	if err != nil {
		t.Fatal(err)
	}
	p := &twoNodes{sim: sim, clouds: filepath.Join(dir, "clouds.yaml"), logger: logger}
	if err := sim.WriteCloudsYAML(p.clouds); err != nil {
		t.Fatal(err)
	}
	// Cleanups run last-in first-out: drivers stop, stale mounts go, the
	// simulator closes, loop devices are released.
	t.Cleanup(func() {
		sim.Faults().Reset()
		if err := sim.Close(); err != nil {
			t.Errorf("close simulator: %v", err)
		}
		if busy, err := loopnode.DetachAll(context.Background(), simDir); err != nil || len(busy) > 0 {
			t.Errorf("loop devices left: busy %v, err %v", busy, err)
		}
	})
	for i, name := range []string{"node-a", "node-b"} {
		inst, err := sim.AddInstance(simcloud.InstanceSpec{Name: name, Host: "compute-" + name[len(name)-1:],
			NodeDevDir: filepath.Join(dir, name, "dev"), Admin: o.admin})
		if err != nil {
			t.Fatal(err)
		}
		n := &takeNode{name: name, inst: inst, root: filepath.Join(dir, name, "mounts"), state: filepath.Join(dir, name, "state")}
		if err := os.MkdirAll(n.root, 0o755); err != nil {
			t.Fatal(err)
		}
		n.host, err = hostdisk.New(hostdisk.Config{DevRoot: inst.NodeDevDir, SysRoot: filepath.Join(dir, "no-sys"),
			MountRoot: n.root, DeviceTimeout: 10 * time.Second, Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			vms, _ := n.host.VolumeMounts()
			for _, m := range vms {
				_, _ = n.host.UnmountPath(context.Background(), m.Mountpoint, hostdisk.UnmountEscalate)
			}
		})
		p.nodes[i] = n
		p.start(t, n, o)
	}
	return p
}

// start (re)starts n's driver on its directories.
func (p *twoNodes) start(t *testing.T, n *takeNode, o twoNodesOptions) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cloudName := simcloud.CloudMember
	if o.admin {
		cloudName = simcloud.CloudAdmin
	}
	cfg, err := cloudconfig.Resolve(cloudconfig.Options{Cloud: cloudName, CloudsFile: p.clouds})
	if err != nil {
		t.Fatal(err)
	}
	n.cloud, err = openstack.New(ctx, cfg, openstack.Options{RequireCompute: true})
	if err != nil {
		t.Fatal(err)
	}
	n.m, _ = NewMetrics(nil)
	tc := o.takeover
	if tc.Grace == 0 {
		tc.Grace = 400 * time.Millisecond
	}
	if tc.WatchInterval == 0 {
		tc.WatchInterval = 50 * time.Millisecond
	}
	if tc.SweepInterval == 0 {
		tc.SweepInterval = -1 // tests call Sweep themselves
	}
	if tc.DetachTimeout == 0 {
		tc.DetachTimeout = 5 * time.Second
	}
	n.drv, err = New(ctx, Config{Cloud: n.cloud, Host: n.host, Identity: Identity{InstanceID: n.inst.ID, AvailabilityZone: "nova"},
		StateDir: n.state, Policy: OptionPolicy{DefaultSizeGiB: 1, MaxSizeGiB: 4, DefaultFSType: FSExt4},
		AttachTimeout: 15 * time.Second, DeviceTimeout: 10 * time.Second, CreateTimeout: 15 * time.Second,
		Takeover: tc, Logger: p.logger.With("node", n.name), Metrics: n.m})
	if err != nil {
		t.Fatal(err)
	}
	n.cancel = cancel
}

// kill stops n's plugin: no watch, no answers (its mounts stay).
func (n *takeNode) kill() { n.cancel() }

func (n *takeNode) step(step, result string) float64 {
	return testutil.ToFloat64(n.m.tk.steps.WithLabelValues(step, result))
}

// attachments are Cinder's attachments of the volume, as server ids.
func (p *twoNodes) attachments(t *testing.T, id string) (status string, servers []string) {
	t.Helper()
	v, err := p.nodes[0].cloud.GetVolume(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range v.Attachments {
		servers = append(servers, a.ServerID)
	}
	return v.Status, servers
}

func (p *twoNodes) create(t *testing.T, name string, opts map[string]string) string {
	t.Helper()
	d := p.nodes[0].drv
	if err := d.Create(&volume.CreateRequest{Name: name, Options: opts}); err != nil {
		t.Fatal(err)
	}
	v, err := d.resolve(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return v.ID
}

// writeSync writes s to <dir>/f and fsyncs it (a pulled disk loses what was
// not written back, as in a guest).
func writeSync(t *testing.T, dir, s string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "f"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func readF(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "f"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// statWithin stats path in a goroutine and fails if it does not return
// within d (a hung stale mount would block it forever).
func statWithin(t *testing.T, path string, d time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { _, err := os.Stat(path); done <- err }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("stat %s hung for more than %s", path, d)
		return nil
	}
}

// requireNoMount proves n's mountinfo has no entry for the volume and its
// old data path does not hang.
func requireNoMount(t *testing.T, n *takeNode, id string) {
	t.Helper()
	vms, err := n.host.VolumeMounts()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range vms {
		if m.VolumeID == id {
			t.Fatalf("%s: %s is still mounted (%+v)", n.name, id, m)
		}
	}
	if err := statWithin(t, filepath.Join(n.root, id, DataDirName), 2*time.Second); err == nil {
		t.Fatalf("%s: the old data path still exists", n.name)
	}
}

func requireExclusive(t *testing.T, sim *simcloud.Sim) {
	t.Helper()
	if err := simcloud.CheckExclusive(sim.Events()); err != nil {
		t.Fatal(err)
	}
}

// TestTakeoverOffNamesHolder: with preempt off (the default), a Mount of a
// volume held elsewhere fails naming the holder instance and host and how
// to enable takeover; nothing is requested.
func TestTakeoverOffNamesHolder(t *testing.T) {
	p := newTwoNodes(t, twoNodesOptions{})
	a, b := p.nodes[0], p.nodes[1]
	id := p.create(t, "off1", nil)
	if _, err := a.drv.Mount(&volume.MountRequest{Name: "off1", ID: "a1"}); err != nil {
		t.Fatal(err)
	}
	_, err := b.drv.Mount(&volume.MountRequest{Name: "off1", ID: "b1"})
	var held *HeldElsewhereError
	if !errors.As(err, &held) || held.Instance != a.inst.ID || held.Host != a.inst.Host {
		t.Fatalf("got %v", err)
	}
	want := fmt.Sprintf("volume off1 (%s) is attached to instance %s on %s and takeover is off: "+
		"stop its containers there, or enable takeover for this volume (metadata cinderwarden.preempt=true, "+
		"or -o preempt=true when creating it) or in the plugin configuration", id, a.inst.ID, a.inst.Host)
	if held.Error() != want || !strings.HasSuffix(err.Error(), want) {
		t.Fatalf("message: %s\nwant suffix: %s", err, want)
	}
	if b.step("requested", "ok") != 0 {
		t.Fatal("a takeover was requested with preempt off")
	}
	if _, err := a.drv.Mount(&volume.MountRequest{Name: "off1", ID: "a2"}); err != nil {
		t.Fatal(err)
	}
	if err := a.drv.Unmount(&volume.UnmountRequest{Name: "off1", ID: "a1"}); err != nil {
		t.Fatal(err)
	}
	if err := a.drv.Unmount(&volume.UnmountRequest{Name: "off1", ID: "a2"}); err != nil {
		t.Fatal(err)
	}
	requireExclusive(t, p.sim)
}

// TestTakeoverRefusedUnlessForced: a container on A (a mount id) makes B's
// takeover fail with "in use on <A>" as soon as A answers; once the volume
// allows force, B gets it, A force-unmounts (its mount ids dropped) and no
// entry for it remains in A's mountinfo; data written on A is read on B.
func TestTakeoverRefusedUnlessForced(t *testing.T) {
	p := newTwoNodes(t, twoNodesOptions{takeover: TakeoverConfig{Grace: 5 * time.Second}})
	a, b := p.nodes[0], p.nodes[1]
	id := p.create(t, "busy1", map[string]string{"preempt": "true"})
	ma, err := a.drv.Mount(&volume.MountRequest{Name: "busy1", ID: "a1"})
	if err != nil {
		t.Fatal(err)
	}
	writeSync(t, ma.Mountpoint, "from A")

	start := time.Now()
	_, err = b.drv.Mount(&volume.MountRequest{Name: "busy1", ID: "b1"})
	var refused *TakeoverRefusedError
	if !errors.As(err, &refused) || refused.Holder != a.inst.ID || !errors.Is(err, ErrInUse) {
		t.Fatalf("got %v", err)
	}
	if want := "in use on " + a.inst.ID + " by 1 container(s)"; refused.Reason != want {
		t.Fatalf("reason %q, want %q", refused.Reason, want)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("refusal took %s: the holder's answer was not used", el)
	}
	if st, servers := p.attachments(t, id); st != "in-use" || len(servers) != 1 || servers[0] != a.inst.ID {
		t.Fatalf("after the refusal: %s %v", st, servers)
	}
	if a.step("refused", "ok") != 1 || b.step("requested", "ok") != 1 {
		t.Fatalf("metrics: refused %v requested %v", a.step("refused", "ok"), b.step("requested", "ok"))
	}
	v, _ := b.cloud.GetVolume(context.Background(), id)
	if _, ok := v.Metadata[MetaTakeoverTaker]; ok {
		t.Fatalf("the refused request was not cleared: %v", v.Metadata)
	}

	// Forced.
	if _, err := b.cloud.SetVolumeMetadata(context.Background(), id, map[string]string{MetaPreemptForce: "true"}); err != nil {
		t.Fatal(err)
	}
	mb, err := b.drv.Mount(&volume.MountRequest{Name: "busy1", ID: "b1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := readF(t, mb.Mountpoint); got != "from A" {
		t.Fatalf("B reads %q", got)
	}
	if st, servers := p.attachments(t, id); st != "in-use" || len(servers) != 1 || servers[0] != b.inst.ID {
		t.Fatalf("after the forced takeover: %s %v", st, servers)
	}
	requireNoMount(t, a, id)
	if s := a.drv.State(); len(s.Volumes) > 0 {
		if vs, ok := s.Volume(id); ok && (vs.Phase != PhaseDetached || len(vs.Refs) > 0) {
			t.Fatalf("A still records %+v", vs)
		}
	}
	if a.step("released", "ok") != 1 {
		t.Fatalf("released on A: %v", a.step("released", "ok"))
	}
	// A's container (mount id a1) ends: Docker's Unmount is answered.
	if err := a.drv.Unmount(&volume.UnmountRequest{Name: "busy1", ID: "a1"}); err != nil {
		t.Fatal(err)
	}
	if err := b.drv.Unmount(&volume.UnmountRequest{Name: "busy1", ID: "b1"}); err != nil {
		t.Fatal(err)
	}
	requireExclusive(t, p.sim)
}

// TestTakeoverSilentHolder: A's plugin killed (b), or A's instance shut off
// as well (c), while A holds the volume mounted: after the grace B detaches
// A through Nova and reads A's data; A, restarted, sweeps its stale mount
// (no mountinfo entry, the old path does not hang).
func TestTakeoverSilentHolder(t *testing.T) {
	for _, shutoff := range []bool{false, true} {
		t.Run(fmt.Sprintf("shutoff=%v", shutoff), func(t *testing.T) {
			o := twoNodesOptions{}
			p := newTwoNodes(t, o)
			a, b := p.nodes[0], p.nodes[1]
			id := p.create(t, "silent1", map[string]string{"preempt": "true"})
			ma, err := a.drv.Mount(&volume.MountRequest{Name: "silent1", ID: "a1"})
			if err != nil {
				t.Fatal(err)
			}
			writeSync(t, ma.Mountpoint, "from A")
			a.kill()
			if shutoff {
				if err := p.sim.SetInstanceStatus(context.Background(), a.inst.ID, simcloud.StatusShutoff); err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			mb, err := b.drv.Mount(&volume.MountRequest{Name: "silent1", ID: "b1"})
			if err != nil {
				t.Fatal(err)
			}
			if el := time.Since(start); el < 400*time.Millisecond {
				t.Fatalf("took over after %s, before the grace", el)
			}
			if got := readF(t, mb.Mountpoint); got != "from A" {
				t.Fatalf("B reads %q", got)
			}
			if st, servers := p.attachments(t, id); st != "in-use" || len(servers) != 1 || servers[0] != b.inst.ID {
				t.Fatalf("after the takeover: %s %v", st, servers)
			}
			if b.step("nova_detach", "ok") != 1 || b.step("force_detach", "ok")+b.step("force_detach", "error") != 0 {
				t.Fatalf("metrics: nova_detach %v", b.step("nova_detach", "ok"))
			}
			requireExclusive(t, p.sim)

			// A comes back: recovery and the sweep clean up its stale mount.
			if shutoff {
				if err := p.sim.SetInstanceStatus(context.Background(), a.inst.ID, simcloud.StatusActive); err != nil {
					t.Fatal(err)
				}
			}
			p.start(t, a, o)
			if _, err := a.drv.Sweep(context.Background()); err != nil {
				t.Fatal(err)
			}
			requireNoMount(t, a, id)
			if vs, ok := a.drv.State().Volume(id); ok && (vs.Phase != PhaseDetached || len(vs.Refs) > 0) {
				t.Fatalf("A still records %+v", vs)
			}
			if st, servers := p.attachments(t, id); st != "in-use" || len(servers) != 1 || servers[0] != b.inst.ID {
				t.Fatalf("after A's sweep: %s %v", st, servers)
			}
			if err := b.drv.Unmount(&volume.UnmountRequest{Name: "silent1", ID: "b1"}); err != nil {
				t.Fatal(err)
			}
			requireExclusive(t, p.sim)
		})
	}
}

// TestTakeoverHungDetachNonAdmin: A silent, Nova's detach never completes
// and the plugin's credentials are a member's: with force-detach enabled,
// B's takeover fails explaining Cinder's 403, nothing is force-detached,
// and the volume stays A's.
func TestTakeoverHungDetachNonAdmin(t *testing.T) {
	p := newTwoNodes(t, twoNodesOptions{takeover: TakeoverConfig{ForceDetach: true, DetachTimeout: 500 * time.Millisecond}})
	a, b := p.nodes[0], p.nodes[1]
	id := p.create(t, "hung1", map[string]string{"preempt": "true"})
	if _, err := a.drv.Mount(&volume.MountRequest{Name: "hung1", ID: "a1"}); err != nil {
		t.Fatal(err)
	}
	a.kill()
	p.sim.Faults().HangNovaDetach(true)
	_, err := b.drv.Mount(&volume.MountRequest{Name: "hung1", ID: "b1"})
	var fd *ForceDetachError
	if !errors.As(err, &fd) || !errors.Is(err, openstack.ErrForbidden) || !errors.Is(err, ErrTakeoverFailed) {
		t.Fatalf("got %v", err)
	}
	for _, s := range []string{"403 Forbidden", "needs admin credentials", "not retried", "nothing was force-detached", a.inst.ID} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error lacks %q: %v", s, err)
		}
	}
	for _, e := range p.sim.Events() {
		if e.Kind == simcloud.EventForceDetach {
			t.Fatalf("force-detached: %+v", e)
		}
	}
	if b.step("force_detach", "error") != 1 || b.step("nova_detach", "error") != 1 {
		t.Fatalf("metrics: force_detach error %v, nova_detach error %v", b.step("force_detach", "error"), b.step("nova_detach", "error"))
	}
	if _, servers := p.attachments(t, id); len(servers) != 1 || servers[0] != a.inst.ID {
		t.Fatalf("attachments %v", servers)
	}
	if vs, ok := b.drv.State().Volume(id); ok && vs.Phase != PhaseDetached {
		t.Fatalf("B records %+v", vs)
	}
	requireExclusive(t, p.sim)
}

// TestRandomHandoffs: 100 handoffs of one volume between two plugins, each
// randomly cooperative (the holder's container stopped first), forced
// (the holder's container still running, the volume allows force) or
// silent (the holder's plugin killed, restarted afterwards). The data
// follows the volume, every handoff ends with exactly one attachment, and
// the simulator's event log never shows both instances attached.
func TestRandomHandoffs(t *testing.T) {
	handoffs := 100
	if testing.Short() {
		handoffs = 20
	}
	o := twoNodesOptions{takeover: TakeoverConfig{Grace: 200 * time.Millisecond, WatchInterval: 20 * time.Millisecond}}
	p := newTwoNodes(t, o)
	id := p.create(t, "hand1", map[string]string{"preempt_force": "true"})
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 4))
	holder := 0
	mid := "m0"
	mp, err := p.nodes[0].drv.Mount(&volume.MountRequest{Name: "hand1", ID: mid})
	if err != nil {
		t.Fatal(err)
	}
	writeSync(t, mp.Mountpoint, "0")
	modes := map[string]int{}
	start := time.Now()
	for i := 1; i <= handoffs; i++ {
		h, n := p.nodes[holder], p.nodes[1-holder]
		mode := []string{"stopped", "forced", "silent"}[rng.IntN(3)]
		modes[mode]++
		switch mode {
		case "stopped":
			if err := h.drv.Unmount(&volume.UnmountRequest{Name: "hand1", ID: mid}); err != nil {
				t.Fatalf("handoff %d: %v", i, err)
			}
		case "silent":
			h.kill()
		}
		newID := "m" + strconv.Itoa(i)
		mp, err := n.drv.Mount(&volume.MountRequest{Name: "hand1", ID: newID})
		if err != nil {
			t.Fatalf("handoff %d (%s, %s → %s): %v", i, mode, h.name, n.name, err)
		}
		if got := readF(t, mp.Mountpoint); got != strconv.Itoa(i-1) {
			t.Fatalf("handoff %d (%s): %s reads %q, want %d", i, mode, n.name, got, i-1)
		}
		writeSync(t, mp.Mountpoint, strconv.Itoa(i))
		if st, servers := p.attachments(t, id); st != "in-use" || len(servers) != 1 || servers[0] != n.inst.ID {
			t.Fatalf("handoff %d (%s): %s %v", i, mode, st, servers)
		}
		switch mode {
		case "forced":
			// The old container's Unmount reaches the old holder later.
			if err := h.drv.Unmount(&volume.UnmountRequest{Name: "hand1", ID: mid}); err != nil {
				t.Fatalf("handoff %d: late unmount: %v", i, err)
			}
		case "silent":
			p.start(t, h, o)
			if _, err := h.drv.Sweep(context.Background()); err != nil {
				t.Fatalf("handoff %d: sweep: %v", i, err)
			}
		}
		requireNoMount(t, h, id)
		holder, mid = 1-holder, newID
	}
	if err := p.nodes[holder].drv.Unmount(&volume.UnmountRequest{Name: "hand1", ID: mid}); err != nil {
		t.Fatal(err)
	}
	requireExclusive(t, p.sim)
	attaches := 0
	for _, e := range p.sim.Events() {
		if e.Kind == simcloud.EventAttach && e.VolumeID == id {
			attaches++
		}
	}
	if attaches != handoffs+1 {
		t.Fatalf("%d attaches for %d handoffs", attaches, handoffs)
	}
	t.Logf("%d handoffs (%v) in %s", handoffs, modes, time.Since(start).Round(time.Millisecond))
}

// TestSweepAfterSilentTakeover: A's plugin runs but does not answer (its
// watch is off); B detaches A through Nova after the grace. A's own
// periodic sweep then finds its mount stale: force-unmounted (no mountinfo
// entry, the old path does not hang), mount ids dropped, counted; Docker's
// later Unmount of the old id is answered.
func TestSweepAfterSilentTakeover(t *testing.T) {
	p := newTwoNodes(t, twoNodesOptions{})
	a, b := p.nodes[0], p.nodes[1]
	a.kill()
	p.start(t, a, twoNodesOptions{takeover: TakeoverConfig{WatchInterval: -1}})
	id := p.create(t, "sweep1", map[string]string{"preempt": "true"})
	ma, err := a.drv.Mount(&volume.MountRequest{Name: "sweep1", ID: "a1"})
	if err != nil {
		t.Fatal(err)
	}
	writeSync(t, ma.Mountpoint, "from A")
	mb, err := b.drv.Mount(&volume.MountRequest{Name: "sweep1", ID: "b1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := readF(t, mb.Mountpoint); got != "from A" {
		t.Fatalf("B reads %q", got)
	}
	res, err := a.drv.Sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].VolumeID != id || res[0].Event != "Lost" {
		t.Fatalf("sweep: %+v", res)
	}
	requireNoMount(t, a, id)
	if vs, ok := a.drv.State().Volume(id); ok && (vs.Phase != PhaseDetached || len(vs.Refs) > 0) {
		t.Fatalf("A records %+v", vs)
	}
	swept := 0.0
	for _, r := range []string{"device_gone", "corrupted", "not_attached"} {
		swept += testutil.ToFloat64(a.m.tk.swept.WithLabelValues(r, "ok"))
	}
	if swept != 1 {
		t.Fatalf("swept metric %v", swept)
	}
	if err := a.drv.Unmount(&volume.UnmountRequest{Name: "sweep1", ID: "a1"}); err != nil {
		t.Fatal(err)
	}
	// A second sweep finds nothing; B is untouched.
	if res, err := a.drv.Sweep(context.Background()); err != nil || len(res) != 0 {
		t.Fatalf("second sweep: %+v %v", res, err)
	}
	if st, servers := p.attachments(t, id); st != "in-use" || len(servers) != 1 || servers[0] != b.inst.ID {
		t.Fatalf("after A's sweep: %s %v", st, servers)
	}
	if err := b.drv.Unmount(&volume.UnmountRequest{Name: "sweep1", ID: "b1"}); err != nil {
		t.Fatal(err)
	}
	requireExclusive(t, p.sim)
}

// TestTakeoverHungDetachAdmin409: the same with admin credentials: Cinder
// answers os-force_detach with 409 while Nova still uses the attachment
// (bug 2004555's guard); the takeover fails saying so, nothing is
// force-detached, nothing is retried.
func TestTakeoverHungDetachAdmin409(t *testing.T) {
	p := newTwoNodes(t, twoNodesOptions{admin: true, takeover: TakeoverConfig{ForceDetach: true, DetachTimeout: 500 * time.Millisecond}})
	a, b := p.nodes[0], p.nodes[1]
	id := p.create(t, "hung2", map[string]string{"preempt": "true"})
	if _, err := a.drv.Mount(&volume.MountRequest{Name: "hung2", ID: "a1"}); err != nil {
		t.Fatal(err)
	}
	a.kill()
	p.sim.Faults().HangNovaDetach(true)
	_, err := b.drv.Mount(&volume.MountRequest{Name: "hung2", ID: "b1"})
	var fd *ForceDetachError
	if !errors.As(err, &fd) || !errors.Is(err, openstack.ErrConflict) {
		t.Fatalf("got %v", err)
	}
	if !strings.Contains(err.Error(), "409 Conflict: Nova still uses the attachment") {
		t.Errorf("error: %v", err)
	}
	for _, e := range p.sim.Events() {
		if e.Kind == simcloud.EventForceDetach {
			t.Fatalf("force-detached: %+v", e)
		}
	}
	if b.step("force_detach", "error") != 1 {
		t.Fatalf("force_detach errors %v (retried?)", b.step("force_detach", "error"))
	}
	if _, servers := p.attachments(t, id); len(servers) != 1 || servers[0] != a.inst.ID {
		t.Fatalf("attachments %v", servers)
	}
	requireExclusive(t, p.sim)
}

// TestTakeoverForceDetachTagsZombie: Nova lost its mapping of the volume on
// A (its detach answers 404), A is silent, force-detach is enabled and the
// credentials are admin: Cinder's os-force_detach is the last resort; it
// succeeds, the volume is tagged with the instance whose disk may be a
// zombie, and B gets the volume. The simulator proves why the tag matters:
// A's disk was never unplugged (its event log shows both attached).
func TestTakeoverForceDetachTagsZombie(t *testing.T) {
	p := newTwoNodes(t, twoNodesOptions{admin: true, takeover: TakeoverConfig{ForceDetach: true}})
	a, b := p.nodes[0], p.nodes[1]
	id := p.create(t, "zombie1", map[string]string{"preempt": "true"})
	ma, err := a.drv.Mount(&volume.MountRequest{Name: "zombie1", ID: "a1"})
	if err != nil {
		t.Fatal(err)
	}
	writeSync(t, ma.Mountpoint, "from A")
	a.kill()
	if n, err := p.sim.ForgetNovaMapping(a.inst.ID, id); err != nil || n != 1 {
		t.Fatalf("forget mapping: %d %v", n, err)
	}
	mb, err := b.drv.Mount(&volume.MountRequest{Name: "zombie1", ID: "b1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := readF(t, mb.Mountpoint); got != "from A" {
		t.Fatalf("B reads %q", got)
	}
	v, err := b.cloud.GetVolume(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if v.Metadata[MetaZombieInstance] != a.inst.ID || v.Metadata[MetaZombieHost] == "" || v.Metadata[MetaZombieAt] == "" {
		t.Fatalf("zombie tag: %v", v.Metadata)
	}
	if b.step("force_detach", "ok") != 1 || b.step("nova_detach", "error") != 1 {
		t.Fatalf("metrics: force_detach %v nova_detach errors %v", b.step("force_detach", "ok"), b.step("nova_detach", "error"))
	}
	forced := 0
	for _, e := range p.sim.Events() {
		if e.Kind == simcloud.EventForceDetach && e.InstanceID == a.inst.ID {
			forced++
		}
	}
	var overlap *simcloud.OverlapError
	if err := simcloud.CheckExclusive(p.sim.Events()); forced != 1 || !errors.As(err, &overlap) {
		t.Fatalf("force-detach events %d, exclusivity %v: the zombie should be visible", forced, err)
	}
	if err := b.drv.Unmount(&volume.UnmountRequest{Name: "zombie1", ID: "b1"}); err != nil {
		t.Fatal(err)
	}
}

// TestTakeoverCooperativeRelease: A holds the volume with no container (its
// last Unmount failed: a process outside Docker kept the filesystem busy,
// and has let go since). B's request is answered by A's watch at once: A
// unmounts and detaches, B attaches, well within the grace and without
// Nova detaching anything for B.
func TestTakeoverCooperativeRelease(t *testing.T) {
	p := newTwoNodes(t, twoNodesOptions{takeover: TakeoverConfig{Grace: 10 * time.Second}})
	a, b := p.nodes[0], p.nodes[1]
	id := p.create(t, "coop1", map[string]string{"preempt": "true"})
	ma, err := a.drv.Mount(&volume.MountRequest{Name: "coop1", ID: "a1"})
	if err != nil {
		t.Fatal(err)
	}
	writeSync(t, ma.Mountpoint, "from A")
	busy, err := os.Open(filepath.Join(ma.Mountpoint, "f"))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.drv.Unmount(&volume.UnmountRequest{Name: "coop1", ID: "a1"}); !errors.Is(err, hostdisk.ErrBusy) {
		busy.Close()
		t.Fatalf("unmount while busy: %v", err)
	}
	busy.Close()
	if vs, ok := a.drv.State().Volume(id); !ok || vs.Phase != PhaseMounted || len(vs.Refs) != 0 {
		t.Fatalf("A records %+v", vs)
	}
	start := time.Now()
	mb, err := b.drv.Mount(&volume.MountRequest{Name: "coop1", ID: "b1"})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("handoff took %s: the holder's release was not used", el)
	}
	if got := readF(t, mb.Mountpoint); got != "from A" {
		t.Fatalf("B reads %q", got)
	}
	if a.step("released", "ok") != 1 || b.step("nova_detach", "ok")+b.step("nova_detach", "error") != 0 {
		t.Fatalf("metrics: released %v, nova_detach %v", a.step("released", "ok"), b.step("nova_detach", "ok"))
	}
	requireNoMount(t, a, id)
	v, err := b.cloud.GetVolume(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range requestKeys() {
		if _, ok := v.Metadata[k]; ok {
			t.Errorf("request key %s left: %v", k, v.Metadata)
		}
	}
	if v.Metadata[MetaTakeoverReleased] == "" {
		t.Errorf("no release record: %v", v.Metadata)
	}
	if err := b.drv.Unmount(&volume.UnmountRequest{Name: "coop1", ID: "b1"}); err != nil {
		t.Fatal(err)
	}
	requireExclusive(t, p.sim)
}
