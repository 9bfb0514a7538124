package libvirtscan

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

// DiskSpec describes a disk to hot-plug, the way nova-compute builds a
// volume's <disk>.
type DiskSpec struct {
	// Exactly one of File and BlockDev is the source.
	File     string
	BlockDev string
	// Target is the guest device name (vdb); required.
	Target string
	// Bus defaults to virtio.
	Bus string
	// Serial is the guest-visible serial; nova-compute uses the volume id.
	Serial string
	// Alias, when set, must start with "ua-" (nova: "ua-<volume id>").
	Alias string
	// Format is the qemu driver type; default raw.
	Format string
	// Cache is the qemu cache mode (nova uses "none"); empty leaves
	// libvirt's default, which also works on filesystems without O_DIRECT.
	Cache    string
	ReadOnly bool
}

// ErrInvalidSpec is wrapped when a DiskSpec cannot describe a disk.
var ErrInvalidSpec = errors.New("invalid disk spec")

// XML renders the <disk> element.
func (s DiskSpec) XML() (string, error) {
	if (s.File == "") == (s.BlockDev == "") {
		return "", fmt.Errorf("%w: exactly one of file and block device must be set", ErrInvalidSpec)
	}
	if s.Target == "" {
		return "", fmt.Errorf("%w: target device required", ErrInvalidSpec)
	}
	if s.Alias != "" && !strings.HasPrefix(s.Alias, AliasPrefix) {
		return "", fmt.Errorf("%w: alias %q must start with %q", ErrInvalidSpec, s.Alias, AliasPrefix)
	}
	bus, format := s.Bus, s.Format
	if bus == "" {
		bus = "virtio"
	}
	if format == "" {
		format = "raw"
	}
	d := libvirtxml.DomainDisk{
		Device: "disk",
		Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: format, Cache: s.Cache},
		Target: &libvirtxml.DomainDiskTarget{Dev: s.Target, Bus: bus},
		Serial: s.Serial,
	}
	if s.File != "" {
		d.Source = &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: s.File}}
	} else {
		d.Source = &libvirtxml.DomainDiskSource{Block: &libvirtxml.DomainDiskSourceBlock{Dev: s.BlockDev}}
	}
	if s.Alias != "" {
		d.Alias = &libvirtxml.DomainAlias{Name: s.Alias}
	}
	if s.ReadOnly {
		d.ReadOnly = &libvirtxml.DomainDiskReadOnly{}
	}
	return d.Marshal()
}

// AttachDisk hot-plugs a disk as nova-compute does: into the persistent
// definition when the domain has one, and into the live one when it runs or
// is paused, in one libvirt call.
func (c *Conn) AttachDisk(ctx context.Context, domain string, spec DiskSpec) error {
	x, err := spec.XML()
	if err != nil {
		return fmt.Errorf("domain %s: attach %s: %w", domain, spec.Target, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	d, err := c.lookup(domain)
	if err != nil {
		return err
	}
	flags, err := c.affect(d)
	if err != nil {
		return err
	}
	if err := c.lv.DomainAttachDeviceFlags(d, x, uint32(flags)); err != nil {
		return c.domainErr(d, "attach disk "+spec.Target, err)
	}
	c.log.Info("disk attached", "domain", d.Name, "target", spec.Target, "serial", spec.Serial, "live", flags&libvirt.DomainAffectLive != 0, "config", flags&libvirt.DomainAffectConfig != 0)
	return nil
}

// affect picks nova's flags: config when persistent, live when running or
// paused.
func (c *Conn) affect(d libvirt.Domain) (libvirt.DomainModificationImpact, error) {
	var flags libvirt.DomainModificationImpact
	persistent, err := c.lv.DomainIsPersistent(d)
	if err != nil {
		return 0, c.domainErr(d, "is persistent", err)
	}
	if persistent == 1 {
		flags |= libvirt.DomainAffectConfig
	}
	state, _, err := c.lv.DomainGetState(d, 0)
	if err != nil {
		return 0, c.domainErr(d, "get state", err)
	}
	if s := libvirt.DomainState(state); s == libvirt.DomainRunning || s == libvirt.DomainPaused {
		flags |= libvirt.DomainAffectLive
	}
	if flags == 0 {
		return 0, c.domainErr(d, "modify", errors.New("neither persistent nor running: nothing to modify"))
	}
	return flags, nil
}

// NextTarget picks the first free name with the given prefix ("vd") that no
// disk in any of the definitions uses: vda…vdz, then vdaa…
func NextTarget(prefix string, defs ...*Definition) string {
	used := map[string]bool{}
	for _, def := range defs {
		if def == nil {
			continue
		}
		for _, d := range def.Disks {
			used[d.Target] = true
		}
	}
	for i := 0; ; i++ {
		name := prefix + diskLetters(i)
		if !used[name] {
			return name
		}
	}
}

// diskLetters is the kernel's sd/vd suffix: 0→a, 25→z, 26→aa.
func diskLetters(i int) string {
	s := ""
	for i++; i > 0; i = (i - 1) / 26 {
		s = string(rune('a'+(i-1)%26)) + s
	}
	return s
}
