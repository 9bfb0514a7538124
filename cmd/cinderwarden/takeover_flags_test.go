package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/cinderwarden/cinderwarden/volumedriver"
)

func TestTakeoverFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--preempt", "maybe"}, `--preempt "maybe": allowed values: off, on, force`},
		{[]string{"--takeover-grace", "0s"}, "--takeover-grace 0s: must be positive"},
		{[]string{"--takeover-detach-timeout", "-1s"}, "--takeover-detach-timeout -1s: must be positive"},
		{[]string{"--takeover-watch-interval", "0s"}, "--takeover-watch-interval 0s: must be positive"},
		{[]string{"--sweep-interval", "0s"}, "--sweep-interval 0s: must be positive"},
		{[]string{"--request-timeout", "0s"}, "--request-timeout 0s: must be positive"},
	} {
		var stderr bytes.Buffer
		if _, code, ok := parsePluginFlags(tc.args, &stderr); ok || code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%q: ok=%v code=%d stderr %q, want %q", tc.args, ok, code, stderr.String(), tc.want)
		}
	}
	c, _, ok := parsePluginFlags(nil, &bytes.Buffer{})
	if !ok || c.Preempt != volumedriver.PreemptOff || c.Takeover.Grace != 30*time.Second || c.Takeover.ForceDetach ||
		c.Takeover.WatchInterval != 3*time.Second || c.Takeover.SweepInterval != 30*time.Second {
		t.Fatalf("defaults: %+v", c)
	}
	c, _, ok = parsePluginFlags([]string{"--preempt", "force", "--takeover-grace", "5s", "--takeover-force-detach"}, &bytes.Buffer{})
	if !ok || c.Preempt != volumedriver.PreemptForce || c.Takeover.Grace != 5*time.Second || !c.Takeover.ForceDetach {
		t.Fatalf("set: %+v", c)
	}
}
