package simcloud

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The HTTP edge: routing, authentication, microversions, fault hooks and
// error bodies. Handlers decode, call the model, and encode.

type service int

const (
	svcKeystone service = iota
	svcCinder
	svcNova
	svcMetadata
)

// Microversion ranges, as Cinder 21 and Nova 26 (Zed) advertise them.
var (
	cinderMin = apiVersion{3, 0}
	cinderMax = apiVersion{3, 70}
	novaMin   = apiVersion{2, 1}
	novaMax   = apiVersion{2, 93}
)

type apiVersion struct{ major, minor int }

func (v apiVersion) String() string { return fmt.Sprintf("%d.%d", v.major, v.minor) }

func (v apiVersion) atLeast(major, minor int) bool {
	return v.major > major || (v.major == major && v.minor >= minor)
}

func (v apiVersion) less(o apiVersion) bool { return !v.atLeast(o.major, o.minor) }

// request is one API call after authentication and version negotiation.
type request struct {
	w      http.ResponseWriter
	r      *http.Request
	svc    service
	rid    string
	tok    token
	caller caller
	ver    apiVersion
	// root is the service's path prefix ("/volume", "/noauth/volume",
	// "/compute"), for the links a response carries.
	root string
	// noauth: Cinder's NoAuthMiddleware instead of keystonemiddleware.
	noauth bool
}

// handler answers a request: status and body (nil for none), or an error
// (an *apiError becomes the service's error body, anything else a 500).
type handler func(q *request) (int, any, error)

