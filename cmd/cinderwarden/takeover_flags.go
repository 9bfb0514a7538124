package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/cinderwarden/cinderwarden/volumedriver"
)

// registerTakeoverFlags adds issue 4's plugin flags; the returned string is
// --preempt, checked by validateTakeover.
func registerTakeoverFlags(fs *flag.FlagSet, t *volumedriver.TakeoverConfig) *string {
	preempt := fs.String("preempt", "off", "global takeover setting for volumes without their own (-o preempt): off, on (cooperative: refused while a container on the holder uses the volume) or force")
	fs.DurationVar(&t.Grace, "takeover-grace", 30*time.Second, "how long a taker waits for the holder's plugin to answer before it detaches the holder through Nova")
	fs.DurationVar(&t.DetachTimeout, "takeover-detach-timeout", 2*time.Minute, "bound on the Nova detach of a silent holder")
	fs.BoolVar(&t.ForceDetach, "takeover-force-detach", false, "when Nova cannot detach a silent holder, fall back to Cinder os-force_detach (admin credentials only; tags the volume for the reconciler)")
	fs.DurationVar(&t.WatchInterval, "takeover-watch-interval", 3*time.Second, "how often the plugin looks for takeover requests addressed to this instance")
	fs.DurationVar(&t.SweepInterval, "sweep-interval", 30*time.Second, "how often the stale-mount sweep runs")
	return preempt
}

func (c *pluginConfig) validateTakeover(preempt string) error {
	switch preempt {
	case "off":
		c.Preempt = volumedriver.PreemptOff
	case "on":
		c.Preempt = volumedriver.PreemptOn
	case "force":
		c.Preempt = volumedriver.PreemptForce
	default:
		return fmt.Errorf("--preempt %q: allowed values: off, on, force", preempt)
	}
	for name, d := range map[string]time.Duration{"--takeover-grace": c.Takeover.Grace,
		"--takeover-detach-timeout": c.Takeover.DetachTimeout, "--takeover-watch-interval": c.Takeover.WatchInterval,
		"--sweep-interval": c.Takeover.SweepInterval} {
		if d <= 0 {
			return fmt.Errorf("%s %s: must be positive", name, d)
		}
	}
	return nil
}
