// Package loopnode is the node side of the simulator: a [simcloud.ComputeBackend]
// that makes a Nova volume attachment visible inside a simulated instance the
// way a KVM guest sees a virtio disk.
//
// On attach it creates the volume's sparse backing file if absent (an
// existing one is never shrunk or truncated, only grown to SizeGiB, so data
// survives detach and re-attach and os-extend is honoured), binds it to a
// free loop device with LOOP_CTL_GET_FREE + LOOP_CONFIGURE (Linux 5.8 or
// later), and creates
//
//	<NodeDevDir>/disk/by-id/virtio-<first 20 chars of the volume id> -> /dev/loopN
//
// as udev does in the guest. The link is absolute and points at the host's
// device node; no device node is created under NodeDevDir, so NodeDevDir may
// sit on a nodev file system such as a test's temp dir.
//
// Each attachment gets its own loop device, even when one volume is attached
// to two instances at once (a zombie left by a Cinder-only force-detach, or
// multi-attach): both devices share the backing file, so both instances see
// the same bytes. A loop device records which attachment it belongs to in its
// lo_file_name, "<serial>@<instance id>" (see [Tag]); the backing file itself
// is what the kernel shows in /sys/block/loopN/loop/backing_file and in
// `losetup -l`. Detach finds the device from those two facts alone, so it
// works after a process restart and never touches another attachment's
// device.
//
// Detach removes the by-id link and releases the loop device (LOOP_CLR_FD).
// When the device is still in use — typically a file system mounted from it —
// detach models a real hot-unplug: the link disappears, the device is
// "yanked" to a capacity of zero so every further I/O through the stale mount
// fails with EIO (data not yet written back is lost, as it would be in a
// guest), and the kernel releases the device at its last close (autoclear),
// i.e. when the stale mount is unmounted. Such a detach succeeds and is
// logged as a warning; [Devices] shows the device with Autoclear set and Size
// zero until it is gone.
//
// Loop devices outlive the process. [DetachAll] releases every device backed
// by a file under a directory; tests and `cinderwarden sim` call it on
// shutdown, and [Devices] lets a test prove nothing leaked.
package loopnode
