package hostdisk

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"time"
)

// Config holds every path and timing the package uses. Zero values take the
// defaults documented on each field; MountRoot is required.
type Config struct {
	// DevRoot is where device nodes and disk/by-id live. Default "/dev".
	DevRoot string
	// SysRoot is sysfs, read for <SysRoot>/block/*/serial. Default "/sys".
	SysRoot string
	// MountRoot is where volumes are mounted, one directory per volume id.
	MountRoot string
	// MountInfoPath is the mountinfo file read for the mount table.
	// Default "/proc/self/mountinfo".
	MountInfoPath string
	// DeviceTimeout bounds WaitForDevice and WaitForDeviceGone (the context
	// may end the wait earlier). Default 60 s.
	DeviceTimeout time.Duration
	// FallbackPoll is the slow re-check interval while waiting for a device;
	// inotify events are the fast path. Default 2 s.
	FallbackPoll time.Duration
	// UnmountTimeout bounds each umount2 step. Default 10 s.
	UnmountTimeout time.Duration
	// DataDirMode is the permission of the "data" subdirectory handed to
	// containers when it is created. Default 0755.
	DataDirMode uint32
	// Runner runs blkid and mkfs. Default ExecRunner{}.
	Runner Runner
	// Logger receives one line per state-changing step. Default slog.Default().
	Logger *slog.Logger
}

// Host is one node's view of its disks. It holds no mutable state: callers
// serialise operations on the same volume (the plugin's per-volume lock);
// operations on different volumes may run in parallel.
type Host struct {
	cfg Config
	run Runner
	log *slog.Logger
}

// DataDirName is the subdirectory of a volume's mountpoint handed to Docker,
// so that lost+found never shows up in a container's volume.
const DataDirName = "data"

// New validates cfg, fills defaults and returns a Host.
func New(cfg Config) (*Host, error) {
	if cfg.DevRoot == "" {
		cfg.DevRoot = "/dev"
	}
	if cfg.SysRoot == "" {
		cfg.SysRoot = "/sys"
	}
	if cfg.MountInfoPath == "" {
		cfg.MountInfoPath = "/proc/self/mountinfo"
	}
	if cfg.DeviceTimeout == 0 {
		cfg.DeviceTimeout = 60 * time.Second
	}
	if cfg.FallbackPoll == 0 {
		cfg.FallbackPoll = 2 * time.Second
	}
	if cfg.UnmountTimeout == 0 {
		cfg.UnmountTimeout = 10 * time.Second
	}
	if cfg.DataDirMode == 0 {
		cfg.DataDirMode = 0o755
	}
	if cfg.Runner == nil {
		cfg.Runner = ExecRunner{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	for name, p := range map[string]string{"dev root": cfg.DevRoot, "sys root": cfg.SysRoot,
		"mount root": cfg.MountRoot, "mountinfo path": cfg.MountInfoPath} {
		if p == "" {
			return nil, fmt.Errorf("hostdisk config: %s is required: %w", name, ErrInvalidArgument)
		}
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("hostdisk config: %s %q must be an absolute path: %w", name, p, ErrInvalidArgument)
		}
	}
	for name, d := range map[string]time.Duration{"device timeout": cfg.DeviceTimeout,
		"fallback poll": cfg.FallbackPoll, "unmount timeout": cfg.UnmountTimeout} {
		if d < 0 {
			return nil, fmt.Errorf("hostdisk config: %s %s must not be negative: %w", name, d, ErrInvalidArgument)
		}
	}
	cfg.DevRoot = filepath.Clean(cfg.DevRoot)
	cfg.SysRoot = filepath.Clean(cfg.SysRoot)
	cfg.MountRoot = filepath.Clean(cfg.MountRoot)
	// mountinfo records resolved paths: compare against the resolved root.
	if real, err := filepath.EvalSymlinks(cfg.MountRoot); err == nil {
		cfg.MountRoot = real
	}
	return &Host{cfg: cfg, run: cfg.Runner, log: cfg.Logger}, nil
}

// Config returns the effective configuration (defaults filled in).
func (h *Host) Config() Config { return h.cfg }

// Mountpoint is where the volume is mounted: <MountRoot>/<volumeID>.
func (h *Host) Mountpoint(volumeID string) (string, error) {
	if err := ValidateVolumeID(volumeID); err != nil {
		return "", err
	}
	return filepath.Join(h.cfg.MountRoot, volumeID), nil
}

// DataDir is the directory handed to Docker: <MountRoot>/<volumeID>/data.
func (h *Host) DataDir(volumeID string) (string, error) {
	mp, err := h.Mountpoint(volumeID)
	if err != nil {
		return "", err
	}
	return filepath.Join(mp, DataDirName), nil
}
