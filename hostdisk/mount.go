package hostdisk

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// MountRequest asks for a volume's device to be mounted at its mountpoint.
type MountRequest struct {
	VolumeID string
	Device   string   // the real device node (Device.Path from WaitForDevice)
	FSType   string   // "" = whatever is there, DefaultFSType when blank
	Options  []string // see AllowedMountOptions
}

// MountResult says where the volume is and what was done.
type MountResult struct {
	Mountpoint     string // <MountRoot>/<volume id>
	DataDir        string // <Mountpoint>/data, the path to hand to Docker
	FSType         string
	Formatted      bool // the device was blank and mkfs ran
	AlreadyMounted bool // the device was already mounted there; nothing changed
}

// Mount mounts the volume's device at <MountRoot>/<volume id> and makes sure
// the data subdirectory exists. It is idempotent: the same device already
// mounted there is reported with AlreadyMounted. The device is formatted
// only when blank (FormatIfBlank / PlanFormat); a device with any other
// signature is refused, a blank device is not formatted for a read-only
// mount (ErrReadOnlyDevice), and a failed mount is an ErrMountFailed error —
// never a reason to format. A corrupted mountpoint is ErrCorruptedMount
// (unmount it with UnmountEscalate first); a mountpoint holding another
// device is ErrMountFailed.
func (h *Host) Mount(ctx context.Context, req MountRequest) (MountResult, error) {
	mp, err := h.Mountpoint(req.VolumeID)
	if err != nil {
		return MountResult{}, err
	}
	opts, err := ParseMountOptions(req.Options)
	if err != nil {
		return MountResult{}, err
	}
	if err := ValidateFSType(req.FSType); err != nil {
		return MountResult{}, err
	}
	res := MountResult{Mountpoint: mp, DataDir: filepath.Join(mp, DataDirName)}
	maj, min, err := deviceNumber(req.Device)
	if err != nil {
		return res, &Error{Class: ErrMountFailed, Op: "mount", Device: req.Device, Path: mp, Err: err}
	}

	state, top, err := h.StateOf(mp)
	if err != nil {
		return res, &Error{Class: ErrMountFailed, Op: "mount", Device: req.Device, Path: mp, Err: err}
	}
	switch state {
	case StateCorrupted:
		return res, &Error{Class: ErrCorruptedMount, Op: "mount", Device: req.Device, Path: mp,
			Detail: "unmount the corrupted mountpoint first"}
	case StateMounted:
		if top.Major != maj || top.Minor != min {
			return res, &Error{Class: ErrMountFailed, Op: "mount", Device: req.Device, Path: mp,
				Detail: fmt.Sprintf("mountpoint already holds %s (%d:%d)", top.Source, top.Major, top.Minor)}
		}
		if req.FSType != "" && fsFamily(top.FSType) != req.FSType {
			return res, &Error{Class: ErrFilesystemMismatch, Op: "mount", Device: req.Device, Path: mp,
				Detail: fmt.Sprintf("mounted as %s, %s was asked for", top.FSType, req.FSType)}
		}
		res.FSType, res.AlreadyMounted = top.FSType, true
		if err := h.ensureDataDir(res.DataDir); err != nil {
			return res, &Error{Class: ErrMountFailed, Op: "create data directory", Device: req.Device, Path: res.DataDir, Err: err}
		}
		return res, nil
	}
	if others, err := h.MountsOfDevice(req.Device); err == nil && len(others) > 0 {
		// Mounting one filesystem at two places is legal for the kernel but
		// means someone else uses the device: refuse rather than share.
		return res, &Error{Class: ErrMountFailed, Op: "mount", Device: req.Device, Path: mp,
			Detail: "device is already mounted at " + others[0].Mountpoint}
	}

	fr, err := h.formatIfBlank(ctx, req.Device, req.FSType, opts.ReadOnly)
	if err != nil {
		return res, err
	}
	res.FSType, res.Formatted = fr.FSType, fr.Formatted

	if err := os.MkdirAll(mp, 0o755); err != nil {
		return res, &Error{Class: ErrMountFailed, Op: "create mountpoint", Device: req.Device, Path: mp, Err: err}
	}
	if err := sysMount(req.Device, mp, fr.FSType, opts); err != nil {
		_ = os.Remove(mp) // only succeeds on the empty directory just made
		return res, &Error{Class: ErrMountFailed, Op: "mount", Device: req.Device, Path: mp, Err: err,
			Detail: fmt.Sprintf("fstype %s, options %s", fr.FSType, strings.Join(opts.Strings(), ","))}
	}
	if err := h.ensureDataDir(res.DataDir); err != nil {
		_ = sysUnmount(mp, UnmountedNormal)
		_ = os.Remove(mp)
		return res, &Error{Class: ErrMountFailed, Op: "create data directory", Device: req.Device, Path: res.DataDir, Err: err}
	}
	h.log.Info("mounted volume", "volume", req.VolumeID, "device", req.Device, "mountpoint", mp,
		"fstype", fr.FSType, "formatted", fr.Formatted, "options", strings.Join(opts.Strings(), ","))
	return res, nil
}

