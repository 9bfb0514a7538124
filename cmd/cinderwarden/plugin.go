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
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cinderwarden/cinderwarden/hostdisk"
	"github.com/cinderwarden/cinderwarden/internal/cloudconfig"
	"github.com/cinderwarden/cinderwarden/openstack"
	"github.com/cinderwarden/cinderwarden/volumedriver"
)

// DefaultMetricsListen is where the plugin serves /metrics unless told.
const DefaultMetricsListen = "127.0.0.1:9477"

// pluginConfig is the validated configuration of `cinderwarden plugin`.
type pluginConfig struct {
	Cloud          cloudconfig.Options
	Socket         string
	DriverName     string
	InstanceID     string
	IdentityOrder  []string
	MetadataURL    string
	ConfigDriveDir string
	DevRoot        string
	SysRoot        string
	MountRoot      string
	StateDir       string
	Policy         volumedriver.OptionPolicy
	Preempt        volumedriver.PreemptMode
	Takeover       volumedriver.TakeoverConfig
	DeleteUnmanged bool
	AttachTimeout  time.Duration
	RequestTimeout time.Duration
	DeviceTimeout  time.Duration
	LogFormat      string
	LogLevel       slog.Level
	MetricsListen  string // "" = off
}

func parsePluginFlags(args []string, stderr io.Writer) (*pluginConfig, int, bool) {
	fs := flag.NewFlagSet("cinderwarden plugin", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: cinderwarden plugin [flags]")
		fmt.Fprintln(stderr, "\nServes the Docker volume plugin (one Docker volume = one Cinder volume) on a unix socket\nuntil SIGINT/SIGTERM. Docker finds it as /run/docker/plugins/<driver name>.sock.")
		fmt.Fprintln(stderr, "\nflags:")
		fs.PrintDefaults()
	}
	var c pluginConfig
	c.Cloud.RegisterFlags(fs)
	fs.StringVar(&c.DriverName, "driver-name", "cinder", "Docker volume driver name (docker volume create -d NAME); names the default socket")
	fs.StringVar(&c.Socket, "socket", "", "plugin socket path (default /run/docker/plugins/<driver-name>.sock)")
	fs.StringVar(&c.InstanceID, "instance-id", "", "this node's Nova instance id (overrides --identity-order)")
	order := fs.String("identity-order", strings.Join(volumedriver.DefaultIdentityOrder(), ","), "where to find the instance id, in order: "+strings.Join(volumedriver.IdentitySources(), ", "))
	fs.StringVar(&c.MetadataURL, "metadata-url", openstack.DefaultMetadataURL, "metadata service base URL (…/openstack/latest/meta_data.json)")
	fs.StringVar(&c.ConfigDriveDir, "config-drive-dir", "/mnt/config", "where the config drive is mounted")
	fs.StringVar(&c.DevRoot, "dev-root", "/dev", "device root (disk/by-id lives under it)")
	fs.StringVar(&c.SysRoot, "sys-root", "/sys", "sysfs root (block/*/serial)")
	fs.StringVar(&c.MountRoot, "mount-root", "/var/lib/cinderwarden/mounts", "volumes are mounted at <mount-root>/<volume id>")
	fs.StringVar(&c.StateDir, "state-dir", "/var/lib/cinderwarden/state", "state file directory (mode 0700)")
	fs.IntVar(&c.Policy.DefaultSizeGiB, "default-size", 10, "size in GiB when -o size is not given")
	fs.IntVar(&c.Policy.MaxSizeGiB, "max-size", 1024, "largest -o size accepted, GiB")
	defFS := fs.String("default-fstype", "ext4", "filesystem for blank volumes when -o fstype is not given: ext4 or xfs")
	fs.BoolVar(&c.DeleteUnmanged, "delete-unmanaged", false, "let docker volume rm delete Cinder volumes the plugin did not create")
	fs.DurationVar(&c.AttachTimeout, "attach-timeout", 2*time.Minute, "bound on a Nova attach or detach")
	fs.DurationVar(&c.DeviceTimeout, "device-timeout", time.Minute, "bound on waiting for the attached device to appear (or go)")
	fs.DurationVar(&c.RequestTimeout, "request-timeout", 30*time.Second, "bound on one OpenStack API request: a hung Cinder or Nova call fails the operation instead of holding the volume's lock")
	preempt := registerTakeoverFlags(fs, &c.Takeover)
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&c.MetricsListen, "metrics-listen", DefaultMetricsListen, `Prometheus /metrics listen address, or "off"`)
	if code, ok := parseFlags(fs, args); !ok {
		return nil, code, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "cinderwarden plugin: unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		return nil, 2, false
	}
	c.Policy.DefaultFSType = volumedriver.FSType(*defFS)
	for _, s := range strings.Split(*order, ",") {
		if s = strings.TrimSpace(s); s != "" {
			c.IdentityOrder = append(c.IdentityOrder, s)
		}
	}
	if err := c.Validate(*level); err != nil {
		fmt.Fprintf(stderr, "cinderwarden plugin: %v\n", err)
		return nil, 2, false
	}
	if err := c.validateTakeover(*preempt); err != nil {
		fmt.Fprintf(stderr, "cinderwarden plugin: %v\n", err)
		return nil, 2, false
	}
	return &c, 0, true
}

