package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// captured is real `go test -bench` output from this repository (the
// reconciler's scale benchmark on the 2-core CI machine), plus the shapes
// a skip, a failure, log output and a benchmark's own stdout produce.
const captured = `goos: linux
goarch: amd64
pkg: github.com/cinderwarden/cinderwarden/reconciler
cpu: AMD EPYC
BenchmarkObservePlan/instances=100-2         	       1	  58975001 ns/op	         4.000 calls/op
BenchmarkObservePlan/instances=1000-2        	       1	 526642526 ns/op	         9.000 calls/op
BenchmarkMount/latency=1s-2   	some stdout of a child process	       3	1023000000 ns/op	         1.023 x-latency
--- BENCH: BenchmarkMount/latency=1s-2
    mount_test.go:40: attach latency 1s
--- SKIP: BenchmarkPluginRSS
    bench_test.go:12: SKIPPED, NOT TESTED: this test needs root
    (run as root)
BenchmarkScanTestDriver1000x4-2   	       5	 172000000 ns/op	      1001 libvirt-calls/op	 1200 B/op	 12 allocs/op
--- FAIL: BenchmarkMountParallel/n=64
    parallel_test.go:80: mount 17: timeout
FAIL
`

func TestParse(t *testing.T) {
	p, err := Parse(strings.NewReader(captured))
	if err != nil {
		t.Fatal(err)
	}
	want := Parsed{
		Results: []Result{
			{Name: "BenchmarkObservePlan/instances=100", Procs: 2, N: 1, Metrics: map[string]float64{"ns/op": 58975001, "calls/op": 4}},
			{Name: "BenchmarkObservePlan/instances=1000", Procs: 2, N: 1, Metrics: map[string]float64{"ns/op": 526642526, "calls/op": 9}},
			{Name: "BenchmarkMount/latency=1s", Procs: 2, N: 3, Metrics: map[string]float64{"ns/op": 1023000000, "x-latency": 1.023}},
			{Name: "BenchmarkScanTestDriver1000x4", Procs: 2, N: 5, Metrics: map[string]float64{"ns/op": 172000000,
				"libvirt-calls/op": 1001, "B/op": 1200, "allocs/op": 12}},
		},
		Outcomes: []Outcome{
			{Name: "BenchmarkPluginRSS", Status: "SKIP", Reason: "bench_test.go:12: SKIPPED, NOT TESTED: this test needs root (run as root)"},
			{Name: "BenchmarkMountParallel/n=64", Status: "FAIL", Reason: "parallel_test.go:80: mount 17: timeout"},
		},
	}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("Parse =\n%+v\nwant\n%+v", p, want)
	}
	if got := pkgOf([]byte(captured)); got != "github.com/cinderwarden/cinderwarden/reconciler" {
		t.Errorf("pkgOf = %q", got)
	}
}

// verbose is real `go test -v -bench` output (what the runner asks for):
// skips are only printed with -v, their log lines before the --- line.
const verbose = `goos: linux
goarch: amd64
pkg: bsk
cpu: AMD EPYC
BenchmarkS
BenchmarkS/n=1
    a_test.go:3: needs root
--- SKIP: BenchmarkS/n=1
BenchmarkP
child says hi
BenchmarkP-2             	       1	       130.0 ns/op	         1.500 x-one
BenchmarkF
    a_test.go:5: boom
--- FAIL: BenchmarkF
FAIL
exit status 1
FAIL	bsk	0.015s
FAIL
`

func TestParseVerbose(t *testing.T) {
	p, err := Parse(strings.NewReader(verbose))
	if err != nil {
		t.Fatal(err)
	}
	want := Parsed{
		Results: []Result{{Name: "BenchmarkP", Procs: 2, N: 1, Metrics: map[string]float64{"ns/op": 130, "x-one": 1.5}}},
		Outcomes: []Outcome{
			{Name: "BenchmarkS/n=1", Status: "SKIP", Reason: "a_test.go:3: needs root"},
			{Name: "BenchmarkF", Status: "FAIL", Reason: "a_test.go:5: boom"},
		},
	}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("Parse =\n%+v\nwant\n%+v", p, want)
	}
}

func TestParseRejectsMalformed(t *testing.T) {
	for _, in := range []string{
		"BenchmarkX-2 1 12 ns/op 3",   // odd value/unit fields
		"BenchmarkX-2 one 12 ns/op",   // no iteration count
		"BenchmarkX-2   \t",           // name printed before a run that never ended
		"ok  \tgithub.com/x\t1.2s",    // summary
		"Benchmark results: 12 ns/op", // prose
	} {
		p, err := Parse(strings.NewReader(in))
		if err != nil || len(p.Results) != 0 {
			t.Errorf("Parse(%q) = %+v, %v; want no result", in, p.Results, err)
		}
	}
}

