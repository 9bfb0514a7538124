// Package cloudconfig resolves how cinderwarden reaches the cloud. Every
// subcommand calls Resolve once and gets one validated value:
//
//   - a named cloud from clouds.yaml (flag --os-cloud, else OS_CLOUD), looked
//     up in an explicit file, else $OS_CLIENT_CONFIG_FILE, else the standard
//     locations ./clouds.yaml, ${XDG_CONFIG_HOME:-~/.config}/openstack/clouds.yaml
//     and /etc/openstack/clouds.yaml; a secure.yaml next to the chosen file is
//     merged in (gophercloud's openstack/config/clouds does the parsing);
//   - otherwise the plain OS_* environment variables (OS_AUTH_URL, OS_USERNAME,
//     OS_PASSWORD, OS_PROJECT_NAME/ID, OS_USER_DOMAIN_NAME, ...);
//   - in either, auth_type "noauth" (OS_AUTH_TYPE=noauth) for a standalone
//     Cinder without Keystone: a Cinder endpoint plus a project id.
//
// Validation errors name the missing key in the vocabulary of the place it was
// looked for (auth.auth_url in clouds.yaml, OS_AUTH_URL in the environment)
// and that place. Secrets (password, application credential secret, token)
// never appear in errors, in String/Format/GoString, in LogValue or in JSON.
package cloudconfig

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
	"gopkg.in/yaml.v3"
)

// Errors a caller may test with errors.Is. The concrete errors carry the
// key, the cloud and the place searched.
var (
	// ErrMissing: a required setting is absent (see *MissingError).
	ErrMissing = errors.New("required setting missing")
	// ErrInvalid: a setting has a value that cannot work (see *InvalidError).
	ErrInvalid = errors.New("invalid setting")
	// ErrUnknownCloud: the named cloud is not in the clouds.yaml found
	// (see *UnknownCloudError).
	ErrUnknownCloud = errors.New("unknown cloud")
	// ErrNoCloudsFile: a cloud was named but no clouds.yaml exists in any
	// searched location.
	ErrNoCloudsFile = errors.New("no clouds.yaml found")
)

// Kind says where a configuration came from.
type Kind string

const (
	// KindCloudsYAML: a cloud entry of a clouds.yaml file.
	KindCloudsYAML Kind = "clouds.yaml"
	// KindEnv: the OS_* environment variables.
	KindEnv Kind = "environment"
)

// Source records where the configuration was found, for error messages and
// logs.
type Source struct {
	Kind Kind
	// Path is the clouds.yaml file read (KindCloudsYAML only).
	Path string
	// Cloud is the cloud name selected (KindCloudsYAML only).
	Cloud string
}

// String renders the source as used in error messages, e.g.
// `clouds.yaml: /etc/openstack/clouds.yaml`.
func (s Source) String() string {
	if s.Kind == KindCloudsYAML {
		return "clouds.yaml: " + s.Path
	}
	return "environment"
}

// prefix is prepended to error messages: `cloud "prod": ` or nothing.
func (s Source) prefix() string {
	if s.Kind == KindCloudsYAML {
		return fmt.Sprintf("cloud %q: ", s.Cloud)
	}
	return ""
}

// MissingError names a required setting that is absent.
type MissingError struct {
	Source Source
	// Key in the source's vocabulary: "auth.auth_url" or "OS_AUTH_URL".
	Key string
	// Why, when the key is only conditionally required (may be empty).
	Why string
}

func (e *MissingError) Error() string {
	why := ""
	if e.Why != "" {
		why = " (" + e.Why + ")"
	}
	return fmt.Sprintf("%s%s missing%s (%s)", e.Source.prefix(), e.Key, why, e.Source)
}

// Is makes errors.Is(err, ErrMissing) true.
func (e *MissingError) Is(target error) bool { return target == ErrMissing }

// InvalidError names a setting whose value cannot work. Value is never a
// secret.
type InvalidError struct {
	Source Source
	Key    string
	Value  string
	Reason string
}

