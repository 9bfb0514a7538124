package cloudconfig

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Hostile configuration: clouds.yaml files and OS_* environments that
// cannot work, each with the exact error an operator reads (FILE stands for
// the clouds.yaml path, DIR for its directory). The class is checked with
// errors.Is; the whole message is compared because a clear message is the
// point. No message may contain a secret.

const keystoneAuth = `
      auth_url: https://keystone.example:5000/v3`

func TestHostileCloudsYAML(t *testing.T) {
	tests := []struct {
		name, yaml, cloud string
		class             error // nil: a parse error, no class
		want              string
	}{
		{"empty file", "", "c", ErrUnknownCloud, "cloud \"c\" not found in FILE (clouds found: none)"},
		{"clouds is null", "clouds:\n", "c", ErrUnknownCloud, "cloud \"c\" not found in FILE (clouds found: none)"},
		{"unknown cloud", "clouds:\n  prod: {}\n  test: {}\n", "c", ErrUnknownCloud, "cloud \"c\" not found in FILE (clouds found: prod, test)"},
		{"cloud name differs in case", "clouds:\n  Prod: {}\n", "prod", ErrUnknownCloud, "cloud \"prod\" not found in FILE (clouds found: Prod)"},
		{"tab indentation", "clouds:\n\tc: {}\n", "c", nil, "cloud \"c\": parse FILE: yaml: line 2: found character that cannot start any token"},
		{"unterminated quote", "clouds:\n  c:\n    auth:\n      password: \"" + secretPW + "\n", "c", nil, "cloud \"c\": parse FILE: yaml: line 4: found unexpected end of stream"},
		{"clouds is a list", "clouds:\n  - c\n", "c", nil, "cloud \"c\": parse FILE: yaml: unmarshal errors:\n  line 2: cannot unmarshal !!seq into map[string]cloudconfig.rawCloud"},
		{"auth is a string", "clouds:\n  c:\n    auth: " + secretPW + "\n", "c", nil, "cloud \"c\": parse FILE: yaml: unmarshal errors:\n  line 3: cannot unmarshal !!str (value not shown) into cloudconfig.rawAuth"},
		{"not YAML at all", "{\"clouds\": [}", "c", nil, "cloud \"c\": parse FILE: yaml: did not find expected node content"},
		{"password starting with * (an alias)", "clouds:\n  c:\n    auth:" + keystoneAuth + "\n      password: *" + secretPW + "\n", "c", nil, "cloud \"c\": parse FILE: yaml: unknown anchor (value not shown) referenced"},
		{"password with a type tag", "clouds:\n  c:\n    auth:" + keystoneAuth + "\n      password: !!bool " + secretPW + " x\n", "c", nil, "cloud \"c\": yaml: cannot decode !!str (value not shown) as a !!bool (clouds.yaml: FILE)"},
		{"verify not a boolean", "clouds:\n  c:\n    verify: maybe\n    auth:" + keystoneAuth + "\n", "c", nil, "cloud \"c\": parse FILE: yaml: unmarshal errors:\n  line 3: cannot unmarshal !!str (value not shown) into bool"},
		{"no auth_url", "clouds:\n  c:\n    auth:\n      username: demo\n      password: " + secretPW + "\n", "c", ErrMissing, "cloud \"c\": auth.auth_url missing (clouds.yaml: FILE)"},
		{"no user", "clouds:\n  c:\n    auth:" + keystoneAuth + "\n      password: " + secretPW + "\n", "c", ErrMissing, "cloud \"c\": auth.username missing (or auth.user_id) (clouds.yaml: FILE)"},
		{"no user domain", "clouds:\n  c:\n    auth:" + keystoneAuth + "\n      username: demo\n      password: " + secretPW + "\n", "c", ErrMissing, "cloud \"c\": auth.user_domain_name missing (needed with auth.username) (clouds.yaml: FILE)"},
		{"no password", "clouds:\n  c:\n    auth:" + keystoneAuth + "\n      username: demo\n      user_domain_name: Default\n", "c", ErrMissing, "cloud \"c\": auth.password missing (clouds.yaml: FILE)"},
		{"no project", "clouds:\n  c:\n    auth:" + keystoneAuth + "\n      user_id: u-1\n      password: " + secretPW + "\n", "c", ErrMissing, "cloud \"c\": auth.project_id missing (or auth.project_name; cinderwarden needs a project-scoped token) (clouds.yaml: FILE)"},
		{"no project domain", "clouds:\n  c:\n    auth:" + keystoneAuth + "\n      user_id: u-1\n      password: " + secretPW + "\n      project_name: demo\n", "c", ErrMissing, "cloud \"c\": auth.project_domain_name missing (needed with auth.project_name) (clouds.yaml: FILE)"},
		{"application credential without secret", "clouds:\n  c:\n    auth_type: v3applicationcredential\n    auth:" + keystoneAuth + "\n      application_credential_id: ac-1\n", "c", ErrMissing, "cloud \"c\": auth.application_credential_secret missing (clouds.yaml: FILE)"},
		{"application credential without id or name", "clouds:\n  c:\n    auth_type: v3applicationcredential\n    auth:" + keystoneAuth + "\n      application_credential_secret: " + secretApp + "\n", "c", ErrMissing, "cloud \"c\": auth.application_credential_id missing (or auth.application_credential_name) (clouds.yaml: FILE)"},
		{"application credential under password auth", "clouds:\n  c:\n    auth:" + keystoneAuth + "\n      application_credential_id: ac-1\n      application_credential_secret: " + secretApp + "\n", "c", ErrInvalid, "cloud \"c\": auth_type=\"password\": application credential settings present; set auth_type v3applicationcredential (clouds.yaml: FILE)"},
		{"token auth without token", "clouds:\n  c:\n    auth_type: v3token\n    auth:" + keystoneAuth + "\n      project_id: p-1\n", "c", ErrMissing, "cloud \"c\": auth.token missing (clouds.yaml: FILE)"},
		{"noauth without endpoint", "clouds:\n  c:\n    auth_type: noauth\n    auth:\n      project_id: p-1\n", "c", ErrMissing, "cloud \"c\": auth.endpoint missing (the Cinder endpoint for auth_type noauth, e.g. http://cinder:8776/v3) (clouds.yaml: FILE)"},
		{"noauth endpoint not a URL", "clouds:\n  c:\n    auth_type: noauth\n    auth:\n      endpoint: cinder:8776/v3\n      project_id: p-1\n", "c", ErrInvalid, "cloud \"c\": auth.endpoint=\"cinder:8776/v3\": must be an http(s) URL (clouds.yaml: FILE)"},
		{"noauth without project", "clouds:\n  c:\n    auth_type: none\n    auth:\n      endpoint: http://cinder:8776/v3\n", "c", ErrMissing, "cloud \"c\": auth.project_id missing (needed with auth_type noauth) (clouds.yaml: FILE)"},
		{"unknown auth_type", "clouds:\n  c:\n    auth_type: kerberos\n    auth:" + keystoneAuth + "\n", "c", ErrInvalid, "cloud \"c\": auth_type=\"kerberos\": unsupported; use password, v3applicationcredential, token or noauth (clouds.yaml: FILE)"},
		{"unknown interface", "clouds:\n  c:\n    interface: sideways\n    auth:" + keystoneAuth + "\n", "c", ErrInvalid, "cloud \"c\": interface=\"sideways\": must be public, internal or admin (clouds.yaml: FILE)"},
		{"cacert missing", "clouds:\n  c:\n    auth_type: noauth\n    cacert: DIR/nope.pem\n    auth:\n      endpoint: https://cinder:8776/v3\n      project_id: p-1\n", "c", ErrInvalid, "cloud \"c\": cacert=\"DIR/nope.pem\": cannot read: no such file or directory (clouds.yaml: FILE)"},
		{"cacert without a certificate", "clouds:\n  c:\n    auth_type: noauth\n    cacert: FILE\n    auth:\n      endpoint: https://cinder:8776/v3\n      project_id: p-1\n", "c", ErrInvalid, "cloud \"c\": cacert=\"FILE\": no PEM certificate in file (clouds.yaml: FILE)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, xdgDir := isolate(t)
			path := filepath.Join(xdgDir, "clouds.yaml")
			content := strings.ReplaceAll(strings.ReplaceAll(tt.yaml, "FILE", path), "DIR", xdgDir)
			write(t, path, content)
			_, err := Resolve(Options{Cloud: tt.cloud})
			if err == nil {
				t.Fatal("Resolve succeeded")
			}
			if tt.class != nil && !errors.Is(err, tt.class) {
				t.Errorf("err = %v, want class %v", err, tt.class)
			}
			got := strings.ReplaceAll(strings.ReplaceAll(err.Error(), path, "FILE"), xdgDir, "DIR")
			if got != tt.want {
				t.Errorf("error\n got %q\nwant %q", got, tt.want)
			}
			assertNoSecret(t, err.Error())
		})
	}
}

