package openstack

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/gophercloud/gophercloud/v2"

	"github.com/cinderwarden/cinderwarden/internal/cloudconfig"
)

// novaUsingAttachment409 is Cinder's answer for the bug 2004555 guard
// (cinder.exception.ConflictNovaUsingAttachment, rendered by Cinder's fault
// wrapper as conflictingRequest). It is not in the captured fixtures; the
// message is Cinder's format string with an instance id.
const novaUsingAttachment409 = `{"conflictingRequest": {"code": 409, "message": "Detach volume from instance ` +
	serverID + ` using the Compute API"}}`

func TestErrorMapping(t *testing.T) {
	tests := []struct {
		name      string
		pattern   string
		fixture   string // captured response, or
		status    int    // a hand-written one
		body      string
		call      func(context.Context, *Client) error
		is        error
		code      int
		wantInErr []string
	}{
		{name: "404 volume", pattern: "GET " + cinderBase + "/volumes/{id}", fixture: "error_not_found",
			call: func(ctx context.Context, c *Client) error {
				_, err := c.GetVolume(ctx, "00000000-0000-0000-0000-000000000000")
				return err
			},
			is: ErrNotFound, code: 404,
			wantInErr: []string{"volume 00000000-0000-0000-0000-000000000000: get: volume volume_get: 404 itemNotFound: Volume 00000000-0000-0000-0000-000000000000 could not be found. [req-17349fd3-c379-4346-940f-89e43c005e57]"}},
		{name: "403 force-detach as member", pattern: "POST " + cinderBase + "/volumes/{id}/action", fixture: "error_member_force_detach",
			call: func(ctx context.Context, c *Client) error { return c.ForceDetach(ctx, volID, attID) },
			is:   ErrForbidden, code: 403,
			wantInErr: []string{"volume " + volID + ": force-detach attachment \"" + attID + "\": volume volume_force_detach: 403 forbidden: " +
				"Policy doesn't allow volume_extension:volume_admin_actions:force_detach to be performed."}},
		{name: "403 reset-status as member", pattern: "POST " + cinderBase + "/volumes/{id}/action", fixture: "error_member_reset_status",
			call: func(ctx context.Context, c *Client) error {
				return c.ResetStatus(ctx, volID, ResetStatusOpts{Status: "available"})
			},
			is: ErrForbidden, code: 403, wantInErr: []string{"volume_admin_actions:reset_status"}},
		{name: "400 delete in-use", pattern: "DELETE " + cinderBase + "/volumes/{id}", fixture: "error_delete_in_use",
			call: func(ctx context.Context, c *Client) error { return c.DeleteVolume(ctx, volID) },
			is:   ErrBadRequest, code: 400, wantInErr: []string{"volume " + volID + ": delete: ", "400 badRequest: Invalid volume: Volume status must be available"}},
		{name: "400 bad size", pattern: "POST " + cinderBase + "/volumes", fixture: "error_bad_size",
			call: func(ctx context.Context, c *Client) error {
				_, err := c.CreateVolume(ctx, CreateVolumeOpts{Name: "x", SizeGiB: 0})
				return err
			},
			is: ErrBadRequest, code: 400, wantInErr: []string{`volume "x": create (0 GiB): `, "0 is less than the minimum of 1"}},
		{name: "406 microversion", pattern: "GET " + cinderBase + "/volumes/detail", fixture: "error_microversion_too_high",
			call: func(ctx context.Context, c *Client) error {
				_, err := c.ListVolumes(ctx, VolumeFilter{})
				return err
			},
			is: ErrMicroversion, code: 406, wantInErr: []string{"list volumes: page 1: ", "Version 3.999 is not supported by the API"}},
		{name: "409 attachment delete while Nova uses it", pattern: "DELETE " + cinderBase + "/attachments/{id}",
			status: 409, body: novaUsingAttachment409,
			call: func(ctx context.Context, c *Client) error { return c.DeleteAttachment(ctx, attID) },
			is:   ErrConflict, code: 409,
			wantInErr: []string{"attachment " + attID + ": delete: volume attachment_delete: 409 conflictingRequest: Detach volume from instance " + serverID + " using the Compute API"}},
		{name: "409 admin force-detach while Nova uses it", pattern: "POST " + cinderBase + "/volumes/{id}/action",
			status: 409, body: novaUsingAttachment409,
			call: func(ctx context.Context, c *Client) error { return c.ForceDetach(ctx, volID, attID) },
			is:   ErrConflict, code: 409, wantInErr: []string{"using the Compute API"}},
		{name: "404 Nova has no mapping", pattern: "DELETE " + novaBase + "/servers/{id}/os-volume_attachments/{vol}",
			status: 404, body: `{"itemNotFound": {"code": 404, "message": "volume_id not found: ` + volID + `"}}`,
			call: func(ctx context.Context, c *Client) error { return c.DetachVolume(ctx, serverID, volID) },
			is:   ErrNotFound, code: 404,
			wantInErr: []string{"volume " + volID + ": detach from instance " + serverID + ": compute volume_detach: 404 itemNotFound"}},
		// Nova relays Cinder's InvalidVolume from the reserve as a 400 with
		// the same message; the captured Cinder body stands in for it.
		{name: "400 second attachment not multiattach", pattern: "POST " + novaBase + "/servers/{id}/os-volume_attachments",
			fixture: "error_second_attachment_not_multiattach",
			call: func(ctx context.Context, c *Client) error {
				_, err := c.AttachVolume(ctx, serverID, volID)
				return err
			},
			is: ErrBadRequest, code: 400, wantInErr: []string{"volume " + volID + ": attach to instance " + serverID + ": compute volume_attach: 400"}},
		{name: "500 without a body", pattern: "GET " + cinderBase + "/attachments/{id}", status: 500, body: "oops",
			call: func(ctx context.Context, c *Client) error {
				_, err := c.GetAttachment(ctx, attID)
				return err
			},
			is: ErrServer, code: 500, wantInErr: []string{"attachment " + attID + ": get: volume attachment_get: 500"}},
	}
	all := []error{ErrNotFound, ErrConflict, ErrForbidden, ErrUnauthorized, ErrBadRequest, ErrMicroversion, ErrServer}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := newFakeCloud(t)
			if tt.fixture != "" {
				fc.serve(tt.pattern, tt.fixture)
			} else {
				fc.handle(tt.pattern, func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(tt.status)
					w.Write([]byte(tt.body))
				})
			}
			err := tt.call(ctxT(t), fc.client())
			if err == nil {
				t.Fatal("no error")
			}
			for _, s := range all {
				if got := errors.Is(err, s); got != (s == tt.is) {
					t.Errorf("errors.Is(err, %v) = %v", s, got)
				}
			}
			if !gophercloud.ResponseCodeIs(err, tt.code) {
				t.Errorf("gophercloud.ResponseCodeIs(err, %d) = false", tt.code)
			}
			var ae *APIError
			if !errors.As(err, &ae) || ae.StatusCode != tt.code {
				t.Errorf("errors.As APIError: %+v", ae)
			}
			for _, s := range tt.wantInErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error\n %s\nlacks\n %s", err, s)
				}
			}
			if strings.Contains(err.Error(), "token-") || strings.Contains(err.Error(), "pw-for-tests") {
				t.Errorf("error leaks a credential: %s", err)
			}
		})
	}
}

