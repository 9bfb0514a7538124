//go:build linux

package hostdisk

import (
	"bufio"
	"bytes"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseMountInfo: a mount table either parses into one entry per line
// whose numbers are exactly the line's numbers (never a silently zeroed
// device), or fails with ErrInvalidArgument; the filters built on it keep
// their promises on whatever parsed.
func FuzzParseMountInfo(f *testing.F) {
	seedMountInfo(f)
	f.Add([]byte("43 27 x:y / /var/lib/cinderwarden/mounts/v1 rw - ext4 /dev/loop0 rw\n"))
	f.Add([]byte("43 27 7:0 / /var/lib/cinderwarden/mounts/v1 rw shared:1 master:2 - ext4 /dev/loop0 rw\n"))
	f.Add([]byte("43 27 7:0 / /var/lib/cinderwarden/mounts/\\056\\056 rw - ext4 /dev/loop0 rw\n"))
	f.Add([]byte("43 27 7:0 / /var/lib/cinderwarden/mounts/v1 rw - ext4 /dev/loop0 rw\n" +
		"44 27 7:1 / /var/lib/cinderwarden/mounts/v1 rw - ext4 /dev/loop1 rw\n"))

	const root = "/var/lib/cinderwarden/mounts"
	f.Fuzz(func(t *testing.T, data []byte) {
		infos, err := ParseMountInfo(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("error %v is not ErrInvalidArgument", err)
			}
			return
		}
		var lines []string
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		if len(lines) != len(infos) {
			t.Fatalf("%d lines gave %d entries", len(lines), len(infos))
		}
		for i, in := range infos {
			fields := strings.Split(lines[i], " ")
			maj, min, _ := strings.Cut(fields[2], ":")
			for _, c := range []struct {
				field string
				got   int
			}{{fields[0], in.ID}, {fields[1], in.Parent}, {maj, in.Major}, {min, in.Minor}} {
				n, err := strconv.Atoi(c.field)
				if err != nil || n != c.got || strings.TrimLeft(c.field, "0123456789") != "" {
					t.Fatalf("line %d %q: field %q parsed as %d", i+1, lines[i], c.field, c.got)
				}
			}
		}

		vms := VolumeMountsIn(infos, root)
		qualifying := 0
		for _, in := range infos {
			id := filepath.Base(in.Mountpoint)
			if in.Mountpoint == root+"/"+id && in.Root == "/" && ValidateVolumeID(id) == nil {
				qualifying++
			}
		}
		seen := map[string]bool{}
		total := 0
		for _, vm := range vms {
			if ValidateVolumeID(vm.VolumeID) != nil || vm.Mountpoint != filepath.Join(root, vm.VolumeID) ||
				seen[vm.Mountpoint] || vm.Stacked < 0 || vm.State != StateMounted {
				t.Fatalf("VolumeMountsIn gave %+v", vm)
			}
			seen[vm.Mountpoint] = true
			total += 1 + vm.Stacked
		}
		if total != qualifying {
			t.Fatalf("VolumeMountsIn accounts for %d mounts, %d qualify", total, qualifying)
		}

		if len(infos) > 0 {
			maj, min := infos[0].Major, infos[0].Minor
			got := MountsOfDeviceIn(infos, maj, min)
			want := 0
			for _, in := range infos {
				if in.Major == maj && in.Minor == min {
					want++
				}
			}
			if len(got) != want || len(got) == 0 {
				t.Fatalf("MountsOfDeviceIn(%d:%d) = %d entries, want %d", maj, min, len(got), want)
			}
		}
	})
}
