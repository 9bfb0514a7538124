package volumedriver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/docker/go-plugins-helpers/volume"

	"github.com/cinderwarden/cinderwarden/hostdisk"
	"github.com/cinderwarden/cinderwarden/openstack"
)

// Config is everything the Driver needs; cmd/cinderwarden builds it from
// flags and validates it once (Config.Validate).
type Config struct {
	Cloud    *openstack.Client
	Host     *hostdisk.Host
	Identity Identity
	// StateDir holds the state file (state.json); created 0700.
	StateDir string
	Policy   OptionPolicy
	// Preempt is the global takeover setting (issue 4); default off.
	Preempt PreemptMode
	// Takeover and the stale-mount sweep (issue 4; see takeover.go and
	// sweep_run.go). Zero values get the defaults of applyTakeoverDefaults.
	Takeover TakeoverConfig
	// DeleteUnmanaged lets Remove delete volumes the plugin did not create.
	DeleteUnmanaged bool
	// AttachTimeout bounds an attach (Nova accepted → Cinder in-use) and a
	// detach; DeviceTimeout the wait for the device; CreateTimeout a
	// create or delete. Defaults: 2 min, 1 min, 5 min.
	AttachTimeout, DeviceTimeout, CreateTimeout time.Duration
	// Backoff for attach/detach polls (default 20 ms ×1.5 capped at 250 ms;
	// the by-id device appearing triggers an immediate poll).
	Backoff openstack.Backoff
	// NoDeviceWake turns off that immediate poll: the attach wait follows
	// Backoff alone. For comparison benchmarks (a fixed 1 s poll, as
	// REX-Ray and cinder-csi do); production uses the default (false).
	NoDeviceWake bool
	Logger       *slog.Logger
	Metrics      *Metrics
}

// StateFileName is the state file's name in the state directory.
const StateFileName = "state.json"

// Validate checks the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Cloud == nil:
		return errors.New("volume driver: no cloud client")
	case c.Host == nil:
		return errors.New("volume driver: no host")
	case !ValidVolumeID(c.Identity.InstanceID):
		return fmt.Errorf("volume driver: instance id %q is not valid", c.Identity.InstanceID)
	case c.StateDir == "" || !filepath.IsAbs(c.StateDir):
		return fmt.Errorf("volume driver: state dir %q must be an absolute path", c.StateDir)
	}
	if err := c.Policy.Validate(); err != nil {
		return err
	}
	for name, d := range map[string]time.Duration{"attach timeout": c.AttachTimeout, "device timeout": c.DeviceTimeout, "create timeout": c.CreateTimeout} {
		if d < 0 {
			return fmt.Errorf("volume driver: %s %s must not be negative", name, d)
		}
	}
	return nil
}

// Driver is the Docker volume plugin: one Docker volume is one Cinder
// volume. It implements go-plugins-helpers' volume.Driver; Handler serves
// it on the plugin socket. Operations on one volume are serialised by that
// volume's lock; different volumes proceed in parallel.
type Driver struct {
	cfg     Config
	cloud   *openstack.Client
	host    *hostdisk.Host
	layout  Layout
	inst    string
	log     *slog.Logger
	metrics *Metrics
	ctx     context.Context // the driver's lifetime: operations outlive Docker's requests

	mu     sync.Mutex
	vols   map[string]*entry // by volume id
	byName map[string]string // Docker name → volume id, for volumes held here

	statePath string
	boot      string       // this boot's id
	state     *stateWriter // the state file's one writer
}

// entry is one volume's machine and lock.
type entry struct {
	mu     sync.Mutex
	v      *Volume
	broken error // a failed state save: unknown until the next restart reconciles
}

// New builds the Driver and recovers the node's state (state file,
// mountinfo, Cinder and Nova → Reconcile → finish what was cut short)
// before returning: serve only after New succeeded. ctx bounds the
// driver's operations (cancel it at shutdown).
func New(ctx context.Context, cfg Config) (*Driver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.AttachTimeout == 0 {
		cfg.AttachTimeout = 2 * time.Minute
	}
	if cfg.DeviceTimeout == 0 {
		cfg.DeviceTimeout = time.Minute
	}
	if cfg.CreateTimeout == 0 {
		cfg.CreateTimeout = 5 * time.Minute
	}
	if cfg.Backoff.Initial == 0 {
		cfg.Backoff = openstack.Backoff{Initial: 20 * time.Millisecond, Factor: 1.5, Max: 250 * time.Millisecond}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics, _ = NewMetrics(nil)
	}
	cfg.Takeover = cfg.Takeover.withDefaults(cfg.AttachTimeout)
	d := &Driver{
		cfg: cfg, cloud: cfg.Cloud, host: cfg.Host, inst: cfg.Identity.InstanceID,
		layout: Layout{Root: cfg.Host.Config().MountRoot}, log: cfg.Logger, metrics: cfg.Metrics, ctx: ctx,
		vols: map[string]*entry{}, byName: map[string]string{},
		statePath: filepath.Join(cfg.StateDir, StateFileName),
	}
	if err := d.recover(ctx); err != nil {
		return nil, err
	}
	d.startBackground()
	return d, nil
}

