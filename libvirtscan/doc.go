// Package libvirtscan reads domains and their disks from libvirtd over its
// socket (pure Go, github.com/digitalocean/go-libvirt; XML through
// libvirt.org/go/libvirtxml) and attaches and detaches disks the way
// nova-compute does.
//
//   - ParseDomain / ParseDomainBytes parse one domain XML document (no I/O):
//     uuid, name, nova's metadata (namespace NovaNamespace) and every disk
//     with target, bus, serial, alias ("ua-<volume id>" → AliasVolumeID),
//     source (file, block, network protocol+name such as RBD
//     volumes/volume-<id>) and device kind, sorted by target.
//   - Dial opens qemu:///system or any local URI, e.g. libvirt's test driver
//     through the daemon as test+unix:///abs/path/domains.xml.
//   - Conn.Scan lists every domain (active and inactive) with its state in
//     two listing calls and fetches each live and persistent definition, with
//     bounded parallelism; Conn.Domain reads one.
//   - Conn.AttachDisk hot-plugs into the persistent and the live definition
//     (nova's attach); NextTarget picks the next free vdX.
//   - Conn.DetachDisk is nova's _detach_with_retry: persistent config first
//     (synchronous, verified), then live with DEVICE_REMOVED /
//     DEVICE_REMOVAL_FAILED subscribed before asking, per-attempt timeout and
//     attempt count (20 s × 8 by default); "device not found" means already
//     gone. A guest that never acknowledges leaves Live == OutcomePending.
//     The live request uses virDomainDetachDeviceAlias (asynchronous) where
//     nova uses virDomainDetachDeviceFlags (which blocks up to 5 s inside
//     libvirt); the outcome is the same, and the wait is ours to bound.
//
// Package libvirttest builds real fixtures for tests: firmware-only and
// Linux qemu TCG domains and test-driver documents with 1,000s of domains.
package libvirtscan
