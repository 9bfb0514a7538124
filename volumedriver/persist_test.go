package volumedriver

import "testing"

func TestWriteNeeded(t *testing.T) {
	base := VolumeState{VolumeID: "v", Name: "n", MountDir: "/m/v", FSType: FSExt4, Pending: []string{"m1"}}
	with := func(f func(*VolumeState)) VolumeState {
		s := base.clone()
		f(&s)
		return s
	}
	attaching := with(func(s *VolumeState) { s.Phase = PhaseAttaching })
	waiting := with(func(s *VolumeState) { s.Phase = PhaseWaitingDevice; s.AttachmentID = "a1" })
	mounting := with(func(s *VolumeState) { s.Phase = PhaseMounting; s.AttachmentID = "a1"; s.Device = "/dev/vdb" })
	mounted := with(func(s *VolumeState) {
		s.Phase, s.Device, s.Pending, s.Refs = PhaseMounted, "/dev/vdb", nil, []string{"m1"}
	})
	for _, tc := range []struct {
		name string
		prev VolumeState
		had  bool
		next VolumeState
		want bool
	}{
		{"first record", VolumeState{}, false, attaching, true},
		{"attach done: re-derived from Cinder", attaching, true, waiting, false},
		{"device found: re-derived by volume id", waiting, true, mounting, false},
		{"attaching to mounting", attaching, true, mounting, false},
		{"mount done: the id Docker hears about", mounting, true, mounted, true},
		{"from a steady phase", with(func(s *VolumeState) { s.Phase = PhaseAttached }), true, waiting, true},
		{"to detaching", attaching, true, with(func(s *VolumeState) { s.Phase = PhaseDetaching }), true},
		{"another mount id waits", attaching, true, with(func(s *VolumeState) {
			s.Phase, s.Pending = PhaseWaitingDevice, []string{"m1", "m2"}
		}), true},
		{"a waiting mount id canceled", waiting, true, with(func(s *VolumeState) { s.Phase, s.Pending = PhaseWaitingDevice, nil }), true},
		{"recorded refs change", with(func(s *VolumeState) { s.Phase, s.Refs = PhaseMounting, []string{"c1"} }), true, mounting, true},
	} {
		if got := writeNeeded(tc.prev, tc.had, tc.next); got != tc.want {
			t.Errorf("%s: writeNeeded = %v, want %v", tc.name, got, tc.want)
		}
	}
}