// bootID is this boot's id (a different one means no old container runs).
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// recover is the wiring contract's step 1.
func (d *Driver) recover(ctx context.Context) error {
	start := time.Now()
	st, err := LoadState(d.statePath)
	if err != nil {
		return err
	}
	vms, err := d.host.VolumeMounts()
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	mounts := make([]LiveMount, 0, len(vms))
	for _, m := range vms {
		mounts = append(mounts, LiveMount{VolumeID: m.VolumeID, Mountpoint: m.Mountpoint, Device: m.Source,
			DeviceGone: m.DeviceGone, Corrupted: m.State == hostdisk.StateCorrupted})
	}
	ids := map[string]bool{}
	for _, v := range st.Volumes {
		ids[v.VolumeID] = true
	}
	for _, m := range mounts {
		ids[m.VolumeID] = true
	}
	// Every volume Nova maps to this instance (os-volume_attachments).
	svs, err := d.cloud.ListServerVolumes(ctx, d.inst)
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	for _, sv := range svs {
		ids[sv.VolumeID] = true
	}
	cinder := map[string]*CinderVolume{}
	for id := range ids {
		v, err := d.cloud.GetVolume(ctx, id)
		switch {
		case errors.Is(err, openstack.ErrNotFound):
			cinder[id] = nil
		case err != nil:
			return fmt.Errorf("recover: %w", err)
		default:
			cinder[id] = FromOpenStack(v)
		}
	}
	d.boot = bootID()
	rec, err := Reconcile(ReconcileInput{
		InstanceID: d.inst, BootID: d.boot, Layout: d.layout, State: st, Mounts: mounts,
		Cinder: cinder, Policy: d.cfg.Policy,
	})
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	for _, f := range rec.Findings {
		d.log.Warn("recovery finding", "volume", f.VolumeID, "code", f.Code, "msg", f.Message)
	}
	if err := SaveState(d.statePath, rec.State); err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	d.state = newStateWriter(d.statePath, d.inst, d.boot, rec.State)
	for _, rv := range rec.Volumes {
		v, err := RestoreVolume(rv.State)
		if err != nil {
			return fmt.Errorf("recover: %w", err)
		}
		e := &entry{v: v}
		d.vols[rv.State.VolumeID] = e
		if rv.State.Name != "" {
			d.byName[rv.State.Name] = rv.State.VolumeID
		}
		for _, a := range rv.Actions {
			ev := d.execute(ctx, a)
			if _, err := Drive(ctx, v, ev, d.execute, d.persister(e)); err != nil {
				d.log.Error("recovery step failed", "volume", rv.State.VolumeID, "step", a.Kind.String(), "err", err)
			}
		}
	}
	d.log.Info("recovered", "volumes", len(rec.Volumes), "findings", len(rec.Findings),
		"instance", d.inst, "duration", time.Since(start).Round(time.Millisecond))
	return nil
}

// persister writes the volume's state into the state file (one writer).
func (d *Driver) persister(e *entry) Persister {
	return func(s VolumeState) error {
		if err := d.state.Put(s); err != nil {
			e.broken = fmt.Errorf("volume %s: its state could not be saved (%w); restart the plugin to reconcile it", s.VolumeID, err)
			return err
		}
		return nil
	}
}

// State returns a copy of the node state as last saved.
func (d *Driver) State() NodeState {
	return d.state.Written()
}

// lookupLocal returns the entry of a volume this node holds under name.
func (d *Driver) lookupLocal(name string) (*entry, string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	id, ok := d.byName[name]
	if !ok {
		return nil, "", false
	}
	e, ok := d.vols[id]
	return e, id, ok
}

