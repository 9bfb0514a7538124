package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/robfig/cron/v3"

	"github.com/cinderwarden/cinderwarden/internal/cloudconfig"
	"github.com/cinderwarden/cinderwarden/libvirtscan"
	"github.com/cinderwarden/cinderwarden/openstack"
	"github.com/cinderwarden/cinderwarden/reconciler"
)

// Defaults of `cinderwarden reconcile`.
const (
	defaultStateFile     = "/var/lib/cinderwarden/reconcile-state.json"
	defaultAuditLog      = "/var/log/cinderwarden/reconcile-audit.jsonl"
	defaultMetricsListen = "127.0.0.1:9478"
)

// reconcileConfig is the validated configuration of `cinderwarden reconcile`.
type reconcileConfig struct {
	cloud           cloudconfig.Options
	libvirtURI      string
	host            string
	once            bool
	schedule        string
	policy          reconciler.Policy
	stateFile       string
	auditLog        string
	output          string
	metricsListen   string // "" = off
	metricsTextfile string
	scope           string
	detach          libvirtscan.DetachOptions
	retryTimeout    time.Duration
	requestTimeout  time.Duration
	pageSize        int
	verbose         bool
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}

// parseReconcileFlags parses and validates every flag once; hostname is
// the --host default (os.Hostname()).
func parseReconcileFlags(args []string, hostname string, stderr io.Writer) (reconcileConfig, int, bool) {
	var c reconcileConfig
	def := reconciler.DefaultPolicy()
	var mountBases stringList
	var metricsListen string
	fs := flag.NewFlagSet("cinderwarden reconcile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: cinderwarden reconcile (--once | --schedule \"<cron expr>\") [flags]")
		fmt.Fprintln(stderr, "\nDiffs the disks of every libvirt domain on this compute host against Cinder attachments")
		fmt.Fprintln(stderr, "and Nova's mappings, reports findings and, with --apply, cleans up what every safety gate allows.")
		fmt.Fprintln(stderr, "Exit codes (--once): 0 clean, 1 findings, 2 error (a source failed, the run aborted, an action failed, bad flags).")
		fmt.Fprintln(stderr, "\nflags:")
		fs.PrintDefaults()
	}
	c.cloud.RegisterFlags(fs)
	fs.StringVar(&c.libvirtURI, "libvirt-uri", libvirtscan.DefaultURI, "libvirt URI over the local libvirtd socket (qemu:///system, or test+unix:///abs/path.xml for libvirt's test driver)")
	fs.StringVar(&c.host, "host", hostname, "this compute host's name as Nova and Cinder spell it (nova.conf [DEFAULT] host)")
	fs.BoolVar(&c.once, "once", false, "run one pass and exit (for cron or a systemd timer)")
	fs.StringVar(&c.schedule, "schedule", "", "run on a cron schedule until SIGINT/SIGTERM, e.g. \"*/15 * * * *\" or \"@every 10m\"; runs never overlap")
	fs.BoolVar(&c.policy.Apply, "apply", false, "execute the actions every gate allows (default: dry-run, report only)")
	fs.IntVar(&c.policy.MinSightings, "min-sightings", def.MinSightings, "consecutive runs that must see a discrepancy before it is acted on")
	fs.DurationVar(&c.policy.MinAge, "min-age", def.MinAge, "how long a discrepancy must have been seen before it is acted on")
	fs.IntVar(&c.policy.MaxActions, "max-actions", def.MaxActions, "at most this many actions per run (0: report only)")
	fs.Var(&mountBases, "mount-base", "directory whose stale mounts may be unmounted, e.g. /var/lib/nova/mnt (repeatable; none: mounts not observed)")
	fs.BoolVar(&c.policy.NovaDetachMissingDisk, "nova-detach-missing-disk", false, "ask Nova to detach a volume it maps whose disk the domain lacks (default: report only)")
	fs.BoolVar(&c.policy.ActWithoutNova, "act-without-nova", false, "act although Nova is not configured (Keystone-less Cinder): task states and migrations cannot be checked")
	fs.StringVar(&c.stateFile, "state-file", defaultStateFile, "memory of earlier runs (sightings), written atomically")
	fs.StringVar(&c.auditLog, "audit-log", defaultAuditLog, "JSON-lines audit log of every executed action")
	fs.StringVar(&c.output, "output", "table", "output format: table or json")
	fs.StringVar(&metricsListen, "metrics-listen", "", "serve Prometheus metrics on host:port, or \"off\" (default "+defaultMetricsListen+" with --schedule, off with --once)")
	fs.StringVar(&c.metricsTextfile, "metrics-textfile", "", "also write the metrics to this node_exporter textfile (*.prom, written atomically) after each run")
	fs.StringVar(&c.scope, "scope", "host", "what to reconcile: host (this compute host's libvirt domains against Nova and Cinder) or node (this Docker host's stale plugin mounts; its own flags: --scope node -h)")
	fs.DurationVar(&c.detach.Timeout, "detach-timeout", libvirtscan.DefaultDetachTimeout, "per attempt wait for the guest to acknowledge a live detach")
	fs.IntVar(&c.detach.Attempts, "detach-attempts", libvirtscan.DefaultDetachAttempts, "live detach attempts before the removal is reported pending")
	fs.DurationVar(&c.retryTimeout, "detach-retry-timeout", reconciler.DefaultRetryTimeout, "a live detach left pending by an earlier run is retried once per run, one attempt of this long")
	fs.DurationVar(&c.requestTimeout, "request-timeout", 60*time.Second, "bound on one OpenStack API request; a hung call fails the run (no action) instead of stalling it")
	fs.IntVar(&c.pageSize, "page-size", 0, "limit per OpenStack listing request (0: the server's maximum)")
	fs.BoolVar(&c.verbose, "v", false, "debug logging")
	if code, ok := parseFlags(fs, args); !ok {
		return c, code, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "cinderwarden reconcile: unexpected arguments %q\n", fs.Args())
		return c, 2, false
	}
	c.policy.MountBases = mountBases
	switch metricsListen {
	case "":
		if c.schedule != "" {
			c.metricsListen = defaultMetricsListen
		}
	case "off":
	default:
		c.metricsListen = metricsListen
	}
	if err := c.validate(); err != nil {
		fmt.Fprintf(stderr, "cinderwarden reconcile: %v\n", err)
		return c, 2, false
	}
	return c, 0, true
}