func (e *InvalidError) Error() string {
	return fmt.Sprintf("%s%s=%q: %s (%s)", e.Source.prefix(), e.Key, e.Value, e.Reason, e.Source)
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

// UnknownCloudError: the cloud is not in the file; Known lists those that are.
type UnknownCloudError struct {
	Cloud string
	Path  string
	Known []string
}

func (e *UnknownCloudError) Error() string {
	known := "none"
	if len(e.Known) > 0 {
		known = strings.Join(e.Known, ", ")
	}
	return fmt.Sprintf("cloud %q not found in %s (clouds found: %s)", e.Cloud, e.Path, known)
}

// Is makes errors.Is(err, ErrUnknownCloud) true.
func (e *UnknownCloudError) Is(target error) bool { return target == ErrUnknownCloud }

// Options select the configuration. The zero value means: cloud from OS_CLOUD,
// clouds.yaml from OS_CLIENT_CONFIG_FILE or the standard locations, and the
// OS_* environment when no cloud is named.
type Options struct {
	// Cloud is the --os-cloud value; empty falls back to OS_CLOUD.
	Cloud string
	// CloudsFile is an explicit clouds.yaml path; when set it is the only
	// location searched (like OS_CLIENT_CONFIG_FILE, which it overrides).
	CloudsFile string
}

// RegisterFlags adds --os-cloud and --os-client-config-file to fs.
func (o *Options) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Cloud, "os-cloud", "", "cloud name in clouds.yaml (default $OS_CLOUD; empty: use the OS_* environment)")
	fs.StringVar(&o.CloudsFile, "os-client-config-file", "", "explicit clouds.yaml path (default $OS_CLIENT_CONFIG_FILE, then ./clouds.yaml, ~/.config/openstack/clouds.yaml, /etc/openstack/clouds.yaml)")
}

// NoAuth is the Keystone-less configuration of a standalone Cinder started
// with auth_strategy=noauth. Requests go to Endpoint + "/" + ProjectID.
type NoAuth struct {
	// Endpoint is the versioned Cinder base without the project, e.g.
	// http://cinder:8776/v3.
	Endpoint string
	// ProjectID is appended to Endpoint and sent as the noauth project.
	ProjectID string
}

// Resolved is one validated way to reach the cloud. Exactly one of
// AuthOptions.IdentityEndpoint (Keystone) or NoAuth is set.
//
// It holds secrets in AuthOptions; every way of printing it (fmt verbs,
// slog, JSON) masks them.
type Resolved struct {
	Source Source
	// AuthOptions for Keystone v3, with AllowReauth set. Zero for noauth.
	AuthOptions gophercloud.AuthOptions
	// EndpointOpts select region and interface in the service catalog.
	EndpointOpts gophercloud.EndpointOpts
	// TLS is the client TLS configuration (CA bundle, client certificate,
	// verify off). Never nil after Resolve.
	TLS *tls.Config
	// NoAuth is set for auth_type noauth.
	NoAuth *NoAuth
}

// IsNoAuth reports whether the configuration bypasses Keystone.
func (r *Resolved) IsNoAuth() bool { return r.NoAuth != nil }

// Resolve finds and validates the cloud configuration.
func Resolve(opts Options) (*Resolved, error) {
	cloud := opts.Cloud
	if cloud == "" {
		cloud = os.Getenv("OS_CLOUD")
	}
	if cloud == "" {
		return fromEnv()
	}
	return fromCloudsYAML(cloud, opts.CloudsFile)
}

// SearchLocations returns the clouds.yaml paths searched, in order.
func SearchLocations(explicit string) []string {
	if explicit != "" {
		return []string{explicit}
	}
	if p := os.Getenv("OS_CLIENT_CONFIG_FILE"); p != "" {
		return []string{p}
	}
	var locs []string
	if cwd, err := os.Getwd(); err == nil {
		locs = append(locs, filepath.Join(cwd, "clouds.yaml"))
	}
	userConfig := os.Getenv("XDG_CONFIG_HOME")
	if userConfig == "" {
		if home, err := os.UserHomeDir(); err == nil {
			userConfig = filepath.Join(home, ".config")
		}
	}
	if userConfig != "" {
		locs = append(locs, filepath.Join(userConfig, "openstack", "clouds.yaml"))
	}
	return append(locs, "/etc/openstack/clouds.yaml")
}

