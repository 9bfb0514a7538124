package main

// Run is one `go test -run '^$' -bench Pattern -benchtime Benchtime Pkg`.
type Run struct {
	Pkg       string `json:"package"`
	Pattern   string `json:"pattern"`
	Benchtime string `json:"benchtime"`
}

// Runs are the benchmark invocations of `make bench`, in order. Heavy
// set-ups (thousands of simulator volumes, one mount per iteration at
// seconds of latency) run once (1x): their benchmarks measure one pass and
// report what they measure with b.ReportMetric.
func Runs() []Run {
	return []Run{
		// The plugin's Mount benchmarks (issue 3), wherever they land. Three
		// mounts a case: one sample swung 1.035-1.058x at 1 s on a quiet
		// machine (18-53 ms after the plug); the first mount of each case
		// also formats the blank volume, the next two mount it as users do.
		{Pkg: "./volumedriver", Pattern: "^Benchmark(Mount|ParallelMounts)", Benchtime: "3x"},
		// Whole-process reconcile passes, plugin RSS, and e2e Mount benchmarks.
		{Pkg: "./e2e", Pattern: "^Benchmark(Mount|ParallelMounts|ReconcileOnce|PluginRSS)", Benchtime: "1x"},
		// In-process observe+plan (for comparison with the whole process).
		{Pkg: "./reconciler", Pattern: "^BenchmarkObservePlan$", Benchtime: "1x"},
		{Pkg: "./libvirtscan", Pattern: "^BenchmarkScanTestDriver1000x4$", Benchtime: "5x"},
	}
}

// Target is a bound a row's value must meet.
type Target struct {
	// Max is the largest value that meets the target (in the row's unit).
	Max float64 `json:"max"`
	// Text is the target as the issue states it.
	Text string `json:"text"`
}

// Source is one benchmark metric that can fill a row.
type Source struct {
	// Bench is the benchmark name without the -GOMAXPROCS suffix.
	Bench string `json:"benchmark"`
	// Unit is the metric read from its result line ("ns/op" or a
	// b.ReportMetric unit).
	Unit string `json:"unit"`
	// Scale converts the metric to the row's displayed unit (1e-9: ns → s).
	Scale float64 `json:"scale"`
}

// Row is one line of the report: one measure, from the first of its
// sources that has a result.
type Row struct {
	ID      string   `json:"id"`
	Title   string   `json:"title"`
	Sources []Source `json:"sources"`
	// Format renders the displayed value, e.g. "%.3f s".
	Format string  `json:"-"`
	Target *Target `json:"target,omitempty"`
}

