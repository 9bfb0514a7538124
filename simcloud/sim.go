package simcloud

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Latencies are the simulated durations of the asynchronous transitions.
// Zero means "due immediately" (the transition still happens after the
// request that started it has answered, as in the real services).
type Latencies struct {
	// Create is creating → available for a new volume.
	Create time.Duration
	// Delete is deleting → gone.
	Delete time.Duration
	// Extend is extending → available (or in-use).
	Extend time.Duration
	// Attach is the time nova-compute takes from accepting a Nova volume
	// attach to connecting the volume and calling the backends.
	Attach time.Duration
	// Detach is the time from accepting a Nova volume detach to calling the
	// backends (the guest acknowledging the unplug).
	Detach time.Duration
}

// Options configure a simulator. The zero value is usable.
type Options struct {
	// Addr is the listen address; default "127.0.0.1:0" (an ephemeral port).
	Addr string
	// Seed makes every generated id (projects, users, volumes, attachments,
	// servers, tokens, request ids) reproducible; default 1.
	Seed uint64
	// Clock drives all latencies and timestamps; default real time.
	Clock Clock
	// TokenLifetime is how long a Keystone token is valid; default 1h.
	TokenLifetime time.Duration
	// Latency is the duration of each asynchronous transition.
	Latency Latencies
	// StateDir holds backing files (<StateDir>/volumes/<id>.img), node dev
	// dirs and the event log. Default: a new temp dir removed by Close.
	StateDir string
	// Backends make Nova attachments real (loop devices, libvirt disks).
	// They are called in order on attach and in reverse order on detach.
	Backends []ComputeBackend
	// Region is the catalog region; default "RegionOne".
	Region string
	// EventLog is the JSON-lines event file, truncated at Start; default
	// <StateDir>/events.jsonl.
	EventLog string
	// NovaTaskStates makes servers show OS-EXT-STS:task_state
	// "attaching_volume"/"detaching_volume" while Nova works on a volume.
	// Real Nova leaves task_state null during volume attach/detach, so this
	// is off by default.
	NovaTaskStates bool
	// Logger receives one line per request and per async step; default
	// discards. Tokens and passwords are never logged.
	Logger *slog.Logger
}

// Credentials are one Keystone user's password credentials, project-scoped.
type Credentials struct {
	AuthURL           string
	Region            string
	UserID            string
	Username          string
	Password          string
	UserDomainName    string
	ProjectID         string
	ProjectName       string
	ProjectDomainName string
}

// Instance status values accepted by SetInstanceStatus and InstanceSpec.
const (
	StatusActive  = "ACTIVE"
	StatusShutoff = "SHUTOFF"
	StatusError   = "ERROR"
	// StatusDeleted deletes the instance the way Nova does: every volume is
	// detached through the backends, its Cinder attachment deleted and its
	// mapping destroyed.
	StatusDeleted = "deleted"
)

// ErrNoSuchInstance is returned by library calls naming an unknown instance.
var ErrNoSuchInstance = errors.New("no such instance")

// InstanceSpec describes a Nova server to add. Every field is optional.
type InstanceSpec struct {
	ID               string // default: generated from the seed
	Name             string // default "vm-<n>"
	Host             string // compute host; default "compute-1"
	AvailabilityZone string // default "nova"
	// NodeDevDir is the dev root the instance's guest would see (by-id
	// links go under NodeDevDir/disk/by-id); default
	// <StateDir>/nodes/<id>/dev, created.
	NodeDevDir string
	Status     string // ACTIVE (default), SHUTOFF or ERROR
	// Admin puts the instance in the admin user's project instead of the
	// member's.
	Admin bool
}

// Instance is a Nova server as the simulator holds it.
type Instance struct {
	ID               string
	Name             string
	InstanceName     string // libvirt-style, instance-0000000n
	Host             string
	AvailabilityZone string
	NodeDevDir       string
	ProjectID        string
	Status           string
	// MetadataURL is the base URL of this instance's metadata service.
	MetadataURL string
}

