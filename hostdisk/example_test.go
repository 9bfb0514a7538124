package hostdisk_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cinderwarden/cinderwarden/hostdisk"
)

// The volume plugin's Mount and Unmount, on the node side. (Compiled, not
// run: it needs an attached Cinder volume.)
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h, err := hostdisk.New(hostdisk.Config{
		MountRoot:     "/var/lib/cinderwarden/mounts",
		DeviceTimeout: time.Minute,
	})
	if err != nil {
		panic(err)
	}
	volumeID := "0b6a1a8e-3c2f-4c86-9f3e-2d1b7c9e5a41"

	// After Nova attached the volume: find it by its id, never by Nova's
	// device name.
	dev, err := h.WaitForDevice(ctx, volumeID)
	if err != nil {
		// errors.Is(err, hostdisk.ErrDeviceNotFound); the error lists the
		// candidates tried.
		panic(err)
	}
	res, err := h.Mount(ctx, hostdisk.MountRequest{
		VolumeID: volumeID, Device: dev.Path, FSType: "ext4", Options: []string{"noatime"},
	})
	switch {
	case errors.Is(err, hostdisk.ErrHasSignature), errors.Is(err, hostdisk.ErrFilesystemMismatch):
		panic(err) // never formatted: tell the user what is on the disk
	case err != nil:
		panic(err)
	}
	fmt.Println("hand Docker", res.DataDir) // <root>/<id>/data

	// Last Docker mount id gone:
	u, err := h.Unmount(ctx, volumeID, hostdisk.UnmountNormal)
	if errors.Is(err, hostdisk.ErrBusy) {
		return // still in use: keep it attached, say why
	}
	fmt.Println("unmounted:", u.Method)
	// ...then detach through Nova and wait for the disk to go:
	_ = h.WaitForDeviceGone(ctx, volumeID)
}
