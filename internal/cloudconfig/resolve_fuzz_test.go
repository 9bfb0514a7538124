package cloudconfig

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Fuzz targets for configuration resolution. Their seeds run as ordinary
// tests in `go test`; `scripts/fuzz.sh` runs each with -fuzz for a bounded
// time. The promise checked: whatever the files and variables hold, Resolve
// does not panic, and a secret fed in (password, application credential
// secret, token) appears neither in an error nor in any printed form of the
// result.

// isolateTB is isolate for a fuzz target: an empty OS_* environment and a
// private cwd and config home for the whole run.
func isolateTB(tb testing.TB) (dir string) {
	tb.Helper()
	for _, v := range envVars {
		tb.Setenv(v, "")
	}
	dir = tb.TempDir()
	tb.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "xdg"))
	tb.Setenv("HOME", dir)
	tb.Chdir(dir)
	return dir
}

// cloudsTemplates put the placeholder SECRET where clouds.yaml keeps a
// secret, raw (so a hostile secret can break the YAML), quoted, in flow
// style and as a block scalar.
var cloudsTemplates = []string{
	`clouds:
  c:
    auth:
      auth_url: https://keystone.example:5000/v3
      username: demo
      password: SECRET
      user_domain_name: Default
      project_name: demo
      project_domain_name: Default
`,
	`clouds:
  c:
    auth:
      username: demo
      password: SECRET
      project_id: p-1
`,
	`clouds:
  c:
    auth:
      auth_url: https://keystone.example:5000/v3
      user_id: u-1
      password: "SECRET"
`,
	`clouds:
  c:
    auth_type: v3applicationcredential
    auth:
      auth_url: https://keystone.example:5000/v3
      application_credential_id: ac-1
      application_credential_secret: 'SECRET'
`,
	`clouds:
  c:
    auth_type: v3token
    auth: {auth_url: "https://keystone.example:5000/v3", token: SECRET, project_id: p-1}
`,
	`clouds:
  c:
    auth:
      auth_url: https://keystone.example:5000/v3
      username: demo
      password: |
        SECRET
      user_domain_name: Default
      project_id: p-1
    interface: sideways
`,
	`clouds:
  c:
    auth_type: kerberos
    auth:
      password: SECRET
`,
}

// leaks reports whether secret, or any 8 consecutive bytes of it, shows in
// s although that part cannot come from the non-secret inputs (public) nor
// from what the same call says when the secret is a harmless one (baseline).
func leaks(s, secret, public, baseline string) bool {
	if len(secret) < 6 {
		return false
	}
	n := min(len(secret), 8)
	for i := 0; i+n <= len(secret); i++ {
		part := secret[i : i+n]
		if strings.Contains(s, part) && !strings.Contains(public, part) && !strings.Contains(baseline, part) {
			return true
		}
	}
	return false
}

// printed is every way a Resolved gets printed: fmt verbs, JSON, slog.
func printed(t *testing.T, r *Resolved) string {
	var b strings.Builder
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
		fmt.Fprintf(&b, f+"\n", r)
		fmt.Fprintf(&b, f+"\n", *r)
	}
	js, err := json.Marshal(r)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	b.Write(js)
	var logBuf bytes.Buffer
	slog.New(slog.NewJSONHandler(&logBuf, nil)).Info("cloud", "config", r)
	slog.New(slog.NewTextHandler(&logBuf, nil)).Info("cloud", "config", *r)
	b.Write(logBuf.Bytes())
	return b.String()
}

