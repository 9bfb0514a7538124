package hostdisk

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// blockNode returns some existing block device node: only its type is
// looked at (resolveBlock stats it), nothing is read or written.
func blockNode(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/dev/loop0", "/dev/loop1", "/dev/vda", "/dev/sda"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode()&fs.ModeDevice != 0 && fi.Mode()&fs.ModeCharDevice == 0 {
			return p
		}
	}
	return loopDevice(t, 1<<20, nil)
}

// nodeHost is a Host whose dev and sys roots are fresh directories (this
// machine has no /dev/disk), like a simulated node.
func nodeHost(t *testing.T, cfg Config) (h *Host, devRoot, sysRoot string) {
	t.Helper()
	base := t.TempDir()
	cfg.DevRoot, cfg.SysRoot = filepath.Join(base, "dev"), filepath.Join(base, "sys")
	for _, d := range []string{cfg.DevRoot, cfg.SysRoot} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg.MountRoot = filepath.Join(base, "mnt")
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h, cfg.DevRoot, cfg.SysRoot
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// TestWaitForDeviceInotify: the by-id link appears 200 ms after the wait
// starts, in a by-id directory that does not exist yet (only the dev root
// does). The fallback poll is 30 s, so finding it within 1 s proves the
// inotify path (watch the parent, move down when disk/ and by-id/ appear).
func TestWaitForDeviceInotify(t *testing.T) {
	node := blockNode(t)
	for _, tc := range []struct {
		name, linkName string
		precreate      string // directory that exists before the wait
	}{
		{"no disk dir yet, virtio short serial", "virtio-0b6a1a8e-3c2f-4c86-9", ""},
		{"by-id exists, scsi full id", "scsi-0QEMU_QEMU_HARDDISK_" + testVolumeID, "disk/by-id"},
		{"disk exists, wwn", "wwn-0x0b6a1a8e3c2f4c869f3e2d1b7c9e5a41", "disk"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, devRoot, _ := nodeHost(t, Config{FallbackPoll: 30 * time.Second, DeviceTimeout: 10 * time.Second})
			if tc.precreate != "" {
				if err := os.MkdirAll(filepath.Join(devRoot, tc.precreate), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			link := filepath.Join(devRoot, "disk", "by-id", tc.linkName)
			created := make(chan time.Time, 1)
			go func() {
				time.Sleep(200 * time.Millisecond)
				// udev style: directories first, then a relative link to ../../<name>.
				_ = os.MkdirAll(filepath.Dir(link), 0o755)
				_ = os.Symlink(node, filepath.Join(devRoot, "vdb"))
				_ = os.Symlink("../../vdb", link)
				created <- time.Now()
			}()
			start := time.Now()
			d, err := h.WaitForDevice(context.Background(), testVolumeID)
			found := time.Now()
			if err != nil {
				t.Fatalf("WaitForDevice: %v", err)
			}
			at := <-created
			if d.Path != node || d.Via != link {
				t.Errorf("WaitForDevice = %+v, want %s via %s", d, node, link)
			}
			lag := found.Sub(at)
			t.Logf("found %v after the link was created (wait started %v earlier)", lag, at.Sub(start))
			if lag > time.Second {
				t.Errorf("found %v after creation: not the inotify path (fallback poll is 30 s)", lag)
			}
		})
	}
}

// TestWaitForDeviceByIDRecreated: the watched by-id directory is removed
// and created again (as a udev restart may do) before the link appears; the
// watch follows it and the link is still found by inotify, not the 30 s poll.
func TestWaitForDeviceByIDRecreated(t *testing.T) {
	node := blockNode(t)
	h, devRoot, _ := nodeHost(t, Config{FallbackPoll: 30 * time.Second, DeviceTimeout: 10 * time.Second})
	byID := filepath.Join(devRoot, "disk", "by-id")
	if err := os.MkdirAll(byID, 0o755); err != nil {
		t.Fatal(err)
	}
	created := make(chan time.Time, 1)
	go func() {
		time.Sleep(100 * time.Millisecond)
		_ = os.RemoveAll(filepath.Join(devRoot, "disk"))
		time.Sleep(100 * time.Millisecond)
		_ = os.MkdirAll(byID, 0o755)
		time.Sleep(100 * time.Millisecond)
		_ = os.Symlink(node, filepath.Join(byID, "virtio-"+testVolumeID))
		created <- time.Now()
	}()
	d, err := h.WaitForDevice(context.Background(), testVolumeID)
	if err != nil || d.Path != node {
		t.Fatalf("WaitForDevice = %+v, %v", d, err)
	}
	if lag := time.Since(<-created); lag > time.Second {
		t.Errorf("found %v after the link appeared: the watch was lost", lag)
	}
}

func TestWaitForDeviceTimeout(t *testing.T) {
	h, _, _ := nodeHost(t, Config{FallbackPoll: 50 * time.Millisecond, DeviceTimeout: 300 * time.Millisecond})
	start := time.Now()
	_, err := h.WaitForDevice(context.Background(), testVolumeID)
	took := time.Since(start)
	var nf *DeviceNotFoundError
	if !errors.As(err, &nf) || !errors.Is(err, ErrDeviceNotFound) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want *DeviceNotFoundError wrapping ErrDeviceNotFound and DeadlineExceeded", err)
	}
	if len(nf.Candidates) != 6 || nf.Candidates[5] != filepath.Join(h.Config().SysRoot, "block", "*", "serial") {
		t.Errorf("candidates = %q, want 5 by-id paths and the sysfs serial glob", nf.Candidates)
	}
	if took < 300*time.Millisecond || took > 2*time.Second {
		t.Errorf("timed out after %v, want about 300 ms", took)
	}

	// The caller's context ends it earlier, and says so.
	h, _, _ = nodeHost(t, Config{DeviceTimeout: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err = h.WaitForDevice(ctx, testVolumeID)
	if !errors.Is(err, ErrDeviceNotFound) || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled wait err = %v, want ErrDeviceNotFound and context.Canceled", err)
	}

	if _, err := h.WaitForDevice(context.Background(), "../etc"); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("bad volume id err = %v, want ErrInvalidArgument", err)
	}
}

// TestFindDeviceRules: by-id candidates win over serials; a link to a
// non-block file or a dangling link is not a device; the sysfs serial (first
// 20 characters) finds a disk that has no by-id link at all.
func TestFindDeviceRules(t *testing.T) {
	node := blockNode(t)
	h, devRoot, sysRoot := nodeHost(t, Config{})
	byID := filepath.Join(devRoot, "disk", "by-id")

	if _, err := h.FindDevice(testVolumeID); !errors.Is(err, ErrDeviceNotFound) {
		t.Fatalf("empty node: err = %v, want ErrDeviceNotFound", err)
	}
	// Not devices: a regular file, a character device, a dangling link.
	regular := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	symlink(t, regular, filepath.Join(byID, "virtio-0b6a1a8e-3c2f-4c86-9"))
	symlink(t, "/dev/null", filepath.Join(byID, "virtio-"+testVolumeID))
	symlink(t, "../../vdz", filepath.Join(byID, "scsi-0QEMU_QEMU_HARDDISK_0b6a1a8e-3c2f-4c86-9"))
	if _, err := h.FindDevice(testVolumeID); !errors.Is(err, ErrDeviceNotFound) {
		t.Fatalf("non-devices: err = %v, want ErrDeviceNotFound", err)
	}

	// sysfs: vdc's serial is the volume id's first 20 characters.
	serial := filepath.Join(sysRoot, "block", "vdc", "serial")
	if err := os.MkdirAll(filepath.Dir(serial), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(serial, []byte("0b6a1a8e-3c2f-4c86-9\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	otherSerial := filepath.Join(sysRoot, "block", "vdb", "serial")
	_ = os.MkdirAll(filepath.Dir(otherSerial), 0o755)
	_ = os.WriteFile(otherSerial, []byte("5e2f0c11-aaaa-4bbb-8\n"), 0o644)
	symlink(t, node, filepath.Join(devRoot, "vdc"))
	symlink(t, node, filepath.Join(devRoot, "vdb"))
	d, err := h.FindDevice(testVolumeID)
	if err != nil || d.Path != node || d.Via != serial {
		t.Fatalf("FindDevice by serial = %+v, %v; want %s via %s", d, err, node, serial)
	}

	// A by-id link wins over the serial.
	wwn := filepath.Join(byID, "wwn-0x0b6a1a8e3c2f4c869f3e2d1b7c9e5a41")
	symlink(t, "../../vdc", wwn)
	d, err = h.FindDevice(testVolumeID)
	if err != nil || d.Via != wwn {
		t.Fatalf("FindDevice = %+v, %v; want via %s", d, err, wwn)
	}
}

// TestWaitForDeviceGone: the link disappears 200 ms into the wait and is
// noticed by inotify (fallback poll 30 s); a device that stays is a typed
// timeout.
func TestWaitForDeviceGone(t *testing.T) {
	node := blockNode(t)
	h, devRoot, _ := nodeHost(t, Config{FallbackPoll: 30 * time.Second, DeviceTimeout: 10 * time.Second})
	link := filepath.Join(devRoot, "disk", "by-id", "virtio-0b6a1a8e-3c2f-4c86-9")
	symlink(t, node, link)
	removed := make(chan time.Time, 1)
	time.AfterFunc(200*time.Millisecond, func() { _ = os.Remove(link); removed <- time.Now() })
	if err := h.WaitForDeviceGone(context.Background(), testVolumeID); err != nil {
		t.Fatalf("WaitForDeviceGone: %v", err)
	}
	if lag := time.Since(<-removed); lag > time.Second {
		t.Errorf("noticed %v after removal: not the inotify path", lag)
	}

	h, devRoot, _ = nodeHost(t, Config{FallbackPoll: 50 * time.Millisecond, DeviceTimeout: 200 * time.Millisecond})
	symlink(t, node, filepath.Join(devRoot, "disk", "by-id", "wwn-0x0b6a1a8e3c2f4c869f3e2d1b7c9e5a41"))
	err := h.WaitForDeviceGone(context.Background(), testVolumeID)
	var e *Error
	if !errors.Is(err, ErrDeviceStillPresent) || !errors.As(err, &e) || e.Device != node {
		t.Errorf("err = %v, want ErrDeviceStillPresent naming %s", err, node)
	}
}

// TestWaitForDeviceSerialByPoll: sysfs cannot be watched with inotify; a
// serial that shows up is found by the fallback poll.
func TestWaitForDeviceSerialByPoll(t *testing.T) {
	node := blockNode(t)
	h, devRoot, sysRoot := nodeHost(t, Config{FallbackPoll: 100 * time.Millisecond, DeviceTimeout: 5 * time.Second})
	symlink(t, node, filepath.Join(devRoot, "vdd"))
	time.AfterFunc(150*time.Millisecond, func() {
		p := filepath.Join(sysRoot, "block", "vdd", "serial")
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		_ = os.WriteFile(p, []byte(testVolumeID+"\n"), 0o644)
	})
	d, err := h.WaitForDevice(context.Background(), testVolumeID)
	if err != nil || d.Path != node {
		t.Fatalf("WaitForDevice = %+v, %v", d, err)
	}
}
