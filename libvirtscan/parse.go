package libvirtscan

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"libvirt.org/go/libvirtxml"
)

// NovaNamespace is the XML namespace nova-compute uses for the metadata it
// writes into every domain it defines.
const NovaNamespace = "http://openstack.org/xmlns/libvirt/nova/1.1"

// AliasPrefix starts every user-defined libvirt device alias; nova-compute
// (2024.1 and later) names a volume's disk "ua-<volume id>".
const AliasPrefix = "ua-"

// ErrBadXML is wrapped by ParseDomain when the document is not a domain.
var ErrBadXML = errors.New("libvirtscan: not a domain XML document")

// Definition is one domain XML document: either the live definition of a
// running domain or the persistent (inactive) one.
type Definition struct {
	UUID string `json:"uuid"`
	Name string `json:"name"`
	// Type is the hypervisor type attribute (qemu, kvm, test).
	Type string `json:"type"`
	// Nova is nil unless nova-compute's metadata element is present.
	Nova *NovaMetadata `json:"nova,omitempty"`
	// Disks sorted by target device, then by source.
	Disks []Disk `json:"disks"`
}

// Disk is one <disk> device.
type Disk struct {
	// Device is the guest-visible kind: disk, cdrom, floppy or lun.
	Device string `json:"device"`
	// Target is the guest device name libvirt was given (vdb). It is a
	// hint to the guest only and never identifies a volume.
	Target string `json:"target"`
	// Bus is the target bus: virtio, scsi, sata, ide, usb.
	Bus string `json:"bus,omitempty"`
	// Serial is what the guest sees as the disk serial; nova-compute puts
	// the Cinder volume id here.
	Serial string `json:"serial,omitempty"`
	// Alias is the device alias: libvirt's own (virtio-disk1, live
	// definitions only) or a user alias (ua-…, kept in both).
	Alias string `json:"alias,omitempty"`
	// AliasVolumeID is the volume id taken from a "ua-<volume id>" alias.
	AliasVolumeID string `json:"alias_volume_id,omitempty"`
	Source        Source `json:"source"`
	ReadOnly      bool   `json:"readonly,omitempty"`
	Shareable     bool   `json:"shareable,omitempty"`

	raw *libvirtxml.DomainDisk // the element as parsed, for detaching it
}

// Source is where a disk's bytes come from.
type Source struct {
	// Type is the disk type attribute: file, block, network, volume, …
	Type string `json:"type"`
	// Path is the file (type file) or device node (type block).
	Path string `json:"path,omitempty"`
	// Protocol and Name describe a network disk, e.g. rbd and
	// volumes/volume-<id>.
	Protocol string   `json:"protocol,omitempty"`
	Name     string   `json:"name,omitempty"`
	Hosts    []string `json:"hosts,omitempty"`
	// Pool and Volume describe a storage-pool volume (type volume).
	Pool   string `json:"pool,omitempty"`
	Volume string `json:"volume,omitempty"`
}

// String renders the source as one comparable token: "file:/path",
// "block:/dev/sdb", "rbd:volumes/volume-<id>", "volume:pool/vol", or "" when
// the disk has no source (an empty cdrom).
func (s Source) String() string {
	switch {
	case s.Path != "":
		return s.Type + ":" + s.Path
	case s.Protocol != "":
		return s.Protocol + ":" + s.Name
	case s.Pool != "" || s.Volume != "":
		return s.Type + ":" + s.Pool + "/" + s.Volume
	}
	return ""
}

// NovaMetadata is what nova-compute writes under <metadata> in the
// NovaNamespace. The instance uuid is the domain uuid.
type NovaMetadata struct {
	Package      string     `json:"package,omitempty"`
	Name         string     `json:"name"`
	CreationTime string     `json:"creation_time,omitempty"`
	Flavor       NovaFlavor `json:"flavor"`
	UserID       string     `json:"user_id,omitempty"`
	UserName     string     `json:"user_name,omitempty"`
	ProjectID    string     `json:"project_id,omitempty"`
	ProjectName  string     `json:"project_name,omitempty"`
	RootType     string     `json:"root_type,omitempty"`
	RootID       string     `json:"root_id,omitempty"`
	Ports        []NovaPort `json:"ports,omitempty"`
}

// NovaFlavor is the flavor recorded at boot (memory MiB, disks GiB).
type NovaFlavor struct {
	ID        string `json:"id,omitempty"`
	Name      string `json:"name"`
	MemoryMiB int    `json:"memory_mib"`
	DiskGiB   int    `json:"disk_gib"`
	SwapMiB   int    `json:"swap_mib"`
	Ephemeral int    `json:"ephemeral_gib"`
	VCPUs     int    `json:"vcpus"`
}

