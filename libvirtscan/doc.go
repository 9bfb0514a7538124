// Package libvirtscan reads domains and their disks from libvirtd over its
// socket (pure Go) and detaches disks the way nova-compute does.
package libvirtscan
