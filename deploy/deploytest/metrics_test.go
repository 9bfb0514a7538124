package deploytest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/cinderwarden/cinderwarden/internal/testenv"
	"github.com/cinderwarden/cinderwarden/openstack"
	"github.com/cinderwarden/cinderwarden/reconciler"
	"github.com/cinderwarden/cinderwarden/simcloud"
	"github.com/cinderwarden/cinderwarden/volumedriver"
)

// registeredMetricNames returns every metric family name the code's
// collectors describe (the plugin's, the reconciler's and the OpenStack
// client's), including vectors that have no sample yet.
func registeredMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	reg := prometheus.NewRegistry()
	if _, err := volumedriver.NewMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := reconciler.NewMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := openstack.NewMetrics(reg); err != nil {
		t.Fatal(err)
	}
	ch := make(chan *prometheus.Desc)
	go func() {
		reg.Describe(ch)
		close(ch)
	}()
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	names := map[string]bool{}
	for d := range ch {
		m := fq.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read the name of %s", d)
		}
		names[m[1]] = true
	}
	if len(names) < 10 {
		t.Fatalf("only %d metric names described: %v", len(names), names)
	}
	return names
}

// exported reports whether a name used in a query is served: a family
// itself or a histogram's _bucket/_sum/_count series.
func exported(names map[string]bool, n string) bool {
	if names[n] {
		return true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(n, suf); ok && names[base] {
			return true
		}
	}
	return false
}

var (
	promqlString    = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	promqlMatchers  = regexp.MustCompile(`\{[^{}]*\}`)
	promqlRange     = regexp.MustCompile(`\[[^\[\]]*\]`)
	promqlGrouping  = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	promqlGrafana   = regexp.MustCompile(`\$\{?\w+\}?`)
	promqlNumber    = regexp.MustCompile(`\b\d+(\.\d+)?([eE][+-]?\d+)?\b`)
	promqlIdent     = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
	promqlOperators = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true,
		"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true, "inf": true, "nan": true}
)

// metricNamesIn returns the metric names a PromQL expression selects:
// identifiers that are not functions, keywords, label names or durations.
func metricNamesIn(expr string) []string {
	s := promqlGrafana.ReplaceAllString(expr, " ")
	s = promqlString.ReplaceAllString(s, `""`)
	s = promqlMatchers.ReplaceAllString(s, " ")
	s = promqlRange.ReplaceAllString(s, " ")
	s = promqlGrouping.ReplaceAllString(s, " ")
	s = promqlNumber.ReplaceAllString(s, " ")
	var out []string
	for _, m := range promqlIdent.FindAllString(s, -1) {
		if strings.HasSuffix(m, "(") || promqlOperators[strings.ToLower(m)] {
			continue
		}
		out = append(out, m)
	}
	return out
}

func TestMetricNamesInParser(t *testing.T) {
	for expr, want := range map[string]string{
		`sum by (instance) (cinderwarden_reconcile_findings{class="zombie_disk"}) > 0`:                                       "cinderwarden_reconcile_findings",
		`histogram_quantile(0.9, sum by (le) (rate(x_seconds_bucket{step="attach",instance=~"$i"}[$__rate_interval]))) > 30`: "x_seconds_bucket",
		`(time() - a_ts > 2700) and on (instance) b_ts > 0`:                                                                  "a_ts b_ts",
		`sum(a{l="b or c"}) or vector(0)`:                                                                                    "a",
		`label_values(cinderwarden_plugin_requests_total, instance)`:                                                         "cinderwarden_plugin_requests_total instance",
		`rate(a[5m]) / ignoring(code) group_left rate(b[1e3s])`:                                                              "a b",
	} {
		if got := strings.Join(metricNamesIn(expr), " "); got != want {
			t.Errorf("metricNamesIn(%q) = %q, want %q", expr, got, want)
		}
	}
}

