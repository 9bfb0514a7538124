package libvirttest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestDriverInstanceID is the uuid of generated domain i (also its nova
// instance id).
func TestDriverInstanceID(i int) string {
	return fmt.Sprintf("00000000-0000-4000-8000-%012x", i)
}

// TestDriverInstanceName is nova's libvirt name for generated domain i.
func TestDriverInstanceName(i int) string { return fmt.Sprintf("instance-%08x", i+1) }

// TestDriverVolumeID is the volume behind disk j (0-based, vdb onward) of
// generated domain i: the disk's serial and the id in its ua- alias.
func TestDriverVolumeID(i, j int) string {
	return fmt.Sprintf("%08x-%04x-4000-9000-%012x", i, j, i*64+j)
}

// TestDriverProject is the nova owner project of every generated domain.
const TestDriverProject = "9a2b3c4d5e6f40718293a4b5c6d7e8f9"

// TestDriverXML renders a document for libvirt's test driver with n
// domains, each with a root disk (vda) and disks volume disks (vdb…) whose
// serial is the volume id and alias "ua-<volume id>", plus nova metadata.
// Every tenth domain is shut off; the rest run.
func TestDriverXML(n, disks int) []byte {
	var b bytes.Buffer
	b.WriteString("<node>\n")
	for i := range n {
		id := TestDriverInstanceID(i)
		fmt.Fprintf(&b, `<domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
  <name>%s</name>
  <uuid>%s</uuid>
  <metadata>
    <nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1">
      <nova:package version="27.1.0"/>
      <nova:name>vm-%d</nova:name>
      <nova:creationTime>2026-11-25 20:00:00</nova:creationTime>
      <nova:flavor name="m1.tiny"><nova:memory>512</nova:memory><nova:disk>1</nova:disk><nova:swap>0</nova:swap><nova:ephemeral>0</nova:ephemeral><nova:vcpus>1</nova:vcpus></nova:flavor>
      <nova:owner><nova:user uuid="0f1e2d3c4b5a46978877665544332211">demo</nova:user><nova:project uuid="%s">demo</nova:project></nova:owner>
      <nova:root type="image" uuid="5d7a1b4e-2f0c-4e8a-9b6d-3c2e1f0a9b8c"/>
    </nova:instance>
  </metadata>
  <memory unit='MiB'>512</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'><source file='/var/lib/nova/instances/%s/disk'/><target dev='vda' bus='virtio'/></disk>
`, TestDriverInstanceName(i), id, i, TestDriverProject, id)
		for j := range disks {
			vol := TestDriverVolumeID(i, j)
			fmt.Fprintf(&b, "    <disk type='block' device='disk'><source dev='/dev/disk/by-path/ip-192.0.2.10:3260-iscsi-iqn.2010-10.org.openstack:volume-%s-lun-1'/><target dev='vd%c' bus='virtio'/><serial>%s</serial><alias name='ua-%s'/></disk>\n", vol, 'b'+j, vol, vol)
		}
		b.WriteString("  </devices>\n")
		if i%10 == 9 {
			b.WriteString("  <test:runstate>5</test:runstate>\n")
		}
		b.WriteString("</domain>\n")
	}
	b.WriteString("</node>\n")
	return b.Bytes()
}

// TestDriverURI writes TestDriverXML(n, disks) to a temporary file and
// returns the URI that opens it through libvirtd.
func TestDriverURI(t testing.TB, n, disks int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "domains.xml")
	if err := os.WriteFile(path, TestDriverXML(n, disks), 0o644); err != nil {
		t.Fatalf("write test driver document: %v", err)
	}
	return "test+unix://" + path
}