// rawCloud is what we read from clouds.yaml ourselves: the fields
// gophercloud's parser does not expose (auth_type, the noauth endpoint) and
// the list of cloud names for a helpful error.
type rawCloud struct {
	AuthType                     string  `yaml:"auth_type"`
	Auth                         rawAuth `yaml:"auth"`
	BlockStorageEndpointOverride string  `yaml:"block_storage_endpoint_override"`
	VolumeEndpointOverride       string  `yaml:"volume_endpoint_override"`
	Interface                    string  `yaml:"interface"`
	EndpointType                 string  `yaml:"endpoint_type"`
	CACert                       string  `yaml:"cacert"`
	Verify                       *bool   `yaml:"verify"`
}

// rawAuth is the part of a cloud's auth section read by us (a named type,
// so that a YAML type error names it rather than spelling out the struct).
type rawAuth struct {
	Endpoint  string `yaml:"endpoint"`
	ProjectID string `yaml:"project_id"`
}

func fromCloudsYAML(cloud, explicit string) (*Resolved, error) {
	locs := SearchLocations(explicit)
	path := ""
	for _, l := range locs {
		if st, err := os.Stat(l); err == nil && !st.IsDir() {
			path = l
			break
		}
	}
	if path == "" {
		return nil, fmt.Errorf("cloud %q: %w (searched %s)", cloud, ErrNoCloudsFile, strings.Join(locs, ", "))
	}
	src := Source{Kind: KindCloudsYAML, Path: path, Cloud: cloud}

	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cloud %q: read %s: %w", cloud, path, err)
	}
	var file struct {
		Clouds map[string]rawCloud `yaml:"clouds"`
	}
	if err := yaml.Unmarshal(data, &file); err != nil {
		return nil, fmt.Errorf("cloud %q: parse %s: %w", cloud, path, valuesHidden(err))
	}
	raw, ok := file.Clouds[cloud]
	if !ok {
		known := make([]string, 0, len(file.Clouds))
		for name := range file.Clouds {
			known = append(known, name)
		}
		slices.Sort(known)
		return nil, &UnknownCloudError{Cloud: cloud, Path: path, Known: known}
	}

	names := cloudsKeys
	authType, err := normalizeAuthType(raw.AuthType)
	if err != nil {
		return nil, &InvalidError{Source: src, Key: names.authType, Value: raw.AuthType, Reason: err.Error()}
	}
	if iface := firstNonEmpty(os.Getenv("OS_INTERFACE"), raw.EndpointType, raw.Interface); iface != "" {
		if err := checkInterface(iface); err != nil {
			return nil, &InvalidError{Source: src, Key: names.iface, Value: iface, Reason: err.Error()}
		}
	}

	if authType == authNoAuth {
		return noAuthResolved(src, names,
			firstNonEmpty(raw.Auth.Endpoint, raw.BlockStorageEndpointOverride, raw.VolumeEndpointOverride),
			raw.Auth.ProjectID, firstNonEmpty(os.Getenv("OS_CACERT"), raw.CACert), raw.Verify != nil && !*raw.Verify)
	}

	// gophercloud parses the file (and merges secure.yaml from the same
	// directory). We point it at exactly the file we chose.
	ao, eo, tlsConf, err := clouds.Parse(clouds.WithCloudName(cloud), clouds.WithLocations(path))
	if err != nil {
		return nil, fmt.Errorf("cloud %q: %w (%s)", cloud, valuesHidden(err), src)
	}
	r := &Resolved{Source: src, AuthOptions: ao, EndpointOpts: eo, TLS: tlsConf}
	if err := r.validateKeystone(names, authType); err != nil {
		return nil, err
	}
	return r, nil
}

