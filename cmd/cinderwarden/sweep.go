package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/cinderwarden/cinderwarden/hostdisk"
	"github.com/cinderwarden/cinderwarden/internal/cloudconfig"
	"github.com/cinderwarden/cinderwarden/openstack"
	"github.com/cinderwarden/cinderwarden/volumedriver"
)

// nodeScope reports whether reconcile's arguments ask for --scope node
// (the node-wide stale-mount sweep, issue 4), which has its own flags.
func nodeScope(args []string) bool {
	for i, a := range args {
		if a == "--" {
			return false
		}
		switch a {
		case "--scope=node", "-scope=node":
			return true
		case "--scope", "-scope":
			if i+1 < len(args) && args[i+1] == "node" {
				return true
			}
		}
	}
	return false
}

// nodeSweepConfig is the validated configuration of
// `cinderwarden reconcile --scope node`.
type nodeSweepConfig struct {
	cloud          cloudconfig.Options
	instanceID     string
	identityOrder  []string
	metadataURL    string
	configDriveDir string
	stateDir       string
	devRoot        string
	sysRoot        string
	mountRoot      string
	dryRun         bool
	output         string
	verbose        bool
}

func parseNodeSweepFlags(args []string, stderr io.Writer) (nodeSweepConfig, int, bool) {
	var c nodeSweepConfig
	fs := flag.NewFlagSet("cinderwarden reconcile --scope node", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: cinderwarden reconcile --scope node --once [flags]")
		fmt.Fprintln(stderr, "\nThe stale-mount sweep of a Docker node: every plugin mount under --mount-root whose device is")
		fmt.Fprintln(stderr, "gone, whose mountpoint is corrupted (EIO, ESTALE, ENOTCONN, ENODEV...) or whose volume Cinder no")
		fmt.Fprintln(stderr, "longer shows attached to this instance is unmounted (normal, force, then lazy). The plugin drops")
		fmt.Fprintln(stderr, "the mount ids on its own next sweep. Exit codes: 0 nothing stale, 1 stale mounts found, 2 error.")
		fmt.Fprintln(stderr, "\nflags:")
		fs.PrintDefaults()
	}
	c.cloud.RegisterFlags(fs)
	scope := fs.String("scope", "node", "node (this flag set); host is the compute-host reconciler")
	once := fs.Bool("once", false, "run one sweep and exit (required: for cron or a systemd timer)")
	fs.StringVar(&c.instanceID, "instance-id", "", "this node's Nova instance id (overrides --identity-order)")
	order := fs.String("identity-order", strings.Join(volumedriver.DefaultIdentityOrder(), ","), "where to find the instance id, in order: "+strings.Join(volumedriver.IdentitySources(), ", "))
	fs.StringVar(&c.metadataURL, "metadata-url", openstack.DefaultMetadataURL, "metadata service base URL")
	fs.StringVar(&c.configDriveDir, "config-drive-dir", "/mnt/config", "where the config drive is mounted")
	fs.StringVar(&c.stateDir, "state-dir", "/var/lib/cinderwarden/state", "the plugin's state directory (its identity cache is read from there)")
	fs.StringVar(&c.devRoot, "dev-root", "/dev", "device root")
	fs.StringVar(&c.sysRoot, "sys-root", "/sys", "sysfs root")
	fs.StringVar(&c.mountRoot, "mount-root", "/var/lib/cinderwarden/mounts", "the plugin's mount root")
	fs.BoolVar(&c.dryRun, "dry-run", false, "report stale mounts without unmounting them")
	fs.StringVar(&c.output, "output", "table", "output format: table or json")
	fs.BoolVar(&c.verbose, "v", false, "debug logging")
	if code, ok := parseFlags(fs, args); !ok {
		return c, code, false
	}
	var errs []string
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Sprintf("unexpected arguments %q", fs.Args()))
	}
	if *scope != "node" {
		errs = append(errs, fmt.Sprintf("--scope %q: this is the node sweep", *scope))
	}
	if !*once {
		errs = append(errs, "--scope node runs one sweep: give --once (schedule it with cron or a systemd timer)")
	}
	for _, s := range strings.Split(*order, ",") {
		if s = strings.TrimSpace(s); s != "" {
			c.identityOrder = append(c.identityOrder, s)
		}
	}
	if err := volumedriver.ValidateIdentityOrder(c.identityOrder); err != nil {
		errs = append(errs, "--identity-order: "+err.Error())
	}
	if c.instanceID != "" && !volumedriver.ValidVolumeID(c.instanceID) {
		errs = append(errs, fmt.Sprintf("--instance-id %q: not an instance id (letters, digits and '-')", c.instanceID))
	}
	for _, f := range []struct{ name, v string }{{"--mount-root", c.mountRoot}, {"--dev-root", c.devRoot},
		{"--sys-root", c.sysRoot}, {"--state-dir", c.stateDir}, {"--config-drive-dir", c.configDriveDir}} {
		if !filepath.IsAbs(f.v) {
			errs = append(errs, fmt.Sprintf("%s %q: must be an absolute path", f.name, f.v))
		}
	}
	if c.output != "table" && c.output != "json" {
		errs = append(errs, fmt.Sprintf("--output %q: want table or json", c.output))
	}
	if len(errs) > 0 {
		for _, e := range errs {
			fmt.Fprintf(stderr, "cinderwarden reconcile: %s\n", e)
		}
		return c, 2, false
	}
	return c, 0, true
}

