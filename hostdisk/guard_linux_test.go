package hostdisk

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cinderwarden/cinderwarden/internal/testenv"
	"golang.org/x/sys/unix"
)

const testVolumeID = "0b6a1a8e-3c2f-4c86-9f3e-2d1b7c9e5a41"

// writeAt writes b at off into file.
func writeAt(t *testing.T, file string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func sha(t *testing.T, dev string) [32]byte {
	t.Helper()
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

// TestFormatGuardRealDevices puts a real signature on a real loop device,
// then asks for it to be formatted and mounted: no mkfs may ever run, the
// device's bytes (or, for filesystems, its UUID) must not change, and only a
// matching filesystem may be mounted.
func TestFormatGuardRealDevices(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "sfdisk", "mkswap", "cryptsetup", "mkfs.ext4", "mkfs.xfs")
	const mib = 1 << 20
	tests := []struct {
		name    string
		size    int64
		prepare func(t *testing.T, file string)
		// blkidType is what blkid must see (proves the signature is real);
		// "" where only the magic probe can see it.
		blkidKey, blkidType string
		wantFormatErr       error // FormatIfBlank(ext4); nil = has ext4, left alone
		mountable           bool  // Mount with fstype "" succeeds
	}{
		{"ext4", 64 * mib, func(t *testing.T, f string) { run(t, "mkfs.ext4", "-q", f) }, "TYPE", "ext4", nil, true},
		{"xfs", 320 * mib, func(t *testing.T, f string) { run(t, "mkfs.xfs", "-q", f) }, "TYPE", "xfs", ErrFilesystemMismatch, true},
		{"mbr partition table", 64 * mib, func(t *testing.T, f string) {
			sfdisk(t, f, "label: dos\n,10M,83\n")
		}, "PTTYPE", "dos", ErrHasSignature, false},
		{"gpt partition table", 64 * mib, func(t *testing.T, f string) {
			sfdisk(t, f, "label: gpt\n,10M\n")
		}, "PTTYPE", "gpt", ErrHasSignature, false},
		{"luks2", 64 * mib, func(t *testing.T, f string) {
			key := filepath.Join(t.TempDir(), "key")
			if err := os.WriteFile(key, []byte("not-a-real-secret-0123456789abcdef"), 0o600); err != nil {
				t.Fatal(err)
			}
			run(t, "cryptsetup", "luksFormat", "-q", "--batch-mode", "--pbkdf", "pbkdf2",
				"--pbkdf-force-iterations", "1000", "--key-file", key, f)
		}, "TYPE", "crypto_LUKS", ErrHasSignature, false},
		{"swap", 64 * mib, func(t *testing.T, f string) { run(t, "mkswap", f) }, "TYPE", "swap", ErrHasSignature, false},
		// pvcreate (lvm2) is not installed here: the PV label is written byte
		// by byte, CRC included, and blkid recognises it as LVM2_member.
		{"lvm2 pv label", 64 * mib, func(t *testing.T, f string) { writeAt(t, f, 512, lvmLabel()) }, "TYPE", "LVM2_member", ErrHasSignature, false},
		// mdadm is not installed: an md 1.2 superblock with a valid checksum
		// is written byte by byte; blkid recognises it as a RAID member.
		{"md 1.2 superblock", 64 * mib, func(t *testing.T, f string) { writeAt(t, f, 4096, mdSuperblock12()) }, "TYPE", "linux_raid_member", ErrHasSignature, false},
		// Only the md magic number: blkid rejects it (no valid checksum), the
		// magic-number probe alone catches it.
		{"md magic only", 64 * mib, func(t *testing.T, f string) { writeAt(t, f, 4096, []byte{0xfc, 0x4e, 0x2b, 0xa9}) }, "", "", ErrHasSignature, false},
		// Only the ext magic, no valid superblock: blkid says nothing, the
		// magic probe says "ext", the mount fails — and nothing is formatted.
		{"ext magic, broken superblock", 64 * mib, func(t *testing.T, f string) { writeAt(t, f, 1080, []byte{0x53, 0xef}) }, "", "", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			dev := loopDevice(t, tt.size, func(f string) { tt.prepare(t, f) })
			h, rec := realHost(t, Config{})
			if tt.blkidKey != "" {
				if got := blkidValue(t, dev, tt.blkidKey); got != tt.blkidType {
					t.Fatalf("blkid %s = %q, want %q: the signature was not made", tt.blkidKey, got, tt.blkidType)
				}
			}
			uuid := blkidValue(t, dev, "UUID")
			before := sha(t, dev)

			r, err := h.FormatIfBlank(ctx, dev, "ext4")
			if tt.wantFormatErr == nil && err != nil || !errors.Is(err, tt.wantFormatErr) {
				t.Errorf("FormatIfBlank(ext4) err = %v, want %v", err, tt.wantFormatErr)
			}
			if r.Formatted {
				t.Errorf("FormatIfBlank formatted a device with %s", tt.name)
			}
			if sha(t, dev) != before {
				t.Errorf("device bytes changed by FormatIfBlank")
			}

			mr, err := h.Mount(ctx, MountRequest{VolumeID: testVolumeID, Device: dev})
			if tt.mountable {
				if err != nil {
					t.Fatalf("Mount: %v", err)
				}
				if mr.Formatted || mr.FSType != blkidValue(t, dev, "TYPE") {
					t.Errorf("Mount = %+v", mr)
				}
				if _, err := h.Unmount(ctx, testVolumeID, UnmountNormal); err != nil {
					t.Fatalf("Unmount: %v", err)
				}
			} else {
				if err == nil {
					t.Fatalf("Mount of a device with %s succeeded: %+v", tt.name, mr)
				}
				if !errors.Is(err, ErrHasSignature) && !errors.Is(err, ErrMountFailed) {
					t.Errorf("Mount err = %v, want ErrHasSignature or ErrMountFailed", err)
				}
				if sha(t, dev) != before {
					t.Errorf("device bytes changed by a refused Mount")
				}
				if st, _, _ := h.StateOf(filepath.Join(h.Config().MountRoot, testVolumeID)); st != StateNotMounted {
					t.Errorf("mountpoint state %s after refused mount", st)
				}
				t.Logf("refused as it must be: %v", err)
			}
			if got := blkidValue(t, dev, "UUID"); got != uuid {
				t.Errorf("UUID changed from %q to %q: the device was reformatted", uuid, got)
			}
			if m := rec.mkfsCalls(); len(m) != 0 {
				t.Errorf("mkfs ran on a device with %s: %q", tt.name, m)
			}
		})
	}
}

