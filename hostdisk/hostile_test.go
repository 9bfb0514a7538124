//go:build linux

package hostdisk

import (
	"errors"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
)

// Hostile input: each bad input with the exact error an operator reads. The
// class is checked with errors.Is; the whole message is compared too,
// because a clear message is the point of these tables.

const goodMountLine = "43 27 7:0 / /var/lib/cinderwarden/mounts/v1 rw,noatime - ext4 /dev/loop0 rw"

func TestHostileMountInfoLines(t *testing.T) {
	tests := []struct {
		name, line, want string
	}{
		{"empty line", "", "mountinfo line 2: invalid argument: 1 fields, want at least 10"},
		{"too few fields", "43 27 7:0 / /mnt rw", "mountinfo line 2: invalid argument: 6 fields, want at least 10"},
		{"no separator", "43 27 7:0 / /mnt rw shared:1 ext4 /dev/loop0 rw", "mountinfo: invalid argument: parsing '43 27 7:0 / /mnt rw shared:1 ext4 /dev/loop0 rw' failed: missing - separator"},
		{"device without colon", "43 27 7 / /mnt rw - ext4 /dev/loop0 rw", "mountinfo line 2: invalid argument: major:minor \"7\" has no colon"},
		{"major not a number", "43 27 x:0 / /mnt rw - ext4 /dev/loop0 rw", "mountinfo line 2: invalid argument: major \"x\" is not a decimal number"},
		{"minor not a number", "43 27 7:y / /mnt rw - ext4 /dev/loop0 rw", "mountinfo line 2: invalid argument: minor \"y\" is not a decimal number"},
		{"negative major", "43 27 -7:0 / /mnt rw - ext4 /dev/loop0 rw", "mountinfo line 2: invalid argument: major \"-7\" is not a decimal number"},
		{"plus sign", "43 27 +7:0 / /mnt rw - ext4 /dev/loop0 rw", "mountinfo line 2: invalid argument: major \"+7\" is not a decimal number"},
		{"mount id not a number", "a3 27 7:0 / /mnt rw - ext4 /dev/loop0 rw", "mountinfo line 2: invalid argument: mount id \"a3\" is not a decimal number"},
		{"empty parent id", "43  7:0 / /mnt rw - ext4 /dev/loop0 rw", "mountinfo line 2: invalid argument: parent id \"\" is not a decimal number"},
		{"id overflows int", "99999999999999999999 27 7:0 / /mnt rw - ext4 /dev/loop0 rw", "mountinfo line 2: invalid argument: mount id \"99999999999999999999\" is not a decimal number"},
		{"tabs instead of spaces", strings.ReplaceAll(goodMountLine, " ", "\t"), "mountinfo line 2: invalid argument: 1 fields, want at least 10"},
		{"line longer than 64 KiB", "43 27 7:0 / /" + strings.Repeat("a", 70000) + " rw - ext4 /dev/loop0 rw", "mountinfo line 2: invalid argument: bufio.Scanner: token too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseMountInfo(strings.NewReader(goodMountLine + "\n" + tt.line + "\n"))
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("err = %v, want ErrInvalidArgument", err)
			}
			if err.Error() != tt.want {
				t.Errorf("error\n got %q\nwant %q", err.Error(), tt.want)
			}
		})
	}
}

// Mount table entries that parse but must never be taken for a volume
// mount of the plugin.
func TestHostileMountpointsAreNotVolumes(t *testing.T) {
	const root = "/var/lib/cinderwarden/mounts"
	for _, mp := range []string{
		root, root + "/", root + "/.", root + "/..", root + "/v1/", root + "/v1/data", root + "/v 1", root + "/v\n1",
		root + "x/v1", "/var/lib/cinderwarden/v1", root + "/" + strings.Repeat("a", 256), root + "/../mounts/v1",
	} {
		in := &mountinfo.Info{Mountpoint: mp, Root: "/", Major: 7, FSType: "ext4", Source: "/dev/loop0"}
		if vms := VolumeMountsIn([]*mountinfo.Info{in}, root); len(vms) != 0 {
			t.Errorf("mountpoint %q taken for volume %q", mp, vms[0].VolumeID)
		}
	}
	bind := &mountinfo.Info{Mountpoint: root + "/v1", Root: "/data", Major: 7, FSType: "ext4", Source: "/dev/loop0"}
	if vms := VolumeMountsIn([]*mountinfo.Info{bind}, root); len(vms) != 0 {
		t.Errorf("bind mount of a subdirectory taken for volume %q", vms[0].VolumeID)
	}
}

