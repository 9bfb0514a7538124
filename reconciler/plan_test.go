package reconciler

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// got summarises a Result as "class severity key" and "kind state key" lines.
func summarize(r Result) (findings, actions []string) {
	for _, f := range r.Findings {
		findings = append(findings, fmt.Sprintf("%s %s %s", f.Class, f.Severity, f.Key))
	}
	for _, a := range r.Actions {
		actions = append(actions, fmt.Sprintf("%s %s %s", a.Kind, a.State, a.FindingKey))
	}
	return findings, actions
}

func TestPlanClasses(t *testing.T) {
	rbd := Disk{Target: "vdc", Bus: "virtio", Device: "disk", Source: "volumes/volume-" + vol(1), Live: true, Config: true}
	cases := []struct {
		name     string
		obs      Observation
		pol      func(*Policy)
		findings []string
		actions  []string
	}{
		{
			name: "clean: disk, Nova mapping and Cinder attachment agree",
			obs: obsOf([]Domain{domain(1, vdisk("vdb", 1))}, []Server{server(1, mapping(1, 1, "/dev/vdb"))},
				[]Volume{volume(1, "in-use", attachment(1, 1, "/dev/vdb"))}),
		},
		{
			name: "root disk and config drive are not volume disks",
			obs: obsOf([]Domain{domain(1, Disk{Target: "hda", Device: "cdrom", Source: "/var/lib/nova/instances/" + inst(1) + "/disk.config", Live: true, Config: true})},
				[]Server{server(1)}, []Volume{volume(9, "available")}),
		},
		{
			name:     "zombie disk after a Cinder-only force-detach",
			obs:      obsOf([]Domain{domain(1, vdisk("vdb", 1))}, []Server{server(1)}, []Volume{volume(1, "available")}),
			findings: []string{"zombie_disk warning zombie_disk/" + inst(1) + "/" + vol(1)},
			actions:  []string{"libvirt_detach ready zombie_disk/" + inst(1) + "/" + vol(1)},
		},
		{
			name: "zombie is critical when the volume is attached to another instance and not multiattach",
			obs: obsOf([]Domain{domain(1, vdisk("vdb", 1)), domain(2, vdisk("vdb", 1))}, []Server{server(1), server(2, mapping(1, 2, "/dev/vdb"))},
				[]Volume{volume(1, "in-use", attachment(2, 2, "/dev/vdb"))}),
			findings: []string{"zombie_disk critical zombie_disk/" + inst(1) + "/" + vol(1)},
			actions:  []string{"libvirt_detach ready zombie_disk/" + inst(1) + "/" + vol(1)},
		},
		{
			name: "zombie stays a warning when the volume is multiattach",
			obs: func() Observation {
				v := volume(1, "in-use", attachment(2, 2, "/dev/vdb"))
				v.Multiattach = true
				return obsOf([]Domain{domain(1, vdisk("vdb", 1)), domain(2, vdisk("vdb", 1))}, []Server{server(1), server(2, mapping(1, 2, "/dev/vdb"))}, []Volume{v})
			}(),
			findings: []string{"zombie_disk warning zombie_disk/" + inst(1) + "/" + vol(1)},
			actions:  []string{"libvirt_detach ready zombie_disk/" + inst(1) + "/" + vol(1)},
		},
		{
			name: "zombie matched by alias ua-<volume id> when there is no serial",
			obs: obsOf([]Domain{domain(1, Disk{Target: "sdb", Bus: "scsi", Alias: "ua-" + vol(1), Source: "/dev/sdx", Live: true})},
				[]Server{server(1)}, []Volume{volume(1, "available")}),
			findings: []string{"zombie_disk warning zombie_disk/" + inst(1) + "/" + vol(1)},
			actions:  []string{"libvirt_detach ready zombie_disk/" + inst(1) + "/" + vol(1)},
		},
		{
			name:     "zombie matched by the volume id in an RBD source name",
			obs:      obsOf([]Domain{domain(1, rbd)}, []Server{server(1)}, []Volume{volume(1, "available")}),
			findings: []string{"zombie_disk warning zombie_disk/" + inst(1) + "/" + vol(1)},
			actions:  []string{"libvirt_detach ready zombie_disk/" + inst(1) + "/" + vol(1)},
		},
		{
			name:     "zombie of a volume Cinder no longer lists is reported but blocked",
			obs:      obsOf([]Domain{domain(1, vdisk("vdb", 1))}, []Server{server(1)}, []Volume{volume(2, "available")}),
			findings: []string{"zombie_disk warning zombie_disk/" + inst(1) + "/" + vol(1)},
			actions:  []string{"libvirt_detach blocked zombie_disk/" + inst(1) + "/" + vol(1)},
		},
		{
			name: "never by target name: a disk named vdb without the volume's serial is not the volume",
			obs: obsOf([]Domain{domain(1, Disk{Target: "vdb", Source: "/var/lib/nova/instances/" + inst(1) + "/disk.eph0", Live: true, Config: true})},
				[]Server{server(1, mapping(1, 1, "/dev/vdb"))}, []Volume{volume(1, "in-use", attachment(1, 1, "/dev/vdb"))}),
			findings: []string{"mapping_disk_missing warning mapping_disk_missing/" + inst(1) + "/" + vol(1)},
		},
		{
			name: "stale Cinder attachment: no disk, no Nova mapping",
			obs: obsOf([]Domain{domain(1)}, []Server{server(1)},
				[]Volume{volume(1, "in-use", attachment(1, 1, "/dev/vdb"))}),
			findings: []string{"stale_cinder_attachment warning stale_cinder_attachment/" + attID(1)},
			actions:  []string{"cinder_attachment_delete ready stale_cinder_attachment/" + attID(1)},
		},
		{
			name: "stale Cinder attachment whose host_name Cinder did not record",
			obs: func() Observation {
				a := attachment(1, 1, "/dev/vdb")
				a.HostName = ""
				return obsOf([]Domain{domain(1)}, []Server{server(1)}, []Volume{volume(1, "in-use", a)})
			}(),
			findings: []string{"stale_cinder_attachment warning stale_cinder_attachment/" + attID(1)},
			actions:  []string{"cinder_attachment_delete ready stale_cinder_attachment/" + attID(1)},
		},
		{
			name: "an attachment recorded for another host is not this host's",
			obs: func() Observation {
				a := attachment(1, 1, "/dev/vdb")
				a.HostName = "cmp-2"
				return obsOf([]Domain{domain(1)}, []Server{server(1)}, []Volume{volume(1, "in-use", a)})
			}(),
		},
		{
			name: "an attachment of an instance without a domain here is not this host's",
			obs:  obsOf([]Domain{domain(1)}, []Server{server(1)}, []Volume{volume(1, "in-use", attachment(1, 7, ""))}),
		},
		{
			name: "mapping and attachment present, disk missing: report only by default",
			obs: obsOf([]Domain{domain(1)}, []Server{server(1, mapping(1, 1, "/dev/vdb"))},
				[]Volume{volume(1, "in-use", attachment(1, 1, "/dev/vdb"))}),
			findings: []string{"mapping_disk_missing warning mapping_disk_missing/" + inst(1) + "/" + vol(1)},
		},
		{
			name: "mapping and attachment present, disk missing: Nova detach when the policy asks",
			obs: obsOf([]Domain{domain(1)}, []Server{server(1, mapping(1, 1, "/dev/vdb"))},
				[]Volume{volume(1, "in-use", attachment(1, 1, "/dev/vdb"))}),
			pol:      func(p *Policy) { p.NovaDetachMissingDisk = true },
			findings: []string{"mapping_disk_missing warning mapping_disk_missing/" + inst(1) + "/" + vol(1)},
			actions:  []string{"nova_detach ready mapping_disk_missing/" + inst(1) + "/" + vol(1)},
		},
		{
			name: "stale Nova mapping, disk still present",
			obs: obsOf([]Domain{domain(1, vdisk("vdb", 1))}, []Server{server(1, mapping(1, 1, "/dev/vdb"))},
				[]Volume{volume(1, "available")}),
			findings: []string{"stale_nova_mapping warning stale_nova_mapping/" + inst(1) + "/" + vol(1)},
		},
		{
			name: "stale Nova mapping, disk gone too",
			obs: obsOf([]Domain{domain(1)}, []Server{server(1, mapping(1, 0, "/dev/vdb"))},
				[]Volume{volume(1, "available")}),
			findings: []string{"stale_nova_mapping warning stale_nova_mapping/" + inst(1) + "/" + vol(1)},
		},
		{
			name: "stale Nova mapping: Nova holds an attachment id Cinder no longer has",
			obs: obsOf([]Domain{domain(1, vdisk("vdb", 1))}, []Server{server(1, mapping(1, 1, "/dev/vdb"))},
				[]Volume{volume(1, "in-use", attachment(2, 1, "/dev/vdb"))}),
			findings: []string{"stale_nova_mapping warning stale_nova_mapping/" + inst(1) + "/" + vol(1)},
		},
		{
			name: "device-name mismatch is reported only",
			obs: obsOf([]Domain{domain(1, vdisk("vde", 1))}, []Server{server(1, mapping(1, 1, "/dev/vdc"))},
				[]Volume{volume(1, "in-use", attachment(1, 1, "/dev/vdc"))}),
			findings: []string{"device_name_mismatch info device_name_mismatch/" + inst(1) + "/" + vol(1)},
		},
		{
			name:     "domain unknown to Nova is reported only",
			obs:      obsOf([]Domain{domain(1), domain(2)}, []Server{server(1)}, []Volume{volume(9, "available")}),
			findings: []string{"unknown_domain warning unknown_domain/" + inst(2)},
		},
		{
			name: "stale mount under a base: lazy unmount",
			obs: func() Observation {
				o := obsOf([]Domain{domain(1)}, []Server{server(1)}, nil)
				o.Mounts.Entries = []MountEntry{
					{Mountpoint: "/var/lib/nova/mnt/abc", Source: "nfs1:/export", FSType: "nfs4", SourceState: MountSourceGone, Reason: "stat: stale file handle"},
					{Mountpoint: "/var/lib/nova/mnt/def", Source: "nfs2:/export", FSType: "nfs4", SourceState: MountSourceReachable},
					{Mountpoint: "/var/lib/nova/mnt/ghi", Source: "nfs3:/export", FSType: "nfs4", SourceState: MountSourceUnknown},
					{Mountpoint: "/mnt/elsewhere", Source: "nfs4:/export", FSType: "nfs4", SourceState: MountSourceGone},
					{Mountpoint: "/var/lib/nova/mnt", Source: "nfs5:/export", FSType: "nfs4", SourceState: MountSourceGone},
				}
				return o
			}(),
			findings: []string{"stale_mount warning stale_mount//var/lib/nova/mnt/abc"},
			actions:  []string{"lazy_unmount ready stale_mount//var/lib/nova/mnt/abc"},
		},
		{
			name: "stacked mounts on one mountpoint: one finding, blocked",
			obs: func() Observation {
				o := obsOf([]Domain{domain(1)}, []Server{server(1)}, nil)
				o.Mounts.Entries = []MountEntry{
					{Mountpoint: "/var/lib/nova/mnt/abc", Source: "nfs1:/export", SourceState: MountSourceGone},
					{Mountpoint: "/var/lib/nova/mnt/abc", Source: "nfs2:/export", SourceState: MountSourceGone},
				}
				return o
			}(),
			findings: []string{"stale_mount warning stale_mount//var/lib/nova/mnt/abc"},
			actions:  []string{"lazy_unmount blocked stale_mount//var/lib/nova/mnt/abc"},
		},
		{
			name: "stale mount still used by a domain disk is blocked",
			obs: func() Observation {
				d := domain(1, Disk{Target: "vdb", Serial: vol(1), Source: "/var/lib/nova/mnt/abc/volume-" + vol(1), Live: true, Config: true})
				o := obsOf([]Domain{d}, []Server{server(1, mapping(1, 1, "/dev/vdb"))}, []Volume{volume(1, "in-use", attachment(1, 1, "/dev/vdb"))})
				o.Mounts.Entries = []MountEntry{{Mountpoint: "/var/lib/nova/mnt/abc", Source: "nfs1:/export", SourceState: MountSourceGone}}
				return o
			}(),
			findings: []string{"stale_mount warning stale_mount//var/lib/nova/mnt/abc"},
			actions:  []string{"lazy_unmount blocked stale_mount//var/lib/nova/mnt/abc"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pol := immediate()
			if c.pol != nil {
				c.pol(&pol)
			}
			r := Plan(c.obs, NewMemory(), pol, t0)
			if r.Aborted {
				t.Fatalf("aborted: %v", r.AbortReasons)
			}
			f, a := summarize(r)
			if !slices.Equal(f, c.findings) {
				t.Errorf("findings:\n got %q\nwant %q", f, c.findings)
			}
			if !slices.Equal(a, c.actions) {
				t.Errorf("actions:\n got %q\nwant %q", a, c.actions)
			}
			for _, act := range r.Actions {
				if !nonDestructive(act.Kind) {
					t.Errorf("action kind %q is not one of the non-destructive kinds", act.Kind)
				}
				if len(act.Preconditions) == 0 {
					t.Errorf("action %s has no preconditions to re-check", act.Kind)
				}
			}
		})
	}
}