func (s *Sim) routes() http.Handler {
	mux := http.NewServeMux()

	// Keystone.
	mux.HandleFunc("GET /identity/{$}", s.keystoneVersions)
	mux.HandleFunc("GET /identity/v3", s.keystoneVersion)
	mux.HandleFunc("GET /identity/v3/{$}", s.keystoneVersion)
	mux.HandleFunc("POST /identity/v3/auth/tokens", s.keystoneIssue)
	mux.HandleFunc("GET /identity/v3/auth/tokens", s.keystoneValidate)
	mux.HandleFunc("/identity/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, svcKeystone, s.reqIDs.requestID(), http.StatusNotFound, "The resource could not be found.")
	})

	// Cinder, twice over one model: behind Keystone at /volume, and as a
	// standalone Cinder with auth_strategy=noauth at /noauth/volume.
	for _, root := range []string{volumeRoot, noAuthVolumeRoot} {
		noauth := root == noAuthVolumeRoot
		mux.HandleFunc("GET "+root+"/{$}", s.cinderVersions)
		mux.HandleFunc("GET "+root+"/v3/{$}", s.cinderVersions)
		c := func(pattern string, op Op, h handler) {
			mux.Handle(pattern, s.apiAt(svcCinder, root, noauth, op, h))
		}
		p := root + "/v3/{project}"
		c("POST "+p+"/volumes", OpVolumeCreate, s.volumeCreate)
		c("GET "+p+"/volumes", OpVolumeList, s.volumeList(false))
		c("GET "+p+"/volumes/detail", OpVolumeList, s.volumeList(true))
		c("GET "+p+"/volumes/{id}", OpVolumeGet, s.volumeGet)
		c("PUT "+p+"/volumes/{id}", OpVolumeUpdate, s.volumeUpdate)
		c("DELETE "+p+"/volumes/{id}", OpVolumeDelete, s.volumeDelete)
		c("GET "+p+"/volumes/{id}/metadata", OpVolumeMetadata, s.metadataGet)
		c("POST "+p+"/volumes/{id}/metadata", OpVolumeMetadata, s.metadataSet(false))
		c("PUT "+p+"/volumes/{id}/metadata", OpVolumeMetadata, s.metadataSet(true))
		c("GET "+p+"/volumes/{id}/metadata/{key}", OpVolumeMetadata, s.metadataKeyGet)
		c("PUT "+p+"/volumes/{id}/metadata/{key}", OpVolumeMetadata, s.metadataKeyPut)
		c("DELETE "+p+"/volumes/{id}/metadata/{key}", OpVolumeMetadata, s.metadataKeyDelete)
		c("POST "+p+"/volumes/{id}/action", OpVolumeAction, s.volumeAction)
		c("POST "+p+"/attachments", OpAttachmentCreate, s.attachmentCreate)
		c("GET "+p+"/attachments", OpAttachmentList, s.attachmentList(false))
		c("GET "+p+"/attachments/detail", OpAttachmentList, s.attachmentList(true))
		c("GET "+p+"/attachments/{id}", OpAttachmentGet, s.attachmentGet)
		c("PUT "+p+"/attachments/{id}", OpAttachmentUpdate, s.attachmentUpdate)
		c("DELETE "+p+"/attachments/{id}", OpAttachmentDelete, s.attachmentDelete)
		c("POST "+p+"/attachments/{id}/action", OpAttachmentComplete, s.attachmentAction)
		c("POST "+p+"/snapshots", OpSnapshotCreate, s.snapshotCreate)
		c("GET "+p+"/snapshots", OpSnapshotList, s.snapshotList)
		c("GET "+p+"/snapshots/detail", OpSnapshotList, s.snapshotList)
		c("GET "+p+"/snapshots/{id}", OpSnapshotGet, s.snapshotGet)
		c("DELETE "+p+"/snapshots/{id}", OpSnapshotDelete, s.snapshotDelete)
		c(root+"/", "", func(q *request) (int, any, error) {
			return 0, nil, notFound("The resource could not be found.")
		})
	}

	// Nova.
	mux.HandleFunc("GET /compute/{$}", s.novaVersions)
	mux.HandleFunc("GET /compute/v2.1/{$}", s.novaVersion)
	mux.HandleFunc("GET /compute/v2.1", s.novaVersion)
	n := func(pattern string, op Op, h handler) { mux.Handle(pattern, s.api(svcNova, op, h)) }
	const np = "/compute/v2.1"
	n("GET "+np+"/servers", OpServerList, s.serverList(false))
	n("GET "+np+"/servers/detail", OpServerList, s.serverList(true))
	n("GET "+np+"/servers/{id}", OpServerGet, s.serverGet)
	n("GET "+np+"/servers/{id}/os-volume_attachments", OpNovaAttachmentList, s.novaAttachmentList)
	n("POST "+np+"/servers/{id}/os-volume_attachments", OpNovaAttach, s.novaAttach)
	n("GET "+np+"/servers/{id}/os-volume_attachments/{volume}", OpNovaAttachmentGet, s.novaAttachmentGet)
	n("DELETE "+np+"/servers/{id}/os-volume_attachments/{volume}", OpNovaDetach, s.novaDetach)
	mux.Handle("/compute/", s.api(svcNova, "", func(q *request) (int, any, error) {
		return 0, nil, notFound("The resource could not be found.")
	}))

	// Metadata service, one per instance.
	mux.HandleFunc("GET /metadata/{instance}/openstack/latest/meta_data.json", s.metaData)
	mux.HandleFunc("GET /metadata/{instance}/openstack/{$}", s.metaVersions)
	mux.HandleFunc("GET /metadata/{instance}/openstack", s.metaVersions)

	// Simulator controls.
	s.adminRoutes(mux)
	return mux
}

// Path prefixes of the two Cinder deployments.
const (
	volumeRoot       = "/volume"
	noAuthVolumeRoot = "/noauth/volume"
)

// api wraps a Nova handler: see apiAt.
func (s *Sim) api(svc service, op Op, h handler) http.Handler {
	return s.apiAt(svc, "/compute", false, op, h)
}

// apiAt wraps a Cinder or Nova handler served under root: request id,
// authentication (keystonemiddleware's token validation, or Cinder's
// NoAuthMiddleware when noauth), project check, microversion negotiation,
// faults, then the handler.
func (s *Sim) apiAt(svc service, root string, noauth bool, op Op, h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.clock.Now()
		q := &request{w: w, r: r, svc: svc, rid: s.reqIDs.requestID(), root: root, noauth: noauth}
		status := s.serveAPI(q, op, h)
		s.log.Debug("simcloud: request", "method", r.Method, "path", r.URL.Path, "status", status,
			"request_id", q.rid, "took", s.clock.Now().Sub(start))
	})
}

