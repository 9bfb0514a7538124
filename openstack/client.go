package openstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cinderwarden/cinderwarden/internal/cloudconfig"
)

// Microversions we ask for, and why.
const (
	// DefaultVolumeMicroversion: Cinder 3.44 is the lowest version with the
	// whole attachments API we use (3.27 create/list/show/update/delete,
	// 3.44 os-complete). Everything else (volume CRUD, metadata, the
	// admin actions os-force_detach / os-reset_status) exists since 3.0.
	// Queens (2018) and later support it; the Zed fixtures were captured
	// with it.
	DefaultVolumeMicroversion = "3.44"
	// DefaultComputeMicroversion: Nova 2.89 (Xena, 2021) adds attachment_id
	// (the Cinder attachment) and bdm_uuid to os-volume_attachments, which
	// the reconciler needs to tie a Nova mapping to its Cinder attachment.
	// 2.3+ also gives OS-EXT-SRV-ATTR:hostname etc. in server details.
	DefaultComputeMicroversion = "2.89"
)

// Service labels used in metrics and errors.
const (
	serviceVolume   = "volume"
	serviceCompute  = "compute"
	serviceMetadata = "metadata"
)

// Options tune New. The zero value works.
type Options struct {
	// Registerer receives the API metrics (nil: not registered).
	Registerer prometheus.Registerer
	// Metrics to record into; nil creates one on Registerer. Share one
	// Metrics between Clients of one process.
	Metrics *Metrics
	// Logger for debug lines; nil discards.
	Logger *slog.Logger
	// VolumeMicroversion overrides DefaultVolumeMicroversion.
	VolumeMicroversion string
	// ComputeMicroversion overrides DefaultComputeMicroversion.
	ComputeMicroversion string
	// RequireCompute makes New fail when there is no Nova.
	RequireCompute bool
	// Backoff for the Wait methods; zero uses DefaultBackoff().
	Backoff Backoff
	// RequestTimeout bounds one HTTP request when the caller's context has
	// no earlier deadline (default 2 minutes; a safety net, not a policy).
	RequestTimeout time.Duration
}

// Client is all cloud access of cinderwarden. It is safe for concurrent use.
type Client struct {
	volume  *gophercloud.ServiceClient
	compute *gophercloud.ServiceClient // nil: no Nova
	meta    *http.Client               // unauthenticated, for the metadata service
	metrics *Metrics
	log     *slog.Logger
	backoff Backoff
	cfg     string // cloudconfig String(), for messages
}

// New authenticates (Keystone) or prepares (noauth) clients for Cinder and,
// when available, Nova. The token is renewed on expiry (AllowReauth).
func New(ctx context.Context, cfg *cloudconfig.Resolved, opts Options) (*Client, error) {
	m := opts.Metrics
	if m == nil {
		var err error
		if m, err = NewMetrics(opts.Registerer); err != nil {
			return nil, fmt.Errorf("openstack metrics: %w", err)
		}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	timeout := opts.RequestTimeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	rt := m.Wrap(cfg.Transport())
	ctx = withOp(ctx, "identity", "token_create")
	pc, err := cfg.NewProviderClient(ctx, rt)
	if err != nil {
		var ae *APIError
		if errors.As(apiError("identity", "token_create", err), &ae) {
			return nil, fmt.Errorf("openstack: %s: authenticate: %w", cfg, ae)
		}
		return nil, fmt.Errorf("openstack: %s: %w", cfg, err)
	}
	pc.HTTPClient.Timeout = timeout
	vol, err := cfg.NewBlockStorageV3(pc)
	if err != nil {
		return nil, err
	}
	vol.Microversion = orDefault(opts.VolumeMicroversion, DefaultVolumeMicroversion)
	c := &Client{
		volume:  vol,
		meta:    &http.Client{Transport: rt, Timeout: timeout},
		metrics: m,
		log:     log,
		backoff: opts.Backoff,
		cfg:     cfg.String(),
	}
	if c.backoff == (Backoff{}) {
		c.backoff = DefaultBackoff()
	}
	comp, err := cfg.NewComputeV2(pc)
	switch {
	case err == nil:
		comp.Microversion = orDefault(opts.ComputeMicroversion, DefaultComputeMicroversion)
		c.compute = comp
	case errors.Is(err, ErrNoCompute) && !opts.RequireCompute:
		log.Info("no compute service; Nova calls will fail with ErrNoCompute", "cloud", cfg, "reason", err)
	default:
		return nil, err
	}
	log.Debug("openstack client ready", "cloud", cfg, "volume_endpoint", vol.Endpoint,
		"volume_microversion", vol.Microversion, "compute", c.compute != nil)
	return c, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// HasCompute reports whether Nova calls are possible.
func (c *Client) HasCompute() bool { return c.compute != nil }

// Metrics returns the metrics the client records into.
func (c *Client) Metrics() *Metrics { return c.metrics }

// APICalls is the number of HTTP requests sent through this client's
// Metrics so far.
func (c *Client) APICalls() int64 { return c.metrics.Calls() }

// VolumeEndpoint is the Cinder base URL in use (for messages and tests).
func (c *Client) VolumeEndpoint() string { return c.volume.Endpoint }

func (c *Client) needCompute(what string) error {
	if c.compute == nil {
		return fmt.Errorf("%s: %w (%s)", what, ErrNoCompute, c.cfg)
	}
	return nil
}