func nonDestructive(k ActionKind) bool {
	switch k {
	case ActionLibvirtDetach, ActionCinderAttachmentDelete, ActionNovaDetach, ActionLazyUnmount:
		return true
	}
	return false
}

func TestZombieActionDetails(t *testing.T) {
	d := domain(1, Disk{Target: "vdb", Serial: vol(1), Source: "/dev/sdx", Live: true, Config: false})
	r := Plan(obsOf([]Domain{d}, []Server{server(1)}, []Volume{volume(1, "in-use", attachment(2, 2, ""))}), NewMemory(), immediate(), t0)
	if len(r.Actions) != 1 {
		t.Fatalf("actions %v", r.Actions)
	}
	a := r.Actions[0]
	if a.Kind != ActionLibvirtDetach || !a.Live || a.Config || a.Disk == nil || a.Disk.Serial != vol(1) || a.Domain != inst(1) || a.Volume != vol(1) || a.Severity != SeverityCritical {
		t.Errorf("action %+v", a)
	}
	var checks []CheckKind
	for _, p := range a.Preconditions {
		checks = append(checks, p.Check)
	}
	want := []CheckKind{CheckDomainHasDisk, CheckVolumeSettled, CheckNoCinderAttachment, CheckNoNovaMapping, CheckServerIdle}
	if !slices.Equal(checks, want) {
		t.Errorf("preconditions %v, want %v", checks, want)
	}
	if !strings.Contains(r.Findings[0].Detail, "two writers") || !strings.Contains(r.Findings[0].Detail, "live only") {
		t.Errorf("detail %q", r.Findings[0].Detail)
	}
}

