package deploytest

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cinderwarden/cinderwarden/volumedriver"
)

var update = flag.Bool("update", false, "rewrite docs/configuration.md from the code instead of comparing")

// flagDoc is one flag as the binary's flag.FlagSet prints it.
type flagDoc struct {
	Name, Type, Default, Usage string
}

// subcommandDoc is one subcommand's -h output, parsed.
type subcommandDoc struct {
	Name, Summary string
	Intro         []string // usage lines before "flags:"
	Flags         []flagDoc
}

var (
	subcommandLine = regexp.MustCompile(`^  (\S+)\s+(.*)$`)
	flagLine       = regexp.MustCompile(`^  -(\S+)(?: (\S+))?(?:\t(.*))?$`)
	defaultSuffix  = regexp.MustCompile(`\s*\(default (.*)\)$`)
)

// helpText runs `cinderwarden args... -h` and returns what it printed
// (usage goes to stderr).
func helpText(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stdout, stderr, err := run(ctx, "", nil, bin, append(args, "-h")...)
	if err != nil {
		t.Fatal(err)
	}
	return stdout + stderr
}

// parseSubcommands reads the subcommand list of `cinderwarden -h`.
func parseSubcommands(t *testing.T, text string) []subcommandDoc {
	t.Helper()
	var out []subcommandDoc
	in := false
	for _, l := range strings.Split(text, "\n") {
		switch {
		case strings.HasPrefix(l, "subcommands:"):
			in = true
		case in && l == "":
			in = false
		case in:
			m := subcommandLine.FindStringSubmatch(l)
			if m == nil {
				t.Fatalf("cannot parse subcommand line %q", l)
			}
			out = append(out, subcommandDoc{Name: m[1], Summary: m[2]})
		}
	}
	if len(out) == 0 {
		t.Fatalf("no subcommands in:\n%s", text)
	}
	return out
}

// parseFlagHelp parses flag.PrintDefaults output: "  -name type" then
// "    \tusage" lines (a one-letter flag has its usage on the same line),
// with " (default X)" at the end of the usage when the default is not the
// zero value.
func parseFlagHelp(text string) (intro []string, flags []flagDoc, err error) {
	sc := bufio.NewScanner(strings.NewReader(text))
	inFlags := false
	for sc.Scan() {
		l := sc.Text()
		if !inFlags {
			if l == "flags:" {
				inFlags = true
				continue
			}
			intro = append(intro, l)
			continue
		}
		if strings.HasPrefix(l, "    \t") {
			if len(flags) == 0 {
				return nil, nil, fmt.Errorf("usage line before any flag: %q", l)
			}
			f := &flags[len(flags)-1]
			f.Usage = strings.TrimSpace(f.Usage + "\n" + strings.TrimPrefix(l, "    \t"))
			continue
		}
		if l == "" {
			continue
		}
		m := flagLine.FindStringSubmatch(l)
		if m == nil {
			return nil, nil, fmt.Errorf("cannot parse flag line %q", l)
		}
		flags = append(flags, flagDoc{Name: m[1], Type: m[2], Usage: m[3]})
	}
	for i := range flags {
		if m := defaultSuffix.FindStringSubmatch(flags[i].Usage); m != nil {
			flags[i].Default = m[1]
			flags[i].Usage = strings.TrimSuffix(flags[i].Usage, m[0])
		}
		if flags[i].Type == "" {
			flags[i].Type = "bool"
		}
	}
	for len(intro) > 0 && strings.TrimSpace(intro[len(intro)-1]) == "" {
		intro = intro[:len(intro)-1]
	}
	return intro, flags, sc.Err()
}

func TestParseFlagHelp(t *testing.T) {
	text := "usage: x [flags]\n\nDoes x.\n\nflags:\n  -a duration\n    \twait this long (default 2m0s)\n  -apply\n    \tact\n    \tfor real\n  -s string\n    \tpath (default \"/x\")\n  -v\tverbose\n"
	intro, flags, err := parseFlagHelp(text)
	if err != nil {
		t.Fatal(err)
	}
	want := []flagDoc{{"a", "duration", "2m0s", "wait this long"}, {"apply", "bool", "", "act\nfor real"},
		{"s", "string", `"/x"`, "path"}, {"v", "bool", "", "verbose"}}
	if fmt.Sprint(flags) != fmt.Sprint(want) {
		t.Errorf("flags = %q, want %q", flags, want)
	}
	if strings.Join(intro, "|") != "usage: x [flags]||Does x." {
		t.Errorf("intro = %q", intro)
	}
	if _, _, err := parseFlagHelp("flags:\n  garbage\n"); err == nil {
		t.Error("garbage flag line accepted")
	}
}

