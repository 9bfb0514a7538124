package libvirtscan

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json from the parser's output")

// TestParseDomainGolden parses real `virsh dumpxml` captures (qemu driver,
// live and inactive; the test driver with nova metadata) and a hand-written
// nova domain with RBD volumes, and compares the whole result with a
// reviewed golden file.
func TestParseDomainGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.xml")
	if err != nil || len(files) < 5 {
		t.Fatalf("want at least 5 captures in testdata, got %d (%v)", len(files), err)
	}
	for _, in := range files {
		t.Run(filepath.Base(in), func(t *testing.T) {
			f, err := os.Open(in)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			def, err := ParseDomain(f)
			if err != nil {
				t.Fatalf("ParseDomain: %v", err)
			}
			got, err := json.MarshalIndent(def, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := strings.TrimSuffix(in, ".xml") + ".golden.json"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("read golden (run go test -run TestParseDomainGolden -update): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from %s:\n--- got\n%s\n--- want\n%s", in, golden, got, want)
			}
		})
	}
}

// TestParseDomainNovaRBD spells out the facts the reconciler depends on, so
// a wrong golden file cannot hide them.
func TestParseDomainNovaRBD(t *testing.T) {
	data, err := os.ReadFile("testdata/nova-rbd-handwritten.xml")
	if err != nil {
		t.Fatal(err)
	}
	def, err := ParseDomainBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	if def.UUID != "c2f3e4d5-a6b7-48c9-90d1-e2f3a4b5c6d7" || def.Name != "instance-0000002a" {
		t.Errorf("identity = %s %s", def.UUID, def.Name)
	}
	n := def.Nova
	if n == nil {
		t.Fatal("nova metadata not parsed")
	}
	if n.Name != "web-01" || n.ProjectID != "8e7d6c5b4a3946f8a7b6c5d4e3f2a1b0" || n.ProjectName != "webteam" ||
		n.Flavor.Name != "m1.small" || n.Flavor.MemoryMiB != 2048 || n.Flavor.VCPUs != 1 || n.UserName != "alice" {
		t.Errorf("nova metadata = %+v", *n)
	}
	if len(n.Ports) != 1 || len(n.Ports[0].IPs) != 2 {
		t.Errorf("ports = %+v", n.Ports)
	}
	var targets []string
	for _, d := range def.Disks {
		targets = append(targets, d.Target)
	}
	if got := strings.Join(targets, ","); got != "sda,vda,vdb,vdc" {
		t.Errorf("disk order = %s, want sda,vda,vdb,vdc", got)
	}
	vdb := def.Disks[2]
	if vdb.Source.Protocol != "rbd" || vdb.Source.Name != "volumes/volume-9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a" ||
		vdb.Source.String() != "rbd:volumes/volume-9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a" ||
		vdb.Serial != "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a" || vdb.AliasVolumeID != vdb.Serial || vdb.Bus != "virtio" {
		t.Errorf("rbd volume disk = %+v", vdb)
	}
	if strings.Join(vdb.Source.Hosts, ",") != "192.0.2.21:6789,192.0.2.22:6789" {
		t.Errorf("rbd hosts = %v", vdb.Source.Hosts)
	}
	if sda := def.Disks[0]; sda.Device != "cdrom" || !sda.ReadOnly || sda.AliasVolumeID != "" {
		t.Errorf("config drive = %+v", sda)
	}
}

func TestParseDomainRejectsGarbage(t *testing.T) {
	for name, in := range map[string]string{
		"not xml":     "this is not xml",
		"no identity": "<domain type='qemu'></domain>",
		"empty":       "",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseDomain(strings.NewReader(in))
			if !errors.Is(err, ErrBadXML) {
				t.Errorf("err = %v, want ErrBadXML", err)
			}
		})
	}
}