// TestZombieOnShutoffDomain: an inactive domain is detached from its
// persistent definition only, even if the observer marked disks live.
func TestZombieOnShutoffDomain(t *testing.T) {
	d := domain(1, vdisk("vdb", 1))
	d.State = "shutoff"
	s := server(1)
	s.VMState, s.Status = "stopped", "SHUTOFF"
	r := Plan(obsOf([]Domain{d}, []Server{s}, []Volume{volume(1, "available")}), NewMemory(), immediate(), t0)
	if len(r.Actions) != 1 || !r.Actions[0].Config || r.Actions[0].Live || r.Actions[0].State != StateReady {
		t.Fatalf("actions %+v", r.Actions)
	}
}

// TestGateDryRun: without Apply, findings are reported and the action is
// listed as planned, never ready.
func TestGateDryRun(t *testing.T) {
	pol := immediate()
	pol.Apply = false
	r := Plan(obsOf([]Domain{domain(1, vdisk("vdb", 1))}, []Server{server(1)}, []Volume{volume(1, "available")}), NewMemory(), pol, t0)
	if !r.DryRun || len(r.Findings) != 1 || len(r.Actions) != 1 || r.Actions[0].State != StateDryRun {
		t.Fatalf("dry-run result: dryrun=%v findings=%d actions=%+v", r.DryRun, len(r.Findings), r.Actions)
	}
	if len(r.Executable()) != 0 {
		t.Errorf("dry-run has executable actions: %v", r.Executable())
	}
	if ExitCode(r) != ExitFindings {
		t.Errorf("exit %d", ExitCode(r))
	}
}

