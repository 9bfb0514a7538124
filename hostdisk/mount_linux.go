package hostdisk

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Mounting uses mount(2)/umount2(2) directly rather than exec'ing mount(8):
// the errno comes back as an error value (EBUSY, EINVAL, ...) instead of text
// to parse, no fstab/mtab/helper program is consulted, the plugin's rootfs
// needs no util-linux mount, and the fstype is always explicit (the kernel
// never guesses one).

// flags maps the options to mount(2) flags and filesystem data.
func (o MountOptions) flags() (uintptr, string) {
	var fl uintptr
	for _, f := range []struct {
		on  bool
		bit uintptr
	}{{o.ReadOnly, unix.MS_RDONLY}, {o.NoSuid, unix.MS_NOSUID}, {o.NoDev, unix.MS_NODEV},
		{o.NoExec, unix.MS_NOEXEC}, {o.NoDirAtime, unix.MS_NODIRATIME}, {o.Sync, unix.MS_SYNCHRONOUS},
		{o.DirSync, unix.MS_DIRSYNC}, {o.Atime == "noatime", unix.MS_NOATIME},
		{o.Atime == "relatime", unix.MS_RELATIME}, {o.Atime == "strictatime", unix.MS_STRICTATIME}} {
		if f.on {
			fl |= f.bit
		}
	}
	return fl, o.Discard
}

// sysMount mounts dev at target with mount(2).
func sysMount(dev, target, fstype string, o MountOptions) error {
	flags, data := o.flags()
	return unix.Mount(dev, target, fstype, flags, data)
}

// sysUnmount runs one umount2(2) step; symlinks in target are never
// followed.
func sysUnmount(target string, step UnmountMethod) error {
	flags := unix.UMOUNT_NOFOLLOW
	switch step {
	case UnmountedForce:
		flags |= unix.MNT_FORCE
	case UnmountedLazy:
		flags |= unix.MNT_DETACH
	}
	return unix.Unmount(target, flags)
}

// ParseMountInfo parses a /proc/<pid>/mountinfo table. A line the kernel
// could not have written (fewer than 10 fields, no "-" separator, a mount
// id or major:minor that is not a decimal number) fails the whole table with
// an ErrInvalidArgument error naming the line: moby's parser alone reads
// "x:y" as device 0:0, and a table with a made-up device must not be
// matched against real ones.
func ParseMountInfo(r io.Reader) ([]*mountinfo.Info, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	n := 0
	for sc.Scan() {
		n++
		if err := checkMountInfoLine(sc.Text()); err != nil {
			return nil, fmt.Errorf("mountinfo line %d: %w: %w", n, ErrInvalidArgument, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("mountinfo line %d: %w: %w", n+1, ErrInvalidArgument, err)
	}
	infos, err := mountinfo.GetMountsFromReader(bytes.NewReader(data), nil)
	if err != nil {
		return nil, fmt.Errorf("mountinfo: %w: %w", ErrInvalidArgument, err)
	}
	return infos, nil
}

// checkMountInfoLine checks what moby's parser takes on trust: the field
// count and the numbers (it turns anything unparsable into 0).
func checkMountInfoLine(line string) error {
	fields := strings.Split(line, " ")
	if len(fields) < 10 {
		return fmt.Errorf("%d fields, want at least 10", len(fields))
	}
	major, minor, ok := strings.Cut(fields[2], ":")
	if !ok {
		return fmt.Errorf("major:minor %q has no colon", fields[2])
	}
	for _, f := range []struct{ name, v string }{
		{"mount id", fields[0]}, {"parent id", fields[1]}, {"major", major}, {"minor", minor},
	} {
		if _, err := strconv.Atoi(f.v); err != nil || strings.TrimLeft(f.v, "0123456789") != "" {
			return fmt.Errorf("%s %q is not a decimal number", f.name, f.v)
		}
	}
	return nil
}

// deviceNumber returns the major:minor of a block device node.
func deviceNumber(dev string) (int, int, error) {
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		return 0, 0, &fs.PathError{Op: "stat", Path: dev, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return 0, 0, &fs.PathError{Op: "stat", Path: dev, Err: errors.New("not a block device")}
	}
	return int(unix.Major(st.Rdev)), int(unix.Minor(st.Rdev)), nil
}

// deviceSizeRO returns the size of an open device or file and, for a block
// device, whether the kernel marks it read-only (BLKROGET).
func deviceSizeRO(f *os.File) (int64, bool, error) {
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, false, err
	}
	fi, err := f.Stat()
	if err != nil {
		return 0, false, err
	}
	if fi.Mode()&os.ModeDevice == 0 {
		return size, false, nil
	}
	ro, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKROGET)
	if err != nil {
		return 0, false, err
	}
	return size, ro != 0, nil
}

// claimExclusive opens a block device with O_EXCL and closes it again: the
// kernel refuses (EBUSY) while the device is mounted or claimed by
// device-mapper, md or swap. Other files are not checked.
func claimExclusive(dev string) error {
	fi, err := os.Stat(dev)
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeDevice == 0 || fi.Mode()&os.ModeCharDevice != 0 {
		return nil
	}
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open O_EXCL", Path: dev, Err: err}
	}
	return unix.Close(fd)
}
