package volumedriver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// StateVersion is the state file format written by this code.
const StateVersion = 1

// NodeState is the content of the state file: what this node's plugin
// knows that neither mountinfo nor Cinder can tell it (above all the Docker
// mount ids of running containers: Docker does not re-send Mount to a
// restarted plugin).
type NodeState struct {
	Version int `json:"version"`
	// InstanceID of the node that wrote the file (a state file copied with a
	// disk image to another instance describes nothing there).
	InstanceID string `json:"instance_id,omitempty"`
	// BootID is /proc/sys/kernel/random/boot_id when written: a different
	// boot means no container from the old file is still running.
	BootID string `json:"boot_id,omitempty"`
	// Volumes, sorted by volume id, unique.
	Volumes []VolumeState `json:"volumes"`
}

// Volume returns the state of one volume, if recorded.
func (n NodeState) Volume(volumeID string) (VolumeState, bool) {
	i, ok := slices.BinarySearchFunc(n.Volumes, volumeID, func(v VolumeState, id string) int {
		return strings.Compare(v.VolumeID, id)
	})
	if !ok {
		return VolumeState{}, false
	}
	return n.Volumes[i].clone(), true
}

// With returns a copy with the volume's state replaced (or added). A state
// in PhaseDetached with nothing waiting is dropped: the file only lists
// volumes this node holds or is working on.
func (n NodeState) With(s VolumeState) NodeState {
	out := n
	out.Volumes = make([]VolumeState, 0, len(n.Volumes)+1)
	for _, v := range n.Volumes {
		if v.VolumeID != s.VolumeID {
			out.Volumes = append(out.Volumes, v.clone())
		}
	}
	if !(s.Phase == PhaseDetached && len(s.Pending) == 0 && len(s.Releasing) == 0) {
		out.Volumes = append(out.Volumes, s.clone())
	}
	slices.SortFunc(out.Volumes, func(a, b VolumeState) int { return strings.Compare(a.VolumeID, b.VolumeID) })
	return out
}

// StateFileError is a state file that cannot be used. It unwraps to
// ErrStateCorrupt or ErrStateVersion, and to the underlying error.
type StateFileError struct {
	Path  string
	Class error
	Err   error
}

func (e *StateFileError) Error() string {
	if e.Class == ErrStateVersion {
		return fmt.Sprintf("state file %s: %v", e.Path, e.Err)
	}
	return fmt.Sprintf("state file %s is corrupt: %v; it was left in place: move it aside to start without it "+
		"(mounts are then recovered from mountinfo, but the mount ids of running containers are lost)", e.Path, e.Err)
}

func (e *StateFileError) Unwrap() []error { return []error{e.Class, e.Err} }

// EncodeState renders the state file content. Every volume state must pass
// Check and volume ids must be unique; the output is sorted and stable.
func EncodeState(n NodeState) ([]byte, error) {
	n.Version = StateVersion
	vols := make([]VolumeState, len(n.Volumes))
	for i, v := range n.Volumes {
		if err := v.Check(); err != nil {
			return nil, fmt.Errorf("encode state: %w", err)
		}
		vols[i] = v.clone()
	}
	slices.SortFunc(vols, func(a, b VolumeState) int { return strings.Compare(a.VolumeID, b.VolumeID) })
	for i := 1; i < len(vols); i++ {
		if vols[i].VolumeID == vols[i-1].VolumeID {
			return nil, fmt.Errorf("encode state: volume %s recorded twice", vols[i].VolumeID)
		}
	}
	n.Volumes = vols // never nil (make above): the file always says "volumes": []
	b, err := json.MarshalIndent(n, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode state: %w", err)
	}
	return append(b, '\n'), nil
}

// DecodeState parses state file content strictly: unknown fields, trailing
// data, a wrong version, duplicate or inconsistent volumes are errors. The
// returned errors are bare (LoadState adds the path and the class).
func DecodeState(b []byte) (NodeState, error) {
	var probe struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return NodeState{}, err
	}
	if probe.Version == nil {
		return NodeState{}, errors.New("no version field")
	}
	if *probe.Version != StateVersion {
		return NodeState{}, &versionError{*probe.Version}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var n NodeState
	if err := dec.Decode(&n); err != nil {
		return NodeState{}, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return NodeState{}, errors.New("trailing data after the JSON document")
	}
	for i, v := range n.Volumes {
		if err := v.Check(); err != nil {
			return NodeState{}, err
		}
		if i > 0 && n.Volumes[i-1].VolumeID >= v.VolumeID {
			return NodeState{}, fmt.Errorf("volumes not sorted or volume %s recorded twice", v.VolumeID)
		}
	}
	if n.Volumes == nil {
		n.Volumes = []VolumeState{}
	}
	return n, nil
}

type versionError struct{ v int }

func (e *versionError) Error() string {
	return fmt.Sprintf("format version %d, this plugin reads version %d", e.v, StateVersion)
}

// LoadState reads the state file. A missing file is an empty state (first
// start). A file that cannot be parsed is a *StateFileError: state is never
// dropped silently. It only reads: safe while a writer runs.
func LoadState(path string) (NodeState, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return NodeState{Version: StateVersion, Volumes: []VolumeState{}}, nil
	}
	if err != nil {
		return NodeState{}, fmt.Errorf("read state file: %w", err)
	}
	n, err := DecodeState(b)
	if err != nil {
		class := ErrStateCorrupt
		var ve *versionError
		if errors.As(err, &ve) {
			class = ErrStateVersion
		}
		return NodeState{}, &StateFileError{Path: path, Class: class, Err: err}
	}
	return n, nil
}

func tempPattern(path string) string { return "." + filepath.Base(path) + ".tmp-*" }

func removeStaleTemps(path string) {
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(path), tempPattern(path)))
	for _, m := range matches {
		_ = os.Remove(m)
	}
}

// SaveState writes the state file atomically: a temporary file in the same
// directory (mode 0600), fsync, rename over the old file, fsync of the
// directory. A crash (SIGKILL, power loss) leaves either the old or the new
// file, never a mix. The directory is created 0700; an existing directory
// readable by others is refused. There must be one writer per file (the
// plugin serialises its saves): leftover temporary files of a write
// interrupted by a crash are removed here.
func SaveState(path string, n NodeState) (err error) {
	b, err := EncodeState(n)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := ensurePrivateDir(dir); err != nil {
		return err
	}
	removeStaleTemps(path)
	f, err := os.CreateTemp(dir, tempPattern(path))
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("save state: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("save state: write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("save state: fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("save state: fsync directory %s: %w", dir, err)
	}
	return nil
}

func ensurePrivateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("state directory %s has mode %04o; it must be 0700 (it holds node state)", dir, perm)
	}
	return nil
}