// TestGateInstanceAndVolumeTransitions: act only on settled instances of this
// host and settled volumes; otherwise skip and reset the sighting counter.
func TestGateInstanceAndVolumeTransitions(t *testing.T) {
	zKey := "zombie_disk/" + inst(1) + "/" + vol(1)
	aKey := "stale_cinder_attachment/" + attID(1)
	type tc struct {
		name   string
		server func(*Server)
		volume func(*Volume)
		want   string // substring of the reason
	}
	cases := []tc{
		{name: "task state", server: func(s *Server) { s.TaskState = "rebooting" }, want: "task_state rebooting"},
		{name: "migration in progress", server: func(s *Server) { s.MigrationInProgress = true }, want: "migrating"},
		{name: "status VERIFY_RESIZE", server: func(s *Server) { s.Status = "VERIFY_RESIZE" }, want: "migrating"},
		{name: "server on another host", server: func(s *Server) { s.Host = "cmp-2" }, want: "on host cmp-2"},
		{name: "vm_state building", server: func(s *Server) { s.VMState = "building" }, want: "vm_state building"},
	}
	for _, st := range []string{"creating", "attaching", "detaching", "reserved", "deleting", "maintenance", "retyping", "extending", "error", "error_deleting", "error_extending", "backing-up"} {
		cases = append(cases, tc{name: "volume " + st, volume: func(v *Volume) { v.Status = st }, want: "is " + st})
	}
	for _, st := range []string{"attaching", "detaching", "reserved", "error_attaching", "error_detaching"} {
		cases = append(cases, tc{name: "other attachment " + st, volume: func(v *Volume) {
			v.Attachments = append(v.Attachments, VolumeAttachment{ID: attID(9), ServerID: inst(9), AttachStatus: st})
		}, want: "is " + st})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Two items on the same instance and volume family: a zombie (volume 1)
			// and a stale attachment (volume 1's attachment on instance 1 is
			// stale when the disk is missing, so use separate scenarios).
			for _, scenario := range []struct {
				key string
				obs func(s Server, v Volume) Observation
				v   Volume
			}{
				{zKey, func(s Server, v Volume) Observation {
					return obsOf([]Domain{domain(1, vdisk("vdb", 1))}, []Server{s}, []Volume{v})
				}, volume(1, "available")},
				{aKey, func(s Server, v Volume) Observation {
					return obsOf([]Domain{domain(1)}, []Server{s}, []Volume{v})
				}, volume(1, "in-use", attachment(1, 1, "/dev/vdb"))},
			} {
				s, v := server(1), scenario.v
				if c.server != nil {
					c.server(&s)
				}
				if c.volume != nil {
					c.volume(&v)
				}
				mem := NewMemory()
				mem.Sightings[scenario.key] = Sighting{Class: "x", FirstSeen: t0.Add(-time.Hour), LastSeen: t0.Add(-time.Minute), Count: 7}
				r := Plan(scenario.obs(s, v), mem, immediate(), t0)
				var found bool
				for _, a := range r.Actions {
					if a.FindingKey != scenario.key {
						continue
					}
					found = true
					if a.State != StateBlocked || !strings.Contains(a.Reason, c.want) {
						t.Errorf("%s: state %s reason %q, want blocked with %q", scenario.key, a.State, a.Reason, c.want)
					}
				}
				if !found {
					t.Errorf("%s: no action listed; findings %v", scenario.key, r.Findings)
				}
				if _, kept := r.Memory.Sightings[scenario.key]; kept {
					t.Errorf("%s: sighting counter not reset", scenario.key)
				}
				for _, f := range r.Findings {
					if f.Key == scenario.key && (f.Skipped == "" || f.Sightings != 0) {
						t.Errorf("%s: finding not marked skipped: %+v", scenario.key, f)
					}
				}
				if len(r.Executable()) != 0 {
					t.Errorf("%s: executable actions %v", scenario.key, r.Executable())
				}
			}
		})
	}
}

