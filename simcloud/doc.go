// Package simcloud is an in-process OpenStack simulator (Keystone v3, Cinder
// v3, Nova v2.1 and the metadata service) served over real HTTP, with
// attachments backed by real loop devices and optionally real libvirt disks.
package simcloud
