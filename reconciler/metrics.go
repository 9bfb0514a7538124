package reconciler

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the reconciler's Prometheus metrics, registered on a
// registry the caller owns. Findings and actions are gauges of the last run
// (reset each run), so a discrepancy that went away stops being reported;
// outcomes of executed actions are also counted over the process lifetime.
type Metrics struct {
	findings    *prometheus.GaugeVec
	actions     *prometheus.GaugeVec
	outcomes    *prometheus.CounterVec
	duration    prometheus.Gauge
	lastSuccess prometheus.Gauge
	lastRun     prometheus.Gauge
	aborted     prometheus.Gauge
	runs        prometheus.Counter
	errors      *prometheus.CounterVec
}

// NewMetrics creates and registers the metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		findings: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cinderwarden_reconcile_findings",
			Help: "Findings of the last reconcile run, by class and severity (skipped ones included)."}, []string{"class", "severity"}),
		actions: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cinderwarden_reconcile_actions",
			Help: "Actions of the last reconcile run, by class, kind and state (dry_run, waiting, blocked, deferred, aborted, done, pending, failed, precondition_failed)."},
			[]string{"class", "kind", "state"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cinderwarden_reconcile_action_results_total",
			Help: "Executed reconcile actions by class, kind and result (done, pending, failed, precondition_failed)."},
			[]string{"class", "kind", "result"}),
		duration: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cinderwarden_reconcile_run_duration_seconds",
			Help: "Wall time of the last reconcile run (observe, plan, act)."}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cinderwarden_reconcile_last_success_timestamp_seconds",
			Help: "Unix time of the last run that completed without error (not aborted, no failed action)."}),
		lastRun: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cinderwarden_reconcile_last_run_timestamp_seconds",
			Help: "Unix time of the last run."}),
		aborted: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cinderwarden_reconcile_aborted",
			Help: "1 when the last run aborted every action (a source failed or looked empty)."}),
		runs: prometheus.NewCounter(prometheus.CounterOpts{Name: "cinderwarden_reconcile_runs_total",
			Help: "Reconcile runs started."}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cinderwarden_reconcile_run_errors_total",
			Help: "Reconcile runs that ended in error, by reason (aborted, action_failed, setup)."}, []string{"reason"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.findings, m.actions, m.outcomes, m.duration, m.lastSuccess, m.lastRun, m.aborted, m.runs, m.errors} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register reconciler metrics: %w", err)
			}
		}
	}
	return m, nil
}

// RecordRun records a finished run: its result (nil when the run could
// not even plan, e.g. libvirt or the memory file unusable), its duration,
// and setupErr when it failed before planning.
func (m *Metrics) RecordRun(r *Result, d time.Duration, at time.Time, setupErr error) {
	m.runs.Inc()
	m.duration.Set(d.Seconds())
	m.lastRun.Set(float64(at.Unix()))
	if r == nil || setupErr != nil {
		m.errors.WithLabelValues("setup").Inc()
		return
	}
	m.findings.Reset()
	for _, f := range r.Findings {
		m.findings.WithLabelValues(string(f.Class), string(f.Severity)).Inc()
	}
	m.actions.Reset()
	failed := false
	for _, a := range r.Actions {
		m.actions.WithLabelValues(string(a.Class), string(a.Kind), string(a.State)).Inc()
		switch a.State {
		case StateDone, StatePending, StatePreconditionFailed:
			m.outcomes.WithLabelValues(string(a.Class), string(a.Kind), string(a.State)).Inc()
		case StateFailed:
			m.outcomes.WithLabelValues(string(a.Class), string(a.Kind), string(a.State)).Inc()
			failed = true
		}
	}
	if r.Aborted {
		m.aborted.Set(1)
		m.errors.WithLabelValues("aborted").Inc()
		return
	}
	m.aborted.Set(0)
	if failed {
		m.errors.WithLabelValues("action_failed").Inc()
		return
	}
	m.lastSuccess.Set(float64(at.Unix()))
}