// TestGateSightings: N consecutive runs over at least T; the counter resets
// when the discrepancy clears.
func TestGateSightings(t *testing.T) {
	pol := DefaultPolicy() // 3 runs, 30 minutes
	pol.Apply = true
	bad := obsOf([]Domain{domain(1, vdisk("vdb", 1))}, []Server{server(1)}, []Volume{volume(1, "available")})
	good := obsOf([]Domain{domain(1, vdisk("vdb", 1))}, []Server{server(1, mapping(1, 1, "/dev/vdb"))}, []Volume{volume(1, "in-use", attachment(1, 1, "/dev/vdb"))})
	steps := []struct {
		at    time.Duration
		obs   Observation
		state ActionState
		count int
	}{
		{0, bad, StateWaiting, 1},                 // seen once: not acted on
		{15 * time.Minute, bad, StateWaiting, 2},  // twice
		{20 * time.Minute, bad, StateWaiting, 3},  // three runs but only 20 minutes
		{30 * time.Minute, bad, StateReady, 4},    // 4 runs over 30 minutes
		{40 * time.Minute, good, "", 0},           // cleared
		{50 * time.Minute, bad, StateWaiting, 1},  // back: counts from one
		{60 * time.Minute, bad, StateWaiting, 2},  //
		{90 * time.Minute, bad, StateReady, 3},    // 3 runs over 40 minutes
		{100 * time.Minute, bad, StateReady, 4},   // still there, still ready
		{110 * time.Minute, good, "", 0},          //
		{120 * time.Minute, good, "", 0},          //
		{180 * time.Minute, bad, StateWaiting, 1}, // old sightings do not come back
		{181 * time.Minute, bad, StateWaiting, 2}, //
		{182 * time.Minute, bad, StateWaiting, 3}, // 3 runs, 2 minutes: waits for T
		{212 * time.Minute, bad, StateReady, 4},   //
		{213 * time.Minute, bad, StateReady, 5},   //
		{214 * time.Minute, good, "", 0},          //
		{215 * time.Minute, bad, StateWaiting, 1}, //
		{216 * time.Minute, bad, StateWaiting, 2}, //
		{217 * time.Minute, bad, StateWaiting, 3}, //
		{245 * time.Minute, bad, StateReady, 4},   // 30 minutes after 215
		{246 * time.Minute, good, "", 0},          // cleared for good
	}
	mem := NewMemory()
	for i, s := range steps {
		r := Plan(s.obs, mem, pol, t0.Add(s.at))
		mem = r.Memory
		if s.state == "" {
			if len(r.Actions) != 0 || len(r.Findings) != 0 || len(mem.Sightings) != 0 {
				t.Fatalf("step %d (+%s): want clean, got findings %v actions %v memory %v", i, s.at, r.Findings, r.Actions, mem.Sightings)
			}
			continue
		}
		if len(r.Actions) != 1 || r.Actions[0].State != s.state || r.Findings[0].Sightings != s.count {
			t.Fatalf("step %d (+%s): want %s after %d sightings, got %+v / %+v", i, s.at, s.state, s.count, r.Actions, r.Findings)
		}
	}
}

// TestGateActionCap: at most M actions per run, most severe first, the rest
// deferred; the cap applies in dry-run too so a dry-run shows what --apply
// would do.
func TestGateActionCap(t *testing.T) {
	var doms []Domain
	var servers []Server
	var vols []Volume
	for i := 1; i <= 8; i++ {
		doms = append(doms, domain(i, vdisk("vdb", i)))
		servers = append(servers, server(i))
		vols = append(vols, volume(i, "available"))
	}
	// Volume 8 is attached to instance 1 as well: its zombie on 8 is critical.
	doms[0].Disks = append(doms[0].Disks, vdisk("vdc", 8))
	servers[0].Volumes = []ServerVolume{mapping(8, 8, "/dev/vdc")}
	vols[7] = volume(8, "in-use", attachment(8, 1, "/dev/vdc"))
	obs := obsOf(doms, servers, vols)
	for _, apply := range []bool{true, false} {
		pol := immediate()
		pol.Apply, pol.MaxActions = apply, 5
		r := Plan(obs, NewMemory(), pol, t0)
		counts := map[ActionState]int{}
		for _, a := range r.Actions {
			counts[a.State]++
		}
		go_ := StateReady
		if !apply {
			go_ = StateDryRun
		}
		if counts[go_] != 5 || counts[StateDeferred] != 3 || len(r.Actions) != 8 {
			t.Errorf("apply=%v: states %v", apply, counts)
		}
		if r.Actions[0].Severity != SeverityCritical || r.Actions[0].State != go_ || r.Actions[0].Volume != vol(8) {
			t.Errorf("apply=%v: the critical zombie did not get the budget first: %+v", apply, r.Actions[0])
		}
		if apply && len(r.Executable()) != 5 {
			t.Errorf("executable %d", len(r.Executable()))
		}
	}
	pol := immediate()
	pol.MaxActions = 0
	for _, a := range Plan(obs, NewMemory(), pol, t0).Actions {
		if a.State != StateDeferred {
			t.Errorf("cap 0: %s %s", a.FindingKey, a.State)
		}
	}
}

