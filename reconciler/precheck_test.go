package reconciler

import (
	"errors"
	"strings"
	"testing"
)

// TestCheckPreconditions: each action's preconditions are re-checked against
// freshly read state; any change since Plan stops the action.
func TestCheckPreconditions(t *testing.T) {
	zombieObs := func() Observation {
		return obsOf([]Domain{domain(1, vdisk("vdb", 1))}, []Server{server(1)}, []Volume{volume(1, "available")})
	}
	staleObs := func() Observation {
		return obsOf([]Domain{domain(1)}, []Server{server(1)}, []Volume{volume(1, "in-use", attachment(1, 1, "/dev/vdb"))})
	}
	missingObs := func() Observation {
		return obsOf([]Domain{domain(1)}, []Server{server(1, mapping(1, 1, "/dev/vdb"))}, []Volume{volume(1, "in-use", attachment(1, 1, "/dev/vdb"))})
	}
	mountObs := func() Observation {
		o := obsOf([]Domain{domain(1)}, []Server{server(1)}, nil)
		o.Mounts.Entries = []MountEntry{{Mountpoint: "/var/lib/nova/mnt/abc", Source: "nfs:/x", SourceState: MountSourceGone}}
		return o
	}
	pol := immediate()
	pol.NovaDetachMissingDisk = true
	plan := func(o Observation, kind ActionKind) Action {
		t.Helper()
		for _, a := range Plan(o, NewMemory(), pol, t0).Actions {
			if a.Kind == kind {
				return a
			}
		}
		t.Fatalf("no %s action planned", kind)
		return Action{}
	}
	zombie := plan(zombieObs(), ActionLibvirtDetach)
	stale := plan(staleObs(), ActionCinderAttachmentDelete)
	novaDetach := plan(missingObs(), ActionNovaDetach)
	unmount := plan(mountObs(), ActionLazyUnmount)

	cases := []struct {
		name   string
		action Action
		fresh  func() Observation
		mut    func(*Observation)
		failed CheckKind // "" = must hold
	}{
		{"zombie unchanged", zombie, zombieObs, nil, ""},
		{"zombie: disk already gone", zombie, zombieObs, func(o *Observation) { o.Libvirt.Domains[0].Disks = o.Libvirt.Domains[0].Disks[:1] }, CheckDomainHasDisk},
		{"zombie: domain gone", zombie, zombieObs, func(o *Observation) { o.Libvirt.Domains = []Domain{domain(2)} }, CheckDomainHasDisk},
		{"zombie: volume now detaching", zombie, zombieObs, func(o *Observation) { o.Cinder.Volumes[0].Status = "detaching" }, CheckVolumeSettled},
		{"zombie: Cinder attachment reappeared", zombie, zombieObs, func(o *Observation) {
			o.Cinder.Volumes[0] = volume(1, "in-use", attachment(5, 1, "/dev/vdb"))
		}, CheckNoCinderAttachment},
		{"zombie: Nova mapped it meanwhile", zombie, zombieObs, func(o *Observation) { o.Nova.Servers[0].Volumes = []ServerVolume{mapping(1, 0, "")} }, CheckNoNovaMapping},
		{"zombie: instance got a task state", zombie, zombieObs, func(o *Observation) { o.Nova.Servers[0].TaskState = "migrating" }, CheckServerIdle},
		{"zombie: instance left this host", zombie, zombieObs, func(o *Observation) { o.Nova.Servers = nil }, CheckServerIdle},
		{"zombie: Cinder could not be re-read", zombie, zombieObs, func(o *Observation) { o.Cinder.Source = SourceStatus{State: SourceFailed} }, CheckVolumeSettled},
		{"zombie: libvirt could not be re-read", zombie, zombieObs, func(o *Observation) { o.Libvirt.Source = SourceStatus{State: SourceFailed} }, CheckDomainHasDisk},
		{"stale attachment unchanged", stale, staleObs, nil, ""},
		{"stale attachment: already deleted", stale, staleObs, func(o *Observation) { o.Cinder.Volumes[0] = volume(1, "available") }, CheckCinderAttachmentPresent},
		{"stale attachment: disk appeared (attach completed)", stale, staleObs, func(o *Observation) {
			o.Libvirt.Domains[0].Disks = append(o.Libvirt.Domains[0].Disks, vdisk("vdb", 1))
		}, CheckDomainLacksDisk},
		{"stale attachment: Nova mapped it", stale, staleObs, func(o *Observation) { o.Nova.Servers[0].Volumes = []ServerVolume{mapping(1, 1, "")} }, CheckNoNovaMapping},
		{"nova detach unchanged", novaDetach, missingObs, nil, ""},
		{"nova detach: mapping gone", novaDetach, missingObs, func(o *Observation) { o.Nova.Servers[0].Volumes = nil }, CheckNovaMappingPresent},
		{"unmount unchanged", unmount, mountObs, nil, ""},
		{"unmount: source back", unmount, mountObs, func(o *Observation) { o.Mounts.Entries[0].SourceState = MountSourceReachable }, CheckMountSourceGone},
		{"unmount: already unmounted", unmount, mountObs, func(o *Observation) { o.Mounts.Entries = nil }, CheckMountSourceGone},
		{"unmount: a domain now uses it", unmount, mountObs, func(o *Observation) {
			o.Libvirt.Domains[0].Disks = append(o.Libvirt.Domains[0].Disks, Disk{Target: "vdc", Source: "/var/lib/nova/mnt/abc/volume-x"})
		}, CheckMountUnused},
		{"unmount: a domain now uses it (typed source)", unmount, mountObs, func(o *Observation) {
			o.Libvirt.Domains[0].Disks = append(o.Libvirt.Domains[0].Disks, Disk{Target: "vdc", Source: "file:/var/lib/nova/mnt/abc/volume-x"})
		}, CheckMountUnused},
		{"unmount: a sibling mount's user does not count", unmount, mountObs, func(o *Observation) {
			o.Libvirt.Domains[0].Disks = append(o.Libvirt.Domains[0].Disks, Disk{Target: "vdc", Source: "/var/lib/nova/mnt/abcd/volume-x"})
		}, ""},
		{"unknown action kind", Action{Kind: "cinder_volume_delete", Preconditions: zombie.Preconditions}, zombieObs, nil, "known_action"},
		{"action without preconditions", Action{Kind: ActionLibvirtDetach}, zombieObs, nil, "has_preconditions"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := c.fresh()
			if c.mut != nil {
				c.mut(&o)
			}
			err := CheckPreconditions(c.action, o)
			if c.failed == "" {
				if err != nil {
					t.Fatalf("unexpected: %v", err)
				}
				return
			}
			var pe *PreconditionError
			if !errors.Is(err, ErrPreconditionFailed) || !errors.As(err, &pe) || pe.Precondition.Check != c.failed {
				t.Fatalf("got %v, want a failed %s", err, c.failed)
			}
			// Only a source that failed on the re-read is ErrReread (an
			// error of the run, exit 2); a changed item is not.
			if wantUnread := strings.Contains(c.name, "could not be re-read"); errors.Is(err, ErrReread) != wantUnread {
				t.Fatalf("errors.Is(err, ErrReread) = %v, want %v (%v)", !wantUnread, wantUnread, err)
			}
		})
	}
}
