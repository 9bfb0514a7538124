package reconciler

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"time"
)

// MemoryVersion is the version of the memory file format this code writes
// and reads.
const MemoryVersion = 1

// Memory is what the reconciler remembers between runs: sightings of each
// discrepancy, and how much the last complete run saw (to tell a real empty
// listing from a broken one).
type Memory struct {
	Version int       `json:"version"`
	Host    string    `json:"host,omitempty"`
	LastRun time.Time `json:"last_run,omitzero"`
	// Domains is how many libvirt domains the last usable libvirt listing
	// had; Servers how many Nova servers on this host.
	Domains int `json:"domains"`
	Servers int `json:"servers"`
	// DomainsEmptyRuns and ServersEmptyRuns count consecutive runs whose
	// listing came back empty although the one before was not; such a
	// listing is believed only after max(Policy.MinSightings, 3) runs.
	DomainsEmptyRuns int                 `json:"domains_empty_runs,omitempty"`
	ServersEmptyRuns int                 `json:"servers_empty_runs,omitempty"`
	Sightings        map[string]Sighting `json:"sightings"`
}

// Sighting is one discrepancy seen in consecutive runs.
type Sighting struct {
	Class     Class     `json:"class"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	Count     int       `json:"count"`
}

// NewMemory is an empty memory.
func NewMemory() Memory {
	return Memory{Version: MemoryVersion, Sightings: map[string]Sighting{}}
}

func (m Memory) clone() Memory {
	c := m
	c.Version = MemoryVersion
	c.Sightings = maps.Clone(m.Sightings)
	if c.Sightings == nil {
		c.Sightings = map[string]Sighting{}
	}
	return c
}

// ErrCorruptMemory is wrapped when the memory file exists but cannot be
// trusted (bad JSON, unknown version, impossible values). The reconciler
// must not guess: an operator removes or fixes the file.
var ErrCorruptMemory = errors.New("corrupt reconciler memory")

// ParseMemory decodes a memory file's bytes strictly: unknown fields, a
// different version or trailing data are errors.
func ParseMemory(r io.Reader) (Memory, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var m Memory
	if err := dec.Decode(&m); err != nil {
		return Memory{}, fmt.Errorf("%w: %w", ErrCorruptMemory, err)
	}
	if dec.More() {
		return Memory{}, fmt.Errorf("%w: trailing data after the JSON object", ErrCorruptMemory)
	}
	if m.Version != MemoryVersion {
		return Memory{}, fmt.Errorf("%w: version %d, this build reads version %d", ErrCorruptMemory, m.Version, MemoryVersion)
	}
	if m.Domains < 0 || m.Servers < 0 || m.DomainsEmptyRuns < 0 || m.ServersEmptyRuns < 0 {
		return Memory{}, fmt.Errorf("%w: negative counts", ErrCorruptMemory)
	}
	for k, s := range m.Sightings {
		if s.Count < 1 || s.FirstSeen.IsZero() || s.LastSeen.Before(s.FirstSeen) {
			return Memory{}, fmt.Errorf("%w: sighting %q: count %d, first %s, last %s", ErrCorruptMemory, k, s.Count, s.FirstSeen, s.LastSeen)
		}
	}
	if m.Sightings == nil {
		m.Sightings = map[string]Sighting{}
	}
	return m, nil
}

// LoadMemory reads the memory file at path. A missing file is an empty
// memory (first run); anything unreadable or corrupt is an error.
func LoadMemory(path string) (Memory, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return NewMemory(), nil
	}
	if err != nil {
		return Memory{}, fmt.Errorf("reconciler memory %s: %w", path, err)
	}
	m, err := ParseMemory(bytes.NewReader(b))
	if err != nil {
		return Memory{}, fmt.Errorf("reconciler memory %s: %w", path, err)
	}
	return m, nil
}

// SaveMemory writes m to path atomically: a temporary file in the same
// directory (mode 0600), fsync, rename over path, fsync of the directory. A
// crash leaves either the old or the new file, never a torn one.
func SaveMemory(path string, m Memory) (err error) {
	m = m.clone()
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("reconciler memory %s: encode: %w", path, err)
	}
	b = append(b, '\n')
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("reconciler memory %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("reconciler memory %s: chmod temp: %w", path, err)
	}
	if _, err = tmp.Write(b); err != nil {
		return fmt.Errorf("reconciler memory %s: write temp: %w", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("reconciler memory %s: fsync temp: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("reconciler memory %s: close temp: %w", path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("reconciler memory %s: rename: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("reconciler memory %s: open dir for fsync: %w", path, err)
	}
	defer d.Close()
	if err = d.Sync(); err != nil {
		return fmt.Errorf("reconciler memory %s: fsync dir: %w", path, err)
	}
	return nil
}
