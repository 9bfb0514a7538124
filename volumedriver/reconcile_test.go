package volumedriver

import (
	"errors"
	"reflect"
	"slices"
	"testing"
)

const (
	tInst  = "inst-a"
	tOther = "inst-b"
	tBoot  = "boot-1"
)

var tLayout = Layout{Root: "/var/lib/cinderwarden/mounts"}

func cv(status string, servers ...string) *CinderVolume {
	c := &CinderVolume{ID: tVol, Name: "v1", Status: status, Metadata: map[string]string{MetaManaged: "true", MetaFSType: "ext4"}}
	for _, s := range servers {
		c.Attachments = append(c.Attachments, CinderAttachment{ServerID: s, AttachmentID: tAtt, HostName: "host-" + s, Device: "/dev/vdb"})
	}
	return c
}

func unmanaged(c *CinderVolume) *CinderVolume { c.Metadata = nil; return c }

func live(mod ...func(*LiveMount)) []LiveMount {
	m := LiveMount{VolumeID: tVol, Mountpoint: tDir, Device: tDev}
	for _, f := range mod {
		f(&m)
	}
	return []LiveMount{m}
}

func recorded(s VolumeState) NodeState {
	return NodeState{Version: StateVersion, InstanceID: tInst, BootID: tBoot, Volumes: []VolumeState{s}}
}

