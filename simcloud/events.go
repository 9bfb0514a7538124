package simcloud

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// EventKind names what happened to a volume.
type EventKind string

const (
	// EventAttach: the backends made the volume visible, read-write, to
	// the instance (Nova attach reached the hypervisor).
	EventAttach EventKind = "attach"
	// EventDetach: the backends removed the volume from the instance.
	EventDetach EventKind = "detach"
	// EventAttachFailed: a backend refused; Nova rolled the attach back.
	EventAttachFailed EventKind = "attach_failed"
	// EventDetachFailed: a backend refused; Nova rolled the volume back to
	// in-use and kept the mapping.
	EventDetachFailed EventKind = "detach_failed"
	// EventForceDetach: Cinder os-force_detach dropped an attachment
	// record. The backends were not called: if the volume was attached on
	// a host it still is (a zombie disk).
	EventForceDetach EventKind = "force_detach"
	// EventCinderDetach: os-detach or DELETE /attachments/{id} by an API
	// caller dropped an attachment record (Cinder only).
	EventCinderDetach EventKind = "cinder_detach"
	// EventCinderAttach: os-attach or os-complete marked an attachment
	// attached in Cinder only.
	EventCinderAttach EventKind = "cinder_attach"
	// EventResetStatus: os-reset_status rewrote a volume (and with
	// attach_status=detached dropped its attachments), Cinder only.
	EventResetStatus EventKind = "reset_status"
)

// Event is one line of the event log.
type Event struct {
	Time         time.Time `json:"time"`
	Kind         EventKind `json:"kind"`
	VolumeID     string    `json:"volume_id"`
	InstanceID   string    `json:"instance_id,omitempty"`
	Host         string    `json:"host,omitempty"`
	NodeDevDir   string    `json:"node_dev_dir,omitempty"`
	AttachmentID string    `json:"attachment_id,omitempty"`
	Mode         string    `json:"mode,omitempty"`
	Device       string    `json:"device,omitempty"`
	Detail       string    `json:"detail,omitempty"`
}

type eventLog struct {
	path string
	mu   sync.Mutex
	f    *os.File
	mem  []Event
}

// openEventLog starts a fresh log at path: it covers one simulator's life,
// so a replay never mixes in a previous run's attachments.
func openEventLog(path string) (*eventLog, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("simcloud: event log: %w", err)
	}
	return &eventLog{path: path, f: f}, nil
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mem = append(l.mem, e)
	if l.f != nil {
		b, _ := json.Marshal(e)
		_, _ = l.f.Write(append(b, '\n'))
	}
}

func (l *eventLog) all() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.mem)
}

func (l *eventLog) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// ReadEvents parses a JSON-lines event log.
func ReadEvents(path string) ([]Event, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []Event
	for i, line := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var e Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, i+1, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// OverlapError reports a volume attached read-write to two instances at
// once on the backends.
type OverlapError struct {
	VolumeID  string
	Instances []string // sorted
	At        time.Time
}

func (e *OverlapError) Error() string {
	return fmt.Sprintf("volume %s attached rw to %d instances at once (%s) at %s", e.VolumeID,
		len(e.Instances), strings.Join(e.Instances, ", "), e.At.Format(time.RFC3339Nano))
}

// CheckExclusive replays the backend-level attach/detach events and
// returns an *OverlapError for the first moment a volume was attached
// read-write to more than one instance, or nil if that never happened.
// Cinder-only events are ignored: they do not change what a host sees.
func CheckExclusive(events []Event) error {
	holders := map[string]map[string]bool{}
	for _, e := range events {
		switch e.Kind {
		case EventAttach:
			h := holders[e.VolumeID]
			if h == nil {
				h = map[string]bool{}
				holders[e.VolumeID] = h
			}
			h[e.InstanceID] = true
			if len(h) > 1 && (e.Mode == "" || e.Mode == "rw") {
				var ids []string
				for id := range h {
					ids = append(ids, id)
				}
				sort.Strings(ids)
				return &OverlapError{VolumeID: e.VolumeID, Instances: ids, At: e.Time}
			}
		case EventDetach:
			delete(holders[e.VolumeID], e.InstanceID)
		}
	}
	return nil
}
