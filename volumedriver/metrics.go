package volumedriver

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the plugin's Prometheus metrics (the OpenStack API metrics
// come from the openstack package on the same registry):
//
//	cinderwarden_plugin_requests_total{operation,result}           counter
//	cinderwarden_plugin_request_duration_seconds{operation,result} histogram
//	cinderwarden_volume_step_duration_seconds{step,result}          histogram
//	  (step: attach, wait-device, mount, unmount, detach)
//
// result is ErrorClass of the outcome ("ok" on success).
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	steps    *prometheus.HistogramVec
	// takeover and sweep metrics (issue 4): takeover_metrics.go
	tk *takeoverMetrics
}

// NewMetrics creates the metrics and registers them on reg (nil: not
// registered, still usable).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cinderwarden_plugin_requests_total",
			Help: "Docker volume plugin requests by operation and result.",
		}, []string{"operation", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cinderwarden_plugin_request_duration_seconds",
			Help:    "Docker volume plugin request durations by operation and result.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"operation", "result"}),
		steps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cinderwarden_volume_step_duration_seconds",
			Help:    "Durations of the per-volume steps: attach, wait-device, mount, unmount, detach.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2, 5, 10, 30, 60, 120},
		}, []string{"step", "result"}),
	}
	m.tk = newTakeoverMetrics()
	if reg != nil {
		for _, c := range append([]prometheus.Collector{m.requests, m.duration, m.steps}, m.tk.collectors()...) {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *Metrics) observeRequest(op string, err error, d time.Duration) {
	if m == nil {
		return
	}
	r := ErrorClass(err)
	m.requests.WithLabelValues(op, r).Inc()
	m.duration.WithLabelValues(op, r).Observe(d.Seconds())
}

func (m *Metrics) observeStep(step ActionKind, failed bool, d time.Duration) {
	if m == nil {
		return
	}
	r := "ok"
	if failed {
		r = "error"
	}
	m.steps.WithLabelValues(step.String(), r).Observe(d.Seconds())
}
