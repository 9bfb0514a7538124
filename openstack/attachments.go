package openstack

import (
	"context"
	"fmt"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/attachments"
)

// Attachment is a Cinder attachment record (attachments API, 3.27+).
type Attachment struct {
	ID       string
	VolumeID string
	// InstanceID is the Nova server the attachment is for ("instance").
	InstanceID string
	// Status: reserved, attaching, attached, detaching, error_attaching,
	// error_detaching, ...
	Status     string
	AttachMode string // "rw", "ro", or Cinder's literal "null" when unset
	AttachedAt time.Time
	DetachedAt time.Time
}

func attachmentFrom(g attachments.Attachment) Attachment {
	return Attachment{
		ID: g.ID, VolumeID: g.VolumeID, InstanceID: g.Instance, Status: g.Status,
		AttachMode: g.AttachMode, AttachedAt: g.AttachedAt, DetachedAt: g.DetachedAt,
	}
}

// AttachmentFilter selects attachment records. Empty fields do not filter.
type AttachmentFilter struct {
	VolumeID   string
	InstanceID string
	Status     string
	// AllTenants lists every project's attachments (admin only).
	AllTenants bool
	PageSize   int
}

// ListAttachments returns every matching attachment record
// (/attachments/detail), walking all pages (attachments_links); any failure
// returns nil and the error.
func (c *Client) ListAttachments(ctx context.Context, f AttachmentFilter) ([]Attachment, error) {
	ctx = withOp(ctx, serviceVolume, "attachment_list")
	q, err := gophercloud.BuildQueryString(attachments.ListOpts{
		VolumeID: f.VolumeID, InstanceID: f.InstanceID, Status: f.Status, AllTenants: f.AllTenants, Limit: f.PageSize,
	})
	if err != nil {
		return nil, fmt.Errorf("list attachments: %w", err)
	}
	u := c.volume.ServiceURL("attachments", "detail") + q.String()
	as, err := collect(ctx, c.volume, u, "attachments", attachmentFrom)
	if err != nil {
		return nil, fmt.Errorf("list attachments %+v: %w", f, err)
	}
	return as, nil
}

// GetAttachment returns one attachment record.
func (c *Client) GetAttachment(ctx context.Context, id string) (*Attachment, error) {
	ctx = withOp(ctx, serviceVolume, "attachment_get")
	g, err := attachments.Get(ctx, c.volume, id).Extract()
	if err != nil {
		return nil, fmt.Errorf("attachment %s: get: %w", id, apiError(serviceVolume, "attachment_get", err))
	}
	a := attachmentFrom(*g)
	return &a, nil
}

// DeleteAttachment deletes an attachment record (Cinder only: the volume
// becomes available when it was the last). Cinder answers ErrConflict while
// Nova still uses the attachment (bug 2004555 guard); it is allowed when
// Nova no longer knows it.
func (c *Client) DeleteAttachment(ctx context.Context, id string) error {
	ctx = withOp(ctx, serviceVolume, "attachment_delete")
	if err := attachments.Delete(ctx, c.volume, id).ExtractErr(); err != nil {
		return fmt.Errorf("attachment %s: delete: %w", id, apiError(serviceVolume, "attachment_delete", err))
	}
	return nil
}

// CompleteAttachment marks the attachment attached (os-complete, 3.44),
// which moves the volume to in-use.
func (c *Client) CompleteAttachment(ctx context.Context, id string) error {
	ctx = withOp(ctx, serviceVolume, "attachment_complete")
	if err := attachments.Complete(ctx, c.volume, id).ExtractErr(); err != nil {
		return fmt.Errorf("attachment %s: complete: %w", id, apiError(serviceVolume, "attachment_complete", err))
	}
	return nil
}
