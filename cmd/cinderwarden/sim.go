package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cinderwarden/cinderwarden/libvirtscan"
	"github.com/cinderwarden/cinderwarden/simcloud"
	"github.com/cinderwarden/cinderwarden/simcloud/libvirtcompute"
	"github.com/cinderwarden/cinderwarden/simcloud/loopnode"
)

// simConfig is the validated configuration of `cinderwarden sim`.
type simConfig struct {
	listen         string
	cloudsYAML     string
	stateDir       string
	instances      int
	backend        string
	seed           uint64
	tokenLifetime  time.Duration
	latency        simcloud.Latencies
	eventLog       string
	novaTaskStates bool
	verbose        bool
	libvirtURI     string
	domains        domainFlag // instance name (vm-N) → libvirt domain
}

// domainFlag collects repeated --libvirt-domain vm-N=DOMAIN flags.
type domainFlag map[string]string

func (d *domainFlag) String() string { return fmt.Sprint(map[string]string(*d)) }

func (d *domainFlag) Set(v string) error {
	name, dom, ok := strings.Cut(v, "=")
	if !ok || name == "" || dom == "" {
		return fmt.Errorf("want INSTANCE=DOMAIN, e.g. vm-1=guest1")
	}
	if *d == nil {
		*d = domainFlag{}
	}
	if _, dup := (*d)[name]; dup {
		return fmt.Errorf("instance %s mapped twice", name)
	}
	(*d)[name] = dom
	return nil
}

// parseSimFlags parses and validates the flags; euid decides whether the
// loop backend (root only) is allowed.
func parseSimFlags(args []string, euid int, stderr io.Writer) (simConfig, int, bool) {
	var c simConfig
	fs := flag.NewFlagSet("cinderwarden sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: cinderwarden sim [flags]")
		fmt.Fprintln(stderr, "\nRuns an OpenStack simulator (Keystone v3, Cinder v3, Nova v2.1, metadata) on HTTP,")
		fmt.Fprintln(stderr, "writes a clouds.yaml (clouds \"sim\", \"sim-admin\" and \"sim-noauth\") and serves until SIGINT/SIGTERM.")
		fmt.Fprintln(stderr, "\"sim-noauth\" is auth_type noauth: the same volumes through a standalone Cinder")
		fmt.Fprintln(stderr, "(auth_strategy=noauth) at volume_url_noauth, without Keystone or Nova.")
		fmt.Fprintln(stderr, "\nflags:")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.listen, "listen", "127.0.0.1:0", "listen address (port 0 picks a free port)")
	fs.StringVar(&c.cloudsYAML, "clouds-yaml", "", "where to write clouds.yaml (default <state-dir>/clouds.yaml)")
	fs.StringVar(&c.stateDir, "state-dir", "", "backing files, node dev dirs and event log (default: a new temp dir, removed on exit)")
	fs.IntVar(&c.instances, "instances", 1, "number of Nova instances to create, each on its own compute host and node dev dir")
	fs.StringVar(&c.backend, "backend", "loop", "compute backend: loop (real loop devices and by-id links; needs root) or none")
	fs.Uint64Var(&c.seed, "seed", 1, "seed for every generated id")
	fs.DurationVar(&c.tokenLifetime, "token-lifetime", time.Hour, "Keystone token lifetime")
	fs.DurationVar(&c.latency.Attach, "attach-latency", 500*time.Millisecond, "Nova attach: accepted → connected on the compute host")
	fs.DurationVar(&c.latency.Detach, "detach-latency", 500*time.Millisecond, "Nova detach: accepted → removed on the compute host")
	fs.DurationVar(&c.latency.Create, "create-latency", 200*time.Millisecond, "Cinder volume creating → available")
	fs.DurationVar(&c.latency.Delete, "delete-latency", 200*time.Millisecond, "Cinder volume deleting → gone")
	fs.DurationVar(&c.latency.Extend, "extend-latency", 200*time.Millisecond, "Cinder volume extending → available")
	fs.StringVar(&c.eventLog, "event-log", "", "JSON-lines attach/detach event log (default <state-dir>/events.jsonl)")
	fs.BoolVar(&c.novaTaskStates, "nova-task-states", false, "show task_state attaching_volume/detaching_volume during Nova volume work (real Nova does not)")
	fs.BoolVar(&c.verbose, "v", false, "log every request")
	fs.StringVar(&c.libvirtURI, "libvirt-uri", "", "also hot-plug attached volumes into libvirt domains on this libvirtd (e.g. qemu:///system)")
	fs.Var(&c.domains, "libvirt-domain", "map an instance to its libvirt domain, vm-N=DOMAIN (repeatable; needs --libvirt-uri)")
	if code, ok := parseFlags(fs, args); !ok {
		return c, code, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "cinderwarden sim: unexpected arguments %q\n", fs.Args())
		return c, 2, false
	}
	if err := c.validate(euid); err != nil {
		fmt.Fprintf(stderr, "cinderwarden sim: %v\n", err)
		return c, 2, false
	}
	return c, 0, true
}

