package cloudconfig

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/noauth"
)

// ErrNoCompute: the configuration has no Nova (auth_type noauth, or no
// compute service in the catalog).
var ErrNoCompute = errors.New("no compute service")

// Transport returns a fresh HTTP transport with the resolved TLS settings,
// for the caller to wrap (metrics, tracing) and pass to NewProviderClient.
func (r *Resolved) Transport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if r.TLS != nil {
		t.TLSClientConfig = r.TLS.Clone()
	}
	return t
}

// NewProviderClient returns a ProviderClient that sends through rt (nil:
// r.Transport()). For Keystone it authenticates now and keeps the
// credentials so an expired token is renewed on the next 401
// (AllowReauth). For noauth nothing is sent.
//
// Errors name the auth URL and user, never a secret.
func (r *Resolved) NewProviderClient(ctx context.Context, rt http.RoundTripper) (*gophercloud.ProviderClient, error) {
	if rt == nil {
		rt = r.Transport()
	}
	if r.NoAuth != nil {
		pc, err := noauth.NewClient(gophercloud.AuthOptions{Username: "cinderwarden", TenantName: r.NoAuth.ProjectID})
		if err != nil {
			return nil, fmt.Errorf("noauth cinder %s: %w", r.NoAuth.Endpoint, err)
		}
		pc.HTTPClient = http.Client{Transport: rt}
		return pc, nil
	}
	ao := r.AuthOptions
	ao.AllowReauth = true
	pc, err := openstack.NewClient(ao.IdentityEndpoint)
	if err != nil {
		return nil, fmt.Errorf("%sauth_url %s: %w (%s)", r.Source.prefix(), ao.IdentityEndpoint, err, r.Source)
	}
	pc.HTTPClient = http.Client{Transport: rt}
	if err := openstack.Authenticate(ctx, pc, ao); err != nil {
		return nil, fmt.Errorf("%sauthenticate at %s as %q: %w", r.Source.prefix(), ao.IdentityEndpoint,
			firstNonEmpty(ao.Username, ao.UserID, ao.ApplicationCredentialID, ao.ApplicationCredentialName), err)
	}
	return pc, nil
}

// NewBlockStorageV3 returns the Cinder v3 service client (volumev3 from the
// catalog, or the noauth endpoint with the project appended).
func (r *Resolved) NewBlockStorageV3(pc *gophercloud.ProviderClient) (*gophercloud.ServiceClient, error) {
	if r.NoAuth != nil {
		sc, err := noauth.NewBlockStorageNoAuthV3(pc, noauth.EndpointOpts{CinderEndpoint: r.NoAuth.Endpoint})
		if err != nil {
			return nil, fmt.Errorf("noauth cinder %s: %w", r.NoAuth.Endpoint, err)
		}
		// The noauth ServiceClient has Type "block-storage", which
		// gophercloud maps to the volume microversion headers.
		return sc, nil
	}
	sc, err := openstack.NewBlockStorageV3(pc, r.EndpointOpts)
	if err != nil {
		return nil, fmt.Errorf("%sblock storage v3 endpoint (region %q, interface %q): %w (%s)",
			r.Source.prefix(), r.EndpointOpts.Region, r.EndpointOpts.Availability, err, r.Source)
	}
	return sc, nil
}

// NewComputeV2 returns the Nova v2.1 service client, or an error wrapping
// ErrNoCompute when there is none (noauth, or not in the catalog).
func (r *Resolved) NewComputeV2(pc *gophercloud.ProviderClient) (*gophercloud.ServiceClient, error) {
	if r.NoAuth != nil {
		return nil, fmt.Errorf("auth_type noauth: %w", ErrNoCompute)
	}
	sc, err := openstack.NewComputeV2(pc, r.EndpointOpts)
	if err != nil {
		var nf *gophercloud.ErrEndpointNotFound
		if errors.As(err, &nf) {
			return nil, fmt.Errorf("%scompute endpoint (region %q, interface %q): %w: %w",
				r.Source.prefix(), r.EndpointOpts.Region, r.EndpointOpts.Availability, ErrNoCompute, err)
		}
		return nil, fmt.Errorf("%scompute endpoint: %w", r.Source.prefix(), err)
	}
	return sc, nil
}
