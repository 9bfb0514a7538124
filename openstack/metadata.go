package openstack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// DefaultMetadataURL is the OpenStack metadata service's base URL as seen
// from an instance.
const DefaultMetadataURL = "http://169.254.169.254"

// InstanceMetadata is what cinderwarden reads from
// <base>/openstack/latest/meta_data.json.
type InstanceMetadata struct {
	UUID             string `json:"uuid"`
	Name             string `json:"name"`
	AvailabilityZone string `json:"availability_zone"`
	Hostname         string `json:"hostname"`
	ProjectID        string `json:"project_id"`
}

// ErrMetadata: the metadata service answered something unusable (non-200,
// not JSON, no uuid).
var ErrMetadata = errors.New("metadata service")

// InstanceMetadata fetches this instance's identity from the metadata
// service at baseURL (empty: DefaultMetadataURL), counted in the client's
// metrics as service "metadata", request "metadata_get". No token is sent.
func (c *Client) InstanceMetadata(ctx context.Context, baseURL string) (*InstanceMetadata, error) {
	return FetchInstanceMetadata(ctx, c.meta, baseURL)
}

// FetchInstanceMetadata is InstanceMetadata with a caller's HTTP client
// (wrap its transport with Metrics.Wrap to count it); for use before a
// cloud Client exists.
func FetchInstanceMetadata(ctx context.Context, hc *http.Client, baseURL string) (*InstanceMetadata, error) {
	if baseURL == "" {
		baseURL = DefaultMetadataURL
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	u := strings.TrimRight(baseURL, "/") + "/openstack/latest/meta_data.json"
	ctx = withOp(ctx, serviceMetadata, "metadata_get")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("metadata %s: %w", u, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("metadata %s: %w", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("metadata %s: read: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metadata %s: status %d: %w", u, resp.StatusCode, ErrMetadata)
	}
	var md InstanceMetadata
	if err := json.Unmarshal(body, &md); err != nil {
		return nil, fmt.Errorf("metadata %s: %w: %w", u, ErrMetadata, err)
	}
	if md.UUID == "" {
		return nil, fmt.Errorf("metadata %s: no uuid: %w", u, ErrMetadata)
	}
	return &md, nil
}
