//go:build !linux

package hostdisk

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/moby/sys/mountinfo"
)

// The node side is Linux-only; elsewhere the package compiles and every
// operation that needs the kernel reports errors.ErrUnsupported.
func errNotLinux() error {
	return fmt.Errorf("hostdisk on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

func sysMount(string, string, string, MountOptions) error { return errNotLinux() }

func sysUnmount(string, UnmountMethod) error { return errNotLinux() }

// ParseMountInfo parses a /proc/<pid>/mountinfo table (Linux only).
func ParseMountInfo(io.Reader) ([]*mountinfo.Info, error) { return nil, errNotLinux() }

func deviceNumber(string) (int, int, error) { return 0, 0, errNotLinux() }

func deviceSizeRO(*os.File) (int64, bool, error) { return 0, false, errNotLinux() }

func claimExclusive(string) error { return errNotLinux() }
