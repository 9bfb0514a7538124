package simcloud

import (
	"fmt"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"
)

// Cloud names WriteCloudsYAML writes.
const (
	CloudMember = "sim"       // the member user, project "demo"
	CloudAdmin  = "sim-admin" // the admin user, project "admin"
	// CloudNoAuth is auth_type noauth: the standalone Cinder at
	// NoAuthVolumeEndpoint, in the member's project (an admin context
	// there, as in real noauth Cinder; no Keystone, no Nova).
	CloudNoAuth = "sim-noauth"
)

type cloudsFile struct {
	Clouds map[string]cloudEntry `yaml:"clouds"`
}

type cloudEntry struct {
	Auth               cloudAuth `yaml:"auth"`
	AuthType           string    `yaml:"auth_type"`
	RegionName         string    `yaml:"region_name,omitempty"`
	Interface          string    `yaml:"interface,omitempty"`
	IdentityAPIVersion int       `yaml:"identity_api_version,omitempty"`
}

type cloudAuth struct {
	AuthURL           string `yaml:"auth_url,omitempty"`
	Username          string `yaml:"username,omitempty"`
	Password          string `yaml:"password,omitempty"`
	UserDomainName    string `yaml:"user_domain_name,omitempty"`
	ProjectName       string `yaml:"project_name,omitempty"`
	ProjectID         string `yaml:"project_id,omitempty"`
	ProjectDomainName string `yaml:"project_domain_name,omitempty"`
	// Endpoint is the Cinder base (without project) of a noauth cloud.
	Endpoint string `yaml:"endpoint,omitempty"`
}

func entry(c Credentials) cloudEntry {
	return cloudEntry{AuthType: "password", RegionName: c.Region, Interface: "public", IdentityAPIVersion: 3,
		Auth: cloudAuth{AuthURL: c.AuthURL, Username: c.Username, Password: c.Password,
			UserDomainName: c.UserDomainName, ProjectName: c.ProjectName, ProjectID: c.ProjectID,
			ProjectDomainName: c.ProjectDomainName}}
}

// WriteCloudsYAML writes a clouds.yaml (mode 0600, it holds passwords)
// with clouds "sim" (member) and "sim-admin" (admin), both project-scoped
// password auth against this simulator's Keystone, and "sim-noauth":
// auth_type noauth with auth.endpoint NoAuthVolumeEndpoint() and
// auth.project_id the member's project, as internal/cloudconfig reads it.
func (s *Sim) WriteCloudsYAML(path string) error {
	b, err := yaml.Marshal(cloudsFile{Clouds: map[string]cloudEntry{
		CloudMember: entry(s.member),
		CloudAdmin:  entry(s.admin),
		CloudNoAuth: {AuthType: "noauth",
			Auth: cloudAuth{Endpoint: s.NoAuthVolumeEndpoint(), ProjectID: s.member.ProjectID}},
	}})
	if err != nil {
		return fmt.Errorf("simcloud: clouds.yaml: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("simcloud: clouds.yaml %s: %w", path, err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("simcloud: clouds.yaml %s: %w", path, err)
	}
	return nil
}