func TestHostileCloudsFileLocation(t *testing.T) {
	_, xdgDir := isolate(t)
	for _, tt := range []struct {
		name, file, want string
	}{
		{"explicit file missing", filepath.Join(xdgDir, "nope.yaml"), "cloud \"c\": no clouds.yaml found (searched DIR/nope.yaml)"},
		{"explicit path is a directory", xdgDir, "cloud \"c\": no clouds.yaml found (searched DIR)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Resolve(Options{Cloud: "c", CloudsFile: tt.file})
			if !errors.Is(err, ErrNoCloudsFile) {
				t.Fatalf("err = %v, want ErrNoCloudsFile", err)
			}
			if got := strings.ReplaceAll(err.Error(), xdgDir, "DIR"); got != tt.want {
				t.Errorf("error\n got %q\nwant %q", got, tt.want)
			}
		})
	}
	// An unreadable file (mode 000) is an error, not "no file": root reads
	// anything, so this case only runs unprivileged.
	if os.Geteuid() != 0 {
		p := write(t, filepath.Join(xdgDir, "locked.yaml"), "clouds: {}\n")
		if err := os.Chmod(p, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := Resolve(Options{Cloud: "c", CloudsFile: p}); err == nil || errors.Is(err, ErrNoCloudsFile) {
			t.Errorf("unreadable clouds.yaml: err = %v", err)
		}
	}
}

