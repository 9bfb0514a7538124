package reconciler

import (
	"fmt"
	"testing"
	"time"
)

// largeHost builds a host with n domains × 4 disks (root + 3 volumes), every
// volume mapped in Nova and attached in Cinder, plus extra unrelated volumes
// (the scale target is 20,000 volumes in Cinder). Every 100th domain has a
// zombie (its third volume lost its mapping and attachment) and every 100th
// (offset 50) a stale Cinder attachment (its third disk is gone).
func largeHost(n, extraVolumes int) (Observation, int) {
	id := func(kind byte, i int) string { return fmt.Sprintf("%08x-0000-4000-8000-%c%011d", i, kind, i) }
	obs := Observation{Host: testHost,
		Libvirt: Libvirt{Source: okSrc()}, Nova: Nova{Source: okSrc()}, Cinder: Cinder{Source: okSrc()}, Mounts: Mounts{Source: okSrc()}}
	seeded := 0
	for i := 0; i < n; i++ {
		in := id('a', i)
		d := Domain{UUID: in, Name: fmt.Sprintf("instance-%08x", i), State: "running", HasNovaMetadata: true,
			Disks: []Disk{{Target: "vda", Bus: "virtio", Device: "disk", Source: "/var/lib/nova/instances/" + in + "/disk", Live: true, Config: true}}}
		s := Server{ID: in, Host: testHost, Status: "ACTIVE", VMState: "active"}
		for j := 0; j < 3; j++ {
			v := id('b', i*3+j)
			a := id('c', i*3+j)
			dev := fmt.Sprintf("/dev/vd%c", 'b'+j)
			zombie := j == 2 && i%100 == 0
			stale := j == 2 && i%100 == 50
			if !stale {
				d.Disks = append(d.Disks, Disk{Target: dev[5:], Bus: "virtio", Device: "disk", Serial: v, Alias: "ua-" + v,
					Source: "volumes/volume-" + v, Live: true, Config: true})
			}
			vo := Volume{ID: v, Status: "in-use", Attachments: []VolumeAttachment{{ID: a, ServerID: in, HostName: testHost, Device: dev, AttachStatus: "attached"}}}
			switch {
			case zombie:
				vo = Volume{ID: v, Status: "available"}
				seeded++
			case stale:
				seeded++
			default:
				s.Volumes = append(s.Volumes, ServerVolume{VolumeID: v, AttachmentID: a, Device: dev})
			}
			obs.Cinder.Volumes = append(obs.Cinder.Volumes, vo)
		}
		obs.Libvirt.Domains = append(obs.Libvirt.Domains, d)
		obs.Nova.Servers = append(obs.Nova.Servers, s)
	}
	for i := 0; i < extraVolumes; i++ {
		obs.Cinder.Volumes = append(obs.Cinder.Volumes, Volume{ID: id('e', i), Status: "available"})
	}
	return obs, seeded
}

func BenchmarkPlan(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		obs, _ := largeHost(n, 20000)
		b.Run(fmt.Sprintf("domains=%d_disks=%d_volumes=%d", n, 4*n, len(obs.Cinder.Volumes)), func(b *testing.B) {
			mem := Plan(obs, NewMemory(), DefaultPolicy(), t0).Memory
			b.ReportAllocs()
			for b.Loop() {
				Plan(obs, mem, DefaultPolicy(), t0.Add(time.Minute))
			}
		})
	}
}

// TestPlanAtScale checks the seeded discrepancies are all found at 5,000
// domains. How long it takes is BenchmarkPlan's business, not a test's: a
// wall-clock bound here would only flake on a loaded CI machine.
func TestPlanAtScale(t *testing.T) {
	obs, seeded := largeHost(5000, 20000)
	start := time.Now()
	r := Plan(obs, NewMemory(), DefaultPolicy(), t0)
	took := time.Since(start)
	if r.Aborted || len(r.Findings) != seeded || len(r.Actions) != seeded {
		t.Fatalf("aborted=%v %v: %d findings, %d actions, want %d each", r.Aborted, r.AbortReasons, len(r.Findings), len(r.Actions), seeded)
	}
	t.Logf("Plan: 5,000 domains × 4 disks, %d volumes, %d findings in %s", len(obs.Cinder.Volumes), len(r.Findings), took)
}