// TestGateSources: a failed or suspiciously empty source aborts every
// action of the run, and the run neither advances nor resets sightings.
func TestGateSources(t *testing.T) {
	zKey := "zombie_disk/" + inst(1) + "/" + vol(1)
	base := func() Observation {
		return obsOf([]Domain{domain(1, vdisk("vdb", 1))}, []Server{server(1)}, []Volume{volume(1, "available")})
	}
	prior := func() Memory {
		m := NewMemory()
		m.Host, m.Domains, m.Servers = testHost, 1, 1
		m.Sightings[zKey] = Sighting{Class: ClassZombieDisk, FirstSeen: t0.Add(-time.Hour), LastSeen: t0.Add(-10 * time.Minute), Count: 5}
		m.Sightings["stale_mount//var/lib/nova/mnt/x"] = Sighting{Class: ClassStaleMount, FirstSeen: t0.Add(-time.Hour), LastSeen: t0.Add(-10 * time.Minute), Count: 2}
		return m
	}
	cases := []struct {
		name string
		mut  func(*Observation, *Policy)
		want string
	}{
		{"cinder listing failed on page 3", func(o *Observation, _ *Policy) {
			o.Cinder.Source = SourceStatus{State: SourceFailed, Reason: "list volumes page 3: 503 Service Unavailable"}
		}, "cinder: failed: list volumes page 3"},
		{"libvirt failed", func(o *Observation, _ *Policy) {
			o.Libvirt.Source = SourceStatus{State: SourceFailed, Reason: "connect: no such file"}
		}, "libvirt: failed"},
		{"nova failed", func(o *Observation, _ *Policy) { o.Nova.Source = SourceStatus{State: SourceFailed, Reason: "401"} }, "nova: failed"},
		{"mounts failed", func(o *Observation, _ *Policy) {
			o.Mounts.Source = SourceStatus{State: SourceFailed, Reason: "read mountinfo"}
		}, "mounts: failed"},
		{"observer says empty", func(o *Observation, _ *Policy) {
			o.Cinder.Source = SourceStatus{State: SourceEmpty, Reason: "0 volumes"}
		}, "cinder: empty"},
		{"completeness not reported", func(o *Observation, _ *Policy) { o.Libvirt.Source = SourceStatus{} }, "libvirt: completeness not reported"},
		{"cinder not configured", func(o *Observation, _ *Policy) { o.Cinder.Source = SourceStatus{State: SourceNotConfigured} }, "cinder: not configured"},
		{"zero domains when memory saw some", func(o *Observation, _ *Policy) {
			o.Libvirt.Domains = nil
			o.Nova.Servers = nil
		}, "libvirt: listed no domains, the last complete run saw 1"},
		{"zero Cinder volumes while domains have volume disks", func(o *Observation, _ *Policy) { o.Cinder.Volumes = nil }, "cinder: listed no volumes, but domains have 1 volume disks"},
		{"zero Nova servers while domains carry Nova metadata", func(o *Observation, _ *Policy) { o.Nova.Servers = nil }, "nova: listed no servers on host cmp-1, but 1 libvirt domains carry Nova metadata"},
		{"empty host name", func(o *Observation, _ *Policy) { o.Host = "" }, "host name is empty"},
		{"invalid policy", func(_ *Observation, p *Policy) { p.MinSightings = 0 }, "min sightings is 0"},
		{"memory file from another host", func(o *Observation, _ *Policy) { o.Host = "cmp-9" }, "memory file was written on host cmp-1, this is host cmp-9"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o, pol := base(), immediate()
			o.Mounts.Entries = []MountEntry{{Mountpoint: "/var/lib/nova/mnt/x", Source: "nfs:/x", SourceState: MountSourceGone}}
			c.mut(&o, &pol)
			mem := prior()
			r := Plan(o, mem, pol, t0)
			if !r.Aborted || !strings.Contains(strings.Join(r.AbortReasons, "|"), c.want) {
				t.Fatalf("aborted=%v reasons %q, want %q", r.Aborted, r.AbortReasons, c.want)
			}
			if len(r.Actions) == 0 {
				t.Fatalf("no actions listed; findings %v", r.Findings)
			}
			for _, a := range r.Actions {
				if a.State != StateAborted {
					t.Errorf("%s: state %s, want aborted", a.FindingKey, a.State)
				}
			}
			if len(r.Executable()) != 0 || ExitCode(r) != ExitError {
				t.Errorf("executable %d exit %d", len(r.Executable()), ExitCode(r))
			}
			// Findings that need a source that cannot be trusted are not
			// reported at all (they would be noise, e.g. every volume disk
			// a "zombie" when Cinder's listing came back empty).
			if strings.HasPrefix(c.want, "cinder") || strings.HasPrefix(c.want, "libvirt") || strings.HasPrefix(c.want, "nova") {
				for _, f := range r.Findings {
					if f.Class == ClassZombieDisk {
						t.Errorf("zombie reported from an untrusted source: %+v", f)
					}
				}
			}
			if c.name == "memory file from another host" {
				if len(r.Memory.Sightings) != 0 || r.Memory.Host != "cmp-9" {
					t.Errorf("another host's memory carried over: %+v", r.Memory)
				}
				return
			}
			if !reflect.DeepEqual(r.Memory.Sightings, mem.Sightings) {
				t.Errorf("sightings changed by an aborted run:\n got %v\nwant %v", r.Memory.Sightings, mem.Sightings)
			}
		})
	}
}

