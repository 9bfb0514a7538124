package simcloud

import (
	"encoding/json"
	"net/http"
	"time"
)

// Keystone v3: version documents, password (and token) authentication with
// a project-scoped token and catalog, and token validation.

func keystoneTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000Z") }

func (s *Sim) keystoneVersionDoc() map[string]any {
	return map[string]any{
		"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
		"links":       []any{map[string]any{"rel": "self", "href": s.AuthURL() + "/"}},
		"media-types": []any{map[string]any{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}},
	}
}

func (s *Sim) keystoneVersions(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Openstack-Request-Id", s.reqIDs.requestID())
	s.writeJSON(w, http.StatusMultipleChoices, map[string]any{"versions": map[string]any{"values": []any{s.keystoneVersionDoc()}}})
}

func (s *Sim) keystoneVersion(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Openstack-Request-Id", s.reqIDs.requestID())
	s.writeJSON(w, http.StatusOK, map[string]any{"version": s.keystoneVersionDoc()})
}

type authRequest struct {
	Auth struct {
		Identity struct {
			Methods  []string `json:"methods"`
			Password *struct {
				User struct {
					ID       string `json:"id"`
					Name     string `json:"name"`
					Password string `json:"password"`
				} `json:"user"`
			} `json:"password"`
			Token *struct {
				ID string `json:"id"`
			} `json:"token"`
		} `json:"identity"`
		Scope json.RawMessage `json:"scope"`
	} `json:"auth"`
}

func (s *Sim) keystoneIssue(w http.ResponseWriter, r *http.Request) {
	rid := s.reqIDs.requestID()
	w.Header().Set("X-Openstack-Request-Id", rid)
	w.Header().Set("Vary", "X-Auth-Token")
	v := s.faults.decide(OpAuth)
	if err := sleep(r.Context(), s.clock, v.latency); err != nil {
		return
	}
	if v.hang {
		<-r.Context().Done()
		return
	}
	if v.status != 0 {
		s.writeError(w, svcKeystone, rid, v.status, faultMessage(v.status))
		return
	}
	var req authRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		s.writeError(w, svcKeystone, rid, http.StatusBadRequest, "Expecting to find auth in request body. The server could not comply with the request since it is either malformed or otherwise incorrect. The client is assumed to be in error.")
		return
	}
	id := req.Auth.Identity
	now := s.clock.Now()
	var tok token
	ok := false
	switch {
	case len(id.Methods) == 0:
		s.writeError(w, svcKeystone, rid, http.StatusBadRequest, "Invalid input for field 'identity/methods': [] is too short")
		return
	case id.Methods[0] == "password" && id.Password != nil:
		u := id.Password.User
		tok, ok = s.model.authenticate(now, u.ID, u.Name, u.Password, s.opts.TokenLifetime)
	case id.Methods[0] == "token" && id.Token != nil:
		tok, ok = s.model.reissue(now, id.Token.ID)
	default:
		s.writeError(w, svcKeystone, rid, http.StatusBadRequest, "Invalid input for field 'identity': the request is missing a supported authentication method.")
		return
	}
	if !ok {
		s.writeError(w, svcKeystone, rid, http.StatusUnauthorized, "The request you have made requires authentication.")
		return
	}
	if !s.scopeMatches(req.Auth.Scope, tok) {
		s.writeError(w, svcKeystone, rid, http.StatusUnauthorized, "The request you have made requires authentication.")
		return
	}
	w.Header().Set("X-Subject-Token", tok.ID)
	s.writeJSON(w, http.StatusCreated, s.tokenBody(tok))
}

// scopeMatches accepts no scope (the user's default project) or the user's
// project by id or name.
func (s *Sim) scopeMatches(raw json.RawMessage, tok token) bool {
	if len(raw) == 0 || string(raw) == "null" {
		return true
	}
	var sc struct {
		Project *struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"project"`
	}
	if err := json.Unmarshal(raw, &sc); err != nil || sc.Project == nil {
		return false
	}
	s.model.mu.Lock()
	defer s.model.mu.Unlock()
	p := s.model.projects[tok.ProjectID]
	return p != nil && (sc.Project.ID == p.ID || (sc.Project.ID == "" && sc.Project.Name == p.Name))
}

func (s *Sim) keystoneValidate(w http.ResponseWriter, r *http.Request) {
	rid := s.reqIDs.requestID()
	w.Header().Set("X-Openstack-Request-Id", rid)
	now := s.clock.Now()
	if _, _, ok := s.model.validate(now, r.Header.Get("X-Auth-Token")); !ok {
		s.writeError(w, svcKeystone, rid, http.StatusUnauthorized, "The request you have made requires authentication.")
		return
	}
	subject, _, ok := s.model.validate(now, r.Header.Get("X-Subject-Token"))
	if !ok {
		s.writeError(w, svcKeystone, rid, http.StatusNotFound, "Could not find token.")
		return
	}
	w.Header().Set("X-Subject-Token", subject.ID)
	s.writeJSON(w, http.StatusOK, s.tokenBody(subject))
}

func (s *Sim) tokenBody(t token) map[string]any {
	s.model.mu.Lock()
	u := s.model.users[t.UserID]
	p := s.model.projects[t.ProjectID]
	s.model.mu.Unlock()
	roles := []any{}
	for _, r := range t.Roles {
		roles = append(roles, map[string]any{"id": r.ID, "name": r.Name})
	}
	domain := map[string]any{"id": "default", "name": "Default"}
	return map[string]any{"token": map[string]any{
		"audit_ids":  []string{t.AuditID},
		"catalog":    s.catalog(p.ID),
		"expires_at": keystoneTime(t.ExpiresAt),
		"is_domain":  false,
		"issued_at":  keystoneTime(t.IssuedAt),
		"methods":    t.Methods,
		"project":    map[string]any{"domain": domain, "id": p.ID, "name": p.Name},
		"roles":      roles,
		"user": map[string]any{"domain": domain, "id": u.ID, "name": u.Name,
			"password_expires_at": nil},
	}}
}

// catalog lists identity, volumev3 (and block-storage) and compute, each
// with public, internal and admin endpoints in the region.
func (s *Sim) catalog(projectID string) []any {
	entry := func(typ, name, url string) map[string]any {
		var eps []any
		for _, iface := range []string{"public", "internal", "admin"} {
			eps = append(eps, map[string]any{"id": s.stableID(typ + iface), "interface": iface,
				"region": s.opts.Region, "region_id": s.opts.Region, "url": url})
		}
		return map[string]any{"endpoints": eps, "id": s.stableID(typ), "name": name, "type": typ}
	}
	return []any{
		entry("identity", "keystone", s.AuthURL()),
		entry("volumev3", "cinderv3", s.VolumeURL(projectID)),
		entry("block-storage", "cinder", s.VolumeURL(projectID)),
		entry("compute", "nova", s.ComputeURL()),
	}
}

// stableID derives a Keystone-looking id from a name, so catalog ids do
// not consume the seeded generator.
func (s *Sim) stableID(name string) string {
	var h uint64 = 14695981039346656037 ^ s.opts.Seed
	for i := 0; i < len(name); i++ {
		h ^= uint64(name[i])
		h *= 1099511628211
	}
	const hexd = "0123456789abcdef"
	out := make([]byte, 32)
	for i := range out {
		out[i] = hexd[h&15]
		h = h*6364136223846793005 + 1442695040888963407
		h ^= h >> 29
	}
	return string(out)
}