func (c simConfig) validate(euid int) error {
	if _, _, err := net.SplitHostPort(c.listen); err != nil {
		return fmt.Errorf("--listen %q: want host:port: %v", c.listen, err)
	}
	if c.instances < 0 || c.instances > 1000 {
		return fmt.Errorf("--instances %d: want 0..1000", c.instances)
	}
	switch c.backend {
	case "none":
	case "loop":
		if euid != 0 {
			return fmt.Errorf("--backend loop needs root (it binds loop devices); run as root or use --backend none")
		}
	default:
		return fmt.Errorf("--backend %q: want loop or none", c.backend)
	}
	if len(c.domains) > 0 && c.libvirtURI == "" {
		return fmt.Errorf("--libvirt-domain needs --libvirt-uri")
	}
	for name := range c.domains {
		n, err := strconv.Atoi(strings.TrimPrefix(name, "vm-"))
		if !strings.HasPrefix(name, "vm-") || err != nil || n < 1 || n > c.instances {
			return fmt.Errorf("--libvirt-domain %s: no such instance (instances are vm-1..vm-%d)", name, c.instances)
		}
	}
	if c.tokenLifetime <= 0 {
		return fmt.Errorf("--token-lifetime %s: must be positive", c.tokenLifetime)
	}
	for name, d := range map[string]time.Duration{"--attach-latency": c.latency.Attach, "--detach-latency": c.latency.Detach,
		"--create-latency": c.latency.Create, "--delete-latency": c.latency.Delete, "--extend-latency": c.latency.Extend} {
		if d < 0 {
			return fmt.Errorf("%s %s: must not be negative", name, d)
		}
	}
	return nil
}

func runSim(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, code, ok := parseSimFlags(args, os.Geteuid(), stderr)
	if !ok {
		return code
	}
	level := slog.LevelInfo
	if cfg.verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if err := serveSim(ctx, cfg, stdout, logger); err != nil {
		fmt.Fprintf(stderr, "cinderwarden sim: %v\n", err)
		return 1
	}
	return 0
}