// entryFor returns (creating) the entry of a Cinder volume.
func (d *Driver) entryFor(c *openstack.Volume) *entry {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.vols[c.ID]
	if !ok {
		fs := d.cfg.Policy.DefaultFSType
		if set, err := SettingsFromMetadata(c.Metadata, d.cfg.Policy); err == nil {
			fs = set.FSType
		}
		e = &entry{v: NewVolume(c.ID, c.Name, d.layout.MountDir(c.ID), fs)}
		d.vols[c.ID] = e
	}
	d.byName[c.Name] = c.ID
	return e
}

// resolve finds the Cinder volume named name (exactly one).
func (d *Driver) resolve(ctx context.Context, name string) (*openstack.Volume, error) {
	vs, err := d.cloud.ListVolumes(ctx, openstack.VolumeFilter{Name: name})
	if err != nil {
		return nil, fmt.Errorf("volume %s: look up in Cinder: %w", name, err)
	}
	return pickVolume("volume", name, vs)
}

func pickVolume(kind, ref string, vs []openstack.Volume) (*openstack.Volume, error) {
	cands := make([]Candidate, 0, len(vs))
	for _, v := range vs {
		cands = append(cands, Candidate{ID: v.ID, Name: v.Name})
	}
	id, err := PickOne(kind, ref, cands)
	if err != nil {
		return nil, err
	}
	for i := range vs {
		if vs[i].ID == id {
			return &vs[i], nil
		}
	}
	return nil, fmt.Errorf("no %s has the id or name %q: %w", kind, ref, ErrNoSuchVolume)
}

// opContext is the context of one operation: the driver's lifetime (not
// Docker's request: a rollback must finish even if Docker gave up), bounded.
func (d *Driver) opContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(d.ctx, d.cfg.AttachTimeout+d.cfg.DeviceTimeout+d.cfg.AttachTimeout+time.Minute)
}

// observe logs one line and records the metrics of one request.
func (d *Driver) observe(op, name, mountID string, start time.Time, err error, attrs ...any) {
	dur := time.Since(start)
	d.metrics.observeRequest(op, err, dur)
	args := []any{"op", op, "volume", name}
	if mountID != "" {
		args = append(args, "mount_id", mountID)
	}
	args = append(args, "duration", dur.Round(time.Microsecond), "outcome", ErrorClass(err))
	args = append(args, attrs...)
	if err != nil {
		d.log.Warn("request", append(args, "err", err)...)
		return
	}
	d.log.Info("request", args...)
}

// Create creates (or adopts) the Cinder volume for a Docker volume.
func (d *Driver) Create(req *volume.CreateRequest) (err error) {
	start := time.Now()
	var id string
	defer func() { d.observe("create", req.Name, "", start, err, "volume_id", id) }()
	if err := ValidateName(req.Name); err != nil {
		return err
	}
	o, err := ParseCreateOptions(req.Options, d.cfg.Policy)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(d.ctx, d.cfg.CreateTimeout)
	defer cancel()
	id, err = d.create(ctx, req.Name, o)
	return err
}

func (d *Driver) create(ctx context.Context, name string, o CreateOptions) (string, error) {
	existing, err := d.cloud.ListVolumes(ctx, openstack.VolumeFilter{Name: name})
	if err != nil {
		return "", fmt.Errorf("volume %s: look up in Cinder: %w", name, err)
	}
	var same []openstack.Volume
	for _, v := range existing {
		if v.Name == name {
			same = append(same, v)
		}
	}
	switch {
	case len(same) > 1:
		_, err := pickVolume("volume", name, same)
		return "", fmt.Errorf("create %s: %w", name, err)
	case len(same) == 1:
		v := same[0]
		d.log.Info("adopting existing Cinder volume", "volume", name, "volume_id", v.ID, "status", v.Status)
		if v.Status == "creating" {
			if _, err := d.cloud.WaitVolume(ctx, v.ID, openstack.StatusIs("available")); err != nil {
				return v.ID, err
			}
		}
		return v.ID, nil
	}
	co := openstack.CreateVolumeOpts{
		Name: name, SizeGiB: o.SizeGiB, VolumeType: o.Type, AvailabilityZone: o.AvailabilityZone,
		Description: o.Description, Metadata: ManagedMetadata(o),
	}
	if co.AvailabilityZone == "" {
		co.AvailabilityZone = d.cfg.Identity.AvailabilityZone
	}
	if err := d.setCreateSource(ctx, name, o, &co); err != nil {
		return "", err
	}
	v, err := d.cloud.CreateVolume(ctx, co)
	if err != nil {
		return "", err
	}
	if _, err := d.cloud.WaitVolume(ctx, v.ID, openstack.StatusIs("available")); err != nil {
		return v.ID, fmt.Errorf("volume %s (%s): wait until available: %w", name, v.ID, err)
	}
	return v.ID, nil
}