func (c reconcileConfig) validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	switch c.scope {
	case "host":
	case "node":
		// Dispatched to the node sweep (sweep.go) before these flags are
		// parsed; reaching here means it was not.
		bad("--scope node: the node sweep has its own flags; run cinderwarden reconcile --scope node -h")
	default:
		bad("--scope %q: want host or node", c.scope)
	}
	switch {
	case c.once && c.schedule != "":
		bad("--once and --schedule: give exactly one")
	case !c.once && c.schedule == "":
		bad("give --once (one pass) or --schedule \"<cron expr>\" (long-running)")
	case c.schedule != "":
		if _, err := cron.ParseStandard(c.schedule); err != nil {
			bad("--schedule %q: not a cron expression (5 fields, or @every <duration>, @hourly, ...): %v", c.schedule, err)
		}
	}
	if strings.TrimSpace(c.host) == "" {
		bad("--host is empty: give this compute host's name as Nova knows it")
	}
	if u, err := url.Parse(c.libvirtURI); err != nil || u.Scheme == "" {
		bad("--libvirt-uri %q: want a libvirt URI such as qemu:///system or test+unix:///abs/path.xml", c.libvirtURI)
	} else if u.Host != "" {
		bad("--libvirt-uri %q: remote hosts are not supported (only the local libvirtd socket)", c.libvirtURI)
	}
	if c.policy.MinSightings < 1 {
		bad("--min-sightings %d: want 1 or more", c.policy.MinSightings)
	}
	if c.policy.MinAge < 0 {
		bad("--min-age %s: want 0 or more", c.policy.MinAge)
	}
	if c.policy.MaxActions < 0 {
		bad("--max-actions %d: want 0 or more (0: report only)", c.policy.MaxActions)
	}
	for _, b := range c.policy.MountBases {
		if !filepath.IsAbs(b) || filepath.Clean(b) != b || b == "/" {
			bad("--mount-base %q: want an absolute, clean directory other than /", b)
		}
	}
	if c.stateFile == "" {
		bad("--state-file is empty: the reconciler must remember sightings between runs")
	}
	if c.auditLog == "" {
		bad("--audit-log is empty: every action must be audited")
	}
	if c.output != "table" && c.output != "json" {
		bad("--output %q: want table or json", c.output)
	}
	if c.metricsListen != "" {
		if _, _, err := net.SplitHostPort(c.metricsListen); err != nil {
			bad("--metrics-listen %q: want host:port or off: %v", c.metricsListen, err)
		}
	}
	if c.metricsTextfile != "" && !strings.HasSuffix(c.metricsTextfile, ".prom") {
		bad("--metrics-textfile %q: node_exporter reads only files ending in .prom", c.metricsTextfile)
	}
	if c.detach.Timeout <= 0 {
		bad("--detach-timeout %s: want more than 0", c.detach.Timeout)
	}
	if c.detach.Attempts < 1 {
		bad("--detach-attempts %d: want 1 or more", c.detach.Attempts)
	}
	if c.retryTimeout <= 0 {
		bad("--detach-retry-timeout %s: want more than 0", c.retryTimeout)
	}
	if c.requestTimeout <= 0 {
		bad("--request-timeout %s: want more than 0", c.requestTimeout)
	}
	if c.pageSize < 0 {
		bad("--page-size %d: want 0 (server maximum) or more", c.pageSize)
	}
	return errors.Join(errs...)
}