func serveSim(ctx context.Context, cfg simConfig, stdout io.Writer, logger *slog.Logger) error {
	stateDir := cfg.stateDir
	if stateDir == "" {
		d, err := os.MkdirTemp("", "cinderwarden-sim-")
		if err != nil {
			return fmt.Errorf("state dir: %w", err)
		}
		defer os.RemoveAll(d)
		stateDir = d
	}
	stateDir, err := filepath.Abs(stateDir)
	if err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	opts := simcloud.Options{Addr: cfg.listen, Seed: cfg.seed, TokenLifetime: cfg.tokenLifetime, Latency: cfg.latency,
		StateDir: stateDir, EventLog: cfg.eventLog, NovaTaskStates: cfg.novaTaskStates, Logger: logger}
	volumesDir := filepath.Join(stateDir, "volumes")
	if cfg.backend == "loop" {
		opts.Backends = []simcloud.ComputeBackend{loopnode.New(loopnode.Options{Logger: logger})}
	}
	var virt *libvirtcompute.Backend
	if cfg.libvirtURI != "" {
		conn, err := libvirtscan.Dial(ctx, libvirtscan.Options{URI: cfg.libvirtURI, Logger: logger})
		if err != nil {
			return fmt.Errorf("libvirt %s: %w", cfg.libvirtURI, err)
		}
		defer conn.Close()
		if virt, err = libvirtcompute.New(libvirtcompute.Options{Conn: conn, Logger: logger}); err != nil {
			return err
		}
		opts.Backends = append(opts.Backends, virt)
	}
	sim, err := simcloud.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer func() {
		if err := sim.Close(); err != nil {
			logger.Error("simulator shutdown", "err", err)
		}
		if cfg.backend == "loop" {
			cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			busy, err := loopnode.DetachAll(cctx, volumesDir)
			if err != nil || len(busy) > 0 {
				logger.Error("loop devices still held after shutdown", "busy", len(busy), "err", err)
			}
		}
	}()

	var insts []simcloud.Instance
	for i := 1; i <= cfg.instances; i++ {
		inst, err := sim.AddInstance(simcloud.InstanceSpec{Name: fmt.Sprintf("vm-%d", i), Host: fmt.Sprintf("compute-%d", i)})
		if err != nil {
			return err
		}
		insts = append(insts, inst)
		if dom, ok := cfg.domains[inst.Name]; ok && virt != nil {
			virt.SetDomain(inst.ID, dom)
		}
	}
	clouds := cfg.cloudsYAML
	if clouds == "" {
		clouds = filepath.Join(stateDir, "clouds.yaml")
	}
	if err := sim.WriteCloudsYAML(clouds); err != nil {
		return err
	}

	m, a := sim.Member(), sim.Admin()
	fmt.Fprintf(stdout, "auth_url: %s\n", sim.AuthURL())
	fmt.Fprintf(stdout, "volume_url: %s (member project %s)\n", sim.VolumeURL(m.ProjectID), m.ProjectID)
	fmt.Fprintf(stdout, "volume_url_admin: %s (admin project %s)\n", sim.VolumeURL(a.ProjectID), a.ProjectID)
	fmt.Fprintf(stdout, "volume_url_noauth: %s (auth_type noauth endpoint; project %s as cloud %q)\n",
		sim.NoAuthVolumeEndpoint(), m.ProjectID, simcloud.CloudNoAuth)
	fmt.Fprintf(stdout, "compute_url: %s\n", sim.ComputeURL())
	fmt.Fprintf(stdout, "clouds_yaml: %s (clouds %q, %q and %q)\n", clouds, simcloud.CloudMember, simcloud.CloudAdmin, simcloud.CloudNoAuth)
	fmt.Fprintf(stdout, "state_dir: %s\n", stateDir)
	fmt.Fprintf(stdout, "event_log: %s\n", sim.EventLogPath())
	backends := cfg.backend
	if cfg.libvirtURI != "" {
		backends += ", libvirt " + cfg.libvirtURI
	}
	fmt.Fprintf(stdout, "backends: %s\n", backends)
	for _, inst := range insts {
		fmt.Fprintf(stdout, "instance: id=%s name=%s host=%s instance_name=%s node_dev_dir=%s metadata_url=%s libvirt_domain=%s\n",
			inst.ID, inst.Name, inst.Host, inst.InstanceName, inst.NodeDevDir, inst.MetadataURL, cfg.domains[inst.Name])
	}
	fmt.Fprintln(stdout, "ready")

	<-ctx.Done()
	logger.Info("shutting down the simulator")
	return nil
}
