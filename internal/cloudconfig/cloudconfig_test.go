package cloudconfig

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gophercloud/gophercloud/v2"
)

// Secrets used by every test; none may ever appear in output or errors.
const (
	secretPW    = "pw-S3cr3t-9f1"
	secretApp   = "app-S3cr3t-77"
	secretToken = "tok-S3cr3t-42"
)

var secrets = []string{secretPW, secretApp, secretToken}

// envVars are cleared for every test so the developer's shell cannot leak in.
var envVars = []string{
	"OS_CLOUD", "OS_CLIENT_CONFIG_FILE", "OS_AUTH_URL", "OS_AUTH_TYPE", "OS_USERNAME", "OS_USER_ID", "OS_USERID",
	"OS_PASSWORD", "OS_PROJECT_NAME", "OS_PROJECT_ID", "OS_TENANT_ID", "OS_TENANT_NAME", "OS_USER_DOMAIN_NAME",
	"OS_USER_DOMAIN_ID", "OS_PROJECT_DOMAIN_NAME", "OS_PROJECT_DOMAIN_ID", "OS_DOMAIN_NAME", "OS_DOMAIN_ID",
	"OS_REGION_NAME", "OS_INTERFACE", "OS_APPLICATION_CREDENTIAL_ID", "OS_APPLICATION_CREDENTIAL_NAME",
	"OS_APPLICATION_CREDENTIAL_SECRET", "OS_CACERT", "OS_CERT", "OS_KEY", "OS_INSECURE", "OS_TOKEN",
	"OS_ENDPOINT", "CINDER_ENDPOINT",
}