// ensureDataDir creates the data directory unless it exists as a directory.
func (h *Host) ensureDataDir(dir string) error {
	err := os.Mkdir(dir, fs.FileMode(h.cfg.DataDirMode))
	if errors.Is(err, fs.ErrExist) {
		fi, serr := os.Lstat(dir)
		if serr != nil {
			return serr
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s exists and is not a directory", dir)
		}
		return nil
	}
	if err != nil {
		return err
	}
	return os.Chmod(dir, fs.FileMode(h.cfg.DataDirMode)) // umask-proof
}

// UnmountMode says how hard Unmount tries.
type UnmountMode int

const (
	// UnmountNormal: plain umount2 with a timeout; a busy filesystem is an
	// ErrBusy error and stays mounted. This is what Docker's Unmount needs:
	// a volume in use must not be detached.
	UnmountNormal UnmountMode = iota
	// UnmountEscalate: plain, then MNT_FORCE, then MNT_DETACH (lazy) when
	// still busy or a step timed out. For the stale-mount sweep and
	// corrupted mountpoints, whose device is already gone.
	UnmountEscalate
)

// UnmountMethod says which step unmounted the filesystem.
type UnmountMethod string

// Unmount methods.
const (
	UnmountedNot    UnmountMethod = "not-mounted" // nothing was mounted there
	UnmountedNormal UnmountMethod = "normal"
	UnmountedForce  UnmountMethod = "force" // MNT_FORCE
	UnmountedLazy   UnmountMethod = "lazy"  // MNT_DETACH: detached from the tree, freed when last user leaves
)

// UnmountResult says what Unmount did.
type UnmountResult struct {
	Mountpoint string
	Method     UnmountMethod
	WasCorrupt bool // the mountpoint was corrupted before unmounting
	Removed    bool // the empty mountpoint directory was removed
}

// Unmount unmounts the volume's mountpoint (every stacked mount there) and
// removes the empty directory. See UnmountMode for how hard it tries.
func (h *Host) Unmount(ctx context.Context, volumeID string, mode UnmountMode) (UnmountResult, error) {
	mp, err := h.Mountpoint(volumeID)
	if err != nil {
		return UnmountResult{}, err
	}
	return h.UnmountPath(ctx, mp, mode)
}

// UnmountPath is Unmount for any mountpoint under MountRoot (e.g. one found
// by VolumeMounts whose name is not a volume the plugin knows).
func (h *Host) UnmountPath(ctx context.Context, mp string, mode UnmountMode) (UnmountResult, error) {
	mp = filepath.Clean(mp)
	if filepath.Dir(mp) != h.cfg.MountRoot {
		return UnmountResult{}, &Error{Class: ErrInvalidArgument, Op: "unmount", Path: mp,
			Detail: "not directly under the mount root " + h.cfg.MountRoot}
	}
	res := UnmountResult{Mountpoint: mp, Method: UnmountedNot}
	for range 8 { // stacked mounts: one more round per layer
		state, _, err := h.StateOf(mp)
		if err != nil {
			return res, &Error{Class: ErrUnmountFailed, Op: "unmount", Path: mp, Err: err}
		}
		if state == StateNotMounted {
			break
		}
		if state == StateCorrupted {
			res.WasCorrupt = true
		}
		method, err := h.unmountOnce(ctx, mp, mode)
		if err != nil {
			return res, err
		}
		if res.Method == UnmountedNot || method != UnmountedNormal {
			res.Method = method
		}
	}
	if err := os.Remove(mp); err == nil {
		res.Removed = true
	} else if !errors.Is(err, fs.ErrNotExist) {
		h.log.Warn("mountpoint directory left in place", "path", mp, "err", err)
	}
	if res.Method != UnmountedNot {
		h.log.Info("unmounted", "mountpoint", mp, "method", res.Method, "corrupted", res.WasCorrupt)
	}
	return res, nil
}

// unmountOnce removes the top mount at mp.
func (h *Host) unmountOnce(ctx context.Context, mp string, mode UnmountMode) (UnmountMethod, error) {
	steps := []UnmountMethod{UnmountedNormal, UnmountedForce, UnmountedLazy}
	if mode == UnmountNormal {
		steps = steps[:1]
	}
	var last error
	for _, s := range steps {
		err := h.umount2(ctx, mp, s)
		switch {
		case err == nil:
			return s, nil
		case errors.Is(err, syscall.EINVAL):
			// Not (or no longer) a mountpoint: someone else unmounted it.
			return UnmountedNot, nil
		case ctx.Err() != nil:
			return "", &Error{Class: ErrUnmountFailed, Op: "unmount", Path: mp, Err: err}
		}
		last = err
		h.log.Warn("unmount step failed", "mountpoint", mp, "step", s, "err", err)
	}
	if errors.Is(last, syscall.EBUSY) {
		return "", &Error{Class: ErrBusy, Op: "unmount", Path: mp, Err: last,
			Detail: "still in use; left mounted"}
	}
	return "", &Error{Class: ErrUnmountFailed, Op: "unmount", Path: mp, Err: last}
}

// umount2 runs one unmount step, giving up waiting after UnmountTimeout or
// when ctx ends. A call that hangs in the kernel (a dead network filesystem)
// cannot be cancelled; its goroutine finishes whenever the kernel returns.
func (h *Host) umount2(ctx context.Context, mp string, step UnmountMethod) error {
	done := make(chan error, 1)
	go func() { done <- sysUnmount(mp, step) }()
	t := time.NewTimer(h.cfg.UnmountTimeout)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return fmt.Errorf("%w after %s", ErrUnmountTimeout, h.cfg.UnmountTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}
