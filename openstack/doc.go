// Package openstack holds all cloud access: Cinder volumes and attachments,
// Nova servers and volume attachments, built on gophercloud v2 and
// instrumented in one place.
package openstack