// valuesHidden keeps a YAML error's line numbers and types but not the
// values it quotes. yaml.v2 (gophercloud's parser) and yaml.v3 quote them:
// "cannot unmarshal !!str `s3cret x` into bool" for a password written as
// `password: !!bool s3cret x`, and "unknown anchor 's3cret' referenced" for
// the common `password: *s3cret` (a leading * makes it an alias). For each
// quote character, everything from its first to its last occurrence goes.
// The original error is not kept, not even for Unwrap: its text is the
// secret.
func valuesHidden(err error) error {
	msg := err.Error()
	hidden := false
	for _, q := range []byte{'`', '\'', '"'} {
		i, j := strings.IndexByte(msg, q), strings.LastIndexByte(msg, q)
		if i < 0 {
			continue
		}
		if j == i {
			j = len(msg) - 1
		}
		msg, hidden = msg[:i]+"(value not shown)"+msg[j+1:], true
	}
	if !hidden {
		return err
	}
	return errors.New(msg)
}

// keyNames maps a setting to its name in one source's vocabulary.
type keyNames struct {
	authType, authURL, username, userID, password, userDomain string
	projectID, projectName, projectDomain                     string
	appCredID, appCredName, appCredSecret, token              string
	endpoint, iface, cacert, insecure                         string
}

var cloudsKeys = keyNames{
	authType: "auth_type", authURL: "auth.auth_url", username: "auth.username", userID: "auth.user_id",
	password: "auth.password", userDomain: "auth.user_domain_name",
	projectID: "auth.project_id", projectName: "auth.project_name", projectDomain: "auth.project_domain_name",
	appCredID: "auth.application_credential_id", appCredName: "auth.application_credential_name",
	appCredSecret: "auth.application_credential_secret", token: "auth.token",
	endpoint: "auth.endpoint", iface: "interface", cacert: "cacert", insecure: "verify",
}

var envKeys = keyNames{
	authType: "OS_AUTH_TYPE", authURL: "OS_AUTH_URL", username: "OS_USERNAME", userID: "OS_USER_ID",
	password: "OS_PASSWORD", userDomain: "OS_USER_DOMAIN_NAME",
	projectID: "OS_PROJECT_ID", projectName: "OS_PROJECT_NAME", projectDomain: "OS_PROJECT_DOMAIN_NAME",
	appCredID: "OS_APPLICATION_CREDENTIAL_ID", appCredName: "OS_APPLICATION_CREDENTIAL_NAME",
	appCredSecret: "OS_APPLICATION_CREDENTIAL_SECRET", token: "OS_TOKEN",
	endpoint: "OS_ENDPOINT", iface: "OS_INTERFACE", cacert: "OS_CACERT", insecure: "OS_INSECURE",
}

type authType int

const (
	authPassword authType = iota
	authAppCred
	authToken
	authNoAuth
)

func normalizeAuthType(s string) (authType, error) {
	switch strings.ToLower(s) {
	case "", "password", "v3password":
		return authPassword, nil
	case "v3applicationcredential", "applicationcredential", "v3applicationcredentials":
		return authAppCred, nil
	case "token", "v3token":
		return authToken, nil
	case "noauth", "none":
		return authNoAuth, nil
	}
	return 0, errors.New("unsupported; use password, v3applicationcredential, token or noauth")
}

func checkInterface(s string) error {
	switch s {
	case "public", "publicURL", "internal", "internalURL", "admin", "adminURL":
		return nil
	}
	return errors.New("must be public, internal or admin")
}

