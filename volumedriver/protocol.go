package volumedriver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/docker/go-plugins-helpers/volume"
)

// The plugin-socket edge. Requests are decoded into go-plugins-helpers'
// types with the same decoder it uses (json.Decoder.Decode: unknown fields
// ignored, trailing data after the first value ignored), then checked, so
// the handlers receive valid names, mount ids and options only. Protocol
// errors are made here and nowhere else.

// Docker volume plugin protocol paths (VolumeDriver API v1).
const (
	PathActivate     = "/Plugin.Activate"
	PathCreate       = "/VolumeDriver.Create"
	PathRemove       = "/VolumeDriver.Remove"
	PathMount        = "/VolumeDriver.Mount"
	PathUnmount      = "/VolumeDriver.Unmount"
	PathPath         = "/VolumeDriver.Path"
	PathGet          = "/VolumeDriver.Get"
	PathList         = "/VolumeDriver.List"
	PathCapabilities = "/VolumeDriver.Capabilities"
)

// MaxMountIDLen bounds Docker's mount id (Docker sends 64 hex digits).
const MaxMountIDLen = 128

func decodeBody(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return &RequestError{Reason: "empty body, expected a JSON object"}
	}
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(v); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return &RequestError{Reason: "truncated JSON body", Err: err}
		}
		return &RequestError{Reason: "cannot decode the JSON body", Err: err}
	}
	return nil
}

// ValidateMountID checks Docker's mount id: present, at most MaxMountIDLen
// printable ASCII characters without spaces.
func ValidateMountID(id string) error {
	if id == "" {
		return &RequestError{Reason: "mount ID is required"}
	}
	if len(id) > MaxMountIDLen {
		return &RequestError{Reason: fmt.Sprintf("mount ID is %d characters long, at most %d are accepted", len(id), MaxMountIDLen)}
	}
	for _, r := range id {
		if r <= ' ' || r >= 0x7f {
			return &RequestError{Reason: fmt.Sprintf("mount ID %q contains %q: only printable ASCII without spaces is accepted", id, r)}
		}
	}
	return nil
}

// DecodeCreate decodes and checks a VolumeDriver.Create body: the name, then
// the options against the policy.
func DecodeCreate(body []byte, p OptionPolicy) (volume.CreateRequest, CreateOptions, error) {
	var req volume.CreateRequest
	if err := decodeBody(body, &req); err != nil {
		return volume.CreateRequest{}, CreateOptions{}, err
	}
	if err := ValidateName(req.Name); err != nil {
		return volume.CreateRequest{}, CreateOptions{}, err
	}
	o, err := ParseCreateOptions(req.Options, p)
	if err != nil {
		return volume.CreateRequest{}, CreateOptions{}, err
	}
	return req, o, nil
}

// DecodeMount decodes and checks a VolumeDriver.Mount body.
func DecodeMount(body []byte) (volume.MountRequest, error) {
	var req volume.MountRequest
	if err := decodeBody(body, &req); err != nil {
		return volume.MountRequest{}, err
	}
	if err := ValidateName(req.Name); err != nil {
		return volume.MountRequest{}, err
	}
	if err := ValidateMountID(req.ID); err != nil {
		return volume.MountRequest{}, err
	}
	return req, nil
}

// DecodeUnmount decodes and checks a VolumeDriver.Unmount body.
func DecodeUnmount(body []byte) (volume.UnmountRequest, error) {
	var req volume.UnmountRequest
	if err := decodeBody(body, &req); err != nil {
		return volume.UnmountRequest{}, err
	}
	if err := ValidateName(req.Name); err != nil {
		return volume.UnmountRequest{}, err
	}
	if err := ValidateMountID(req.ID); err != nil {
		return volume.UnmountRequest{}, err
	}
	return req, nil
}

// DecodeRemove decodes and checks a VolumeDriver.Remove body.
func DecodeRemove(body []byte) (volume.RemoveRequest, error) {
	var req volume.RemoveRequest
	if err := decodeNamed(body, &req, &req.Name); err != nil {
		return volume.RemoveRequest{}, err
	}
	return req, nil
}

// DecodeGet decodes and checks a VolumeDriver.Get body.
func DecodeGet(body []byte) (volume.GetRequest, error) {
	var req volume.GetRequest
	if err := decodeNamed(body, &req, &req.Name); err != nil {
		return volume.GetRequest{}, err
	}
	return req, nil
}

// DecodePath decodes and checks a VolumeDriver.Path body.
func DecodePath(body []byte) (volume.PathRequest, error) {
	var req volume.PathRequest
	if err := decodeNamed(body, &req, &req.Name); err != nil {
		return volume.PathRequest{}, err
	}
	return req, nil
}

func decodeNamed(body []byte, req any, name *string) error {
	if err := decodeBody(body, req); err != nil {
		return err
	}
	return ValidateName(*name)
}

// MaxErrLen bounds the Err string sent to Docker.
const MaxErrLen = 2048

