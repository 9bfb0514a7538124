package reconciler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cinderwarden/cinderwarden/libvirtscan"
	"github.com/cinderwarden/cinderwarden/openstack"
)

// Observer fills an Observation for one compute host from libvirt, Nova,
// Cinder and the mount table. The three remote sources are read
// concurrently; each either comes back whole or is marked SourceFailed with
// a reason (never a partial list).
//
// OpenStack calls per run, independent of the number of servers on the host
// as far as Nova goes and of the number of volumes outside it as far as
// Cinder goes (pages of 1000 by default):
//
//   - Nova: one paginated GET /servers/detail?all_tenants=1&host=<host>.
//   - Cinder: one paginated GET /volumes/detail?all_tenants=1&status=in-use
//     (every attached volume with its attachments[]: attachment id, server,
//     host_name), and GET /attachments/detail?all_tenants=1&status=reserved
//     and status=attaching (records a volume's attachments[] never shows).
//   - Only when a volume that a domain disk, a Nova mapping or a
//     reserved/attaching record of a local instance names is not in the
//     in-use listing (a zombie's volume is usually available again, a volume
//     in transition is detaching/attaching/...), one full paginated
//     GET /volumes/detail?all_tenants=1 replaces it. There is never one
//     call per volume.
//
// Nova's server listing carries no migration records: a migration shows as
// status MIGRATING/RESIZE/VERIFY_RESIZE or a task_state, both of which Plan
// treats as "in transition".
type Observer struct {
	// Host is this compute host's name as Nova and Cinder spell it.
	Host string
	// Libvirt is an open libvirtd connection (required).
	Libvirt *libvirtscan.Conn
	// Cloud reaches Cinder (required) and Nova (when Cloud.HasCompute();
	// otherwise Nova is SourceNotConfigured). It must have the admin role:
	// the listings use all_tenants and Nova's host filter. (A member would
	// see its own project only; Plan then blocks every action on a volume
	// it cannot see, but findings would be incomplete.)
	Cloud *openstack.Client
	// MountBases are the directories whose mounts are observed; empty
	// leaves Mounts SourceNotConfigured. Pass Policy.MountBases.
	MountBases []string
	// MountProbeTimeout bounds the stat of each mountpoint; default 2 s.
	// A probe that does not finish leaves the entry MountSourceUnknown.
	MountProbeTimeout time.Duration
	// PageSize is the limit per listing request; 0 leaves it to the
	// server (1000 on a default Cinder/Nova).
	PageSize int
	// ScanParallelism bounds concurrent libvirt XML fetches (default 8).
	ScanParallelism int
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

func (o *Observer) log() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.Default()
}

// Observe reads every source once. It never fails as a whole: each
// source's status says how complete it is, and Plan aborts the run when a
// required one is not SourceOK.
func (o *Observer) Observe(ctx context.Context) Observation {
	obs := Observation{Host: o.Host}
	var (
		wg       sync.WaitGroup
		inUse    []openstack.Volume
		pending  []openstack.Attachment
		cinderOK = true
		cinderR  string
	)
	wg.Add(3)
	go func() {
		defer wg.Done()
		obs.Libvirt = o.observeLibvirt(ctx)
	}()
	go func() {
		defer wg.Done()
		obs.Nova = o.observeNova(ctx)
	}()
	go func() {
		defer wg.Done()
		var err error
		inUse, pending, err = o.listCinderFast(ctx)
		if err != nil {
			cinderOK, cinderR = false, err.Error()
		}
	}()
	obs.Mounts = o.observeMounts(ctx)
	wg.Wait()

	if !cinderOK {
		obs.Cinder = Cinder{Source: SourceStatus{State: SourceFailed, Reason: cinderR}}
		return obs
	}
	obs.Cinder = o.completeCinder(ctx, obs, inUse, pending)
	return obs
}

// ObserveLibvirt is the libvirt part of Observe alone (for tests and the
// act step's mount checks).
func (o *Observer) ObserveLibvirt(ctx context.Context) Libvirt { return o.observeLibvirt(ctx) }