// NovaPort is one Neutron port with its fixed IPs.
type NovaPort struct {
	ID  string   `json:"id"`
	IPs []string `json:"ips,omitempty"`
}

// novaInstance mirrors nova/virt/libvirt/config.py LibvirtConfigGuestMetaNova*.
type novaInstance struct {
	XMLName xml.Name `xml:"http://openstack.org/xmlns/libvirt/nova/1.1 instance"`
	Package struct {
		Version string `xml:"version,attr"`
	} `xml:"http://openstack.org/xmlns/libvirt/nova/1.1 package"`
	Name         string `xml:"http://openstack.org/xmlns/libvirt/nova/1.1 name"`
	CreationTime string `xml:"http://openstack.org/xmlns/libvirt/nova/1.1 creationTime"`
	Flavor       struct {
		Name      string `xml:"name,attr"`
		ID        string `xml:"id,attr"`
		Memory    int    `xml:"http://openstack.org/xmlns/libvirt/nova/1.1 memory"`
		Disk      int    `xml:"http://openstack.org/xmlns/libvirt/nova/1.1 disk"`
		Swap      int    `xml:"http://openstack.org/xmlns/libvirt/nova/1.1 swap"`
		Ephemeral int    `xml:"http://openstack.org/xmlns/libvirt/nova/1.1 ephemeral"`
		VCPUs     int    `xml:"http://openstack.org/xmlns/libvirt/nova/1.1 vcpus"`
	} `xml:"http://openstack.org/xmlns/libvirt/nova/1.1 flavor"`
	Owner struct {
		User struct {
			UUID string `xml:"uuid,attr"`
			Name string `xml:",chardata"`
		} `xml:"http://openstack.org/xmlns/libvirt/nova/1.1 user"`
		Project struct {
			UUID string `xml:"uuid,attr"`
			Name string `xml:",chardata"`
		} `xml:"http://openstack.org/xmlns/libvirt/nova/1.1 project"`
	} `xml:"http://openstack.org/xmlns/libvirt/nova/1.1 owner"`
	Root struct {
		Type string `xml:"type,attr"`
		UUID string `xml:"uuid,attr"`
	} `xml:"http://openstack.org/xmlns/libvirt/nova/1.1 root"`
	Ports []struct {
		UUID string `xml:"uuid,attr"`
		IPs  []struct {
			Address string `xml:"address,attr"`
		} `xml:"http://openstack.org/xmlns/libvirt/nova/1.1 ip"`
	} `xml:"http://openstack.org/xmlns/libvirt/nova/1.1 ports>port"`
}

// ParseDomain parses one domain XML document (virsh dumpxml output, or
// virDomainGetXMLDesc's) into a Definition with disks in a deterministic
// order.
func ParseDomain(r io.Reader) (*Definition, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read domain XML: %w", err)
	}
	return ParseDomainBytes(data)
}

// ParseDomainBytes is ParseDomain for a document already in memory. It
// decodes only what a Definition holds: the domain's name, uuid and type,
// nova's metadata, and each <devices><disk> through libvirtxml's own
// DomainDisk decoder; every other element is skipped unparsed (a scan of
// 1,000 domains spends most of its time here).
func ParseDomainBytes(data []byte) (*Definition, error) {
	dec := xml.NewDecoder(bytes.NewReader(data))
	def := &Definition{Disks: []Disk{}}
	var nova *novaInstance
	seenDomain := false
	depth := 0 // of the element just opened
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadXML, err)
		}
		switch t := tok.(type) {
		case xml.EndElement:
			depth--
			continue
		case xml.StartElement:
			depth++
			var into any
			switch {
			case depth == 1:
				if seenDomain {
					// A second document after the first: its name would
					// overwrite the first's and the disks of both mix.
					return nil, fmt.Errorf("%w: second root element <%s>", ErrBadXML, t.Name.Local)
				}
				if t.Name.Local != "domain" {
					return nil, fmt.Errorf("%w: root element <%s>", ErrBadXML, t.Name.Local)
				}
				seenDomain = true
				for _, a := range t.Attr {
					if a.Name.Local == "type" && a.Name.Space == "" {
						def.Type = a.Value
					}
				}
				continue
			case depth == 2 && t.Name.Local == "devices":
				continue // descend into the devices
			case depth == 2 && t.Name.Local == "name":
				into = &def.Name
			case depth == 2 && t.Name.Local == "uuid":
				into = &def.UUID
			case depth == 2 && t.Name.Local == "metadata":
				var m struct {
					Nova *novaInstance `xml:"http://openstack.org/xmlns/libvirt/nova/1.1 instance"`
				}
				if err := dec.DecodeElement(&m, &t); err != nil {
					return nil, fmt.Errorf("%w: nova metadata: %w", ErrBadXML, err)
				}
				nova = m.Nova
				depth--
				continue
			case depth == 3 && t.Name.Local == "disk":
				var dd libvirtxml.DomainDisk
				if err := dec.DecodeElement(&dd, &t); err != nil {
					return nil, fmt.Errorf("%w: disk: %w", ErrBadXML, err)
				}
				def.Disks = append(def.Disks, convertDisk(dd))
				depth--
				continue
			}
			if into != nil {
				err = dec.DecodeElement(into, &t)
			} else {
				err = dec.Skip()
			}
			if err != nil {
				return nil, fmt.Errorf("%w: <%s>: %w", ErrBadXML, t.Name.Local, err)
			}
			depth--
		}
	}
	if !seenDomain {
		return nil, fmt.Errorf("%w: no <domain> element", ErrBadXML)
	}
	def.UUID, def.Name = strings.ToLower(strings.TrimSpace(def.UUID)), strings.TrimSpace(def.Name)
	if def.Name == "" && def.UUID == "" {
		return nil, fmt.Errorf("%w: no name and no uuid", ErrBadXML)
	}
	if nova != nil {
		def.Nova = nova.metadata()
	}
	sortDisks(def.Disks)
	return def, nil
}