func TestReconcile(t *testing.T) {
	noAction := []Action(nil)
	detach := []Action{act(ActDetach)}
	unmount := []Action{act(ActUnmount)}
	forceUnmount := []Action{{Kind: ActUnmount, VolumeID: tVol, MountDir: tDir, Force: true}}
	tests := []struct {
		name     string
		state    NodeState
		bootID   string
		mounts   []LiveMount
		cinder   *CinderVolume
		phase    Phase // ignored when absent
		absent   bool  // not held or released by this node after recovery
		refs     []string
		actions  []Action
		findings []string
	}{
		{"running containers keep their mount", recorded(st(PhaseMounted, func(s *VolumeState) { s.Refs = []string{"c1", "c2"} })), tBoot,
			live(), cv("in-use", tInst), PhaseMounted, false, []string{"c1", "c2"}, noAction, nil},
		{"killed after the last unmount was recorded: unmount and detach", recorded(st(PhaseUnmounting)), tBoot,
			live(), cv("in-use", tInst), PhaseUnmounting, false, nil, unmount, []string{FindUnusedMount}},
		{"killed during mount: the waiting mount failed for Docker, roll back", recorded(st(PhaseMounting)), tBoot,
			live(), cv("in-use", tInst), PhaseUnmounting, false, nil, unmount, []string{FindPendingDropped, FindUnusedMount}},
		{"mount not in the state file is kept", NodeState{}, tBoot,
			live(), cv("in-use", tInst), PhaseMounted, false, nil, noAction, []string{FindUnrecordedMount}},
		{"device gone: stale mount force-unmounted, refs dropped", recorded(st(PhaseMounted)), tBoot,
			live(func(m *LiveMount) { m.DeviceGone = true }), cv("in-use", tInst), PhaseUnmounting, false, nil, forceUnmount, []string{FindStaleMount}},
		{"taken over by another instance: stale mount swept", recorded(st(PhaseMounted)), tBoot,
			live(), cv("in-use", tOther), PhaseUnmounting, false, nil, forceUnmount, []string{FindStaleMount}},
		{"corrupted mountpoint is stale", recorded(st(PhaseMounted)), tBoot,
			live(func(m *LiveMount) { m.Corrupted = true }), cv("in-use", tInst), PhaseUnmounting, false, nil, forceUnmount, []string{FindStaleMount}},
		{"Cinder 404 alone never unmounts", recorded(st(PhaseMounted)), tBoot,
			live(), nil, PhaseMounted, false, []string{"m1"}, noAction, []string{FindVolumeMissing}},
		{"killed during attach after Cinder finished: detach", recorded(st(PhaseAttaching)), tBoot,
			nil, cv("in-use", tInst), PhaseDetaching, false, nil, detach, []string{FindPendingDropped, FindRolledBack}},
		{"killed during device wait: detach", recorded(st(PhaseWaitingDevice)), tBoot,
			nil, cv("in-use", tInst), PhaseDetaching, false, nil, detach, []string{FindPendingDropped, FindRolledBack}},
		{"killed during detach: detach again", recorded(st(PhaseDetaching)), tBoot,
			nil, cv("in-use", tInst), PhaseDetaching, false, nil, detach, []string{FindRolledBack}},
		{"recorded containers but mount vanished, same boot: kept attached", recorded(st(PhaseMounted)), tBoot,
			nil, cv("in-use", tInst), PhaseAttached, false, []string{"m1"}, noAction, []string{FindMountVanished}},
		{"after a reboot recorded containers are gone: detach", recorded(st(PhaseMounted)), "boot-2",
			nil, cv("in-use", tInst), PhaseDetaching, false, nil, detach, []string{FindRefsDroppedReboot}},
		{"attach still in flight in Cinder: wait for it, then release", recorded(st(PhaseAttaching)), tBoot,
			nil, cv("attaching", tInst), PhaseAttaching, false, nil, []Action{act(ActAttach)}, []string{FindPendingDropped, FindRolledBack}},
		{"detach in flight in Cinder: finish it", recorded(st(PhaseDetaching)), tBoot,
			nil, cv("detaching", tInst), PhaseDetaching, false, nil, detach, []string{FindRolledBack}},
		{"managed volume attached here without a record: detach", NodeState{}, tBoot,
			nil, cv("in-use", tInst), PhaseDetaching, false, nil, detach, []string{FindUnrecordedManaged}},
		{"unmanaged volume attached here without a record: left alone", NodeState{}, tBoot,
			nil, unmanaged(cv("in-use", tInst)), 0, true, nil, nil, []string{FindUnmanagedIgnored}},
		{"recorded but detached in Cinder: dropped", recorded(st(PhaseAttached)), tBoot,
			nil, cv("available"), 0, true, nil, nil, []string{FindNotAttached}},
		{"recorded but deleted in Cinder: dropped", recorded(st(PhaseAttached)), tBoot,
			nil, nil, 0, true, nil, nil, []string{FindVolumeMissing}},
		{"someone else attaching, no record: left alone", NodeState{}, tBoot,
			nil, cv("attaching", tInst), 0, true, nil, nil, []string{FindTransitional}},
		{"state of another instance is ignored, its mount kept",
			NodeState{InstanceID: tOther, Volumes: []VolumeState{st(PhaseMounted)}}, tBoot,
			live(), cv("in-use", tInst), PhaseMounted, false, nil, noAction, []string{FindOtherInstance, FindUnrecordedMount}},
		{"unreadable metadata counts as unmanaged", NodeState{}, tBoot,
			nil, func() *CinderVolume { c := cv("in-use", tInst); c.Metadata[MetaFSType] = "zfs"; return c }(),
			0, true, nil, nil, []string{FindBadMetadata, FindUnmanagedIgnored}},
		{"attached elsewhere and not ours: nothing to do", NodeState{}, tBoot,
			nil, cv("in-use", tOther), 0, true, nil, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := ReconcileInput{InstanceID: tInst, BootID: tc.bootID, Layout: tLayout, State: tc.state, Mounts: tc.mounts,
				Cinder: map[string]*CinderVolume{tVol: tc.cinder}}
			rec, err := Reconcile(in)
			if err != nil {
				t.Fatal(err)
			}
			var codes []string
			for _, f := range rec.Findings {
				if f.VolumeID != tVol || f.Message == "" {
					t.Errorf("finding %+v", f)
				}
				codes = append(codes, f.Code)
			}
			if !slices.Equal(codes, tc.findings) {
				t.Errorf("findings %v, want %v (%+v)", codes, tc.findings, rec.Findings)
			}
			if tc.absent {
				if len(rec.Volumes) != 0 || len(rec.State.Volumes) != 0 {
					t.Fatalf("volume kept: %+v", rec.Volumes)
				}
				return
			}
			if len(rec.Volumes) != 1 {
				t.Fatalf("recovered %d volumes, want 1", len(rec.Volumes))
			}
			rv := rec.Volumes[0]
			if rv.State.Phase != tc.phase || !slices.Equal(rv.State.Refs, tc.refs) {
				t.Errorf("phase %s refs %v, want %s %v", rv.State.Phase, rv.State.Refs, tc.phase, tc.refs)
			}
			if len(rv.State.Pending)+len(rv.State.Releasing) != 0 {
				t.Errorf("requests from before the restart survived: %+v", rv.State)
			}
			if !reflect.DeepEqual(rv.Actions, tc.actions) {
				t.Errorf("actions %+v, want %+v", rv.Actions, tc.actions)
			}
			if s, ok := rec.State.Volume(tVol); !ok || !reflect.DeepEqual(s, rv.State) {
				t.Errorf("state to save %+v does not match %+v", s, rv.State)
			}
			if rec.State.InstanceID != tInst || rec.State.BootID != tc.bootID {
				t.Errorf("state identity %q %q", rec.State.InstanceID, rec.State.BootID)
			}
			if _, err := EncodeState(rec.State); err != nil {
				t.Errorf("recovered state does not encode: %v", err)
			}
			// Finish recovery the way the plugin will: every action succeeds.
			vm, err := RestoreVolume(rv.State)
			if err != nil {
				t.Fatal(err)
			}
			queue := rv.Actions
			for len(queue) > 0 {
				a := queue[0]
				queue = queue[1:]
				var ev Event
				switch a.Kind {
				case ActAttach:
					ev = AttachDone{AttachmentID: tAtt}
				case ActUnmount:
					ev = UnmountDone{}
				case ActDetach:
					ev = DetachDone{}
				default:
					t.Fatalf("recovery asked for %s", a.Kind)
				}
				rd, err := vm.Step(ev)
				if err != nil {
					t.Fatal(err)
				}
				queue = append(queue, rd.Actions...)
			}
			end := vm.Phase()
			if len(tc.actions) > 0 && end != PhaseDetached {
				t.Errorf("after the recovery actions: %s, want detached", end)
			}
			if len(tc.actions) == 0 && end != tc.phase {
				t.Errorf("steady recovery moved to %s", end)
			}
		})
	}
}