// PluginErr is the Err string Docker gets for err: the error's own message
// (this package's messages are written for the operator), on one line,
// at most MaxErrLen bytes. Docker prints it after "VolumeDriver.<Op>: ".
func PluginErr(err error) string {
	if err == nil {
		return ""
	}
	msg := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
	if len(msg) > MaxErrLen {
		msg = msg[:MaxErrLen-3] + "..."
	}
	return msg
}

// ErrorResponse is the protocol body for err.
func ErrorResponse(err error) *volume.ErrorResponse { return volume.NewErrorResponse(PluginErr(err)) }

// ErrorClass is a stable label for err, for metrics (`result`) and logs:
// the class of a user's mistake, or "error" for anything else.
func ErrorClass(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrInvalidName):
		return "invalid_name"
	case errors.Is(err, ErrUnknownOption):
		return "unknown_option"
	case errors.Is(err, ErrInvalidOption):
		return "invalid_option"
	case errors.Is(err, ErrConflictingOptions):
		return "conflicting_options"
	case errors.Is(err, ErrMalformedRequest):
		return "malformed_request"
	case errors.Is(err, ErrInUse):
		return "in_use"
	case errors.Is(err, ErrMountCanceled):
		return "canceled"
	case errors.Is(err, ErrHeldElsewhere):
		return "held_elsewhere"
	case errors.Is(err, ErrNoSuchVolume):
		return "not_found"
	case errors.Is(err, ErrAmbiguousName):
		return "ambiguous_name"
	case errors.Is(err, ErrVolumeUnusable):
		return "unusable"
	case errors.Is(err, ErrIllegalTransition):
		return "illegal_transition"
	}
	return "error"
}

// IsUserError reports whether err is the caller's mistake (bad name,
// option or request) rather than a failure of the plugin or the cloud.
func IsUserError(err error) bool {
	return errors.Is(err, ErrInvalidName) || errors.Is(err, ErrUnknownOption) ||
		errors.Is(err, ErrInvalidOption) || errors.Is(err, ErrConflictingOptions) ||
		errors.Is(err, ErrMalformedRequest)
}

// Capabilities is the Capabilities answer: a Cinder volume is reachable from
// every node, so the scope is global.
func Capabilities() *volume.CapabilitiesResponse {
	return &volume.CapabilitiesResponse{Capabilities: volume.Capability{Scope: "global"}}
}

// Status keys shown by `docker volume inspect` (Get/List).
const (
	StatusCinderStatus     = "status"
	StatusVolumeID         = "volume_id"
	StatusSize             = "size_gib"
	StatusType             = "type"
	StatusAvailabilityZone = "availability_zone"
	StatusAttachments      = "attachments"
	StatusManaged          = "managed"
	StatusFSType           = "fstype"
	StatusNodePhase        = "node_phase"
	StatusDevice           = "device"
	StatusMountpoint       = "mountpoint"
	StatusMountIDs         = "mount_ids"
	StatusLastError        = "last_error"
)

// DockerVolume is the Get/List view of a volume: Cinder's details, and this
// node's (local may be nil when this node does not hold the volume). The
// Mountpoint is set only while mounted here.
func DockerVolume(c *CinderVolume, local *VolumeState) *volume.Volume {
	v := &volume.Volume{Name: c.Name, Status: map[string]any{
		StatusCinderStatus: c.Status,
		StatusVolumeID:     c.ID,
		StatusSize:         c.SizeGiB,
	}}
	if !c.CreatedAt.IsZero() {
		v.CreatedAt = c.CreatedAt.UTC().Format(time.RFC3339)
	}
	if c.VolumeType != "" {
		v.Status[StatusType] = c.VolumeType
	}
	if c.AvailabilityZone != "" {
		v.Status[StatusAvailabilityZone] = c.AvailabilityZone
	}
	if len(c.Attachments) > 0 {
		atts := make([]map[string]string, 0, len(c.Attachments))
		sorted := slices.Clone(c.Attachments)
		slices.SortFunc(sorted, func(a, b CinderAttachment) int { return strings.Compare(a.ServerID, b.ServerID) })
		for _, a := range sorted {
			atts = append(atts, map[string]string{"instance": a.ServerID, "host": a.HostName})
		}
		v.Status[StatusAttachments] = atts
	}
	if set, err := SettingsFromMetadata(c.Metadata, OptionPolicy{DefaultFSType: FSExt4}); err == nil {
		v.Status[StatusManaged] = set.Managed
		if set.FSTypeRecorded {
			v.Status[StatusFSType] = string(set.FSType)
		}
	}
	if local != nil && local.Phase != PhaseDetached {
		v.Status[StatusNodePhase] = local.Phase.String()
		if local.Device != "" {
			v.Status[StatusDevice] = local.Device
		}
		if local.Phase == PhaseMounted {
			v.Mountpoint = local.DataDir()
			v.Status[StatusMountpoint] = local.DataDir()
			v.Status[StatusMountIDs] = len(local.Refs)
		}
	}
	if local != nil && local.LastError != "" {
		v.Status[StatusLastError] = local.LastError
	}
	return v
}
