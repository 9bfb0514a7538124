package volumedriver

import (
	"fmt"
	"strconv"
	"time"
)

// Metadata keys the plugin writes on Cinder volumes. Cinder limits keys and
// values to 255 characters; all values here are short.
const (
	// MetaManaged = "true" marks a volume the plugin created. Only managed
	// volumes are deleted by Remove (unless configured otherwise).
	MetaManaged = "cinderwarden.managed"
	// MetaFSType records the filesystem chosen at create time.
	MetaFSType = "cinderwarden.fstype"
	// MetaPreempt = "true"/"false": the per-volume takeover setting; absent
	// means the global setting applies.
	MetaPreempt = "cinderwarden.preempt"
	// MetaPreemptForce = "true": takeover even while the holder uses it.
	MetaPreemptForce = "cinderwarden.preempt_force"
	// MetaGeneration is the fencing token of the current holder: each
	// attach by a plugin writes a larger value first (issue 4).
	MetaGeneration = "cinderwarden.generation"

	// Takeover request written by the taker (issue 4).
	MetaTakeoverTaker       = "cinderwarden.takeover.taker"
	MetaTakeoverRequestedAt = "cinderwarden.takeover.requested_at"
	MetaTakeoverToken       = "cinderwarden.takeover.token"
	MetaTakeoverForce       = "cinderwarden.takeover.force"
)

// MetadataError is cinderwarden.* metadata that cannot be interpreted.
// Unwraps to ErrInvalidMetadata.
type MetadataError struct {
	Key, Value, Reason string
}

func (e *MetadataError) Error() string {
	return fmt.Sprintf("metadata %s=%q: %s", e.Key, e.Value, e.Reason)
}

func (e *MetadataError) Unwrap() error { return ErrInvalidMetadata }

// ManagedMetadata is the metadata Create puts on a volume it creates.
func ManagedMetadata(o CreateOptions) map[string]string {
	md := map[string]string{
		MetaManaged: "true",
		MetaFSType:  string(o.FSType),
	}
	switch o.Preempt {
	case PreemptOff:
		md[MetaPreempt] = "false"
	case PreemptOn:
		md[MetaPreempt] = "true"
	case PreemptForce:
		md[MetaPreempt] = "true"
		md[MetaPreemptForce] = "true"
	}
	return md
}

// VolumeSettings is what the plugin knows about a Cinder volume from its
// metadata: its own volumes carry everything, an adopted volume (created
// outside the plugin, found by name) carries nothing and gets defaults.
type VolumeSettings struct {
	// Managed: the plugin created the volume (MetaManaged = "true").
	Managed bool
	// FSType to make if the device is blank: the recorded one, else the
	// policy default.
	FSType FSType
	// FSTypeRecorded: FSType came from the metadata.
	FSTypeRecorded bool
	// Preempt is the per-volume takeover setting (PreemptDefault if unset).
	Preempt PreemptMode
	// Generation is the fencing token of the last holder (0 if none).
	Generation uint64
}

