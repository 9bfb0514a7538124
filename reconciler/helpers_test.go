package reconciler

import (
	"fmt"
	"time"
)

// Builders for minimal observations. Ids are readable UUIDs: instance n is
// 00000000-0000-4000-8000-00000000000n, volume n ...-a0000000000n.

const testHost = "cmp-1"

var t0 = time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC)

func inst(n int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", n) }
func vol(n int) string  { return fmt.Sprintf("00000000-0000-4000-8000-a%011d", n) }
func attID(n int) string {
	return fmt.Sprintf("00000000-0000-4000-8000-c%011d", n)
}

func okSrc() SourceStatus { return SourceStatus{State: SourceOK} }

// obsOf is an observation with every source complete.
func obsOf(domains []Domain, servers []Server, volumes []Volume) Observation {
	return Observation{
		Host:    testHost,
		Libvirt: Libvirt{Source: okSrc(), Domains: domains},
		Nova:    Nova{Source: okSrc(), Servers: servers},
		Cinder:  Cinder{Source: okSrc(), Volumes: volumes},
		Mounts:  Mounts{Source: okSrc()},
	}
}

func domain(n int, disks ...Disk) Domain {
	all := append([]Disk{{Target: "vda", Bus: "virtio", Device: "disk", Source: "/var/lib/nova/instances/" + inst(n) + "/disk", Live: true, Config: true}}, disks...)
	return Domain{UUID: inst(n), Name: fmt.Sprintf("instance-%08x", n), State: "running", HasNovaMetadata: true, Disks: all}
}

// vdisk is a Nova volume disk: serial = volume id, in both definitions.
func vdisk(target string, v int) Disk {
	return Disk{Target: target, Bus: "virtio", Device: "disk", Serial: vol(v), Source: "/dev/mapper/volume-" + vol(v), Live: true, Config: true}
}

func server(n int, mappings ...ServerVolume) Server {
	return Server{ID: inst(n), Name: fmt.Sprintf("vm-%d", n), InstanceName: fmt.Sprintf("instance-%08x", n), Host: testHost, Status: "ACTIVE", VMState: "active", Volumes: mappings}
}

func mapping(v, a int, device string) ServerVolume {
	m := ServerVolume{VolumeID: vol(v), Device: device}
	if a > 0 {
		m.AttachmentID = attID(a)
	}
	return m
}

func volume(v int, status string, atts ...VolumeAttachment) Volume {
	return Volume{ID: vol(v), Status: status, Attachments: atts}
}

func attachment(a, instance int, device string) VolumeAttachment {
	return VolumeAttachment{ID: attID(a), ServerID: inst(instance), HostName: testHost, Device: device, AttachStatus: "attached"}
}

// immediate acts on first sight, with --apply, so class tests see the
// remedy's final state.
func immediate() Policy {
	p := DefaultPolicy()
	p.Apply, p.MinSightings, p.MinAge = true, 1, 0
	p.MountBases = []string{"/var/lib/nova/mnt"}
	return p
}
