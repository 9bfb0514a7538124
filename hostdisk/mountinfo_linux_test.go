package hostdisk

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/moby/sys/mountinfo"
)

func parseFixture(t *testing.T, name string) []*mountinfo.Info {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	infos, err := ParseMountInfo(f)
	if err != nil {
		t.Fatalf("ParseMountInfo(%s): %v", name, err)
	}
	return infos
}

// testdata/mountinfo-volumes.txt was captured on this machine with: an ext4
// loop device (7:0) mounted at <root>/0b6a…; an xfs loop device (7:1) at
// <root>/5e2f… with a tmpfs stacked on top; a tmpfs at "<root>/not a volume";
// and a bind mount of 0b6a…/data at <root>/0b6a…-x.
func TestVolumeMountsInFixture(t *testing.T) {
	infos := parseFixture(t, "mountinfo-volumes.txt")
	if len(infos) != 26 {
		t.Fatalf("parsed %d entries, want 26", len(infos))
	}
	root := "/var/lib/cinderwarden/mounts"
	got := VolumeMountsIn(infos, root+"/")
	want := []VolumeMount{
		{VolumeID: "0b6a1a8e-3c2f-4c86-9f3e-2d1b7c9e5a41", Mountpoint: root + "/0b6a1a8e-3c2f-4c86-9f3e-2d1b7c9e5a41",
			Source: "/dev/loop0", Major: 7, Minor: 0, FSType: "ext4", Options: "rw,noatime", State: StateMounted},
		{VolumeID: "5e2f0c11-aaaa-4bbb-8ccc-0123456789ab", Mountpoint: root + "/5e2f0c11-aaaa-4bbb-8ccc-0123456789ab",
			Source: "tmpfs", Major: 0, Minor: 39, FSType: "tmpfs", Options: "rw,relatime", State: StateMounted, Stacked: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("VolumeMountsIn =\n%+v\nwant\n%+v", got, want)
	}

	dev := MountsOfDeviceIn(infos, 7, 0)
	var mps []string
	for _, in := range dev {
		mps = append(mps, in.Mountpoint)
	}
	wantMps := []string{root + "/0b6a1a8e-3c2f-4c86-9f3e-2d1b7c9e5a41", root + "/0b6a1a8e-3c2f-4c86-9f3e-2d1b7c9e5a41-x"}
	if !reflect.DeepEqual(mps, wantMps) {
		t.Errorf("MountsOfDeviceIn(7:0) = %q, want %q", mps, wantMps)
	}
	// The escaped space is decoded.
	found := false
	for _, in := range infos {
		if in.Mountpoint == root+"/not a volume" {
			found = true
		}
	}
	if !found {
		t.Error(`"not a volume" mountpoint not decoded from \040`)
	}
}

func TestVolumeMountsInPlainMachine(t *testing.T) {
	infos := parseFixture(t, "mountinfo-plain.txt")
	if len(infos) != 21 {
		t.Fatalf("parsed %d entries, want 21", len(infos))
	}
	if got := VolumeMountsIn(infos, "/var/lib/cinderwarden/mounts"); len(got) != 0 {
		t.Errorf("VolumeMountsIn on a machine without volumes = %+v", got)
	}
	if first := infos[0]; first.Mountpoint != "/proc" || first.FSType != "proc" || first.ID != 22 || first.Parent != 27 {
		t.Errorf("first entry = %+v, want proc at /proc, id 22, parent 27", first)
	}
}