// TestReconcileAccountsForEveryAttachment: with many volumes at once, every
// Cinder volume attached to this instance ends up held, released or
// reported as not ours; the output is sorted and deterministic.
func TestReconcileAccountsForEveryAttachment(t *testing.T) {
	id := func(n byte) string { return "00000000-0000-4000-8000-00000000000" + string('0'+n) }
	state := NodeState{InstanceID: tInst, BootID: tBoot}
	cinder := map[string]*CinderVolume{}
	var mounts []LiveMount
	for n := byte(0); n < 8; n++ {
		c := cv("in-use", tInst)
		c.ID = id(n)
		if n%3 == 0 {
			c.Metadata = nil
		}
		cinder[c.ID] = c
		if n%2 == 0 {
			s := st(PhaseMounted, func(s *VolumeState) { s.VolumeID, s.MountDir = id(n), tLayout.MountDir(id(n)) })
			state = state.With(s)
			mounts = append(mounts, LiveMount{VolumeID: id(n), Mountpoint: tLayout.MountDir(id(n)), Device: "/dev/vd" + string('b'+n)})
		}
	}
	in := ReconcileInput{InstanceID: tInst, BootID: tBoot, Layout: tLayout, State: state, Mounts: mounts, Cinder: cinder}
	rec, err := Reconcile(in)
	if err != nil {
		t.Fatal(err)
	}
	for vid, c := range cinder {
		if _, here := c.attachmentTo(tInst); !here {
			continue
		}
		_, held := rec.State.Volume(vid)
		reported := slices.ContainsFunc(rec.Findings, func(f Finding) bool { return f.VolumeID == vid && f.Code == FindUnmanagedIgnored })
		if held == reported {
			t.Errorf("volume %s: held=%v reported-as-not-ours=%v", vid, held, reported)
		}
	}
	if !slices.IsSortedFunc(rec.Volumes, func(a, b RecoveredVolume) int {
		if a.State.VolumeID < b.State.VolumeID {
			return -1
		}
		return 1
	}) {
		t.Error("volumes not sorted")
	}
	again, _ := Reconcile(in)
	if !reflect.DeepEqual(rec, again) {
		t.Error("Reconcile is not deterministic")
	}
	// Mounted with refs (0,2,4,6) are kept whatever their metadata; of the
	// others the managed ones (1,5,7) are detached and 3 is reported.
	if got := len(rec.Volumes); got != 7 {
		t.Errorf("recovered %d volumes, want 7 (4 mounted + 3 managed to detach)", got)
	}
}

func TestReconcileRefusesPartialViews(t *testing.T) {
	base := ReconcileInput{InstanceID: tInst, Layout: tLayout, State: recorded(st(PhaseMounted)), Cinder: map[string]*CinderVolume{}}
	if _, err := Reconcile(base); !errors.Is(err, ErrIncompleteView) {
		t.Errorf("missing Cinder view: err = %v", err)
	}
	base.Cinder[tVol] = cv("in-use", tInst)
	base.Mounts = append(live(), live()...)
	if _, err := Reconcile(base); !errors.Is(err, ErrIncompleteView) {
		t.Errorf("double mount: err = %v", err)
	}
}

func TestReconcileUsesThePolicyFilesystemForUnrecordedVolumes(t *testing.T) {
	c := cv("in-use", tInst)
	delete(c.Metadata, MetaFSType)
	in := ReconcileInput{InstanceID: tInst, Layout: tLayout, Mounts: live(), Cinder: map[string]*CinderVolume{tVol: c},
		Policy: OptionPolicy{DefaultSizeGiB: 1, MaxSizeGiB: 1, DefaultFSType: FSXFS}}
	rec, err := Reconcile(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Volumes) != 1 || rec.Volumes[0].State.FSType != FSXFS || rec.Volumes[0].State.Name != "v1" ||
		rec.Volumes[0].State.MountDir != tDir || rec.Volumes[0].State.Device != tDev {
		t.Errorf("recovered %+v", rec.Volumes)
	}
}
