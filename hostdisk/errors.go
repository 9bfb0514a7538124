package hostdisk

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Error classes. Check them with errors.Is; the concrete errors below carry
// the details.
var (
	// ErrInvalidArgument: a volume id, fstype or mount option outside what
	// the package allows.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrDeviceNotFound: no device for the volume appeared in time.
	ErrDeviceNotFound = errors.New("device not found")
	// ErrDeviceStillPresent: the device did not go away in time (detach).
	ErrDeviceStillPresent = errors.New("device still present")
	// ErrProbeFailed: the signature probe itself failed; nothing is formatted.
	ErrProbeFailed = errors.New("signature probe failed")
	// ErrHasSignature: the device carries a signature that forbids formatting
	// (and, unless it is a mountable filesystem, mounting).
	ErrHasSignature = errors.New("device carries a signature")
	// ErrFilesystemMismatch: the device holds a filesystem other than the one
	// asked for, or one this package does not mount.
	ErrFilesystemMismatch = errors.New("filesystem mismatch")
	// ErrDeviceInUse: a blank device is held open exclusively (mounted
	// elsewhere, claimed by device-mapper, md, swap, ...) and is not formatted.
	ErrDeviceInUse = errors.New("device is in use")
	// ErrReadOnlyDevice: a blank device is read-only and cannot be formatted.
	ErrReadOnlyDevice = errors.New("device is read-only")
	// ErrFormatFailed: mkfs failed or did not leave the expected filesystem.
	ErrFormatFailed = errors.New("format failed")
	// ErrMountFailed: mount(2) failed, or the mountpoint holds another device.
	ErrMountFailed = errors.New("mount failed")
	// ErrCorruptedMount: the mountpoint answers stat with ENOTCONN, ESTALE,
	// EIO, EACCES, EHOSTDOWN, EWOULDBLOCK or ENODEV (see IsCorruptedMnt).
	ErrCorruptedMount = errors.New("corrupted mountpoint")
	// ErrBusy: unmount refused because the filesystem is in use.
	ErrBusy = errors.New("target is busy")
	// ErrUnmountFailed: unmount failed for another reason.
	ErrUnmountFailed = errors.New("unmount failed")
	// ErrUnmountTimeout: an umount2 step did not return within
	// Config.UnmountTimeout (the state is uncertain: the call may still
	// complete in the kernel). Found next to ErrUnmountFailed or ErrBusy.
	ErrUnmountTimeout = errors.New("umount2 did not return in time")
)

// Error is an operation on a device or path that failed. Class is one of the
// Err* values above; Err is the cause (an errno, an exec failure, ...). Both
// are visible to errors.Is.
type Error struct {
	Class  error
	Op     string // "mount", "mkfs", "unmount", "probe", ...
	Device string // device node, when there is one
	Path   string // mountpoint or other path, when there is one
	Detail string // e.g. the program's stderr, trimmed
	Err    error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	if e.Device != "" {
		b.WriteString(" " + e.Device)
	}
	if e.Path != "" {
		b.WriteString(" at " + e.Path)
	}
	b.WriteString(": " + e.Class.Error())
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	if e.Detail != "" {
		b.WriteString(" (" + e.Detail + ")")
	}
	return b.String()
}

// Unwrap exposes both the class and the cause.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Class}
	}
	return []error{e.Class, e.Err}
}

// SignatureError reports the signatures that forbid formatting a device.
// errors.Is(err, ErrHasSignature) is true.
type SignatureError struct {
	Device     string
	Signatures []Signature
	Reason     string // why these signatures stop the operation
}

func (e *SignatureError) Error() string {
	parts := make([]string, len(e.Signatures))
	for i, s := range e.Signatures {
		parts[i] = s.String()
	}
	msg := fmt.Sprintf("%s: %s: %s", e.Device, ErrHasSignature, strings.Join(parts, ", "))
	if e.Reason != "" {
		msg += "; " + e.Reason
	}
	return msg
}

// Is makes errors.Is(err, ErrHasSignature) true.
func (e *SignatureError) Is(target error) bool { return target == ErrHasSignature }

// DeviceNotFoundError is returned when no device for a volume appeared before
// the deadline. errors.Is(err, ErrDeviceNotFound) is true, and so is
// errors.Is(err, context.Canceled) when the caller cancelled.
type DeviceNotFoundError struct {
	VolumeID   string
	Candidates []string // every path that was tried, in order
	Waited     time.Duration
	Err        error // the context error that ended the wait, if any
}

func (e *DeviceNotFoundError) Error() string {
	return fmt.Sprintf("volume %s: %s after %s (tried %s)", e.VolumeID, ErrDeviceNotFound,
		e.Waited.Round(time.Millisecond), strings.Join(e.Candidates, ", "))
}

// Unwrap exposes ErrDeviceNotFound and the context error.
func (e *DeviceNotFoundError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrDeviceNotFound}
	}
	return []error{ErrDeviceNotFound, e.Err}
}

// trimDetail keeps program output short enough for an error message.
func trimDetail(b []byte) string {
	s := strings.TrimSpace(string(b))
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 400 {
		s = s[:400] + "..."
	}
	return s
}
