package reconciler_test

import (
	"reflect"
	"testing"

	"github.com/cinderwarden/cinderwarden/libvirtscan"
	"github.com/cinderwarden/cinderwarden/openstack"
	"github.com/cinderwarden/cinderwarden/reconciler"
)

const (
	volA = "aaaaaaaa-0000-4000-8000-000000000001"
	volB = "bbbbbbbb-0000-4000-8000-000000000002"
	srv1 = "11111111-0000-4000-8000-000000000001"
	srv2 = "22222222-0000-4000-8000-000000000002"
)

func TestVolumeFromCinder(t *testing.T) {
	cases := []struct {
		name    string
		vol     openstack.Volume
		records []openstack.Attachment
		want    reconciler.Volume
	}{
		{
			name: "attachments as the volume shows them",
			vol: openstack.Volume{ID: volA, Status: "in-use", Multiattach: true, Attachments: []openstack.VolumeAttachment{
				{AttachmentID: "att-1", ServerID: srv1, HostName: "compute-1", Device: "/dev/vdb"}}},
			want: reconciler.Volume{ID: volA, Status: "in-use", Multiattach: true, Attachments: []reconciler.VolumeAttachment{
				{ID: "att-1", ServerID: srv1, HostName: "compute-1", Device: "/dev/vdb"}}},
		},
		{
			name: "a reserved record the volume does not show is added with its status",
			vol: openstack.Volume{ID: volA, Status: "in-use", Multiattach: true, Attachments: []openstack.VolumeAttachment{
				{AttachmentID: "att-1", ServerID: srv1, HostName: "compute-1"}}},
			records: []openstack.Attachment{{ID: "att-2", VolumeID: volA, InstanceID: srv2, Status: "reserved"}},
			want: reconciler.Volume{ID: volA, Status: "in-use", Multiattach: true, Attachments: []reconciler.VolumeAttachment{
				{ID: "att-1", ServerID: srv1, HostName: "compute-1"},
				{ID: "att-2", ServerID: srv2, AttachStatus: "reserved"}}},
		},
		{
			name: "a record the volume shows lends its status; records of other volumes are ignored",
			vol: openstack.Volume{ID: volA, Status: "in-use", Attachments: []openstack.VolumeAttachment{
				{AttachmentID: "ATT-1", ServerID: srv1}}},
			records: []openstack.Attachment{{ID: "att-1", VolumeID: volA, InstanceID: srv1, Status: "attaching"},
				{ID: "att-9", VolumeID: volB, InstanceID: srv1, Status: "reserved"}},
			want: reconciler.Volume{ID: volA, Status: "in-use", Attachments: []reconciler.VolumeAttachment{
				{ID: "ATT-1", ServerID: srv1, AttachStatus: "attaching"}}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := reconciler.VolumeFromCinder(tc.vol, tc.records); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestDomainFromScan(t *testing.T) {
	root := libvirtscan.Disk{Device: "disk", Target: "vda", Bus: "virtio", Alias: "virtio-disk0", Source: libvirtscan.Source{Type: "file", Path: "/var/lib/nova/instances/x/disk"}}
	rootCfg := root
	rootCfg.Alias = "" // libvirt's own alias exists in the live definition only
	vol := libvirtscan.Disk{Device: "disk", Target: "vdb", Bus: "virtio", Serial: volA, Alias: "ua-" + volA, Source: libvirtscan.Source{Type: "block", Path: "/dev/sdb"}}
	cfgOnly := libvirtscan.Disk{Device: "disk", Target: "vdc", Bus: "virtio", Serial: volB, Alias: "ua-" + volB, Source: libvirtscan.Source{Type: "network", Protocol: "rbd", Name: "volumes/volume-" + volB}}
	d := libvirtscan.Domain{UUID: srv1, Name: "instance-00000001", State: libvirtscan.StateRunning, Active: true, Persistent: true,
		Nova:   &libvirtscan.NovaMetadata{Name: "vm"},
		Live:   &libvirtscan.Definition{Disks: []libvirtscan.Disk{root, vol}},
		Config: &libvirtscan.Definition{Disks: []libvirtscan.Disk{rootCfg, vol, cfgOnly}},
	}
	want := reconciler.Domain{UUID: srv1, Name: "instance-00000001", State: "running", HasNovaMetadata: true, Disks: []reconciler.Disk{
		{Target: "vda", Bus: "virtio", Device: "disk", Source: "file:/var/lib/nova/instances/x/disk", Live: true, Config: true},
		{Target: "vdb", Bus: "virtio", Device: "disk", Serial: volA, Alias: "ua-" + volA, Source: "block:/dev/sdb", Live: true, Config: true},
		{Target: "vdc", Bus: "virtio", Device: "disk", Serial: volB, Alias: "ua-" + volB, Source: "rbd:volumes/volume-" + volB, Config: true},
	}}
	if got := reconciler.DomainFromScan(d); !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if got := reconciler.DomainFromScan(libvirtscan.Domain{UUID: srv2, Name: "leftover", State: libvirtscan.StateShutoff}); got.HasNovaMetadata || got.Active() || len(got.Disks) != 0 {
		t.Errorf("bare inactive domain: %+v", got)
	}
}

func TestServerFromNova(t *testing.T) {
	got := reconciler.ServerFromNova(openstack.Server{ID: srv1, Name: "vm", Status: "ACTIVE", TaskState: "", VMState: "active",
		Host: "compute-1", InstanceName: "instance-00000001", VolumesAttached: []string{volA, volB}})
	want := reconciler.Server{ID: srv1, Name: "vm", InstanceName: "instance-00000001", Host: "compute-1", Status: "ACTIVE", VMState: "active",
		Volumes: []reconciler.ServerVolume{{VolumeID: volA}, {VolumeID: volB}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}
