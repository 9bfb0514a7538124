package reconciler

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// Policy is what an operator decides: whether to act at all, how sure the
// reconciler must be first, and how much it may do per run. The zero value is
// invalid; start from DefaultPolicy.
type Policy struct {
	// Apply executes actions; without it every action stays planned only
	// (dry-run). Findings are reported either way.
	Apply bool `json:"apply"`
	// MinSightings is how many consecutive runs must see a discrepancy
	// before it is acted on (N).
	MinSightings int `json:"min_sightings"`
	// MinAge is how long a discrepancy must have been seen, from its first
	// sighting, before it is acted on (T).
	MinAge time.Duration `json:"min_age"`
	// MaxActions caps the actions of one run (M); the rest are deferred.
	MaxActions int `json:"max_actions"`
	// MountBases are the directories under which stale mounts may be
	// unmounted (e.g. Nova's nfs_mount_point_base /var/lib/nova/mnt).
	// Absolute and clean; a mount is under a base only when strictly below it.
	MountBases []string `json:"mount_bases,omitempty"`
	// NovaDetachMissingDisk plans a Nova detach for "mapping and
	// attachment present but disk missing". Off by default: report only.
	NovaDetachMissingDisk bool `json:"nova_detach_missing_disk,omitempty"`
	// ActWithoutNova allows libvirt and Cinder actions when Nova is not
	// configured (Keystone-less Cinder). The instance gate (no task state,
	// no migration) then cannot be checked. Off by default.
	ActWithoutNova bool `json:"act_without_nova,omitempty"`
}

// DefaultPolicy is dry-run, three sightings over at least 30 minutes, at
// most 5 actions per run, no mount bases.
func DefaultPolicy() Policy {
	return Policy{MinSightings: 3, MinAge: 30 * time.Minute, MaxActions: 5}
}

// ErrInvalidPolicy is wrapped by every Policy.Validate error.
var ErrInvalidPolicy = errors.New("invalid reconciler policy")

// Validate checks the policy once, before anything runs, with a specific
// message per field.
func (p Policy) Validate() error {
	var errs []error
	if p.MinSightings < 1 {
		errs = append(errs, fmt.Errorf("min sightings is %d; it must be at least 1", p.MinSightings))
	}
	if p.MinAge < 0 {
		errs = append(errs, fmt.Errorf("min age is %s; it must not be negative", p.MinAge))
	}
	if p.MaxActions < 0 {
		errs = append(errs, fmt.Errorf("max actions is %d; it must not be negative (0 means report only)", p.MaxActions))
	}
	for _, b := range p.MountBases {
		if !filepath.IsAbs(b) || filepath.Clean(b) != b || b == "/" {
			errs = append(errs, fmt.Errorf("mount base %q must be an absolute, clean path other than /", b))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidPolicy, errors.Join(errs...))
	}
	return nil
}

// underBase reports whether mountpoint is strictly below one of the bases.
func (p Policy) underBase(mountpoint string) bool {
	mp := filepath.Clean(mountpoint)
	for _, b := range p.MountBases {
		if strings.HasPrefix(mp, b+"/") {
			return true
		}
	}
	return false
}
