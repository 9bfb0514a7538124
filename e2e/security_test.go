package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/cinderwarden/cinderwarden/internal/testenv"
	"github.com/cinderwarden/cinderwarden/reconciler"
	"github.com/cinderwarden/cinderwarden/simcloud"
)

// Security checks of issue 7, item 4: no command through a shell, metrics
// on loopback by default, restrictive modes, no secret in any log.

// shellNames are programs that would interpret a command line.
var shellNames = map[string]bool{"sh": true, "bash": true, "dash": true, "zsh": true, "ash": true,
	"/bin/sh": true, "/bin/bash": true, "/usr/bin/sh": true, "/usr/bin/bash": true, "/bin/dash": true}

// shellViolation is one call that runs (or could run) a command through a
// shell.
type shellViolation struct {
	Pos  string
	What string
}

// findShellCalls parses one Go file and reports:
//   - exec.Command / exec.CommandContext / os.StartProcess / syscall.Exec
//     whose program is a shell (string literal or a constant of the file);
//   - in non-test code, any of those passing a "-c" argument, and any call
//     at all whose arguments hold a shell name followed by "-c" (a helper
//     seam such as run(ctx, "sh", "-c", line)).
//
// Test code may pass "-c" to programs that are not shells (for instance
// `docker run image sh -c '…'` runs a shell inside a container, given as
// an argument list to the docker CLI).
func findShellCalls(fset *token.FileSet, f *ast.File, isTest bool) []shellViolation {
	consts := map[string]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		if vs, ok := n.(*ast.ValueSpec); ok {
			for i, name := range vs.Names {
				if i < len(vs.Values) {
					if s, ok := stringLit(vs.Values[i], nil); ok {
						consts[name.Name] = s
					}
				}
			}
		}
		return true
	})
	var out []shellViolation
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		pos := fset.Position(call.Pos()).String()
		args := make([]string, len(call.Args))
		known := make([]bool, len(call.Args))
		for i, a := range call.Args {
			args[i], known[i] = stringLit(a, consts)
		}
		progIdx := -1
		switch callName(call.Fun) {
		case "exec.Command", "os.StartProcess", "syscall.Exec":
			progIdx = 0
		case "exec.CommandContext":
			progIdx = 1
		}
		if progIdx >= 0 && progIdx < len(args) {
			if known[progIdx] && shellNames[args[progIdx]] {
				out = append(out, shellViolation{pos, fmt.Sprintf("%s runs the shell %q", callName(call.Fun), args[progIdx])})
			}
			if !isTest {
				for i := progIdx + 1; i < len(args); i++ {
					if known[i] && args[i] == "-c" {
						out = append(out, shellViolation{pos, fmt.Sprintf("%s passes \"-c\"", callName(call.Fun))})
					}
				}
			}
			return true
		}
		if isTest {
			return true
		}
		for i := 0; i+1 < len(args); i++ {
			if known[i] && known[i+1] && shellNames[args[i]] && args[i+1] == "-c" {
				out = append(out, shellViolation{pos, fmt.Sprintf("%s(... %q, \"-c\" ...) hands a command line to a shell", callName(call.Fun), args[i])})
			}
		}
		return true
	})
	return out
}

func callName(fun ast.Expr) string {
	switch f := fun.(type) {
	case *ast.SelectorExpr:
		if x, ok := f.X.(*ast.Ident); ok {
			return x.Name + "." + f.Sel.Name
		}
		return f.Sel.Name
	case *ast.Ident:
		return f.Name
	}
	return ""
}

func stringLit(e ast.Expr, consts map[string]string) (string, bool) {
	switch v := e.(type) {
	case *ast.BasicLit:
		if v.Kind == token.STRING {
			s, err := strconv.Unquote(v.Value)
			return s, err == nil
		}
	case *ast.Ident:
		s, ok := consts[v.Name]
		return s, ok
	}
	return "", false
}