// Sim is a running simulator: Keystone at /identity/v3, Cinder at
// /volume/v3/<project> (and without Keystone at /noauth/volume/v3/<project>),
// Nova at /compute/v2.1, each instance's metadata service at
// /metadata/<instance-id>, and fault controls at /_sim.
type Sim struct {
	opts        Options
	clock       Clock
	ids         *idGen // resource ids: depend only on the order of creations
	reqIDs      *idGen // request ids
	model       *model
	faults      *Faults
	events      *eventLog
	log         *slog.Logger
	ln          net.Listener
	srv         *http.Server
	base        string
	stateDir    string
	ownStateDir bool
	member      Credentials
	admin       Credentials

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	physMu sync.Mutex
	phys   map[string]Attachment // backend-attached, key volume/instance
	closed sync.Once
}

// Start validates opts, listens and serves until Close or ctx ends.
func Start(ctx context.Context, opts Options) (*Sim, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	if opts.TokenLifetime == 0 {
		opts.TokenLifetime = time.Hour
	}
	if opts.TokenLifetime < 0 {
		return nil, fmt.Errorf("simcloud: token lifetime %s must be positive", opts.TokenLifetime)
	}
	for name, d := range map[string]time.Duration{"create": opts.Latency.Create, "delete": opts.Latency.Delete,
		"extend": opts.Latency.Extend, "attach": opts.Latency.Attach, "detach": opts.Latency.Detach} {
		if d < 0 {
			return nil, fmt.Errorf("simcloud: %s latency %s must not be negative", name, d)
		}
	}
	for i, b := range opts.Backends {
		if b == nil {
			return nil, fmt.Errorf("simcloud: backend %d is nil", i)
		}
	}
	if opts.Region == "" {
		opts.Region = "RegionOne"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Sim{opts: opts, clock: opts.Clock, log: opts.Logger, phys: map[string]Attachment{}}
	s.ids = newIDGen(opts.Seed)
	s.reqIDs = newIDGen(opts.Seed + 1)
	s.model = newModel(s.ids, opts.Latency, opts.NovaTaskStates)
	s.model.tokenIDs = newIDGen(opts.Seed + 2)
	s.faults = newFaults(opts.Seed, s)

	s.stateDir = opts.StateDir
	if s.stateDir == "" {
		d, err := os.MkdirTemp("", "simcloud-")
		if err != nil {
			return nil, fmt.Errorf("simcloud: state dir: %w", err)
		}
		s.stateDir, s.ownStateDir = d, true
	}
	if err := os.MkdirAll(filepath.Join(s.stateDir, "volumes"), 0o755); err != nil {
		return nil, fmt.Errorf("simcloud: state dir %s: %w", s.stateDir, err)
	}
	logPath := opts.EventLog
	if logPath == "" {
		logPath = filepath.Join(s.stateDir, "events.jsonl")
	}
	ev, err := openEventLog(logPath)
	if err != nil {
		s.cleanupStateDir()
		return nil, err
	}
	s.events = ev

	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		_ = ev.close()
		s.cleanupStateDir()
		return nil, fmt.Errorf("simcloud: listen on %s: %w", opts.Addr, err)
	}
	s.ln = ln
	s.base = "http://" + ln.Addr().String()

	memberProject := s.model.addProject("demo")
	adminProject := s.model.addProject("admin")
	mu := s.model.addUser("demo", s.ids.password(), memberProject.ID, "member", "reader")
	au := s.model.addUser("admin", s.ids.password(), adminProject.ID, "admin", "member", "reader")
	s.member = s.creds(mu, memberProject)
	s.admin = s.creds(au, adminProject)

	s.ctx, s.cancel = context.WithCancel(ctx)
	s.srv = &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return s.ctx }}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("simcloud: serve", "err", err)
		}
	}()
	go func() {
		<-s.ctx.Done()
		_ = s.srv.Close()
	}()
	s.log.Info("simcloud: started", "url", s.base, "state_dir", s.stateDir)
	return s, nil
}

func (s *Sim) creds(u *user, p *project) Credentials {
	return Credentials{AuthURL: s.AuthURL(), Region: s.opts.Region, UserID: u.ID, Username: u.Name,
		Password: u.Password, UserDomainName: "Default", ProjectID: p.ID, ProjectName: p.Name,
		ProjectDomainName: "Default"}
}

