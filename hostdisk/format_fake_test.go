package hostdisk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// fakeDisks is a stateful fake of the exec seam only: it remembers which
// filesystem each "device" holds, answers blkid from that, makes mkfs change
// it, and logs every call. The devices are plain files, so the magic-number
// probe still reads real bytes.
type fakeDisks struct {
	mu        sync.Mutex
	fs        map[string]string // device -> TYPE blkid reports
	blkidExit int               // when non-zero, blkid exits with it
	mkfsExit  int               // when non-zero, mkfs fails with it
	mkfsNoop  bool              // mkfs "succeeds" but writes nothing
	startErr  error             // when set, no program can be started
	calls     []string
}

func (f *fakeDisks) Run(_ context.Context, name string, args ...string) (Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, name+" "+strings.Join(args, " "))
	if f.startErr != nil {
		return Result{}, f.startErr
	}
	dev := args[len(args)-1]
	switch name {
	case "blkid":
		if !slices.Equal(args, BlkidArgs(dev)) {
			return Result{ExitCode: 4, Stderr: []byte("fake: unexpected blkid args")}, nil
		}
		if f.blkidExit != 0 {
			return Result{ExitCode: f.blkidExit}, nil
		}
		t, ok := f.fs[dev]
		if !ok {
			return Result{ExitCode: 2}, nil
		}
		return Result{Stdout: fmt.Appendf(nil, "DEVNAME=%s\nTYPE=%s\nUSAGE=filesystem\n", dev, t)}, nil
	case "mkfs.ext4", "mkfs.xfs":
		if f.mkfsExit != 0 {
			return Result{ExitCode: f.mkfsExit, Stderr: []byte("fake mkfs: no space")}, nil
		}
		if !f.mkfsNoop {
			f.fs[dev] = strings.TrimPrefix(name, "mkfs.")
		}
		return Result{}, nil
	}
	return Result{ExitCode: 127}, nil
}

func (f *fakeDisks) mkfsCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if strings.HasPrefix(c, "mkfs") {
			out = append(out, c)
		}
	}
	return out
}