// validateKeystone checks that the Keystone options can authenticate, and
// normalises them (AllowReauth on, no scope for application credentials).
func (r *Resolved) validateKeystone(k keyNames, at authType) error {
	ao := &r.AuthOptions
	src := r.Source
	miss := func(key, why string) error { return &MissingError{Source: src, Key: key, Why: why} }

	if ao.IdentityEndpoint == "" {
		return miss(k.authURL, "")
	}
	switch at {
	case authAppCred:
		if ao.ApplicationCredentialID == "" && ao.ApplicationCredentialName == "" {
			return miss(k.appCredID, "or "+k.appCredName)
		}
		if ao.ApplicationCredentialID == "" && ao.UserID == "" && ao.Username == "" {
			return miss(k.username, "or "+k.userID+"; needed with "+k.appCredName)
		}
		if ao.ApplicationCredentialID == "" && ao.UserID == "" && ao.DomainID == "" && ao.DomainName == "" {
			return miss(k.userDomain, "needed with "+k.username)
		}
		if ao.ApplicationCredentialSecret == "" {
			return miss(k.appCredSecret, "")
		}
		// Keystone refuses a scope with application credentials: the
		// credential carries its project.
		ao.Scope, ao.TenantID, ao.TenantName = nil, "", ""
		ao.Password = ""
	case authToken:
		if ao.TokenID == "" {
			return miss(k.token, "")
		}
		if err := checkScope(ao, k, miss); err != nil {
			return err
		}
	default:
		if ao.ApplicationCredentialID != "" || ao.ApplicationCredentialSecret != "" {
			return &InvalidError{Source: src, Key: k.authType, Value: "password",
				Reason: "application credential settings present; set auth_type v3applicationcredential"}
		}
		if ao.Username == "" && ao.UserID == "" {
			return miss(k.username, "or "+k.userID)
		}
		if ao.UserID == "" && ao.DomainID == "" && ao.DomainName == "" {
			return miss(k.userDomain, "needed with "+k.username)
		}
		if ao.Password == "" {
			return miss(k.password, "")
		}
		if err := checkScope(ao, k, miss); err != nil {
			return err
		}
		ao.TokenID = ""
	}
	ao.AllowReauth = true
	return nil
}

func checkScope(ao *gophercloud.AuthOptions, k keyNames, miss func(key, why string) error) error {
	if ao.Scope != nil && (ao.Scope.System || ao.Scope.TrustID != "") {
		return nil
	}
	if ao.TenantID == "" && ao.TenantName == "" {
		return miss(k.projectID, "or "+k.projectName+"; cinderwarden needs a project-scoped token")
	}
	if ao.TenantID == "" && (ao.Scope == nil || (ao.Scope.DomainID == "" && ao.Scope.DomainName == "")) {
		return miss(k.projectDomain, "needed with "+k.projectName)
	}
	return nil
}

func noAuthResolved(src Source, k keyNames, endpoint, projectID, cacert string, insecure bool) (*Resolved, error) {
	if endpoint == "" {
		return nil, &MissingError{Source: src, Key: k.endpoint, Why: "the Cinder endpoint for auth_type noauth, e.g. http://cinder:8776/v3"}
	}
	if !strings.HasPrefix(endpoint, "http://") && !strings.HasPrefix(endpoint, "https://") {
		return nil, &InvalidError{Source: src, Key: k.endpoint, Value: endpoint, Reason: "must be an http(s) URL"}
	}
	if projectID == "" {
		return nil, &MissingError{Source: src, Key: k.projectID, Why: "needed with auth_type noauth"}
	}
	tlsConf, err := buildTLS(src, k, cacert, insecure)
	if err != nil {
		return nil, err
	}
	return &Resolved{
		Source: src,
		TLS:    tlsConf,
		NoAuth: &NoAuth{Endpoint: strings.TrimRight(endpoint, "/"), ProjectID: projectID},
	}, nil
}