func (o *Observer) observeLibvirt(ctx context.Context) Libvirt {
	if o.Libvirt == nil {
		return Libvirt{Source: SourceStatus{State: SourceFailed, Reason: "libvirt: no connection"}}
	}
	doms, _, err := o.Libvirt.Scan(ctx, libvirtscan.ScanOptions{Parallelism: o.ScanParallelism})
	if err != nil {
		return Libvirt{Source: SourceStatus{State: SourceFailed, Reason: err.Error()}}
	}
	out := Libvirt{Source: SourceStatus{State: SourceOK}, Domains: make([]Domain, 0, len(doms))}
	for _, d := range doms {
		out.Domains = append(out.Domains, DomainFromScan(d))
	}
	return out
}

// DomainFromScan converts one scanned libvirt domain: the instance UUID is
// the domain UUID (nova-compute defines domains with it), HasNovaMetadata
// says Nova's metadata element was there, and the disks are the merge of
// the live and the persistent definition.
func DomainFromScan(d libvirtscan.Domain) Domain {
	var live, config []Disk
	if d.Live != nil {
		live = disksFromScan(d.Live.Disks)
	}
	if d.Config != nil {
		config = disksFromScan(d.Config.Disks)
	}
	return Domain{
		UUID: d.UUID, Name: d.Name, State: string(d.State),
		HasNovaMetadata: d.Nova != nil,
		Disks:           MergeDisks(live, config),
	}
}

func disksFromScan(ds []libvirtscan.Disk) []Disk {
	out := make([]Disk, 0, len(ds))
	for _, d := range ds {
		disk := Disk{Target: d.Target, Bus: d.Bus, Device: d.Device, Serial: d.Serial, Source: d.Source.String()}
		// Only a user alias (ua-…) identifies a disk in both definitions;
		// libvirt's own aliases (virtio-disk1) exist in the live one only
		// and would split one disk into two when merging.
		if strings.HasPrefix(d.Alias, libvirtscan.AliasPrefix) {
			disk.Alias = d.Alias
		}
		out = append(out, disk)
	}
	return out
}

func (o *Observer) observeNova(ctx context.Context) Nova {
	if o.Cloud == nil || !o.Cloud.HasCompute() {
		return Nova{Source: SourceStatus{State: SourceNotConfigured, Reason: "no compute endpoint (Keystone-less Cinder or no Nova in the catalog)"}}
	}
	ss, err := o.Cloud.ListServers(ctx, openstack.ServerFilter{AllTenants: true, Host: o.Host, PageSize: o.PageSize})
	if err != nil {
		return Nova{Source: SourceStatus{State: SourceFailed, Reason: err.Error()}}
	}
	out := Nova{Source: SourceStatus{State: SourceOK}, Servers: make([]Server, 0, len(ss))}
	for _, s := range ss {
		out.Servers = append(out.Servers, ServerFromNova(s))
	}
	return out
}

// ServerFromNova converts a Nova server; its mappings are the volume ids of
// os-extended-volumes:volumes_attached (no attachment ids or device names:
// those would cost a call per server).
func ServerFromNova(s openstack.Server) Server {
	out := Server{ID: s.ID, Name: s.Name, InstanceName: s.InstanceName, Host: s.Host, Status: s.Status,
		VMState: s.VMState, TaskState: s.TaskState}
	for _, v := range s.VolumesAttached {
		out.Volumes = append(out.Volumes, ServerVolume{VolumeID: v})
	}
	return out
}

// pendingAttachStatuses are the attachment record states a volume's own
// attachments[] does not show but that mean work is under way.
var pendingAttachStatuses = []string{"reserved", "attaching"}

