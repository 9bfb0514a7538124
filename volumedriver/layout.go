package volumedriver

import (
	"path/filepath"
)

// DataDirName is the subdirectory of a volume's filesystem handed to Docker,
// so that lost+found does not break programs that want an empty directory
// (cinder-docker-driver #12).
const DataDirName = "data"

// Layout places volumes under the mount root: the filesystem of volume ID is
// mounted at <Root>/<ID>, and Docker gets <Root>/<ID>/data.
type Layout struct {
	Root string // absolute, cleaned
}

// MountDir is where the volume's filesystem is mounted.
func (l Layout) MountDir(volumeID string) string { return filepath.Join(l.Root, volumeID) }

// DataDir is the path handed to Docker.
func (l Layout) DataDir(volumeID string) string {
	return filepath.Join(l.Root, volumeID, DataDirName)
}

// VolumeIDOf returns the volume id for a mountpoint directly under the root
// (as found in mountinfo), and false for anything else.
func (l Layout) VolumeIDOf(mountpoint string) (string, bool) {
	dir, base := filepath.Split(filepath.Clean(mountpoint))
	if filepath.Clean(dir) != filepath.Clean(l.Root) || !ValidVolumeID(base) {
		return "", false
	}
	return base, true
}

// ValidVolumeID accepts what a Cinder volume id can be (a UUID; the
// simulator uses the same form) and nothing that could escape the mount
// root: 1..64 characters of letters, digits and '-', starting with a letter
// or digit.
func ValidVolumeID(id string) bool {
	if id == "" || len(id) > 64 || !isAlnum(id[0]) {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !isAlnum(id[i]) && id[i] != '-' {
			return false
		}
	}
	return true
}

// IsUUID reports whether s has the canonical UUID form (8-4-4-4-12 hex
// digits); a snapshot or source given in this form is looked up as an id
// first, anything else as a name.
func IsUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}
