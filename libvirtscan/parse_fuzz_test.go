package libvirtscan

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzParseDomain: any byte string either parses into a Definition whose
// promises hold, or fails with ErrBadXML; it never panics. On success:
// every AliasVolumeID comes from a "ua-" alias and nothing else, disks are
// sorted by target, the uuid is lower-case and trimmed, and parsing the same
// bytes again (through ParseDomain's reader path too) gives the same result.
func FuzzParseDomain(f *testing.F) {
	paths, err := filepath.Glob(filepath.Join("testdata", "*.xml"))
	if err != nil || len(paths) == 0 {
		f.Fatalf("no seed XML in testdata: %v", err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, h := range hostileDomains() {
		if len(h.xml) <= 4096 { // the huge ones stay in the table: as seeds they slow every mutation
			f.Add([]byte(h.xml))
		}
	}
	f.Add([]byte(`<domain><name>a</name><devices><disk><target dev="vdb"/><alias name="ua-x"/></disk>` +
		`<disk><target dev="vda"/><alias name="virtio-disk0"/></disk></devices></domain>`))
	f.Add([]byte(`<domain><uuid>  ABC  </uuid><devices><disk><alias name="ua-"/></disk></devices></domain>`))

	f.Fuzz(func(t *testing.T, data []byte) {
		def, err := ParseDomainBytes(data)
		if err != nil {
			if !errors.Is(err, ErrBadXML) {
				t.Fatalf("error %v does not wrap ErrBadXML", err)
			}
			if def != nil {
				t.Fatalf("error %v came with a definition", err)
			}
			return
		}
		if def.Name == "" && def.UUID == "" {
			t.Fatal("accepted a domain with no name and no uuid")
		}
		if def.UUID != strings.ToLower(strings.TrimSpace(def.UUID)) || def.Name != strings.TrimSpace(def.Name) {
			t.Fatalf("uuid %q / name %q not normalised", def.UUID, def.Name)
		}
		if def.Disks == nil {
			t.Fatal("Disks is nil, want an empty slice")
		}
		for i, d := range def.Disks {
			id, isUA := strings.CutPrefix(d.Alias, AliasPrefix)
			if d.AliasVolumeID != "" && (!isUA || d.AliasVolumeID != id) {
				t.Fatalf("disk %d: AliasVolumeID %q from alias %q", i, d.AliasVolumeID, d.Alias)
			}
			if isUA && d.AliasVolumeID != id {
				t.Fatalf("disk %d: alias %q gave AliasVolumeID %q", i, d.Alias, d.AliasVolumeID)
			}
			if d.Device == "" {
				t.Fatalf("disk %d: empty device kind", i)
			}
			if i > 0 {
				prev := def.Disks[i-1]
				if targetLess(d.Target, prev.Target) ||
					(d.Target == prev.Target && d.Source.String() < prev.Source.String()) {
					t.Fatalf("disks %d (%q %q) and %d (%q %q) out of order",
						i-1, prev.Target, prev.Source, i, d.Target, d.Source)
				}
			}
		}
		again, err := ParseDomain(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("second parse failed: %v", err)
		}
		if !reflect.DeepEqual(stripRaw(def), stripRaw(again)) {
			t.Fatalf("parse not deterministic:\n%+v\n%+v", def, again)
		}
	})
}

// stripRaw drops the unexported parsed element (its pointers differ between
// parses) so that two Definitions compare by content.
func stripRaw(d *Definition) *Definition {
	c := *d
	c.Disks = make([]Disk, len(d.Disks))
	for i, disk := range d.Disks {
		disk.raw = nil
		c.Disks[i] = disk
	}
	return &c
}
