package volumedriver

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func sampleState() NodeState {
	n := NodeState{InstanceID: "inst-a", BootID: "boot-1", Volumes: []VolumeState{}}
	n = n.With(st(PhaseMounted, func(s *VolumeState) { s.Refs, s.Generation = []string{"m1", "m2"}, 3 }))
	n = n.With(st(PhaseAttaching, func(s *VolumeState) {
		s.VolumeID, s.MountDir = "1aaaaaaa-0000-4000-8000-000000000001", "/r/1aaaaaaa-0000-4000-8000-000000000001"
	}))
	return n
}

func TestStateRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "state.json")
	want := sampleState()
	if err := SaveState(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := LoadState(path)
	if err != nil {
		t.Fatal(err)
	}
	want.Version = StateVersion
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
	if got.Volumes[0].VolumeID != tVol {
		t.Errorf("volumes not sorted by id: %+v", got.Volumes)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %04o, want 0600", fi.Mode().Perm())
	}
	di, _ := os.Stat(filepath.Dir(path))
	if di.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %04o, want 0700", di.Mode().Perm())
	}
	// The file is readable JSON with phase names, not numbers.
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), `"phase": "mounted"`) || !strings.Contains(string(b), `"version": 1`) {
		t.Errorf("file content:\n%s", b)
	}
	// A detached volume with nothing waiting leaves the file.
	v, _ := got.Volume(tVol)
	v.Phase, v.Refs, v.AttachmentID, v.Device = PhaseDetached, nil, "", ""
	if n := got.With(v); len(n.Volumes) != 1 {
		t.Errorf("With(detached) kept %d volumes", len(n.Volumes))
	}
	if _, ok := got.Volume("nope"); ok {
		t.Error("Volume(nope) found something")
	}
}

func TestLoadStateMissingFileIsEmpty(t *testing.T) {
	n, err := LoadState(filepath.Join(t.TempDir(), "state.json"))
	if err != nil || len(n.Volumes) != 0 || n.Version != StateVersion {
		t.Fatalf("LoadState(missing) = %+v, %v", n, err)
	}
}

func TestLoadStateRejectsCorruptFiles(t *testing.T) {
	good, err := EncodeState(sampleState())
	if err != nil {
		t.Fatal(err)
	}
	dupe := strings.Replace(string(good), "1aaaaaaa-0000-4000-8000-000000000001", tVol, -1)
	tests := []struct {
		name, content string
		class         error
		detail        string
	}{
		{"empty", "", ErrStateCorrupt, "unexpected end of JSON input"},
		{"truncated", string(good[:len(good)/2]), ErrStateCorrupt, "unexpected end of JSON input"},
		{"not json", "hello", ErrStateCorrupt, "invalid character 'h' looking for beginning of value"},
		{"no version", `{"volumes":[]}`, ErrStateCorrupt, "no version field"},
		{"newer version", `{"version":2,"volumes":[]}`, ErrStateVersion, "format version 2, this plugin reads version 1"},
		{"unknown field", `{"version":1,"volumes":[],"extra":1}`, ErrStateCorrupt, `json: unknown field "extra"`},
		{"trailing data", string(good) + "{}", ErrStateCorrupt, "invalid character '{' after top-level value"},
		{"bad phase", `{"version":1,"volumes":[{"volume_id":"v1","mount_dir":"/r/v1","phase":"flying"}]}`, ErrStateCorrupt, `unknown phase "flying"`},
		{"inconsistent", `{"version":1,"volumes":[{"volume_id":"v1","mount_dir":"/r/v1","phase":"mounted"}]}`, ErrStateCorrupt,
			"volume v1: inconsistent state: mounted without a device"},
		{"duplicate volume", dupe, ErrStateCorrupt, "volumes not sorted or volume " + tVol + " recorded twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.json")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadState(path)
			var sfe *StateFileError
			if !errors.Is(err, tc.class) || !errors.As(err, &sfe) || sfe.Path != path {
				t.Fatalf("err = %v, want a StateFileError of class %v", err, tc.class)
			}
			if !strings.Contains(err.Error(), tc.detail) || !strings.Contains(err.Error(), path) {
				t.Errorf("message %q lacks %q or the path", err, tc.detail)
			}
			if _, statErr := os.Stat(path); statErr != nil {
				t.Errorf("the corrupt file was removed: %v", statErr)
			}
		})
	}
	// The exact operator-facing message for one case.
	path := filepath.Join(t.TempDir(), "state.json")
	os.WriteFile(path, []byte("hello"), 0o600)
	_, err = LoadState(path)
	want := "state file " + path + " is corrupt: invalid character 'h' looking for beginning of value; it was left in place: " +
		"move it aside to start without it (mounts are then recovered from mountinfo, but the mount ids of running containers are lost)"
	if err == nil || err.Error() != want {
		t.Errorf("message:\n got %v\nwant %s", err, want)
	}
}

func TestSaveStateRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	err := SaveState(filepath.Join(open, "state.json"), sampleState())
	if err == nil || !strings.Contains(err.Error(), "has mode 0755; it must be 0700") {
		t.Errorf("world-readable dir: err = %v", err)
	}
	bad := sampleState()
	bad.Volumes = append(bad.Volumes, bad.Volumes[0])
	if err := SaveState(filepath.Join(dir, "s", "state.json"), bad); err == nil || !strings.Contains(err.Error(), "recorded twice") {
		t.Errorf("duplicate volumes: err = %v", err)
	}
	broken := NodeState{Volumes: []VolumeState{st(PhaseMounted, func(s *VolumeState) { s.Device = "" })}}
	if err := SaveState(filepath.Join(dir, "s", "state.json"), broken); err == nil {
		t.Error("inconsistent volume saved")
	}
	if _, err := os.Stat(filepath.Join(dir, "s", "state.json")); !os.IsNotExist(err) {
		t.Errorf("a refused save left a file: %v", err)
	}
}

func TestSaveStateRemovesLeftoverTemps(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	path := filepath.Join(dir, "state.json")
	if err := SaveState(path, sampleState()); err != nil {
		t.Fatal(err)
	}
	leftover := filepath.Join(dir, ".state.json.tmp-123")
	os.WriteFile(leftover, []byte("{half"), 0o600)
	if _, err := LoadState(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(leftover); err != nil {
		t.Fatalf("LoadState touched the directory: %v", err)
	}
	if err := SaveState(path, sampleState()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Errorf("leftover temp file still there: %v", err)
	}
}

const writerEnv = "CINDERWARDEN_TEST_STATE_WRITER"

// TestSaveStateSurvivesSIGKILL runs a child process (this test binary) that
// rewrites the state file in a tight loop with an increasing generation, and
// kills it with SIGKILL at varying moments. After each kill the file must
// load, be complete, and hold a generation at least as new as the last one
// the child had finished before the kill.
func TestSaveStateSurvivesSIGKILL(t *testing.T) {
	if path := os.Getenv(writerEnv); path != "" {
		runStateWriter(path)
		return
	}
	dir := filepath.Join(t.TempDir(), "state")
	path := filepath.Join(dir, "state.json")
	midWrite := 0
	defer func() { t.Logf("%d of 5 kills interrupted a write (a temp file was left)", midWrite) }()
	for round := 0; round < 5; round++ {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestSaveStateSurvivesSIGKILL$")
		cmd.Env = append(os.Environ(), writerEnv+"="+path)
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatal(err)
		}
		// Wait until the child has written a few generations past the last
		// round's, then kill it at a moment that varies with the round.
		floor := generationOf(t, path)
		target := floor + 5 + uint64(round)*7
		for delay := time.Millisecond; generationOf(t, path) < target; delay = min(2*delay, 50*time.Millisecond) {
			if ctx.Err() != nil {
				t.Fatalf("round %d: writer made no progress past generation %d", round, generationOf(t, path))
			}
			time.Sleep(delay)
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		cancel()
		if m, _ := filepath.Glob(filepath.Join(dir, ".state.json.tmp-*")); len(m) > 0 {
			midWrite++
		}
		n, err := LoadState(path)
		if err != nil {
			t.Fatalf("round %d: after SIGKILL: %v", round, err)
		}
		if len(n.Volumes) != 2 {
			t.Fatalf("round %d: %d volumes, want 2", round, len(n.Volumes))
		}
		if g := n.Volumes[1].Generation; g < target {
			t.Fatalf("round %d: generation %d went back below %d", round, g, target)
		}
	}
	// A kill mid-write may leave a temp file; the next save removes it.
	if err := SaveState(path, sampleState()); err != nil {
		t.Fatal(err)
	}
	if matches, _ := filepath.Glob(filepath.Join(dir, ".state.json.tmp-*")); len(matches) != 0 {
		t.Fatalf("temp files left after a save: %v", matches)
	}
}

func generationOf(t *testing.T, path string) uint64 {
	t.Helper()
	n, err := LoadState(path)
	if err != nil {
		t.Fatalf("load while the writer runs: %v", err)
	}
	if len(n.Volumes) < 2 {
		return 0
	}
	return n.Volumes[1].Generation
}

func runStateWriter(path string) {
	n, _ := LoadState(path)
	var g uint64
	if len(n.Volumes) == 2 {
		g = n.Volumes[1].Generation
	}
	base := sampleState()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		g++
		v := base.Volumes[1]
		v.Generation = g
		v.LastError = "generation " + strconv.FormatUint(g, 10)
		if err := SaveState(path, base.With(v)); err != nil {
			os.Exit(3)
		}
	}
	os.Exit(0)
}
