package volumedriver

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// FSType is the filesystem put on a blank volume.
type FSType string

// Supported filesystems.
const (
	FSExt4 FSType = "ext4"
	FSXFS  FSType = "xfs"
)

// Valid reports whether t is a supported filesystem.
func (t FSType) Valid() bool { return t == FSExt4 || t == FSXFS }

// PreemptMode is the takeover setting of a volume (issue 4): what Mount does
// when the volume is attached to another instance.
type PreemptMode int

const (
	// PreemptDefault: not set on the volume; the global setting applies.
	PreemptDefault PreemptMode = iota
	// PreemptOff: Mount fails, naming the holder and how to enable takeover.
	PreemptOff
	// PreemptOn: cooperative takeover; refused while a container on the
	// holder still uses the volume.
	PreemptOn
	// PreemptForce: takeover even while a container on the holder uses it.
	PreemptForce
)

func (m PreemptMode) String() string {
	switch m {
	case PreemptDefault:
		return "default"
	case PreemptOff:
		return "off"
	case PreemptOn:
		return "on"
	case PreemptForce:
		return "force"
	}
	return fmt.Sprintf("PreemptMode(%d)", int(m))
}

// Resolve returns the mode in effect: m itself, or global when m is
// PreemptDefault. A global of PreemptDefault counts as PreemptOff (the
// issue's default).
func (m PreemptMode) Resolve(global PreemptMode) PreemptMode {
	if m != PreemptDefault {
		return m
	}
	if global == PreemptDefault {
		return PreemptOff
	}
	return global
}

// Create option keys (`docker volume create -o key=value`).
const (
	OptSize             = "size"
	OptType             = "type"
	OptAvailabilityZone = "availability_zone"
	OptFSType           = "fstype"
	OptSnapshot         = "snapshot"
	OptSource           = "source"
	OptDescription      = "description"
	OptPreempt          = "preempt"
	OptPreemptForce     = "preempt_force"
)

// ValidOptions returns the option keys Create accepts, sorted.
func ValidOptions() []string {
	keys := []string{OptSize, OptType, OptAvailabilityZone, OptFSType, OptSnapshot,
		OptSource, OptDescription, OptPreempt, OptPreemptForce}
	sort.Strings(keys)
	return keys
}

// MaxFieldLen is Cinder's limit on name-like fields (type, zone, snapshot or
// volume names, description).
const MaxFieldLen = 255

// OptionPolicy holds the configurable defaults and limits for Create options.
// Validate it once at start-up.
type OptionPolicy struct {
	DefaultSizeGiB int    // size when `size` is not given (and no snapshot/source)
	MaxSizeGiB     int    // largest size accepted
	DefaultFSType  FSType // filesystem when `fstype` is not given
}

// DefaultOptionPolicy is used when the operator configures nothing.
func DefaultOptionPolicy() OptionPolicy {
	return OptionPolicy{DefaultSizeGiB: 10, MaxSizeGiB: 1024, DefaultFSType: FSExt4}
}

// Validate checks the policy itself (configuration errors, not user input).
func (p OptionPolicy) Validate() error {
	switch {
	case p.DefaultSizeGiB < 1:
		return fmt.Errorf("default volume size %d GiB: must be at least 1", p.DefaultSizeGiB)
	case p.MaxSizeGiB < p.DefaultSizeGiB:
		return fmt.Errorf("maximum volume size %d GiB: must be at least the default size %d GiB", p.MaxSizeGiB, p.DefaultSizeGiB)
	case !p.DefaultFSType.Valid():
		return fmt.Errorf("default filesystem %q: allowed values: ext4, xfs", p.DefaultFSType)
	}
	return nil
}

// CreateOptions is the validated form of Create's `-o` options.
type CreateOptions struct {
	// SizeGiB is the size to request. 0 only when Snapshot or Source is set
	// and `size` was not given: Cinder then uses the source's size.
	SizeGiB int
	// Type is the Cinder volume type; "" means Cinder's default type.
	Type string
	// AvailabilityZone; "" means the instance's own zone (the caller fills it
	// in from the instance metadata).
	AvailabilityZone string
	// FSType is the filesystem made if the device turns out blank.
	FSType FSType
	// Snapshot is a snapshot id or name to create from; "" for none.
	Snapshot string
	// Source is a volume id or name to clone; "" for none.
	Source string
	// Description is passed to Cinder as is.
	Description string
	// Preempt is the per-volume takeover setting.
	Preempt PreemptMode
}