// listCinderFast is the part of the Cinder observation that does not
// depend on libvirt or Nova: every in-use volume and every reserved or
// attaching attachment record.
func (o *Observer) listCinderFast(ctx context.Context) ([]openstack.Volume, []openstack.Attachment, error) {
	if o.Cloud == nil {
		return nil, nil, errors.New("cinder: no client")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg      sync.WaitGroup
		vols    []openstack.Volume
		volErr  error
		atts    = make([][]openstack.Attachment, len(pendingAttachStatuses))
		attErrs = make([]error, len(pendingAttachStatuses))
	)
	wg.Add(1 + len(pendingAttachStatuses))
	go func() {
		defer wg.Done()
		vols, volErr = o.Cloud.ListVolumes(ctx, openstack.VolumeFilter{AllTenants: true, Status: "in-use", PageSize: o.PageSize})
		if volErr != nil {
			cancel()
		}
	}()
	for i, st := range pendingAttachStatuses {
		go func() {
			defer wg.Done()
			atts[i], attErrs[i] = o.Cloud.ListAttachments(ctx, openstack.AttachmentFilter{AllTenants: true, Status: st, PageSize: o.PageSize})
			if attErrs[i] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	if volErr != nil {
		return nil, nil, fmt.Errorf("cinder: %w", volErr)
	}
	if err := errors.Join(attErrs...); err != nil {
		return nil, nil, fmt.Errorf("cinder: %w", err)
	}
	return vols, slices.Concat(atts...), nil
}

// completeCinder keeps the volumes this host is involved with and, when
// the in-use listing lacks one of them, replaces it with one full listing.
func (o *Observer) completeCinder(ctx context.Context, obs Observation, inUse []openstack.Volume, pending []openstack.Attachment) Cinder {
	local := map[string]bool{} // instance ids with a domain here
	if obs.Libvirt.Source.State == SourceOK {
		for _, d := range obs.Libvirt.Domains {
			local[d.InstanceID()] = true
		}
	}
	var nova Nova
	if obs.Nova.Source.State == SourceOK {
		nova = obs.Nova
	}
	want := map[string]bool{}
	for _, id := range InvolvedVolumeIDs(obs.Libvirt, nova) {
		want[id] = true
	}
	for _, a := range pending {
		if local[strings.ToLower(a.InstanceID)] {
			want[strings.ToLower(a.VolumeID)] = true
		}
	}
	vols := inUse
	have := make(map[string]bool, len(vols))
	for _, v := range vols {
		have[strings.ToLower(v.ID)] = true
	}
	var missing int
	for id := range want {
		if !have[id] {
			missing++
		}
	}
	if missing > 0 {
		o.log().Debug("volumes not in the in-use listing; listing every volume", "host", o.Host, "missing", missing)
		all, err := o.Cloud.ListVolumes(ctx, openstack.VolumeFilter{AllTenants: true, PageSize: o.PageSize})
		if err != nil {
			return Cinder{Source: SourceStatus{State: SourceFailed, Reason: fmt.Sprintf("cinder: %d involved volumes are not in-use, full listing: %v", missing, err)}}
		}
		vols = all
	}
	byVol := map[string][]openstack.Attachment{}
	for _, a := range pending {
		byVol[strings.ToLower(a.VolumeID)] = append(byVol[strings.ToLower(a.VolumeID)], a)
	}
	out := Cinder{Source: SourceStatus{State: SourceOK}}
	for _, v := range vols {
		id := strings.ToLower(v.ID)
		keep := want[id]
		for _, a := range v.Attachments {
			if local[strings.ToLower(a.ServerID)] {
				keep = true
			}
		}
		if keep {
			out.Volumes = append(out.Volumes, VolumeFromCinder(v, byVol[id]))
		}
	}
	return out
}

// VolumeFromCinder converts a volume and adds the attachment records (from
// GET /attachments) that its own attachments[] does not show, with their
// status. Records it does show take the record's status.
func VolumeFromCinder(v openstack.Volume, records []openstack.Attachment) Volume {
	out := Volume{ID: v.ID, Status: v.Status, Multiattach: v.Multiattach}
	status := make(map[string]string, len(records))
	for _, r := range records {
		status[strings.ToLower(r.ID)] = r.Status
	}
	seen := map[string]bool{}
	for _, a := range v.Attachments {
		id := strings.ToLower(a.AttachmentID)
		seen[id] = true
		out.Attachments = append(out.Attachments, VolumeAttachment{
			ID: a.AttachmentID, ServerID: a.ServerID, HostName: a.HostName, Device: a.Device, AttachStatus: status[id],
		})
	}
	for _, r := range records {
		if seen[strings.ToLower(r.ID)] || !strings.EqualFold(r.VolumeID, v.ID) {
			continue
		}
		out.Attachments = append(out.Attachments, VolumeAttachment{ID: r.ID, ServerID: r.InstanceID, AttachStatus: r.Status})
	}
	return out
}

func (o *Observer) observeMounts(ctx context.Context) Mounts {
	if len(o.MountBases) == 0 {
		return Mounts{Source: SourceStatus{State: SourceNotConfigured}}
	}
	timeout := o.MountProbeTimeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	entries, err := readMounts(ctx, o.MountBases, timeout)
	if err != nil {
		return Mounts{Source: SourceStatus{State: SourceFailed, Reason: err.Error()}}
	}
	return Mounts{Source: SourceStatus{State: SourceOK}, Entries: entries}
}