func (s *Sim) cleanupStateDir() {
	if s.ownStateDir {
		_ = os.RemoveAll(s.stateDir)
	}
}

// Close stops serving, waits for in-flight Nova work, detaches through the
// backends every volume they still hold (so no loop device or domain disk
// outlives the simulator, zombies included), closes the event log and
// removes a state dir it created. It is safe to call more than once.
func (s *Sim) Close() error {
	var errs []error
	s.closed.Do(func() {
		s.cancel()
		_ = s.srv.Close()
		s.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		s.physMu.Lock()
		left := make([]Attachment, 0, len(s.phys))
		for _, a := range s.phys {
			left = append(left, a)
		}
		s.physMu.Unlock()
		for _, a := range left {
			if err := s.backendDetach(ctx, a, "", ""); err != nil {
				errs = append(errs, err)
			}
		}
		errs = append(errs, s.events.close())
		s.cleanupStateDir()
	})
	return errors.Join(errs...)
}

// URL is the simulator's base URL, http://127.0.0.1:<port>.
func (s *Sim) URL() string { return s.base }

// Addr is the listen address, 127.0.0.1:<port>.
func (s *Sim) Addr() string { return s.ln.Addr().String() }

// AuthURL is Keystone's v3 endpoint, the auth_url for clients.
func (s *Sim) AuthURL() string { return s.base + "/identity/v3" }

// VolumeURL is Cinder's v3 endpoint for a project, as in the catalog.
func (s *Sim) VolumeURL(projectID string) string { return s.base + "/volume/v3/" + projectID }

// NoAuthVolumeEndpoint is the base of the standalone Cinder that runs with
// auth_strategy=noauth (over the same volumes), without the project: the
// "endpoint" of an auth_type noauth cloud, and what gophercloud's
// noauth.EndpointOpts.CinderEndpoint wants. Requests go to
// NoAuthVolumeURL(project) with X-Auth-Token "<user>:<project>"; there is
// no Keystone and no Nova behind it, and every caller is an admin.
func (s *Sim) NoAuthVolumeEndpoint() string { return s.base + noAuthVolumeRoot + "/v3" }

// NoAuthVolumeURL is the noauth Cinder's v3 endpoint for a project.
func (s *Sim) NoAuthVolumeURL(projectID string) string {
	return s.NoAuthVolumeEndpoint() + "/" + projectID
}

// ComputeURL is Nova's v2.1 endpoint, as in the catalog.
func (s *Sim) ComputeURL() string { return s.base + "/compute/v2.1" }

// MetadataURL is the base of an instance's metadata service: GET
// MetadataURL(id) + "/openstack/latest/meta_data.json" answers like
// http://169.254.169.254/openstack/latest/meta_data.json inside that guest.
func (s *Sim) MetadataURL(instanceID string) string { return s.base + "/metadata/" + instanceID }

// Member returns the member user's credentials (project "demo", roles
// member and reader): what the volume plugin uses.
func (s *Sim) Member() Credentials { return s.member }

// Admin returns the admin user's credentials (project "admin", roles
// admin, member, reader): what the reconciler uses.
func (s *Sim) Admin() Credentials { return s.admin }

// StateDir is where backing files, node dirs and the event log live.
func (s *Sim) StateDir() string { return s.stateDir }

// BackingFile is the sparse file that holds a volume's bytes.
func (s *Sim) BackingFile(volumeID string) string {
	return filepath.Join(s.stateDir, "volumes", volumeID+".img")
}

// SnapshotFile is the sparse file that holds a snapshot's bytes (absent
// when the volume had never been written when the snapshot was taken).
func (s *Sim) SnapshotFile(snapshotID string) string {
	return filepath.Join(s.stateDir, "snapshots", snapshotID+".img")
}

// Faults returns the fault-injection controls.
func (s *Sim) Faults() *Faults { return s.faults }

// Events returns every event so far, oldest first.
func (s *Sim) Events() []Event { return s.events.all() }

// EventLogPath is the JSON-lines event log's path.
func (s *Sim) EventLogPath() string { return s.events.path }