// optionDocs describes each `docker volume create -o` key. The test fails
// when the code accepts a key this map does not describe, or the map
// describes a key the code no longer accepts.
var optionDocs = map[string]string{
	volumedriver.OptSize:             "Size in GiB, a whole number from 1 to `--max-size`. Default `--default-size`; with `snapshot` or `source`, the source's size.",
	volumedriver.OptType:             "Cinder volume type (name). Default: Cinder's default type.",
	volumedriver.OptAvailabilityZone: "Cinder availability zone. Default: the instance's own zone from the metadata service.",
	volumedriver.OptFSType:           "Filesystem made on first mount if (and only if) the volume is blank: `ext4` or `xfs`. Default `--default-fstype`.",
	volumedriver.OptSnapshot:         "Create from this snapshot (id or name). Excludes `source`.",
	volumedriver.OptSource:           "Clone this volume (id or name). Excludes `snapshot`.",
	volumedriver.OptDescription:      "Cinder description, passed as is.",
	volumedriver.OptPreempt:          "Takeover setting for this volume (`true`/`false`, `yes`/`no`, `1`/`0`), stored in its metadata as `cinderwarden.preempt`: what a Mount does while another instance holds the volume. Unset: the plugin's global `--preempt` (default `off`). See docs/marathon.md.",
	volumedriver.OptPreemptForce:     "`true`: take over even while a container on the holder still uses the volume (implies `preempt=true`; contradicts an explicit `preempt=false`). Stored as `cinderwarden.preempt_force`.",
}

// pluginConfig is the part of deploy/docker-plugin/config.json documented.
type pluginConfig struct {
	Entrypoint []string `json:"entrypoint"`
	Mounts     []struct {
		Name, Description, Source, Destination string
		Settable                               []string
	} `json:"mounts"`
	Env []struct {
		Name, Description, Value string
		Settable                 []string
	} `json:"env"`
	Args struct {
		Name, Description string
		Value             []string
	} `json:"args"`
}

// mdEscape makes prose safe in a table cell: pipes, newlines and the
// angle brackets of placeholders such as <volume id>.
func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ", "<", "&lt;", ">", "&gt;").Replace(s)
}

// mdCode puts s in a code span inside a table cell.
func mdCode(s string) string {
	return "`" + strings.ReplaceAll(s, "|", `\|`) + "`"
}