// runNodeSweep is `cinderwarden reconcile --scope node --once`.
func runNodeSweep(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c, code, ok := parseNodeSweepFlags(args, stderr)
	if !ok {
		return code
	}
	level := slog.LevelInfo
	if c.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})).With("component", "node-sweep")
	res, err := nodeSweep(ctx, c, log)
	if c.output == "json" {
		out := struct {
			DryRun bool              `json:"dry_run"`
			Stale  []nodeSweepRecord `json:"stale"`
			Error  string            `json:"error,omitempty"`
		}{DryRun: c.dryRun, Stale: records(res)}
		if err != nil {
			out.Error = err.Error()
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
	} else {
		for _, r := range records(res) {
			fmt.Fprintf(stdout, "%-36s  %-12s  %s\n", r.VolumeID, r.Reason, r.Outcome)
		}
	}
	switch {
	case err != nil:
		log.Error("sweep failed", "err", err)
		return 2
	case len(res) > 0:
		return 1
	}
	return 0
}

type nodeSweepRecord struct {
	VolumeID string `json:"volume_id"`
	Reason   string `json:"reason"`
	Outcome  string `json:"outcome"`
}

func records(rs []volumedriver.SweepResult) []nodeSweepRecord {
	out := make([]nodeSweepRecord, 0, len(rs))
	for _, r := range rs {
		o := "unmounted"
		switch {
		case r.Err != nil:
			o = "failed: " + r.Err.Error()
		case r.Event == "":
			o = "left"
		}
		out = append(out, nodeSweepRecord{VolumeID: r.VolumeID, Reason: r.Reason, Outcome: o})
	}
	return out
}

func nodeSweep(ctx context.Context, c nodeSweepConfig, log *slog.Logger) ([]volumedriver.SweepResult, error) {
	hc := &http.Client{Timeout: 10 * time.Second}
	ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
	ident, err := volumedriver.ResolveIdentity(ictx, volumedriver.IdentityConfig{
		Override: c.instanceID, Order: c.identityOrder, ConfigDriveDir: c.configDriveDir,
		MetadataURL: c.metadataURL, CacheFile: filepath.Join(c.stateDir, "identity.json"), HTTP: hc, Logger: log,
	})
	cancel()
	if err != nil {
		return nil, err
	}
	cfg, err := cloudconfig.Resolve(c.cloud)
	if err != nil {
		return nil, err
	}
	cloud, err := openstack.New(ctx, cfg, openstack.Options{Logger: log})
	if err != nil {
		return nil, err
	}
	host, err := hostdisk.New(hostdisk.Config{DevRoot: c.devRoot, SysRoot: c.sysRoot, MountRoot: c.mountRoot, Logger: log})
	if err != nil {
		return nil, err
	}
	res, err := volumedriver.SweepNode(ctx, cloud, host, ident.InstanceID, c.dryRun)
	for _, r := range res {
		log.Warn("stale mount", "volume_id", r.VolumeID, "why", r.Reason, "dry_run", c.dryRun, "err", r.Err)
	}
	log.Info("node sweep done", "instance", ident.InstanceID, "stale", len(res), "dry_run", c.dryRun)
	return res, err
}