func sortDisks(disks []Disk) {
	sort.SliceStable(disks, func(i, j int) bool {
		a, b := disks[i], disks[j]
		if a.Target != b.Target {
			return targetLess(a.Target, b.Target)
		}
		return a.Source.String() < b.Source.String()
	})
}

// targetLess orders vda < vdb < … < vdz < vdaa, as the kernel names them.
func targetLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

func convertDisk(dd libvirtxml.DomainDisk) Disk {
	disk := Disk{Device: dd.Device, Serial: dd.Serial, ReadOnly: dd.ReadOnly != nil, Shareable: dd.Shareable != nil, raw: &dd}
	if disk.Device == "" {
		disk.Device = "disk" // libvirt's default
	}
	if dd.Target != nil {
		disk.Target, disk.Bus = dd.Target.Dev, dd.Target.Bus
	}
	if dd.Alias != nil {
		disk.Alias = dd.Alias.Name
		if id, ok := strings.CutPrefix(dd.Alias.Name, AliasPrefix); ok {
			disk.AliasVolumeID = id
		}
	}
	if s := dd.Source; s != nil {
		switch {
		case s.File != nil:
			disk.Source = Source{Type: "file", Path: s.File.File}
		case s.Block != nil:
			disk.Source = Source{Type: "block", Path: s.Block.Dev}
		case s.Network != nil:
			disk.Source = Source{Type: "network", Protocol: s.Network.Protocol, Name: s.Network.Name}
			for _, h := range s.Network.Hosts {
				hp := h.Name
				if h.Port != "" {
					hp += ":" + h.Port
				}
				if h.Socket != "" {
					hp = h.Socket
				}
				disk.Source.Hosts = append(disk.Source.Hosts, hp)
			}
		case s.Volume != nil:
			disk.Source = Source{Type: "volume", Pool: s.Volume.Pool, Volume: s.Volume.Volume}
		case s.Dir != nil:
			disk.Source = Source{Type: "dir", Path: s.Dir.Dir}
		case s.NVME != nil:
			disk.Source = Source{Type: "nvme"}
		case s.VHostUser != nil:
			disk.Source = Source{Type: "vhostuser"}
		case s.VHostVDPA != nil:
			disk.Source = Source{Type: "vhostvdpa", Path: s.VHostVDPA.Dev}
		}
	}
	return disk
}

func (ni *novaInstance) metadata() *NovaMetadata {
	m := &NovaMetadata{
		Package:      ni.Package.Version,
		Name:         strings.TrimSpace(ni.Name),
		CreationTime: strings.TrimSpace(ni.CreationTime),
		Flavor: NovaFlavor{
			ID: ni.Flavor.ID, Name: ni.Flavor.Name, MemoryMiB: ni.Flavor.Memory, DiskGiB: ni.Flavor.Disk,
			SwapMiB: ni.Flavor.Swap, Ephemeral: ni.Flavor.Ephemeral, VCPUs: ni.Flavor.VCPUs,
		},
		UserID:      ni.Owner.User.UUID,
		UserName:    strings.TrimSpace(ni.Owner.User.Name),
		ProjectID:   ni.Owner.Project.UUID,
		ProjectName: strings.TrimSpace(ni.Owner.Project.Name),
		RootType:    ni.Root.Type,
		RootID:      ni.Root.UUID,
	}
	for _, p := range ni.Ports {
		port := NovaPort{ID: p.UUID}
		for _, ip := range p.IPs {
			port.IPs = append(port.IPs, ip.Address)
		}
		m.Ports = append(m.Ports, port)
	}
	sort.Slice(m.Ports, func(i, j int) bool { return m.Ports[i].ID < m.Ports[j].ID })
	return m
}
