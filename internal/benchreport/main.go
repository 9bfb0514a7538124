// Command benchreport runs cinderwarden's benchmarks and writes the
// performance report of issue 7 (item 6): bench/report.json,
// bench/report.md and a copy of the markdown at docs/performance.md.
//
//	go run ./internal/benchreport [-out bench] [-docs docs/performance.md] [-budget 9m]
//	go run ./internal/benchreport -from raw.txt   # report from saved go test output
//	go run ./internal/benchreport -rerender bench/report.json   # same numbers, current rows
//
// Each row of the report comes from one benchmark metric (rows.go maps
// them); a row whose benchmark is absent, skipped or failed says so and
// never gets a number. Raw `go test` output is kept under <out>/raw/.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type config struct {
	out, docs, goCmd string
	budget           time.Duration
	from             []string
	command          string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "benchreport: %v\n", err)
		stop()
		os.Exit(1)
	}
}

type fileList []string

func (f *fileList) String() string { return strings.Join(*f, ",") }
func (f *fileList) Set(v string) error {
	*f = append(*f, v)
	return nil
}

func run(ctx context.Context, args []string, log io.Writer) error {
	var c config
	var from fileList
	fs := flag.NewFlagSet("benchreport", flag.ContinueOnError)
	fs.StringVar(&c.out, "out", "bench", "directory for report.json, report.md and raw/")
	fs.StringVar(&c.docs, "docs", "docs/performance.md", "also copy report.md here (\"\" to skip)")
	fs.StringVar(&c.goCmd, "go", "go", "go command")
	fs.DurationVar(&c.budget, "budget", 9*time.Minute, "total time for all benchmark runs; each go test gets what is left")
	fs.Var(&from, "from", "parse this saved `go test -bench` output instead of running (repeatable)")
	rerender := fs.String("rerender", "", "re-evaluate the rows of this report.json (same measurements) and write both reports again")
	fs.StringVar(&c.command, "command", "make bench", "the command named in the report as the way to reproduce it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.budget <= 0 {
		return fmt.Errorf("-budget %s: want more than 0", c.budget)
	}
	c.from = from
	rep := Report{Generated: time.Now().UTC(), Command: c.command, GoVersion: runtime.Version(),
		CPUs: runtime.NumCPU(), CPUModel: cpuModel(), Commit: commit(ctx)}
	if err := os.MkdirAll(filepath.Join(c.out, "raw"), 0o755); err != nil {
		return err
	}
	if *rerender != "" {
		b, err := os.ReadFile(*rerender)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &rep); err != nil {
			return fmt.Errorf("%s: %w", *rerender, err)
		}
	} else if len(c.from) > 0 {
		for _, f := range c.from {
			b, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			p, err := Parse(bytes.NewReader(b))
			if err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
			addParsed(&rep, p, pkgOf(b))
		}
	} else {
		deadline := time.Now().Add(c.budget)
		for _, r := range Runs() {
			rr, p, raw := benchOnce(ctx, c.goCmd, r, time.Until(deadline), log)
			rep.Runs = append(rep.Runs, rr)
			addParsed(&rep, p, pkgOf(raw))
			name := strings.NewReplacer("./", "", "/", "_").Replace(r.Pkg) + ".txt"
			if err := os.WriteFile(filepath.Join(c.out, "raw", name), raw, 0o644); err != nil {
				return err
			}
		}
	}
	rep.Rows = Evaluate(Rows(), rep.Benchmarks, rep.Outcomes)
	var js, md bytes.Buffer
	if err := WriteJSON(&js, rep); err != nil {
		return err
	}
	if err := WriteMarkdown(&md, rep); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.out, "report.json"), js.Bytes(), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.out, "report.md"), md.Bytes(), 0o644); err != nil {
		return err
	}
	if c.docs != "" {
		if err := os.MkdirAll(filepath.Dir(c.docs), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(c.docs, md.Bytes(), 0o644); err != nil {
			return err
		}
	}
	fmt.Fprintf(log, "benchreport: wrote %s and %s\n", filepath.Join(c.out, "report.md"), filepath.Join(c.out, "report.json"))
	for _, row := range rep.Rows {
		fmt.Fprintf(log, "  %-14s %-60s %s\n", row.Status, row.Title, row.Display)
	}
	return nil
}

func addParsed(rep *Report, p Parsed, pkg string) {
	for _, r := range p.Results {
		r.Package = pkg
		rep.Benchmarks = append(rep.Benchmarks, r)
	}
	for _, o := range p.Outcomes {
		o.Package = pkg
		rep.Outcomes = append(rep.Outcomes, o)
	}
}

// pkgOf is the import path from the "pkg: ..." header of go test output.
func pkgOf(raw []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "pkg: "); ok {
			return strings.TrimSpace(p)
		}
	}
	return ""
}

// benchOnce runs one go test -bench, streaming its output to log as well.
// A failure is recorded, not fatal: the other runs still count.
func benchOnce(ctx context.Context, goCmd string, r Run, left time.Duration, log io.Writer) (RunReport, Parsed, []byte) {
	rr := RunReport{Run: r}
	if left < 10*time.Second {
		rr.Error = fmt.Sprintf("not run: the %s budget was spent by earlier runs", "-budget")
		return rr, Parsed{}, nil
	}
	args := []string{"test", "-v", "-run", "^$", "-bench", r.Pattern, "-benchtime", r.Benchtime, "-count", "1",
		"-timeout", left.Round(time.Second).String(), r.Pkg}
	fmt.Fprintf(log, "benchreport: %s %s\n", goCmd, strings.Join(args, " "))
	// -v: without it, go test prints nothing for a skipped benchmark.
	// The test binary's own -timeout panics with a stack before this
	// fires; this is the backstop for a wedged build.
	cctx, cancel := context.WithTimeout(ctx, left+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, goCmd, args...)
	var buf bytes.Buffer
	cmd.Stdout = io.MultiWriter(&buf, log)
	cmd.Stderr = io.MultiWriter(&buf, log)
	start := time.Now()
	rr.LoadBefore = loadAvg()
	err := cmd.Run()
	rr.Seconds = time.Since(start).Seconds()
	rr.LoadAfter = loadAvg()
	if err != nil {
		rr.Error = errSummary(err, buf.Bytes())
	}
	p, perr := Parse(bytes.NewReader(buf.Bytes()))
	if perr != nil {
		rr.Error = strings.TrimPrefix(rr.Error+"; parse: "+perr.Error(), "; ")
	}
	return rr, p, buf.Bytes()
}

// errSummary is the exit status plus the first telling line of output
// (a build error, a panic, a FAIL).
func errSummary(err error, out []byte) string {
	msg := err.Error()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		msg = fmt.Sprintf("go test exit %d", ee.ExitCode())
	}
	for _, line := range strings.Split(string(out), "\n") {
		l := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(l, "panic:"), strings.Contains(l, "no Go files"), strings.Contains(l, "cannot find"),
			strings.Contains(l, "build failed"), strings.HasPrefix(l, "# "), strings.Contains(l, ".go:") && strings.Contains(l, ": "):
			return msg + ": " + l
		}
	}
	return msg
}

// loadAvg is the 1-minute load average (0 when unknown).
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0
	}
	return v
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func commit(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