// TestFindShellCallsCatches proves the checker on sources that break the
// rule and on ones that do not.
func TestFindShellCallsCatches(t *testing.T) {
	cases := []struct {
		name, src string
		test      bool
		want      int
	}{
		{"sh literal", `exec.Command("sh", "-c", "ls")`, false, 2},
		{"bash in test code", `exec.CommandContext(ctx, "bash", "x.sh")`, true, 1},
		{"/bin/sh via const", "const shell = \"/bin/sh\"\nfunc g() { exec.Command(shell, \"x\") }", false, 1},
		{"-c to anything in product code", `exec.Command("python3", "-c", "print(1)")`, false, 1},
		{"helper seam", `run(ctx, "sh", "-c", line)`, false, 1},
		{"os.StartProcess", `os.StartProcess("/bin/bash", nil, nil)`, false, 1},
		{"argument list", `exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", dev)`, false, 0},
		{"docker sh -c in test code", `exec.Command("docker", "run", "busybox", "sh", "-c", "echo hi")`, true, 0},
		{"variable program", `exec.CommandContext(ctx, name, args...)`, false, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := "package p\n" + tc.src
			if !strings.Contains(tc.src, "func ") {
				src = "package p\nfunc f() {\n" + tc.src + "\n}\n"
			}
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, "x.go", src, 0)
			if err != nil {
				t.Fatal(err)
			}
			if got := findShellCalls(fset, f, tc.test); len(got) != tc.want {
				t.Errorf("%d violations %+v, want %d", len(got), got, tc.want)
			}
		})
	}
}

// TestNoShellCommands parses every Go file of the module: no command is
// run through a shell.
func TestNoShellCommands(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root %s: %v", root, err)
	}
	fset := token.NewFileSet()
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "testdata", "vendor", "node_modules", "bin", ".demo":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return fmt.Errorf("parse %s: %w", path, err)
		}
		files++
		for _, v := range findShellCalls(fset, f, strings.HasSuffix(path, "_test.go")) {
			rel := strings.TrimPrefix(v.Pos, root+string(filepath.Separator))
			t.Errorf("%s: %s (run programs with argument lists, never through a shell)", rel, v.What)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 50 {
		t.Errorf("only %d Go files found under %s; the walk is broken", files, root)
	}
	t.Logf("%d Go files checked", files)
}

// bgProc is a long-running cinderwarden process whose stdout and stderr
// are kept together.
type bgProc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

type lockedWriter struct{ p *bgProc }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.out.Write(b)
}

func startBG(t *testing.T, args ...string) *bgProc {
	t.Helper()
	p := &bgProc{cmd: exec.Command(pluginBin, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = lockedWriter{p}, lockedWriter{p}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("cinderwarden %s output:\n%s", args[0], p.text())
		}
	})
	return p
}

func (p *bgProc) text() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// wait waits (with backoff, bounded) for the output to match re; it
// returns the submatches.
func (p *bgProc) wait(t *testing.T, re string, timeout time.Duration) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(timeout)
	for delay := 5 * time.Millisecond; ; delay = min(2*delay, 200*time.Millisecond) {
		if m := rx.FindStringSubmatch(p.text()); m != nil {
			return m
		}
		select {
		case <-p.done:
			if m := rx.FindStringSubmatch(p.text()); m != nil {
				return m
			}
			t.Fatalf("process exited (%v) before printing %q:\n%s", p.cmd.ProcessState, re, p.text())
		case <-deadline:
			t.Fatalf("no output matching %q after %s:\n%s", re, timeout, p.text())
		case <-time.After(delay):
		}
	}
}

func (p *bgProc) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Errorf("pid %d did not stop on SIGTERM within 30 s", p.cmd.Process.Pid)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// tcpListeners returns the local addresses of the TCP sockets pid listens
// on (from /proc/<pid>/fd and /proc/net/tcp{,6}).
func tcpListeners(t *testing.T, pid int) []net.IP {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	var out []net.IP
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(table)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" || !inodes[f[9]] { // 0A: LISTEN
				continue
			}
			hexIP, _, _ := strings.Cut(f[1], ":")
			out = append(out, procNetIP(t, hexIP))
		}
	}
	return out
}

