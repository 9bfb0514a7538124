package hostdisk

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

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