func TestEvaluate(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	src := func(bench, unit string, scale float64) []Source { return []Source{{bench, unit, scale}} }
	rows := []Row{
		{ID: "met", Sources: src("BenchmarkA", "x", 1), Format: "%.2f×", Target: &Target{Max: 1.05, Text: "≤ 1.05×"}},
		{ID: "missed", Sources: src("BenchmarkB", "ns/op", 1e-9), Format: "%.1f s", Target: &Target{Max: 2, Text: "≤ 2 s"}},
		{ID: "boundary", Sources: src("BenchmarkC", "calls/op", 1), Format: "%.0f", Target: &Target{Max: 10}},
		{ID: "no target", Sources: src("BenchmarkC", "ns/op", 1e-9), Format: "%.1f s"},
		{ID: "fallback", Sources: []Source{{"BenchmarkAbsent/n=5", "calls/op", 1}, {"BenchmarkA", "calls/op", 1}, {"BenchmarkC", "ns/op", 1e-9}}, Format: "%.1f"},
		{ID: "absent", Sources: src("BenchmarkAbsent/n=5", "x", 1)},
		{ID: "no metric", Sources: src("BenchmarkA", "rss-MiB", 1)},
		{ID: "parent skipped", Sources: src("BenchmarkSkipped/volumes=1000", "rss-MiB", 1)},
		{ID: "failed", Sources: src("BenchmarkFailed/n=64", "x-one", 1)},
	}
	results := []Result{
		{Name: "BenchmarkA", Metrics: map[string]float64{"x": 1.02}, Package: "p/a"},
		{Name: "BenchmarkB", Metrics: map[string]float64{"ns/op": 2.5e9}},
		{Name: "BenchmarkC", Metrics: map[string]float64{"ns/op": 1.5e9, "calls/op": 10}},
		{Name: "BenchmarkA", Metrics: map[string]float64{"x": 9}}, // a second package's copy: first wins
	}
	outcomes := []Outcome{
		{Name: "BenchmarkSkipped", Status: "SKIP", Reason: "needs root"},
		{Name: "BenchmarkFailed/n=64", Status: "FAIL"},
	}
	got := Evaluate(rows, results, outcomes)
	want := []struct {
		status, display, bench string
		value                  *float64
	}{
		{StatusMet, "1.02×", "BenchmarkA", f(1.02)},
		{StatusMissed, "2.5 s", "BenchmarkB", f(2.5)},
		{StatusMet, "10", "BenchmarkC", f(10)},
		{StatusNoTarget, "1.5 s", "BenchmarkC", f(1.5)},
		{StatusNoTarget, "1.5", "BenchmarkC", f(1.5)},
		{StatusNotMeasured, "not measured (benchmark BenchmarkAbsent/n=5 not present)", "", nil},
		{StatusNotMeasured, "not measured (benchmark BenchmarkA reports no rss-MiB metric)", "", nil},
		{StatusNotMeasured, "not measured (benchmark BenchmarkSkipped skipped: needs root)", "", nil},
		{StatusNotMeasured, "not measured (benchmark BenchmarkFailed/n=64 failed)", "", nil},
	}
	if len(got) != len(want) {
		t.Fatalf("%d rows, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Status != w.status || g.Display != w.display || g.Benchmark != w.bench || !reflect.DeepEqual(g.Value, w.value) {
			t.Errorf("row %s: status %q display %q bench %q value %v; want %q %q %q %v",
				g.ID, g.Status, g.Display, g.Benchmark, g.Value, w.status, w.display, w.bench, w.value)
		}
	}
}

// TestRowsWellFormed: every row names a benchmark and a unit, a display
// format and a scale, ids are unique, and every target the issue sets is
// there.
func TestRowsWellFormed(t *testing.T) {
	seen := map[string]bool{}
	targets := map[string]float64{}
	for _, r := range Rows() {
		if r.ID == "" || seen[r.ID] || len(r.Sources) == 0 || r.Format == "" || r.Title == "" {
			t.Errorf("malformed or duplicate row %+v", r)
		}
		seen[r.ID] = true
		for _, src := range r.Sources {
			if !strings.HasPrefix(src.Bench, "Benchmark") || src.Unit == "" || src.Scale == 0 {
				t.Errorf("row %s: malformed source %+v", r.ID, src)
			}
		}
		if r.Target != nil {
			targets[r.ID] = r.Target.Max
		}
	}
	want := map[string]float64{"mount-1s": 1.05, "parallel-16": 1.3, "reconcile-time-1000": 2, "reconcile-calls-1000": 10}
	if !reflect.DeepEqual(targets, want) {
		t.Errorf("targets %v, want %v", targets, want)
	}
	if len(Rows()) != 21 {
		t.Errorf("%d rows, want 21 (issue 7 item 6)", len(Rows()))
	}
}

