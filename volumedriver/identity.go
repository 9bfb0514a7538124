package volumedriver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/cinderwarden/cinderwarden/openstack"
)

// Identity is this node's Nova instance: the id Nova attaches volumes to,
// and the zone new volumes default to.
type Identity struct {
	InstanceID       string `json:"instance_id"`
	AvailabilityZone string `json:"availability_zone,omitempty"`
	Hostname         string `json:"hostname,omitempty"`
	// Source says where the id came from (an IdentitySource, or "cache").
	Source string `json:"source"`
}

// Identity sources, tried in the configured order.
const (
	IdentityConfigDrive = "config-drive" // <ConfigDriveDir>/openstack/latest/meta_data.json
	IdentityMetadata    = "metadata"     // <MetadataURL>/openstack/latest/meta_data.json
	IdentityDMI         = "dmi"          // <DMIProductUUID> (KVM sets it to the instance uuid)
)

// IdentitySources lists the valid source names.
func IdentitySources() []string {
	return []string{IdentityConfigDrive, IdentityMetadata, IdentityDMI}
}

// DefaultIdentityOrder is tried when the operator configures none.
func DefaultIdentityOrder() []string {
	return []string{IdentityConfigDrive, IdentityMetadata, IdentityDMI}
}

// IdentityConfig says how to find this node's instance.
type IdentityConfig struct {
	// Override is an explicit instance id: no source is asked (the zone is
	// then looked up in the metadata service only if MetadataURL is set).
	Override string
	// Order of the sources to try (default DefaultIdentityOrder).
	Order []string
	// ConfigDriveDir is where the config drive is mounted (default /mnt/config).
	ConfigDriveDir string
	// MetadataURL is the metadata service base (default openstack.DefaultMetadataURL).
	MetadataURL string
	// DMIProductUUID is the DMI product uuid file (default /sys/class/dmi/id/product_uuid).
	DMIProductUUID string
	// CacheFile keeps the last identity found, used when every source fails
	// (the metadata service is down at a restart). Empty: no cache.
	CacheFile string
	// HTTP client for the metadata service (nil: a plain client).
	HTTP *http.Client
	// Logger gets what is worth a warning but not a failure (nil: discard).
	Logger *slog.Logger
}

// ErrNoIdentity: no source gave this node's instance id.
var ErrNoIdentity = errors.New("instance identity not found")

// ValidateIdentityOrder checks an operator's source list.
func ValidateIdentityOrder(order []string) error {
	if len(order) == 0 {
		return fmt.Errorf("empty identity order: allowed sources: %s", strings.Join(IdentitySources(), ", "))
	}
	seen := map[string]bool{}
	for _, s := range order {
		if !contains(IdentitySources(), s) {
			return fmt.Errorf("unknown identity source %q: allowed sources: %s", s, strings.Join(IdentitySources(), ", "))
		}
		if seen[s] {
			return fmt.Errorf("identity source %q listed twice", s)
		}
		seen[s] = true
	}
	return nil
}

// ResolveIdentity finds this node's instance: the override, else the first
// source in order that answers; the result is written to the cache file.
// When every source fails, the cached identity is used (and said so); with
// no cache the error names every source tried and why it failed.
func ResolveIdentity(ctx context.Context, c IdentityConfig) (Identity, error) {
	if c.ConfigDriveDir == "" {
		c.ConfigDriveDir = "/mnt/config"
	}
	if c.DMIProductUUID == "" {
		c.DMIProductUUID = "/sys/class/dmi/id/product_uuid"
	}
	if len(c.Order) == 0 {
		c.Order = DefaultIdentityOrder()
	}
	if err := ValidateIdentityOrder(c.Order); err != nil {
		return Identity{}, err
	}
	if c.Override != "" {
		if !ValidVolumeID(c.Override) {
			return Identity{}, fmt.Errorf("instance id override %q: not an instance id", c.Override)
		}
		id := Identity{InstanceID: c.Override, Source: "override"}
		if c.MetadataURL != "" {
			if md, err := openstack.FetchInstanceMetadata(ctx, c.HTTP, c.MetadataURL); err == nil && md.UUID == c.Override {
				id.AvailabilityZone, id.Hostname = md.AvailabilityZone, md.Hostname
			}
		}
		return id, nil
	}
	var failures []string
	for _, src := range c.Order {
		id, err := identityFrom(ctx, c, src)
		if err != nil {
			failures = append(failures, fmt.Sprintf("%s: %v", src, err))
			continue
		}
		if c.CacheFile != "" {
			if err := writeIdentityCache(c.CacheFile, id); err != nil && c.Logger != nil {
				// Not fatal: the cache only helps a later restart when every
				// source is down.
				c.Logger.Warn("instance identity: cannot write the cache", "file", c.CacheFile, "err", err)
			}
		}
		return id, nil
	}
	if c.CacheFile != "" {
		if b, err := os.ReadFile(c.CacheFile); err == nil {
			var id Identity
			if json.Unmarshal(b, &id) == nil && ValidVolumeID(id.InstanceID) {
				id.Source = "cache (" + strings.Join(failures, "; ") + ")"
				return id, nil
			}
		}
	}
	return Identity{}, fmt.Errorf("%w: %s; set the instance id explicitly", ErrNoIdentity, strings.Join(failures, "; "))
}

func identityFrom(ctx context.Context, c IdentityConfig, src string) (Identity, error) {
	switch src {
	case IdentityConfigDrive:
		p := filepath.Join(c.ConfigDriveDir, "openstack", "latest", "meta_data.json")
		b, err := os.ReadFile(p)
		if err != nil {
			return Identity{}, err
		}
		var md openstack.InstanceMetadata
		if err := json.Unmarshal(b, &md); err != nil {
			return Identity{}, fmt.Errorf("%s: %w", p, err)
		}
		if !ValidVolumeID(md.UUID) {
			return Identity{}, fmt.Errorf("%s: no valid uuid", p)
		}
		return Identity{InstanceID: md.UUID, AvailabilityZone: md.AvailabilityZone, Hostname: md.Hostname, Source: src}, nil
	case IdentityMetadata:
		md, err := openstack.FetchInstanceMetadata(ctx, c.HTTP, c.MetadataURL)
		if err != nil {
			return Identity{}, err
		}
		if !ValidVolumeID(md.UUID) {
			return Identity{}, fmt.Errorf("uuid %q is not an instance id", md.UUID)
		}
		return Identity{InstanceID: md.UUID, AvailabilityZone: md.AvailabilityZone, Hostname: md.Hostname, Source: src}, nil
	case IdentityDMI:
		b, err := os.ReadFile(c.DMIProductUUID)
		if err != nil {
			return Identity{}, err
		}
		u := strings.ToLower(strings.TrimSpace(string(b)))
		if !IsUUID(u) {
			return Identity{}, fmt.Errorf("%s: %q is not a uuid", c.DMIProductUUID, u)
		}
		return Identity{InstanceID: u, Source: src}, nil
	}
	return Identity{}, fmt.Errorf("unknown identity source %q", src)
}

func writeIdentityCache(path string, id Identity) error {
	b, err := json.Marshal(id)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, fs.FileMode(0o600)); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