func fromEnv() (*Resolved, error) {
	src := Source{Kind: KindEnv}
	k := envKeys
	get := os.Getenv

	at, err := normalizeAuthType(get("OS_AUTH_TYPE"))
	if err != nil {
		return nil, &InvalidError{Source: src, Key: k.authType, Value: get("OS_AUTH_TYPE"), Reason: err.Error()}
	}
	insecure := false
	if v := get("OS_INSECURE"); v != "" {
		switch strings.ToLower(v) {
		case "1", "true", "yes":
			insecure = true
		case "0", "false", "no":
		default:
			return nil, &InvalidError{Source: src, Key: k.insecure, Value: v, Reason: "must be true or false"}
		}
	}
	iface := get("OS_INTERFACE")
	if iface != "" {
		if err := checkInterface(iface); err != nil {
			return nil, &InvalidError{Source: src, Key: k.iface, Value: iface, Reason: err.Error()}
		}
	}
	if at == authNoAuth {
		return noAuthResolved(src, k, firstNonEmpty(get("OS_ENDPOINT"), get("CINDER_ENDPOINT")),
			firstNonEmpty(get("OS_PROJECT_ID"), get("OS_TENANT_ID")), get("OS_CACERT"), insecure)
	}
	if get("OS_AUTH_URL") == "" {
		return nil, &MissingError{Source: src, Key: k.authURL,
			Why: "no cloud selected: set --os-cloud or OS_CLOUD to use clouds.yaml, or the OS_* variables"}
	}

	ao := gophercloud.AuthOptions{
		IdentityEndpoint:            get("OS_AUTH_URL"),
		Username:                    get("OS_USERNAME"),
		UserID:                      firstNonEmpty(get("OS_USER_ID"), get("OS_USERID")),
		Password:                    get("OS_PASSWORD"),
		DomainName:                  firstNonEmpty(get("OS_USER_DOMAIN_NAME"), get("OS_DOMAIN_NAME")),
		DomainID:                    firstNonEmpty(get("OS_USER_DOMAIN_ID"), get("OS_DOMAIN_ID")),
		TenantID:                    firstNonEmpty(get("OS_PROJECT_ID"), get("OS_TENANT_ID")),
		TenantName:                  firstNonEmpty(get("OS_PROJECT_NAME"), get("OS_TENANT_NAME")),
		TokenID:                     get("OS_TOKEN"),
		ApplicationCredentialID:     get("OS_APPLICATION_CREDENTIAL_ID"),
		ApplicationCredentialName:   get("OS_APPLICATION_CREDENTIAL_NAME"),
		ApplicationCredentialSecret: get("OS_APPLICATION_CREDENTIAL_SECRET"),
	}
	if ao.ApplicationCredentialID != "" || ao.ApplicationCredentialName != "" {
		if get("OS_AUTH_TYPE") == "" {
			at = authAppCred
		}
	}
	switch {
	case ao.TenantID != "":
		ao.Scope = &gophercloud.AuthScope{ProjectID: ao.TenantID}
	case ao.TenantName != "":
		ao.Scope = &gophercloud.AuthScope{
			ProjectName: ao.TenantName,
			DomainName:  firstNonEmpty(get("OS_PROJECT_DOMAIN_NAME"), get("OS_DOMAIN_NAME")),
			DomainID:    firstNonEmpty(get("OS_PROJECT_DOMAIN_ID"), get("OS_DOMAIN_ID")),
		}
	}
	tlsConf, err := buildTLS(src, k, get("OS_CACERT"), insecure)
	if err != nil {
		return nil, err
	}
	r := &Resolved{
		Source:      src,
		AuthOptions: ao,
		EndpointOpts: gophercloud.EndpointOpts{
			Region:       get("OS_REGION_NAME"),
			Availability: availability(iface),
		},
		TLS: tlsConf,
	}
	if err := r.validateKeystone(k, at); err != nil {
		return nil, err
	}
	return r, nil
}

func availability(iface string) gophercloud.Availability {
	switch iface {
	case "internal", "internalURL":
		return gophercloud.AvailabilityInternal
	case "admin", "adminURL":
		return gophercloud.AvailabilityAdmin
	}
	return gophercloud.AvailabilityPublic
}

