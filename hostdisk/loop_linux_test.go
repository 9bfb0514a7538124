package hostdisk

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cinderwarden/cinderwarden/internal/testenv"
)

// run runs a program (argument list, no shell) and fails the test on error.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, errb.String())
	}
	return strings.TrimSpace(out.String())
}

// loopDevice attaches a sparse file of size bytes to a free loop device and
// detaches it (and removes the file) when the test ends. prepare, if not
// nil, runs on the backing file first.
func loopDevice(t *testing.T, size int64, prepare func(file string)) string {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "losetup")
	file := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if prepare != nil {
		prepare(file)
	}
	dev := run(t, "losetup", "--find", "--show", file)
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("cleanup: losetup -d %s: %v: %s", dev, err, out)
		}
	})
	return dev
}

// recorder wraps the real exec seam and logs every program started, so a
// test can prove that mkfs never ran.
type recorder struct {
	mu    sync.Mutex
	calls []string
}

func (r *recorder) Run(ctx context.Context, name string, args ...string) (Result, error) {
	r.mu.Lock()
	r.calls = append(r.calls, name+" "+strings.Join(args, " "))
	r.mu.Unlock()
	return ExecRunner{}.Run(ctx, name, args...)
}

func (r *recorder) mkfsCalls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, c := range r.calls {
		if strings.HasPrefix(c, "mkfs") {
			out = append(out, c)
		}
	}
	return out
}

// realHost is a Host on the real machine with its own mount root; any mount
// left under it is lazily unmounted when the test ends.
func realHost(t *testing.T, cfg Config) (*Host, *recorder) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "blkid", "mkfs.ext4", "mkfs.xfs")
	rec := &recorder{}
	if cfg.MountRoot == "" {
		cfg.MountRoot = t.TempDir()
	}
	cfg.Runner = rec
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		vms, err := h.VolumeMounts()
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		for _, vm := range vms {
			t.Errorf("test left %s mounted; unmounting lazily", vm.Mountpoint)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, _ = h.UnmountPath(ctx, vm.Mountpoint, UnmountEscalate)
			cancel()
		}
	})
	return h, rec
}

// blkidValue returns one KEY of `blkid -p -o export dev` ("" if absent).
func blkidValue(t *testing.T, dev, key string) string {
	t.Helper()
	out, _ := exec.Command("blkid", "-p", "-o", "export", dev).Output()
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && k == key {
			return v
		}
	}
	return ""
}

func execCommand(name string, args ...string) *exec.Cmd { return exec.Command(name, args...) }
