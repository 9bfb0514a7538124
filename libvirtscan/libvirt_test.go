package libvirtscan_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/cinderwarden/cinderwarden/internal/testenv"
	"github.com/cinderwarden/cinderwarden/libvirtscan"
	"github.com/cinderwarden/cinderwarden/libvirtscan/libvirttest"
)

func findDomain(t *testing.T, doms []libvirtscan.Domain, uuid string) libvirtscan.Domain {
	t.Helper()
	for _, d := range doms {
		if d.UUID == uuid {
			return d
		}
	}
	t.Fatalf("domain %s not in scan of %d domains", uuid, len(doms))
	return libvirtscan.Domain{}
}

func diskBySerial(def *libvirtscan.Definition, serial string) (libvirtscan.Disk, bool) {
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

// TestFirmwareGuestAttachScanDetach runs the zombie life cycle on a real
// qemu TCG domain that boots only SeaBIOS: a nova-style hot-plug shows in
// both definitions; a nova-style detach removes the disk from the
// persistent config but the guest never acknowledges the unplug, so the live
// removal is reported pending and the disk stays in the running domain.
func TestFirmwareGuestAttachScanDetach(t *testing.T) {
	c := libvirttest.Dial(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Second)
	defer cancel()
	fw := libvirttest.FirmwareDomain(t, c, libvirttest.FirmwareOptions{})
	vol := libvirttest.NewUUID(t)
	file := libvirttest.SparseFile(t, filepath.Join(fw.Dir, "volume-"+vol), 8<<20)

	if err := c.AttachDisk(ctx, fw.Name, libvirtscan.DiskSpec{File: file, Target: "vdb", Serial: vol, Alias: "ua-" + vol}); err != nil {
		t.Fatalf("AttachDisk: %v", err)
	}
	doms, stats, err := c.Scan(ctx, libvirtscan.ScanOptions{})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	d := findDomain(t, doms, fw.UUID)
	if d.Name != fw.Name || d.State != libvirtscan.StateRunning || !d.Active || !d.Persistent {
		t.Errorf("domain = %s %s active=%v persistent=%v", d.Name, d.State, d.Active, d.Persistent)
	}
	if stats.ListCalls != 2 || stats.XMLCalls < 2 {
		t.Errorf("stats = %+v, want 2 list calls and two XML fetches for a running persistent domain", stats)
	}
	for name, def := range map[string]*libvirtscan.Definition{"live": d.Live, "config": d.Config} {
		disk, ok := diskBySerial(def, vol)
		if !ok {
			t.Fatalf("%s definition lacks the attached disk: %+v", name, def)
		}
		if disk.Target != "vdb" || disk.Bus != "virtio" || disk.Alias != "ua-"+vol || disk.AliasVolumeID != vol || disk.Source.Path != file || disk.Device != "disk" {
			t.Errorf("%s disk = %+v", name, disk)
		}
	}

	sel := libvirtscan.DiskSelector{Serial: vol}
	start := time.Now()
	res, err := c.DetachDisk(ctx, fw.UUID, sel, libvirtscan.DetachOptions{Timeout: 500 * time.Millisecond, Attempts: 2})
	if err != nil {
		t.Fatalf("DetachDisk: %v", err)
	}
	t.Logf("detach result %+v in %v", res, time.Since(start))
	if res.Config != libvirtscan.OutcomeRemoved || res.Live != libvirtscan.OutcomePending || res.RemovedEvent || res.LiveAttempts != 2 || res.Gone() {
		t.Errorf("result = %+v, want config removed, live pending after 2 attempts, no event", res)
	}
	after, err := c.Domain(ctx, fw.Name)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := diskBySerial(after.Config, vol); ok {
		t.Error("disk still in the persistent config")
	}
	if _, ok := diskBySerial(after.Live, vol); !ok {
		t.Error("disk left the live domain, but a firmware-only guest cannot acknowledge an unplug")
	}

	// Again: the config has nothing left; the live request is repeated
	// and is still not acknowledged.
	res, err = c.DetachDisk(ctx, fw.Name, sel, libvirtscan.DetachOptions{Timeout: 200 * time.Millisecond, Attempts: 1})
	if err != nil {
		t.Fatalf("second DetachDisk: %v", err)
	}
	if res.Config != libvirtscan.OutcomeNotPresent || res.Live != libvirtscan.OutcomePending {
		t.Errorf("second result = %+v, want config not present, live pending", res)
	}

	// A caller's deadline ends the wait for the guest at once.
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	start = time.Now()
	res, err = c.DetachDisk(short, fw.Name, sel, libvirtscan.DetachOptions{Timeout: 20 * time.Second, Attempts: 8})
	cancelShort()
	if !errors.Is(err, context.DeadlineExceeded) || res.Live != libvirtscan.OutcomePending || time.Since(start) > 5*time.Second {
		t.Errorf("detach under a 300 ms deadline: res=%+v err=%v after %v; want DeadlineExceeded, live pending, promptly", res, err, time.Since(start))
	}

	// A disk that is nowhere is "not present", not an error.
	res, err = c.DetachDisk(ctx, fw.Name, libvirtscan.DiskSelector{Serial: "no-such-volume"}, libvirtscan.DetachOptions{Timeout: 100 * time.Millisecond, Attempts: 1})
	if err != nil || !res.NotPresent() || res.LiveAttempts != 0 {
		t.Errorf("absent disk: res=%+v err=%v, want not present without asking", res, err)
	}

	_, err = c.Domain(ctx, "cwtest-no-such-domain")
	if !errors.Is(err, libvirtscan.ErrDomainNotFound) {
		t.Errorf("unknown domain: err = %v, want ErrDomainNotFound", err)
	}
}

// TestTransientDomainScan: a transient domain has a live definition and
// no config; attach goes live only and detach has no config step.
func TestTransientDomainScan(t *testing.T) {
	c := libvirttest.Dial(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	fw := libvirttest.FirmwareDomain(t, c, libvirttest.FirmwareOptions{Transient: true})
	vol := libvirttest.NewUUID(t)
	file := libvirttest.SparseFile(t, filepath.Join(fw.Dir, "volume-"+vol), 1<<20)
	if err := c.AttachDisk(ctx, fw.UUID, libvirtscan.DiskSpec{File: file, Target: "vdc", Serial: vol}); err != nil {
		t.Fatalf("AttachDisk: %v", err)
	}
	d, err := c.Domain(ctx, fw.UUID)
	if err != nil {
		t.Fatal(err)
	}
	if d.Persistent || d.Config != nil || d.Live == nil {
		t.Fatalf("transient domain: persistent=%v config=%v live=%v", d.Persistent, d.Config != nil, d.Live != nil)
	}
	disk, ok := diskBySerial(d.Live, vol)
	if !ok || disk.Alias == "" || disk.AliasVolumeID != "" {
		t.Errorf("live disk = %+v (ok=%v): want libvirt's own alias, no volume id from it", disk, ok)
	}
	res, err := c.DetachDisk(ctx, fw.Name, libvirtscan.DiskSelector{Serial: vol}, libvirtscan.DetachOptions{Timeout: 300 * time.Millisecond, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Config != libvirtscan.OutcomeNotApplicable || res.Live != libvirtscan.OutcomePending {
		t.Errorf("result = %+v, want config n/a, live pending", res)
	}
}

// TestStoppedDomain: a defined, shut-off domain has only a persistent
// definition; attach and detach touch only that.
func TestStoppedDomain(t *testing.T) {
	c := libvirttest.Dial(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fw := libvirttest.FirmwareDomain(t, c, libvirttest.FirmwareOptions{Stopped: true})
	vol := libvirttest.NewUUID(t)
	file := libvirttest.SparseFile(t, filepath.Join(fw.Dir, "volume-"+vol), 1<<20)
	if err := c.AttachDisk(ctx, fw.Name, libvirtscan.DiskSpec{File: file, Target: "vdb", Serial: vol, Alias: "ua-" + vol}); err != nil {
		t.Fatalf("AttachDisk: %v", err)
	}
	d, err := c.Domain(ctx, fw.UUID)
	if err != nil {
		t.Fatal(err)
	}
	if d.Active || d.State != libvirtscan.StateShutoff || d.Live != nil || d.Config == nil {
		t.Fatalf("stopped domain: active=%v state=%s live=%v config=%v", d.Active, d.State, d.Live != nil, d.Config != nil)
	}
	if disk, ok := diskBySerial(d.Config, vol); !ok || disk.AliasVolumeID != vol {
		t.Errorf("config disk = %+v (found %v)", disk, ok)
	}
	res, err := c.DetachDisk(ctx, fw.Name, libvirtscan.DiskSelector{Alias: "ua-" + vol}, libvirtscan.DetachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Config != libvirtscan.OutcomeRemoved || res.Live != libvirtscan.OutcomeNotApplicable || !res.Gone() || res.NotPresent() {
		t.Errorf("result = %+v, want config removed, live not applicable", res)
	}
}

// TestScanTestDriver scans libvirt's test driver through libvirtd
// (test+unix:///abs/file.xml): running and shut-off domains, nova metadata,
// serials and aliases.
func TestScanTestDriver(t *testing.T) {
	c := libvirttest.Dial(t, libvirttest.TestDriverURI(t, 12, 3))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	doms, stats, err := c.Scan(ctx, libvirtscan.ScanOptions{Parallelism: 4})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	if len(doms) != 12 {
		t.Fatalf("got %d domains, want 12", len(doms))
	}
	// 11 running persistent domains need 2 fetches each, the shut-off one 1.
	if stats.ListCalls != 2 || stats.XMLCalls != 23 || stats.Vanished != 0 {
		t.Errorf("stats = %+v, want 2 list calls, 23 XML calls", stats)
	}
	for i := range 12 {
		d := findDomain(t, doms, libvirttest.TestDriverInstanceID(i))
		wantActive := i%10 != 9
		if d.Name != libvirttest.TestDriverInstanceName(i) || d.Active != wantActive || !d.Persistent {
			t.Errorf("domain %d: %s active=%v persistent=%v", i, d.Name, d.Active, d.Persistent)
		}
		if wantActive != (d.State == libvirtscan.StateRunning) || wantActive != (d.Live != nil) || d.Config == nil {
			t.Errorf("domain %d: state %s live=%v config=%v", i, d.State, d.Live != nil, d.Config != nil)
		}
		if d.Nova == nil || d.Nova.ProjectID != libvirttest.TestDriverProject {
			t.Errorf("domain %d: nova metadata %+v", i, d.Nova)
		}
		for j := range 3 {
			vol := libvirttest.TestDriverVolumeID(i, j)
			for _, def := range []*libvirtscan.Definition{d.Live, d.Config} {
				if def == nil {
					continue
				}
				disk, ok := diskBySerial(def, vol)
				if !ok || disk.AliasVolumeID != vol || disk.Source.Type != "block" {
					t.Errorf("domain %d volume %s: %+v (found %v)", i, vol, disk, ok)
				}
			}
		}
	}
}

func TestDialRejectsRemoteAndMissingSocket(t *testing.T) {
	for _, uri := range []string{"qemu+tcp://host/system", "qemu+ssh://host/system", "qemu://host/system",
		"qemu:///system?socket=" + filepath.Join(t.TempDir(), "no-such-sock")} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := libvirtscan.Dial(ctx, libvirtscan.Options{URI: uri})
		cancel()
		if err == nil {
			_ = c.Close()
			t.Errorf("%s: no error", uri)
		}
	}
}

// TestDialSocketParameter opens the test driver through an explicitly named
// daemon socket.
func TestDialSocketParameter(t *testing.T) {
	uri := libvirttest.TestDriverURI(t, 2, 1) + "?socket=" + testenv.LibvirtSocket
	c := libvirttest.Dial(t, uri)
	doms, _, err := c.Scan(context.Background(), libvirtscan.ScanOptions{})
	if err != nil || len(doms) != 2 || doms[0].Config.Type != "test" {
		t.Fatalf("scan through %s: %d domains, %v", uri, len(doms), err)
	}
}

// BenchmarkScanTestDriver1000x4 scans 1,000 domains with 4 volume disks each
// through libvirtd's test driver.
func BenchmarkScanTestDriver1000x4(b *testing.B) {
	c := libvirttest.Dial(b, libvirttest.TestDriverURI(b, 1000, 4))
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		doms, stats, err := c.Scan(ctx, libvirtscan.ScanOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if len(doms) != 1000 {
			b.Fatalf("%d domains", len(doms))
		}
		b.ReportMetric(float64(stats.ListCalls+stats.XMLCalls), "libvirt-calls/op")
	}
}

// TestLinuxGuestAcknowledgesUnplug boots a real Linux kernel (Debian's
// cloud kernel, busybox initramfs) that handles ACPI PCI hot-unplug: the
// nova-style detach sees DEVICE_REMOVED and reports the disk removed from
// both definitions.
func TestLinuxGuestAcknowledgesUnplug(t *testing.T) {
	c := libvirttest.Dial(t, "")
	g := libvirttest.LinuxDomain(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Second)
	defer cancel()
	vol := libvirttest.NewUUID(t)
	file := libvirttest.SparseFile(t, filepath.Join(g.Dir, "volume-"+vol), 8<<20)
	if err := c.AttachDisk(ctx, g.Name, libvirtscan.DiskSpec{File: file, Target: "vdb", Serial: vol, Alias: "ua-" + vol}); err != nil {
		t.Fatalf("AttachDisk: %v", err)
	}
	start := time.Now()
	res, err := c.DetachDisk(ctx, g.UUID, libvirtscan.DiskSelector{Serial: vol}, libvirtscan.DetachOptions{Timeout: 15 * time.Second, Attempts: 3})
	if err != nil {
		t.Fatalf("DetachDisk: %v", err)
	}
	t.Logf("detach result %+v in %v", res, time.Since(start).Round(time.Millisecond))
	if res.Config != libvirtscan.OutcomeRemoved || res.Live != libvirtscan.OutcomeRemoved || !res.RemovedEvent || !res.Gone() {
		t.Errorf("result = %+v, want removed from config and live with DEVICE_REMOVED seen", res)
	}
	d, err := c.Domain(ctx, g.Name)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := diskBySerial(d.Live, vol); ok {
		t.Error("disk still in the live domain")
	}
	if _, ok := diskBySerial(d.Config, vol); ok {
		t.Error("disk still in the persistent config")
	}
}