func TestNextTarget(t *testing.T) {
	mk := func(targets ...string) *Definition {
		d := &Definition{}
		for _, t := range targets {
			d.Disks = append(d.Disks, Disk{Target: t})
		}
		return d
	}
	many := make([]string, 0, 26)
	for c := 'a'; c <= 'z'; c++ {
		many = append(many, "vd"+string(c))
	}
	tests := []struct {
		name string
		defs []*Definition
		want string
	}{
		{"empty", nil, "vda"},
		{"root only", []*Definition{mk("vda")}, "vdb"},
		{"gap", []*Definition{mk("vda", "vdc")}, "vdb"},
		{"union of live and config", []*Definition{mk("vda", "vdb"), mk("vda", "vdc")}, "vdd"},
		{"other prefixes ignored", []*Definition{mk("sda", "hda", "vda")}, "vdb"},
		{"nil definition", []*Definition{nil, mk("vda")}, "vdb"},
		{"past z", []*Definition{mk(many...)}, "vdaa"},
		{"past aa", []*Definition{mk(append(many, "vdaa")...)}, "vdab"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NextTarget("vd", tt.defs...); got != tt.want {
				t.Errorf("NextTarget = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestDiskSelector(t *testing.T) {
	disk := Disk{Target: "vdb", Serial: "vol-1", Alias: "ua-vol-1", Source: Source{Type: "network", Protocol: "rbd", Name: "volumes/volume-vol-1"}}
	file := Disk{Target: "vdc", Source: Source{Type: "file", Path: "/var/lib/x.img"}}
	tests := []struct {
		name string
		sel  DiskSelector
		disk Disk
		want bool
	}{
		{"empty selector matches nothing", DiskSelector{}, disk, false},
		{"serial", DiskSelector{Serial: "vol-1"}, disk, true},
		{"wrong serial", DiskSelector{Serial: "vol-2"}, disk, false},
		{"alias", DiskSelector{Alias: "ua-vol-1"}, disk, true},
		{"serial and target both must match", DiskSelector{Serial: "vol-1", Target: "vdc"}, disk, false},
		{"rbd name", DiskSelector{Source: "volumes/volume-vol-1"}, disk, true},
		{"rbd token", DiskSelector{Source: "rbd:volumes/volume-vol-1"}, disk, true},
		{"file path", DiskSelector{Source: "/var/lib/x.img"}, file, true},
		{"file token", DiskSelector{Source: "file:/var/lib/x.img"}, file, true},
		{"source does not match empty name", DiskSelector{Source: ""}, file, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.sel.Matches(tt.disk); got != tt.want {
				t.Errorf("Matches = %v, want %v", got, tt.want)
			}
		})
	}
	_, _, err := DiskSelector{Source: "file:/a"}.find(&Definition{Disks: []Disk{
		{Target: "vdb", Source: Source{Type: "file", Path: "/a"}}, {Target: "vdc", Source: Source{Type: "file", Path: "/a"}},
	}})
	if !errors.Is(err, ErrAmbiguousDisk) {
		t.Errorf("two disks on one source: err = %v, want ErrAmbiguousDisk", err)
	}
}

func TestDiskSpecXML(t *testing.T) {
	x, err := DiskSpec{File: "/v/vol.img", Target: "vdb", Serial: "vol-1", Alias: "ua-vol-1"}.XML()
	if err != nil {
		t.Fatal(err)
	}
	def, err := ParseDomainBytes([]byte("<domain><name>x</name><devices>" + x + "</devices></domain>"))
	if err != nil {
		t.Fatal(err)
	}
	want := Disk{Device: "disk", Target: "vdb", Bus: "virtio", Serial: "vol-1", Alias: "ua-vol-1", AliasVolumeID: "vol-1", Source: Source{Type: "file", Path: "/v/vol.img"}}
	got := def.Disks[0]
	got.raw = nil
	if !equalJSON(got, want) {
		t.Errorf("round trip = %+v, want %+v", got, want)
	}
	for name, bad := range map[string]DiskSpec{
		"no source":    {Target: "vdb"},
		"two sources":  {File: "/a", BlockDev: "/dev/b", Target: "vdb"},
		"no target":    {File: "/a"},
		"alias prefix": {File: "/a", Target: "vdb", Alias: "vol-1"},
	} {
		if _, err := bad.XML(); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%s: err = %v, want ErrInvalidSpec", name, err)
		}
	}
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// TestParseDomainMetadataNamespaces: nova's element is found by namespace,
// whatever its prefix, next to other applications' metadata; a domain
// without it has no Nova.
func TestParseDomainMetadataNamespaces(t *testing.T) {
	doc := `<domain type='kvm'><name>i-1</name><uuid>AAAAAAAA-0000-4000-8000-000000000001</uuid><metadata>
  <app:thing xmlns:app="http://example.org/app/1"><app:name>not nova</app:name></app:thing>
  <instance xmlns="http://openstack.org/xmlns/libvirt/nova/1.1"><name>vm-x</name><owner><project uuid="p1">proj</project></owner></instance>
</metadata></domain>`
	def, err := ParseDomainBytes([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if def.UUID != "aaaaaaaa-0000-4000-8000-000000000001" {
		t.Errorf("uuid not normalised to lower case: %s", def.UUID)
	}
	if def.Nova == nil || def.Nova.Name != "vm-x" || def.Nova.ProjectID != "p1" || def.Nova.ProjectName != "proj" {
		t.Errorf("nova = %+v", def.Nova)
	}
	other := `<domain type='kvm'><name>i-2</name><metadata><app:thing xmlns:app="http://example.org/app/1"/></metadata></domain>`
	def, err = ParseDomainBytes([]byte(other))
	if err != nil || def.Nova != nil {
		t.Errorf("foreign metadata only: nova=%+v err=%v, want none", def.Nova, err)
	}
}
