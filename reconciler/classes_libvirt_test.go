package reconciler_test

import (
	"context"
	"strings"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/attachments"

	"github.com/cinderwarden/cinderwarden/internal/testenv"
	"github.com/cinderwarden/cinderwarden/libvirtscan"
	"github.com/cinderwarden/cinderwarden/libvirtscan/libvirttest"
	"github.com/cinderwarden/cinderwarden/openstack"
	"github.com/cinderwarden/cinderwarden/reconciler"
	"github.com/cinderwarden/cinderwarden/simcloud"
)

// TestEveryClassThroughTheRealStack seeds each disk class through the
// simulator's Nova (whose libvirt compute driver hot-plugs into a real
// firmware-only qemu TCG domain) and its admin Cinder actions, observes
// through libvirtd and HTTP, and checks that Plan finds each with the
// right class and severity, and that the report-only classes plan no action:
//
//   - zombie disk: Nova attach, Nova forgets the mapping, Cinder force-detach;
//   - critical zombie: the same, then the volume is attached through Nova to
//     another instance (on another host) although it is not multiattach;
//   - stale Cinder attachment: created and completed in Cinder for the
//     instance, never in the domain, no Nova mapping;
//   - mapping and attachment present, disk missing: Nova attach, then the
//     disk is detached in libvirt directly (config, then live; the firmware
//     never acknowledges) and the domain power-cycled, which drops it;
//   - stale Nova mapping: Nova attach, then admin os-reset_status with
//     attach_status detached (changes Cinder only);
//   - device-name mismatch: a healthy Nova attach made after the missing
//     disk: Nova still counts the missing disk's /dev/vdb, libvirt reuses vdb;
//   - unknown domain: a second (defined, stopped) domain with no instance.
func TestEveryClassThroughTheRealStack(t *testing.T) {
	conn := libvirttest.Dial(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	fw := libvirttest.FirmwareDomain(t, conn, libvirttest.FirmwareOptions{})
	unknown := libvirttest.FirmwareDomain(t, conn, libvirttest.FirmwareOptions{Stopped: true})
	sim, m, cloud, inst := simOnDomain(t, conn, fw.UUID, fw.Name)
	elsewhere, err := sim.AddInstance(simcloud.InstanceSpec{ID: libvirttest.NewUUID(t), Host: "compute-2"})
	if err != nil {
		t.Fatal(err)
	}

	// Disk missing: first, because it power-cycles the domain.
	missing := createVolume(t, ctx, cloud, m, "missing")
	novaAttach(t, ctx, cloud, m, inst.ID, missing)
	res, err := conn.DetachDisk(ctx, fw.UUID, libvirtscan.DiskSelector{Serial: missing}, libvirtscan.DetachOptions{Timeout: 100 * time.Millisecond, Attempts: 1})
	if err != nil || res.Config != libvirtscan.OutcomeRemoved {
		t.Fatalf("detach %s in libvirt: %+v, %v", missing, res, err)
	}
	powerCycle(t, fw.Name)
	if dom, err := conn.Domain(ctx, fw.UUID); err != nil || diskIn(dom.Live, missing) || diskIn(dom.Config, missing) {
		t.Fatalf("after the power cycle %s is still in the domain (live %v, config %v, %v)", missing, diskIn(dom.Live, missing), diskIn(dom.Config, missing), err)
	}

	mismatch := createVolume(t, ctx, cloud, m, "mismatch")
	novaAttach(t, ctx, cloud, m, inst.ID, mismatch)
	zVol := zombie(t, ctx, sim, cloud, m, inst.ID, "zombie")
	critical := zombie(t, ctx, sim, cloud, m, inst.ID, "critical")
	novaAttach(t, ctx, cloud, m, elsewhere.ID, critical)
	staleMap := createVolume(t, ctx, cloud, m, "stale-mapping")
	novaAttach(t, ctx, cloud, m, inst.ID, staleMap)
	if err := cloud.ResetStatus(ctx, staleMap, openstack.ResetStatusOpts{Status: "available", AttachStatus: "detached"}); err != nil {
		t.Fatal(err)
	}
	staleAtt := createVolume(t, ctx, cloud, m, "stale-attachment")
	att, err := attachments.Create(ctx, m.volume, attachments.CreateOpts{VolumeUUID: staleAtt, InstanceUUID: inst.ID,
		Connector: map[string]any{"host": simHost, "initiator": "iqn.1993-08.org.debian:01:test"}}).Extract()
	if err != nil {
		t.Fatalf("create Cinder attachment: %v", err)
	}
	if err := attachments.Complete(ctx, m.volume, att.ID).ExtractErr(); err != nil {
		t.Fatalf("complete Cinder attachment: %v", err)
	}

	obs := &reconciler.Observer{Host: simHost, Libvirt: conn, Cloud: cloud}
	o := obs.Observe(ctx)
	r := reconciler.Plan(o, reconciler.NewMemory(), reconciler.Policy{MinSightings: 1, MaxActions: 10}, time.Now())
	if r.Aborted {
		t.Fatalf("aborted: %v", r.AbortReasons)
	}
	got := findingsFor(r, inst.ID)
	want := []struct {
		class    reconciler.Class
		vol      string
		severity reconciler.Severity
		action   reconciler.ActionKind // "" = report only
	}{
		{reconciler.ClassZombieDisk, zVol, reconciler.SeverityWarning, reconciler.ActionLibvirtDetach},
		{reconciler.ClassZombieDisk, critical, reconciler.SeverityCritical, reconciler.ActionLibvirtDetach},
		{reconciler.ClassStaleCinderAttachment, staleAtt, reconciler.SeverityWarning, reconciler.ActionCinderAttachmentDelete},
		{reconciler.ClassMappingDiskMissing, missing, reconciler.SeverityWarning, ""},
		{reconciler.ClassStaleNovaMapping, staleMap, reconciler.SeverityWarning, ""},
		{reconciler.ClassDeviceNameMismatch, mismatch, reconciler.SeverityInfo, ""},
	}
	actions := map[string]reconciler.Action{}
	for _, a := range r.Actions {
		actions[a.FindingKey] = a
	}
	for _, w := range want {
		f, ok := got[string(w.class)+"/"+w.vol]
		if !ok {
			t.Errorf("%s %s not found; findings for the instance: %v", w.class, w.vol, keys(got))
			continue
		}
		if f.Severity != w.severity || f.Skipped != "" {
			t.Errorf("%s %s: severity %s skipped %q, want %s, not skipped (%s)", w.class, w.vol, f.Severity, f.Skipped, w.severity, f.Detail)
		}
		a, has := actions[f.Key]
		switch {
		case w.action == "" && has:
			t.Errorf("report-only %s %s planned %s (%s)", w.class, w.vol, a.Kind, a.State)
		case w.action != "" && (!has || a.Kind != w.action || a.State != reconciler.StateDryRun):
			t.Errorf("%s %s: action %+v (present %v), want %s in dry_run", w.class, w.vol, a, has, w.action)
		}
		t.Logf("%-24s %-8s %s", w.class, w.severity, f.Detail)
	}
	// Each seeded volume is exactly its class (plus, for the stale
	// mapping, a device-name note: Nova and libvirt count differently).
	for k := range got {
		vol := k[strings.IndexByte(k, '/')+1:]
		for _, w := range want {
			if w.vol == vol && string(w.class) != k[:strings.IndexByte(k, '/')] && !strings.HasPrefix(k, string(reconciler.ClassDeviceNameMismatch)) {
				t.Errorf("volume %s also found as %s", vol, k)
			}
		}
	}
	var unknownFound, fwUnknown bool
	for _, f := range r.Findings {
		if f.Class != reconciler.ClassUnknownDomain {
			continue
		}
		switch {
		case strings.EqualFold(f.Domain, unknown.UUID):
			unknownFound = true
			if _, has := actions[f.Key]; has || f.Severity != reconciler.SeverityWarning {
				t.Errorf("unknown domain: severity %s, action planned %v; want warning, report only", f.Severity, has)
			}
		case strings.EqualFold(f.Domain, fw.UUID):
			fwUnknown = true
		}
	}
	if !unknownFound || fwUnknown {
		t.Errorf("unknown domain %s found %v (want true); Nova's domain %s reported unknown %v", unknown.UUID, unknownFound, fw.UUID, fwUnknown)
	}
	if c := reconciler.ExitCode(r); c != reconciler.ExitFindings {
		t.Errorf("exit code %d, want %d", c, reconciler.ExitFindings)
	}
}

// powerCycle destroys and starts the domain through libvirtd's API (virsh
// destroy; virsh start): its live definition is rebuilt from the
// persistent one, as after a hard reboot on a real host.
func powerCycle(t *testing.T, name string) {
	t.Helper()
	testenv.RequireLibvirt(t)
	l := golibvirt.NewWithDialer(dialers.NewLocal(dialers.WithSocket(testenv.LibvirtSocket), dialers.WithLocalTimeout(5*time.Second)))
	if err := l.ConnectToURI(golibvirt.QEMUSystem); err != nil {
		t.Fatalf("connect to libvirtd: %v", err)
	}
	defer l.Disconnect()
	d, err := l.DomainLookupByName(name)
	if err != nil {
		t.Fatalf("domain %s: %v", name, err)
	}
	if err := l.DomainDestroy(d); err != nil {
		t.Fatalf("domain %s: destroy: %v", name, err)
	}
	if err := l.DomainCreate(d); err != nil {
		t.Fatalf("domain %s: start: %v", name, err)
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
