package openstack

import (
	"context"
	"errors"
	"fmt"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
)

// Server is a Nova server as the plugin and reconciler need it. The
// OS-EXT-SRV-ATTR fields (Host, InstanceName, HypervisorHostname) are shown
// to admins only by default policy; for a member they are empty.
type Server struct {
	ID     string
	Name   string
	Status string // ACTIVE, SHUTOFF, ERROR, BUILD, DELETED, ...
	// TaskState is empty when no operation runs on the server; the
	// reconciler must not act while it is set.
	TaskState string
	VMState   string // active, stopped, error, ...
	// Host is the compute host (OS-EXT-SRV-ATTR:host).
	Host string
	// InstanceName is the libvirt domain name (OS-EXT-SRV-ATTR:instance_name).
	InstanceName       string
	HypervisorHostname string
	AvailabilityZone   string
	ProjectID          string
	// VolumesAttached are the volume ids of os-extended-volumes:volumes_attached
	// (Nova's block-device mappings).
	VolumesAttached []string // never nil
}

func serverFrom(g servers.Server) Server {
	s := Server{
		ID: g.ID, Name: g.Name, Status: g.Status, TaskState: g.TaskState, VMState: g.VmState,
		Host: g.Host, InstanceName: g.InstanceName, HypervisorHostname: g.HypervisorHostname,
		AvailabilityZone: g.AvailabilityZone, ProjectID: g.TenantID,
		VolumesAttached: make([]string, 0, len(g.AttachedVolumes)),
	}
	for _, v := range g.AttachedVolumes {
		s.VolumesAttached = append(s.VolumesAttached, v.ID)
	}
	return s
}

// GetServer returns one server (ErrNotFound when Nova does not know it).
func (c *Client) GetServer(ctx context.Context, id string) (*Server, error) {
	if err := c.needCompute("server " + id + ": get"); err != nil {
		return nil, err
	}
	ctx = withOp(ctx, serviceCompute, "server_get")
	g, err := servers.Get(ctx, c.compute, id).Extract()
	if err != nil {
		return nil, fmt.Errorf("server %s: get: %w", id, apiError(serviceCompute, "server_get", err))
	}
	s := serverFrom(*g)
	return &s, nil
}

// ServerFilter selects servers. Empty fields do not filter.
type ServerFilter struct {
	// AllTenants lists every project's servers (admin only).
	AllTenants bool
	// Host is the compute host (admin only filter).
	Host     string
	Name     string
	PageSize int
}

// ListServers returns every matching server with details, walking all
// pages (servers_links); any failure returns nil and the error.
func (c *Client) ListServers(ctx context.Context, f ServerFilter) ([]Server, error) {
	if err := c.needCompute("list servers"); err != nil {
		return nil, err
	}
	ctx = withOp(ctx, serviceCompute, "server_list")
	q, err := gophercloud.BuildQueryString(servers.ListOpts{
		AllTenants: f.AllTenants, Host: f.Host, Name: f.Name, Limit: f.PageSize,
	})
	if err != nil {
		return nil, fmt.Errorf("list servers: %w", err)
	}
	u := c.compute.ServiceURL("servers", "detail") + q.String()
	ss, err := collect(ctx, c.compute, u, "servers", serverFrom)
	if err != nil {
		return nil, fmt.Errorf("list servers %+v: %w", f, err)
	}
	// Nova drops admin-only filters (host) for other users without a word
	// and hides OS-EXT-SRV-ATTR:host from them: a "servers on my host" list
	// would silently be the whole project. Refuse instead.
	if f.Host != "" {
		for _, s := range ss {
			if s.Host != f.Host {
				return nil, fmt.Errorf("list servers on host %s: server %s shows host %q: %w (admin credentials needed)",
					f.Host, s.ID, s.Host, ErrFilterIgnored)
			}
		}
	}
	return ss, nil
}

// ErrFilterIgnored: the server ignored a filter we asked for (typically an
// admin-only filter used with member credentials), so the result cannot be
// trusted.
var ErrFilterIgnored = errors.New("filter ignored by the server")
