package volumedriver

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/docker/go-plugins-helpers/volume"
)

func TestPluginErr(t *testing.T) {
	if PluginErr(nil) != "" {
		t.Error("nil error gives a non-empty Err")
	}
	wrapped := fmt.Errorf("volume %s: attach to instance %s: %w", tVol, tInst, errors.New("Nova said\n409  conflict"))
	if got, want := PluginErr(wrapped), "volume "+tVol+": attach to instance "+tInst+": Nova said; 409 conflict"; got != want {
		t.Errorf("PluginErr = %q, want %q", got, want)
	}
	long := errors.New(strings.Repeat("x", 5000))
	if got := PluginErr(long); len(got) != MaxErrLen || !strings.HasSuffix(got, "...") {
		t.Errorf("long error: %d bytes", len(got))
	}
	if ErrorResponse(wrapped).Err != PluginErr(wrapped) {
		t.Error("ErrorResponse differs from PluginErr")
	}
}

func TestErrorClass(t *testing.T) {
	cases := map[string]error{
		"ok":                  nil,
		"invalid_name":        ValidateName("a"),
		"unknown_option":      &OptionError{Class: ErrUnknownOption},
		"invalid_option":      &OptionError{Class: ErrInvalidOption},
		"conflicting_options": &OptionError{Class: ErrConflictingOptions},
		"malformed_request":   ValidateMountID(""),
		"in_use":              fmt.Errorf("remove: %w", &InUseError{VolumeID: tVol, MountIDs: []string{"m1"}}),
		"canceled":            fmt.Errorf("x: %w", ErrMountCanceled),
		"held_elsewhere":      &HeldElsewhereError{Name: "v1", VolumeID: tVol, Instance: tOther},
		"not_found":           fmt.Errorf("source: %w", ErrNoSuchVolume),
		"ambiguous_name":      fmt.Errorf("source: %w", ErrAmbiguousName),
		"unusable":            fmt.Errorf("x: %w", ErrVolumeUnusable),
		"illegal_transition":  &TransitionError{VolumeID: tVol, Phase: PhaseMounted, Event: "MountDone"},
		"error":               fmt.Errorf("attach: %w", context.DeadlineExceeded),
	}
	for want, err := range cases {
		if got := ErrorClass(err); got != want {
			t.Errorf("ErrorClass(%v) = %s, want %s", err, got, want)
		}
		if user := IsUserError(err); user != (want == "invalid_name" || want == "unknown_option" ||
			want == "invalid_option" || want == "conflicting_options" || want == "malformed_request") {
			t.Errorf("IsUserError(%v) = %v", err, user)
		}
	}
}

func TestCapabilitiesGlobal(t *testing.T) {
	if got := Capabilities(); got.Capabilities.Scope != "global" {
		t.Errorf("scope %q", got.Capabilities.Scope)
	}
}

func TestDockerVolume(t *testing.T) {
	c := &CinderVolume{
		ID: tVol, Name: "v1", Status: "in-use", SizeGiB: 1, VolumeType: "ssd", AvailabilityZone: "nova",
		CreatedAt: time.Date(2026, 11, 25, 20, 1, 2, 0, time.UTC),
		Attachments: []CinderAttachment{
			{ServerID: "inst-b", HostName: "cmp-2"},
			{ServerID: tInst, HostName: "cmp-1", Device: "/dev/vdb"},
		},
		Metadata: map[string]string{MetaManaged: "true", MetaFSType: "xfs"},
	}
	local := st(PhaseMounted, func(s *VolumeState) { s.Refs = []string{"m1", "m2"} })
	got := DockerVolume(c, &local)
	want := &volume.Volume{
		Name: "v1", Mountpoint: tData, CreatedAt: "2026-11-25T20:01:02Z",
		Status: map[string]any{
			StatusCinderStatus: "in-use", StatusVolumeID: tVol, StatusSize: 1, StatusType: "ssd",
			StatusAvailabilityZone: "nova",
			StatusAttachments: []map[string]string{
				{"instance": tInst, "host": "cmp-1"}, {"instance": "inst-b", "host": "cmp-2"},
			},
			StatusManaged: true, StatusFSType: "xfs",
			StatusNodePhase: "mounted", StatusDevice: tDev, StatusMountpoint: tData, StatusMountIDs: 2,
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("DockerVolume =\n %#v\nwant\n %#v", got, want)
	}
	// A volume this node does not hold, never seen here: Cinder's view only.
	bare := DockerVolume(&CinderVolume{ID: tVol, Name: "v1", Status: "available", SizeGiB: 2}, nil)
	if bare.Mountpoint != "" || len(bare.Status) != 4 || bare.Status[StatusManaged] != false {
		t.Errorf("bare volume: %#v", bare)
	}
	// Not mounted: no mountpoint, the last error shown.
	failed := st(PhaseDetached, func(s *VolumeState) { s.LastError = "volume x: attach: boom" })
	v := DockerVolume(c, &failed)
	if v.Mountpoint != "" || v.Status[StatusLastError] != "volume x: attach: boom" || v.Status[StatusNodePhase] != nil {
		t.Errorf("failed volume: %#v", v)
	}
}