// SettingsFromMetadata recovers a volume's settings from its Cinder
// metadata. Keys the plugin does not own are ignored; a cinderwarden.* value
// it cannot interpret is an error (*MetadataError), never a silent default.
func SettingsFromMetadata(md map[string]string, p OptionPolicy) (VolumeSettings, error) {
	s := VolumeSettings{FSType: p.DefaultFSType}
	if s.FSType == "" {
		s.FSType = FSExt4
	}
	if v, ok := md[MetaManaged]; ok {
		b, valid := parseBoolish(v)
		if !valid {
			return VolumeSettings{}, &MetadataError{MetaManaged, v, "allowed values: true, false"}
		}
		s.Managed = b
	}
	if v, ok := md[MetaFSType]; ok {
		if !FSType(v).Valid() {
			return VolumeSettings{}, &MetadataError{MetaFSType, v, "allowed values: ext4, xfs"}
		}
		s.FSType, s.FSTypeRecorded = FSType(v), true
	}
	if v, ok := md[MetaPreempt]; ok {
		b, valid := parseBoolish(v)
		if !valid {
			return VolumeSettings{}, &MetadataError{MetaPreempt, v, "allowed values: true, false"}
		}
		s.Preempt = PreemptOff
		if b {
			s.Preempt = PreemptOn
		}
	}
	if v, ok := md[MetaPreemptForce]; ok {
		b, valid := parseBoolish(v)
		if !valid {
			return VolumeSettings{}, &MetadataError{MetaPreemptForce, v, "allowed values: true, false"}
		}
		if b {
			if s.Preempt == PreemptOff {
				return VolumeSettings{}, &MetadataError{MetaPreemptForce, v,
					"contradicts " + MetaPreempt + "=" + md[MetaPreempt]}
			}
			s.Preempt = PreemptForce
		}
	}
	if v, ok := md[MetaGeneration]; ok {
		g, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return VolumeSettings{}, &MetadataError{MetaGeneration, v, "not an unsigned integer"}
		}
		s.Generation = g
	}
	return s, nil
}

// MayDelete reports whether Remove may delete the Cinder volume: always for
// managed volumes, for adopted ones only when deleteUnmanaged is configured.
func (s VolumeSettings) MayDelete(deleteUnmanaged bool) bool {
	return s.Managed || deleteUnmanaged
}

// TakeoverRequest is what a taker writes into the volume's metadata to ask
// the holder to let go (issue 4).
type TakeoverRequest struct {
	Taker       string    // taker's instance id
	RequestedAt time.Time // when the request was written (UTC, second precision)
	Token       uint64    // fencing token: the generation the taker will attach with
	Force       bool      // take over even while a container on the holder uses it
}

// Metadata renders the request as Cinder metadata.
func (r TakeoverRequest) Metadata() map[string]string {
	return map[string]string{
		MetaTakeoverTaker:       r.Taker,
		MetaTakeoverRequestedAt: r.RequestedAt.UTC().Format(time.RFC3339),
		MetaTakeoverToken:       strconv.FormatUint(r.Token, 10),
		MetaTakeoverForce:       strconv.FormatBool(r.Force),
	}
}

// TakeoverKeys are the metadata keys of a takeover request (to delete once
// the handoff is done).
func TakeoverKeys() []string {
	return []string{MetaTakeoverForce, MetaTakeoverRequestedAt, MetaTakeoverTaker, MetaTakeoverToken}
}

// ParseTakeoverRequest reads a takeover request from metadata. ok is false
// when there is none (no taker key). A partial or unreadable request is a
// *MetadataError.
func ParseTakeoverRequest(md map[string]string) (r TakeoverRequest, ok bool, err error) {
	taker, present := md[MetaTakeoverTaker]
	if !present {
		return TakeoverRequest{}, false, nil
	}
	if taker == "" {
		return TakeoverRequest{}, false, &MetadataError{MetaTakeoverTaker, taker, "a taker instance id is required"}
	}
	r.Taker = taker
	at := md[MetaTakeoverRequestedAt]
	t, perr := time.Parse(time.RFC3339, at)
	if perr != nil {
		return TakeoverRequest{}, false, &MetadataError{MetaTakeoverRequestedAt, at, "not an RFC 3339 time"}
	}
	r.RequestedAt = t.UTC()
	tok := md[MetaTakeoverToken]
	r.Token, perr = strconv.ParseUint(tok, 10, 64)
	if perr != nil || r.Token == 0 {
		return TakeoverRequest{}, false, &MetadataError{MetaTakeoverToken, tok, "not a positive integer"}
	}
	if f, present := md[MetaTakeoverForce]; present {
		b, valid := parseBoolish(f)
		if !valid {
			return TakeoverRequest{}, false, &MetadataError{MetaTakeoverForce, f, "allowed values: true, false"}
		}
		r.Force = b
	}
	return r, true, nil
}