// TestEmptyHostBelievedAfterRepeatedRuns: a host that really lost all its
// domains is believed after max(N, 3) empty runs, then runs are clean.
func TestEmptyHostBelievedAfterRepeatedRuns(t *testing.T) {
	mem := NewMemory()
	mem.Domains, mem.Servers = 4, 4
	empty := obsOf(nil, nil, nil)
	for i, wantAbort := range []bool{true, true, false, false} {
		r := Plan(empty, mem, immediate(), t0.Add(time.Duration(i)*time.Minute))
		if r.Aborted != wantAbort {
			t.Fatalf("run %d: aborted=%v (%v), want %v", i, r.Aborted, r.AbortReasons, wantAbort)
		}
		mem = r.Memory
	}
	if mem.Domains != 0 || mem.Servers != 0 || mem.DomainsEmptyRuns != 0 {
		t.Errorf("memory after believing: %+v", mem)
	}
}

// TestWithoutNova: Nova not configured (Keystone-less Cinder). Cinder-side
// classes are still found; acting needs act_without_nova.
func TestWithoutNova(t *testing.T) {
	o := obsOf([]Domain{domain(1, vdisk("vdb", 1)), domain(2)}, nil, []Volume{volume(1, "available"), volume(2, "in-use", attachment(2, 2, ""))})
	o.Nova = Nova{Source: SourceStatus{State: SourceNotConfigured}}
	r := Plan(o, NewMemory(), immediate(), t0)
	f, a := summarize(r)
	wantF := []string{"stale_cinder_attachment warning stale_cinder_attachment/" + attID(2), "zombie_disk warning zombie_disk/" + inst(1) + "/" + vol(1)}
	if r.Aborted || !slices.Equal(f, wantF) {
		t.Fatalf("aborted %v %v; findings %q want %q", r.Aborted, r.AbortReasons, f, wantF)
	}
	for _, act := range r.Actions {
		if act.State != StateBlocked || !strings.Contains(act.Reason, "act_without_nova") {
			t.Errorf("without act_without_nova: %s", a)
		}
	}
	pol := immediate()
	pol.ActWithoutNova = true
	r = Plan(o, NewMemory(), pol, t0)
	for _, act := range r.Actions {
		if act.State != StateReady {
			t.Errorf("with act_without_nova: %s %s %s", act.FindingKey, act.State, act.Reason)
		}
		for _, p := range act.Preconditions {
			if p.Check == CheckServerIdle || p.Check == CheckNoNovaMapping {
				t.Errorf("precondition %s needs Nova, which is not configured", p)
			}
		}
	}
}

func TestPlanDoesNotMutateInputs(t *testing.T) {
	o := obsOf([]Domain{domain(2, vdisk("vdb", 2)), domain(1, vdisk("vdb", 1))}, []Server{server(2), server(1)}, []Volume{volume(2, "available"), volume(1, "available")})
	mem := NewMemory()
	mem.Sightings["stale_mount//gone"] = Sighting{Class: ClassStaleMount, FirstSeen: t0, LastSeen: t0, Count: 1}
	before := fmt.Sprintf("%+v %+v", o, mem)
	r := Plan(o, mem, immediate(), t0.Add(time.Minute))
	if after := fmt.Sprintf("%+v %+v", o, mem); after != before {
		t.Errorf("inputs changed:\n%s\n%s", before, after)
	}
	if _, ok := r.Memory.Sightings["stale_mount//gone"]; ok {
		t.Errorf("cleared finding still in the new memory")
	}
	if len(r.Memory.Sightings) != 2 {
		t.Errorf("new memory %v", r.Memory.Sightings)
	}
}

