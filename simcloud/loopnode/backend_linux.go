package loopnode

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cinderwarden/cinderwarden/simcloud"
)

const (
	giB         = 1 << 30
	loopControl = "/dev/loop-control"
	// maxBindAttempts bounds how often attach retries when another process
	// or goroutine takes the loop device LOOP_CTL_GET_FREE offered.
	maxBindAttempts = 100
	// yankOffset is a data offset beyond any backing file: the kernel then
	// computes a capacity of zero for the device.
	yankOffset = 1 << 62
)

// AttachVolume implements simcloud.ComputeBackend. It returns the loop
// device's path; attaching an attachment that is already attached returns
// the same device and refreshes its capacity and link.
func (b *Backend) AttachVolume(ctx context.Context, a simcloud.Attachment) (string, error) {
	dev, err := b.attach(ctx, a)
	if err != nil {
		return "", fmt.Errorf("volume %s: attach to instance %s: %w", a.VolumeID, a.InstanceID, err)
	}
	return dev, nil
}

// DetachVolume implements simcloud.ComputeBackend: it removes a's by-id link
// and releases a's loop device (see the package documentation for a device
// that is still in use). Detaching what is already gone succeeds.
func (b *Backend) DetachVolume(ctx context.Context, a simcloud.Attachment) error {
	if err := b.detach(ctx, a); err != nil {
		return fmt.Errorf("volume %s: detach from instance %s: %w", a.VolumeID, a.InstanceID, err)
	}
	return nil
}

func (b *Backend) attach(ctx context.Context, a simcloud.Attachment) (string, error) {
	if err := validate(a, true); err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(a.BackingFile), 0o755); err != nil {
		return "", fmt.Errorf("create backing file directory: %w", err)
	}
	unlock := b.locks.lock(backingKey(a.BackingFile))
	defer unlock()

	f, err := openBacking(a.BackingFile, int64(a.SizeGiB)*giB)
	if err != nil {
		return "", err
	}
	defer f.Close()
	back := backingKey(a.BackingFile)
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("backing file: %w", err)
	}

	tag := Tag(a)
	mine, err := tagged(back, tag)
	if err != nil {
		return "", err
	}
	var dev string
	for _, d := range mine {
		if !d.BackingDeleted && !d.Autoclear {
			dev = d.Path
			if d.Size != fi.Size() {
				if err := setCapacity(dev); err != nil {
					return "", err
				}
			}
			break
		}
	}
	fresh := dev == ""
	if fresh {
		if dev, err = bindFree(ctx, f, tag); err != nil {
			return "", err
		}
	}
	link := LinkPath(a)
	if err := symlink(dev, link); err != nil {
		if fresh {
			if _, rerr := release(ctx, dev, back, b.releaseTimeout); rerr != nil {
				err = errors.Join(err, fmt.Errorf("roll back %s: %w", dev, rerr))
			}
		}
		return "", err
	}
	b.log.InfoContext(ctx, "volume attached to node",
		"volume", a.VolumeID, "instance", a.InstanceID, "device", dev, "link", link,
		"backing_file", back, "size_bytes", fi.Size(), "reused", !fresh)
	return dev, nil
}

func (b *Backend) detach(ctx context.Context, a simcloud.Attachment) error {
	if err := validate(a, false); err != nil {
		return err
	}
	back := backingKey(a.BackingFile)
	unlock := b.locks.lock(back)
	defer unlock()

	// The instance's view goes first, as udev drops the link the moment the
	// disk is unplugged.
	link := LinkPath(a)
	if err := os.Remove(link); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove by-id link: %w", err)
	}
	mine, err := tagged(back, Tag(a))
	if err != nil {
		return err
	}
	for _, d := range mine {
		if d.Autoclear {
			continue // yanked by an earlier detach; freed when its holder lets go
		}
		busy, err := release(ctx, d.Path, back, b.releaseTimeout)
		if err != nil {
			return err
		}
		if busy {
			b.log.WarnContext(ctx, "volume detached while its device was in use: I/O through it now fails and the kernel frees it at last close",
				"volume", a.VolumeID, "instance", a.InstanceID, "device", d.Path, "backing_file", back)
		}
		b.log.InfoContext(ctx, "volume detached from node",
			"volume", a.VolumeID, "instance", a.InstanceID, "device", d.Path, "link", link, "busy", busy)
	}
	return nil
}