func (s *Sim) serveAPI(q *request, op Op, h handler) int {
	w, r := q.w, q.r
	w.Header().Set("X-Openstack-Request-Id", q.rid)
	if q.svc == svcNova {
		w.Header().Set("X-Compute-Request-Id", q.rid)
	}
	if q.noauth {
		c, status, ok := s.noAuth(q)
		if !ok {
			return status
		}
		q.caller = c
	} else {
		tok, c, ok := s.model.validate(s.clock.Now(), r.Header.Get("X-Auth-Token"))
		if !ok {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf("Keystone uri=%q", s.base+"/identity"))
			return s.writeJSON(w, http.StatusUnauthorized, map[string]any{"error": map[string]any{
				"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}})
		}
		q.tok, q.caller = tok, c
	}
	c := q.caller
	if q.svc == svcCinder {
		if p := r.PathValue("project"); p != "" && p != c.ProjectID {
			return s.writeError(w, q.svc, q.rid, http.StatusBadRequest, "Malformed request url")
		}
	}
	if status, ok := s.negotiate(q); !ok {
		return status
	}
	if op != "" {
		v := s.faults.decide(op)
		if err := sleep(r.Context(), s.clock, v.latency); err != nil {
			return 0
		}
		if v.hang {
			<-r.Context().Done()
			return 0
		}
		if v.status != 0 {
			return s.writeError(w, q.svc, q.rid, v.status, faultMessage(v.status))
		}
	}
	status, body, err := h(q)
	if err != nil {
		var ae *apiError
		var inj *injected
		if errors.As(err, &inj) {
			return s.writeError(w, q.svc, q.rid, inj.status, faultMessage(inj.status))
		}
		if errors.As(err, &ae) {
			return s.writeError(w, q.svc, q.rid, kindStatus(ae.kind), ae.msg)
		}
		s.log.Error("simcloud: handler", "path", r.URL.Path, "err", err)
		return s.writeError(w, q.svc, q.rid, http.StatusInternalServerError, faultMessage(500))
	}
	if body == nil {
		w.WriteHeader(status)
		return status
	}
	return s.writeJSON(w, status, body)
}

// noAuth is Cinder's NoAuthMiddleware (cinder/api/middleware/auth.py, used
// with auth_strategy=noauth). Without an X-Auth-Token header it does not
// reach the API at all: it answers 204 with a token "<user>:<project>"
// (X-Auth-User and X-Auth-Project-Id, default "admin") and
// X-Server-Management-Url, the request URL joined with the project. With
// one, the token "<user>:<project>" (a bare "<user>" is also the project)
// is believed without a check and the request context is an admin one:
// is_admin=True, which Cinder's admin_api policy accepts, and which lets
// the caller see and act on every project's volumes.
func (s *Sim) noAuth(q *request) (caller, int, bool) {
	w, r := q.w, q.r
	vals, present := r.Header[http.CanonicalHeaderKey("X-Auth-Token")]
	if !present {
		user, project := r.Header.Get("X-Auth-User"), r.Header.Get("X-Auth-Project-Id")
		if user == "" {
			user = "admin"
		}
		if project == "" {
			project = "admin"
		}
		u := s.base + r.URL.RequestURI()
		if !strings.HasSuffix(u, "/") {
			u += "/"
		}
		w.Header().Set("X-Auth-Token", user+":"+project)
		w.Header().Set("X-Server-Management-Url", u+project)
		w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
		w.WriteHeader(http.StatusNoContent)
		return caller{}, http.StatusNoContent, false
	}
	tok := ""
	if len(vals) > 0 {
		tok = vals[0]
	}
	user, project, _ := strings.Cut(tok, ":")
	if project == "" {
		project = user
	}
	return caller{UserID: user, ProjectID: project, Admin: true}, 0, true
}

func faultMessage(status int) string {
	switch status {
	case http.StatusServiceUnavailable:
		return "The service is unavailable at this time."
	case http.StatusGatewayTimeout:
		return "The server did not respond in time."
	default:
		return "The server has either erred or is incapable of performing the requested operation."
	}
}

func kindStatus(k errKind) int {
	switch k {
	case errNotFound:
		return http.StatusNotFound
	case errConflict:
		return http.StatusConflict
	case errForbidden:
		return http.StatusForbidden
	default:
		return http.StatusBadRequest
	}
}

var versionRE = regexp.MustCompile(`^([1-9]\d*)\.([1-9]\d*|0)$`)

// negotiate reads the microversion header, answers 400/406 like the real
// services, and sets the response's version headers.
func (s *Sim) negotiate(q *request) (int, bool) {
	var svcName, legacy string
	min, max := cinderMin, cinderMax
	switch q.svc {
	case svcCinder:
		svcName, legacy = "volume", "X-Openstack-Volume-Api-Version"
	case svcNova:
		svcName, legacy = "compute", "X-Openstack-Nova-Api-Version"
		min, max = novaMin, novaMax
	default:
		return 0, true
	}
	raw := ""
	for _, h := range q.r.Header.Values("Openstack-Api-Version") {
		for _, part := range strings.Split(h, ",") {
			f := strings.Fields(part)
			if len(f) == 2 && strings.EqualFold(f[0], svcName) {
				raw = f[1]
			}
		}
	}
	if raw == "" {
		raw = strings.TrimSpace(q.r.Header.Get(legacy))
	}
	w := q.w
	w.Header().Set("Vary", "OpenStack-API-Version")
	if q.svc == svcNova {
		w.Header().Set("Vary", "OpenStack-API-Version, X-OpenStack-Nova-API-Version")
	}
	v := min
	switch {
	case raw == "":
	case strings.EqualFold(raw, "latest"):
		v = max
	default:
		m := versionRE.FindStringSubmatch(raw)
		if m == nil {
			setVersionHeaders(w, q.svc, svcName, min.String())
			return s.writeError(w, q.svc, q.rid, http.StatusBadRequest, fmt.Sprintf(
				"API Version String %s is of invalid format. Must be of format MajorNum.MinorNum.", raw)), false
		}
		maj, _ := strconv.Atoi(m[1])
		minr, _ := strconv.Atoi(m[2])
		v = apiVersion{maj, minr}
		if v.less(min) || max.less(v) {
			setVersionHeaders(w, q.svc, svcName, raw)
			return s.writeErrorKey(w, q.svc, q.rid, http.StatusNotAcceptable, "computeFault", fmt.Sprintf(
				"Version %s is not supported by the API. Minimum is %s and maximum is %s.", raw, min, max)), false
		}
	}
	q.ver = v
	setVersionHeaders(w, q.svc, svcName, v.String())
	return 0, true
}

func setVersionHeaders(w http.ResponseWriter, svc service, name, v string) {
	w.Header().Set("Openstack-Api-Version", name+" "+v)
	if svc == svcNova {
		w.Header().Set("X-Openstack-Nova-Api-Version", v)
	}
}

// errorKey is the body key OpenStack's fault wrappers use per status.
func errorKey(status int) string {
	switch status {
	case 400:
		return "badRequest"
	case 401:
		return "unauthorized"
	case 403:
		return "forbidden"
	case 404:
		return "itemNotFound"
	case 405:
		return "badMethod"
	case 409:
		return "conflictingRequest"
	case 413, 429:
		return "overLimit"
	case 415:
		return "badMediaType"
	case 501:
		return "notImplemented"
	case 503:
		return "serviceUnavailable"
	default:
		return "computeFault"
	}
}

func (s *Sim) writeError(w http.ResponseWriter, svc service, rid string, status int, msg string) int {
	return s.writeErrorKey(w, svc, rid, status, errorKey(status), msg)
}

func (s *Sim) writeErrorKey(w http.ResponseWriter, svc service, rid string, status int, key, msg string) int {
	if w.Header().Get("X-Openstack-Request-Id") == "" {
		w.Header().Set("X-Openstack-Request-Id", rid)
	}
	if svc == svcKeystone {
		return s.writeJSON(w, status, map[string]any{"error": map[string]any{
			"code": status, "title": http.StatusText(status), "message": msg}})
	}
	return s.writeJSON(w, status, map[string]any{key: map[string]any{"code": status, "message": msg}})
}

func (s *Sim) writeJSON(w http.ResponseWriter, status int, body any) int {
	b, err := json.Marshal(body)
	if err != nil {
		s.log.Error("simcloud: encode", "err", err)
		status, b = http.StatusInternalServerError, []byte(`{"computeFault":{"code":500,"message":"encoding failed"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
	return status
}

// decodeBody reads a JSON object body; malformed input is the services'
// "Malformed request body".
func decodeBody(r *http.Request) (map[string]json.RawMessage, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return nil, badRequest("Malformed request body")
	}
	var m map[string]json.RawMessage
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(&m); err != nil || m == nil {
		return nil, badRequest("Malformed request body")
	}
	return m, nil
}

// object decodes body[key] as a JSON object of raw values.
func object(body map[string]json.RawMessage, key string) (map[string]json.RawMessage, error) {
	raw, ok := body[key]
	if !ok {
		return nil, badRequest("Missing required element '%s' in request body.", key)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, badRequest("Invalid input for field/attribute %s. Value: %s. %s is not of type 'object'", key, raw, raw)
	}
	return m, nil
}

// optString decodes an optional string (null allowed) field.
func optString(m map[string]json.RawMessage, key string, maxLen int) (*string, error) {
	raw, ok := m[key]
	if !ok || string(raw) == "null" {
		return nil, nil
	}
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, badRequest("Invalid input for field/attribute %s. Value: %s. %s is not of type 'string', 'null'", key, raw, raw)
	}
	if maxLen > 0 && len(v) > maxLen {
		return nil, badRequest("Invalid input for field/attribute %s. Value: %s. '%s' is too long", key, v, v)
	}
	return &v, nil
}

func stringMap(m map[string]json.RawMessage, key string) (map[string]string, error) {
	raw, ok := m[key]
	if !ok || string(raw) == "null" {
		return nil, nil
	}
	var out map[string]string
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, badRequest("Invalid input for field/attribute %s. Value: %s. %s is not of type 'object'", key, raw, raw)
	}
	for k, v := range out {
		if k == "" || len(k) > 255 {
			return nil, badRequest("Invalid input for field/attribute %s. Value: %s. Metadata property key must be 1-255 characters", key, raw)
		}
		if len(v) > 255 {
			return nil, badRequest("Invalid input for field/attribute %s. Value: %s. Metadata property value must be at most 255 characters", key, raw)
		}
	}
	return out, nil
}

// pageParams reads marker and limit as Cinder and Nova do (max 1000).
func pageParams(v url.Values) (marker string, limit int, err error) {
	limit = 1000
	if l := v.Get("limit"); l != "" {
		n, perr := strconv.Atoi(l)
		if perr != nil {
			return "", 0, badRequest("Invalid input received: limit param must be an integer")
		}
		if n < 0 {
			return "", 0, badRequest("Invalid input received: limit param must be positive")
		}
		limit = min(n, 1000)
	}
	return v.Get("marker"), limit, nil
}

// paginate returns the page after marker and whether a next link is due
// (Cinder and Nova link whenever a page is full). It also reports which
// page number this is (1 = no marker), for FailPage.
func paginate[T any](items []T, id func(T) string, marker string, limit int) (page []T, next bool, pageNo int, err error) {
	start := 0
	pageNo = 1
	if marker != "" {
		found := -1
		for i, it := range items {
			if id(it) == marker {
				found = i
				break
			}
		}
		if found < 0 {
			return nil, false, 0, notFound("Marker %s could not be found.", marker)
		}
		start = found + 1
		if limit > 0 {
			pageNo = start/limit + 1
		}
	}
	end := min(start+limit, len(items))
	page = items[start:end]
	return page, limit > 0 && len(page) == limit, pageNo, nil
}

// nextLink builds the next-page link from the request, keeping its query.
func (s *Sim) nextLink(r *http.Request, marker string, limit int) string {
	v := r.URL.Query()
	v.Set("marker", marker)
	v.Set("limit", strconv.Itoa(limit))
	return s.base + r.URL.Path + "?" + v.Encode()
}

// Timestamp formats.
func cinderTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000") }

func cinderTimePtr(t *time.Time) any {
	if t == nil {
		return nil
	}
	return cinderTime(*t)
}

func novaTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }
