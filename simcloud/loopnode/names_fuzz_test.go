package loopnode

import (
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cinderwarden/cinderwarden/simcloud"
)

// Fuzz targets for the names loopnode derives and the sysfs values it
// reads. Their seeds run as ordinary tests in `go test`; scripts/fuzz.sh
// runs each with -fuzz for a bounded time.

// FuzzNames: an attachment validate accepts puts its by-id link inside
// <NodeDevDir>/disk/by-id, and its tag fits the kernel's lo_file_name and
// tells instances apart.
func FuzzNames(f *testing.F) {
	f.Add("0b6a1a8e-3c2f-4c86-9f3e-2d1b7c9e5a41", "5e2f0c11-aaaa-4bbb-8ccc-0123456789ab", "5e2f0c11-aaaa-4bbb-8ccc-0123456789ac", "/srv/node1/dev")
	f.Add("vol1", "i-1", "i-2", "/dev")
	f.Add("../../../../etc/x", "i-1", "i-2", "/srv/node1/dev")
	f.Add("..", "i-1", "i-2", "/srv/node1/dev")
	f.Add("a/b", strings.Repeat("x", 60), strings.Repeat("x", 59)+"y", "/srv/node1/dev")
	f.Add("0b6a1a8e-3c2f-4c86-9f3e-2d1b7c9e5a41", "", "i-2", "")
	f.Fuzz(func(t *testing.T, volumeID, inst1, inst2, devDir string) {
		a := simcloud.Attachment{VolumeID: volumeID, InstanceID: inst1, NodeDevDir: devDir, BackingFile: "/var/lib/sim/v", SizeGiB: 1}
		if err := validate(a, true); err != nil {
			if !errors.Is(err, ErrInvalidAttachment) {
				t.Fatalf("validate error %v is not ErrInvalidAttachment", err)
			}
			return
		}
		byID := filepath.Join(devDir, "disk", "by-id")
		if link := LinkPath(a); filepath.Dir(link) != byID {
			t.Fatalf("volume %q: by-id link %q is not inside %s", volumeID, link, byID)
		}
		if s := Serial(volumeID); len(s) > SerialLen || !strings.HasPrefix(volumeID, s) {
			t.Fatalf("Serial(%q) = %q", volumeID, s)
		}
		tag1 := Tag(a)
		if len(tag1) > tagLen {
			t.Fatalf("Tag = %q, %d bytes, over the kernel's %d", tag1, len(tag1), tagLen)
		}
		b := a
		b.InstanceID = inst2
		if inst2 != "" && inst2 != inst1 && Tag(b) == tag1 {
			t.Fatalf("instances %q and %q share the tag %q", inst1, inst2, tag1)
		}
	})
}

// FuzzSysfsValues: parseBackingFile, loopIndex and within agree with the
// values they are read from.
func FuzzSysfsValues(f *testing.F) {
	f.Add("/var/lib/sim/volumes/v1\n", "loop0", "/var/lib/sim", "/var/lib/sim/volumes/v1")
	f.Add("/var/lib/sim/volumes/v1 (deleted)\n", "loop12", "/var/lib/sim", "/var/lib/simx")
	f.Add(" (deleted)", "loop01", "/", "/x")
	f.Add("", "loop-1", "/a", "/a/../b")
	f.Add("/x (deleted) (deleted)", "loop99999999999999999999", "/a/b", "/a/b/..c")
	f.Fuzz(func(t *testing.T, backing, name, root, path string) {
		p, deleted := parseBackingFile(backing)
		trimmed := strings.TrimSuffix(backing, "\n")
		if deleted && p+deletedSuffix != trimmed || !deleted && p != trimmed {
			t.Fatalf("parseBackingFile(%q) = %q, %v", backing, p, deleted)
		}
		if n, ok := loopIndex(name); ok && (n < 0 || "loop"+strconv.Itoa(n) != name) {
			t.Fatalf("loopIndex(%q) = %d", name, n)
		}
		if !filepath.IsAbs(root) || !filepath.IsAbs(path) || filepath.Clean(root) != root || filepath.Clean(path) != path {
			return
		}
		want := path == root || strings.HasPrefix(path, root+"/") || root == "/"
		if got := within(root, path); got != want {
			t.Fatalf("within(%q, %q) = %v, want %v", root, path, got, want)
		}
	})
}
