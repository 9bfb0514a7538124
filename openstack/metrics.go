package openstack

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names follow cloud-provider-openstack's cinder-csi
// (openstack_api_request_duration_seconds and friends), so dashboards built
// for it read ours. The request label is the operation's name
// (volume_get, volume_attach, ...) set by each Client method; the service
// label is "volume", "compute", "identity" or "metadata".
const (
	metricDuration = "openstack_api_request_duration_seconds"
	metricRequests = "openstack_api_requests_total"
	metricErrors   = "openstack_api_request_errors_total"
)

// Metrics instruments every HTTP request the package makes, in one place: a
// RoundTripper under gophercloud (so Keystone re-authentication and every
// page of a listing count too). It also counts calls for tests and
// benchmarks ("this pass used at most N API calls").
type Metrics struct {
	duration *prometheus.HistogramVec
	requests *prometheus.CounterVec
	errs     *prometheus.CounterVec

	calls     atomic.Int64
	mu        sync.Mutex
	byRequest map[string]int64
}

// NewMetrics creates the collectors and registers them on reg (nil: not
// registered, calls still counted). Registering twice on one registry
// reuses the collectors already there, so several Clients can share it.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    metricDuration,
			Help:    "Latency of OpenStack API requests by service and request.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14), // 5 ms … 41 s
		}, []string{"service", "request"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricRequests,
			Help: "OpenStack API requests by service, request and HTTP status code (\"error\": no response).",
		}, []string{"service", "request", "code"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricErrors,
			Help: "OpenStack API requests that failed (no response or status >= 400).",
		}, []string{"service", "request"}),
		byRequest: map[string]int64{},
	}
	if reg == nil {
		return m, nil
	}
	var err error
	m.duration, err = register(reg, m.duration)
	if err != nil {
		return nil, err
	}
	if m.requests, err = register(reg, m.requests); err != nil {
		return nil, err
	}
	if m.errs, err = register(reg, m.errs); err != nil {
		return nil, err
	}
	return m, nil
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}

// Calls is the number of HTTP requests sent so far (including
// authentication and every page).
func (m *Metrics) Calls() int64 { return m.calls.Load() }

// CallsFor is the number of requests sent with the given request label.
func (m *Metrics) CallsFor(request string) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.byRequest[request]
}

// CallsByRequest returns a copy of the per-request call counts.
func (m *Metrics) CallsByRequest() map[string]int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]int64, len(m.byRequest))
	for k, v := range m.byRequest {
		out[k] = v
	}
	return out
}

// Wrap returns a RoundTripper that records every request through next.
func (m *Metrics) Wrap(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return &instrumented{next: next, m: m}
}

type opKey struct{}

// op names a request for the metrics: set on the context by each Client
// method, read by the RoundTripper.
type op struct{ service, request string }

func withOp(ctx context.Context, service, request string) context.Context {
	return context.WithValue(ctx, opKey{}, op{service, request})
}

type instrumented struct {
	next http.RoundTripper
	m    *Metrics
}

func (t *instrumented) RoundTrip(req *http.Request) (*http.Response, error) {
	o, _ := req.Context().Value(opKey{}).(op)
	switch {
	case strings.HasSuffix(req.URL.Path, "/auth/tokens"):
		// Authentication, including a re-auth triggered inside another
		// request, is its own request whatever the context says.
		o = op{"identity", "token_create"}
	case o.request == "":
		o = op{"unknown", "unknown"}
	}
	start := time.Now()
	resp, err := t.next.RoundTrip(req)
	t.m.duration.WithLabelValues(o.service, o.request).Observe(time.Since(start).Seconds())
	code := "error"
	if err == nil {
		code = strconv.Itoa(resp.StatusCode)
	}
	t.m.requests.WithLabelValues(o.service, o.request, code).Inc()
	if err != nil || resp.StatusCode >= 400 {
		t.m.errs.WithLabelValues(o.service, o.request).Inc()
	}
	t.m.calls.Add(1)
	t.m.mu.Lock()
	t.m.byRequest[o.request]++
	t.m.mu.Unlock()
	return resp, err
}