// Rows is the report's table: issue 7, item 6. This is the one place that
// maps a measure to benchmark names and units; a new benchmark plugs in by
// name.
//
// Benchmark names and units each row accepts (the first present wins):
//
//	Mount ÷ attach latency     BenchmarkMountVsAttachLatency/attach=200ms|1s|3s  x_attach   (volumedriver, today)
//	                           BenchmarkMount/latency=200ms|1s|3s                x-latency
//	n parallel ÷ one           BenchmarkParallelMounts/n=16|64                   x_one      (BenchmarkParallelMounts alone = 16)
//	                           BenchmarkMountParallel/n=16|64                    x-one
//	fixed 1 s polling rows     BenchmarkMountVsAttachLatencyFixedPoll/attach=…   x_attach
//	                           BenchmarkParallelMountsFixedPoll/n=16|64          x_one
//	                           (or BenchmarkMountFixedPoll/latency=… x-latency, BenchmarkMountFixedPoll/n=… x-one)
//	reconcile                  BenchmarkReconcileOnce/domains=100|1000|5000      excl-open-s/op, calls/op, ns/op (e2e)
//	                           BenchmarkObservePlan/instances=N                  ns/op, calls/op (reconciler)
//	libvirt scan               BenchmarkScanTestDriver1000x4                     ns/op (libvirtscan)
//	plugin RSS                 BenchmarkPluginRSS/volumes=1000                   rss-MiB (e2e)
func Rows() []Row {
	const (
		ns    = 1e-9
		fmtS  = "%.3f s"
		fmtX  = "%.3f×"
		fmtN  = "%.0f"
		fmtMi = "%.1f MiB"
	)
	one := func(bench, unit string, scale float64) []Source { return []Source{{bench, unit, scale}} }
	reconcile := func(n string, time, calls *Target) []Row {
		once := "BenchmarkReconcileOnce/domains=" + n
		inproc := "BenchmarkObservePlan/instances=" + n
		return []Row{
			{ID: "reconcile-time-" + n, Title: "Reconcile pass time, " + n + " domains × 4 disks",
				Sources: []Source{{once, "excl-open-s/op", 1}, {inproc, "ns/op", ns}}, Format: fmtS, Target: time},
			{ID: "reconcile-calls-" + n, Title: "Reconcile pass OpenStack API calls, " + n + " domains",
				Sources: []Source{{once, "calls/op", 1}, {inproc, "calls/op", 1}}, Format: fmtN, Target: calls},
			{ID: "reconcile-wall-" + n, Title: "`reconcile --once` process wall time incl. test-driver open, " + n + " domains",
				Sources: one(once, "ns/op", ns), Format: fmtS},
		}
	}
	// Two naming schemes are accepted for the Mount rows: the one proposed
	// here and the one volumedriver/bench_test.go uses.
	mount := func(id, title, lat string, fixed bool, t *Target) Row {
		srcs := []Source{{"BenchmarkMount/latency=" + lat, "x-latency", 1}, {"BenchmarkMountVsAttachLatency/attach=" + lat, "x_attach", 1}}
		if fixed {
			srcs = []Source{{"BenchmarkMountFixedPoll/latency=" + lat, "x-latency", 1}, {"BenchmarkMountVsAttachLatencyFixedPoll/attach=" + lat, "x_attach", 1}}
		}
		return Row{ID: id, Title: title, Sources: srcs, Format: fmtX, Target: t}
	}
	parallel := func(id, title, n string, fixed bool, t *Target) Row {
		srcs := []Source{{"BenchmarkMountParallel/n=" + n, "x-one", 1}, {"BenchmarkParallelMounts/n=" + n, "x_one", 1}}
		if n == "16" {
			srcs = append(srcs, Source{"BenchmarkParallelMounts", "x_one", 1}) // 16 is its only size
		}
		if fixed {
			srcs = []Source{{"BenchmarkMountFixedPoll/n=" + n, "x-one", 1}, {"BenchmarkParallelMountsFixedPoll/n=" + n, "x_one", 1}}
		}
		return Row{ID: id, Title: title, Sources: srcs, Format: fmtX, Target: t}
	}
	rows := []Row{
		mount("mount-0.2s", "Mount wall time ÷ attach latency, 0.2 s", "200ms", false, nil),
		mount("mount-1s", "Mount wall time ÷ attach latency, 1 s", "1s", false, &Target{Max: 1.05, Text: "≤ 1.05×"}),
		mount("mount-3s", "Mount wall time ÷ attach latency, 3 s", "3s", false, nil),
		parallel("parallel-16", "16 parallel Mounts ÷ one Mount", "16", false, &Target{Max: 1.3, Text: "≤ 1.3×"}),
		parallel("parallel-64", "64 parallel Mounts ÷ one Mount", "64", false, nil),
		mount("fixed-mount-0.2s", "Comparison, fixed 1 s polling: Mount ÷ attach latency, 0.2 s", "200ms", true, nil),
		mount("fixed-mount-1s", "Comparison, fixed 1 s polling: Mount ÷ attach latency, 1 s", "1s", true, nil),
		mount("fixed-mount-3s", "Comparison, fixed 1 s polling: Mount ÷ attach latency, 3 s", "3s", true, nil),
		parallel("fixed-parallel-16", "Comparison, fixed 1 s polling: 16 parallel ÷ one", "16", true, nil),
		parallel("fixed-parallel-64", "Comparison, fixed 1 s polling: 64 parallel ÷ one", "64", true, nil),
	}
	rows = append(rows, reconcile("100", nil, nil)...)
	rows = append(rows, reconcile("1000", &Target{Max: 2, Text: "≤ 2 s"}, &Target{Max: 10, Text: "≤ 10"})...)
	rows = append(rows, reconcile("5000", nil, nil)...)
	return append(rows,
		Row{ID: "libvirt-scan-1000", Title: "libvirt scan, 1,000 domains × 4 disks (test driver through libvirtd)",
			Sources: one("BenchmarkScanTestDriver1000x4", "ns/op", ns), Format: fmtS},
		Row{ID: "plugin-rss-1000", Title: "Plugin RSS with 1,000 volumes",
			Sources: one("BenchmarkPluginRSS/volumes=1000", "rss-MiB", 1), Format: fmtMi},
	)
}
