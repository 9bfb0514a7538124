package hostdisk

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// FuzzFormatDecision runs the whole format-safety decision on fuzzed probe
// results: blkid's output and exit code, the device's bytes (through
// ProbeMagic, at any size), read-only or not, and the filesystem asked for.
// The one thing that must never happen is formatting a device on which
// either probe found anything, or a read-only one; and nothing is ever
// mounted as a filesystem this package does not allow.
func FuzzFormatDecision(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "blkid", "*.txt"))
	if err != nil || len(files) == 0 {
		f.Fatalf("blkid fixtures: %v (%d files)", err, len(files))
	}
	ext := newImage(2048)
	ext[1080], ext[1081] = 0x53, 0xef
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, 0, []byte{}, int64(1<<20), false, "")
		f.Add(b, 0, []byte(ext), int64(len(ext)), true, "xfs")
	}
	f.Add([]byte{}, 2, []byte{}, int64(1<<20), false, "ext4")   // blank: format
	f.Add([]byte{}, 2, []byte{}, int64(1<<20), true, "")        // blank but read-only
	f.Add([]byte{}, 2, []byte(ext), int64(len(ext)), false, "") // blkid blind, magic sees ext
	f.Add([]byte{}, 2, []byte("XFSB"), int64(4096), false, "ext4")
	f.Add([]byte("TYPE=btrfs\nUSAGE=filesystem\n"), 0, []byte{}, int64(1<<20), false, "")
	f.Add([]byte{}, 8, []byte{}, int64(1<<20), false, "")
	f.Add([]byte{}, 2, []byte{}, int64(1<<20), false, "vfat")

	f.Fuzz(func(t *testing.T, blkidOut []byte, exit int, content []byte, size int64, readOnly bool, want string) {
		if len(content) > 1<<16 {
			return
		}
		sigs, err := ParseBlkid(blkidOut, exit)
		if err != nil {
			return // the probe failed: ProbeDevice stops before any decision
		}
		magic, err := ProbeMagic(cyclic{data: content, size: size}, size)
		if err != nil {
			t.Fatalf("ProbeMagic on a readable device: %v", err)
		}
		p := Probe{Device: "/dev/vdb", Size: size, ReadOnly: readOnly, Signatures: append(sigs, magic...)}
		plan, err := PlanFormat(p, want)
		if err != nil {
			if plan != (FormatPlan{}) {
				t.Fatalf("PlanFormat returned %+v with the error %v", plan, err)
			}
			for _, class := range []error{ErrInvalidArgument, ErrHasSignature, ErrFilesystemMismatch, ErrReadOnlyDevice} {
				if errors.Is(err, class) {
					return
				}
			}
			t.Fatalf("PlanFormat error %v has no known class", err)
		}
		if !slices.Contains(AllowedFSTypes(), plan.FSType) {
			t.Fatalf("plan %+v uses a filesystem outside %v", plan, AllowedFSTypes())
		}
		if want != "" && plan.FSType != want {
			t.Fatalf("asked for %q, plan %+v", want, plan)
		}
		if plan.Format && (len(p.Signatures) > 0 || readOnly) {
			t.Fatalf("format planned on a device with signatures %v (read-only %v)", p.Signatures, readOnly)
		}
		if !plan.Format {
			for _, s := range p.Signatures {
				if s.Kind != KindFilesystem {
					t.Fatalf("mount planned on a device with %v", s)
				}
			}
		}
	})
}