// isolate gives the test an empty environment, cwd and config home, and
// returns the cwd and the XDG openstack dir.
func isolate(t *testing.T) (cwd, xdgDir string) {
	t.Helper()
	for _, v := range envVars {
		t.Setenv(v, "")
	}
	root := t.TempDir()
	cwd = filepath.Join(root, "cwd")
	xdg := filepath.Join(root, "xdg")
	xdgDir = filepath.Join(xdg, "openstack")
	for _, d := range []string{cwd, xdgDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("XDG_CONFIG_HOME", xdg)
	t.Setenv("HOME", root)
	t.Chdir(cwd)
	return cwd, xdgDir
}

func write(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const cloudsYAML = `
clouds:
  prod:
    region_name: RegionOne
    interface: internal
    auth:
      auth_url: https://keystone.example:5000/v3
      username: demo
      password: ` + secretPW + `
      user_domain_name: Default
      project_name: demo
      project_domain_name: Default
  byid:
    auth:
      auth_url: https://keystone.example:5000/v3
      user_id: u-1
      password: ` + secretPW + `
      project_id: p-1
  nourl:
    auth:
      username: demo
      password: ` + secretPW + `
      user_domain_name: Default
      project_id: p-1
  nopw:
    auth:
      auth_url: https://keystone.example:5000/v3
      username: demo
      user_domain_name: Default
      project_id: p-1
  nodomain:
    auth:
      auth_url: https://keystone.example:5000/v3
      username: demo
      password: ` + secretPW + `
      project_id: p-1
  noproject:
    auth:
      auth_url: https://keystone.example:5000/v3
      username: demo
      password: ` + secretPW + `
      user_domain_name: Default
  noprojdomain:
    auth:
      auth_url: https://keystone.example:5000/v3
      username: demo
      password: ` + secretPW + `
      user_domain_name: Default
      project_name: demo
  appcred:
    auth_type: v3applicationcredential
    auth:
      auth_url: https://keystone.example:5000/v3
      application_credential_id: ac-1
      application_credential_secret: ` + secretApp + `
      project_id: ignored
  appcred-nosecret:
    auth_type: v3applicationcredential
    auth:
      auth_url: https://keystone.example:5000/v3
      application_credential_id: ac-1
  token:
    auth_type: v3token
    auth:
      auth_url: https://keystone.example:5000/v3
      token: ` + secretToken + `
      project_id: p-1
  standalone:
    auth_type: noauth
    auth:
      endpoint: http://cinder.example:8776/v3/
      project_id: p-9
  standalone-noproject:
    auth_type: noauth
    auth:
      endpoint: http://cinder.example:8776/v3
  standalone-noendpoint:
    auth_type: noauth
    auth:
      project_id: p-9
  badtype:
    auth_type: kerberos
    auth:
      auth_url: https://keystone.example:5000/v3
  badiface:
    interface: sideways
    auth:
      auth_url: https://keystone.example:5000/v3
`

func TestResolveCloudsYAML(t *testing.T) {
	keystone := "https://keystone.example:5000/v3"
	tests := []struct {
		cloud   string
		want    *Resolved // Source.Path and TLS are filled/ignored by the test
		wantErr string    // exact message; %s is the clouds.yaml path
		is      error
	}{
		{cloud: "prod", want: &Resolved{
			AuthOptions: gophercloud.AuthOptions{IdentityEndpoint: keystone, Username: "demo", Password: secretPW,
				DomainName: "Default", TenantName: "demo", AllowReauth: true,
				Scope: &gophercloud.AuthScope{ProjectName: "demo", DomainName: "Default"}},
			EndpointOpts: gophercloud.EndpointOpts{Region: "RegionOne", Availability: gophercloud.AvailabilityInternal},
		}},
		{cloud: "byid", want: &Resolved{
			AuthOptions: gophercloud.AuthOptions{IdentityEndpoint: keystone, UserID: "u-1", Password: secretPW,
				TenantID: "p-1", AllowReauth: true, Scope: &gophercloud.AuthScope{ProjectID: "p-1"}},
			EndpointOpts: gophercloud.EndpointOpts{Availability: gophercloud.AvailabilityPublic},
		}},
		{cloud: "appcred", want: &Resolved{
			AuthOptions: gophercloud.AuthOptions{IdentityEndpoint: keystone, ApplicationCredentialID: "ac-1",
				ApplicationCredentialSecret: secretApp, AllowReauth: true},
			EndpointOpts: gophercloud.EndpointOpts{Availability: gophercloud.AvailabilityPublic},
		}},
		{cloud: "token", want: &Resolved{
			AuthOptions: gophercloud.AuthOptions{IdentityEndpoint: keystone, TokenID: secretToken, TenantID: "p-1",
				AllowReauth: true, Scope: &gophercloud.AuthScope{ProjectID: "p-1"}},
			EndpointOpts: gophercloud.EndpointOpts{Availability: gophercloud.AvailabilityPublic},
		}},
		{cloud: "standalone", want: &Resolved{
			NoAuth: &NoAuth{Endpoint: "http://cinder.example:8776/v3", ProjectID: "p-9"},
		}},
		{cloud: "nourl", is: ErrMissing,
			wantErr: `cloud "nourl": auth.auth_url missing (clouds.yaml: %s)`},
		{cloud: "nopw", is: ErrMissing,
			wantErr: `cloud "nopw": auth.password missing (clouds.yaml: %s)`},
		{cloud: "nodomain", is: ErrMissing,
			wantErr: `cloud "nodomain": auth.user_domain_name missing (needed with auth.username) (clouds.yaml: %s)`},
		{cloud: "noproject", is: ErrMissing,
			wantErr: `cloud "noproject": auth.project_id missing (or auth.project_name; cinderwarden needs a project-scoped token) (clouds.yaml: %s)`},
		{cloud: "noprojdomain", is: ErrMissing,
			wantErr: `cloud "noprojdomain": auth.project_domain_name missing (needed with auth.project_name) (clouds.yaml: %s)`},
		{cloud: "appcred-nosecret", is: ErrMissing,
			wantErr: `cloud "appcred-nosecret": auth.application_credential_secret missing (clouds.yaml: %s)`},
		{cloud: "standalone-noproject", is: ErrMissing,
			wantErr: `cloud "standalone-noproject": auth.project_id missing (needed with auth_type noauth) (clouds.yaml: %s)`},
		{cloud: "standalone-noendpoint", is: ErrMissing,
			wantErr: `cloud "standalone-noendpoint": auth.endpoint missing (the Cinder endpoint for auth_type noauth, e.g. http://cinder:8776/v3) (clouds.yaml: %s)`},
		{cloud: "badtype", is: ErrInvalid,
			wantErr: `cloud "badtype": auth_type="kerberos": unsupported; use password, v3applicationcredential, token or noauth (clouds.yaml: %s)`},
		{cloud: "badiface", is: ErrInvalid,
			wantErr: `cloud "badiface": interface="sideways": must be public, internal or admin (clouds.yaml: %s)`},
		{cloud: "staging", is: ErrUnknownCloud,
			wantErr: `cloud "staging" not found in %s (clouds found: appcred, appcred-nosecret, badiface, badtype, byid, nodomain, noprojdomain, noproject, nopw, nourl, prod, standalone, standalone-noendpoint, standalone-noproject, token)`},
	}
	for _, tt := range tests {
		t.Run(tt.cloud, func(t *testing.T) {
			_, xdgDir := isolate(t)
			path := write(t, filepath.Join(xdgDir, "clouds.yaml"), cloudsYAML)
			got, err := Resolve(Options{Cloud: tt.cloud})
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("Resolve(%q) = %v, want error", tt.cloud, got)
				}
				if want := fmt.Sprintf(tt.wantErr, path); err.Error() != want {
					t.Errorf("error:\n got %s\nwant %s", err, want)
				}
				if !errors.Is(err, tt.is) {
					t.Errorf("errors.Is(%v, %v) = false", err, tt.is)
				}
				assertNoSecret(t, err.Error())
				return
			}
			if err != nil {
				t.Fatalf("Resolve(%q): %v", tt.cloud, err)
			}
			if got.TLS == nil {
				t.Errorf("TLS is nil")
			}
			tt.want.Source = Source{Kind: KindCloudsYAML, Path: path, Cloud: tt.cloud}
			got.TLS, tt.want.TLS = nil, nil
			if !reflect.DeepEqual(got.Redacted(), tt.want.Redacted()) || got.AuthOptions.Password != tt.want.AuthOptions.Password ||
				got.AuthOptions.ApplicationCredentialSecret != tt.want.AuthOptions.ApplicationCredentialSecret ||
				got.AuthOptions.TokenID != tt.want.AuthOptions.TokenID {
				t.Errorf("Resolve(%q):\n got %#v\nwant %#v", tt.cloud, got.Redacted().AuthOptions, tt.want.Redacted().AuthOptions)
				t.Errorf("got %v / %v, want %v / %v", got.EndpointOpts, got.NoAuth, tt.want.EndpointOpts, tt.want.NoAuth)
			}
		})
	}
}

