package libvirtcompute_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/volumeattach"

	"github.com/cinderwarden/cinderwarden/libvirtscan"
	"github.com/cinderwarden/cinderwarden/libvirtscan/libvirttest"
	"github.com/cinderwarden/cinderwarden/simcloud"
	"github.com/cinderwarden/cinderwarden/simcloud/libvirtcompute"
	"github.com/cinderwarden/cinderwarden/simcloud/simtest"
)

type clients struct{ volume, compute *gophercloud.ServiceClient }

func connect(t *testing.T, c simcloud.Credentials) clients {
	t.Helper()
	sc := simtest.Connect(t, c, "3.44", "2.79")
	return clients{volume: sc.Volume, compute: sc.Compute}
}

func waitVolume(t *testing.T, c *gophercloud.ServiceClient, id, want string) *volumes.Volume {
	t.Helper()
	return simtest.WaitVolume(t, c, id, want)
}

func forceDetach(c *gophercloud.ServiceClient, volumeID, attachmentID string) error {
	_, err := c.Post(context.Background(), c.ServiceURL("volumes", volumeID, "action"),
		map[string]any{"os-force_detach": map[string]any{"attachment_id": attachmentID, "connector": nil}}, nil,
		&gophercloud.RequestOpts{OkCodes: []int{202}})
	return err
}

func diskOf(def *libvirtscan.Definition, serial string) (libvirtscan.Disk, bool) {
	if def == nil {
		return libvirtscan.Disk{}, false
	}
	for _, d := range def.Disks {
		if d.Serial == serial {
			return d, true
		}
	}
	return libvirtscan.Disk{}, false
}

type rig struct {
	sim     *simcloud.Sim
	conn    *libvirtscan.Conn
	fw      libvirttest.Firmware
	inst    simcloud.Instance
	member  clients
	admin   clients
	backend *libvirtcompute.Backend
}

// newRig boots a firmware-only qemu domain and a simulator whose only
// backend is this package, with one Nova instance mapped to the domain (the
// instance id is the domain uuid, as with real Nova).
func newRig(t *testing.T, opts libvirtcompute.Options) rig {
	t.Helper()
	conn := libvirttest.Dial(t, "")
	return newRigOn(t, conn, libvirttest.FirmwareDomain(t, conn, libvirttest.FirmwareOptions{}), opts)
}

func newRigOn(t *testing.T, conn *libvirtscan.Conn, fw libvirttest.Firmware, opts libvirtcompute.Options) rig {
	t.Helper()
	opts.Conn = conn
	opts.Domains = map[string]string{fw.UUID: fw.Name}
	backend, err := libvirtcompute.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	sim, err := simcloud.Start(context.Background(), simcloud.Options{
		StateDir: libvirttest.SharedDir(t), // backing files must be readable by libvirt-qemu
		Backends: []simcloud.ComputeBackend{backend},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Close detaches what is still attached through the backends; the
		// firmware guest would refuse (ErrLiveDetachPending) and its domain
		// is destroyed next anyway, so take it off this host first.
		backend.SetDomain(fw.UUID, "")
		if err := sim.Close(); err != nil {
			t.Errorf("close simulator: %v", err)
		}
	})
	inst, err := sim.AddInstance(simcloud.InstanceSpec{ID: fw.UUID, Host: "compute-1"})
	if err != nil {
		t.Fatal(err)
	}
	return rig{sim: sim, conn: conn, fw: fw, inst: inst, member: connect(t, sim.Member()), admin: connect(t, sim.Admin()), backend: backend}
}

func (r rig) attach(t *testing.T, name string) *volumes.Volume {
	t.Helper()
	ctx := context.Background()
	v, err := volumes.Create(ctx, r.member.volume, volumes.CreateOpts{Size: 1, Name: name}, nil).Extract()
	if err != nil {
		t.Fatalf("create volume: %v", err)
	}
	waitVolume(t, r.member.volume, v.ID, "available")
	if _, err := volumeattach.Create(ctx, r.member.compute, r.inst.ID, volumeattach.CreateOpts{VolumeID: v.ID}).Extract(); err != nil {
		t.Fatalf("nova attach: %v", err)
	}
	return waitVolume(t, r.member.volume, v.ID, "in-use")
}