// findVolume resolves a reference by id (a UUID) or name.
func (d *Driver) findVolume(ctx context.Context, ref string) (*openstack.Volume, error) {
	if IsUUID(ref) {
		v, err := d.cloud.GetVolume(ctx, ref)
		if err == nil {
			return v, nil
		}
		if !errors.Is(err, openstack.ErrNotFound) {
			return nil, err
		}
	}
	vs, err := d.cloud.ListVolumes(ctx, openstack.VolumeFilter{Name: ref})
	if err != nil {
		return nil, err
	}
	return pickVolume("volume", ref, vs)
}

// Remove deletes the Cinder volume: refused while attached anywhere, and
// for volumes the plugin did not create unless DeleteUnmanaged.
func (d *Driver) Remove(req *volume.RemoveRequest) (err error) {
	start := time.Now()
	var id string
	defer func() { d.observe("remove", req.Name, "", start, err, "volume_id", id) }()
	if err := ValidateName(req.Name); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(d.ctx, d.cfg.CreateTimeout)
	defer cancel()
	v, err := d.resolve(ctx, req.Name)
	if errors.Is(err, ErrNoSuchVolume) {
		return nil // already gone: Remove is idempotent
	}
	if err != nil {
		return err
	}
	id = v.ID
	e := d.entryFor(v)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.broken != nil {
		return e.broken
	}
	if err := e.v.CheckRemovable(); err != nil {
		return err
	}
	if len(v.Attachments) > 0 {
		var where []string
		for _, a := range v.Attachments {
			host := a.HostName
			if host == "" {
				host = "unknown host"
			}
			where = append(where, fmt.Sprintf("instance %s on %s", a.ServerID, host))
		}
		sort.Strings(where)
		return &AttachedError{Name: v.Name, VolumeID: v.ID, Where: where}
	}
	set, err := SettingsFromMetadata(v.Metadata, d.cfg.Policy)
	if err != nil {
		return fmt.Errorf("volume %s (%s): %w", v.Name, v.ID, err)
	}
	if !set.MayDelete(d.cfg.DeleteUnmanaged) {
		return fmt.Errorf("volume %s (%s) was not created by cinderwarden (no %s=true metadata): not deleting it; "+
			"delete it in Cinder, or start the plugin with --delete-unmanaged", v.Name, v.ID, MetaManaged)
	}
	// A Remove retried after the plugin died in the deletion wait finds
	// the volume "deleting": Cinder refuses a second DELETE (400), so only
	// wait for the one in flight.
	if v.Status != "deleting" {
		if err := d.cloud.DeleteVolume(ctx, v.ID); err != nil {
			return err
		}
	}
	if err := d.cloud.WaitVolumeDeleted(ctx, v.ID); err != nil {
		return err
	}
	d.mu.Lock()
	delete(d.vols, v.ID)
	if d.byName[v.Name] == v.ID {
		delete(d.byName, v.Name)
	}
	d.mu.Unlock()
	return nil
}

// Mount attaches (if needed) and mounts the volume for Docker mount id
// req.ID and returns the data directory.
func (d *Driver) Mount(req *volume.MountRequest) (resp *volume.MountResponse, err error) {
	start := time.Now()
	var id string
	defer func() { d.observe("mount", req.Name, req.ID, start, err, "volume_id", id) }()
	if err := ValidateName(req.Name); err != nil {
		return nil, err
	}
	if err := ValidateMountID(req.ID); err != nil {
		return nil, err
	}
	ctx, cancel := d.opContext()
	defer cancel()
	e, vid, ok := d.lookupLocal(req.Name)
	if !ok || e.phase() == PhaseDetached {
		v, err := d.resolve(ctx, req.Name)
		if err != nil {
			return nil, err
		}
		e, vid = d.entryFor(v), v.ID
	}
	id = vid
	r, err := d.drive(ctx, e, Mount{ID: req.ID}, ReplyMount, req.ID)
	if err != nil {
		return nil, err
	}
	return &volume.MountResponse{Mountpoint: r.Mountpoint}, nil
}

func (e *entry) phase() Phase {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.v.Phase()
}