func runReconcile(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if nodeScope(args) {
		return runNodeSweep(ctx, args, stdout, stderr)
	} // issue 4: sweep.go
	hostname, _ := os.Hostname()
	c, code, ok := parseReconcileFlags(args, hostname, stderr)
	if !ok {
		return code
	}
	level := slog.LevelInfo
	if c.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	r, err := newReconcileRunner(c, stdout, log)
	if err != nil {
		fmt.Fprintf(stderr, "cinderwarden reconcile: %v\n", err)
		return reconciler.ExitError
	}
	if c.metricsListen != "" {
		stop, err := r.serveMetrics(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "cinderwarden reconcile: %v\n", err)
			return reconciler.ExitError
		}
		defer stop()
	}
	if c.once {
		return r.run(ctx)
	}
	return r.loop(ctx)
}

// reconcileRunner holds what lives across runs: metrics and the cloud
// client (its token is renewed on expiry).
type reconcileRunner struct {
	c       reconcileConfig
	out     io.Writer
	log     *slog.Logger
	reg     *prometheus.Registry
	metrics *reconciler.Metrics
	osm     *openstack.Metrics

	mu    sync.Mutex // one run at a time (cron also skips overlapping runs)
	cloud *openstack.Client
}

func newReconcileRunner(c reconcileConfig, out io.Writer, log *slog.Logger) (*reconcileRunner, error) {
	reg := prometheus.NewRegistry()
	m, err := reconciler.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	osm, err := openstack.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &reconcileRunner{c: c, out: out, log: log, reg: reg, metrics: m, osm: osm}, nil
}

func (r *reconcileRunner) serveMetrics(ctx context.Context) (func(), error) {
	ln, err := net.Listen("tcp", r.c.metricsListen)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen %s: %w", r.c.metricsListen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.log.Error("metrics server", "err", err)
		}
	}()
	r.log.Info("serving metrics", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

// loop runs on the cron schedule until ctx ends; a run still going when the
// next is due makes cron skip that one.
func (r *reconcileRunner) loop(ctx context.Context) int {
	cl := &cronLogger{log: r.log}
	// cron's goroutine may still log "stop" after Stop has returned; the
	// logger is closed before loop returns, so nothing is written after.
	defer cl.close()
	sched := cron.New(cron.WithLogger(cl), cron.WithChain(cron.Recover(cl), cron.SkipIfStillRunning(cl)))
	if _, err := sched.AddFunc(r.c.schedule, func() {
		code := r.run(ctx)
		r.log.Info("reconcile run finished", "exit_code", code)
	}); err != nil {
		r.log.Error("schedule", "schedule", r.c.schedule, "err", err)
		return reconciler.ExitError
	}
	r.log.Info("reconciling on a schedule", "schedule", r.c.schedule, "host", r.c.host, "apply", r.c.policy.Apply)
	sched.Start()
	<-ctx.Done()
	<-sched.Stop().Done()
	return 0
}

// run is one pass: observe, plan, act, save memory, render, metrics. It
// returns the exit code.
func (r *reconcileRunner) run(ctx context.Context) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	start := time.Now()
	// Logged under the lock: a start always follows the previous end.
	r.log.Debug("reconcile run start", "host", r.c.host)
	defer func() { r.log.Debug("reconcile run end", "host", r.c.host, "duration", time.Since(start)) }()
	res, err := r.pass(ctx)
	r.metrics.RecordRun(res, time.Since(start), start, err)
	if r.c.metricsTextfile != "" {
		if werr := prometheus.WriteToTextfile(r.c.metricsTextfile, r.reg); werr != nil {
			r.log.Error("write metrics textfile", "path", r.c.metricsTextfile, "err", werr)
			if err == nil {
				err = werr
			}
		}
	}
	if res == nil {
		r.log.Error("reconcile run failed", "host", r.c.host, "err", err)
		return reconciler.ExitError
	}
	var rerr error
	if r.c.output == "json" {
		rerr = reconciler.WriteJSON(r.out, *res)
	} else {
		rerr = reconciler.WriteTable(r.out, *res)
	}
	if rerr != nil || err != nil {
		r.log.Error("reconcile run", "host", r.c.host, "err", errors.Join(err, rerr))
		return reconciler.ExitError
	}
	return reconciler.ExitCode(*res)
}

