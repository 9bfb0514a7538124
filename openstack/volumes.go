package openstack

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
)

// Volume is a Cinder volume as cinderwarden needs it.
type Volume struct {
	ID     string
	Name   string
	Status string // creating, available, reserved, attaching, in-use, detaching, deleting, error*, ...
	// SizeGiB is the size in GiB.
	SizeGiB          int
	VolumeType       string
	AvailabilityZone string
	Description      string
	SnapshotID       string
	SourceVolID      string
	Multiattach      bool
	Bootable         bool
	Encrypted        bool
	Metadata         map[string]string // never nil
	// Attachments as the volume shows them (one per server for
	// multiattach). Cinder's attachment records may hold more (a reserved
	// attachment is not shown here); see ListAttachments.
	Attachments []VolumeAttachment // never nil
	// ProjectID is shown to admins (os-vol-tenant-attr:tenant_id).
	ProjectID string
	UserID    string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// VolumeAttachment is one entry of a volume's attachments list.
type VolumeAttachment struct {
	AttachmentID string
	ServerID     string
	HostName     string // the compute host; often empty (null) for a member
	Device       string // Nova's guess of the guest device; not authoritative
	AttachedAt   time.Time
}

// AttachedTo returns the attachment to serverID, or nil.
func (v *Volume) AttachedTo(serverID string) *VolumeAttachment {
	for i := range v.Attachments {
		if v.Attachments[i].ServerID == serverID {
			return &v.Attachments[i]
		}
	}
	return nil
}

func volumeFrom(g volumes.Volume) Volume {
	v := Volume{
		ID: g.ID, Name: g.Name, Status: g.Status, SizeGiB: g.Size, VolumeType: g.VolumeType,
		AvailabilityZone: g.AvailabilityZone, Description: g.Description, SnapshotID: g.SnapshotID,
		SourceVolID: g.SourceVolID, Multiattach: g.Multiattach, Bootable: g.Bootable == "true",
		Encrypted: g.Encrypted, Metadata: g.Metadata, ProjectID: g.TenantID, UserID: g.UserID,
		CreatedAt: g.CreatedAt, UpdatedAt: g.UpdatedAt,
		Attachments: make([]VolumeAttachment, 0, len(g.Attachments)),
	}
	if v.Metadata == nil {
		v.Metadata = map[string]string{}
	}
	for _, a := range g.Attachments {
		v.Attachments = append(v.Attachments, VolumeAttachment{
			AttachmentID: a.AttachmentID, ServerID: a.ServerID, HostName: a.HostName,
			Device: a.Device, AttachedAt: a.AttachedAt,
		})
	}
	return v
}

// CreateVolumeOpts describe a new volume. SizeGiB is required (Cinder
// allows 0 only with a snapshot/source, which then sets the size).
type CreateVolumeOpts struct {
	Name             string
	SizeGiB          int
	VolumeType       string
	AvailabilityZone string
	SnapshotID       string // create from this snapshot
	SourceVolID      string // clone this volume
	Description      string
	Metadata         map[string]string
}

// CreateVolume asks Cinder for a volume and returns it as created (status
// "creating"); wait with WaitVolume(ctx, id, StatusIs("available")).
func (c *Client) CreateVolume(ctx context.Context, o CreateVolumeOpts) (*Volume, error) {
	ctx = withOp(ctx, serviceVolume, "volume_create")
	g, err := volumes.Create(ctx, c.volume, volumes.CreateOpts{
		Name: o.Name, Size: o.SizeGiB, VolumeType: o.VolumeType, AvailabilityZone: o.AvailabilityZone,
		SnapshotID: o.SnapshotID, SourceVolID: o.SourceVolID, Description: o.Description, Metadata: o.Metadata,
	}, nil).Extract()
	if err != nil {
		return nil, fmt.Errorf("volume %q: create (%d GiB): %w", o.Name, o.SizeGiB, apiError(serviceVolume, "volume_create", err))
	}
	v := volumeFrom(*g)
	return &v, nil
}

// GetVolume returns the volume; errors.Is(err, ErrNotFound) when it does
// not exist.
func (c *Client) GetVolume(ctx context.Context, id string) (*Volume, error) {
	ctx = withOp(ctx, serviceVolume, "volume_get")
	g, err := volumes.Get(ctx, c.volume, id).Extract()
	if err != nil {
		return nil, fmt.Errorf("volume %s: get: %w", id, apiError(serviceVolume, "volume_get", err))
	}
	v := volumeFrom(*g)
	return &v, nil
}

// DeleteVolume asks Cinder to delete the volume (202; wait with
// WaitVolumeDeleted). An attached volume answers 400 (ErrBadRequest).
func (c *Client) DeleteVolume(ctx context.Context, id string) error {
	ctx = withOp(ctx, serviceVolume, "volume_delete")
	if err := volumes.Delete(ctx, c.volume, id, nil).ExtractErr(); err != nil {
		return fmt.Errorf("volume %s: delete: %w", id, apiError(serviceVolume, "volume_delete", err))
	}
	return nil
}

// VolumeFilter selects volumes in a listing. Empty fields do not filter.
type VolumeFilter struct {
	Name   string
	Status string
	// Metadata matches volumes having all these key/value pairs.
	Metadata map[string]string
	// AllTenants lists every project's volumes (admin only).
	AllTenants bool
	// PageSize is the limit per request (0: the server's maximum,
	// osapi_max_limit, 1000 by default).
	PageSize int
}

func (f VolumeFilter) url(sc *gophercloud.ServiceClient) (string, error) {
	q, err := gophercloud.BuildQueryString(volumes.ListOpts{
		Name: f.Name, Status: f.Status, Metadata: f.Metadata, AllTenants: f.AllTenants, Limit: f.PageSize,
	})
	if err != nil {
		return "", err
	}
	return sc.ServiceURL("volumes", "detail") + q.String(), nil
}

// ListVolumes returns every matching volume, walking all pages (details
// included). Any failure, on any page, returns nil and the error: never a
// partial list.
func (c *Client) ListVolumes(ctx context.Context, f VolumeFilter) ([]Volume, error) {
	ctx = withOp(ctx, serviceVolume, "volume_list")
	u, err := f.url(c.volume)
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	vs, err := collect(ctx, c.volume, u, "volumes", volumeFrom)
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	return vs, nil
}

// EachVolumePage hands each page of the listing to fn as it arrives. When it
// returns an error, the pages already seen are an incomplete view and must
// not be acted upon.
func (c *Client) EachVolumePage(ctx context.Context, f VolumeFilter, fn func([]Volume) error) error {
	ctx = withOp(ctx, serviceVolume, "volume_list")
	u, err := f.url(c.volume)
	if err != nil {
		return fmt.Errorf("list volumes: %w", err)
	}
	err = eachPage(ctx, c.volume, u, "volumes", func(gs []volumes.Volume) error {
		vs := make([]Volume, len(gs))
		for i, g := range gs {
			vs[i] = volumeFrom(g)
		}
		return fn(vs)
	})
	if err != nil {
		return fmt.Errorf("list volumes: %w", err)
	}
	return nil
}

// SetVolumeMetadata merges kv into the volume's metadata (POST
// /volumes/{id}/metadata; other keys are kept) and returns the resulting
// metadata.
func (c *Client) SetVolumeMetadata(ctx context.Context, id string, kv map[string]string) (map[string]string, error) {
	ctx = withOp(ctx, serviceVolume, "volume_metadata_set")
	var out struct {
		Metadata map[string]string `json:"metadata"`
	}
	_, err := c.volume.Post(ctx, c.volume.ServiceURL("volumes", id, "metadata"),
		map[string]any{"metadata": kv}, &out, &gophercloud.RequestOpts{OkCodes: []int{200}})
	if err != nil {
		return nil, fmt.Errorf("volume %s: set metadata %v: %w", id, keys(kv), apiError(serviceVolume, "volume_metadata_set", err))
	}
	if out.Metadata == nil {
		out.Metadata = map[string]string{}
	}
	return out.Metadata, nil
}

// DeleteVolumeMetadataKey removes one metadata key; a missing key is
// ErrNotFound.
func (c *Client) DeleteVolumeMetadataKey(ctx context.Context, id, key string) error {
	ctx = withOp(ctx, serviceVolume, "volume_metadata_delete")
	_, err := c.volume.Delete(ctx, c.volume.ServiceURL("volumes", id, "metadata", url.PathEscape(key)),
		&gophercloud.RequestOpts{OkCodes: []int{200, 204}})
	if err != nil {
		return fmt.Errorf("volume %s: delete metadata key %q: %w", id, key, apiError(serviceVolume, "volume_metadata_delete", err))
	}
	return nil
}

// ForceDetach calls os-force_detach (admin only; a member gets ErrForbidden).
// It changes Cinder only — never Nova or libvirt — and on current clouds it
// answers ErrConflict while Nova still uses the attachment (bug 2004555
// guard). attachmentID empty detaches every attachment.
func (c *Client) ForceDetach(ctx context.Context, volumeID, attachmentID string) error {
	ctx = withOp(ctx, serviceVolume, "volume_force_detach")
	body := map[string]any{"os-force_detach": map[string]any{}}
	if attachmentID != "" {
		body["os-force_detach"] = map[string]any{"attachment_id": attachmentID}
	}
	_, err := c.volume.Post(ctx, c.volume.ServiceURL("volumes", volumeID, "action"), body, nil,
		&gophercloud.RequestOpts{OkCodes: []int{202}})
	if err != nil {
		return fmt.Errorf("volume %s: force-detach attachment %q: %w", volumeID, attachmentID,
			apiError(serviceVolume, "volume_force_detach", err))
	}
	return nil
}

// ResetStatusOpts for os-reset_status. Empty fields are not sent.
type ResetStatusOpts struct {
	Status          string // e.g. "available"
	AttachStatus    string // e.g. "detached": marks every attachment detached
	MigrationStatus string
}

// ResetStatus calls os-reset_status (admin only). It changes Cinder's
// database only.
func (c *Client) ResetStatus(ctx context.Context, volumeID string, o ResetStatusOpts) error {
	ctx = withOp(ctx, serviceVolume, "volume_reset_status")
	args := map[string]any{}
	if o.Status != "" {
		args["status"] = o.Status
	}
	if o.AttachStatus != "" {
		args["attach_status"] = o.AttachStatus
	}
	if o.MigrationStatus != "" {
		args["migration_status"] = o.MigrationStatus
	}
	_, err := c.volume.Post(ctx, c.volume.ServiceURL("volumes", volumeID, "action"),
		map[string]any{"os-reset_status": args}, nil, &gophercloud.RequestOpts{OkCodes: []int{202}})
	if err != nil {
		return fmt.Errorf("volume %s: reset status to %+v: %w", volumeID, o, apiError(serviceVolume, "volume_reset_status", err))
	}
	return nil
}

func keys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