// drive runs one request through the volume's machine under its lock.
func (d *Driver) drive(ctx context.Context, e *entry, ev Event, op ReplyOp, mountID string) (Reply, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.broken != nil {
		return Reply{}, e.broken
	}
	replies, err := Drive(ctx, e.v, ev, d.execute, d.persister(e))
	r, ok := ReplyFor(replies, op, mountID)
	switch {
	case ok && r.Err != nil:
		return r, r.Err
	case ok:
		return r, nil
	case err != nil:
		return Reply{}, err
	}
	return Reply{}, fmt.Errorf("volume %s: %s %s: no answer from the state machine (phase %s)", e.v.State().VolumeID, op, mountID, e.v.Phase())
}

// Unmount releases Docker mount id req.ID; the last one unmounts and
// detaches the volume.
func (d *Driver) Unmount(req *volume.UnmountRequest) (err error) {
	start := time.Now()
	var id string
	defer func() { d.observe("unmount", req.Name, req.ID, start, err, "volume_id", id) }()
	if err := ValidateName(req.Name); err != nil {
		return err
	}
	if err := ValidateMountID(req.ID); err != nil {
		return err
	}
	e, vid, ok := d.lookupLocal(req.Name)
	if !ok {
		return nil // nothing held here under that name: already unmounted
	}
	id = vid
	ctx, cancel := d.opContext()
	defer cancel()
	_, err = d.drive(ctx, e, Unmount{ID: req.ID}, ReplyUnmount, req.ID)
	return err
}

// Path returns the data directory while the volume is mounted here.
func (d *Driver) Path(req *volume.PathRequest) (*volume.PathResponse, error) {
	if err := ValidateName(req.Name); err != nil {
		return nil, err
	}
	if e, _, ok := d.lookupLocal(req.Name); ok {
		e.mu.Lock()
		st := e.v.State()
		e.mu.Unlock()
		if st.Phase == PhaseMounted {
			return &volume.PathResponse{Mountpoint: st.DataDir()}, nil
		}
	}
	return &volume.PathResponse{}, nil
}

// localState is this node's state of a volume, nil when not held. It does
// not wait for an operation in flight (Get and List must stay fast): it
// reads the last saved state.
func (d *Driver) localState(id string) *VolumeState {
	if s, ok := d.state.Written().Volume(id); ok {
		return &s
	}
	return nil
}

// Get describes one volume: Cinder's view and this node's.
func (d *Driver) Get(req *volume.GetRequest) (resp *volume.GetResponse, err error) {
	start := time.Now()
	defer func() { d.observe("get", req.Name, "", start, err) }()
	if err := ValidateName(req.Name); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(d.ctx, time.Minute)
	defer cancel()
	v, err := d.resolve(ctx, req.Name)
	if err != nil {
		return nil, err
	}
	return &volume.GetResponse{Volume: DockerVolume(FromOpenStack(v), d.localState(v.ID))}, nil
}

// List lists the project's volumes (every page). Volumes without a name
// Docker accepts are left out; of several with one name, the first by id.
func (d *Driver) List() (resp *volume.ListResponse, err error) {
	start := time.Now()
	n := 0
	defer func() { d.observe("list", "", "", start, err, "count", n) }()
	ctx, cancel := context.WithTimeout(d.ctx, time.Minute)
	defer cancel()
	vs, err := d.cloud.ListVolumes(ctx, openstack.VolumeFilter{})
	if err != nil {
		return nil, err
	}
	sort.Slice(vs, func(i, j int) bool { return vs[i].ID < vs[j].ID })
	seen := map[string]bool{}
	out := &volume.ListResponse{Volumes: []*volume.Volume{}}
	for i := range vs {
		v := &vs[i]
		if ValidateName(v.Name) != nil || seen[v.Name] {
			continue
		}
		seen[v.Name] = true
		out.Volumes = append(out.Volumes, DockerVolume(FromOpenStack(v), d.localState(v.ID)))
	}
	n = len(out.Volumes)
	return out, nil
}

// Capabilities: global scope (a Cinder volume is reachable from every node).
func (d *Driver) Capabilities() *volume.CapabilitiesResponse { return Capabilities() }

var _ volume.Driver = (*Driver)(nil)

// AttachedError refuses Remove of a volume Cinder shows attached. Unwraps
// to ErrInUse.
type AttachedError struct {
	Name, VolumeID string
	Where          []string // "instance <id> on <host>", sorted
}

func (e *AttachedError) Error() string {
	return fmt.Sprintf("volume %s (%s) is attached to %s: stop the containers using it there first",
		e.Name, e.VolumeID, strings.Join(e.Where, ", "))
}

func (e *AttachedError) Unwrap() error { return ErrInUse }
