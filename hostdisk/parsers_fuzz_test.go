package hostdisk

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// Fuzz targets for the pure parsers. Their seeds run as ordinary tests in
// `go test`; `scripts/fuzz.sh` runs each with -fuzz for a bounded time.

var validKinds = map[SignatureKind]bool{KindFilesystem: true, KindPartitionTable: true, KindCrypto: true,
	KindRAID: true, KindSwap: true, KindOther: true}

// FuzzParseBlkid: any output with any exit code gives either signatures or
// an ErrProbeFailed error, never both empty-and-nil for a successful run
// (a device blkid recognised something on is never called blank).
func FuzzParseBlkid(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "blkid", "*.txt"))
	if err != nil || len(files) == 0 {
		f.Fatalf("blkid fixtures: %v (%d files)", err, len(files))
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		for _, exit := range []int{0, 2, 8} {
			f.Add(b, exit)
		}
	}
	f.Add([]byte("PTTYPE=dos\nTYPE=vfat\nUSAGE=filesystem\n"), 0)
	f.Add([]byte("TYPE\nUSAGE=\n=ext4\n"), 0)
	f.Add([]byte(strings.Repeat("x", 70000)), 0) // one line longer than bufio's limit
	f.Add([]byte("blkid: error: /dev/vdb: No such file or directory\n"), 4)
	f.Add([]byte(nil), -1)

	f.Fuzz(func(t *testing.T, out []byte, exit int) {
		sigs, err := ParseBlkid(out, exit)
		switch exit {
		case blkidNothing:
			if sigs != nil || err != nil {
				t.Fatalf("exit 2 (nothing found) = %v, %v; want no signature and no error", sigs, err)
			}
			return
		case blkidFound, blkidAmbivalent:
			if err != nil {
				if !errors.Is(err, ErrProbeFailed) {
					t.Fatalf("error %v is not ErrProbeFailed", err)
				}
				return
			}
			if len(sigs) == 0 {
				t.Fatalf("exit %d gave no signature: a device blkid found something on must never look blank", exit)
			}
		default:
			if !errors.Is(err, ErrProbeFailed) || sigs != nil {
				t.Fatalf("exit %d = %v, %v; want ErrProbeFailed and no signatures", exit, sigs, err)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not a *hostdisk.Error", err)
			}
			if len(e.Detail) > 403 || strings.Contains(e.Detail, "\n") {
				t.Fatalf("error detail not trimmed to one line of 400 bytes + ...: %q", e.Detail)
			}
			return
		}
		for _, s := range sigs {
			if !validKinds[s.Kind] || s.Source != "blkid" || s.Offset != -1 {
				t.Fatalf("bad signature %#v", s)
			}
			if s.Type == "" || strings.Contains(s.Type, "\n") {
				t.Fatalf("signature type %q spans lines", s.Type)
			}
		}
	})
}

// cyclic is a device of any size whose byte at offset o is data[o % len]
// (zeros when data is empty); reads past size fail like a real device's.
type cyclic struct {
	data []byte
	size int64
}

