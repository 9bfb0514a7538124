package openstack

import (
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetricsLabels(t *testing.T) {
	fc := newFakeCloud(t)
	fc.serve("GET "+cinderBase+"/volumes/"+volID, "volume_show_available")
	fc.serve("GET "+cinderBase+"/volumes/00000000-0000-0000-0000-000000000000", "error_not_found")
	fc.serve("POST "+cinderBase+"/volumes/{id}/action", "error_member_force_detach")
	reg := prometheus.NewRegistry()
	c := fc.client(withRegistry(reg))
	ctx := ctxT(t)
	if _, err := c.GetVolume(ctx, volID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetVolume(ctx, volID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetVolume(ctx, "00000000-0000-0000-0000-000000000000"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if err := c.ForceDetach(ctx, volID, ""); !errors.Is(err, ErrForbidden) {
		t.Fatal(err)
	}

	want := `
# HELP openstack_api_request_errors_total OpenStack API requests that failed (no response or status >= 400).
# TYPE openstack_api_request_errors_total counter
openstack_api_request_errors_total{request="volume_force_detach",service="volume"} 1
openstack_api_request_errors_total{request="volume_get",service="volume"} 1
# HELP openstack_api_requests_total OpenStack API requests by service, request and HTTP status code ("error": no response).
# TYPE openstack_api_requests_total counter
openstack_api_requests_total{code="201",request="token_create",service="identity"} 1
openstack_api_requests_total{code="200",request="volume_get",service="volume"} 2
openstack_api_requests_total{code="403",request="volume_force_detach",service="volume"} 1
openstack_api_requests_total{code="404",request="volume_get",service="volume"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"openstack_api_requests_total", "openstack_api_request_errors_total"); err != nil {
		t.Error(err)
	}
	// One histogram series per (service, request), each with its count.
	if n := testutil.CollectAndCount(c.Metrics().duration, metricDuration); n != 3 {
		t.Errorf("%d duration series, want 3 (token_create, volume_get, volume_force_detach)", n)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var getCount uint64
	for _, mf := range mfs {
		if mf.GetName() != metricDuration {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "request" && lp.GetValue() == "volume_get" {
					getCount = m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	if getCount != 3 {
		t.Errorf("volume_get duration samples = %d, want 3", getCount)
	}
	if got := c.APICalls(); got != 5 {
		t.Errorf("APICalls = %d, want 5", got)
	}
	if got := c.Metrics().CallsByRequest(); got["volume_get"] != 3 || got["token_create"] != 1 || got["volume_force_detach"] != 1 {
		t.Errorf("CallsByRequest = %v", got)
	}

	// A second client on the same registry shares the collectors.
	c2 := fc.client(withRegistry(reg))
	if _, err := c2.GetVolume(ctx, volID); err != nil {
		t.Fatal(err)
	}
	if v := testutil.ToFloat64(c.Metrics().requests.WithLabelValues("volume", "volume_get", "200")); v != 3 {
		t.Errorf("shared counter = %v, want 3", v)
	}
}
