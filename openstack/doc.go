// Package openstack holds all cloud access: Cinder volumes and attachments,
// Nova servers and volume attachments, and the instance metadata service,
// built on gophercloud v2 and instrumented in one place.
//
// # Building a client
//
//	cfg, err := cloudconfig.Resolve(cloudconfig.Options{Cloud: flagCloud})
//	c, err := openstack.New(ctx, cfg, openstack.Options{Registerer: reg, Logger: log})
//
// New authenticates against Keystone (the token is renewed on a 401:
// AllowReauth) or, for auth_type noauth, talks to a standalone Cinder. Nova
// is optional: without it (noauth, or no compute service in the catalog)
// the Nova methods fail with ErrNoCompute, unless Options.RequireCompute
// makes New fail instead. A Client is safe for concurrent use.
//
// # Microversions
//
// Every request carries an explicit microversion: Cinder 3.44
// (DefaultVolumeMicroversion: the attachments API with os-complete) and
// Nova 2.89 (DefaultComputeMicroversion: attachment_id and bdm_uuid in
// os-volume_attachments, which tie Nova's mapping to Cinder's attachment).
//
// # Errors
//
// API failures are *APIError values naming the service, the request, the
// status and the server's own message and request id. They match one
// sentinel by status — ErrNotFound (404), ErrConflict (409, including
// Cinder's "Detach volume from instance X using the Compute API" guard),
// ErrForbidden (403), ErrUnauthorized (401), ErrBadRequest (400),
// ErrMicroversion (406), ErrServer (anything else) — and still satisfy
// gophercloud.ResponseCodeIs. Methods wrap them with operator context:
// "volume <id>: attach to instance <id>: compute volume_attach: 400 ...".
// No error carries a token, password or request body.
//
// # Listings
//
// ListVolumes, ListAttachments and ListServers follow every next link
// (volumes_links, attachments_links, servers_links) and return the whole
// list or nil with an error: never a partial list. EachVolumePage streams
// pages; after its error the pages seen are incomplete.
//
// # Waiting
//
// WaitVolume polls with a short exponential backoff (DefaultBackoff: 25 ms,
// ×1.6, capped at 1 s) until a VolumeCondition (StatusIs, AttachedTo,
// DetachedFrom) holds, the volume reaches an error state (ErrVolumeState)
// or the context ends (ErrTimeout plus the context's error). It always
// returns the last volume seen, so a timeout is an "uncertain" state for
// the caller to handle, not a guess.
//
// # Metrics
//
// One RoundTripper under gophercloud records, for every HTTP request
// (authentication and each page included):
//
//	openstack_api_request_duration_seconds{service,request}  histogram
//	openstack_api_requests_total{service,request,code}        counter
//	openstack_api_request_errors_total{service,request}       counter
//
// with service volume/compute/identity/metadata and request names like
// volume_get, volume_attach, attachment_delete, server_list, token_create
// (cinder-csi's naming). Metrics.Calls and CallsFor count requests for
// tests and benchmarks.
package openstack