func newFakeHost(t *testing.T, f *fakeDisks) *Host {
	t.Helper()
	if f.fs == nil {
		f.fs = map[string]string{}
	}
	h, err := New(Config{MountRoot: t.TempDir(), Runner: f, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// fileDevice is a 1 MiB file standing in for a device, with b written at off.
func fileDevice(t *testing.T, off int64, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(p, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if b != nil {
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func TestFormatIfBlankRulesAtExecSeam(t *testing.T) {
	ctx := context.Background()

	t.Run("blank is formatted once, then left alone", func(t *testing.T) {
		f := &fakeDisks{}
		h := newFakeHost(t, f)
		dev := fileDevice(t, 0, nil)
		r, err := h.FormatIfBlank(ctx, dev, "")
		if err != nil || !r.Formatted || r.FSType != "ext4" {
			t.Fatalf("first FormatIfBlank = %+v, %v; want formatted ext4", r, err)
		}
		r, err = h.FormatIfBlank(ctx, dev, "ext4")
		if err != nil || r.Formatted || r.FSType != "ext4" {
			t.Fatalf("second FormatIfBlank = %+v, %v; want ext4 left alone", r, err)
		}
		want := []string{
			"blkid -p -o export " + dev,
			"mkfs.ext4 -q -E nodiscard,lazy_itable_init=1,lazy_journal_init=0 " + dev,
			"blkid -p -o export " + dev, // postcondition
			"blkid -p -o export " + dev, // second call: probe only
		}
		if !slices.Equal(f.calls, want) {
			t.Errorf("calls =\n%q\nwant\n%q", f.calls, want)
		}
	})

	t.Run("xfs asked for an ext4 device", func(t *testing.T) {
		f := &fakeDisks{}
		h := newFakeHost(t, f)
		dev := fileDevice(t, 0, nil)
		f.fs[dev] = "ext4"
		_, err := h.FormatIfBlank(ctx, dev, "xfs")
		if !errors.Is(err, ErrFilesystemMismatch) {
			t.Fatalf("err = %v, want ErrFilesystemMismatch", err)
		}
		if m := f.mkfsCalls(); len(m) != 0 {
			t.Errorf("mkfs ran: %q", m)
		}
	})

	// blkid sees nothing, the bytes say otherwise: the second opinion wins.
	for name, magic := range map[string]struct {
		off int64
		b   []byte
	}{
		"luks":        {0, []byte("LUKS\xba\xbe")},
		"swap":        {4086, []byte("SWAPSPACE2")},
		"lvm":         {512, lvmLabel()},
		"gpt":         {512, []byte("EFI PART")},
		"md":          {4096, []byte{0xfc, 0x4e, 0x2b, 0xa9}},
		"mbr":         {510, []byte{0x55, 0xaa}},
		"ext":         {1080, []byte{0x53, 0xef}},
		"xfs for ext": {0, []byte("XFSB")},
	} {
		t.Run("magic only: "+name, func(t *testing.T) {
			f := &fakeDisks{}
			h := newFakeHost(t, f)
			dev := fileDevice(t, magic.off, magic.b)
			r, err := h.FormatIfBlank(ctx, dev, "ext4")
			if r.Formatted || len(f.mkfsCalls()) != 0 {
				t.Fatalf("formatted a device with %s magic: %+v, calls %q", name, r, f.calls)
			}
			switch name {
			case "ext": // a filesystem the probe recognises: mount it, don't format
				if err != nil || r.FSType != "ext4" {
					t.Errorf("err = %v, fstype %q; want nil, ext4", err, r.FSType)
				}
			case "xfs for ext":
				if !errors.Is(err, ErrFilesystemMismatch) {
					t.Errorf("err = %v, want ErrFilesystemMismatch", err)
				}
			default:
				if !errors.Is(err, ErrHasSignature) {
					t.Errorf("err = %v, want ErrHasSignature", err)
				}
			}
		})
	}

	failures := []struct {
		name    string
		fake    *fakeDisks
		dev     func(t *testing.T) string
		fstype  string
		wantErr error
		wantRun int // programs started
	}{
		{"blkid usage error", &fakeDisks{blkidExit: 4}, func(t *testing.T) string { return fileDevice(t, 0, nil) }, "ext4", ErrProbeFailed, 1},
		{"blkid ambivalent", &fakeDisks{blkidExit: 8}, func(t *testing.T) string { return fileDevice(t, 0, nil) }, "ext4", ErrHasSignature, 1},
		{"blkid cannot start", &fakeDisks{startErr: errors.New("exec: blkid: not found")}, func(t *testing.T) string { return fileDevice(t, 0, nil) }, "ext4", ErrProbeFailed, 1},
		{"mkfs fails", &fakeDisks{mkfsExit: 1}, func(t *testing.T) string { return fileDevice(t, 0, nil) }, "xfs", ErrFormatFailed, 2},
		{"mkfs leaves nothing", &fakeDisks{mkfsNoop: true}, func(t *testing.T) string { return fileDevice(t, 0, nil) }, "ext4", ErrFormatFailed, 3},
		{"relative path", &fakeDisks{}, func(*testing.T) string { return "disk.img" }, "ext4", ErrInvalidArgument, 0},
		{"device missing", &fakeDisks{}, func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") }, "ext4", ErrProbeFailed, 1},
		{"fstype not allowed", &fakeDisks{}, func(t *testing.T) string { return fileDevice(t, 0, nil) }, "ntfs", ErrInvalidArgument, 0},
	}
	for _, tt := range failures {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.fake
			h := newFakeHost(t, f)
			r, err := h.FormatIfBlank(ctx, tt.dev(t), tt.fstype)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if r.Formatted {
				t.Errorf("Formatted = true on failure")
			}
			if len(f.calls) != tt.wantRun {
				t.Errorf("ran %d programs (%q), want %d", len(f.calls), f.calls, tt.wantRun)
			}
		})
	}
}