func TestHostileEnvironment(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		class error
		want  string
	}{
		{"nothing set", nil, ErrMissing, "OS_AUTH_URL missing (no cloud selected: set --os-cloud or OS_CLOUD to use clouds.yaml, or the OS_* variables) (environment)"},
		{"unknown OS_AUTH_TYPE", map[string]string{"OS_AUTH_TYPE": "saml2", "OS_AUTH_URL": "https://k:5000/v3"}, ErrInvalid, "OS_AUTH_TYPE=\"saml2\": unsupported; use password, v3applicationcredential, token or noauth (environment)"},
		{"OS_INSECURE not a boolean", map[string]string{"OS_INSECURE": "maybe", "OS_AUTH_URL": "https://k:5000/v3"}, ErrInvalid, "OS_INSECURE=\"maybe\": must be true or false (environment)"},
		{"unknown OS_INTERFACE", map[string]string{"OS_INTERFACE": "private", "OS_AUTH_URL": "https://k:5000/v3"}, ErrInvalid, "OS_INTERFACE=\"private\": must be public, internal or admin (environment)"},
		{"password without user", map[string]string{"OS_AUTH_URL": "https://k:5000/v3", "OS_PASSWORD": secretPW}, ErrMissing, "OS_USERNAME missing (or OS_USER_ID) (environment)"},
		{"user without password", map[string]string{"OS_AUTH_URL": "https://k:5000/v3", "OS_USERNAME": "demo", "OS_USER_DOMAIN_NAME": "Default"}, ErrMissing, "OS_PASSWORD missing (environment)"},
		{"no project", map[string]string{"OS_AUTH_URL": "https://k:5000/v3", "OS_USERNAME": "demo", "OS_USER_DOMAIN_NAME": "Default", "OS_PASSWORD": secretPW}, ErrMissing, "OS_PROJECT_ID missing (or OS_PROJECT_NAME; cinderwarden needs a project-scoped token) (environment)"},
		{"token without project", map[string]string{"OS_AUTH_TYPE": "token", "OS_AUTH_URL": "https://k:5000/v3", "OS_TOKEN": secretToken}, ErrMissing, "OS_PROJECT_ID missing (or OS_PROJECT_NAME; cinderwarden needs a project-scoped token) (environment)"},
		{"noauth endpoint not a URL", map[string]string{"OS_AUTH_TYPE": "noauth", "OS_ENDPOINT": "cinder", "OS_PROJECT_ID": "p"}, ErrInvalid, "OS_ENDPOINT=\"cinder\": must be an http(s) URL (environment)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolate(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			_, err := Resolve(Options{})
			if !errors.Is(err, tt.class) {
				t.Fatalf("err = %v, want class %v", err, tt.class)
			}
			if err.Error() != tt.want {
				t.Errorf("error\n got %q\nwant %q", err.Error(), tt.want)
			}
			assertNoSecret(t, err.Error())
		})
	}
}