// procNetIP decodes /proc/net/tcp's address: 32-bit words in host (little
// endian) order.
func procNetIP(t *testing.T, h string) net.IP {
	t.Helper()
	raw := make([]byte, len(h)/2)
	for i := range raw {
		v, err := strconv.ParseUint(h[2*i:2*i+2], 16, 8)
		if err != nil {
			t.Fatalf("bad address %q", h)
		}
		raw[i] = byte(v)
	}
	for w := 0; w+4 <= len(raw); w += 4 {
		raw[w], raw[w+1], raw[w+2], raw[w+3] = raw[w+3], raw[w+2], raw[w+1], raw[w]
	}
	return net.IP(raw)
}

func TestProcNetIP(t *testing.T) {
	for in, want := range map[string]string{"0100007F": "127.0.0.1", "00000000": "0.0.0.0",
		"00000000000000000000000001000000": "::1", "0000000000000000FFFF00000100007F": "127.0.0.1"} {
		if got := procNetIP(t, in); !got.Equal(net.ParseIP(want)) {
			t.Errorf("procNetIP(%s) = %s, want %s", in, got, want)
		}
	}
}

// waitPortFree waits (bounded, with backoff) until addr can be bound, so a
// test that must use a default port does not fail because another test's
// process holds it for a moment.
func waitPortFree(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for delay := 20 * time.Millisecond; ; delay = min(2*delay, time.Second) {
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			_ = ln.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s stays in use (%v); cannot test the default metrics listener", addr, err)
		}
		time.Sleep(delay)
	}
}

// checkLoopbackOnly fails unless pid listens on TCP and only on loopback.
func checkLoopbackOnly(t *testing.T, what string, pid int) {
	t.Helper()
	ips := tcpListeners(t, pid)
	if len(ips) == 0 {
		t.Errorf("%s (pid %d) listens on no TCP socket; expected its metrics listener", what, pid)
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			t.Errorf("%s listens on %s with default flags; metrics must stay on localhost unless configured", what, ip)
		}
	}
}

// TestReconcileMetricsLoopbackByDefault: `cinderwarden reconcile
// --schedule` with no --metrics-listen serves metrics, on loopback only.
func TestReconcileMetricsLoopbackByDefault(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	waitPortFree(t, "127.0.0.1:9478") // the documented default; other tests may run a reconciler on it
	p := startBG(t, "reconcile", "--schedule", "@every 1h", "--host", "compute-1",
		"--state-file", filepath.Join(dir, "memory.json"), "--audit-log", filepath.Join(dir, "audit.jsonl"))
	m := p.wait(t, `msg="serving metrics" addr=(\S+)`, 30*time.Second)
	host, _, err := net.SplitHostPort(m[1])
	if err != nil || !net.ParseIP(host).IsLoopback() {
		t.Errorf("metrics served on %q by default, want a loopback address", m[1])
	}
	checkLoopbackOnly(t, "cinderwarden reconcile --schedule", p.cmd.Process.Pid)
}

// TestReconcileFileModes: a --once --apply run that acts creates its
// memory and audit log 0600 in directories 0700.
func TestReconcileFileModes(t *testing.T) {
	s := newReconcileScene(t, sceneSpec{seed: 42, instances: 1, healthy: 1, stale: 1})
	r := runCW(t, 0, s.args("--once", "--apply", "--min-sightings", "1", "--min-age", "0s", "--output", "json")...)
	res := r.result(t)
	if res == nil || res.Aborted || len(readAudit(t, s.auditLog())) != 1 {
		t.Fatalf("want one executed action (exit %d):\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for path, want := range map[string]fs.FileMode{s.stateFile(): 0o600, filepath.Dir(s.stateFile()): 0o700 | fs.ModeDir,
		s.auditLog(): 0o600, filepath.Dir(s.auditLog()): 0o700 | fs.ModeDir} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Error(err)
			continue
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode(), want)
		}
	}
}

