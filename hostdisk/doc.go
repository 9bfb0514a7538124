// Package hostdisk finds block devices by volume id, probes them for
// signatures, formats only blank ones, mounts them and reads mountinfo.
package hostdisk
