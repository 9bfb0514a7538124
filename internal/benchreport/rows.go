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
		// The plugin's Mount benchmarks (issue 3), wherever they land.
		{Pkg: "./volumedriver", Pattern: "^BenchmarkMount", Benchtime: "1x"},
		// Whole-process reconcile passes, plugin RSS, and e2e Mount benchmarks.
		{Pkg: "./e2e", Pattern: "^Benchmark(Mount|ReconcileOnce|PluginRSS)", Benchtime: "1x"},
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

// Row is one line of the report: one metric of one benchmark.
type Row struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	// Benchmarks are the benchmark names that can fill the row (without
	// the -GOMAXPROCS suffix), in order of preference: the first one
	// present is used.
	Benchmarks []string `json:"benchmarks"`
	// Unit is the metric read from the benchmark line ("ns/op" or a
	// b.ReportMetric unit).
	Unit string `json:"unit"`
	// Scale converts the metric to the displayed value (1e-9: ns → s).
	Scale float64 `json:"-"`
	// Format renders the displayed value, e.g. "%.3f s".
	Format string  `json:"-"`
	Target *Target `json:"target,omitempty"`
}

// Rows is the report's table: issue 7, item 6. This is the one place that
// maps a measure to benchmark names and units; a new benchmark plugs in by
// name.
//
// Names the Mount benchmarks (issue 3) are expected to use:
//
//	BenchmarkMount/latency=200ms|1s|3s      unit x-latency: Mount wall time ÷ the simulator's attach latency
//	BenchmarkMountParallel/n=16|64          unit x-one: wall time of n parallel Mounts of distinct volumes ÷ one Mount
//	BenchmarkMountFixedPoll/latency=200ms|1s|3s   the same as BenchmarkMount with a fixed 1 s polling policy
//	BenchmarkMountFixedPoll/n=16|64                the same as BenchmarkMountParallel with that policy
//	BenchmarkPluginRSS/volumes=1000         unit rss-MiB: plugin resident set with 1,000 volumes
func Rows() []Row {
	const (
		sec   = 1e-9
		fmtS  = "%.3f s"
		fmtX  = "%.3f×"
		fmtN  = "%.0f"
		fmtMi = "%.1f MiB"
	)
	mount := func(id, title string, benches []string, unit string, t *Target) Row {
		return Row{ID: id, Title: title, Benchmarks: benches, Unit: unit, Scale: 1, Format: fmtX, Target: t}
	}
	reconcileTime := func(n string, t *Target) Row {
		return Row{ID: "reconcile-time-" + n, Title: "Reconcile pass time, " + n + " domains × 4 disks",
			Benchmarks: []string{"BenchmarkReconcileOnce/domains=" + n, "BenchmarkObservePlan/instances=" + n},
			Unit:       "ns/op", Scale: sec, Format: fmtS, Target: t}
	}
	reconcileCalls := func(n string, t *Target) Row {
		return Row{ID: "reconcile-calls-" + n, Title: "Reconcile pass OpenStack API calls, " + n + " domains",
			Benchmarks: []string{"BenchmarkReconcileOnce/domains=" + n, "BenchmarkObservePlan/instances=" + n},
			Unit:       "calls/op", Scale: 1, Format: fmtN, Target: t}
	}
	return []Row{
		mount("mount-0.2s", "Mount wall time ÷ attach latency, 0.2 s", []string{"BenchmarkMount/latency=200ms"}, "x-latency", nil),
		mount("mount-1s", "Mount wall time ÷ attach latency, 1 s", []string{"BenchmarkMount/latency=1s"}, "x-latency",
			&Target{Max: 1.05, Text: "≤ 1.05×"}),
		mount("mount-3s", "Mount wall time ÷ attach latency, 3 s", []string{"BenchmarkMount/latency=3s"}, "x-latency", nil),
		mount("parallel-16", "16 parallel Mounts ÷ one Mount", []string{"BenchmarkMountParallel/n=16"}, "x-one",
			&Target{Max: 1.3, Text: "≤ 1.3×"}),
		mount("parallel-64", "64 parallel Mounts ÷ one Mount", []string{"BenchmarkMountParallel/n=64"}, "x-one", nil),
		mount("fixed-mount-0.2s", "Comparison, fixed 1 s polling: Mount ÷ attach latency, 0.2 s", []string{"BenchmarkMountFixedPoll/latency=200ms"}, "x-latency", nil),
		mount("fixed-mount-1s", "Comparison, fixed 1 s polling: Mount ÷ attach latency, 1 s", []string{"BenchmarkMountFixedPoll/latency=1s"}, "x-latency", nil),
		mount("fixed-mount-3s", "Comparison, fixed 1 s polling: Mount ÷ attach latency, 3 s", []string{"BenchmarkMountFixedPoll/latency=3s"}, "x-latency", nil),
		mount("fixed-parallel-16", "Comparison, fixed 1 s polling: 16 parallel ÷ one", []string{"BenchmarkMountFixedPoll/n=16"}, "x-one", nil),
		mount("fixed-parallel-64", "Comparison, fixed 1 s polling: 64 parallel ÷ one", []string{"BenchmarkMountFixedPoll/n=64"}, "x-one", nil),
		reconcileTime("100", nil),
		reconcileCalls("100", nil),
		reconcileTime("1000", &Target{Max: 2, Text: "≤ 2 s"}),
		reconcileCalls("1000", &Target{Max: 10, Text: "≤ 10"}),
		reconcileTime("5000", nil),
		reconcileCalls("5000", nil),
		{ID: "libvirt-scan-1000", Title: "libvirt scan, 1,000 domains × 4 disks (test driver through libvirtd)",
			Benchmarks: []string{"BenchmarkScanTestDriver1000x4"}, Unit: "ns/op", Scale: sec, Format: fmtS},
		{ID: "plugin-rss-1000", Title: "Plugin RSS with 1,000 volumes",
			Benchmarks: []string{"BenchmarkPluginRSS/volumes=1000"}, Unit: "rss-MiB", Scale: 1, Format: fmtMi},
	}
}