// TestNoSecretsInLogs runs `cinderwarden sim -v`, a debug-logging
// reconcile (--once and a --schedule run) and the plugin at debug level
// against it, with Keystone reached through a recording proxy so every
// token issued to them is known; a token this test obtains itself is used
// on the simulator too. No password and no token may appear in any
// output. The plugin's metrics listener (default flags) must be loopback
// only and its socket and state modes restrictive.
func TestNoSecretsInLogs(t *testing.T) {
	testenv.RequireLibvirt(t)
	dir := t.TempDir()
	sim := startBG(t, "sim", "--backend", "none", "-v", "--instances", "1", "--state-dir", filepath.Join(dir, "sim"))
	sim.wait(t, `(?m)^ready$`, 30*time.Second)
	authURL := sim.wait(t, `auth_url: (\S+)`, time.Second)[1]
	cloudsPath := sim.wait(t, `clouds_yaml: (\S+)`, time.Second)[1]
	inst := sim.wait(t, `instance: id=(\S+) name=\S+ host=(\S+) instance_name=(\S+)`, time.Second)

	// Secrets: every password in clouds.yaml …
	var clouds struct {
		Clouds map[string]struct {
			Auth map[string]any `yaml:"auth"`
		} `yaml:"clouds"`
	}
	b, err := os.ReadFile(cloudsPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &clouds); err != nil {
		t.Fatal(err)
	}
	var secrets []string
	for name, c := range clouds.Clouds {
		if pw, ok := c.Auth["password"].(string); ok && pw != "" {
			secrets = append(secrets, pw)
		} else if name != simcloud.CloudNoAuth {
			t.Fatalf("cloud %s has no password in %s", name, cloudsPath)
		}
	}
	// … and every token Keystone issues, seen through a proxy.
	var tokMu sync.Mutex
	var tokens []string
	target, err := url.Parse(authURL)
	if err != nil {
		t.Fatal(err)
	}
	target.Path = ""
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(r *http.Response) error {
		if tok := r.Header.Get("X-Subject-Token"); tok != "" {
			tokMu.Lock()
			tokens = append(tokens, tok)
			tokMu.Unlock()
		}
		return nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: proxy, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	proxied := filepath.Join(dir, "clouds.yaml")
	if err := os.WriteFile(proxied, bytes.ReplaceAll(b, []byte(authURL), []byte("http://"+ln.Addr().String()+target.EscapedPath()+strings.TrimPrefix(authURL, target.String()))), 0o600); err != nil {
		t.Fatal(err)
	}
	// A token of our own, used against the simulator (the sim logs requests).
	own := keystoneToken(t, authURL, clouds.Clouds[simcloud.CloudAdmin].Auth)
	req, _ := http.NewRequest(http.MethodGet, strings.TrimSuffix(authURL, "/identity/v3")+"/_sim/events", nil)
	req.Header.Set("X-Auth-Token", own)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /_sim/events with our token: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// The reconciler, debug logging, through the proxy.
	xml := filepath.Join(dir, "domains.xml")
	if err := os.WriteFile(xml, []byte(fmt.Sprintf(`<node><domain type='test'><name>%s</name><uuid>%s</uuid>
<memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os><devices/></domain></node>`, inst[3], inst[1])), 0o644); err != nil {
		t.Fatal(err)
	}
	rargs := []string{"reconcile", "--os-cloud", simcloud.CloudAdmin, "--os-client-config-file", proxied,
		"--libvirt-uri", "test+unix://" + xml, "--host", inst[2], "--state-file", filepath.Join(dir, "r", "memory.json"),
		"--audit-log", filepath.Join(dir, "r", "audit.jsonl"), "-v"}
	once := runCW(t, 0, append(rargs, "--once", "--output", "json", "--metrics-listen", "off")...)
	if once.code == reconciler.ExitError {
		t.Errorf("reconcile --once: exit %d\n%s", once.code, once.stderr)
	}
	sched := startBG(t, append(rargs, "--schedule", "@every 1s", "--metrics-listen", "127.0.0.1:0")...)
	sched.wait(t, `reconcile run finished`, 30*time.Second)
	sched.stop(t)

	// The plugin, debug logging, default metrics listener, through the proxy.
	var pluginOut string
	if os.Geteuid() != 0 {
		t.Errorf("PLUGIN PART NOT TESTED: the plugin needs root")
	} else {
		socket := filepath.Join(dir, "plugin", "cwsec.sock")
		state := filepath.Join(dir, "plugin", "state")
		waitPortFree(t, "127.0.0.1:9477") // the plugin's documented default
		pl := startBG(t, "plugin", "--os-cloud", simcloud.CloudMember, "--os-client-config-file", proxied,
			"--driver-name", "cwsec", "--socket", socket, "--instance-id", inst[1],
			"--dev-root", filepath.Join(dir, "dev"), "--sys-root", filepath.Join(dir, "sys"),
			"--mount-root", filepath.Join(dir, "mounts"), "--state-dir", state, "--default-size", "1",
			"--log-level", "debug")
		pl.wait(t, `msg=serving`, 60*time.Second)
		checkLoopbackOnly(t, "cinderwarden plugin", pl.cmd.Process.Pid)
		client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", socket)
			}}}
		for _, c := range []struct{ path, body string }{
			{"/VolumeDriver.Create", `{"Name":"sec1","Opts":{"size":"1"}}`},
			{"/VolumeDriver.List", `{}`}, {"/VolumeDriver.Get", `{"Name":"sec1"}`},
			{"/VolumeDriver.Remove", `{"Name":"sec1"}`},
		} {
			resp, err := client.Post("http://plugin"+c.path, "application/json", strings.NewReader(c.body))
			if err != nil {
				t.Fatalf("%s: %v", c.path, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var ans struct{ Err string }
			if err := json.Unmarshal(body, &ans); err != nil || ans.Err != "" {
				t.Errorf("%s: %s (%v)", c.path, body, err)
			}
		}
		if fi, err := os.Stat(socket); err != nil || fi.Mode().Perm()&0o007 != 0 {
			t.Errorf("plugin socket %s: %v, %v: want no access for others", socket, fi.Mode(), err)
		}
		checkModes(t, state)
		pl.stop(t)
		pluginOut = pl.text()
	}

	sim.stop(t)
	tokMu.Lock()
	secrets = append(secrets, tokens...)
	tokMu.Unlock()
	secrets = append(secrets, own)
	if len(tokens) < 2 {
		t.Errorf("the proxy saw %d tokens issued; the reconciler and the plugin should have authenticated through it", len(tokens))
	}
	logs := map[string]string{"sim": sim.text(), "reconcile --once": string(once.stdout) + string(once.stderr),
		"reconcile --schedule": sched.text(), "plugin": pluginOut}
	for name, text := range logs {
		for _, sec := range secrets {
			if strings.Contains(text, sec) {
				t.Errorf("%s output contains a secret (%d-char %s…): line %q", name, len(sec), sec[:4], lineWith(text, sec))
			}
		}
	}
	t.Logf("%d secrets (%d passwords, %d issued tokens, our own token) checked against %d bytes of output",
		len(secrets), len(secrets)-len(tokens)-1, len(tokens), len(logs["sim"])+len(logs["reconcile --once"])+len(logs["reconcile --schedule"])+len(logs["plugin"]))
}

