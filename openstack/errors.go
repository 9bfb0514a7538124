package openstack

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/gophercloud/gophercloud/v2"

	"github.com/cinderwarden/cinderwarden/internal/cloudconfig"
)

// Sentinel errors. Every API error returned by this package is an *APIError
// that matches exactly one of these with errors.Is (by HTTP status), and
// still matches gophercloud.ResponseCodeIs. Never match on error text.
var (
	// ErrNotFound: 404. The volume, attachment, server or mapping does not
	// exist (for Nova's os-volume_attachments: Nova holds no mapping).
	ErrNotFound = errors.New("not found")
	// ErrConflict: 409. Includes Cinder's guard for bug 2004555
	// (ConflictNovaUsingAttachment, "Detach volume from instance ... using
	// the Compute API") on attachment delete / os-force_detach, and Nova's
	// "volume is in state attaching/detaching" conflicts.
	ErrConflict = errors.New("conflict")
	// ErrForbidden: 403. A policy refused the call, e.g. os-force_detach or
	// os-reset_status as a non-admin.
	ErrForbidden = errors.New("forbidden")
	// ErrUnauthorized: 401, or re-authentication failed.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrBadRequest: 400. Cinder uses it for state errors too: deleting an
	// in-use volume, reserving a volume that is in-use and not multiattach.
	ErrBadRequest = errors.New("bad request")
	// ErrMicroversion: 406, the server does not support the microversion we
	// asked for.
	ErrMicroversion = errors.New("microversion not supported")
	// ErrServer: any other status (5xx, unexpected 2xx/3xx/4xx).
	ErrServer = errors.New("unexpected response")
	// ErrNoCompute: the call needs Nova, and this client has none (noauth
	// Cinder, or no compute service in the catalog).
	ErrNoCompute = cloudconfig.ErrNoCompute
	// ErrTimeout: a Wait gave up because its context ended; the error also
	// wraps the context's error, and the last state seen is returned.
	ErrTimeout = errors.New("timed out waiting")
)

// APIError is a failed OpenStack API request. Its text carries the request,
// the status, the server's own fault message and request id; never a token
// or a request body.
type APIError struct {
	Service    string // "volume", "compute", "identity", "metadata"
	Request    string // metric name of the request, e.g. "volume_get"
	Method     string
	URL        string
	StatusCode int
	// Fault is the error key of the body ("itemNotFound", "conflictingRequest").
	Fault string
	// Message is the server's message, e.g. "Volume x could not be found.".
	Message   string
	RequestID string
	sentinel  error
	cause     error
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("%s %s: %d", e.Service, e.Request, e.StatusCode)
	if e.Fault != "" {
		s += " " + e.Fault
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.RequestID != "" {
		s += " [" + e.RequestID + "]"
	}
	return s
}

// Unwrap exposes the sentinel (errors.Is(err, ErrNotFound)) and gophercloud's
// own error (gophercloud.ResponseCodeIs).
func (e *APIError) Unwrap() []error { return []error{e.sentinel, e.cause} }

func sentinelFor(status int) error {
	switch status {
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusConflict:
		return ErrConflict
	case http.StatusForbidden:
		return ErrForbidden
	case http.StatusUnauthorized:
		return ErrUnauthorized
	case http.StatusBadRequest:
		return ErrBadRequest
	case http.StatusNotAcceptable:
		return ErrMicroversion
	}
	return ErrServer
}

// parseFault reads the OpenStack fault body shapes: Cinder/Nova
// {"itemNotFound": {"code": 404, "message": "..."}} and Keystone
// {"error": {"code": 401, "message": "...", "title": "..."}}.
func parseFault(body []byte) (fault, message string) {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil || len(m) != 1 {
		return "", ""
	}
	for k, v := range m {
		var f struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(v, &f) == nil {
			return k, f.Message
		}
	}
	return "", ""
}

// apiError converts a gophercloud error into an *APIError; other errors
// (network, context) are returned unchanged.
func apiError(service, request string, err error) error {
	if err == nil {
		return nil
	}
	var code gophercloud.ErrUnexpectedResponseCode
	var codePtr *gophercloud.ErrUnexpectedResponseCode
	var reauth gophercloud.ErrUnableToReauthenticate
	var reauthPtr *gophercloud.ErrUnableToReauthenticate
	switch {
	case errors.As(err, &code):
	case errors.As(err, &codePtr):
		code = *codePtr
	case errors.As(err, &reauth), errors.As(err, &reauthPtr):
		return &APIError{Service: service, Request: request, StatusCode: http.StatusUnauthorized,
			Message: "re-authentication failed", sentinel: ErrUnauthorized, cause: err}
	default:
		return err
	}
	fault, msg := parseFault(code.Body)
	e := &APIError{
		Service:    service,
		Request:    request,
		Method:     code.Method,
		URL:        code.URL,
		StatusCode: code.Actual,
		Fault:      fault,
		Message:    msg,
		sentinel:   sentinelFor(code.Actual),
		cause:      err,
	}
	if code.ResponseHeader != nil {
		e.RequestID = code.ResponseHeader.Get("X-Openstack-Request-Id")
		if e.RequestID == "" {
			e.RequestID = code.ResponseHeader.Get("X-Compute-Request-Id")
		}
	}
	return e
}

// Transient reports whether err is worth another try of the same read: a
// 5xx or unexpected status (ErrServer), or no HTTP answer at all (a dropped
// connection, a request timeout). A 4xx is an answer and is not transient.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return errors.Is(err, ErrServer) || ae.StatusCode >= 500
	}
	return true
}
