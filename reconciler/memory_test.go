package reconciler

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestMemoryRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "memory.json")
	m, err := LoadMemory(path)
	if err != nil || len(m.Sightings) != 0 || m.Version != MemoryVersion {
		t.Fatalf("missing file: %+v, %v", m, err)
	}
	// A real Plan's memory, saved and loaded, is the same.
	r := Plan(obsOf([]Domain{domain(1, vdisk("vdb", 1))}, []Server{server(1)}, []Volume{volume(1, "available")}), m, DefaultPolicy(), t0)
	if err := SaveMemory(path, r.Memory); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", st.Mode(), err)
	}
	back, err := LoadMemory(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, r.Memory) || back.Domains != 1 || len(back.Sightings) != 1 {
		t.Fatalf("round trip:\n got %+v\nwant %+v", back, r.Memory)
	}
	// Overwrite: still atomic, no temp files left behind.
	r2 := Plan(obsOf([]Domain{domain(1, vdisk("vdb", 1))}, []Server{server(1)}, []Volume{volume(1, "available")}), back, DefaultPolicy(), t0.Add(time.Minute))
	if err := SaveMemory(path, r2.Memory); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only memory.json", len(entries))
	}
	again, err := LoadMemory(path)
	if err != nil || again.Sightings["zombie_disk/"+inst(1)+"/"+vol(1)].Count != 2 {
		t.Errorf("after second save: %+v, %v", again, err)
	}
}

func TestMemoryCorrupt(t *testing.T) {
	good := `{"version":1,"domains":1,"servers":0,"sightings":{"k":{"class":"zombie_disk","first_seen":"2026-11-25T20:00:00Z","last_seen":"2026-11-25T20:10:00Z","count":2}}}`
	if _, err := ParseMemory(strings.NewReader(good)); err != nil {
		t.Fatalf("good memory rejected: %v", err)
	}
	bad := map[string]string{
		"truncated":       good[:40],
		"empty file":      "",
		"not json":        "hello",
		"wrong version":   strings.Replace(good, `"version":1`, `"version":2`, 1),
		"no version":      strings.Replace(good, `"version":1,`, ``, 1),
		"unknown field":   strings.Replace(good, `"servers":0`, `"servers":0,"extra":true`, 1),
		"trailing data":   good + `{}`,
		"zero count":      strings.Replace(good, `"count":2`, `"count":0`, 1),
		"last before":     strings.Replace(good, `20:10:00Z`, `19:00:00Z`, 1),
		"negative counts": strings.Replace(good, `"domains":1`, `"domains":-1`, 1),
	}
	dir := t.TempDir()
	for name, body := range bad {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadMemory(path); !errors.Is(err, ErrCorruptMemory) {
			t.Errorf("%s: %v, want ErrCorruptMemory", name, err)
		}
	}
	// An unreadable path is an error, not an empty memory.
	if _, err := LoadMemory(dir); err == nil || errors.Is(err, ErrCorruptMemory) {
		t.Errorf("directory as memory file: %v", err)
	}
}

func TestSaveMemoryFailsCleanly(t *testing.T) {
	if err := SaveMemory(filepath.Join(t.TempDir(), "no", "such", "dir", "memory.json"), NewMemory()); err == nil {
		t.Fatal("save into a missing directory succeeded")
	}
}

func TestAuditLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	if err := os.WriteFile(path, []byte(`{"earlier":"line"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := OpenAuditLog(path)
	if err != nil {
		t.Fatal(err)
	}
	r := Plan(obsOf([]Domain{domain(1, vdisk("vdb", 1))}, []Server{server(1)}, []Volume{volume(1, "available")}), NewMemory(), immediate(), t0)
	a := r.Actions[0]
	disk := *a.Disk
	recs := []AuditRecord{
		NewAuditRecord(t0, testHost, a, StateDone, disk, nil, nil),
		NewAuditRecord(t0.Add(time.Second), testHost, a, StateFailed, disk, disk, errors.New("virDomainDetachDeviceFlags: internal error")),
	}
	for _, rec := range recs {
		if err := l.Append(rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode())
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var lines []map[string]any
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 3 || lines[0]["earlier"] != "line" {
		t.Fatalf("lines %v (earlier content must be kept)", lines)
	}
	if lines[1]["action"] != "libvirt_detach" || lines[1]["result"] != "done" || lines[1]["volume"] != vol(1) ||
		lines[1]["before"].(map[string]any)["serial"] != vol(1) || lines[1]["after"] != nil || lines[1]["time"] != "2026-11-25T20:00:00Z" {
		t.Errorf("record 1: %v", lines[1])
	}
	if lines[2]["result"] != "failed" || !strings.Contains(lines[2]["error"].(string), "internal error") {
		t.Errorf("record 2: %v", lines[2])
	}
}
