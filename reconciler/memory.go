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

// MemoryVersion is the version of the memory file format this code writes.
// It also reads version 1 (no pending live detaches), migrating it on load;
// any other version is refused with ErrMemoryVersion.
//
//	1: sightings and listing sizes
//	2: + pending_detaches
const MemoryVersion = 2

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
	// PendingDetaches are live detaches the guest has not acknowledged,
	// by finding key: the disk already left the persistent config, so later
	// runs retry only the live part, with one short attempt per run.
	PendingDetaches map[string]PendingDetach `json:"pending_detaches,omitempty"`
}

// PendingDetach is a zombie disk whose live detach is pending: removed
// from the persistent definition, still attached to the running domain
// because the guest never acknowledged the unplug (a firmware-only or hung
// guest). A power cycle drops it; until then each run asks once more.
type PendingDetach struct {
	Domain string `json:"domain"` // libvirt domain UUID
	Volume string `json:"volume"` // Cinder volume id (the disk's serial)
	// Since is when the live detach was first reported pending.
	Since time.Time `json:"since"`
	// LastAttempt is when the live detach was last asked for.
	LastAttempt time.Time `json:"last_attempt"`
	// Attempts counts the live detach requests made so far, over all runs.
	Attempts int `json:"attempts"`
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
	c.PendingDetaches = maps.Clone(m.PendingDetaches)
	if len(c.PendingDetaches) == 0 {
		c.PendingDetaches = nil
	}
	return c
}

// ErrCorruptMemory is wrapped when the memory file exists but cannot be
// trusted (bad JSON, unknown version, impossible values). The reconciler
// must not guess: an operator removes or fixes the file.
var ErrCorruptMemory = errors.New("corrupt reconciler memory")

// ErrMemoryVersion is wrapped (together with ErrCorruptMemory) when the
// memory file has a version this build cannot read: a newer build wrote it
// (a downgrade), or it has no version at all.
var ErrMemoryVersion = errors.New("unsupported reconciler memory version")

// ParseMemory decodes a memory file's bytes strictly: unknown fields, an
// unsupported version or trailing data are errors. Version 1 is migrated to
// the current version (it has no pending live detaches; a zombie whose live
// detach was pending under version 1 gets one more full detach, after which
// it is remembered).
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
	switch m.Version {
	case MemoryVersion:
	case 1:
		if m.PendingDetaches != nil {
			return Memory{}, fmt.Errorf("%w: version 1 has no pending_detaches", ErrCorruptMemory)
		}
		m.Version = MemoryVersion
	default:
		hint := "fix or remove the file"
		if m.Version > MemoryVersion {
			hint = "a newer cinderwarden wrote it: upgrade, or remove the file to start counting afresh"
		}
		return Memory{}, fmt.Errorf("%w: %w: version %d, this build reads versions 1 and %d (%s)",
			ErrCorruptMemory, ErrMemoryVersion, m.Version, MemoryVersion, hint)
	}
	if m.Domains < 0 || m.Servers < 0 || m.DomainsEmptyRuns < 0 || m.ServersEmptyRuns < 0 {
		return Memory{}, fmt.Errorf("%w: negative counts", ErrCorruptMemory)
	}
	for k, s := range m.Sightings {
		if s.Count < 1 || s.FirstSeen.IsZero() || s.LastSeen.Before(s.FirstSeen) {
			return Memory{}, fmt.Errorf("%w: sighting %q: count %d, first %s, last %s", ErrCorruptMemory, k, s.Count, s.FirstSeen, s.LastSeen)
		}
	}
	for k, p := range m.PendingDetaches {
		if p.Domain == "" || p.Volume == "" || p.Attempts < 1 || p.Since.IsZero() || p.LastAttempt.Before(p.Since) {
			return Memory{}, fmt.Errorf("%w: pending detach %q: domain %q, volume %q, %d attempts, since %s, last %s",
				ErrCorruptMemory, k, p.Domain, p.Volume, p.Attempts, p.Since, p.LastAttempt)
		}
	}
	if len(m.PendingDetaches) == 0 {
		m.PendingDetaches = nil
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
