package volumedriver

import (
	"context"
	"errors"
	"fmt"

	"github.com/cinderwarden/cinderwarden/openstack"
)

// Create's `-o snapshot=` and `-o source=`: a reference (id or name) to a
// Cinder snapshot or volume, resolved before the create request so that an
// unknown or ambiguous name fails with a message naming the option and
// every candidate id, and Cinder is only ever asked with an id. The size
// is left to Cinder (the source's) unless `size` was given.

// setCreateSource resolves o.Snapshot or o.Source into co.
func (d *Driver) setCreateSource(ctx context.Context, name string, o CreateOptions, co *openstack.CreateVolumeOpts) error {
	if o.Snapshot != "" {
		s, err := d.findSnapshot(ctx, o.Snapshot)
		if err != nil {
			return fmt.Errorf("create %s: option %s=%s: %w", name, OptSnapshot, o.Snapshot, err)
		}
		co.SnapshotID = s.ID
	}
	if o.Source != "" {
		v, err := d.findVolume(ctx, o.Source)
		if err != nil {
			return fmt.Errorf("create %s: option %s=%s: %w", name, OptSource, o.Source, err)
		}
		co.SourceVolID = v.ID
	}
	return nil
}

// findSnapshot resolves a reference by id (a UUID) or name, like
// findVolume: an exact id wins, otherwise exactly one snapshot must carry
// the name (ErrNoSuchVolume / ErrAmbiguousName naming every id).
func (d *Driver) findSnapshot(ctx context.Context, ref string) (*openstack.Snapshot, error) {
	if IsUUID(ref) {
		s, err := d.cloud.GetSnapshot(ctx, ref)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, openstack.ErrNotFound) {
			return nil, err
		}
	}
	ss, err := d.cloud.ListSnapshots(ctx, openstack.SnapshotFilter{Name: ref})
	if err != nil {
		return nil, err
	}
	cands := make([]Candidate, 0, len(ss))
	for _, s := range ss {
		cands = append(cands, Candidate{ID: s.ID, Name: s.Name})
	}
	id, err := PickOne("snapshot", ref, cands)
	if err != nil {
		return nil, err
	}
	for i := range ss {
		if ss[i].ID == id {
			return &ss[i], nil
		}
	}
	return nil, fmt.Errorf("no snapshot has the id or name %q: %w", ref, ErrNoSuchVolume)
}
