package hostdisk

import (
	"fmt"
	"path/filepath"
	"strings"
)

// serialLen is how much of a volume id fits in a virtio or QEMU SCSI serial.
const serialLen = 20

// ValidateVolumeID accepts what can safely become one path component: ASCII
// letters, digits, '-', '_' and '.', at most 255 bytes, not "." or "..".
// Cinder volume ids (UUIDs) pass.
func ValidateVolumeID(id string) error {
	if id == "" || id == "." || id == ".." || len(id) > 255 {
		return fmt.Errorf("volume id %q: %w: must be 1 to 255 characters, and not \".\" or \"..\"", id, ErrInvalidArgument)
	}
	for _, r := range id {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
		if !ok {
			return fmt.Errorf("volume id %q: %w: character %q not allowed (letters, digits, - _ . only)", id, ErrInvalidArgument, r)
		}
	}
	return nil
}

// ByIDCandidates returns, best first, the paths under <devRoot>/disk/by-id at
// which the disk of Cinder volume volumeID appears: virtio and QEMU SCSI
// serials (the first 20 characters of the id, then the whole id) and the WWN
// (the id without dashes). Duplicates (short ids) are dropped.
func ByIDCandidates(devRoot, volumeID string) []string {
	short := volumeID
	if len(short) > serialLen {
		short = short[:serialLen]
	}
	names := []string{
		"virtio-" + short,
		"virtio-" + volumeID,
		"scsi-0QEMU_QEMU_HARDDISK_" + short,
		"scsi-0QEMU_QEMU_HARDDISK_" + volumeID,
		"wwn-0x" + strings.ReplaceAll(volumeID, "-", ""),
	}
	dir := filepath.Join(devRoot, "disk", "by-id")
	out := make([]string, 0, len(names))
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		out = append(out, filepath.Join(dir, n))
	}
	return out
}

// SerialMatches reports whether a disk serial (the content of
// /sys/block/<name>/serial) belongs to volumeID: it is the whole id or its
// first 20 characters. Surrounding white space is ignored; an empty serial
// never matches.
func SerialMatches(serial, volumeID string) bool {
	s := strings.TrimSpace(serial)
	if s == "" || volumeID == "" {
		return false
	}
	if s == volumeID {
		return true
	}
	return len(volumeID) > serialLen && s == volumeID[:serialLen]
}