func TestHostileBlkidOutput(t *testing.T) {
	tests := []struct {
		name string
		out  string
		exit int
		want string
	}{
		{"usage error", "blkid: unknown option -- z\n", 4, "blkid: signature probe failed: exit code 4 (blkid: unknown option -- z)"},
		{"device vanished", "blkid: error: /dev/vdb: No such file or directory\n", 1, "blkid: signature probe failed: exit code 1 (blkid: error: /dev/vdb: No such file or directory)"},
		{"blkid not runnable", "", 127, "blkid: signature probe failed: exit code 127"},
		{"killed by a signal", "", -1, "blkid: signature probe failed: exit code -1"},
		{"multi-line detail is flattened", "line one\n\tline two\n", 4, "blkid: signature probe failed: exit code 4 (line one line two)"},
		{"detail is cut at 400 bytes", strings.Repeat("x", 500), 4, "blkid: signature probe failed: exit code 4 (" + strings.Repeat("x", 400) + "...)"},
		{"output line longer than 64 KiB", "TYPE=" + strings.Repeat("x", 70000) + "\n", 0, "blkid: signature probe failed: bufio.Scanner: token too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sigs, err := ParseBlkid([]byte(tt.out), tt.exit)
			if !errors.Is(err, ErrProbeFailed) || sigs != nil {
				t.Fatalf("ParseBlkid = %v, %v; want no signatures and ErrProbeFailed", sigs, err)
			}
			if err.Error() != tt.want {
				t.Errorf("error\n got %q\nwant %q", err.Error(), tt.want)
			}
		})
	}
	// Output blkid succeeded on but that names nothing known still counts
	// as a signature: the device is not blank.
	for _, out := range []string{"", "garbage", "TYPE=\nPTTYPE=\n", "=ext4\n", "type=ext4\n", "\x00\x01\x02"} {
		sigs, err := ParseBlkid([]byte(out), 0)
		if err != nil || len(sigs) != 1 || sigs[0].Kind != KindOther {
			t.Errorf("ParseBlkid(%q, 0) = %v, %v; want one KindOther signature", out, sigs, err)
		}
	}
}

