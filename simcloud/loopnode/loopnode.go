package loopnode

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cinderwarden/cinderwarden/simcloud"
)

// ErrInvalidAttachment is returned (wrapped) when an Attachment lacks a field
// the backend needs.
var ErrInvalidAttachment = errors.New("invalid attachment")

// SerialLen is how many characters of the volume id a virtio disk exposes as
// its serial, and hence how long the id part of the by-id link name is.
const SerialLen = 20

// tagLen is the room in a loop device's lo_file_name (LO_NAME_SIZE minus the
// terminating NUL).
const tagLen = 63

// Options configures a Backend. The zero value is ready to use.
type Options struct {
	// Logger receives one record per attach and detach, and a warning when a
	// detach yanked a device that was still in use. Nil means slog.Default().
	Logger *slog.Logger
	// ReleaseTimeout bounds how long a detach waits for the kernel to release
	// a device nobody else holds (a child forked by another goroutine can hold
	// a descriptor for a moment). Zero means 5 s.
	ReleaseTimeout time.Duration
}

// Backend is a simcloud.ComputeBackend backed by loop devices. It is safe for
// concurrent use; operations on one backing file are serialized within the
// process, and loop device allocation races with other processes are retried.
type Backend struct {
	log            *slog.Logger
	releaseTimeout time.Duration
	locks          keyedMutex
}

var _ simcloud.ComputeBackend = (*Backend)(nil)

// New returns a Backend.
func New(opts Options) *Backend {
	b := &Backend{log: opts.Logger, releaseTimeout: opts.ReleaseTimeout}
	if b.log == nil {
		b.log = slog.Default()
	}
	if b.releaseTimeout <= 0 {
		b.releaseTimeout = 5 * time.Second
	}
	return b
}

// Device is a bound loop device as the kernel reports it in sysfs.
type Device struct {
	// Path is the device node, e.g. /dev/loop3.
	Path string
	// BackingFile is the absolute path of the file the device reads and
	// writes (/sys/block/loopN/loop/backing_file).
	BackingFile string
	// BackingDeleted reports that the backing file was unlinked while bound
	// (the kernel appends " (deleted)" to its name).
	BackingDeleted bool
	// Autoclear reports that the kernel releases the device at its last
	// close; a detach of a busy device sets it.
	Autoclear bool
	// Size is the capacity in bytes the device exposes; zero once a detach
	// yanked it while busy.
	Size int64
}

// Serial returns the disk serial a KVM guest sees for a volume: the first
// SerialLen characters of its id.
func Serial(volumeID string) string {
	if len(volumeID) > SerialLen {
		return volumeID[:SerialLen]
	}
	return volumeID
}

// LinkPath returns the by-id link the backend maintains for a:
// <NodeDevDir>/disk/by-id/virtio-<Serial(VolumeID)>.
func LinkPath(a simcloud.Attachment) string {
	return filepath.Join(a.NodeDevDir, "disk", "by-id", "virtio-"+Serial(a.VolumeID))
}

// Tag returns what the backend stores in the lo_file_name of a's loop device
// to tell attachments of one volume apart: "<serial>@<instance id>", or
// "<serial>#<32 hex digits of the instance id's SHA-256>" when that would not
// fit in the kernel's 63 characters.
func Tag(a simcloud.Attachment) string {
	t := Serial(a.VolumeID) + "@" + a.InstanceID
	if len(t) <= tagLen {
		return t
	}
	sum := sha256.Sum256([]byte(a.InstanceID))
	return Serial(a.VolumeID) + "#" + hex.EncodeToString(sum[:16])
}

// validate reports which field a lacks, if any.
func validate(a simcloud.Attachment, attach bool) error {
	switch {
	case a.VolumeID == "":
		return fmt.Errorf("%w: empty VolumeID", ErrInvalidAttachment)
	case strings.ContainsAny(a.VolumeID, "/\x00"):
		// Its serial names the by-id link: a slash would put it elsewhere.
		return fmt.Errorf("%w: VolumeID %q contains / or NUL", ErrInvalidAttachment, a.VolumeID)
	case a.InstanceID == "":
		return fmt.Errorf("%w: empty InstanceID", ErrInvalidAttachment)
	case a.NodeDevDir == "":
		return fmt.Errorf("%w: empty NodeDevDir", ErrInvalidAttachment)
	case !filepath.IsAbs(a.BackingFile):
		return fmt.Errorf("%w: BackingFile %q is not an absolute path", ErrInvalidAttachment, a.BackingFile)
	case attach && a.SizeGiB <= 0:
		return fmt.Errorf("%w: SizeGiB %d is not positive", ErrInvalidAttachment, a.SizeGiB)
	}
	return nil
}

// keyedMutex serializes work per key and forgets keys nobody holds.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

// lock locks key and returns its unlock function.
func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = make(map[string]*keyedEntry)
	}
	e := k.locks[key]
	if e == nil {
		e = &keyedEntry{}
		k.locks[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}
