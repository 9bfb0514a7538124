package hostdisk

import (
	"errors"
	"syscall"
)

// IsCorruptedMnt reports whether err, from stat or open of a mountpoint,
// means the mountpoint is corrupted: a state of its own, not "not mounted".
// Such a mountpoint must be unmounted (see UnmountEscalate), never ignored or
// reused.
func IsCorruptedMnt(err error) bool {
	// The stat errors that mean "a mount is there but broken" (from
	// k8s.io/mount-utils): a dead FUSE daemon, a stale NFS handle, a
	// vanished device.
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return false
	}
	switch errno {
	case syscall.ENOTCONN, syscall.ESTALE, syscall.EIO, syscall.EACCES, syscall.EHOSTDOWN,
		syscall.EWOULDBLOCK, syscall.ENODEV:
		return true
	}
	return false
}
