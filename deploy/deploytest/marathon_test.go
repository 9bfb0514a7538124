package deploytest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cinderwarden/cinderwarden/volumedriver"
)

// TestMarathonExamples: every external volume in deploy/marathon names the
// dvdi provider and a driver, and its dvdi/ options are ones the plugin
// accepts with values it accepts (volumedriver.ParseCreateOptions, the
// plugin's own validation); every app stops the old task before starting
// the new one.
func TestMarathonExamples(t *testing.T) {
	files, err := filepath.Glob(repoPath("deploy", "marathon", "*.json"))
	if err != nil || len(files) < 2 {
		t.Fatalf("marathon examples: %v %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var app struct {
				ID        string `json:"id"`
				Instances int    `json:"instances"`
				Container struct {
					Type    string `json:"type"`
					Volumes []struct {
						ContainerPath string `json:"containerPath"`
						External      *struct {
							Name     string            `json:"name"`
							Provider string            `json:"provider"`
							Options  map[string]string `json:"options"`
						} `json:"external"`
					} `json:"volumes"`
				} `json:"container"`
				UpgradeStrategy *struct {
					MinimumHealthCapacity *float64 `json:"minimumHealthCapacity"`
					MaximumOverCapacity   *float64 `json:"maximumOverCapacity"`
				} `json:"upgradeStrategy"`
			}
			dec := json.NewDecoder(strings.NewReader(string(b)))
			if err := dec.Decode(&app); err != nil {
				t.Fatal(err)
			}
			if app.ID == "" || app.Instances != 1 {
				t.Errorf("app %q: %d instances; an app with an external volume runs exactly one", app.ID, app.Instances)
			}
			u := app.UpgradeStrategy
			if u == nil || u.MinimumHealthCapacity == nil || *u.MinimumHealthCapacity != 0 || u.MaximumOverCapacity == nil || *u.MaximumOverCapacity != 0 {
				t.Errorf("app %q: upgradeStrategy must be {minimumHealthCapacity: 0, maximumOverCapacity: 0}", app.ID)
			}
			n := 0
			for _, v := range app.Container.Volumes {
				if v.External == nil {
					continue
				}
				n++
				e := v.External
				if e.Provider != "dvdi" || e.Options["dvdi/driver"] == "" {
					t.Errorf("volume %s: provider %q, driver %q", e.Name, e.Provider, e.Options["dvdi/driver"])
				}
				if err := volumedriver.ValidateName(e.Name); err != nil {
					t.Errorf("volume name: %v", err)
				}
				opts := map[string]string{}
				for k, val := range e.Options {
					key, ok := strings.CutPrefix(k, "dvdi/")
					if !ok {
						t.Errorf("volume %s: option %q is not a dvdi/ option", e.Name, k)
						continue
					}
					if key != "driver" {
						opts[key] = val
					}
				}
				if _, err := volumedriver.ParseCreateOptions(opts, volumedriver.DefaultOptionPolicy()); err != nil {
					t.Errorf("volume %s: the plugin would refuse these options: %v", e.Name, err)
				}
			}
			if n == 0 {
				t.Errorf("app %q declares no external volume", app.ID)
			}
		})
	}
}
