package hostdisk

import (
	"fmt"
	"slices"
	"strings"
)

// MountOptions is a validated set of mount options. Only options on the
// allow-list (AllowedMountOptions) can be expressed.
type MountOptions struct {
	ReadOnly   bool   // ro
	NoSuid     bool   // nosuid
	NoDev      bool   // nodev
	NoExec     bool   // noexec
	NoDirAtime bool   // nodiratime
	Sync       bool   // sync
	DirSync    bool   // dirsync
	Atime      string // "", "noatime", "relatime" or "strictatime"
	Discard    string // "", "discard" or "nodiscard" (both ext4 and xfs take them)
}

// AllowedMountOptions is the allow-list accepted by ParseMountOptions.
// "rw" is accepted as the absence of "ro". Options that trade safety for
// speed (nobarrier, data=writeback) or change ownership semantics are left
// out on purpose.
func AllowedMountOptions() []string {
	return []string{"ro", "rw", "nosuid", "nodev", "noexec", "noatime", "nodiratime", "relatime",
		"strictatime", "sync", "dirsync", "discard", "nodiscard"}
}

// ParseMountOptions validates options (each element may itself be a comma
// separated list; empty items are ignored). Unknown options and
// contradictions (ro with rw, two atime modes, discard with nodiscard) are
// errors of class ErrInvalidArgument.
func ParseMountOptions(opts []string) (MountOptions, error) {
	var o MountOptions
	rw := false
	for _, group := range opts {
		for _, opt := range strings.Split(group, ",") {
			opt = strings.TrimSpace(opt)
			switch opt {
			case "":
			case "ro":
				o.ReadOnly = true
			case "rw":
				rw = true
			case "nosuid":
				o.NoSuid = true
			case "nodev":
				o.NoDev = true
			case "noexec":
				o.NoExec = true
			case "nodiratime":
				o.NoDirAtime = true
			case "sync":
				o.Sync = true
			case "dirsync":
				o.DirSync = true
			case "noatime", "relatime", "strictatime":
				if o.Atime != "" && o.Atime != opt {
					return MountOptions{}, fmt.Errorf("mount options %s and %s: %w: they contradict each other", o.Atime, opt, ErrInvalidArgument)
				}
				o.Atime = opt
			case "discard", "nodiscard":
				if o.Discard != "" && o.Discard != opt {
					return MountOptions{}, fmt.Errorf("mount options %s and %s: %w: they contradict each other", o.Discard, opt, ErrInvalidArgument)
				}
				o.Discard = opt
			default:
				return MountOptions{}, fmt.Errorf("mount option %q: %w: allowed are %s", opt, ErrInvalidArgument,
					strings.Join(AllowedMountOptions(), ", "))
			}
		}
	}
	if rw && o.ReadOnly {
		return MountOptions{}, fmt.Errorf("mount options ro and rw: %w: they contradict each other", ErrInvalidArgument)
	}
	return o, nil
}

// Strings returns the options in canonical order, as mount(8) would take them.
func (o MountOptions) Strings() []string {
	var s []string
	if o.ReadOnly {
		s = append(s, "ro")
	} else {
		s = append(s, "rw")
	}
	for _, f := range []struct {
		on   bool
		name string
	}{{o.NoSuid, "nosuid"}, {o.NoDev, "nodev"}, {o.NoExec, "noexec"}, {o.NoDirAtime, "nodiratime"},
		{o.Sync, "sync"}, {o.DirSync, "dirsync"}} {
		if f.on {
			s = append(s, f.name)
		}
	}
	if o.Atime != "" {
		s = append(s, o.Atime)
	}
	if o.Discard != "" {
		s = append(s, o.Discard)
	}
	return slices.Clip(s)
}