// queries returns every PromQL expression in the rules and the dashboard,
// keyed by where it is.
func queries(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	var rules struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert  string `yaml:"alert"`
				Record string `yaml:"record"`
				Expr   string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	b, err := os.ReadFile(repoPath("deploy", "prometheus", "cinderwarden.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatal(err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			out["rule "+r.Alert+r.Record] = r.Expr
		}
	}
	b, err = os.ReadFile(repoPath("deploy", "grafana", "cinderwarden-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			out[fmt.Sprintf("panel %q %s", p.Title, tg.RefID)] = tg.Expr
		}
	}
	for _, v := range dash.Templating.List {
		if def, ok := strings.CutPrefix(v.Definition, "label_values("); ok {
			metric, _, _ := strings.Cut(def, ",")
			out["variable "+v.Name] = strings.TrimSpace(metric)
		}
	}
	if len(out) < 20 {
		t.Fatalf("found only %d queries in the rules and the dashboard", len(out))
	}
	return out
}

// TestDashboardAndRulesUseExportedMetrics: every metric name in the alert
// rules and the Grafana dashboard is one the code registers (in-process:
// the same constructors the plugin and the reconciler call).
func TestDashboardAndRulesUseExportedMetrics(t *testing.T) {
	names := registeredMetricNames(t)
	for _, bad := range []string{"cinderwarden_plugin_requests_totl", "openstack_api_request_duration_seconds_max", "node_load1"} {
		if exported(names, bad) {
			t.Fatalf("exported(%q) = true: the check would let a wrong name through", bad)
		}
	}
	used := map[string]bool{}
	for where, expr := range queries(t) {
		ms := metricNamesIn(expr)
		if len(ms) == 0 {
			t.Errorf("%s: no metric in %q", where, expr)
		}
		for _, m := range ms {
			used[m] = true
			if !exported(names, m) {
				t.Errorf("%s uses %s, which the code does not export (exported: %v)", where, m, sortedKeys(names))
			}
		}
	}
	t.Logf("%d distinct metric names used, all exported", len(used))
}

// TestDashboardQueriesParse feeds every dashboard query, with Grafana's
// variables filled in, to promtool as recording rules: a query Prometheus
// cannot parse fails here.
func TestDashboardQueriesParse(t *testing.T) {
	testenv.RequireCommand(t, "promtool")
	fill := strings.NewReplacer("$__rate_interval", "5m", "$__range", "1h", "$plugin_instance", ".*", "$reconciler_instance", ".*")
	var rules []map[string]string
	i := 0
	keys := sortedKeys(queries(t))
	for _, where := range keys {
		expr := queries(t)[where]
		if strings.HasPrefix(where, "variable ") || strings.HasPrefix(where, "rule ") {
			continue
		}
		i++
		rules = append(rules, map[string]string{"record": fmt.Sprintf("dashboard:query_%d", i), "expr": fill.Replace(expr)})
	}
	doc := map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}}
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "dashboard.rules.yml")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, _, err := run(ctx, "", nil, "promtool", "check", "rules", p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, fmt.Sprintf("SUCCESS: %d rules found", i)) {
		t.Errorf("promtool did not accept all %d dashboard queries:\n%s", i, out)
	}
}

func TestPrometheusRules(t *testing.T) {
	testenv.RequireCommand(t, "promtool")
	dir := repoPath("deploy", "prometheus")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, _, err := run(ctx, dir, nil, "promtool", "check", "rules", "cinderwarden.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "SUCCESS") {
		t.Errorf("promtool check rules:\n%s", out)
	}
	out, _, err = run(ctx, dir, nil, "promtool", "test", "rules", "cinderwarden.rules.test.yml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "SUCCESS") {
		t.Errorf("promtool test rules:\n%s", out)
	}
}

// parseExposition returns the metric family names in Prometheus text format.
func parseExposition(t *testing.T, text string) map[string]bool {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse metrics: %v\n%s", err, text)
	}
	out := map[string]bool{}
	for n := range fams {
		out[n] = true
	}
	return out
}