func TestNoComputeErrors(t *testing.T) {
	fc := newFakeCloud(t)
	fc.serve("GET "+cinderBase+"/volumes/{id}", "volume_show_available")
	cfg := fc.keystoneConfig()
	cfg.AuthOptions = gophercloud.AuthOptions{}
	cfg.NoAuth = &cloudconfig.NoAuth{Endpoint: fc.srv.URL + "/cinder/v3", ProjectID: projectID}
	c, err := New(ctxT(t), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c.HasCompute() {
		t.Fatal("noauth client claims compute")
	}
	v, err := c.GetVolume(ctxT(t), volID)
	if err != nil || v.Status != "available" {
		t.Fatalf("GetVolume over noauth: %v %v", v, err)
	}
	if tok := fc.requests("/volumes/")[0].Header.Get("X-Auth-Token"); tok != "cinderwarden:"+projectID {
		t.Errorf("noauth token header %q", tok)
	}
	_, err = c.AttachVolume(ctxT(t), serverID, volID)
	if !errors.Is(err, ErrNoCompute) || !strings.Contains(err.Error(), "volume "+volID+": attach to instance "+serverID) {
		t.Errorf("AttachVolume without Nova: %v", err)
	}
	if _, err := c.ListServers(ctxT(t), ServerFilter{}); !errors.Is(err, ErrNoCompute) {
		t.Errorf("ListServers without Nova: %v", err)
	}
	if _, err := New(ctxT(t), cfg, Options{RequireCompute: true}); !errors.Is(err, ErrNoCompute) {
		t.Errorf("RequireCompute: %v", err)
	}
}

func TestReauthOnExpiredToken(t *testing.T) {
	fc := newFakeCloud(t)
	fc.serve("GET "+cinderBase+"/volumes/{id}", "volume_show_available")
	c := fc.client()
	fc.expireToken.Store("token-1")
	if _, err := c.GetVolume(ctxT(t), volID); err != nil {
		t.Fatalf("GetVolume after token expiry: %v", err)
	}
	if n := fc.tokens.Load(); n != 2 {
		t.Errorf("%d tokens issued, want 2 (login + re-auth)", n)
	}
	reqs := fc.requests("/volumes/" + volID)
	if len(reqs) != 2 || reqs[1].Header.Get("X-Auth-Token") != "token-2" {
		t.Errorf("retry did not use the new token: %d requests", len(reqs))
	}
	if n := c.Metrics().CallsFor("token_create"); n != 2 {
		t.Errorf("token_create counted %d, want 2", n)
	}
}

// TestConcurrentCallsAcrossReauth runs parallel requests while the token
// expires; under -race it checks the client, metrics and re-auth share
// state safely, and every call succeeds.
func TestConcurrentCallsAcrossReauth(t *testing.T) {
	fc := newFakeCloud(t)
	fc.serve("GET "+cinderBase+"/volumes/{id}", "volume_show_available")
	c := fc.client()
	fc.expireToken.Store("token-1")
	const n = 16
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := c.GetVolume(ctxT(t), volID)
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if got := c.Metrics().CallsFor("volume_get"); got < n {
		t.Errorf("volume_get counted %d, want >= %d", got, n)
	}
}

// TestClientLogsNoSecrets: New logs the configuration (masked) at debug.
func TestClientLogsNoSecrets(t *testing.T) {
	fc := newFakeCloud(t)
	var buf strings.Builder
	log := slog.New(slog.NewJSONHandler(&syncWriter{w: &buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := New(ctxT(t), fc.keystoneConfig(), Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if !c.HasCompute() {
		t.Error("compute missing from the catalog")
	}
	out := buf.String()
	if strings.Contains(out, "pw-for-tests") || strings.Contains(out, "token-1") {
		t.Fatalf("log leaks a secret: %s", out)
	}
	if !strings.Contains(out, `"password":"***"`) || !strings.Contains(out, "openstack client ready") {
		t.Errorf("log lacks the masked config line: %s", out)
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func TestLoginRefused(t *testing.T) {
	fc := newFakeCloud(t)
	fc.mux = http.NewServeMux() // a fresh mux: Keystone refuses every login
	fc.handle("POST /keystone/v3/auth/tokens", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": map[string]any{"code": 401,
			"message": "The request you have made requires authentication.", "title": "Unauthorized"}})
	})
	_, err := New(ctxT(t), fc.keystoneConfig(), Options{})
	if !errors.Is(err, ErrUnauthorized) || !gophercloud.ResponseCodeIs(err, 401) {
		t.Fatalf("err = %v, want ErrUnauthorized", err)
	}
	if !strings.Contains(err.Error(), `user "demo"`) || !strings.Contains(err.Error(), "identity token_create: 401 error: The request you have made requires authentication.") {
		t.Errorf("error lacks context: %v", err)
	}
	if strings.Contains(err.Error(), "pw-for-tests") {
		t.Errorf("error leaks the password: %v", err)
	}
}