// DetachAll releases every loop device backed by a file under dir, whoever
// attached it, as a detach does (a device still in use is yanked and freed at
// its last close). It returns the devices still held when it is done; a test
// that unmounted everything expects none. By-id links are left alone: they
// live in node directories DetachAll does not know.
func DetachAll(ctx context.Context, dir string) (busy []Device, err error) {
	if dir == "" {
		return nil, errors.New("detach all loop devices: empty directory would match every loop device on the machine")
	}
	devs, err := Devices(dir)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, d := range devs {
		held, err := release(ctx, d.Path, d.BackingFile, 5*time.Second)
		if err != nil {
			errs = append(errs, err)
		}
		if held {
			busy = append(busy, d)
		}
	}
	return busy, errors.Join(errs...)
}

// backingKey names a backing file the way the kernel reports it.
func backingKey(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		if abs, err := filepath.Abs(r); err == nil {
			return abs
		}
	}
	return canonical(p)
}

// openBacking opens (creating if absent) the sparse backing file and grows it
// to size; an existing file is never shrunk.
func openBacking(path string, size int64) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("backing file: %w", err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = &os.PathError{Op: "open", Path: path, Err: unix.EINVAL}
	}
	if err == nil && fi.Size() < size {
		err = f.Truncate(size) // sparse: allocates nothing
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("backing file: %w", err)
	}
	return f, nil
}

// tagged returns the bound loop devices backed by back whose lo_file_name is
// tag.
func tagged(back, tag string) ([]Device, error) {
	devs, err := scan(sysBlock)
	if err != nil {
		return nil, err
	}
	var out []Device
	for _, d := range devs {
		if d.BackingFile != back {
			continue
		}
		name, err := fileName(d.Path)
		if errors.Is(err, unix.ENXIO) || unbound(err) {
			continue // released meanwhile
		}
		if err != nil {
			return nil, err
		}
		if name == tag {
			out = append(out, d)
		}
	}
	return out, nil
}

// fileName returns a loop device's lo_file_name.
func fileName(dev string) (string, error) {
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", &os.PathError{Op: "open", Path: dev, Err: err}
	}
	defer unix.Close(fd)
	st, err := unix.IoctlLoopGetStatus64(fd)
	if err != nil {
		return "", &os.PathError{Op: "LOOP_GET_STATUS64", Path: dev, Err: err}
	}
	return unix.ByteSliceToString(st.File_name[:]), nil
}

// bindFree binds f to a free loop device tagged tag and returns its path.
func bindFree(ctx context.Context, f *os.File, tag string) (string, error) {
	ctl, err := unix.Open(loopControl, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", &os.PathError{Op: "open", Path: loopControl, Err: err}
	}
	defer unix.Close(ctl)
	delay := time.Millisecond
	for attempt := 1; ; attempt++ {
		n, err := unix.IoctlRetInt(ctl, unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return "", &os.PathError{Op: "LOOP_CTL_GET_FREE", Path: loopControl, Err: err}
		}
		dev := "/dev/loop" + strconv.Itoa(n)
		err = configure(dev, n, f, tag)
		if err == nil {
			return dev, nil
		}
		// EBUSY: someone bound loopN between GET_FREE and CONFIGURE.
		if !errors.Is(err, unix.EBUSY) || attempt == maxBindAttempts {
			return "", err
		}
		if err := sleep(ctx, delay); err != nil {
			return "", fmt.Errorf("bind loop device: %w", err)
		}
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// configure binds f to the loop device dev (index n) in one LOOP_CONFIGURE.
// No autoclear: nobody holds a simulated disk open, and autoclear would free
// it the moment this function closes its descriptor.
func configure(dev string, n int, f *os.File, tag string) error {
	if err := ensureNode(dev, n); err != nil {
		return err
	}
	fd, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dev, Err: err}
	}
	defer unix.Close(fd)
	var cfg unix.LoopConfig
	cfg.Fd = uint32(f.Fd())
	copy(cfg.Info.File_name[:tagLen], tag)
	if err := unix.IoctlLoopConfigure(fd, &cfg); err != nil {
		return &os.PathError{Op: "LOOP_CONFIGURE", Path: dev, Err: err}
	}
	return nil
}

// ensureNode creates the device node for loopN when /dev is not a devtmpfs
// that does so by itself.
func ensureNode(dev string, n int) error {
	if _, err := os.Stat(dev); !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	b, err := os.ReadFile(filepath.Join(sysBlock, "loop"+strconv.Itoa(n), "dev"))
	if err != nil {
		return fmt.Errorf("device number of %s: %w", dev, err)
	}
	major, minor, ok := strings.Cut(strings.TrimSpace(string(b)), ":")
	maj, err1 := strconv.ParseUint(major, 10, 32)
	mnr, err2 := strconv.ParseUint(minor, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return fmt.Errorf("device number of %s: cannot parse %q", dev, b)
	}
	err = unix.Mknod(dev, unix.S_IFBLK|0o660, int(unix.Mkdev(uint32(maj), uint32(mnr))))
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return &os.PathError{Op: "mknod", Path: dev, Err: err}
	}
	return nil
}

