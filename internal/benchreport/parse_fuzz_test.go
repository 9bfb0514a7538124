package main

import (
	"bytes"
	"io"
	"math"
	"reflect"
	"strings"
	"testing"
)

// FuzzParse: any `go test -bench` output parses without panicking; every
// metric value is finite (a NaN or Inf would make WriteJSON fail and the
// whole report be lost); names carry no -procs suffix the parser should
// have split; the result serialises to JSON; parsing is deterministic.
func FuzzParse(f *testing.F) {
	f.Add([]byte(captured))
	f.Add([]byte("BenchmarkX-2   \t       1\t  NaN ns/op\t 3 calls/op\n"))
	f.Add([]byte("BenchmarkX-2   \t       1\t  +Inf x-latency\n"))
	f.Add([]byte("BenchmarkX\nsome output\t  4 -Inf ns/op\n"))
	f.Add([]byte("--- FAIL: BenchmarkY\n    y_test.go:1: boom\n--- SKIP: BenchmarkZ/sub-2\n"))
	f.Add([]byte("BenchmarkX-2 99999999999999999999 1 ns/op\n"))
	f.Add([]byte("BenchmarkX-2 1 1e999 ns/op\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(bytes.NewReader(data))
		if err != nil {
			return // only a line over the scanner's 1 MiB limit
		}
		for _, r := range p.Results {
			if !strings.HasPrefix(r.Name, "Benchmark") || r.N < 0 || r.Procs < 0 || r.Metrics == nil {
				t.Fatalf("result %+v", r)
			}
			for unit, v := range r.Metrics {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					t.Fatalf("result %s: %s = %v is not finite", r.Name, unit, v)
				}
			}
		}
		for _, o := range p.Outcomes {
			if o.Status != "SKIP" && o.Status != "FAIL" || !strings.HasPrefix(o.Name, "Benchmark") {
				t.Fatalf("outcome %+v", o)
			}
		}
		rep := Report{}
		addParsed(&rep, p, "pkg")
		if err := WriteJSON(io.Discard, rep); err != nil {
			t.Fatalf("WriteJSON of the parsed output: %v", err)
		}
		again, err := Parse(bytes.NewReader(data))
		if err != nil || !reflect.DeepEqual(p, again) {
			t.Fatalf("parse not deterministic (%v)", err)
		}
	})
}

// TestParseDropsNonFiniteMetrics: "BenchmarkX-2 1 NaN ns/op 3 calls/op"
// (found by FuzzParse) gave a NaN metric that made the JSON report fail;
// a non-finite value is now dropped and the rest of the line kept.
func TestParseDropsNonFiniteMetrics(t *testing.T) {
	for _, in := range []string{
		"BenchmarkX-2   \t       1\t  NaN ns/op\t 3 calls/op\n",
		"BenchmarkX-2   \t       1\t  +Inf ns/op\t 3 calls/op\n",
		"BenchmarkX-2   \t       1\t  1e999 ns/op\t 3 calls/op\n",
	} {
		p, err := Parse(strings.NewReader(in))
		if err != nil {
			t.Fatal(err)
		}
		want := []Result{{Name: "BenchmarkX", Procs: 2, N: 1, Metrics: map[string]float64{"calls/op": 3}}}
		if !reflect.DeepEqual(p.Results, want) {
			t.Errorf("%q: got %+v, want %+v", in, p.Results, want)
		}
	}
}