// Validate checks every setting once, naming the flag and what is allowed.
func (c *pluginConfig) Validate(level string) error {
	if err := volumedriver.ValidateName(c.DriverName); err != nil || strings.ContainsAny(c.DriverName, ".") {
		return fmt.Errorf("--driver-name %q: use letters, digits, '_' and '-' (it names the socket file)", c.DriverName)
	}
	if c.Socket == "" {
		c.Socket = filepath.Join("/run/docker/plugins", c.DriverName+".sock")
	}
	for flagName, p := range map[string]string{"--socket": c.Socket, "--dev-root": c.DevRoot, "--sys-root": c.SysRoot,
		"--mount-root": c.MountRoot, "--state-dir": c.StateDir, "--config-drive-dir": c.ConfigDriveDir} {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("%s %q: must be an absolute path", flagName, p)
		}
	}
	if c.InstanceID != "" && !volumedriver.ValidVolumeID(c.InstanceID) {
		return fmt.Errorf("--instance-id %q: not an instance id (letters, digits and '-')", c.InstanceID)
	}
	if err := volumedriver.ValidateIdentityOrder(c.IdentityOrder); err != nil {
		return fmt.Errorf("--identity-order: %w", err)
	}
	if !strings.HasPrefix(c.MetadataURL, "http://") && !strings.HasPrefix(c.MetadataURL, "https://") {
		return fmt.Errorf("--metadata-url %q: must be an http:// or https:// URL", c.MetadataURL)
	}
	if c.Policy.DefaultSizeGiB < 1 {
		return fmt.Errorf("--default-size %d: must be at least 1 (GiB)", c.Policy.DefaultSizeGiB)
	}
	if c.Policy.MaxSizeGiB < c.Policy.DefaultSizeGiB {
		return fmt.Errorf("--max-size %d: must be at least --default-size %d", c.Policy.MaxSizeGiB, c.Policy.DefaultSizeGiB)
	}
	if !c.Policy.DefaultFSType.Valid() {
		return fmt.Errorf("--default-fstype %q: allowed values: ext4, xfs", c.Policy.DefaultFSType)
	}
	if c.AttachTimeout <= 0 {
		return fmt.Errorf("--attach-timeout %s: must be positive", c.AttachTimeout)
	}
	if c.RequestTimeout <= 0 {
		return fmt.Errorf("--request-timeout %s: must be positive", c.RequestTimeout)
	}
	if c.DeviceTimeout <= 0 {
		return fmt.Errorf("--device-timeout %s: must be positive", c.DeviceTimeout)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("--log-format %q: allowed values: text, json", c.LogFormat)
	}
	if err := c.LogLevel.UnmarshalText([]byte(level)); err != nil {
		return fmt.Errorf("--log-level %q: allowed values: debug, info, warn, error", level)
	}
	switch c.MetricsListen {
	case "off", "":
		c.MetricsListen = ""
	default:
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			return fmt.Errorf("--metrics-listen %q: want host:port or off: %v", c.MetricsListen, err)
		}
	}
	return nil
}