// pass returns a nil Result only when it could not plan at all.
func (r *reconcileRunner) pass(ctx context.Context) (*reconciler.Result, error) {
	mem, err := reconciler.LoadMemory(r.c.stateFile)
	if err != nil {
		return nil, fmt.Errorf("%w (fix or remove the file; the reconciler does not guess)", err)
	}
	conn, err := libvirtscan.Dial(ctx, libvirtscan.Options{URI: r.c.libvirtURI, Logger: r.log})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	cloud, err := r.client(ctx)
	if err != nil {
		return nil, err
	}
	obs := &reconciler.Observer{Host: r.c.host, Libvirt: conn, Cloud: cloud, MountBases: r.c.policy.MountBases, PageSize: r.c.pageSize, Logger: r.log}
	observed := obs.Observe(ctx)
	res := reconciler.Plan(observed, mem, r.c.policy, time.Now())
	var actErr error
	if len(res.Executable()) > 0 {
		actErr = r.act(ctx, obs, &res)
	}
	if err := os.MkdirAll(filepath.Dir(r.c.stateFile), 0o700); err != nil {
		return &res, errors.Join(actErr, fmt.Errorf("state file directory: %w", err))
	}
	if err := reconciler.SaveMemory(r.c.stateFile, res.Memory); err != nil {
		return &res, errors.Join(actErr, err)
	}
	return &res, actErr
}

func (r *reconcileRunner) act(ctx context.Context, obs *reconciler.Observer, res *reconciler.Result) error {
	if err := os.MkdirAll(filepath.Dir(r.c.auditLog), 0o700); err != nil {
		err = fmt.Errorf("audit log directory: %w", err)
		for _, a := range res.Executable() {
			res.SetOutcome(a.FindingKey, a.Kind, reconciler.StateFailed, "not run: "+err.Error())
		}
		return err
	}
	audit, err := reconciler.OpenAuditLog(r.c.auditLog)
	if err != nil {
		for _, a := range res.Executable() {
			res.SetOutcome(a.FindingKey, a.Kind, reconciler.StateFailed, "not run: "+err.Error())
		}
		return err
	}
	defer audit.Close()
	actor := &reconciler.Actor{Observer: obs, Audit: audit, Detach: r.c.detach, RetryTimeout: r.c.retryTimeout}
	return actor.Execute(ctx, res)
}

// client authenticates once and keeps the client (tokens are renewed on
// expiry); a failure is retried on the next run.
func (r *reconcileRunner) client(ctx context.Context) (*openstack.Client, error) {
	if r.cloud != nil {
		return r.cloud, nil
	}
	cfg, err := cloudconfig.Resolve(r.c.cloud)
	if err != nil {
		return nil, err
	}
	c, err := openstack.New(ctx, cfg, openstack.Options{Metrics: r.osm, Logger: r.log, RequestTimeout: r.c.requestTimeout})
	if err != nil {
		return nil, err
	}
	r.cloud = c
	return c, nil
}

// cronLogger adapts slog to cron's logger. After close it drops messages.
type cronLogger struct {
	log    *slog.Logger
	mu     sync.Mutex
	closed bool
}

func (l *cronLogger) Info(msg string, kv ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.log.Debug("cron: "+msg, kv...)
	}
}

func (l *cronLogger) Error(err error, msg string, kv ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.log.Error("cron: "+msg, append(kv, "err", err)...)
	}
}

func (l *cronLogger) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
}
