package deploytest

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cinderwarden/cinderwarden/internal/testenv"
)

// ansibleEnv is the environment for ansible-playbook: the repo's roles,
// no colour, no cow, a private temp/home so nothing lands in ~/.ansible.
func ansibleEnv(t *testing.T) []string {
	t.Helper()
	home := t.TempDir()
	return append(os.Environ(),
		"ANSIBLE_ROLES_PATH="+repoPath("deploy", "ansible", "roles"),
		"ANSIBLE_NOCOLOR=1", "ANSIBLE_NOCOWS=1", "ANSIBLE_RETRY_FILES_ENABLED=0", "ANSIBLE_PIPELINING=1",
		"ANSIBLE_LOCAL_TEMP="+filepath.Join(home, "tmp"), "ANSIBLE_HOME="+home,
		"ANSIBLE_CONFIG="+repoPath("deploy", "ansible", "ansible.cfg"))
}

func TestAnsibleSyntax(t *testing.T) {
	testenv.RequireCommand(t, "ansible-playbook")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := repoPath("deploy", "ansible")
	out, _, err := run(ctx, dir, ansibleEnv(t), "ansible-playbook", "--syntax-check", "-i", "inventory.example.ini", "site.yml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "playbook: site.yml") {
		t.Errorf("syntax check output:\n%s", out)
	}
	// The example inventory has the groups the playbook targets.
	out, _, err = run(ctx, dir, ansibleEnv(t), "ansible-inventory", "-i", "inventory.example.ini", "--list")
	if err != nil {
		t.Fatal(err)
	}
	var inv map[string]struct {
		Hosts []string `json:"hosts"`
	}
	if err := json.Unmarshal([]byte(out), &inv); err != nil {
		t.Fatal(err)
	}
	for _, g := range []string{"worker", "edge", "compute"} {
		if len(inv[g].Hosts) == 0 {
			t.Errorf("inventory.example.ini: group %s has no hosts", g)
		}
	}
}

var renderedLine = regexp.MustCompile(`(?m)^\+(CINDERWARDEN_PLUGIN_ARGS|CINDERWARDEN_RECONCILE_ARGS|args)=(.*)$`)

// TestAnsibleCheckMode runs both roles against localhost in check mode
// (nothing is changed on this machine), once per plugin/reconciler mode,
// and feeds the flags the templates render to the real binary's parser:
// a flag the roles write that the binary does not know fails here.
func TestAnsibleCheckMode(t *testing.T) {
	testenv.RequireCommand(t, "ansible-playbook", "bash", "ldd", "mke2fs", "mkfs.xfs", "blkid", "go")
	bin := cinderwardenBin.get(t)
	bctx, bcancel := context.WithTimeout(context.Background(), time.Minute)
	defer bcancel()
	bundle := filepath.Join(t.TempDir(), "docker-plugin")
	if _, _, err := run(bctx, repoRoot, nil, repoPath("deploy", "docker-plugin", "build.sh"), "--no-create", "--binary", bin, "--out", bundle, "--tar", bundle+".tar"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		vars     map[string]any
		wantArgs map[string][]string // rendered variable → flags that must be there
	}{
		{"legacy plugin, timer reconciler, apply, mount base",
			map[string]any{"cinderwarden_reconcile_apply": true, "cinderwarden_reconcile_mount_bases": []string{"/var/lib/nova/mnt"},
				"cinderwarden_plugin_instance_id": "6f9c1c8e-1f7b-4c39-9d7e-0d6a4f1d2b3c", "cinderwarden_reconcile_min_sightings": 4},
			map[string][]string{
				"CINDERWARDEN_PLUGIN_ARGS":    {"--driver-name=cinder", "--instance-id=6f9c1c8e-1f7b-4c39-9d7e-0d6a4f1d2b3c", "--preempt=off"},
				"CINDERWARDEN_RECONCILE_ARGS": {"--apply", "--mount-base=/var/lib/nova/mnt", "--min-sightings=4", "--metrics-textfile=/var/lib/prometheus/node-exporter/cinderwarden.prom"},
			}},
		{"managed plugin, scheduled reconciler, dry-run",
			map[string]any{"cinderwarden_plugin_mode": "managed", "cinderwarden_plugin_managed_src": bundle + ".tar",
				"cinderwarden_reconcile_mode": "scheduled", "cinderwarden_plugin_default_size": 20, "cinderwarden_plugin_preempt": "on"},
			map[string][]string{
				"args":                        {"--default-size=20", "--identity-order=metadata,dmi", "--preempt=on"},
				"CINDERWARDEN_RECONCILE_ARGS": {"--metrics-listen=127.0.0.1:9478"},
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // independent check-mode runs; nothing is written
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			vars := map[string]any{"cinderwarden_binary_src": bin}
			for k, v := range tc.vars {
				vars[k] = v
			}
			vj, err := json.Marshal(vars)
			if err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, "/etc/default/cinderwarden-plugin", "/etc/default/cinderwarden-reconcile",
				"/etc/systemd/system/cinderwarden-plugin.service", "/usr/local/bin/cinderwarden")
			out, _, err := run(ctx, repoRoot, ansibleEnv(t), "ansible-playbook", "-i", "localhost,", "-c", "local", "--check", "--diff",
				"-e", string(vj), filepath.Join("deploy", "deploytest", "testdata", "ansible-localhost.yml"))
			if err != nil {
				t.Fatal(err)
			}
			if !regexp.MustCompile(`localhost\s+: ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=0`).MatchString(out) {
				t.Fatalf("play recap:\n%s", out)
			}
			if after := snapshot(t, "/etc/default/cinderwarden-plugin", "/etc/default/cinderwarden-reconcile",
				"/etc/systemd/system/cinderwarden-plugin.service", "/usr/local/bin/cinderwarden"); after != before {
				t.Errorf("check mode changed files on this machine: before %s, after %s", before, after)
			}
			rendered := map[string]string{}
			for _, m := range renderedLine.FindAllStringSubmatch(out, -1) {
				rendered[m[1]] = m[2]
			}
			for key, flags := range tc.wantArgs {
				got, ok := rendered[key]
				if !ok {
					t.Errorf("%s not rendered (diff output):\n%s", key, out)
					continue
				}
				for _, f := range flags {
					if !strings.Contains(" "+got+" ", " "+f+" ") {
						t.Errorf("%s=%s lacks %s", key, got, f)
					}
				}
				// The binary parses every flag the role writes (-h last:
				// an unknown flag fails before it).
				var argv []string
				switch key {
				case "CINDERWARDEN_PLUGIN_ARGS":
					argv = []string{"plugin"}
				case "args":
					argv = pluginEntrypointFlags(t)
				case "CINDERWARDEN_RECONCILE_ARGS":
					argv = []string{"reconcile", "--once"}
				}
				argv = append(append(argv, strings.Fields(got)...), "-h")
				if _, stderr, err := run(ctx, "", nil, bin, argv...); err != nil {
					t.Errorf("the binary rejects the flags the role renders for %s: %v\n%s", key, err, stderr)
				}
			}
		})
	}
}

// pluginEntrypointFlags returns config.json's entrypoint without the binary.
func pluginEntrypointFlags(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(repoPath("deploy", "docker-plugin", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Entrypoint []string `json:"entrypoint"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c.Entrypoint[1:]
}

// snapshot describes the files (size and mtime, or absent) for a before /
// after comparison.
func snapshot(t *testing.T, paths ...string) string {
	t.Helper()
	var b strings.Builder
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			b.WriteString(p + ":absent ")
			continue
		}
		b.WriteString(p + ":" + fi.ModTime().String() + " ")
	}
	return b.String()
}