func (c cyclic) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	n := 0
	for ; n < len(p) && off+int64(n) < c.size; n++ {
		if len(c.data) > 0 {
			p[n] = c.data[(off+int64(n))%int64(len(c.data))]
		} else {
			p[n] = 0
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// FuzzProbeMagic: over any content and any device size, the probe never
// reads outside the device, never fails on a device that can be read, and
// reports only signatures that lie inside it. It must agree with itself on
// the same content (no hidden state).
func FuzzProbeMagic(f *testing.F) {
	ext := newImage(2048)
	ext[1080], ext[1081] = 0x53, 0xef
	f.Add([]byte(ext), int64(len(ext)))
	f.Add([]byte("XFSB"), int64(4))
	f.Add([]byte("LUKS\xba\xbe\x00\x01"), int64(1<<20))
	f.Add([]byte(newImage(1024).put(512, lvmLabel())), int64(1024))
	mbr := newImage(512).put(510, []byte{0x55, 0xaa})
	mbr[446+4] = 0x83
	f.Add([]byte(mbr), int64(512))
	f.Add([]byte(newImage(4096+8).put(4096, []byte("EFI PART"))), int64(4096+8))
	f.Add([]byte(newImage(4096).put(4086, []byte("SWAPSPACE2"))), int64(4096))
	f.Add([]byte(newImage(8192).put(4096, mdSuperblock12())), int64(8192))
	f.Add([]byte{0xfc, 0x4e, 0x2b, 0xa9}, int64(128*1024))   // md magic everywhere
	f.Add([]byte{0xfc, 0x4e, 0x2b, 0xa9}, int64(1<<40+4096)) // a 1 TiB device
	f.Add([]byte{}, int64(-1))
	f.Add([]byte{1}, int64(0))

	f.Fuzz(func(t *testing.T, data []byte, size int64) {
		if len(data) > 1<<16 {
			return
		}
		dev := cyclic{data: data, size: size}
		sigs, err := ProbeMagic(dev, size)
		if err != nil {
			t.Fatalf("ProbeMagic(size %d) on a readable device: %v", size, err)
		}
		again, _ := ProbeMagic(dev, size)
		if !reflect.DeepEqual(sigs, again) {
			t.Fatalf("two probes of the same content differ: %v vs %v", sigs, again)
		}
		for _, s := range sigs {
			if !validKinds[s.Kind] || s.Source != "magic" || s.Offset < 0 || s.Offset >= size {
				t.Fatalf("signature %#v outside a device of %d bytes", s, size)
			}
		}
		// A device that cannot be read where the magic numbers live is an
		// error of class ErrProbeFailed, never "blank".
		if size > 0 {
			if _, err := ProbeMagic(cyclic{data: data, size: size - 1}, size); err != nil && !errors.Is(err, ErrProbeFailed) {
				t.Fatalf("short read error %v is not ErrProbeFailed", err)
			}
		}
	})
}

// FuzzParseMountOptions: whatever comes in, the result is either an
// ErrInvalidArgument error or options that only use the allow-list, render
// without separators smuggled in, and survive a round trip.
func FuzzParseMountOptions(f *testing.F) {
	for _, s := range []string{"", "ro", "rw,noatime", "nosuid,nodev,noexec", " relatime , nodiratime ",
		"strictatime,strictatime", "discard", "nodiscard,sync,dirsync", "ro,rw", "noatime,relatime",
		"discard,nodiscard", "nobarrier", "data=writeback", "uid=0", "remount", "bind", "ro,,rw",
		"noexec\x00,suid", "rw,exec", "RO"} {
		f.Add(s, "")
	}
	f.Add("ro", "nodev,noexec")
	f.Add("noatime", "relatime")

	allowed := AllowedMountOptions()
	f.Fuzz(func(t *testing.T, a, b string) {
		o, err := ParseMountOptions([]string{a, b})
		if err != nil {
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("ParseMountOptions(%q, %q) error %v is not ErrInvalidArgument", a, b, err)
			}
			return
		}
		strs := o.Strings()
		for _, s := range strs {
			if !slices.Contains(allowed, s) {
				t.Fatalf("ParseMountOptions(%q, %q) rendered %q, not on the allow-list", a, b, s)
			}
		}
		back, err := ParseMountOptions(strs)
		if err != nil || back != o {
			t.Fatalf("round trip of %q: %+v, %v; want %+v", strs, back, err, o)
		}
		for _, item := range strings.Split(a+","+b, ",") {
			item = strings.TrimSpace(item)
			if item != "" && !slices.Contains(allowed, item) {
				t.Fatalf("accepted %q, which is not on the allow-list", item)
			}
		}
	})
}

// FuzzVolumeID: ValidateVolumeID, ByIDCandidates and SerialMatches agree.
// A valid id can never lead a candidate path out of <devRoot>/disk/by-id.
func FuzzVolumeID(f *testing.F) {
	for _, s := range []string{"0b6a1a8e-3c2f-4c86-9f3e-2d1b7c9e5a41", "0123456789-abcdefghi", "vol1", ".", "..",
		"...", "../../etc", "a/b", "vol 1", "vol\x00", strings.Repeat("a", 255), strings.Repeat("a", 256), "ü", ""} {
		f.Add(s, "/dev", s)
	}
	f.Add("0b6a1a8e-3c2f-4c86-9f3e-2d1b7c9e5a41", "/srv/node1/dev/", "0b6a1a8e-3c2f-4c86-9\n")
	f.Add("0b6a1a8e-3c2f-4c86-9f3e-2d1b7c9e5a41", "dev", "  0b6a1a8e-3c2f-4c86-9f3e-2d1b7c9e5a41 ")

	f.Fuzz(func(t *testing.T, id, devRoot, serial string) {
		err := ValidateVolumeID(id)
		if err != nil {
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("ValidateVolumeID(%q) error %v is not ErrInvalidArgument", id, err)
			}
		} else {
			if filepath.Base(id) != id || filepath.Clean(id) != id || !utf8.ValidString(id) || len(id) > 255 {
				t.Fatalf("ValidateVolumeID accepted %q, which is not one clean path component", id)
			}
			if got := filepath.Join("/mnt", id); filepath.Dir(got) != "/mnt" {
				t.Fatalf("valid id %q escapes its directory: %s", id, got)
			}
			dir := filepath.Join(devRoot, "disk", "by-id")
			cands := ByIDCandidates(devRoot, id)
			if len(cands) < 3 || len(cands) > 5 {
				t.Fatalf("ByIDCandidates(%q) = %d paths, want 3 to 5", id, len(cands))
			}
			seen := map[string]bool{}
			for _, c := range cands {
				if filepath.Dir(c) != dir || seen[c] {
					t.Fatalf("candidate %q of %q: outside %s or duplicated", c, id, dir)
				}
				seen[c] = true
			}
			if !SerialMatches(id, id) || !SerialMatches(" "+id+"\n", id) {
				t.Fatalf("SerialMatches does not take the id %q itself", id)
			}
			if len(id) > serialLen && !SerialMatches(id[:serialLen]+"\n", id) {
				t.Fatalf("SerialMatches does not take the 20-character serial of %q", id)
			}
		}
		if SerialMatches(serial, id) {
			s := strings.TrimSpace(serial)
			if s == "" || (s != id && (len(id) <= serialLen || s != id[:serialLen])) {
				t.Fatalf("SerialMatches(%q, %q) is true, but the serial is neither the id nor its first 20 characters", serial, id)
			}
		}
	})
}

// seedMountInfo adds every line of the mountinfo fixtures, and the whole
// files, as seeds.
func seedMountInfo(f *testing.F) {
	for _, name := range []string{"mountinfo-plain.txt", "mountinfo-volumes.txt"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		for _, line := range bytes.Split(b, []byte("\n")) {
			f.Add(line)
		}
	}
}
