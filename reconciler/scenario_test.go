package reconciler

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Scenario tests: testdata/scenarios/NAME.json is a story of runs on one
// host (what each run observed, and when); NAME.golden.txt is what the
// reconciler printed for each run. Regenerate with
//
//	go test ./reconciler -run TestScenarios -update
//
// and review the diff.
var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

type scenario struct {
	Story  []string       `json:"story"`
	Policy scenarioPolicy `json:"policy"`
	Steps  []struct {
		At  string `json:"at"`  // offset from the first run, e.g. "15m"
		Say string `json:"say"` // what happened before this run
		// Observation of this run; omitted means the same as the run before.
		Observation *Observation `json:"observation,omitempty"`
	} `json:"steps"`
}

type scenarioPolicy struct {
	Apply                 bool     `json:"apply"`
	MinSightings          int      `json:"min_sightings"`
	MinAge                string   `json:"min_age"`
	MaxActions            int      `json:"max_actions"`
	MountBases            []string `json:"mount_bases"`
	NovaDetachMissingDisk bool     `json:"nova_detach_missing_disk"`
	ActWithoutNova        bool     `json:"act_without_nova"`
}

func (sp scenarioPolicy) policy() (Policy, error) {
	age, err := time.ParseDuration(sp.MinAge)
	if err != nil {
		return Policy{}, fmt.Errorf("min_age: %w", err)
	}
	return Policy{Apply: sp.Apply, MinSightings: sp.MinSightings, MinAge: age, MaxActions: sp.MaxActions,
		MountBases: sp.MountBases, NovaDetachMissingDisk: sp.NovaDetachMissingDisk, ActWithoutNova: sp.ActWithoutNova}, nil
}

func loadScenario(t *testing.T, path string) scenario {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var s scenario
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(s.Steps) == 0 || s.Steps[0].Observation == nil {
		t.Fatalf("%s: the first step needs an observation", path)
	}
	return s
}

// runScenario plays the story and returns the printed transcript and the
// last Result.
func runScenario(t *testing.T, s scenario) (string, Result) {
	t.Helper()
	pol, err := s.Policy.policy()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for _, line := range s.Story {
		fmt.Fprintf(&out, "# %s\n", line)
	}
	fmt.Fprintf(&out, "# policy: apply=%v min_sightings=%d min_age=%s max_actions=%d mount_bases=%v nova_detach_missing_disk=%v act_without_nova=%v\n",
		pol.Apply, pol.MinSightings, pol.MinAge, pol.MaxActions, pol.MountBases, pol.NovaDetachMissingDisk, pol.ActWithoutNova)
	mem := NewMemory()
	var obs Observation
	var r Result
	for i, st := range s.Steps {
		at, err := time.ParseDuration(st.At)
		if err != nil {
			t.Fatalf("step %d: at: %v", i+1, err)
		}
		if st.Observation != nil {
			obs = *st.Observation
		}
		r = Plan(obs, mem, pol, t0.Add(at))
		mem = r.Memory
		fmt.Fprintf(&out, "\n=== run %d at +%s: %s\n", i+1, at, st.Say)
		if err := WriteTable(&out, r); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&out, "exit code %d\n", ExitCode(r))
		keys := make([]string, 0, len(mem.Sightings))
		for k := range mem.Sightings {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		fmt.Fprintf(&out, "memory: %d domains, %d servers", mem.Domains, mem.Servers)
		if len(keys) == 0 {
			fmt.Fprintf(&out, ", no sightings\n")
		} else {
			fmt.Fprintf(&out, "\n")
		}
		for _, k := range keys {
			sg := mem.Sightings[k]
			fmt.Fprintf(&out, "  %s seen %d× since +%s\n", k, sg.Count, sg.FirstSeen.Sub(t0))
		}
	}
	return out.String(), r
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run with -update and review the diff):\n%s", path, lineDiff(string(want), string(got)))
	}
}

// lineDiff shows the first differing lines, enough to see what changed.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < max(len(w), len(g)) && shown < 12; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d\n  want %q\n   got %q\n", i+1, wl, gl)
			shown++
		}
	}
	return b.String()
}

func TestScenarios(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("testdata", "scenarios", "*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	for _, p := range paths {
		if strings.Contains(filepath.Base(p), ".golden.") {
			continue // an output, not a story
		}
		name := strings.TrimSuffix(filepath.Base(p), ".json")
		t.Run(name, func(t *testing.T) {
			s := loadScenario(t, p)
			text, last := runScenario(t, s)
			golden(t, strings.TrimSuffix(p, ".json")+".golden.txt", []byte(text))
			var js bytes.Buffer
			if err := WriteJSON(&js, last); err != nil {
				t.Fatal(err)
			}
			// The JSON rendering of the last run parses back to the same result.
			var back Result
			if err := json.Unmarshal(js.Bytes(), &back); err != nil {
				t.Fatalf("JSON output does not parse: %v", err)
			}
			if len(back.Findings) != len(last.Findings) || len(back.Actions) != len(last.Actions) || back.Aborted != last.Aborted {
				t.Errorf("JSON round trip lost data")
			}
			golden(t, strings.TrimSuffix(p, ".json")+".last.golden.json", js.Bytes())
		})
	}
}
