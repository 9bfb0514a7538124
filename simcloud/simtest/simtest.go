// Package simtest gives tests plain gophercloud clients of a simulator user
// and a bounded wait on a volume's status: what a cloud's tenant would use,
// kept in one place so every package's tests talk to the simulator the same
// way.
package simtest

import (
	"context"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"

	"github.com/cinderwarden/cinderwarden/simcloud"
)

// Clients are one user's authenticated gophercloud clients.
type Clients struct {
	Provider *gophercloud.ProviderClient
	Volume   *gophercloud.ServiceClient // block-storage v3
	Compute  *gophercloud.ServiceClient // compute v2.1
}

// Connect authenticates c against the simulator's Keystone (re-auth on) and
// finds both services in the catalog, with the given microversions.
func Connect(t testing.TB, c simcloud.Credentials, volumeMV, computeMV string) Clients {
	t.Helper()
	ctx := context.Background()
	p, err := openstack.AuthenticatedClient(ctx, gophercloud.AuthOptions{
		IdentityEndpoint: c.AuthURL, Username: c.Username, Password: c.Password,
		DomainName: c.UserDomainName, TenantName: c.ProjectName, AllowReauth: true,
		Scope: &gophercloud.AuthScope{ProjectName: c.ProjectName, DomainName: c.ProjectDomainName},
	})
	if err != nil {
		t.Fatalf("authenticate %s: %v", c.Username, err)
	}
	eo := gophercloud.EndpointOpts{Region: c.Region}
	vc, err := openstack.NewBlockStorageV3(p, eo)
	if err != nil {
		t.Fatalf("catalog: block-storage v3: %v", err)
	}
	vc.Microversion = volumeMV
	cc, err := openstack.NewComputeV2(p, eo)
	if err != nil {
		t.Fatalf("catalog: compute: %v", err)
	}
	cc.Microversion = computeMV
	return Clients{Provider: p, Volume: vc, Compute: cc}
}

// WaitVolume polls with short exponential backoff (5 ms doubling to 200 ms)
// until the volume has status want, failing the test after 20 s.
func WaitVolume(t testing.TB, c *gophercloud.ServiceClient, id, want string) *volumes.Volume {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	delay := 5 * time.Millisecond
	for {
		v, err := volumes.Get(ctx, c, id).Extract()
		if err != nil {
			t.Fatalf("get volume %s: %v", id, err)
		}
		if v.Status == want {
			return v
		}
		select {
		case <-ctx.Done():
			t.Fatalf("volume %s: status %q, want %q: %v", id, v.Status, want, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(delay*2, 200*time.Millisecond)
	}
}