// TestRenderFromSaved runs the command on saved output (-from): both
// reports are written, the JSON round-trips, unmeasured rows say so and
// carry no value, the docs copy equals the markdown.
func TestRenderFromSaved(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "raw.txt")
	if err := os.WriteFile(raw, []byte(captured), 0o644); err != nil {
		t.Fatal(err)
	}
	out, docs := filepath.Join(dir, "bench"), filepath.Join(dir, "docs", "performance.md")
	var log bytes.Buffer
	if err := run(context.Background(), []string{"-from", raw, "-out", out, "-docs", docs}, &log); err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	js, err := os.ReadFile(filepath.Join(out, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(js, &rep); err != nil {
		t.Fatal(err)
	}
	byID := map[string]RowResult{}
	for _, r := range rep.Rows {
		byID[r.ID] = r
	}
	if r := byID["mount-1s"]; r.Status != StatusMet || r.Value == nil || *r.Value != 1.023 || r.Package != "github.com/cinderwarden/cinderwarden/reconciler" {
		t.Errorf("mount-1s = %+v", r)
	}
	if r := byID["reconcile-calls-1000"]; r.Status != StatusMet || r.Benchmark != "BenchmarkObservePlan/instances=1000" {
		t.Errorf("reconcile-calls-1000 = %+v", r)
	}
	if r := byID["reconcile-time-1000"]; r.Status != StatusMet || r.Benchmark != "BenchmarkObservePlan/instances=1000" || r.Unit != "ns/op" {
		t.Errorf("reconcile-time-1000 (fallback to the in-process benchmark) = %+v", r)
	}
	if r := byID["reconcile-time-5000"]; r.Status != StatusNotMeasured || r.Value != nil ||
		r.Display != "not measured (benchmark BenchmarkReconcileOnce/domains=5000 not present; benchmark BenchmarkObservePlan/instances=5000 not present)" {
		t.Errorf("reconcile-time-5000 = %+v", r)
	}
	if r := byID["parallel-64"]; r.Status != StatusNotMeasured || !strings.Contains(r.Display, "failed: parallel_test.go:80: mount 17: timeout") {
		t.Errorf("parallel-64 = %+v", r)
	}
	md, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| Mount wall time ÷ attach latency, 1 s | 1.023× | ≤ 1.05× | MET | `BenchmarkMount/latency=1s` (x-latency) |",
		"| Reconcile pass time, 1000 domains × 4 disks | 0.527 s | ≤ 2 s | MET |", "Generated by `make bench`"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q:\n%s", want, md)
		}
	}
	d, err := os.ReadFile(docs)
	if err != nil || !bytes.Equal(d, md) {
		t.Errorf("docs copy differs from report.md: %v", err)
	}
}

// TestRowsAcceptVolumedriverNames: the Mount rows fill from the names and
// units volumedriver/bench_test.go reports today.
func TestRowsAcceptVolumedriverNames(t *testing.T) {
	out := `BenchmarkMountVsAttachLatency/attach=1s-2         	       1	1040000000 ns/op	      1040 ms/mount	         1.040 x_attach
BenchmarkMountVsAttachLatency/attach=200ms-2      	       1	 260000000 ns/op	       260.0 ms/mount	         1.300 x_attach
BenchmarkParallelMounts-2   	       1	2400000000 ns/op	      1010 ms/one	      1390 ms/sixteen	         1.376 x_one
`
	p, err := Parse(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range Evaluate(Rows(), p.Results, nil) {
		got[r.ID] = r.Status + " " + r.Display
	}
	for id, want := range map[string]string{"mount-1s": "MET 1.040×", "mount-0.2s": "measured 1.300×",
		"parallel-16": "MISSED 1.376×", "mount-3s": "NOT MEASURED not measured (benchmark BenchmarkMount/latency=3s not present; benchmark BenchmarkMountVsAttachLatency/attach=3s not present)"} {
		if got[id] != want {
			t.Errorf("%s = %q, want %q", id, got[id], want)
		}
	}
}

// TestRerender: a report.json re-rendered keeps its measurements and runs
// and escapes the pipes of bench patterns in markdown.
func TestRerender(t *testing.T) {
	dir := t.TempDir()
	rep := Report{Command: "make bench", CPUs: 2,
		Runs:       []RunReport{{Run: Run{Pkg: "./x", Pattern: "^Benchmark(A|B)", Benchtime: "1x"}, Seconds: 3, LoadBefore: 1, LoadAfter: 2}},
		Benchmarks: []Result{{Name: "BenchmarkReconcileOnce/domains=1000", N: 1, Metrics: map[string]float64{"excl-open-s/op": 2.5, "calls/op": 9}}}}
	var js bytes.Buffer
	if err := WriteJSON(&js, rep); err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "in.json")
	if err := os.WriteFile(in, js.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	if err := run(context.Background(), []string{"-rerender", in, "-out", out, "-docs", ""}, io.Discard); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| `./x` | `^Benchmark(A\\|B)` | 1x | 3.0 | 1.0 → 2.0 |  |",
		"| Reconcile pass time, 1000 domains × 4 disks | 2.500 s | ≤ 2 s | MISSED |",
		"| Reconcile pass OpenStack API calls, 1000 domains | 9 | ≤ 10 | MET |"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q:\n%s", want, md)
		}
	}
}