func TestResolveCloudFromEnvAndSearchOrder(t *testing.T) {
	cwd, xdgDir := isolate(t)
	other := `
clouds:
  prod:
    auth_type: noauth
    auth: {endpoint: "http://FROM-%s:8776/v3", project_id: p}
`
	xdgPath := write(t, filepath.Join(xdgDir, "clouds.yaml"), fmt.Sprintf(other, "xdg"))
	t.Setenv("OS_CLOUD", "prod")

	check := func(wantHost, wantPath string, opts Options) {
		t.Helper()
		r, err := Resolve(opts)
		if err != nil {
			t.Fatal(err)
		}
		if want := "http://FROM-" + wantHost + ":8776/v3"; r.NoAuth == nil || r.NoAuth.Endpoint != want {
			t.Fatalf("endpoint = %v, want %s", r.NoAuth, want)
		}
		if r.Source.Path != wantPath {
			t.Fatalf("source path = %s, want %s", r.Source.Path, wantPath)
		}
	}
	check("xdg", xdgPath, Options{})
	cwdPath := write(t, filepath.Join(cwd, "clouds.yaml"), fmt.Sprintf(other, "cwd"))
	check("cwd", cwdPath, Options{}) // ./clouds.yaml wins over the user config dir
	envPath := write(t, filepath.Join(t.TempDir(), "env.yaml"), fmt.Sprintf(other, "envfile"))
	t.Setenv("OS_CLIENT_CONFIG_FILE", envPath)
	check("envfile", envPath, Options{})
	explicit := write(t, filepath.Join(t.TempDir(), "explicit.yaml"), fmt.Sprintf(other, "explicit"))
	check("explicit", explicit, Options{CloudsFile: explicit}) // the flag beats OS_CLIENT_CONFIG_FILE

	// --os-cloud beats OS_CLOUD.
	_, err := Resolve(Options{Cloud: "flagcloud", CloudsFile: explicit})
	if !errors.Is(err, ErrUnknownCloud) || !strings.Contains(err.Error(), `cloud "flagcloud" not found`) {
		t.Fatalf("err = %v, want unknown flagcloud", err)
	}
}

