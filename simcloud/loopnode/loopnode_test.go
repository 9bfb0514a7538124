package loopnode

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cinderwarden/cinderwarden/simcloud"
)

const volID = "0b3f1c9e-5a7d-4e21-9c8b-6f2d1e0a9b34"

func TestSerialAndLinkPath(t *testing.T) {
	if got, want := Serial(volID), "0b3f1c9e-5a7d-4e21-9"; got != want {
		t.Errorf("Serial(%q) = %q, want %q", volID, got, want)
	}
	if got := Serial("short"); got != "short" {
		t.Errorf("Serial(short) = %q", got)
	}
	a := simcloud.Attachment{VolumeID: volID, NodeDevDir: "/srv/node-1/dev"}
	if got, want := LinkPath(a), "/srv/node-1/dev/disk/by-id/virtio-0b3f1c9e-5a7d-4e21-9"; got != want {
		t.Errorf("LinkPath = %q, want %q", got, want)
	}
}

func TestTag(t *testing.T) {
	const inst = "5e1c2d3a-0000-4000-8000-000000000001"
	if got, want := Tag(simcloud.Attachment{VolumeID: volID, InstanceID: inst}), "0b3f1c9e-5a7d-4e21-9@"+inst; got != want {
		t.Errorf("Tag = %q, want %q", got, want)
	}
	// An instance id too long for lo_file_name is replaced by a hash that is
	// deterministic and differs per instance.
	long := strings.Repeat("i", 60)
	got := Tag(simcloud.Attachment{VolumeID: volID, InstanceID: long})
	again := Tag(simcloud.Attachment{VolumeID: volID, InstanceID: long})
	other := Tag(simcloud.Attachment{VolumeID: volID, InstanceID: long + "x"})
	if len(got) > tagLen || !strings.HasPrefix(got, "0b3f1c9e-5a7d-4e21-9#") || len(got) != 20+1+32 {
		t.Errorf("Tag(long instance) = %q (%d bytes)", got, len(got))
	}
	if got != again || got == other {
		t.Errorf("Tag(long) = %q, again %q, other instance %q", got, again, other)
	}
}

func TestValidate(t *testing.T) {
	ok := simcloud.Attachment{InstanceID: "i", VolumeID: volID, SizeGiB: 1, BackingFile: "/v/x.img", NodeDevDir: "/n/dev"}
	tests := []struct {
		name   string
		edit   func(*simcloud.Attachment)
		attach bool
		field  string // "" means valid
	}{
		{"valid attach", func(*simcloud.Attachment) {}, true, ""},
		{"no volume", func(a *simcloud.Attachment) { a.VolumeID = "" }, true, "VolumeID"},
		{"no instance", func(a *simcloud.Attachment) { a.InstanceID = "" }, false, "InstanceID"},
		{"no node dir", func(a *simcloud.Attachment) { a.NodeDevDir = "" }, false, "NodeDevDir"},
		{"relative backing file", func(a *simcloud.Attachment) { a.BackingFile = "x.img" }, false, "BackingFile"},
		{"zero size on attach", func(a *simcloud.Attachment) { a.SizeGiB = 0 }, true, "SizeGiB"},
		{"zero size on detach is fine", func(a *simcloud.Attachment) { a.SizeGiB = 0 }, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := ok
			tc.edit(&a)
			err := validate(a, tc.attach)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("validate = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidAttachment) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("validate = %v, want ErrInvalidAttachment naming %s", err, tc.field)
			}
		})
	}
}

func TestAttachRejectsInvalidBeforeTouchingTheSystem(t *testing.T) {
	dir := t.TempDir()
	a := simcloud.Attachment{InstanceID: "i", VolumeID: volID, SizeGiB: 0,
		BackingFile: filepath.Join(dir, "v", "x.img"), NodeDevDir: filepath.Join(dir, "dev")}
	_, err := New(Options{}).AttachVolume(t.Context(), a)
	if !errors.Is(err, ErrInvalidAttachment) {
		t.Fatalf("AttachVolume = %v, want ErrInvalidAttachment", err)
	}
	if !strings.Contains(err.Error(), "volume "+volID+": attach to instance i") {
		t.Errorf("error lacks operator context: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "v")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("invalid attach created the backing directory (stat: %v)", err)
	}
}

func TestDetachAllRefusesEmptyDir(t *testing.T) {
	if _, err := DetachAll(t.Context(), ""); err == nil {
		t.Fatal("DetachAll(\"\") = nil error; it must never free every loop device on the machine")
	}
}

func TestParseBackingFile(t *testing.T) {
	tests := []struct {
		in      string
		path    string
		deleted bool
	}{
		{"/var/lib/sim/volumes/v1.img\n", "/var/lib/sim/volumes/v1.img", false},
		{"/tmp/x y.img (deleted)\n", "/tmp/x y.img", true},
		{"/tmp/no-newline.img", "/tmp/no-newline.img", false},
	}
	for _, tc := range tests {
		p, d := parseBackingFile(tc.in)
		if p != tc.path || d != tc.deleted {
			t.Errorf("parseBackingFile(%q) = %q, %v; want %q, %v", tc.in, p, d, tc.path, tc.deleted)
		}
	}
}

func TestLoopIndex(t *testing.T) {
	tests := []struct {
		name string
		n    int
		ok   bool
	}{
		{"loop0", 0, true}, {"loop17", 17, true}, {"loop", 0, false}, {"loop-control", 0, false},
		{"loop01", 0, false}, {"loop1p1", 0, false}, {"vda", 0, false}, {"zram0", 0, false},
	}
	for _, tc := range tests {
		n, ok := loopIndex(tc.name)
		if n != tc.n || ok != tc.ok {
			t.Errorf("loopIndex(%q) = %d, %v; want %d, %v", tc.name, n, ok, tc.n, tc.ok)
		}
	}
}

func TestWithin(t *testing.T) {
	tests := []struct {
		root, path string
		want       bool
	}{
		{"/tmp/t1", "/tmp/t1/volumes/a.img", true},
		{"/tmp/t1", "/tmp/t1", true},
		{"/tmp/t1", "/tmp/t10/a.img", false},
		{"/tmp/t1", "/tmp/a.img", false},
		{"/tmp/t1", "/tmp/t1/..x/a.img", true},
		{"/", "/anything", true},
	}
	for _, tc := range tests {
		if got := within(tc.root, tc.path); got != tc.want {
			t.Errorf("within(%q, %q) = %v, want %v", tc.root, tc.path, got, tc.want)
		}
	}
}

// TestScan reads a sysfs tree laid out as /sys/block is on Linux 6.x: a bound
// device, an unbound one, one whose backing file was deleted and that a busy
// detach yanked, and non-loop devices.
func TestScan(t *testing.T) {
	root := t.TempDir()
	write := func(rel, content string) {
		t.Helper()
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("loop10/size", "0\n")
	write("loop10/loop/backing_file", "/srv/vols/b.img (deleted)\n")
	write("loop10/loop/autoclear", "1\n")
	write("loop2/size", "2097152\n")
	write("loop2/loop/backing_file", "/srv/vols/a.img\n")
	write("loop2/loop/autoclear", "0\n")
	write("loop3/size", "0\n") // unbound: no loop/ directory
	write("vda/size", "41943040\n")
	write("zram0/size", "0\n")

	got, err := scan(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []Device{
		{Path: "/dev/loop2", BackingFile: "/srv/vols/a.img", Size: 1 << 30},
		{Path: "/dev/loop10", BackingFile: "/srv/vols/b.img", BackingDeleted: true, Autoclear: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("scan =\n%+v\nwant\n%+v", got, want)
	}
}

func TestCanonicalResolvesDirectorySymlinks(t *testing.T) {
	real := t.TempDir()
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	realResolved, err := filepath.EvalSymlinks(real)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := canonical(filepath.Join(link, "v.img")), filepath.Join(realResolved, "v.img"); got != want {
		t.Errorf("canonical = %q, want %q", got, want)
	}
	if got := resolveDir(link); got != realResolved {
		t.Errorf("resolveDir = %q, want %q", got, realResolved)
	}
}

func TestKeyedMutexForgetsIdleKeys(t *testing.T) {
	var k keyedMutex
	u1 := k.lock("a")
	u2 := k.lock("b")
	u1()
	u2()
	if len(k.locks) != 0 {
		t.Errorf("%d idle keys kept", len(k.locks))
	}
}