func buildTLS(src Source, k keyNames, cacert string, insecure bool) (*tls.Config, error) {
	conf := &tls.Config{InsecureSkipVerify: insecure} //nolint:gosec // operator's explicit choice
	if cacert == "" {
		return conf, nil
	}
	pem, err := os.ReadFile(cacert)
	if err != nil {
		reason := err.Error()
		var pe *fs.PathError
		if errors.As(err, &pe) {
			reason = pe.Err.Error()
		}
		return nil, &InvalidError{Source: src, Key: k.cacert, Value: cacert, Reason: "cannot read: " + reason}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, &InvalidError{Source: src, Key: k.cacert, Value: cacert, Reason: "no PEM certificate in file"}
	}
	conf.RootCAs = pool
	return conf, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

const masked = "***"

func mask(s string) string {
	if s == "" {
		return ""
	}
	return masked
}

// Redacted returns a copy safe to print: every secret replaced by "***"
// (empty secrets stay empty, so "was it set?" remains visible).
func (r *Resolved) Redacted() Resolved {
	c := *r
	c.AuthOptions.Password = mask(c.AuthOptions.Password)
	c.AuthOptions.Passcode = mask(c.AuthOptions.Passcode)
	c.AuthOptions.ApplicationCredentialSecret = mask(c.AuthOptions.ApplicationCredentialSecret)
	c.AuthOptions.TokenID = mask(c.AuthOptions.TokenID)
	return c
}

// String describes the configuration without secrets.
func (r Resolved) String() string {
	if r.NoAuth != nil {
		return fmt.Sprintf("noauth cinder %s project %s (%s)", r.NoAuth.Endpoint, r.NoAuth.ProjectID, r.Source)
	}
	ao := r.AuthOptions
	who := firstNonEmpty(ao.Username, ao.UserID)
	method := "password"
	switch {
	case ao.ApplicationCredentialID != "" || ao.ApplicationCredentialName != "":
		method = "application credential " + firstNonEmpty(ao.ApplicationCredentialID, ao.ApplicationCredentialName)
	case ao.TokenID != "":
		method = "token"
	}
	project := firstNonEmpty(ao.TenantID, ao.TenantName)
	s := fmt.Sprintf("keystone %s user %q (%s) project %q", ao.IdentityEndpoint, who, method, project)
	if r.EndpointOpts.Region != "" {
		s += " region " + r.EndpointOpts.Region
	}
	return s + " (" + r.Source.String() + ")"
}

// Format makes every fmt verb (%v, %+v, %#v, %s, %q) print String, so a
// stray Printf of the config cannot leak a secret.
func (r Resolved) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		fmt.Fprintf(f, "%q", r.String())
		return
	}
	_, _ = f.Write([]byte(r.String()))
}

// LogValue implements slog.LogValuer: structured, secrets masked.
func (r Resolved) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("source", r.Source.String())}
	if r.Source.Cloud != "" {
		attrs = append(attrs, slog.String("cloud", r.Source.Cloud))
	}
	if r.NoAuth != nil {
		attrs = append(attrs, slog.String("auth_type", "noauth"),
			slog.String("endpoint", r.NoAuth.Endpoint), slog.String("project_id", r.NoAuth.ProjectID))
		return slog.GroupValue(attrs...)
	}
	ao := r.Redacted().AuthOptions
	attrs = append(attrs,
		slog.String("auth_url", ao.IdentityEndpoint),
		slog.String("username", ao.Username),
		slog.String("user_id", ao.UserID),
		slog.String("user_domain", firstNonEmpty(ao.DomainName, ao.DomainID)),
		slog.String("project_id", ao.TenantID),
		slog.String("project_name", ao.TenantName),
		slog.String("password", ao.Password),
		slog.String("application_credential_id", ao.ApplicationCredentialID),
		slog.String("application_credential_secret", ao.ApplicationCredentialSecret),
		slog.String("token", ao.TokenID),
		slog.String("region", r.EndpointOpts.Region),
		slog.String("interface", string(r.EndpointOpts.Availability)),
	)
	return slog.GroupValue(attrs...)
}

// MarshalJSON encodes the masked configuration.
func (r Resolved) MarshalJSON() ([]byte, error) {
	return json.Marshal(r.String())
}
