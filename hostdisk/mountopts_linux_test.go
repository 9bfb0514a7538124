package hostdisk

import (
	"errors"
	"slices"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseMountOptions(t *testing.T) {
	tests := []struct {
		in      []string
		want    []string // canonical Strings()
		flags   uintptr
		data    string
		wantErr bool
	}{
		{in: nil, want: []string{"rw"}},
		{in: []string{"ro"}, want: []string{"ro"}, flags: unix.MS_RDONLY},
		{in: []string{"rw,noatime"}, want: []string{"rw", "noatime"}, flags: unix.MS_NOATIME},
		{in: []string{"nosuid,nodev", "noexec", ""}, want: []string{"rw", "nosuid", "nodev", "noexec"},
			flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{in: []string{" relatime , nodiratime "}, want: []string{"rw", "nodiratime", "relatime"},
			flags: unix.MS_RELATIME | unix.MS_NODIRATIME},
		{in: []string{"strictatime", "strictatime"}, want: []string{"rw", "strictatime"}, flags: unix.MS_STRICTATIME},
		{in: []string{"discard"}, want: []string{"rw", "discard"}, data: "discard"},
		{in: []string{"nodiscard", "sync", "dirsync"}, want: []string{"rw", "sync", "dirsync", "nodiscard"},
			flags: unix.MS_SYNCHRONOUS | unix.MS_DIRSYNC, data: "nodiscard"},
		{in: []string{"ro,rw"}, wantErr: true},
		{in: []string{"noatime", "relatime"}, wantErr: true},
		{in: []string{"discard,nodiscard"}, wantErr: true},
		{in: []string{"nobarrier"}, wantErr: true},
		{in: []string{"data=writeback"}, wantErr: true},
		{in: []string{"uid=0"}, wantErr: true},
		{in: []string{"remount"}, wantErr: true},
		{in: []string{"bind"}, wantErr: true},
	}
	for _, tt := range tests {
		o, err := ParseMountOptions(tt.in)
		if tt.wantErr {
			if !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("ParseMountOptions(%q) err = %v, want ErrInvalidArgument", tt.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseMountOptions(%q): %v", tt.in, err)
			continue
		}
		if got := o.Strings(); !slices.Equal(got, tt.want) {
			t.Errorf("ParseMountOptions(%q).Strings() = %q, want %q", tt.in, got, tt.want)
		}
		if fl, data := o.flags(); fl != tt.flags || data != tt.data {
			t.Errorf("ParseMountOptions(%q).flags() = %#x %q, want %#x %q", tt.in, fl, data, tt.flags, tt.data)
		}
	}
}

func TestIsCorruptedMnt(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{syscall.ENOTCONN, true},
		{syscall.ESTALE, true},
		{syscall.EIO, true},
		{syscall.EACCES, true},
		{syscall.EHOSTDOWN, true},
		{syscall.EWOULDBLOCK, true},
		{syscall.EAGAIN, true}, // same errno as EWOULDBLOCK on Linux
		{syscall.ENODEV, true},
		{&osPathError{syscall.ENOTCONN}, true}, // wrapped, as os.Stat returns it
		{syscall.ENOENT, false},                // not mounted, or gone: not corrupted
		{syscall.ENOTDIR, false},
		{syscall.EPERM, false},
		{errors.New("ENOTCONN"), false}, // text is never matched
	}
	for _, tt := range tests {
		if got := IsCorruptedMnt(tt.err); got != tt.want {
			t.Errorf("IsCorruptedMnt(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// osPathError wraps an errno the way *fs.PathError does.
type osPathError struct{ err error }

func (e *osPathError) Error() string { return "stat /mnt/x: " + e.err.Error() }
func (e *osPathError) Unwrap() error { return e.err }
