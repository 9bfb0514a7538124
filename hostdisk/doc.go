// Package hostdisk is the node side of the volume plugin: it finds the block
// device of a Cinder volume by the volume id (never by Nova's device name),
// probes it for signatures, formats it only when it is blank, mounts it under
// a mount root, unmounts it, and reads mountinfo.
//
// Everything that touches a path takes it from Config (dev root, sys root,
// mount root, mountinfo file), so a node can be simulated in a directory.
// External programs (blkid, mkfs.*) run through the Runner seam with
// argument lists, never through a shell; mount(2)/umount2(2) are called
// directly (mount_linux.go).
//
// The format-safety rules live in one function, PlanFormat: a device with any
// signature (filesystem, partition table, LUKS, LVM2 PV, swap, md RAID, ...)
// is never formatted, and a failed mount is never a reason to format.
//
// Errors carry a class (ErrDeviceNotFound, ErrHasSignature, ErrFormatFailed,
// ErrMountFailed, ErrFilesystemMismatch, ...) to be checked with errors.Is;
// *Error, *SignatureError and *DeviceNotFoundError carry the details.
package hostdisk