// AddInstance adds a Nova server (with its node dev dir) and returns it.
func (s *Sim) AddInstance(spec InstanceSpec) (Instance, error) {
	status := spec.Status
	if status == "" {
		status = StatusActive
	}
	if status != StatusActive && status != StatusShutoff && status != StatusError {
		return Instance{}, fmt.Errorf("simcloud: instance status %q: want %s, %s or %s", status, StatusActive, StatusShutoff, StatusError)
	}
	if spec.ID == "" {
		spec.ID = s.ids.uuid()
	}
	sv := &server{ID: spec.ID, Name: spec.Name, Host: spec.Host, AZ: spec.AvailabilityZone,
		NodeDevDir: spec.NodeDevDir, Status: status, ProjectID: s.member.ProjectID, UserID: s.member.UserID}
	if spec.Admin {
		sv.ProjectID, sv.UserID = s.admin.ProjectID, s.admin.UserID
	}
	if sv.Host == "" {
		sv.Host = "compute-1"
	}
	if sv.AZ == "" {
		sv.AZ = "nova"
	}
	if sv.NodeDevDir == "" {
		sv.NodeDevDir = filepath.Join(s.stateDir, "nodes", spec.ID, "dev")
	}
	if err := os.MkdirAll(sv.NodeDevDir, 0o755); err != nil {
		return Instance{}, fmt.Errorf("simcloud: instance %s: node dev dir: %w", spec.ID, err)
	}
	out, err := s.model.addServer(s.clock.Now(), sv)
	if err != nil {
		return Instance{}, fmt.Errorf("simcloud: add instance: %w", err)
	}
	return s.instance(out), nil
}

func (s *Sim) instance(sv server) Instance {
	return Instance{ID: sv.ID, Name: sv.Name, InstanceName: sv.InstanceName, Host: sv.Host,
		AvailabilityZone: sv.AZ, NodeDevDir: sv.NodeDevDir, ProjectID: sv.ProjectID, Status: sv.Status,
		MetadataURL: s.MetadataURL(sv.ID)}
}

// SetInstanceStatus sets ACTIVE, SHUTOFF or ERROR, or deletes the instance
// (StatusDeleted) the way Nova does: its volumes are detached through the
// backends, their Cinder attachments deleted and the mappings destroyed.
func (s *Sim) SetInstanceStatus(ctx context.Context, instanceID, status string) error {
	switch status {
	case StatusActive, StatusShutoff, StatusError:
		_, err := s.model.setServerStatus(s.clock.Now(), instanceID, status)
		return err
	case StatusDeleted:
	default:
		return fmt.Errorf("simcloud: instance %s: status %q: want ACTIVE, SHUTOFF, ERROR or deleted", instanceID, status)
	}
	admin := caller{Admin: true}
	bdms, sv, err := s.model.serverBDMs(s.clock.Now(), admin, instanceID)
	if err != nil {
		return fmt.Errorf("instance %s: %w", instanceID, ErrNoSuchInstance)
	}
	var errs []error
	for i := len(bdms) - 1; i >= 0; i-- {
		a, ok := s.detachInfo(instanceID, bdms[i].VolumeID)
		if !ok {
			continue
		}
		if s.backendHolds(a) {
			if err := s.backendDetach(ctx, a, sv.Host, bdms[i].AttachmentID); err != nil {
				errs = append(errs, err)
			}
		}
		s.model.novaDetachDone(s.clock.Now(), instanceID, bdms[i].VolumeID, true)
	}
	if _, err := s.model.setServerStatus(s.clock.Now(), instanceID, StatusDeleted); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Instances returns every live instance.
func (s *Sim) Instances() []Instance {
	var out []Instance
	for _, sv := range s.model.listServers(s.clock.Now(), caller{Admin: true}, serverFilter{AllTenants: true}) {
		out = append(out, s.instance(sv))
	}
	return out
}

// ForgetNovaMapping makes Nova lose its block-device mapping of volumeID on
// the instance (every mapping when volumeID is empty) without touching
// Cinder or the backends, as after a failed rollback or a lost database
// row. Afterwards Cinder's guard lets the attachment be deleted and Nova's
// detach answers 404. It returns how many mappings were dropped.
func (s *Sim) ForgetNovaMapping(instanceID, volumeID string) (int, error) {
	return s.model.forgetMappings(instanceID, volumeID)
}
