// Package volumedriver implements the Docker volume plugin protocol: one
// Docker volume is one Cinder volume. The per-volume state machine is kept
// apart from the OpenStack calls and the mount syscalls.
package volumedriver