// TestNovaAttachThenCinderForceDetachLeavesZombie is the issue-2 libvirt
// acceptance test: a Nova attach through gophercloud over HTTP makes the
// disk appear in the real domain (live and persistent) with
// <serial>volume id</serial>; Cinder's os-force_detach (once Nova has lost
// its mapping, since the bug-2004555 guard answers 409 before) makes the
// volume available while the disk stays in the domain: a zombie.
func TestNovaAttachThenCinderForceDetachLeavesZombie(t *testing.T) {
	r := newRig(t, libvirtcompute.Options{Detach: libvirtscan.DetachOptions{Timeout: 300 * time.Millisecond, Attempts: 1}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	v := r.attach(t, "data")
	dom, err := r.conn.Domain(ctx, r.fw.Name)
	if err != nil {
		t.Fatal(err)
	}
	for name, def := range map[string]*libvirtscan.Definition{"live": dom.Live, "config": dom.Config} {
		d, ok := diskOf(def, v.ID)
		if !ok {
			t.Fatalf("%s definition has no disk with serial %s: %+v", name, v.ID, def.Disks)
		}
		if d.Target != "vdb" || d.Bus != "virtio" || d.Alias != "ua-"+v.ID || d.Source.Path != r.sim.BackingFile(v.ID) {
			t.Errorf("%s disk = %+v, want vdb virtio ua-%s on %s", name, d, v.ID, r.sim.BackingFile(v.ID))
		}
	}
	if fi, err := os.Stat(r.sim.BackingFile(v.ID)); err != nil || fi.Size() != 1<<30 {
		t.Errorf("backing file: %v, %v; want a 1 GiB sparse file", fi, err)
	}

	attID := v.Attachments[0].AttachmentID
	err = forceDetach(r.admin.volume, v.ID, attID)
	if !gophercloud.ResponseCodeIs(err, http.StatusConflict) {
		t.Fatalf("force-detach while Nova holds the attachment: %v, want 409", err)
	}
	if n, err := r.sim.ForgetNovaMapping(r.inst.ID, v.ID); err != nil || n != 1 {
		t.Fatalf("forget Nova mapping: %d, %v", n, err)
	}
	if err := forceDetach(r.admin.volume, v.ID, attID); err != nil {
		t.Fatalf("force-detach: %v", err)
	}
	got := waitVolume(t, r.member.volume, v.ID, "available")
	if len(got.Attachments) != 0 {
		t.Errorf("Cinder still lists attachments: %+v", got.Attachments)
	}

	dom, err = r.conn.Domain(ctx, r.fw.UUID)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := diskOf(dom.Live, v.ID); !ok {
		t.Error("force-detach removed the disk from the live domain; it must stay (zombie)")
	}
	if _, ok := diskOf(dom.Config, v.ID); !ok {
		t.Error("force-detach removed the disk from the persistent config; it must stay (zombie)")
	}
}

// TestNovaDetachOnFirmwareGuest: a Nova detach reaches libvirt, removes
// the disk from the persistent config, and, because the firmware-only
// guest never acknowledges, fails like nova-compute does: the volume goes
// back to in-use and the disk stays live. A second volume then gets the
// next free target.
func TestNovaDetachOnFirmwareGuest(t *testing.T) {
	r := newRig(t, libvirtcompute.Options{Detach: libvirtscan.DetachOptions{Timeout: 300 * time.Millisecond, Attempts: 2}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	v := r.attach(t, "first")
	if err := volumeattach.Delete(ctx, r.member.compute, r.inst.ID, v.ID).ExtractErr(); err != nil {
		t.Fatalf("nova detach: %v", err)
	}
	waitVolume(t, r.member.volume, v.ID, "detaching")
	waitVolume(t, r.member.volume, v.ID, "in-use")
	var failed bool
	for _, e := range r.sim.Events() {
		if e.Kind == simcloud.EventDetachFailed && e.VolumeID == v.ID {
			failed = true
		}
	}
	if !failed {
		t.Errorf("no detach-failed event for %s: %+v", v.ID, r.sim.Events())
	}
	dom, err := r.conn.Domain(ctx, r.fw.Name)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := diskOf(dom.Config, v.ID); ok {
		t.Error("disk still in the persistent config after nova-style detach")
	}
	if _, ok := diskOf(dom.Live, v.ID); !ok {
		t.Error("disk left the live domain although the guest cannot acknowledge")
	}

	w := r.attach(t, "second")
	dom, err = r.conn.Domain(ctx, r.fw.Name)
	if err != nil {
		t.Fatal(err)
	}
	d, ok := diskOf(dom.Live, w.ID)
	if !ok || d.Target != "vdc" {
		t.Errorf("second volume disk = %+v (found %v), want target vdc (vdb is still live)", d, ok)
	}
}

// TestNovaDetachOnLinuxGuest: with a guest that acknowledges hot-unplug
// (a real Linux kernel), a Nova detach through the API removes the disk from
// both definitions and the volume becomes available.
func TestNovaDetachOnLinuxGuest(t *testing.T) {
	conn := libvirttest.Dial(t, "")
	g := libvirttest.LinuxDomain(t, conn)
	r := newRigOn(t, conn, libvirttest.Firmware{Name: g.Name, UUID: g.UUID, Dir: g.Dir},
		libvirtcompute.Options{Detach: libvirtscan.DetachOptions{Timeout: 10 * time.Second, Attempts: 3}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	v := r.attach(t, "acked")
	dom, err := r.conn.Domain(ctx, g.Name)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := diskOf(dom.Live, v.ID); !ok {
		t.Fatalf("attached disk %s not in the live domain", v.ID)
	}
	if err := volumeattach.Delete(ctx, r.member.compute, r.inst.ID, v.ID).ExtractErr(); err != nil {
		t.Fatalf("nova detach: %v", err)
	}
	waitVolume(t, r.member.volume, v.ID, "available")
	dom, err = r.conn.Domain(ctx, g.Name)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := diskOf(dom.Live, v.ID); ok {
		t.Error("disk still in the live domain after an acknowledged Nova detach")
	}
	if _, ok := diskOf(dom.Config, v.ID); ok {
		t.Error("disk still in the persistent config after Nova detach")
	}
	for _, e := range r.sim.Events() {
		if e.Kind == simcloud.EventDetachFailed {
			t.Errorf("unexpected detach failure: %+v", e)
		}
	}
}

// TestBackendDirect covers what the simulator does not reach: idempotent
// re-attach, unmapped instances, a gone domain, and AcceptLivePending.
func TestBackendDirect(t *testing.T) {
	conn := libvirttest.Dial(t, "")
	fw := libvirttest.FirmwareDomain(t, conn, libvirttest.FirmwareOptions{})
	b, err := libvirtcompute.New(libvirtcompute.Options{Conn: conn, Domains: map[string]string{"inst-1": fw.UUID},
		Detach: libvirtscan.DetachOptions{Timeout: 200 * time.Millisecond, Attempts: 1}, AcceptLivePending: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	vol := libvirttest.NewUUID(t)
	a := simcloud.Attachment{InstanceID: "inst-1", VolumeID: vol, SizeGiB: 2, BackingFile: fw.Dir + "/" + vol + ".img"}
	dev, err := b.AttachVolume(ctx, a)
	if err != nil || dev != "/dev/vdb" {
		t.Fatalf("attach: %q %v", dev, err)
	}
	if fi, err := os.Stat(a.BackingFile); err != nil || fi.Size() != 2<<30 {
		t.Errorf("backing file: %v %v, want 2 GiB", fi, err)
	}
	if dev, err := b.AttachVolume(ctx, a); err != nil || dev != "/dev/vdb" {
		t.Errorf("re-attach: %q %v, want the same disk", dev, err)
	}
	dom, _ := conn.Domain(ctx, fw.UUID)
	n := 0
	for _, d := range dom.Live.Disks {
		if d.Serial == vol {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d live disks with serial %s after re-attach, want 1", n, vol)
	}

	// Two attaches at once on one instance get distinct targets.
	devs := make(chan string, 2)
	for _, v := range []string{libvirttest.NewUUID(t), libvirttest.NewUUID(t)} {
		go func() {
			d, err := b.AttachVolume(ctx, simcloud.Attachment{InstanceID: "inst-1", VolumeID: v, SizeGiB: 1, BackingFile: fw.Dir + "/" + v + ".img"})
			if err != nil {
				t.Errorf("concurrent attach: %v", err)
			}
			devs <- d
		}()
	}
	if d1, d2 := <-devs, <-devs; d1 == d2 || d1 == "/dev/vdb" || d2 == "/dev/vdb" {
		t.Errorf("concurrent attaches got %q and %q, want two distinct new targets", d1, d2)
	}

	other := simcloud.Attachment{InstanceID: "elsewhere", VolumeID: vol, BackingFile: a.BackingFile}
	if dev, err := b.AttachVolume(ctx, other); err != nil || dev != "" {
		t.Errorf("unmapped instance: %q %v, want nothing done", dev, err)
	}
	if err := b.DetachVolume(ctx, other); err != nil {
		t.Errorf("unmapped instance detach: %v", err)
	}

	if err := b.DetachVolume(ctx, a); err != nil {
		t.Fatalf("detach with AcceptLivePending: %v", err)
	}
	dom, _ = conn.Domain(ctx, fw.UUID)
	if _, ok := diskOf(dom.Config, vol); ok {
		t.Error("disk still in persistent config")
	}

	strict, err := libvirtcompute.New(libvirtcompute.Options{Conn: conn, Domains: map[string]string{"inst-1": fw.UUID},
		Detach: libvirtscan.DetachOptions{Timeout: 100 * time.Millisecond, Attempts: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if err := strict.DetachVolume(ctx, a); !errors.Is(err, libvirtcompute.ErrLiveDetachPending) {
		t.Errorf("strict detach on a firmware guest: %v, want ErrLiveDetachPending", err)
	}

	gone, err := libvirtcompute.New(libvirtcompute.Options{Conn: conn, Domains: map[string]string{"inst-2": "cwtest-no-such-domain"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := gone.DetachVolume(ctx, simcloud.Attachment{InstanceID: "inst-2", VolumeID: vol}); err != nil {
		t.Errorf("detach from a domain that is gone: %v", err)
	}
	if _, err := gone.AttachVolume(ctx, simcloud.Attachment{InstanceID: "inst-2", VolumeID: vol, BackingFile: a.BackingFile}); !errors.Is(err, libvirtscan.ErrDomainNotFound) {
		t.Errorf("attach to a domain that is gone: %v, want ErrDomainNotFound", err)
	}

	if _, err := libvirtcompute.New(libvirtcompute.Options{}); err == nil {
		t.Error("New without a connection: no error")
	}
}
