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
	good := `{"version":2,"domains":1,"servers":0,"sightings":{"k":{"class":"zombie_disk","first_seen":"2026-11-25T20:00:00Z","last_seen":"2026-11-25T20:10:00Z","count":2}},` +
		`"pending_detaches":{"k":{"domain":"d","volume":"v","since":"2026-11-25T20:05:00Z","last_attempt":"2026-11-25T20:10:00Z","attempts":9}}}`
	if m, err := ParseMemory(strings.NewReader(good)); err != nil || m.PendingDetaches["k"].Attempts != 9 {
		t.Fatalf("good memory rejected: %+v, %v", m, err)
	}
	bad := map[string]string{
		"truncated":              good[:40],
		"empty file":             "",
		"not json":               "hello",
		"newer version":          strings.Replace(good, `"version":2`, `"version":3`, 1),
		"version 0":              strings.Replace(good, `"version":2`, `"version":0`, 1),
		"no version":             strings.Replace(good, `"version":2,`, ``, 1),
		"v1 with pending":        strings.Replace(good, `"version":2`, `"version":1`, 1),
		"pending without domain": strings.Replace(good, `"domain":"d"`, `"domain":""`, 1),
		"pending without volume": strings.Replace(good, `"volume":"v"`, `"volume":""`, 1),
		"pending zero attempts":  strings.Replace(good, `"attempts":9`, `"attempts":0`, 1),
		"pending last before":    strings.Replace(good, `"last_attempt":"2026-11-25T20:10:00Z"`, `"last_attempt":"2026-11-25T20:00:00Z"`, 1),
		"pending without since":  strings.Replace(good, `"since":"2026-11-25T20:05:00Z",`, ``, 1),
		"pending unknown field":  strings.Replace(good, `"attempts":9`, `"attempts":9,"x":1`, 1),
		"unknown field":          strings.Replace(good, `"servers":0`, `"servers":0,"extra":true`, 1),
		"trailing data":          good + `{}`,
		"zero count":             strings.Replace(good, `"count":2`, `"count":0`, 1),
		"last before":            strings.Replace(good, `20:10:00Z`, `19:00:00Z`, 1),
		"negative counts":        strings.Replace(good, `"domains":1`, `"domains":-1`, 1),
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
	for _, name := range []string{"newer version", "version 0", "no version"} {
		if _, err := ParseMemory(strings.NewReader(bad[name])); !errors.Is(err, ErrMemoryVersion) {
			t.Errorf("%s: %v, want ErrMemoryVersion", name, err)
		}
	}
	// An unreadable path is an error, not an empty memory.
	if _, err := LoadMemory(dir); err == nil || errors.Is(err, ErrCorruptMemory) {
		t.Errorf("directory as memory file: %v", err)
	}
}

// TestMemoryMigratesVersion1: a version 1 file (written before pending live
// detaches were remembered) loads as the current version with the same
// sightings and no pending detaches, and is saved back as the current
// version.
func TestMemoryMigratesVersion1(t *testing.T) {
	v1 := `{"version":1,"host":"cmp-1","last_run":"2026-11-25T20:10:00Z","domains":3,"servers":2,` +
		`"sightings":{"zombie_disk/i/v":{"class":"zombie_disk","first_seen":"2026-11-25T20:00:00Z","last_seen":"2026-11-25T20:10:00Z","count":2}}}`
	path := filepath.Join(t.TempDir(), "memory.json")
	if err := os.WriteFile(path, []byte(v1), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := LoadMemory(path)
	if err != nil {
		t.Fatalf("version 1 refused: %v", err)
	}
	want := Memory{Version: MemoryVersion, Host: "cmp-1", LastRun: t0.Add(10 * time.Minute), Domains: 3, Servers: 2,
		Sightings: map[string]Sighting{"zombie_disk/i/v": {Class: ClassZombieDisk, FirstSeen: t0, LastSeen: t0.Add(10 * time.Minute), Count: 2}}}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("migrated:\n got %+v\nwant %+v", m, want)
	}
	if err := SaveMemory(path, m); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), `"version": 2`) {
		t.Errorf("saved back as %s, want version 2", b)
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
