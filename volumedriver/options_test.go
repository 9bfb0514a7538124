package volumedriver

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseCreateOptions(t *testing.T) {
	p := OptionPolicy{DefaultSizeGiB: 5, MaxSizeGiB: 100, DefaultFSType: FSXFS}
	tests := []struct {
		name string
		opts map[string]string
		want CreateOptions
	}{
		{"no options: policy defaults", nil, CreateOptions{SizeGiB: 5, FSType: FSXFS}},
		{"everything", map[string]string{
			"size": "100", "type": "ssd", "availability_zone": "az-2", "fstype": "ext4",
			"source": "vol-0", "description": "db data", "preempt": "yes",
		}, CreateOptions{SizeGiB: 100, Type: "ssd", AvailabilityZone: "az-2", FSType: FSExt4, Source: "vol-0",
			Description: "db data", Preempt: PreemptOn}},
		{"snapshot without size takes the snapshot's size", map[string]string{"snapshot": "snap-1"},
			CreateOptions{SizeGiB: 0, FSType: FSXFS, Snapshot: "snap-1"}},
		{"clone with a size", map[string]string{"source": "v0", "size": "8"},
			CreateOptions{SizeGiB: 8, FSType: FSXFS, Source: "v0"}},
		{"leading zeros are fine", map[string]string{"size": "007"}, CreateOptions{SizeGiB: 7, FSType: FSXFS}},
		{"preempt off explicitly", map[string]string{"preempt": "0"}, CreateOptions{SizeGiB: 5, FSType: FSXFS, Preempt: PreemptOff}},
		{"preempt FALSE", map[string]string{"preempt": "FALSE"}, CreateOptions{SizeGiB: 5, FSType: FSXFS, Preempt: PreemptOff}},
		{"force implies preempt", map[string]string{"preempt_force": "true"}, CreateOptions{SizeGiB: 5, FSType: FSXFS, Preempt: PreemptForce}},
		{"force with preempt", map[string]string{"preempt": "1", "preempt_force": "1"}, CreateOptions{SizeGiB: 5, FSType: FSXFS, Preempt: PreemptForce}},
		{"force=no keeps preempt", map[string]string{"preempt": "true", "preempt_force": "no"}, CreateOptions{SizeGiB: 5, FSType: FSXFS, Preempt: PreemptOn}},
		{"empty description allowed", map[string]string{"description": ""}, CreateOptions{SizeGiB: 5, FSType: FSXFS}},
		{"values are not trimmed", map[string]string{"type": " gold "}, CreateOptions{SizeGiB: 5, FSType: FSXFS, Type: " gold "}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCreateOptions(tc.opts, p)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestOptionErrorFields(t *testing.T) {
	_, err := ParseCreateOptions(map[string]string{"size": "x", "zz": "1", "aa": "2"}, DefaultOptionPolicy())
	var oe *OptionError
	if !errors.As(err, &oe) || !errors.Is(err, ErrUnknownOption) || !slices.Equal(oe.Option, []string{"aa", "zz"}) {
		t.Fatalf("unknown keys are reported first and together: %v (%+v)", err, oe)
	}
	_, err = ParseCreateOptions(map[string]string{"size": "x", "fstype": "zfs"}, DefaultOptionPolicy())
	if !errors.As(err, &oe) || !slices.Equal(oe.Option, []string{"fstype"}) || oe.Value != "zfs" {
		t.Fatalf("first bad value in key order: %v", err)
	}
	if !slices.IsSorted(ValidOptions()) || len(ValidOptions()) != 9 {
		t.Errorf("ValidOptions() = %v", ValidOptions())
	}
}

func TestOptionPolicyValidate(t *testing.T) {
	if err := DefaultOptionPolicy().Validate(); err != nil {
		t.Fatalf("default policy: %v", err)
	}
	bad := map[string]OptionPolicy{
		"default volume size 0 GiB: must be at least 1":                      {0, 10, FSExt4},
		"maximum volume size 4 GiB: must be at least the default size 5 GiB": {5, 4, FSExt4},
		`default filesystem "ntfs": allowed values: ext4, xfs`:               {1, 10, "ntfs"},
	}
	for want, p := range bad {
		if err := p.Validate(); err == nil || err.Error() != want {
			t.Errorf("Validate(%+v) = %v, want %q", p, err, want)
		}
	}
}

func TestPreemptResolve(t *testing.T) {
	cases := []struct{ vol, global, want PreemptMode }{
		{PreemptDefault, PreemptDefault, PreemptOff},
		{PreemptDefault, PreemptOn, PreemptOn},
		{PreemptDefault, PreemptForce, PreemptForce},
		{PreemptOff, PreemptForce, PreemptOff},
		{PreemptOn, PreemptOff, PreemptOn},
		{PreemptForce, PreemptOff, PreemptForce},
	}
	for _, c := range cases {
		if got := c.vol.Resolve(c.global); got != c.want {
			t.Errorf("%s.Resolve(%s) = %s, want %s", c.vol, c.global, got, c.want)
		}
	}
}

func TestValidateNameAccepts(t *testing.T) {
	for _, n := range []string{"v1", "ab", "0a", "Data.DB_01-x", "a..", strings.Repeat("z", 255)} {
		if err := ValidateName(n); err != nil {
			t.Errorf("ValidateName(%q) = %v", n, err)
		}
	}
	var ne *NameError
	if err := ValidateName("a/b"); !errors.As(err, &ne) || ne.Name != "a/b" {
		t.Errorf("NameError not exposed: %v", err)
	}
}

func TestMetadataRoundTrip(t *testing.T) {
	p := DefaultOptionPolicy()
	for _, o := range []CreateOptions{
		{FSType: FSXFS},
		{FSType: FSExt4, Preempt: PreemptOff},
		{FSType: FSExt4, Preempt: PreemptOn},
		{FSType: FSExt4, Preempt: PreemptForce},
	} {
		md := ManagedMetadata(o)
		s, err := SettingsFromMetadata(md, p)
		if err != nil {
			t.Fatal(err)
		}
		want := VolumeSettings{Managed: true, FSType: o.FSType, FSTypeRecorded: true, Preempt: o.Preempt}
		if s != want {
			t.Errorf("%+v: metadata %v read back as %+v", o, md, s)
		}
		if !s.MayDelete(false) {
			t.Error("a managed volume may be deleted")
		}
	}
}

func TestAdoptedVolumeSettings(t *testing.T) {
	// A volume made outside the plugin: foreign metadata only.
	s, err := SettingsFromMetadata(map[string]string{"readonly": "False", "attached_mode": "rw"}, OptionPolicy{DefaultFSType: FSXFS})
	if err != nil {
		t.Fatal(err)
	}
	if s != (VolumeSettings{FSType: FSXFS}) {
		t.Errorf("adopted: %+v", s)
	}
	if s.MayDelete(false) || !s.MayDelete(true) {
		t.Error("unmanaged volumes are deleted only when configured")
	}
	s, _ = SettingsFromMetadata(map[string]string{MetaManaged: "false", MetaGeneration: "12"}, DefaultOptionPolicy())
	if s.Managed || s.Generation != 12 {
		t.Errorf("managed=false, generation 12: %+v", s)
	}
}

func TestBadMetadata(t *testing.T) {
	cases := map[string]map[string]string{
		`metadata cinderwarden.managed="perhaps": allowed values: true, false`:               {MetaManaged: "perhaps"},
		`metadata cinderwarden.fstype="zfs": allowed values: ext4, xfs`:                      {MetaFSType: "zfs"},
		`metadata cinderwarden.preempt="x": allowed values: true, false`:                     {MetaPreempt: "x"},
		`metadata cinderwarden.preempt_force="x": allowed values: true, false`:               {MetaPreemptForce: "x"},
		`metadata cinderwarden.preempt_force="true": contradicts cinderwarden.preempt=false`: {MetaPreempt: "false", MetaPreemptForce: "true"},
		`metadata cinderwarden.generation="-1": not an unsigned integer`:                     {MetaGeneration: "-1"},
	}
	for want, md := range cases {
		_, err := SettingsFromMetadata(md, DefaultOptionPolicy())
		if !errors.Is(err, ErrInvalidMetadata) || err.Error() != want {
			t.Errorf("%v: err = %v, want %q", md, err, want)
		}
	}
}

func TestTakeoverRequest(t *testing.T) {
	r := TakeoverRequest{Taker: "inst-b", RequestedAt: time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC), Token: 9, Force: true}
	md := r.Metadata()
	if len(md) != len(TakeoverKeys()) {
		t.Errorf("metadata %v vs keys %v", md, TakeoverKeys())
	}
	md["cinderwarden.managed"] = "true"
	got, ok, err := ParseTakeoverRequest(md)
	if err != nil || !ok || got != r {
		t.Fatalf("round trip: %+v %v %v", got, ok, err)
	}
	if _, ok, err := ParseTakeoverRequest(map[string]string{MetaManaged: "true"}); ok || err != nil {
		t.Errorf("no request: ok=%v err=%v", ok, err)
	}
	broken := []map[string]string{
		{MetaTakeoverTaker: ""},
		{MetaTakeoverTaker: "b", MetaTakeoverRequestedAt: "yesterday", MetaTakeoverToken: "1"},
		{MetaTakeoverTaker: "b", MetaTakeoverRequestedAt: "2026-11-25T20:00:00Z", MetaTakeoverToken: "0"},
		{MetaTakeoverTaker: "b", MetaTakeoverRequestedAt: "2026-11-25T20:00:00Z", MetaTakeoverToken: "1", MetaTakeoverForce: "sure"},
	}
	for _, md := range broken {
		if _, ok, err := ParseTakeoverRequest(md); ok || !errors.Is(err, ErrInvalidMetadata) {
			t.Errorf("%v: ok=%v err=%v", md, ok, err)
		}
	}
}

func TestLayout(t *testing.T) {
	l := Layout{Root: "/run/cw/mounts"}
	if got := l.DataDir(tVol); got != "/run/cw/mounts/"+tVol+"/data" {
		t.Errorf("DataDir = %s", got)
	}
	for mp, want := range map[string]string{
		"/run/cw/mounts/" + tVol:        tVol,
		"/run/cw/mounts/" + tVol + "/":  tVol,
		"/run/cw/mounts/" + tVol + "/x": "",
		"/run/cw/other/" + tVol:         "",
		"/run/cw/mounts/..":             "",
		"/run/cw/mounts/-x":             "",
	} {
		got, ok := l.VolumeIDOf(mp)
		if got != want || ok != (want != "") {
			t.Errorf("VolumeIDOf(%s) = %q %v, want %q", mp, got, ok, want)
		}
	}
	if !IsUUID(tVol) || IsUUID("my-volume") || IsUUID(strings.ToUpper(tVol)+"x") {
		t.Error("IsUUID")
	}
	if ValidVolumeID(strings.Repeat("a", 65)) || ValidVolumeID("a/b") || !ValidVolumeID("vol-1") {
		t.Error("ValidVolumeID")
	}
}