func runPlugin(ctx context.Context, args []string, _, stderr io.Writer) int {
	c, code, ok := parsePluginFlags(args, stderr)
	if !ok {
		return code
	}
	var h slog.Handler
	hopts := &slog.HandlerOptions{Level: c.LogLevel}
	if c.LogFormat == "json" {
		h = slog.NewJSONHandler(stderr, hopts)
	} else {
		h = slog.NewTextHandler(stderr, hopts)
	}
	log := slog.New(h).With("component", "plugin")
	if err := servePlugin(ctx, c, log); err != nil {
		log.Error("plugin stopped", "err", err)
		return 1
	}
	log.Info("plugin stopped")
	return 0
}

func servePlugin(ctx context.Context, c *pluginConfig, log *slog.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	om, err := openstack.NewMetrics(reg)
	if err != nil {
		return err
	}
	pm, err := volumedriver.NewMetrics(reg)
	if err != nil {
		return err
	}
	if c.MetricsListen != "" {
		ml, err := net.Listen("tcp", c.MetricsListen)
		if err != nil {
			return fmt.Errorf("--metrics-listen %s: %w", c.MetricsListen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		ms := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = ms.Serve(ml) }()
		defer ms.Close()
		log.Info("metrics", "listen", ml.Addr().String())
	}

	hc := &http.Client{Transport: om.Wrap(http.DefaultTransport), Timeout: 10 * time.Second}
	ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
	ident, err := volumedriver.ResolveIdentity(ictx, volumedriver.IdentityConfig{
		Override: c.InstanceID, Order: c.IdentityOrder, ConfigDriveDir: c.ConfigDriveDir,
		MetadataURL: c.MetadataURL, CacheFile: filepath.Join(c.StateDir, "identity.json"), HTTP: hc, Logger: log,
	})
	cancel()
	if err != nil {
		return err
	}
	log.Info("instance identity", "instance", ident.InstanceID, "zone", ident.AvailabilityZone, "source", ident.Source)

	cfg, err := cloudconfig.Resolve(c.Cloud)
	if err != nil {
		return err
	}
	cloud, err := openstack.New(ctx, cfg, openstack.Options{Metrics: om, Logger: log, RequireCompute: true, RequestTimeout: c.RequestTimeout})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.MountRoot, 0o755); err != nil {
		return fmt.Errorf("--mount-root %s: %w", c.MountRoot, err)
	}
	host, err := hostdisk.New(hostdisk.Config{DevRoot: c.DevRoot, SysRoot: c.SysRoot, MountRoot: c.MountRoot,
		DeviceTimeout: c.DeviceTimeout, Logger: log})
	if err != nil {
		return err
	}
	dctx, dcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer dcancel()
	drv, err := volumedriver.New(dctx, volumedriver.Config{
		Cloud: cloud, Host: host, Identity: ident, StateDir: c.StateDir, Policy: c.Policy, Preempt: c.Preempt, Takeover: c.Takeover,
		DeleteUnmanaged: c.DeleteUnmanged, AttachTimeout: c.AttachTimeout, DeviceTimeout: c.DeviceTimeout,
		Logger: log, Metrics: pm,
	})
	if err != nil {
		return err
	}
	l, err := volumedriver.ListenUnix(c.Socket)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: drv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	log.Info("serving", "socket", c.Socket, "driver", c.DriverName, "instance", ident.InstanceID)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// Stop accepting; let requests in flight finish their current step
	// (a Mount in the middle of an attach completes or rolls back).
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	err = srv.Shutdown(sctx)
	_ = os.Remove(c.Socket)
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
