package openstack

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/snapshots"
)

// Snapshot is a Cinder volume snapshot as cinderwarden needs it.
type Snapshot struct {
	ID          string
	Name        string
	Description string
	VolumeID    string // the volume it was taken of
	Status      string // creating, available, deleting, error, error_deleting, ...
	// SizeGiB is the volume's size when the snapshot was taken: the
	// smallest volume that can be created from it.
	SizeGiB   int
	Metadata  map[string]string // never nil
	ProjectID string
	CreatedAt time.Time
	UpdatedAt time.Time
}

func snapshotFrom(g snapshots.Snapshot) Snapshot {
	s := Snapshot{
		ID: g.ID, Name: g.Name, Description: g.Description, VolumeID: g.VolumeID, Status: g.Status,
		SizeGiB: g.Size, Metadata: g.Metadata, ProjectID: g.ProjectID, CreatedAt: g.CreatedAt, UpdatedAt: g.UpdatedAt,
	}
	if s.Metadata == nil {
		s.Metadata = map[string]string{}
	}
	return s
}

// CreateSnapshotOpts describe a new snapshot of VolumeID. Force snapshots
// an in-use volume (below microversion 3.66 Cinder refuses otherwise).
type CreateSnapshotOpts struct {
	VolumeID    string
	Name        string
	Description string
	Force       bool
	Metadata    map[string]string
}

// CreateSnapshot asks Cinder for a snapshot and returns it as created
// (status "creating"); wait with WaitSnapshotAvailable.
func (c *Client) CreateSnapshot(ctx context.Context, o CreateSnapshotOpts) (*Snapshot, error) {
	ctx = withOp(ctx, serviceVolume, "snapshot_create")
	g, err := snapshots.Create(ctx, c.volume, snapshots.CreateOpts{
		VolumeID: o.VolumeID, Name: o.Name, Description: o.Description, Force: o.Force, Metadata: o.Metadata,
	}).Extract()
	if err != nil {
		return nil, fmt.Errorf("volume %s: create snapshot %q: %w", o.VolumeID, o.Name, apiError(serviceVolume, "snapshot_create", err))
	}
	s := snapshotFrom(*g)
	return &s, nil
}

// GetSnapshot returns the snapshot; errors.Is(err, ErrNotFound) when it
// does not exist.
func (c *Client) GetSnapshot(ctx context.Context, id string) (*Snapshot, error) {
	ctx = withOp(ctx, serviceVolume, "snapshot_get")
	g, err := snapshots.Get(ctx, c.volume, id).Extract()
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: get: %w", id, apiError(serviceVolume, "snapshot_get", err))
	}
	s := snapshotFrom(*g)
	return &s, nil
}

// DeleteSnapshot asks Cinder to delete the snapshot (202; wait with
// WaitSnapshotDeleted).
func (c *Client) DeleteSnapshot(ctx context.Context, id string) error {
	ctx = withOp(ctx, serviceVolume, "snapshot_delete")
	if err := snapshots.Delete(ctx, c.volume, id).ExtractErr(); err != nil {
		return fmt.Errorf("snapshot %s: delete: %w", id, apiError(serviceVolume, "snapshot_delete", err))
	}
	return nil
}

// SnapshotFilter selects snapshots in a listing. Empty fields do not
// filter.
type SnapshotFilter struct {
	Name     string
	Status   string
	VolumeID string
	// AllTenants lists every project's snapshots (admin only).
	AllTenants bool
	// PageSize is the limit per request (0: the server's maximum).
	PageSize int
}

// ListSnapshots returns every matching snapshot, walking all pages. Any
// failure, on any page, returns nil and the error: never a partial list.
func (c *Client) ListSnapshots(ctx context.Context, f SnapshotFilter) ([]Snapshot, error) {
	ctx = withOp(ctx, serviceVolume, "snapshot_list")
	q, err := gophercloud.BuildQueryString(snapshots.ListOpts{
		Name: f.Name, Status: f.Status, VolumeID: f.VolumeID, AllTenants: f.AllTenants, Limit: f.PageSize,
	})
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	ss, err := collect(ctx, c.volume, c.volume.ServiceURL("snapshots", "detail")+q.String(), "snapshots", snapshotFrom)
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	return ss, nil
}

// ErrSnapshotState: a wait stopped because the snapshot went to an error
// status.
var ErrSnapshotState = errors.New("snapshot in a failed state")

// WaitSnapshotAvailable polls (with the client's backoff) until the
// snapshot is available; an error* status fails the wait.
func (c *Client) WaitSnapshotAvailable(ctx context.Context, id string) (*Snapshot, error) {
	var last *Snapshot
	err := c.backoff.Poll(ctx, func(ctx context.Context) (bool, error) {
		s, err := c.GetSnapshot(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				return false, nil
			}
			return false, err
		}
		last = s
		if strings.HasPrefix(s.Status, "error") {
			return false, fmt.Errorf("snapshot %s: status %q: %w", id, s.Status, ErrSnapshotState)
		}
		return s.Status == "available", nil
	})
	if err != nil {
		status := "unknown"
		if last != nil {
			status = last.Status
		}
		return last, fmt.Errorf("snapshot %s: wait until available (last status %s): %w", id, status, err)
	}
	return last, nil
}

// WaitSnapshotDeleted polls until the snapshot is gone (ErrNotFound).
func (c *Client) WaitSnapshotDeleted(ctx context.Context, id string) error {
	err := c.backoff.Poll(ctx, func(ctx context.Context) (bool, error) {
		_, err := c.GetSnapshot(ctx, id)
		if errors.Is(err, ErrNotFound) {
			return true, nil
		}
		if err != nil && ctx.Err() == nil {
			return false, err
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("snapshot %s: wait until deleted: %w", id, err)
	}
	return nil
}