func lineWith(text, s string) string {
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			return strings.ReplaceAll(sc.Text(), s, "<SECRET>")
		}
	}
	return ""
}

// checkModes: dir is 0700 and every file under it 0600 or stricter.
func checkModes(t *testing.T, dir string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir() && fi.Mode().Perm() != 0o700:
			t.Errorf("%s: directory mode %v, want 0700", path, fi.Mode().Perm())
		case !d.IsDir() && fi.Mode().Perm()&0o077 != 0:
			t.Errorf("%s: file mode %v, want 0600 or stricter", path, fi.Mode().Perm())
		}
		n++
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	if n < 2 {
		t.Errorf("state dir %s holds nothing after a create; nothing checked", dir)
	}
}

// keystoneToken logs in with a password (what any client does) and
// returns the X-Subject-Token.
func keystoneToken(t *testing.T, authURL string, auth map[string]any) string {
	t.Helper()
	body := map[string]any{"auth": map[string]any{
		"identity": map[string]any{"methods": []string{"password"}, "password": map[string]any{"user": map[string]any{
			"name": auth["username"], "domain": map[string]any{"name": auth["user_domain_name"]}, "password": auth["password"]}}},
		"scope": map[string]any{"project": map[string]any{"name": auth["project_name"], "domain": map[string]any{"name": auth["project_domain_name"]}}},
	}}
	b, _ := json.Marshal(body)
	resp, err := http.Post(authURL+"/auth/tokens", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	tok := resp.Header.Get("X-Subject-Token")
	if resp.StatusCode != http.StatusCreated || tok == "" {
		t.Fatalf("keystone login: %s", resp.Status)
	}
	return tok
}