// setCapacity makes dev pick up its backing file's current size.
func setCapacity(dev string) error {
	fd, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dev, Err: err}
	}
	defer unix.Close(fd)
	if err := unix.IoctlSetInt(fd, unix.LOOP_SET_CAPACITY, 0); err != nil {
		return &os.PathError{Op: "LOOP_SET_CAPACITY", Path: dev, Err: err}
	}
	return nil
}

// symlink points link at target, replacing whatever link was there.
func symlink(target, link string) error {
	if cur, err := os.Readlink(link); err == nil && cur == target {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		return fmt.Errorf("by-id link: %w", err)
	}
	tmp := link + ".tmp" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("by-id link: %w", err)
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("by-id link: %w", err)
	}
	return nil
}

// release detaches the loop device dev backed by back and waits, up to
// timeout, until the kernel has freed it. A device that is still held (a
// mounted file system, an open descriptor) is yanked to capacity zero and
// left to autoclear at its last close; release then reports busy. A device
// that is already free, or now backs another file, is left alone.
func release(ctx context.Context, dev, back string, timeout time.Duration) (busy bool, err error) {
	// An exclusive open fails with EBUSY exactly when a file system (or
	// another exclusive opener such as mkfs) holds the device.
	fd, err := unix.Open(dev, unix.O_RDWR|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EBUSY) {
		busy = true
		fd, err = unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
	}
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENXIO) {
		return false, nil
	}
	if err != nil {
		return false, &os.PathError{Op: "open", Path: dev, Err: err}
	}
	if d, err := readDevice(sysDir(dev), dev); unbound(err) || (err == nil && d.BackingFile != back) {
		unix.Close(fd) // freed, or rebound to another file, since the caller looked
		return false, nil
	} else if err != nil {
		unix.Close(fd)
		return false, err
	}
	var errs []error
	if busy {
		if err := yank(fd); err != nil {
			errs = append(errs, &os.PathError{Op: "yank", Path: dev, Err: err})
		}
	}
	if err := unix.IoctlSetInt(fd, unix.LOOP_CLR_FD, 0); err != nil && !errors.Is(err, unix.ENXIO) {
		errs = append(errs, &os.PathError{Op: "LOOP_CLR_FD", Path: dev, Err: err})
	}
	unix.Close(fd) // the last close frees the device
	if busy || len(errs) > 0 {
		return busy, errors.Join(errs...)
	}
	freed, err := waitFreed(ctx, dev, back, timeout)
	if err != nil || freed {
		return false, err
	}
	// Someone still holds it without an exclusive claim: yank it too, so
	// nothing written through it reaches the volume any more.
	if fd, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0); err == nil {
		if err := yank(fd); err != nil && !errors.Is(err, unix.ENXIO) {
			errs = append(errs, &os.PathError{Op: "yank", Path: dev, Err: err})
		}
		unix.Close(fd)
	}
	return true, errors.Join(errs...)
}

// yank shrinks a bound loop device to zero capacity by moving its data offset
// beyond the end of the backing file, so I/O through it fails like I/O to an
// unplugged disk.
func yank(fd int) error {
	st, err := unix.IoctlLoopGetStatus64(fd)
	if err != nil {
		return err
	}
	st.Offset = yankOffset
	return unix.IoctlLoopSetStatus64(fd, st)
}

// waitFreed polls sysfs with a short exponential backoff until dev no longer
// backs back, or timeout passes.
func waitFreed(ctx context.Context, dev, back string, timeout time.Duration) (bool, error) {
	deadline := time.Now().Add(timeout)
	delay := time.Millisecond
	for {
		d, err := readDevice(sysDir(dev), dev)
		if unbound(err) || (err == nil && d.BackingFile != back) {
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("wait for %s to be freed: %w", dev, err)
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		if err := sleep(ctx, delay); err != nil {
			return false, fmt.Errorf("wait for %s to be freed: %w", dev, err)
		}
		delay = min(2*delay, 100*time.Millisecond)
	}
}

// sysDir is dev's directory in sysfs.
func sysDir(dev string) string { return filepath.Join(sysBlock, filepath.Base(dev)) }

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
