package hostdisk

import (
	"errors"
	"slices"
	"testing"
)

func TestByIDCandidates(t *testing.T) {
	tests := []struct {
		name, dev, id string
		want          []string
	}{
		{
			name: "uuid", dev: "/dev", id: "0b6a1a8e-3c2f-4c86-9f3e-2d1b7c9e5a41",
			want: []string{
				"/dev/disk/by-id/virtio-0b6a1a8e-3c2f-4c86-9",
				"/dev/disk/by-id/virtio-0b6a1a8e-3c2f-4c86-9f3e-2d1b7c9e5a41",
				"/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_0b6a1a8e-3c2f-4c86-9",
				"/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_0b6a1a8e-3c2f-4c86-9f3e-2d1b7c9e5a41",
				"/dev/disk/by-id/wwn-0x0b6a1a8e3c2f4c869f3e2d1b7c9e5a41",
			},
		},
		{
			name: "node dev root", dev: "/srv/node1/dev/", id: "0b6a1a8e-3c2f-4c86-9f3e-2d1b7c9e5a41",
			want: []string{
				"/srv/node1/dev/disk/by-id/virtio-0b6a1a8e-3c2f-4c86-9",
				"/srv/node1/dev/disk/by-id/virtio-0b6a1a8e-3c2f-4c86-9f3e-2d1b7c9e5a41",
				"/srv/node1/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_0b6a1a8e-3c2f-4c86-9",
				"/srv/node1/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_0b6a1a8e-3c2f-4c86-9f3e-2d1b7c9e5a41",
				"/srv/node1/dev/disk/by-id/wwn-0x0b6a1a8e3c2f4c869f3e2d1b7c9e5a41",
			},
		},
		{
			name: "exactly 20 characters: no duplicates", dev: "/dev", id: "0123456789-abcdefghi",
			want: []string{
				"/dev/disk/by-id/virtio-0123456789-abcdefghi",
				"/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_0123456789-abcdefghi",
				"/dev/disk/by-id/wwn-0x0123456789abcdefghi",
			},
		},
		{
			name: "short id", dev: "/dev", id: "vol1",
			want: []string{
				"/dev/disk/by-id/virtio-vol1",
				"/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_vol1",
				"/dev/disk/by-id/wwn-0xvol1",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ByIDCandidates(tt.dev, tt.id)
			if !slices.Equal(got, tt.want) {
				t.Errorf("ByIDCandidates(%q, %q) =\n%q\nwant\n%q", tt.dev, tt.id, got, tt.want)
			}
		})
	}
}

func TestSerialMatches(t *testing.T) {
	const id = "0b6a1a8e-3c2f-4c86-9f3e-2d1b7c9e5a41"
	tests := []struct {
		serial, id string
		want       bool
	}{
		{"0b6a1a8e-3c2f-4c86-9\n", id, true}, // virtio: first 20 characters, sysfs adds a newline
		{id, id, true},
		{"  " + id + "  ", id, true},
		{"0b6a1a8e-3c2f-4c86-", id, false}, // 19 characters
		{"0b6a1a8e-3c2f-4c86-9f", id, false},
		{"", id, false},
		{"\n", id, false},
		{"vol1", "vol1", true},
		{"vol", "vol1", false},
		{"1b6a1a8e-3c2f-4c86-9", id, false},
		{"anything", "", false},
	}
	for _, tt := range tests {
		if got := SerialMatches(tt.serial, tt.id); got != tt.want {
			t.Errorf("SerialMatches(%q, %q) = %v, want %v", tt.serial, tt.id, got, tt.want)
		}
	}
}

func TestValidateVolumeID(t *testing.T) {
	for _, ok := range []string{"0b6a1a8e-3c2f-4c86-9f3e-2d1b7c9e5a41", "vol1", "a.b_c-d"} {
		if err := ValidateVolumeID(ok); err != nil {
			t.Errorf("ValidateVolumeID(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "a/b", "../x", "a b", "a\x00b", "é", string(make([]byte, 256))} {
		err := ValidateVolumeID(bad)
		if !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("ValidateVolumeID(%q) = %v, want ErrInvalidArgument", bad, err)
		}
	}
}