func FuzzResolveCloudsYAML(f *testing.F) {
	for i := range cloudsTemplates {
		f.Add(uint8(i), "c", "pw-S3cr3t-9f1", "")
		f.Add(uint8(i), "c", "pw: {broken", "")
		f.Add(uint8(i), "c", "\"unterminated", "")
		f.Add(uint8(i), "c", "'quote' and \"double\"", "")
		f.Add(uint8(i), "c", "line1\nline2", "")
		f.Add(uint8(i), "c", "!!int 123456789", "")
		f.Add(uint8(i), "c", "*anchor123", "")
		f.Add(uint8(i), "c", "!!bool s3cret-pw x", "") // yaml quotes a value it cannot decode
		f.Add(uint8(i), "c", "%s%v%q%!x", "")
		f.Add(uint8(i), "other", "pw-S3cr3t-9f1", "")
	}
	f.Add(uint8(0), "c", "pw-S3cr3t-9f1", "  d:\n    auth: [1, 2]\n")
	f.Add(uint8(0), "c", "pw-S3cr3t-9f1", "\tbad: tab\n")
	f.Add(uint8(0), "c", "pw-S3cr3t-9f1", "clouds: {}\n")

	dir := isolateTB(f)
	path := filepath.Join(dir, "clouds.yaml")
	resolve := func(t *testing.T, tmpl, secret, tail, cloud string) (*Resolved, error) {
		content := strings.ReplaceAll(tmpl, "SECRET", secret) + tail
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return Resolve(Options{Cloud: cloud, CloudsFile: path})
	}
	f.Fuzz(func(t *testing.T, which uint8, cloud, secret, tail string) {
		if cloud == "" { // would read OS_CLOUD, then the environment
			cloud = "c"
		}
		tmpl := cloudsTemplates[int(which)%len(cloudsTemplates)]
		public := strings.ReplaceAll(tmpl, "SECRET", "") + tail + cloud + path
		baseR, baseErr := resolve(t, tmpl, "harmless-value", tail, cloud)
		baseline := fmt.Sprint(baseErr)
		if baseR != nil {
			baseline += printed(t, baseR)
		}
		r, err := resolve(t, tmpl, secret, tail, cloud)
		if err != nil {
			if r != nil {
				t.Fatalf("Resolve returned both a result and the error %v", err)
			}
			if leaks(err.Error(), secret, public, baseline) {
				t.Fatalf("the secret %q appears in the error: %v", secret, err)
			}
			return
		}
		if r.TLS == nil || (r.NoAuth == nil) == (r.AuthOptions.IdentityEndpoint == "") {
			t.Fatalf("resolved configuration breaks its contract: TLS %v, noauth %v, auth url %q", r.TLS, r.NoAuth, r.AuthOptions.IdentityEndpoint)
		}
		if out := printed(t, r); leaks(out, secret, public, baseline) {
			t.Fatalf("the secret %q appears when the configuration is printed:\n%s", secret, out)
		}
	})
}

// FuzzResolveEnv: the same promise for the OS_* environment (the secret
// goes into OS_PASSWORD, OS_APPLICATION_CREDENTIAL_SECRET and OS_TOKEN).
func FuzzResolveEnv(f *testing.F) {
	f.Add("", "https://keystone.example:5000/v3", "demo", "pw-S3cr3t-9f1", "demo", "", "")
	f.Add("password", "https://keystone.example:5000/v3", "demo", "pw-S3cr3t-9f1", "", "internal", "yes")
	f.Add("v3applicationcredential", "https://keystone.example:5000/v3", "", "app-S3cr3t-77", "", "", "")
	f.Add("token", "https://keystone.example:5000/v3", "", "tok-S3cr3t-42", "p-1", "public", "0")
	f.Add("noauth", "", "", "pw-S3cr3t-9f1", "p-9", "", "")
	f.Add("kerberos", "https://keystone.example:5000/v3", "demo", "pw-S3cr3t-9f1", "demo", "", "")
	f.Add("", "", "demo", "pw-S3cr3t-9f1", "demo", "sideways", "maybe")
	f.Add("", "https://keystone.example:5000/v3", "demo", "%s%v%q%!x", "demo", "", "")

	isolateTB(f)
	f.Fuzz(func(t *testing.T, authType, authURL, user, secret, project, iface, insecure string) {
		for _, s := range []string{authType, authURL, user, secret, project, iface, insecure} {
			if strings.ContainsRune(s, 0) {
				return // not representable in an environment
			}
		}
		appCredID := ""
		if strings.Contains(strings.ToLower(authType), "application") {
			appCredID = "ac-1"
		}
		set := func(secret string) (*Resolved, error) {
			t.Setenv("OS_AUTH_TYPE", authType)
			t.Setenv("OS_AUTH_URL", authURL)
			t.Setenv("OS_USERNAME", user)
			t.Setenv("OS_USER_DOMAIN_NAME", "Default")
			t.Setenv("OS_PROJECT_ID", project)
			t.Setenv("OS_INTERFACE", iface)
			t.Setenv("OS_INSECURE", insecure)
			t.Setenv("OS_ENDPOINT", authURL)
			t.Setenv("OS_PASSWORD", secret)
			t.Setenv("OS_APPLICATION_CREDENTIAL_ID", appCredID)
			t.Setenv("OS_APPLICATION_CREDENTIAL_SECRET", secret)
			t.Setenv("OS_TOKEN", secret)
			return Resolve(Options{})
		}
		public := strings.Join([]string{authType, authURL, user, "Default", project, iface, insecure, appCredID}, "\n")
		baseR, baseErr := set("harmless-value")
		baseline := fmt.Sprint(baseErr)
		if baseR != nil {
			baseline += printed(t, baseR)
		}
		r, err := set(secret)
		if err != nil {
			if leaks(err.Error(), secret, public, baseline) {
				t.Fatalf("the secret %q appears in the error: %v", secret, err)
			}
			return
		}
		if out := printed(t, r); leaks(out, secret, public, baseline) {
			t.Fatalf("the secret %q appears when the configuration is printed:\n%s", secret, out)
		}
	})
}
