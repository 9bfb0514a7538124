package main

import (
	"bufio"
	"errors"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// Result is one benchmark result line of `go test -bench` output.
type Result struct {
	// Name is the full benchmark name without the -GOMAXPROCS suffix,
	// e.g. "BenchmarkMount/latency=1s".
	Name string `json:"name"`
	// Procs is the GOMAXPROCS suffix (0 when the line had none).
	Procs int `json:"procs,omitempty"`
	// N is the iteration count.
	N int `json:"n"`
	// Metrics maps a unit ("ns/op", "calls/op", "x-latency", anything
	// b.ReportMetric gave) to its value.
	Metrics map[string]float64 `json:"metrics"`
	// Package is the import path the result came from (set by the runner).
	Package string `json:"package,omitempty"`
}

// Outcome is what one benchmark (or sub-benchmark) that produced no result
// line did instead.
type Outcome struct {
	Name   string `json:"name"`
	Status string `json:"status"` // "SKIP" or "FAIL"
	// Reason is the indented log text under the --- SKIP/--- FAIL line.
	Reason  string `json:"reason,omitempty"`
	Package string `json:"package,omitempty"`
}

// Parsed is everything read from one `go test -bench` output.
type Parsed struct {
	Results  []Result
	Outcomes []Outcome
}

// resultLine matches a result anywhere in a line: a benchmark's own stdout
// can precede it on the same line, because without -v the name is printed
// before the benchmark runs. Group 1 is the name (with the -procs suffix),
// 2 the iteration count, 3 the "value unit" pairs.
var resultLine = regexp.MustCompile(`(Benchmark\S*)\s+(\d+)\s+((?:[-+0-9.eE]+|NaN|[-+]Inf)\s+\S+(?:\s+(?:[-+0-9.eE]+|NaN|[-+]Inf)\s+\S+)*)\s*$`)

// nameFirst is a name testing printed before running the benchmark
// (without -v); the benchmark's own output may follow before the numbers.
var nameFirst = regexp.MustCompile(`^(Benchmark\S*)\s`)

// bareResult is the numbers of a result whose name came earlier: the
// iteration count and the pairs, at the end of a line after a tab.
var bareResult = regexp.MustCompile(`(?:^|\t)\s*(\d+)\s+((?:[-+0-9.eE]+|NaN|[-+]Inf)\s+\S+(?:\s+(?:[-+0-9.eE]+|NaN|[-+]Inf)\s+\S+)*)\s*$`)

// outcomeLine matches "--- SKIP: BenchmarkX/sub" and "--- FAIL: ...".
var outcomeLine = regexp.MustCompile(`^\s*--- (SKIP|FAIL|BENCH): (Benchmark\S*)`)

// procsSuffix is the -GOMAXPROCS suffix testing appends to every name.
var procsSuffix = regexp.MustCompile(`-(\d+)$`)

// bareName is the line -v prints when a benchmark starts.
var bareName = regexp.MustCompile(`^Benchmark\S*$`)

// Parse reads `go test -run '^$' -bench ...` output of one package, with
// or without -v. With -v (what the runner uses) a benchmark's log lines
// come before its --- SKIP/--- FAIL line; without it they follow.
func Parse(r io.Reader) (Parsed, error) {
	var p Parsed
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var (
		cur     *Outcome // the SKIP/FAIL whose reason lines may follow
		pending string   // a name printed before its benchmark ran
		logs    []string // indented lines since the last benchmark started
	)
	for sc.Scan() {
		line := sc.Text()
		if bareName.MatchString(line) {
			cur, pending, logs = nil, line, nil
			continue
		}
		if m := outcomeLine.FindStringSubmatch(line); m != nil {
			cur = &Outcome{} // --- BENCH: its log lines belong to no outcome
			if m[1] != "BENCH" {
				name, _ := splitProcs(m[2])
				p.Outcomes = append(p.Outcomes, Outcome{Name: name, Status: m[1], Reason: strings.Join(logs, " ")})
				cur = &p.Outcomes[len(p.Outcomes)-1]
			}
			logs = nil
			continue
		}
		if m := resultLine.FindStringSubmatch(line); m != nil {
			cur, pending, logs = nil, "", nil
			if res, ok := parseResult(m); ok {
				p.Results = append(p.Results, res)
			}
			continue
		}
		if m := nameFirst.FindStringSubmatch(line); m != nil {
			pending = m[1]
		}
		if m := bareResult.FindStringSubmatch(line); m != nil && pending != "" {
			cur, logs = nil, nil
			if res, ok := parseResult([]string{"", pending, m[1], m[2]}); ok {
				p.Results = append(p.Results, res)
			}
			pending = ""
			continue
		}
		if strings.HasPrefix(line, "    ") {
			text := strings.TrimSpace(line)
			if cur != nil {
				cur.Reason = strings.TrimSpace(cur.Reason + " " + text)
			} else {
				logs = append(logs, text)
			}
			continue
		}
		cur = nil
	}
	return p, sc.Err()
}

func splitProcs(name string) (string, int) {
	if m := procsSuffix.FindStringSubmatch(name); m != nil {
		n, err := strconv.Atoi(m[1])
		if err == nil {
			return strings.TrimSuffix(name, m[0]), n
		}
	}
	return name, 0
}

func parseResult(m []string) (Result, bool) {
	name, procs := splitProcs(m[1])
	n, err := strconv.Atoi(m[2])
	if err != nil {
		return Result{}, false
	}
	fields := strings.Fields(m[3])
	if len(fields)%2 != 0 {
		return Result{}, false
	}
	res := Result{Name: name, Procs: procs, N: n, Metrics: map[string]float64{}}
	for i := 0; i < len(fields); i += 2 {
		v, err := strconv.ParseFloat(fields[i], 64)
		if errors.Is(err, strconv.ErrRange) || err == nil && (math.IsNaN(v) || math.IsInf(v, 0)) {
			// NaN, ±Inf or out of float64's range: not a measurement, and
			// JSON cannot hold it (WriteJSON would fail and lose the whole
			// report). The metric is left out; its row says it is missing.
			continue
		}
		if err != nil {
			return Result{}, false
		}
		res.Metrics[fields[i+1]] = v
	}
	return res, true
}