// generateConfigurationDoc builds docs/configuration.md from the binary's
// own flag definitions, volumedriver's option keys and the managed
// plugin's config.json.
func generateConfigurationDoc(t *testing.T, bin string) string {
	t.Helper()
	hostname, _ := os.Hostname()
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("<!-- Generated by deploy/deploytest (TestConfigurationReference) from the code: do not edit.\n")
	w("     Regenerate: go test ./deploy/deploytest -run TestConfigurationReference -update -->\n\n")
	w("# Configuration reference\n\n")
	w("Every flag of every `cinderwarden` subcommand, as the binary defines it, the options of\n")
	w("`docker volume create -o`, and the settings of the managed Docker plugin. Flags take one\n")
	w("or two dashes (`-apply` = `--apply`) and `--flag=value` or `--flag value`.\n\n")
	subs := parseSubcommands(t, helpText(t, bin))
	w("| Subcommand | What it does |\n|---|---|\n")
	for _, s := range subs {
		w("| [`%s`](#cinderwarden-%s) | %s |\n", s.Name, s.Name, mdEscape(s.Summary))
	}
	w("\n")
	for _, s := range subs {
		text := helpText(t, bin, s.Name)
		intro, flags, err := parseFlagHelp(text)
		if err != nil {
			t.Fatalf("cinderwarden %s -h: %v\n%s", s.Name, err, text)
		}
		w("## cinderwarden %s\n\n%s.\n\n", s.Name, s.Summary)
		if len(flags) == 0 {
			w("No flags.\n\n")
			continue
		}
		if len(intro) > 0 {
			w("```\n%s\n```\n\n", strings.Join(intro, "\n"))
		}
		w("| Flag | Type | Default | Description |\n|---|---|---|---|\n")
		for _, f := range flags {
			def := f.Default
			if hostname != "" && def == fmt.Sprintf("%q", hostname) {
				def = "this machine's host name"
			} else if def != "" {
				def = mdCode(def)
			}
			w("| `--%s` | %s | %s | %s |\n", f.Name, f.Type, def, mdEscape(f.Usage))
		}
		w("\n")
	}

	w("## Volume options (`docker volume create -o key=value`)\n\n")
	w("Keys are case-sensitive; an unknown key is an error that lists the valid ones. ")
	w("Marathon passes them as `dvdi/<key>` in the external volume's `options`.\n\n")
	w("| Option | Meaning |\n|---|---|\n")
	for _, k := range volumedriver.ValidOptions() {
		d, ok := optionDocs[k]
		if !ok {
			t.Errorf("volume option %q is accepted by the code but not described in optionDocs (configdoc_test.go)", k)
		}
		w("| `%s` | %s |\n", k, mdEscape(d))
	}
	for k := range optionDocs {
		found := false
		for _, v := range volumedriver.ValidOptions() {
			found = found || v == k
		}
		if !found {
			t.Errorf("optionDocs describes %q, which volumedriver.ValidOptions no longer accepts", k)
		}
	}
	w("\n")

	raw, err := os.ReadFile(repoPath("deploy", "docker-plugin", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var pc pluginConfig
	if err := json.Unmarshal(raw, &pc); err != nil {
		t.Fatal(err)
	}
	w("## Managed plugin settings (`docker plugin set`)\n\n")
	w("From `deploy/docker-plugin/config.json`. Settable values change only while the plugin is disabled:\n")
	w("`docker plugin disable cinderwarden/cinder && docker plugin set cinderwarden/cinder KEY=VALUE ... && docker plugin enable cinderwarden/cinder`.\n\n")
	w("Fixed entrypoint: `%s`.\n\n", strings.Join(pc.Entrypoint, " "))
	w("| Setting | Kind | Default | Settable | Description |\n|---|---|---|---|---|\n")
	for _, e := range pc.Env {
		w("| `%s` | env | %s | %s | %s |\n", e.Name, mdCode(e.Value), yesNo(len(e.Settable) > 0), mdEscape(e.Description))
	}
	for _, m := range pc.Mounts {
		w("| `%s.source` | mount at `%s` | %s | %s | %s |\n", m.Name, m.Destination, mdCode(m.Source), yesNo(len(m.Settable) > 0), mdEscape(m.Description))
	}
	w("| `%s` | args | %s | yes | %s |\n\n", pc.Args.Name, mdCode(strings.Join(pc.Args.Value, " ")), mdEscape(pc.Args.Description))
	w("`args` takes any flag of [`cinderwarden plugin`](#cinderwarden-plugin) except those fixed in the entrypoint.\n")
	return b.String()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// TestConfigurationReference fails when docs/configuration.md differs from
// what the code generates; -update rewrites it.
func TestConfigurationReference(t *testing.T) {
	bin := cinderwardenBin.get(t)
	got := generateConfigurationDoc(t, bin)
	path := repoPath("docs", "configuration.md")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (generate it: go test ./deploy/deploytest -run TestConfigurationReference -update)", err)
	}
	if string(want) != got {
		t.Errorf("docs/configuration.md is out of date with the code's flags/options; regenerate with\n"+
			"  go test ./deploy/deploytest -run TestConfigurationReference -update\nfirst difference: %s", firstDiff(string(want), got))
	}
}

// firstDiff names the first differing line of two texts.
func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("line %d:\n  committed: %q\n  code:      %q", i+1, x, y)
		}
	}
	return "none"
}

// TestShippedFlagsParse feeds the flags shipped in the systemd environment
// examples and the managed plugin's config.json to the binary's parser.
func TestShippedFlagsParse(t *testing.T) {
	bin := cinderwardenBin.get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	envValue := func(file, key string) []string {
		b, err := os.ReadFile(repoPath("deploy", "systemd", file))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, key+"="); ok {
				return strings.Fields(v)
			}
		}
		t.Fatalf("%s: no %s", file, key)
		return nil
	}
	raw, err := os.ReadFile(repoPath("deploy", "docker-plugin", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var pc pluginConfig
	if err := json.Unmarshal(raw, &pc); err != nil {
		t.Fatal(err)
	}
	cases := map[string][]string{
		"cinderwarden-plugin.env":    append([]string{"plugin"}, envValue("cinderwarden-plugin.env", "CINDERWARDEN_PLUGIN_ARGS")...),
		"cinderwarden-reconcile.env": append([]string{"reconcile", "--once"}, envValue("cinderwarden-reconcile.env", "CINDERWARDEN_RECONCILE_ARGS")...),
		"config.json":                append(append([]string{}, pc.Entrypoint[1:]...), pc.Args.Value...),
	}
	names := make([]string, 0, len(cases))
	for k := range cases {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, stderr, err := run(ctx, "", nil, bin, append(cases[n], "-h")...); err != nil {
			t.Errorf("%s: the binary rejects its flags: %v\n%s", n, err, stderr)
		}
	}
	if _, _, err := run(ctx, "", nil, bin, "plugin", "--no-such-flag", "-h"); err == nil {
		t.Error("an unknown flag before -h was accepted: this check proves nothing")
	}
}