// TestReconcilerServesRegisteredMetrics runs the real reconciler binary
// (one pass whose libvirt is unreachable, so no substrate is needed) with a
// node_exporter textfile and checks the file holds only names the
// registries describe, including the run bookkeeping the alerts rely on.
func TestReconcilerServesRegisteredMetrics(t *testing.T) {
	bin := cinderwardenBin.get(t)
	names := registeredMetricNames(t)
	dir := t.TempDir()
	textfile := filepath.Join(dir, "cinderwarden.prom")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, stderr, err := run(ctx, dir, nil, bin, "reconcile", "--once",
		"--libvirt-uri", "qemu:///system?socket="+filepath.Join(dir, "no-libvirt.sock"),
		"--state-file", filepath.Join(dir, "state.json"), "--audit-log", filepath.Join(dir, "audit.jsonl"),
		"--metrics-textfile", textfile)
	if err == nil {
		t.Fatalf("reconcile with no libvirtd succeeded; want exit 2\n%s", stderr)
	}
	b, rerr := os.ReadFile(textfile)
	if rerr != nil {
		t.Fatalf("no textfile written: %v (reconcile: %v)", rerr, err)
	}
	served := parseExposition(t, string(b))
	for n := range served {
		if !names[n] {
			t.Errorf("reconciler serves %s, which the registries do not describe", n)
		}
	}
	for _, n := range []string{"cinderwarden_reconcile_last_run_timestamp_seconds", "cinderwarden_reconcile_last_success_timestamp_seconds",
		"cinderwarden_reconcile_runs_total", "cinderwarden_reconcile_run_errors_total", "cinderwarden_reconcile_run_duration_seconds"} {
		if !served[n] {
			t.Errorf("reconciler textfile lacks %s:\n%s", n, b)
		}
	}
}

// TestReconcilerPassServesMetrics runs one real reconcile pass of the
// binary against libvirt's built-in test driver (through libvirtd) and
// the simulator's Keystone, Nova and Cinder: its textfile holds the
// findings and OpenStack API families the dashboard and the alerts read,
// and nothing the registries do not describe.
func TestReconcilerPassServesMetrics(t *testing.T) {
	testenv.RequireLibvirt(t)
	bin := cinderwardenBin.get(t)
	names := registeredMetricNames(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	sim, err := simcloud.Start(ctx, simcloud.Options{StateDir: filepath.Join(dir, "sim"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sim.Close(); err != nil {
			t.Errorf("close simulator: %v", err)
		}
	})
	if _, err := sim.AddInstance(simcloud.InstanceSpec{Name: "vm-1", Host: "compute-1"}); err != nil {
		t.Fatal(err)
	}
	clouds := filepath.Join(dir, "clouds.yaml")
	if err := sim.WriteCloudsYAML(clouds); err != nil {
		t.Fatal(err)
	}
	textfile := filepath.Join(dir, "cinderwarden.prom")
	stdout, stderr, err := run(ctx, dir, nil, bin, "reconcile", "--once", "--host", "compute-1",
		"--os-cloud", simcloud.CloudAdmin, "--os-client-config-file", clouds, "--libvirt-uri", "test:///default",
		"--state-file", filepath.Join(dir, "state.json"), "--audit-log", filepath.Join(dir, "audit.jsonl"),
		"--metrics-textfile", textfile)
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 1) { // 1: findings
		t.Fatalf("reconcile pass: %v", err)
	}
	b, err := os.ReadFile(textfile)
	if err != nil {
		t.Fatalf("no textfile: %v\n%s\n%s", err, stdout, stderr)
	}
	served := parseExposition(t, string(b))
	for n := range served {
		if !names[n] {
			t.Errorf("reconciler serves %s, which the registries do not describe", n)
		}
	}
	for _, n := range []string{"cinderwarden_reconcile_findings", "cinderwarden_reconcile_last_success_timestamp_seconds",
		"cinderwarden_reconcile_run_duration_seconds", "openstack_api_requests_total", "openstack_api_request_duration_seconds"} {
		if !served[n] {
			t.Errorf("textfile of a real pass lacks %s:\n%s\nreconcile output:\n%s", n, b, stdout)
		}
	}
	t.Logf("a real pass served %d metric families; its report:\n%s", len(served), stdout)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
