package deploytest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cinderwarden/cinderwarden/internal/dockertest"
	"github.com/cinderwarden/cinderwarden/internal/testenv"
	"github.com/cinderwarden/cinderwarden/simcloud"
)

var recapLine = regexp.MustCompile(`localhost\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)`)

// TestAnsibleManagedPluginApply runs the cinderwarden_plugin role for real
// in managed mode against the local dockerd (every path in a temp dir, the
// cloud the simulator): the role copies the bundle, creates, sets and
// enables the plugin, and a volume works through it; a second run changes
// nothing; a changed variable disables, re-sets and re-enables the plugin.
func TestAnsibleManagedPluginApply(t *testing.T) {
	testenv.RequireDocker(t)
	testenv.RequireCommand(t, "ansible-playbook", "ldd", "mke2fs", "mkfs.xfs", "blkid", "go")
	bin := cinderwardenBin.get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	docker := dockertest.CLI{}
	ps := startPluginSim(ctx, t)
	bundle := filepath.Join(ps.dir, "bundle")
	if _, _, err := run(ctx, repoRoot, nil, repoPath("deploy", "docker-plugin", "build.sh"), "--no-create", "--binary", bin, "--out", bundle, "--tar", bundle+".tar"); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("cinderwarden-deploytest/ansible:%d", os.Getpid())
	removePluginOnCleanup(t, docker, name)
	vol := fmt.Sprintf("cwdeploy-ansible-%d", os.Getpid())
	metricsPort := freePort(t)
	play := func(defaultSize int) (changed int) {
		t.Helper()
		vars := map[string]any{
			"cinderwarden_plugin_mode":                   "managed",
			"cinderwarden_plugin_managed_src":            bundle + ".tar",
			"cinderwarden_plugin_managed_name":           name,
			"cinderwarden_plugin_managed_dir":            filepath.Join(ps.dir, "installed"),
			"cinderwarden_plugin_state_dir":              ps.stateDir,
			"cinderwarden_clouds_yaml_path":              filepath.Join(ps.osDir, "clouds.yaml"),
			"cinderwarden_os_cloud":                      simcloud.CloudMember,
			"cinderwarden_plugin_managed_identity_order": "metadata",
			"cinderwarden_plugin_default_size":           defaultSize,
			"cinderwarden_plugin_max_size":               8,
			"cinderwarden_plugin_metrics_listen":         fmt.Sprintf("127.0.0.1:%d", metricsPort),
			"cinderwarden_plugin_extra_args": []string{"--metadata-url=" + ps.sim.MetadataURL(ps.inst.ID),
				"--dev-root=" + ps.devRoot, "--sys-root=/nonexistent"},
		}
		vj, err := json.Marshal(vars)
		if err != nil {
			t.Fatal(err)
		}
		out, _, err := run(ctx, repoRoot, ansibleEnv(t), "ansible-playbook", "-i", "localhost,", "-c", "local",
			"-e", string(vj), filepath.Join("deploy", "deploytest", "testdata", "ansible-managed-plugin.yml"))
		if err != nil {
			t.Fatal(err)
		}
		m := recapLine.FindStringSubmatch(out)
		if m == nil || m[3] != "0" || m[4] != "0" {
			t.Fatalf("play recap:\n%s", out)
		}
		changed, _ = strconv.Atoi(m[2])
		return changed
	}
	enabledArgs := func() (bool, string) {
		t.Helper()
		out, err := docker.Run(ctx, "plugin", "inspect", "-f", "{{.Enabled}} {{.Settings.Args}}", name)
		if err != nil {
			t.Fatal(err)
		}
		enabled, args, _ := strings.Cut(out, " ")
		return enabled == "true", args
	}

	if changed := play(1); changed == 0 {
		t.Error("first run changed nothing")
	}
	if on, args := enabledArgs(); !on || !strings.Contains(args, "--default-size=1") {
		t.Fatalf("after the first run: enabled %v, args %s", on, args)
	}
	if _, err := docker.Run(ctx, "volume", "create", "-d", name, vol); err != nil {
		t.Fatal(err)
	}
	if v := volumeNamed(ctx, t, ps.cloud, vol); v.SizeGiB != 1 {
		t.Errorf("%s: %d GiB, want the role's default size 1", vol, v.SizeGiB)
	}
	if _, err := docker.Run(ctx, "volume", "rm", vol); err != nil {
		t.Fatal(err)
	}

	if changed := play(1); changed != 0 {
		t.Errorf("second run with the same variables changed %d things, want 0", changed)
	}
	if changed := play(2); changed == 0 {
		t.Error("run with a new default size changed nothing")
	}
	if on, args := enabledArgs(); !on || !strings.Contains(args, "--default-size=2") {
		t.Errorf("after changing the default size: enabled %v, args %s", on, args)
	}
}
