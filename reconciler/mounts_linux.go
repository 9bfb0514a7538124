//go:build linux

package reconciler

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// readMounts lists the mounts strictly below any of bases and probes each
// one's source.
//
// "Source gone" is decided without contacting a remote server (which could
// hang): the mountpoint is stat'ed with a timeout, and only a definitive
// answer counts as gone:
//
//   - stat fails with ENOTCONN, ESTALE, EIO, EHOSTDOWN, EHOSTUNREACH,
//     ENODEV or ENXIO (a dead FUSE daemon, an NFS export removed under
//     the client, a vanished device: k8s mount-utils' "corrupted
//     mountpoint");
//   - the mount's root is a directory that was deleted (mountinfo shows
//     "//deleted");
//   - the source is a local absolute path (a block device, a bind source)
//     that no longer exists.
//
// A stat that does not return within timeout (a hard NFS mount whose
// server is down) leaves the entry MountSourceUnknown, which is never acted
// on; the goroutine doing it stays blocked in the kernel until the server
// answers, as any process touching that mount would.
func readMounts(ctx context.Context, bases []string, timeout time.Duration) ([]MountEntry, error) {
	infos, err := mountinfo.GetMounts(func(m *mountinfo.Info) (bool, bool) {
		for _, b := range bases {
			if strings.HasPrefix(filepath.Clean(m.Mountpoint), b+"/") {
				return false, false
			}
		}
		return true, false
	})
	if err != nil {
		return nil, fmt.Errorf("mounts: read mountinfo: %w", err)
	}
	out := make([]MountEntry, 0, len(infos))
	for _, m := range infos {
		e := MountEntry{Mountpoint: m.Mountpoint, Source: m.Source, FSType: m.FSType}
		e.SourceState, e.Reason = probeMount(ctx, m, timeout)
		out = append(out, e)
	}
	return out, nil
}

// mountEntry re-reads one mountpoint (the act step's fresh view).
func mountEntry(ctx context.Context, mountpoint string, timeout time.Duration) ([]MountEntry, error) {
	infos, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(mountpoint))
	if err != nil {
		return nil, fmt.Errorf("mounts: read mountinfo: %w", err)
	}
	var out []MountEntry
	for _, m := range infos {
		e := MountEntry{Mountpoint: m.Mountpoint, Source: m.Source, FSType: m.FSType}
		e.SourceState, e.Reason = probeMount(ctx, m, timeout)
		out = append(out, e)
	}
	return out, nil
}

func probeMount(ctx context.Context, m *mountinfo.Info, timeout time.Duration) (MountSourceState, string) {
	if strings.HasSuffix(m.Root, "//deleted") {
		return MountSourceGone, "mount root " + m.Root + " was deleted"
	}
	done := make(chan error, 1)
	go func() {
		var st unix.Stat_t
		done <- unix.Stat(m.Mountpoint, &st)
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-done:
		if err != nil {
			if corrupted(err) {
				return MountSourceGone, "stat " + m.Mountpoint + ": " + err.Error()
			}
			return MountSourceUnknown, "stat " + m.Mountpoint + ": " + err.Error()
		}
	case <-t.C:
		return MountSourceUnknown, fmt.Sprintf("stat %s did not return within %s", m.Mountpoint, timeout)
	case <-ctx.Done():
		return MountSourceUnknown, "stat " + m.Mountpoint + ": " + ctx.Err().Error()
	}
	if filepath.IsAbs(m.Source) {
		if _, err := os.Stat(m.Source); errors.Is(err, os.ErrNotExist) {
			return MountSourceGone, "source " + m.Source + " no longer exists"
		}
	}
	return MountSourceReachable, ""
}

func corrupted(err error) bool {
	for _, e := range []error{unix.ENOTCONN, unix.ESTALE, unix.EIO, unix.EHOSTDOWN, unix.EHOSTUNREACH, unix.ENODEV, unix.ENXIO} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// lazyUnmount detaches the mount now and lets the kernel finish when the
// last user goes (umount -l).
func lazyUnmount(mountpoint string) error {
	if err := unix.Unmount(mountpoint, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("lazy unmount %s: %w", mountpoint, err)
	}
	return nil
}
