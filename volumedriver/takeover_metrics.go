package volumedriver

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// takeoverMetrics are issue 4's metrics, registered with Metrics:
//
//	cinderwarden_takeover_steps_total{step,result}              counter
//	  step: requested, released, refused, nova_detach, force_detach
//	  (requested/nova_detach/force_detach on the taker, released/refused on
//	  the holder); result: ok or error
//	cinderwarden_takeover_duration_seconds{outcome}             histogram
//	  the taker's whole takeover; outcome: released, refused, contended,
//	  nova_detach, force_detach, failed
//	cinderwarden_sweep_unmounts_total{reason,result}           counter
//	  stale mounts the sweep unmounted (reason: device_gone, corrupted,
//	  not_attached)
//	cinderwarden_sweep_runs_total{result}                      counter
type takeoverMetrics struct {
	steps    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	swept    *prometheus.CounterVec
	sweeps   *prometheus.CounterVec
}

func newTakeoverMetrics() *takeoverMetrics {
	return &takeoverMetrics{
		steps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cinderwarden_takeover_steps_total",
			Help: "Takeover steps by step (requested, released, refused, nova_detach, force_detach) and result.",
		}, []string{"step", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cinderwarden_takeover_duration_seconds",
			Help:    "Duration of takeovers on the taker, by outcome.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"outcome"}),
		swept: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cinderwarden_sweep_unmounts_total",
			Help: "Stale mounts unmounted by the sweep, by reason and result.",
		}, []string{"reason", "result"}),
		sweeps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cinderwarden_sweep_runs_total",
			Help: "Stale-mount sweep runs by result.",
		}, []string{"result"}),
	}
}

func (t *takeoverMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{t.steps, t.duration, t.swept, t.sweeps}
}

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

func (m *Metrics) takeoverStep(step string, err error) {
	if m == nil || m.tk == nil {
		return
	}
	m.tk.steps.WithLabelValues(step, result(err)).Inc()
}

func (m *Metrics) takeoverDone(outcome string, d time.Duration) {
	if m == nil || m.tk == nil {
		return
	}
	m.tk.duration.WithLabelValues(outcome).Observe(d.Seconds())
}

func (m *Metrics) sweptMount(reason string, err error) {
	if m == nil || m.tk == nil {
		return
	}
	m.tk.swept.WithLabelValues(reason, result(err)).Inc()
}

func (m *Metrics) sweepRun(err error) {
	if m == nil || m.tk == nil {
		return
	}
	m.tk.sweeps.WithLabelValues(result(err)).Inc()
}
