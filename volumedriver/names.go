package volumedriver

import "fmt"

// MaxNameLen is Cinder's limit on a volume name (the `name` column is
// String(255)).
const MaxNameLen = 255

// ValidateName accepts a Docker volume name that both Docker and Cinder
// accept, so that it can be the Cinder volume's name unchanged. It is checked
// before any API call.
//
// Docker: moby's local driver and container names use RestrictedNamePattern,
// `^[a-zA-Z0-9][a-zA-Z0-9_.-]+$` (daemon/names/names.go). Docker does not
// apply it to plugin volumes, but a name outside it breaks elsewhere: with a
// "/" `docker run -v` reads it as a host path, with ":" it splits the spec,
// and a single character is read as a Windows drive letter (moby #25773).
// Cinder: at most 255 characters.
//
// Errors are *NameError (errors.Is(err, ErrInvalidName)).
func ValidateName(name string) error {
	if name == "" {
		return &NameError{}
	}
	if len(name) < 2 {
		return &NameError{Name: name, Reason: "it must be at least 2 characters long"}
	}
	if !isAlnum(name[0]) {
		return &NameError{Name: name, Reason: "it must start with a letter or a digit"}
	}
	pos := 0
	for _, r := range name {
		pos++
		if r < 0x80 && (isAlnum(byte(r)) || r == '_' || r == '.' || r == '-') {
			continue
		}
		return &NameError{Name: name, Reason: fmt.Sprintf(
			"character %q at position %d is not allowed (allowed: letters, digits, '_', '.', '-')", r, pos)}
	}
	if len(name) > MaxNameLen {
		return &NameError{Name: name, Reason: fmt.Sprintf(
			"it is %d characters long, Cinder allows at most %d", len(name), MaxNameLen)}
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
