package reconciler

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"
)

// AuditRecord is one line of the audit log: one executed action (or one
// action whose preconditions no longer held when re-checked).
type AuditRecord struct {
	Time       time.Time   `json:"time"`
	Host       string      `json:"host"`
	Action     ActionKind  `json:"action"`
	FindingKey string      `json:"finding_key"`
	Class      Class       `json:"class"`
	Target     string      `json:"target"`
	Domain     string      `json:"domain,omitempty"`
	Instance   string      `json:"instance,omitempty"`
	Volume     string      `json:"volume,omitempty"`
	Attachment string      `json:"attachment,omitempty"`
	Mountpoint string      `json:"mountpoint,omitempty"`
	Before     any         `json:"before"`
	After      any         `json:"after"`
	Result     ActionState `json:"result"` // done, pending, failed, precondition_failed
	Error      string      `json:"error,omitempty"`
}

// NewAuditRecord fills a record from an action and its outcome. before and
// after are the item's state as re-read just before and just after acting
// (e.g. the Disk, the Volume); actErr is the act error, if any.
func NewAuditRecord(now time.Time, host string, a Action, result ActionState, before, after any, actErr error) AuditRecord {
	rec := AuditRecord{
		Time: now.UTC(), Host: host, Action: a.Kind, FindingKey: a.FindingKey, Class: a.Class,
		Target: a.Target(), Domain: a.Domain, Instance: a.Instance, Volume: a.Volume,
		Attachment: a.Attachment, Mountpoint: a.Mountpoint,
		Before: before, After: after, Result: result,
	}
	if actErr != nil {
		rec.Error = actErr.Error()
	}
	return rec
}

// AuditLog appends JSON lines to a file opened with O_APPEND (mode 0600), one
// write and one fsync per record, so concurrent writers never interleave
// within a line and a record that Append returned for is on disk.
type AuditLog struct {
	mu   sync.Mutex
	path string
	f    *os.File
}

// OpenAuditLog opens (creating if needed) the audit log at path.
func OpenAuditLog(path string) (*AuditLog, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit log %s: %w", path, err)
	}
	return &AuditLog{path: path, f: f}, nil
}

// Append writes rec as one line.
func (l *AuditLog) Append(rec AuditRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("audit log %s: encode %s record: %w", l.path, rec.Action, err)
	}
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.f.Write(b); err != nil {
		return fmt.Errorf("audit log %s: append %s record: %w", l.path, rec.Action, err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("audit log %s: fsync: %w", l.path, err)
	}
	return nil
}

// Close closes the file.
func (l *AuditLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.f.Close(); err != nil {
		return fmt.Errorf("audit log %s: close: %w", l.path, err)
	}
	return nil
}
