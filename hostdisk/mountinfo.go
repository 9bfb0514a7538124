package hostdisk

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/moby/sys/mountinfo"
)

// VolumeMount is one mount this package made: a filesystem mounted directly
// at <MountRoot>/<volume id>.
type VolumeMount struct {
	VolumeID   string
	Mountpoint string
	Source     string // device as the kernel recorded it at mount time, e.g. /dev/vdb
	Major      int    // device number of the mounted filesystem
	Minor      int
	FSType     string
	Options    string // per-mount options, e.g. "rw,relatime"
	// State is StateMounted or StateCorrupted (filled by Host.VolumeMounts;
	// the pure VolumeMountsIn leaves it StateMounted).
	State MountState
	// DeviceGone is true when Source no longer exists or is no longer the
	// device that was mounted (filled by Host.VolumeMounts).
	DeviceGone bool
	// Stacked counts earlier mounts hidden under this one at the same path.
	Stacked int
}

// VolumeMountsIn picks the plugin's mounts out of a mount table: whole
// filesystems (root "/", not bind mounts of a subdirectory) whose mountpoint
// is exactly one valid volume id below mountRoot. When mounts
// are stacked at one path, the topmost (last) one is reported.
func VolumeMountsIn(infos []*mountinfo.Info, mountRoot string) []VolumeMount {
	mountRoot = filepath.Clean(mountRoot)
	var out []VolumeMount
	index := map[string]int{}
	for _, in := range infos {
		if filepath.Dir(in.Mountpoint) != mountRoot || in.Root != "/" {
			continue
		}
		id := filepath.Base(in.Mountpoint)
		// Exactly <root>/<id>: a mountpoint of "<root>/" would otherwise
		// pass as the volume named like the root's last element.
		if ValidateVolumeID(id) != nil || in.Mountpoint != filepath.Join(mountRoot, id) {
			continue
		}
		vm := VolumeMount{VolumeID: id, Mountpoint: in.Mountpoint, Source: in.Source, Major: in.Major,
			Minor: in.Minor, FSType: in.FSType, Options: in.Options, State: StateMounted}
		if i, ok := index[in.Mountpoint]; ok {
			vm.Stacked = out[i].Stacked + 1
			out[i] = vm
			continue
		}
		index[in.Mountpoint] = len(out)
		out = append(out, vm)
	}
	return out
}

// MountsOfDeviceIn returns the entries of a mount table whose filesystem
// lives on device number major:minor.
func MountsOfDeviceIn(infos []*mountinfo.Info, major, minor int) []*mountinfo.Info {
	var out []*mountinfo.Info
	for _, in := range infos {
		if in.Major == major && in.Minor == minor {
			out = append(out, in)
		}
	}
	return out
}

// MountTable reads and parses Config.MountInfoPath.
func (h *Host) MountTable() ([]*mountinfo.Info, error) {
	f, err := os.Open(h.cfg.MountInfoPath)
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	infos, err := ParseMountInfo(f)
	if err != nil {
		return nil, fmt.Errorf("parse mount table %s: %w", h.cfg.MountInfoPath, err)
	}
	return infos, nil
}

// VolumeMounts lists the plugin's mounts under MountRoot with their state:
// a mountpoint whose stat fails with a corrupted-mount errno is
// StateCorrupted; a mount whose device node vanished or changed has
// DeviceGone set. This is what a restart rebuild and the stale-mount sweep
// start from.
func (h *Host) VolumeMounts() ([]VolumeMount, error) {
	infos, err := h.MountTable()
	if err != nil {
		return nil, err
	}
	vms := VolumeMountsIn(infos, h.cfg.MountRoot)
	for i := range vms {
		vm := &vms[i]
		if _, err := os.Stat(vm.Mountpoint); IsCorruptedMnt(err) {
			vm.State = StateCorrupted
		}
		maj, min, err := deviceNumber(vm.Source)
		vm.DeviceGone = err != nil || maj != vm.Major || min != vm.Minor
	}
	return vms, nil
}

// MountsOfDevice lists every mount (anywhere, not only under MountRoot) of
// the filesystem on dev.
func (h *Host) MountsOfDevice(dev string) ([]*mountinfo.Info, error) {
	maj, min, err := deviceNumber(dev)
	if err != nil {
		return nil, err
	}
	infos, err := h.MountTable()
	if err != nil {
		return nil, err
	}
	return MountsOfDeviceIn(infos, maj, min), nil
}

// MountState is what a mountpoint path is.
type MountState string

// Mount states. StateCorrupted is neither mounted-and-usable nor "not
// mounted": it must be unmounted before anything else happens there.
const (
	StateNotMounted MountState = "not-mounted"
	StateMounted    MountState = "mounted"
	StateCorrupted  MountState = "corrupted"
)

// StateOf reports whether path is a mountpoint, and which mount is on top
// when it is (nil otherwise). A stat error that IsCorruptedMnt is
// StateCorrupted; a missing path is StateNotMounted.
func (h *Host) StateOf(path string) (MountState, *mountinfo.Info, error) {
	path = filepath.Clean(path)
	_, statErr := os.Stat(path)
	infos, err := h.MountTable()
	if err != nil {
		return "", nil, err
	}
	var top *mountinfo.Info
	for _, in := range infos {
		if in.Mountpoint == path {
			top = in
		}
	}
	switch {
	case IsCorruptedMnt(statErr):
		return StateCorrupted, top, nil
	case statErr != nil && errors.Is(statErr, fs.ErrNotExist):
		return StateNotMounted, nil, nil
	case statErr != nil:
		return "", nil, fmt.Errorf("mountpoint state: %w", statErr)
	case top != nil:
		return StateMounted, top, nil
	}
	return StateNotMounted, nil, nil
}
