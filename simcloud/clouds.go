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
)

type cloudsFile struct {
	Clouds map[string]cloudEntry `yaml:"clouds"`
}

type cloudEntry struct {
	Auth               cloudAuth `yaml:"auth"`
	AuthType           string    `yaml:"auth_type"`
	RegionName         string    `yaml:"region_name"`
	Interface          string    `yaml:"interface"`
	IdentityAPIVersion int       `yaml:"identity_api_version"`
}

type cloudAuth struct {
	AuthURL           string `yaml:"auth_url"`
	Username          string `yaml:"username"`
	Password          string `yaml:"password"`
	UserDomainName    string `yaml:"user_domain_name"`
	ProjectName       string `yaml:"project_name"`
	ProjectID         string `yaml:"project_id"`
	ProjectDomainName string `yaml:"project_domain_name"`
}

func entry(c Credentials) cloudEntry {
	return cloudEntry{AuthType: "password", RegionName: c.Region, Interface: "public", IdentityAPIVersion: 3,
		Auth: cloudAuth{AuthURL: c.AuthURL, Username: c.Username, Password: c.Password,
			UserDomainName: c.UserDomainName, ProjectName: c.ProjectName, ProjectID: c.ProjectID,
			ProjectDomainName: c.ProjectDomainName}}
}

// WriteCloudsYAML writes a clouds.yaml (mode 0600, it holds passwords)
// with clouds "sim" (member) and "sim-admin" (admin), both project-scoped
// password auth against this simulator's Keystone.
func (s *Sim) WriteCloudsYAML(path string) error {
	b, err := yaml.Marshal(cloudsFile{Clouds: map[string]cloudEntry{
		CloudMember: entry(s.member),
		CloudAdmin:  entry(s.admin),
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