func TestResolveNoCloudsFile(t *testing.T) {
	cwd, xdgDir := isolate(t)
	_, err := Resolve(Options{Cloud: "prod"})
	if !errors.Is(err, ErrNoCloudsFile) {
		t.Fatalf("err = %v, want ErrNoCloudsFile", err)
	}
	want := fmt.Sprintf(`cloud "prod": no clouds.yaml found (searched %s, %s, /etc/openstack/clouds.yaml)`,
		filepath.Join(cwd, "clouds.yaml"), filepath.Join(xdgDir, "clouds.yaml"))
	if _, statErr := os.Stat("/etc/openstack/clouds.yaml"); statErr == nil {
		t.Skip("this machine has /etc/openstack/clouds.yaml; cannot test the not-found path")
	}
	if err.Error() != want {
		t.Errorf("error:\n got %s\nwant %s", err, want)
	}
}

func TestResolveSecureYAMLMerge(t *testing.T) {
	_, xdgDir := isolate(t)
	write(t, filepath.Join(xdgDir, "clouds.yaml"), `
clouds:
  prod:
    auth:
      auth_url: https://keystone.example:5000/v3
      username: demo
      user_domain_name: Default
      project_id: p-1
`)
	write(t, filepath.Join(xdgDir, "secure.yaml"), `
clouds:
  prod:
    auth:
      password: `+secretPW+`
`)
	r, err := Resolve(Options{Cloud: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	if r.AuthOptions.Password != secretPW {
		t.Errorf("password from secure.yaml not merged")
	}
}

func TestResolveEnv(t *testing.T) {
	base := map[string]string{
		"OS_AUTH_URL": "http://keystone.example:5000/v3", "OS_USERNAME": "demo", "OS_PASSWORD": secretPW,
		"OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_NAME": "demo", "OS_PROJECT_DOMAIN_NAME": "Default",
		"OS_REGION_NAME": "RegionTwo", "OS_INTERFACE": "admin",
	}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name    string
		env     map[string]string
		want    *Resolved
		wantErr string
		is      error
	}{
		{name: "password", env: base, want: &Resolved{
			AuthOptions: gophercloud.AuthOptions{IdentityEndpoint: "http://keystone.example:5000/v3", Username: "demo",
				Password: secretPW, DomainName: "Default", TenantName: "demo", AllowReauth: true,
				Scope: &gophercloud.AuthScope{ProjectName: "demo", DomainName: "Default"}},
			EndpointOpts: gophercloud.EndpointOpts{Region: "RegionTwo", Availability: gophercloud.AvailabilityAdmin},
		}},
		{name: "appcred", env: map[string]string{"OS_AUTH_URL": "http://k/v3", "OS_APPLICATION_CREDENTIAL_ID": "ac",
			"OS_APPLICATION_CREDENTIAL_SECRET": secretApp, "OS_PROJECT_ID": "p"}, want: &Resolved{
			AuthOptions: gophercloud.AuthOptions{IdentityEndpoint: "http://k/v3", ApplicationCredentialID: "ac",
				ApplicationCredentialSecret: secretApp, AllowReauth: true},
			EndpointOpts: gophercloud.EndpointOpts{Availability: gophercloud.AvailabilityPublic},
		}},
		{name: "noauth", env: map[string]string{"OS_AUTH_TYPE": "noauth", "OS_ENDPOINT": "http://c:8776/v3", "OS_PROJECT_ID": "p"},
			want: &Resolved{NoAuth: &NoAuth{Endpoint: "http://c:8776/v3", ProjectID: "p"}}},
		{name: "nothing", env: map[string]string{}, is: ErrMissing,
			wantErr: "OS_AUTH_URL missing (no cloud selected: set --os-cloud or OS_CLOUD to use clouds.yaml, or the OS_* variables) (environment)"},
		{name: "nopassword", env: with("OS_PASSWORD", ""), is: ErrMissing, wantErr: "OS_PASSWORD missing (environment)"},
		{name: "nouser", env: with("OS_USERNAME", ""), is: ErrMissing, wantErr: "OS_USERNAME missing (or OS_USER_ID) (environment)"},
		{name: "nouserdomain", env: with("OS_USER_DOMAIN_NAME", ""), is: ErrMissing,
			wantErr: "OS_USER_DOMAIN_NAME missing (needed with OS_USERNAME) (environment)"},
		{name: "noprojectdomain", env: with("OS_PROJECT_DOMAIN_NAME", ""), is: ErrMissing,
			wantErr: "OS_PROJECT_DOMAIN_NAME missing (needed with OS_PROJECT_NAME) (environment)"},
		{name: "noproject", env: with("OS_PROJECT_NAME", ""), is: ErrMissing,
			wantErr: "OS_PROJECT_ID missing (or OS_PROJECT_NAME; cinderwarden needs a project-scoped token) (environment)"},
		{name: "appcred-nosecret", env: with("OS_APPLICATION_CREDENTIAL_ID", "ac", "OS_PASSWORD", ""), is: ErrMissing,
			wantErr: "OS_APPLICATION_CREDENTIAL_SECRET missing (environment)"},
		{name: "noauth-noendpoint", env: map[string]string{"OS_AUTH_TYPE": "noauth", "OS_PROJECT_ID": "p"}, is: ErrMissing,
			wantErr: "OS_ENDPOINT missing (the Cinder endpoint for auth_type noauth, e.g. http://cinder:8776/v3) (environment)"},
		{name: "noauth-badendpoint", env: map[string]string{"OS_AUTH_TYPE": "noauth", "OS_ENDPOINT": "cinder:8776", "OS_PROJECT_ID": "p"},
			is: ErrInvalid, wantErr: `OS_ENDPOINT="cinder:8776": must be an http(s) URL (environment)`},
		{name: "badinterface", env: with("OS_INTERFACE", "private"), is: ErrInvalid,
			wantErr: `OS_INTERFACE="private": must be public, internal or admin (environment)`},
		{name: "badinsecure", env: with("OS_INSECURE", "maybe"), is: ErrInvalid,
			wantErr: `OS_INSECURE="maybe": must be true or false (environment)`},
		{name: "missingcacert", env: with("OS_CACERT", "/nonexistent/ca.pem"), is: ErrInvalid,
			wantErr: `OS_CACERT="/nonexistent/ca.pem": cannot read: no such file or directory (environment)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolate(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			got, err := Resolve(Options{})
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error:\n got %v\nwant %s", err, tt.wantErr)
				}
				if !errors.Is(err, tt.is) {
					t.Errorf("errors.Is(%v, %v) = false", err, tt.is)
				}
				assertNoSecret(t, err.Error())
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.want.Source = Source{Kind: KindEnv}
			got.TLS = nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %#v\nwant %#v", got.Redacted(), tt.want.Redacted())
			}
		})
	}
}

func TestEnvInsecureAndCACert(t *testing.T) {
	isolate(t)
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	ca := write(t, filepath.Join(t.TempDir(), "ca.pem"), string(pemBytes))
	t.Setenv("OS_AUTH_TYPE", "noauth")
	t.Setenv("OS_ENDPOINT", srv.URL+"/v3")
	t.Setenv("OS_PROJECT_ID", "p")
	t.Setenv("OS_CACERT", ca)
	r, err := Resolve(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.TLS.RootCAs == nil || r.TLS.InsecureSkipVerify {
		t.Fatalf("TLS = %+v, want RootCAs set and verification on", r.TLS)
	}
	// The CA bundle really verifies the server.
	resp, err := (&http.Client{Transport: r.Transport()}).Get(srv.URL)
	if err != nil {
		t.Fatalf("GET with OS_CACERT: %v", err)
	}
	resp.Body.Close()

	t.Setenv("OS_CACERT", "")
	t.Setenv("OS_INSECURE", "true")
	r, err = Resolve(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !r.TLS.InsecureSkipVerify {
		t.Fatalf("OS_INSECURE=true did not disable verification")
	}
}

func assertNoSecret(t *testing.T, s string) {
	t.Helper()
	for _, sec := range secrets {
		if strings.Contains(s, sec) {
			t.Fatalf("secret %q leaked in: %s", sec, s)
		}
	}
}

// TestSecretsNeverPrinted formats resolved configs every way a caller
// might and checks that no secret shows up, while "***" proves masking.
func TestSecretsNeverPrinted(t *testing.T) {
	_, xdgDir := isolate(t)
	write(t, filepath.Join(xdgDir, "clouds.yaml"), cloudsYAML)
	for _, cloud := range []string{"prod", "appcred", "token"} {
		r, err := Resolve(Options{Cloud: cloud})
		if err != nil {
			t.Fatal(err)
		}
		var outs []string
		for _, f := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
			outs = append(outs, fmt.Sprintf(f, r), fmt.Sprintf(f, *r))
		}
		js, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, string(js))
		var logBuf bytes.Buffer
		slog.New(slog.NewJSONHandler(&logBuf, nil)).Info("cloud", "config", r, "value", *r)
		slog.New(slog.NewTextHandler(&logBuf, nil)).Info("cloud", "config", r)
		outs = append(outs, logBuf.String())
		for _, o := range outs {
			assertNoSecret(t, o)
		}
		if !strings.Contains(logBuf.String(), `"***"`) {
			t.Errorf("%s: log has no masked secret marker: %s", cloud, logBuf.String())
		}
		if !strings.Contains(outs[0], r.AuthOptions.IdentityEndpoint) {
			t.Errorf("%s: String() lacks the auth URL: %s", cloud, outs[0])
		}
	}
}

// keystone serves the captured Keystone token response, with the catalog's
// URLs pointed at the test server, and counts auth requests.
type keystone struct {
	srv      *httptest.Server
	auths    atomic.Int32
	status   atomic.Int32 // 0: 201 with token; otherwise this status
	lastBody atomic.Value
}

func newKeystone(t *testing.T) *keystone {
	t.Helper()
	raw, err := os.ReadFile("testdata/keystone_token_member.json")
	if err != nil {
		t.Fatal(err)
	}
	var fx map[string]struct {
		Body json.RawMessage `json:"body"`
	}
	if err := json.Unmarshal(raw, &fx); err != nil {
		t.Fatal(err)
	}
	k := &keystone{}
	k.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v3/auth/tokens" || r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		b, _ := io.ReadAll(r.Body)
		k.lastBody.Store(string(b))
		k.auths.Add(1)
		if s := k.status.Load(); s != 0 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(int(s))
			fmt.Fprintf(w, `{"error": {"code": %d, "message": "The request you have made requires authentication.", "title": "Unauthorized"}}`, s)
			return
		}
		body := strings.ReplaceAll(string(fx["keystone_token_member"].Body), "http://127.0.0.1:5000", k.srv.URL)
		body = strings.ReplaceAll(body, "http://127.0.0.1:8776", k.srv.URL)
		body = strings.ReplaceAll(body, "http://127.0.0.1:18774", k.srv.URL)
		w.Header().Set("X-Subject-Token", fmt.Sprintf("token-%d", k.auths.Load()))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, body)
	}))
	t.Cleanup(k.srv.Close)
	return k
}

func TestNewProviderClientKeystone(t *testing.T) {
	k := newKeystone(t) // before isolate changes the working directory
	isolate(t)
	t.Setenv("OS_AUTH_URL", k.srv.URL+"/v3")
	t.Setenv("OS_USERNAME", "demo")
	t.Setenv("OS_PASSWORD", secretPW)
	t.Setenv("OS_USER_DOMAIN_NAME", "Default")
	t.Setenv("OS_PROJECT_ID", "PROJECT_ID")
	r, err := Resolve(Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pc, err := r.NewProviderClient(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if pc.Token() != "token-1" || pc.ReauthFunc == nil {
		t.Fatalf("token %q, reauth set %v; want token-1 and AllowReauth", pc.Token(), pc.ReauthFunc != nil)
	}
	if body, _ := k.lastBody.Load().(string); !strings.Contains(body, `"password":"`+secretPW+`"`) || !strings.Contains(body, `"id":"PROJECT_ID"`) {
		t.Fatalf("auth request body lacks password/project scope: %d bytes", len(body))
	}
	vol, err := r.NewBlockStorageV3(pc)
	if err != nil {
		t.Fatal(err)
	}
	if want := k.srv.URL + "/v3/PROJECT_ID/"; vol.Endpoint != want {
		t.Errorf("volume endpoint %s, want %s", vol.Endpoint, want)
	}
	comp, err := r.NewComputeV2(pc)
	if err != nil {
		t.Fatal(err)
	}
	if want := k.srv.URL + "/v2.1/"; comp.Endpoint != want {
		t.Errorf("compute endpoint %s, want %s", comp.Endpoint, want)
	}

	// Re-authentication works and counts a second token request.
	if err := pc.Reauthenticate(ctx, pc.Token()); err != nil {
		t.Fatal(err)
	}
	if pc.Token() != "token-2" {
		t.Errorf("after reauth token = %q, want token-2", pc.Token())
	}

	// A region not in the catalog is an error naming the region.
	t.Setenv("OS_REGION_NAME", "Nowhere")
	r2, err := Resolve(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r2.NewBlockStorageV3(pc); err == nil || !strings.Contains(err.Error(), `region "Nowhere"`) {
		t.Errorf("err = %v, want error naming the region", err)
	}
	if _, err := r2.NewComputeV2(pc); !errors.Is(err, ErrNoCompute) {
		t.Errorf("err = %v, want ErrNoCompute", err)
	}

	// A refused login is an error with the URL and user, without the password.
	k.status.Store(http.StatusUnauthorized)
	_, err = r.NewProviderClient(ctx, nil)
	if err == nil || !gophercloud.ResponseCodeIs(err, http.StatusUnauthorized) {
		t.Fatalf("err = %v, want a 401", err)
	}
	if !strings.Contains(err.Error(), `as "demo"`) || !strings.Contains(err.Error(), k.srv.URL) {
		t.Errorf("error lacks user or URL: %v", err)
	}
	assertNoSecret(t, err.Error())
}

func TestNoAuthClients(t *testing.T) {
	isolate(t)
	var gotPath, gotToken atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath.Store(r.URL.Path)
		gotToken.Store(r.Header.Get("X-Auth-Token"))
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"volumes": []}`)
	}))
	t.Cleanup(srv.Close)
	t.Setenv("OS_AUTH_TYPE", "noauth")
	t.Setenv("OS_ENDPOINT", srv.URL+"/v3")
	t.Setenv("OS_PROJECT_ID", "proj-7")
	r, err := Resolve(Options{})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := r.NewProviderClient(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := r.NewBlockStorageV3(pc)
	if err != nil {
		t.Fatal(err)
	}
	if want := srv.URL + "/v3/proj-7/"; sc.Endpoint != want {
		t.Fatalf("endpoint %s, want %s", sc.Endpoint, want)
	}
	if _, err := sc.Get(context.Background(), sc.ServiceURL("volumes"), new(any), nil); err != nil {
		t.Fatal(err)
	}
	if gotPath.Load() != "/v3/proj-7/volumes" || gotToken.Load() != "cinderwarden:proj-7" {
		t.Errorf("request path %v token %v", gotPath.Load(), gotToken.Load())
	}
	if _, err := r.NewComputeV2(pc); !errors.Is(err, ErrNoCompute) {
		t.Errorf("NewComputeV2 under noauth: %v, want ErrNoCompute", err)
	}
	if s := r.String(); s != "noauth cinder "+srv.URL+"/v3 project proj-7 (environment)" {
		t.Errorf("String() = %s", s)
	}
}

func TestRegisterFlags(t *testing.T) {
	var o Options
	fs := flag.NewFlagSet("plugin", flag.ContinueOnError)
	o.RegisterFlags(fs)
	if err := fs.Parse([]string{"--os-cloud", "prod", "--os-client-config-file", "/x/clouds.yaml"}); err != nil {
		t.Fatal(err)
	}
	if o != (Options{Cloud: "prod", CloudsFile: "/x/clouds.yaml"}) {
		t.Errorf("options %+v", o)
	}
}