func TestHostileMountOptions(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want string
	}{
		{"barriers off", []string{"nobarrier"}, "mount option \"nobarrier\": invalid argument: allowed are ro, rw, nosuid, nodev, noexec, noatime, nodiratime, relatime, strictatime, sync, dirsync, discard, nodiscard"},
		{"writeback journal", []string{"data=writeback"}, "mount option \"data=writeback\": invalid argument: allowed are ro, rw, nosuid, nodev, noexec, noatime, nodiratime, relatime, strictatime, sync, dirsync, discard, nodiscard"},
		{"ownership", []string{"uid=0"}, "mount option \"uid=0\": invalid argument: allowed are ro, rw, nosuid, nodev, noexec, noatime, nodiratime, relatime, strictatime, sync, dirsync, discard, nodiscard"},
		{"remount", []string{"remount"}, "mount option \"remount\": invalid argument: allowed are ro, rw, nosuid, nodev, noexec, noatime, nodiratime, relatime, strictatime, sync, dirsync, discard, nodiscard"},
		{"bind", []string{"bind"}, "mount option \"bind\": invalid argument: allowed are ro, rw, nosuid, nodev, noexec, noatime, nodiratime, relatime, strictatime, sync, dirsync, discard, nodiscard"},
		{"loop", []string{"loop"}, "mount option \"loop\": invalid argument: allowed are ro, rw, nosuid, nodev, noexec, noatime, nodiratime, relatime, strictatime, sync, dirsync, discard, nodiscard"},
		{"exec is not on the list", []string{"exec"}, "mount option \"exec\": invalid argument: allowed are ro, rw, nosuid, nodev, noexec, noatime, nodiratime, relatime, strictatime, sync, dirsync, discard, nodiscard"},
		{"suid", []string{"suid"}, "mount option \"suid\": invalid argument: allowed are ro, rw, nosuid, nodev, noexec, noatime, nodiratime, relatime, strictatime, sync, dirsync, discard, nodiscard"},
		{"SELinux context", []string{"context=system_u:object_r:tmp_t:s0"}, "mount option \"context=system_u:object_r:tmp_t:s0\": invalid argument: allowed are ro, rw, nosuid, nodev, noexec, noatime, nodiratime, relatime, strictatime, sync, dirsync, discard, nodiscard"},
		{"upper case", []string{"RO"}, "mount option \"RO\": invalid argument: allowed are ro, rw, nosuid, nodev, noexec, noatime, nodiratime, relatime, strictatime, sync, dirsync, discard, nodiscard"},
		{"NUL smuggled in", []string{"ro\x00,nosuid"}, "mount option \"ro\\x00\": invalid argument: allowed are ro, rw, nosuid, nodev, noexec, noatime, nodiratime, relatime, strictatime, sync, dirsync, discard, nodiscard"},
		{"unknown after good ones", []string{"rw,nosuid", "foo"}, "mount option \"foo\": invalid argument: allowed are ro, rw, nosuid, nodev, noexec, noatime, nodiratime, relatime, strictatime, sync, dirsync, discard, nodiscard"},
		{"ro and rw", []string{"ro", "rw"}, "mount options ro and rw: invalid argument: they contradict each other"},
		{"two atime modes", []string{"noatime,relatime"}, "mount options noatime and relatime: invalid argument: they contradict each other"},
		{"discard and nodiscard", []string{"discard", "nodiscard"}, "mount options discard and nodiscard: invalid argument: they contradict each other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseMountOptions(tt.in)
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("err = %v, want ErrInvalidArgument", err)
			}
			if err.Error() != tt.want {
				t.Errorf("error\n got %q\nwant %q", err.Error(), tt.want)
			}
		})
	}
}

func TestHostileVolumeIDs(t *testing.T) {
	tests := []struct {
		name, id, want string
	}{
		{"empty", "", "volume id \"\": invalid argument: must be 1 to 255 characters, and not \".\" or \"..\""},
		{"dot", ".", "volume id \".\": invalid argument: must be 1 to 255 characters, and not \".\" or \"..\""},
		{"dot dot", "..", "volume id \"..\": invalid argument: must be 1 to 255 characters, and not \".\" or \"..\""},
		{"slash", "a/b", "volume id \"a/b\": invalid argument: character '/' not allowed (letters, digits, - _ . only)"},
		{"path traversal", "../../etc/passwd", "volume id \"../../etc/passwd\": invalid argument: character '/' not allowed (letters, digits, - _ . only)"},
		{"too long", strings.Repeat("a", 256), "volume id \"" + strings.Repeat("a", 256) + "\": invalid argument: must be 1 to 255 characters, and not \".\" or \"..\""},
		{"space", "vol 1", "volume id \"vol 1\": invalid argument: character ' ' not allowed (letters, digits, - _ . only)"},
		{"NUL", "vol\x00", "volume id \"vol\\x00\": invalid argument: character '\\x00' not allowed (letters, digits, - _ . only)"},
		{"newline", "vol\n", "volume id \"vol\\n\": invalid argument: character '\\n' not allowed (letters, digits, - _ . only)"},
		{"non-ASCII", "völ", "volume id \"völ\": invalid argument: character 'ö' not allowed (letters, digits, - _ . only)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateVolumeID(tt.id)
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("err = %v, want ErrInvalidArgument", err)
			}
			if err.Error() != tt.want {
				t.Errorf("error\n got %q\nwant %q", err.Error(), tt.want)
			}
		})
	}
}