func sfdisk(t *testing.T, file, script string) {
	t.Helper()
	cmd := execCommand("sfdisk", "-q", file)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v: %s", err, out)
	}
}

// TestBlankDeviceFormatMountWriteRead formats a blank device with each
// allowed filesystem, mounts it, writes and reads data in the data
// subdirectory, unmounts, mounts again without formatting and finds the data.
func TestBlankDeviceFormatMountWriteRead(t *testing.T) {
	for _, fstype := range AllowedFSTypes() {
		t.Run(fstype, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			dev := loopDevice(t, 320<<20, nil)
			h, rec := realHost(t, Config{})

			req := MountRequest{VolumeID: testVolumeID, Device: dev, FSType: fstype, Options: []string{"noatime,nodev,nosuid"}}
			r, err := h.Mount(ctx, req)
			if err != nil {
				t.Fatalf("Mount: %v", err)
			}
			wantMp := filepath.Join(h.Config().MountRoot, testVolumeID)
			if !r.Formatted || r.FSType != fstype || r.Mountpoint != wantMp || r.DataDir != filepath.Join(wantMp, "data") {
				t.Errorf("Mount = %+v", r)
			}
			if got := blkidValue(t, dev, "TYPE"); got != fstype {
				t.Errorf("blkid TYPE = %q, want %q", got, fstype)
			}
			if m := rec.mkfsCalls(); len(m) != 1 || !strings.HasPrefix(m[0], "mkfs."+fstype+" ") {
				t.Errorf("mkfs calls = %q, want one mkfs.%s", m, fstype)
			}
			fi, err := os.Stat(r.DataDir)
			if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755 {
				t.Fatalf("data dir: %v %v", fi, err)
			}
			entries, _ := os.ReadDir(r.DataDir)
			if len(entries) != 0 {
				t.Errorf("data dir not empty on a fresh volume: %v", entries)
			}
			if err := os.WriteFile(filepath.Join(r.DataDir, "f"), []byte("hi\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			vms, err := h.VolumeMounts()
			if err != nil || len(vms) != 1 || vms[0].VolumeID != testVolumeID || vms[0].DeviceGone ||
				vms[0].State != StateMounted || vms[0].FSType != fstype || !strings.Contains(vms[0].Options, "noatime") {
				t.Errorf("VolumeMounts = %+v, %v", vms, err)
			}
			if others, err := h.MountsOfDevice(dev); err != nil || len(others) != 1 || others[0].Mountpoint != wantMp {
				t.Errorf("MountsOfDevice = %v, %v", others, err)
			}

			// Idempotent: the same device again.
			again, err := h.Mount(ctx, req)
			if err != nil || !again.AlreadyMounted || again.Formatted {
				t.Errorf("second Mount = %+v, %v; want AlreadyMounted", again, err)
			}

			u, err := h.Unmount(ctx, testVolumeID, UnmountNormal)
			if err != nil || u.Method != UnmountedNormal || !u.Removed {
				t.Fatalf("Unmount = %+v, %v", u, err)
			}
			if _, err := os.Stat(wantMp); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("mountpoint still there after unmount: %v", err)
			}
			u, err = h.Unmount(ctx, testVolumeID, UnmountNormal)
			if err != nil || u.Method != UnmountedNot {
				t.Errorf("Unmount of an unmounted volume = %+v, %v; want not-mounted", u, err)
			}

			r, err = h.Mount(ctx, MountRequest{VolumeID: testVolumeID, Device: dev})
			if err != nil || r.Formatted || r.FSType != fstype {
				t.Fatalf("re-Mount = %+v, %v; want %s, not formatted", r, err, fstype)
			}
			if b, err := os.ReadFile(filepath.Join(r.DataDir, "f")); err != nil || string(b) != "hi\n" {
				t.Errorf("read back %q, %v; want hi", b, err)
			}
			if m := rec.mkfsCalls(); len(m) != 1 {
				t.Errorf("mkfs ran again: %q", m)
			}
			other := "5e2f0c11-aaaa-4bbb-8ccc-0123456789ab"
			if _, err := h.Mount(ctx, MountRequest{VolumeID: other, Device: dev}); !errors.Is(err, ErrMountFailed) {
				t.Errorf("mounting the device at a second volume's mountpoint: err = %v, want ErrMountFailed", err)
			}
			if _, err := h.Unmount(ctx, testVolumeID, UnmountNormal); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestFormatRefusesDeviceInUse: a blank device that someone holds
// exclusively (here the test, with O_EXCL, as device-mapper or a mount
// would) is not formatted.
func TestFormatRefusesDeviceInUse(t *testing.T) {
	dev := loopDevice(t, 64<<20, nil)
	h, rec := realHost(t, Config{})
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	_, err = h.FormatIfBlank(context.Background(), dev, "ext4")
	if !errors.Is(err, ErrDeviceInUse) || !errors.Is(err, unix.EBUSY) {
		t.Fatalf("err = %v, want ErrDeviceInUse (EBUSY)", err)
	}
	if m := rec.mkfsCalls(); len(m) != 0 {
		t.Errorf("mkfs ran on a device in use: %q", m)
	}
}

// TestMountDifferentDeviceOnMountpoint: a mountpoint that holds another
// device is an error, never silently stacked.
func TestMountDifferentDeviceOnMountpoint(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := loopDevice(t, 64<<20, nil)
	b := loopDevice(t, 64<<20, nil)
	h, _ := realHost(t, Config{})
	if _, err := h.Mount(ctx, MountRequest{VolumeID: testVolumeID, Device: a}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = h.Unmount(context.Background(), testVolumeID, UnmountEscalate) })
	_, err := h.Mount(ctx, MountRequest{VolumeID: testVolumeID, Device: b})
	if !errors.Is(err, ErrMountFailed) {
		t.Fatalf("err = %v, want ErrMountFailed", err)
	}
	if got := blkidValue(t, b, "TYPE"); got != "" {
		t.Errorf("second device was formatted (%s) although its mount was refused", got)
	}
}