// ParseCreateOptions validates Docker's Create options against the policy.
//
// Rules: keys are case-sensitive; values are not trimmed. size is a whole
// number of GiB (digits only), 1..MaxSizeGiB. fstype is ext4 or xfs. snapshot
// and source exclude each other. preempt and preempt_force take true, false,
// yes, no, 1 or 0 (case-insensitive); preempt_force=true implies preempt=true
// and contradicts an explicit preempt=false. Errors are *OptionError; with
// several problems the first in sorted key order is reported (all unknown
// keys are reported together, before any value problem).
func ParseCreateOptions(opts map[string]string, p OptionPolicy) (CreateOptions, error) {
	valid := ValidOptions()
	var unknown []string
	for k := range opts {
		if !contains(valid, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return CreateOptions{}, &OptionError{
			Class:  ErrUnknownOption,
			Option: unknown,
			Reason: "valid options: " + strings.Join(valid, ", "),
		}
	}

	o := CreateOptions{FSType: p.DefaultFSType}
	if o.FSType == "" {
		o.FSType = FSExt4
	}
	var preempt, force *bool
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	sizeGiven := false
	for _, k := range keys {
		v := opts[k]
		bad := func(reason string) error {
			return &OptionError{Class: ErrInvalidOption, Option: []string{k}, Value: v, Reason: reason}
		}
		if v == "" && k != OptDescription {
			return CreateOptions{}, bad("a value is required")
		}
		switch k {
		case OptSize:
			n, reason := parseSize(v, p.MaxSizeGiB)
			if reason != "" {
				return CreateOptions{}, bad(reason)
			}
			o.SizeGiB, sizeGiven = n, true
		case OptFSType:
			t := FSType(v)
			if !t.Valid() {
				return CreateOptions{}, bad("allowed values: ext4, xfs")
			}
			o.FSType = t
		case OptType, OptAvailabilityZone, OptSnapshot, OptSource, OptDescription:
			if reason := checkField(v); reason != "" {
				return CreateOptions{}, bad(reason)
			}
			switch k {
			case OptType:
				o.Type = v
			case OptAvailabilityZone:
				o.AvailabilityZone = v
			case OptSnapshot:
				o.Snapshot = v
			case OptSource:
				o.Source = v
			case OptDescription:
				o.Description = v
			}
		case OptPreempt, OptPreemptForce:
			b, ok := parseBoolish(v)
			if !ok {
				return CreateOptions{}, bad("allowed values: true, false, yes, no, 1, 0")
			}
			if k == OptPreempt {
				preempt = &b
			} else {
				force = &b
			}
		}
	}
	if o.Snapshot != "" && o.Source != "" {
		return CreateOptions{}, &OptionError{Class: ErrConflictingOptions, Option: []string{OptSnapshot, OptSource},
			Reason: "options snapshot and source are mutually exclusive: a volume is created from one or the other"}
	}
	if force != nil && *force && preempt != nil && !*preempt {
		return CreateOptions{}, &OptionError{Class: ErrConflictingOptions, Option: []string{OptPreempt, OptPreemptForce},
			Reason: "options preempt=" + opts[OptPreempt] + " and preempt_force=" + opts[OptPreemptForce] +
				" contradict each other: a forced takeover needs preempt enabled"}
	}
	switch {
	case force != nil && *force:
		o.Preempt = PreemptForce
	case preempt != nil && *preempt:
		o.Preempt = PreemptOn
	case preempt != nil:
		o.Preempt = PreemptOff
	}
	if !sizeGiven && o.Snapshot == "" && o.Source == "" {
		o.SizeGiB = p.DefaultSizeGiB
	}
	return o, nil
}

// parseSize returns the size, or a reason why v is not a valid size.
func parseSize(v string, max int) (int, string) {
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, "not a whole number of GiB (example: size=10)"
		}
	}
	n, err := strconv.Atoi(v)
	if err != nil || n > max {
		return 0, fmt.Sprintf("exceeds the maximum of %d GiB", max)
	}
	if n < 1 {
		return 0, "must be at least 1 (GiB)"
	}
	return n, ""
}

func checkField(v string) string {
	if len(v) > MaxFieldLen {
		return fmt.Sprintf("%d characters long, Cinder allows at most %d", len(v), MaxFieldLen)
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f {
			return "control characters are not allowed"
		}
	}
	return ""
}

// parseBoolish accepts true/false/yes/no/1/0, case-insensitive.
func parseBoolish(v string) (bool, bool) {
	switch strings.ToLower(v) {
	case "true", "yes", "1":
		return true, true
	case "false", "no", "0":
		return false, true
	}
	return false, false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
