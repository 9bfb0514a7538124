// Package libvirtcompute is the simulator's optional libvirt compute driver:
// a simcloud.ComputeBackend that makes a Nova volume attachment a real
// <disk> in a real libvirt domain, the way nova-compute's libvirt driver
// does, and removes it the way nova-compute does on a Nova detach.
//
// The simulator calls it only for Nova attach and detach. A Cinder
// os-force_detach, os-detach, os-reset_status or attachment delete changes
// Cinder's records and never reaches this backend: that is exactly how
// zombie disks arise on real clouds.
package libvirtcompute

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"sync"

	"github.com/cinderwarden/cinderwarden/libvirtscan"
	"github.com/cinderwarden/cinderwarden/simcloud"
)

// ErrLiveDetachPending is wrapped by DetachVolume when the guest did not
// acknowledge the unplug in time: the disk is out of the persistent
// definition but still attached to the running domain. nova-compute fails
// the detach in that case (DeviceDetachFailed) and the volume stays in-use.
var ErrLiveDetachPending = errors.New("guest did not acknowledge the unplug")

// Options configure a Backend.
type Options struct {
	// Conn is an open libvirtd connection; the Backend does not close it.
	Conn *libvirtscan.Conn
	// Domains maps a Nova instance id to its libvirt domain (name or
	// uuid). Instances not in the map are not on this compute host: the
	// backend leaves them alone.
	Domains map[string]string
	// Detach bounds the live detach (nova: 20 s × 8 attempts).
	Detach libvirtscan.DetachOptions
	// AcceptLivePending makes DetachVolume succeed when only the live
	// removal is pending (the disk left the persistent config). Off by
	// default, as in nova-compute.
	AcceptLivePending bool
	// DefaultSizeGiB sizes a backing file created for an attachment that
	// names no size; default 1.
	DefaultSizeGiB int
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Backend is a simcloud.ComputeBackend over libvirt. It is safe for
// concurrent use; attaches and detaches on one instance are serialised, as
// nova-compute serialises them, so two attaches never pick the same target.
type Backend struct {
	conn   *libvirtscan.Conn
	detach libvirtscan.DetachOptions
	accept bool
	size   int
	log    *slog.Logger

	mu      sync.Mutex // guards domains and locks
	domains map[string]string
	locks   map[string]*sync.Mutex // per instance
}

var _ simcloud.ComputeBackend = (*Backend)(nil)

// New validates opts and returns a Backend.
func New(opts Options) (*Backend, error) {
	if opts.Conn == nil {
		return nil, errors.New("libvirtcompute: no libvirt connection")
	}
	for inst, dom := range opts.Domains {
		if inst == "" || dom == "" {
			return nil, fmt.Errorf("libvirtcompute: mapping %q → %q: instance and domain must both be set", inst, dom)
		}
	}
	if opts.DefaultSizeGiB < 0 {
		return nil, fmt.Errorf("libvirtcompute: default size %d GiB must not be negative", opts.DefaultSizeGiB)
	}
	if opts.DefaultSizeGiB == 0 {
		opts.DefaultSizeGiB = 1
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	domains := map[string]string{}
	maps.Copy(domains, opts.Domains)
	return &Backend{conn: opts.Conn, detach: opts.Detach, accept: opts.AcceptLivePending,
		size: opts.DefaultSizeGiB, log: log, domains: domains, locks: map[string]*sync.Mutex{}}, nil
}

// lockInstance returns the instance's domain (ok false when it is not on
// this host) with the instance's lock held; call unlock when done.
func (b *Backend) lockInstance(instanceID string) (domain string, ok bool, unlock func()) {
	b.mu.Lock()
	domain, ok = b.domains[instanceID]
	l := b.locks[instanceID]
	if l == nil {
		l = &sync.Mutex{}
		b.locks[instanceID] = l
	}
	b.mu.Unlock()
	l.Lock()
	return domain, ok, l.Unlock
}

// SetDomain maps (or, with an empty domain, unmaps) an instance.
func (b *Backend) SetDomain(instanceID, domain string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if domain == "" {
		delete(b.domains, instanceID)
		return
	}
	b.domains[instanceID] = domain
}

// AttachVolume hot-plugs the volume's backing file (created sparse when
// absent) into the instance's domain as nova-compute does: serial = volume
// id, alias "ua-<volume id>", virtio bus, the next free vdX target, into the
// persistent and the live definition. Attaching a volume whose disk is
// already there returns that disk. It returns the guest device path libvirt
// was asked for (a hint only: the guest names disks itself).
func (b *Backend) AttachVolume(ctx context.Context, a simcloud.Attachment) (string, error) {
	domain, ok, unlock := b.lockInstance(a.InstanceID)
	defer unlock()
	if !ok {
		b.log.Debug("libvirtcompute: instance not on this host", "instance", a.InstanceID, "volume", a.VolumeID)
		return "", nil
	}
	if a.BackingFile == "" {
		return "", fmt.Errorf("volume %s: attach to instance %s (domain %s): no backing file", a.VolumeID, a.InstanceID, domain)
	}
	if err := b.ensureBackingFile(a); err != nil {
		return "", fmt.Errorf("volume %s: attach to instance %s (domain %s): %w", a.VolumeID, a.InstanceID, domain, err)
	}
	dom, err := b.conn.Domain(ctx, domain)
	if err != nil {
		return "", fmt.Errorf("volume %s: attach to instance %s: %w", a.VolumeID, a.InstanceID, err)
	}
	sel := libvirtscan.DiskSelector{Serial: a.VolumeID}
	for _, def := range []*libvirtscan.Definition{dom.Live, dom.Config} {
		if def == nil {
			continue
		}
		for _, d := range def.Disks {
			if sel.Matches(d) {
				b.log.Info("libvirtcompute: volume already attached", "volume", a.VolumeID, "domain", dom.Name, "target", d.Target)
				return "/dev/" + d.Target, nil
			}
		}
	}
	target := libvirtscan.NextTarget("vd", dom.Live, dom.Config)
	spec := libvirtscan.DiskSpec{File: a.BackingFile, Target: target, Bus: "virtio", Serial: a.VolumeID, Alias: libvirtscan.AliasPrefix + a.VolumeID}
	if err := b.conn.AttachDisk(ctx, dom.UUID, spec); err != nil {
		return "", fmt.Errorf("volume %s: attach to instance %s: %w", a.VolumeID, a.InstanceID, err)
	}
	return "/dev/" + target, nil
}

func (b *Backend) ensureBackingFile(a simcloud.Attachment) error {
	if _, err := os.Stat(a.BackingFile); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("backing file: %w", err)
	}
	size := a.SizeGiB
	if size <= 0 {
		size = b.size
	}
	f, err := os.OpenFile(a.BackingFile, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create backing file: %w", err)
	}
	if err := f.Truncate(int64(size) << 30); err != nil {
		_ = f.Close()
		return fmt.Errorf("size backing file %s to %d GiB: %w", a.BackingFile, size, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close backing file %s: %w", a.BackingFile, err)
	}
	return nil
}

// DetachVolume removes the volume's disk as nova-compute does (persistent
// config first, then live, waiting for the guest's DEVICE_REMOVED). A disk
// or domain that is already gone is not an error. A guest that never
// acknowledges makes it fail with ErrLiveDetachPending unless the backend
// accepts that.
func (b *Backend) DetachVolume(ctx context.Context, a simcloud.Attachment) error {
	domain, ok, unlock := b.lockInstance(a.InstanceID)
	defer unlock()
	if !ok {
		return nil
	}
	res, err := b.conn.DetachDisk(ctx, domain, libvirtscan.DiskSelector{Serial: a.VolumeID}, b.detach)
	if errors.Is(err, libvirtscan.ErrDomainNotFound) {
		b.log.Info("libvirtcompute: domain gone, nothing to detach", "volume", a.VolumeID, "domain", domain)
		return nil
	}
	if err != nil {
		return fmt.Errorf("volume %s: detach from instance %s: %w", a.VolumeID, a.InstanceID, err)
	}
	if res.Live == libvirtscan.OutcomePending && !b.accept {
		return fmt.Errorf("volume %s: detach from instance %s (domain %s, %d attempts, config %s): %w",
			a.VolumeID, a.InstanceID, res.Domain, res.LiveAttempts, res.Config, ErrLiveDetachPending)
	}
	return nil
}
