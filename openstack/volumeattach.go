package openstack

import (
	"context"
	"fmt"

	"github.com/gophercloud/gophercloud/v2"
)

// ServerVolume is a Nova volume attachment (a block-device mapping), from
// /servers/{id}/os-volume_attachments.
type ServerVolume struct {
	ServerID string
	VolumeID string
	// Device is Nova's guess of the guest device name (/dev/vdb). Never use
	// it to find the disk: the guest may name it differently.
	Device string
	// AttachmentID is the Cinder attachment Nova holds (microversion 2.89+;
	// empty in the POST response and on older clouds).
	AttachmentID string
	// BDMUUID is the block-device mapping's uuid (2.89+).
	BDMUUID             string
	Tag                 string
	DeleteOnTermination bool
}

type novaVolumeAttachment struct {
	Device              string  `json:"device"`
	VolumeID            string  `json:"volumeId"`
	ServerID            string  `json:"serverId"`
	Tag                 *string `json:"tag"`
	DeleteOnTermination *bool   `json:"delete_on_termination"`
	AttachmentID        string  `json:"attachment_id"`
	BDMUUID             string  `json:"bdm_uuid"`
}

func (n novaVolumeAttachment) conv() ServerVolume {
	sv := ServerVolume{
		ServerID: n.ServerID, VolumeID: n.VolumeID, Device: n.Device,
		AttachmentID: n.AttachmentID, BDMUUID: n.BDMUUID,
	}
	if n.Tag != nil {
		sv.Tag = *n.Tag
	}
	if n.DeleteOnTermination != nil {
		sv.DeleteOnTermination = *n.DeleteOnTermination
	}
	return sv
}

// AttachVolume asks Nova to attach the volume to the server
// (POST os-volume_attachments). Nova answers once it reserved the volume
// and picked a device name; the attach itself continues asynchronously:
// wait with WaitVolume(ctx, volumeID, AttachedTo(serverID)).
//
// A volume attached elsewhere (and not multiattach) answers ErrBadRequest
// or ErrConflict depending on the Nova release; the caller should have
// checked the volume first.
func (c *Client) AttachVolume(ctx context.Context, serverID, volumeID string) (*ServerVolume, error) {
	if err := c.needCompute("volume " + volumeID + ": attach to instance " + serverID); err != nil {
		return nil, err
	}
	ctx = withOp(ctx, serviceCompute, "volume_attach")
	var out struct {
		VolumeAttachment novaVolumeAttachment `json:"volumeAttachment"`
	}
	_, err := c.compute.Post(ctx, c.compute.ServiceURL("servers", serverID, "os-volume_attachments"),
		map[string]any{"volumeAttachment": map[string]any{"volumeId": volumeID}}, &out,
		&gophercloud.RequestOpts{OkCodes: []int{200, 202}})
	if err != nil {
		return nil, fmt.Errorf("volume %s: attach to instance %s: %w", volumeID, serverID, apiError(serviceCompute, "volume_attach", err))
	}
	sv := out.VolumeAttachment.conv()
	return &sv, nil
}

// DetachVolume asks Nova to detach the volume (DELETE
// os-volume_attachments/{volume}); Nova detaches from the guest, the
// block-device mapping and Cinder together, asynchronously: wait with
// WaitVolume(ctx, volumeID, DetachedFrom(serverID)). ErrNotFound means Nova
// holds no such mapping (so Nova cannot remove a zombie disk).
func (c *Client) DetachVolume(ctx context.Context, serverID, volumeID string) error {
	if err := c.needCompute("volume " + volumeID + ": detach from instance " + serverID); err != nil {
		return err
	}
	ctx = withOp(ctx, serviceCompute, "volume_detach")
	_, err := c.compute.Delete(ctx, c.compute.ServiceURL("servers", serverID, "os-volume_attachments", volumeID),
		&gophercloud.RequestOpts{OkCodes: []int{202, 204}})
	if err != nil {
		return fmt.Errorf("volume %s: detach from instance %s: %w", volumeID, serverID, apiError(serviceCompute, "volume_detach", err))
	}
	return nil
}

// ListServerVolumes returns Nova's volume attachments of a server.
func (c *Client) ListServerVolumes(ctx context.Context, serverID string) ([]ServerVolume, error) {
	if err := c.needCompute("instance " + serverID + ": list volume attachments"); err != nil {
		return nil, err
	}
	ctx = withOp(ctx, serviceCompute, "server_volume_list")
	var out struct {
		VolumeAttachments []novaVolumeAttachment `json:"volumeAttachments"`
	}
	_, err := c.compute.Get(ctx, c.compute.ServiceURL("servers", serverID, "os-volume_attachments"), &out, nil)
	if err != nil {
		return nil, fmt.Errorf("instance %s: list volume attachments: %w", serverID, apiError(serviceCompute, "server_volume_list", err))
	}
	svs := make([]ServerVolume, 0, len(out.VolumeAttachments))
	for _, n := range out.VolumeAttachments {
		svs = append(svs, n.conv())
	}
	return svs, nil
}

// GetServerVolume returns Nova's attachment of volumeID to serverID
// (ErrNotFound when Nova holds none).
func (c *Client) GetServerVolume(ctx context.Context, serverID, volumeID string) (*ServerVolume, error) {
	if err := c.needCompute("volume " + volumeID + ": get attachment to instance " + serverID); err != nil {
		return nil, err
	}
	ctx = withOp(ctx, serviceCompute, "server_volume_get")
	var out struct {
		VolumeAttachment novaVolumeAttachment `json:"volumeAttachment"`
	}
	_, err := c.compute.Get(ctx, c.compute.ServiceURL("servers", serverID, "os-volume_attachments", volumeID), &out, nil)
	if err != nil {
		return nil, fmt.Errorf("volume %s: get attachment to instance %s: %w", volumeID, serverID,
			apiError(serviceCompute, "server_volume_get", err))
	}
	sv := out.VolumeAttachment.conv()
	return &sv, nil
}