func TestPolicyValidate(t *testing.T) {
	if err := DefaultPolicy().Validate(); err != nil {
		t.Fatalf("default policy: %v", err)
	}
	bad := []func(*Policy){
		func(p *Policy) { p.MinSightings = 0 },
		func(p *Policy) { p.MinAge = -time.Second },
		func(p *Policy) { p.MaxActions = -1 },
		func(p *Policy) { p.MountBases = []string{"relative/dir"} },
		func(p *Policy) { p.MountBases = []string{"/"} },
		func(p *Policy) { p.MountBases = []string{"/var/lib/nova/mnt/"} },
	}
	for i, mut := range bad {
		p := DefaultPolicy()
		mut(&p)
		if err := p.Validate(); !errors.Is(err, ErrInvalidPolicy) {
			t.Errorf("case %d: %v", i, err)
		}
	}
}

func TestExitCode(t *testing.T) {
	cases := []struct {
		r    Result
		want int
	}{
		{Result{}, ExitClean},
		{Result{Findings: []Finding{{Key: "k", Severity: SeverityWarning}}}, ExitFindings},
		{Result{Findings: []Finding{{Key: "k", Severity: SeverityWarning, Skipped: "volume detaching"}}}, ExitClean},
		{Result{Findings: []Finding{{Key: "k", Severity: SeverityInfo}}}, ExitClean},
		{Result{Findings: []Finding{{Key: "k", Severity: SeverityInfo}, {Key: "j", Severity: SeverityCritical}}}, ExitFindings},
		{Result{Aborted: true}, ExitError},
		{Result{Findings: []Finding{{Key: "k", Severity: SeverityWarning}}, Actions: []Action{{State: StateFailed}}}, ExitError},
		{Result{Findings: []Finding{{Key: "k", Severity: SeverityWarning}}, Actions: []Action{{State: StatePreconditionFailed}}}, ExitFindings},
		{Result{Findings: []Finding{{Key: "k", Severity: SeverityWarning}}, Actions: []Action{{State: StatePending}}}, ExitFindings},
	}
	for i, c := range cases {
		if got := ExitCode(c.r); got != c.want {
			t.Errorf("case %d: exit %d, want %d", i, got, c.want)
		}
	}
}

func TestMergeDisks(t *testing.T) {
	live := []Disk{{Target: "vda", Source: "/x/disk"}, {Target: "vdb", Serial: vol(1)}, {Target: "vdc", Serial: vol(2)}}
	config := []Disk{{Target: "vda", Source: "/x/disk"}, {Target: "vdc", Serial: vol(1)}, {Target: "vdd", Alias: "ua-" + vol(3)}}
	got := MergeDisks(live, config)
	want := []Disk{
		{Target: "vda", Source: "/x/disk", Live: true, Config: true},
		{Target: "vdb", Serial: vol(1), Live: true, Config: true}, // paired by serial, not by target
		{Target: "vdc", Serial: vol(2), Live: true},
		{Target: "vdd", Alias: "ua-" + vol(3), Config: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("MergeDisks:\n got %+v\nwant %+v", got, want)
	}
}

func TestInvolvedVolumeIDs(t *testing.T) {
	o := obsOf([]Domain{domain(2, vdisk("vdb", 3)), domain(1, Disk{Target: "vdc", Alias: "ua-" + vol(1)}, Disk{Target: "vdd", Source: "pool/volume-" + vol(2)})},
		[]Server{server(1, mapping(4, 0, ""), mapping(1, 0, ""))}, nil)
	got := InvolvedVolumeIDs(o.Libvirt, o.Nova)
	want := []string{vol(1), vol(2), vol(3), vol(4)}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestSetOutcome(t *testing.T) {
	r := Plan(obsOf([]Domain{domain(1, vdisk("vdb", 1))}, []Server{server(1)}, []Volume{volume(1, "available")}), NewMemory(), immediate(), t0)
	key := r.Actions[0].FindingKey
	if !r.SetOutcome(key, ActionLibvirtDetach, StatePending, "live detach not acknowledged after 8 × 20s") || r.Actions[0].State != StatePending {
		t.Fatalf("outcome not recorded: %+v", r.Actions[0])
	}
	if r.SetOutcome(key, ActionNovaDetach, StateDone, "") || r.SetOutcome("nope", ActionLibvirtDetach, StateDone, "") {
		t.Error("recorded an outcome for an action that does not exist")
	}
	if ExitCode(r) != ExitFindings {
		t.Errorf("exit %d", ExitCode(r))
	}
	r.SetOutcome(key, ActionLibvirtDetach, StateFailed, "virDomainDetachDeviceFlags: error")
	if ExitCode(r) != ExitError {
		t.Errorf("exit after a failed action %d", ExitCode(r))
	}
}

// TestPlanZeroValues: nothing filled in is an aborted run, not a panic and
// not a clean bill of health.
func TestPlanZeroValues(t *testing.T) {
	r := Plan(Observation{}, Memory{}, Policy{}, time.Time{})
	if !r.Aborted || len(r.AbortReasons) < 3 || ExitCode(r) != ExitError || r.Memory.Sightings == nil {
		t.Fatalf("zero inputs: aborted=%v reasons=%q exit=%d", r.Aborted, r.AbortReasons, ExitCode(r))
	}
}
