// Package simcloud is an in-process OpenStack simulator (Keystone v3, Cinder
// v3, Nova v2.1 and the metadata service) served over real HTTP, with
// attachments backed by real loop devices and optionally real libvirt disks.
//
// # Starting one
//
//	sim, err := simcloud.Start(ctx, simcloud.Options{
//		Latency:  simcloud.Latencies{Attach: 200 * time.Millisecond, Detach: 200 * time.Millisecond},
//		Backends: []simcloud.ComputeBackend{loopnode.New(loopnode.Options{})},
//	})
//	defer sim.Close()
//	inst, _ := sim.AddInstance(simcloud.InstanceSpec{Name: "node-a", Host: "compute-a"})
//	_ = sim.WriteCloudsYAML(path) // clouds "sim" (member), "sim-admin" (admin), "sim-noauth"
//
// One listener (default 127.0.0.1:0) serves, under sim.URL():
//
//	/identity/v3          Keystone: POST /auth/tokens (password or token), GET /auth/tokens
//	/volume/v3/<project>  Cinder: volumes, metadata, actions, attachments (3.27/3.44),
//	                      snapshots
//	/noauth/volume/v3/<project>  the same Cinder (same volumes) as a standalone
//	                      deployment with auth_strategy=noauth, see below
//	/compute/v2.1         Nova: servers, servers/detail, os-volume_attachments
//	/metadata/<instance>  metadata service: /openstack/latest/meta_data.json
//	/_sim                 fault controls (admin token), see admin.go
//
// The catalog lists identity, volumev3 (and block-storage) and compute with
// public, internal and admin interfaces in region "RegionOne". Two users
// exist: Member() ("demo", roles member and reader, project "demo") and
// Admin() ("admin", roles admin, member and reader, project "admin").
// Instances belong to the member's project unless InstanceSpec.Admin.
//
// # Standalone Cinder (noauth)
//
// /noauth/volume/v3/<project> (NoAuthVolumeEndpoint, cloud "sim-noauth")
// serves the same Cinder API over the same model with Cinder's
// NoAuthMiddleware in place of Keystone: X-Auth-Token "<user>:<project>"
// is believed unchecked (a bare "<user>" is also the project), the context
// is an admin one (is_admin=True: admin fields shown, admin actions
// allowed, any project's volume reachable by id), the URL project must
// still equal the token's (400 "Malformed request url"), and a request
// with no X-Auth-Token header gets 204 with a made-up token and
// X-Server-Management-Url instead of an API answer. Nothing there has a
// catalog or a Nova; Cinder's Nova guard on detach still holds, since the
// model is shared.
//
// # Fidelity
//
// Status codes, error keys and messages, field names, nulls and timestamp
// formats follow responses captured from a real Cinder 21 (Zed)
// (testdata/real-cinder-zed.json) and the API references. Microversions: Cinder
// 3.0–3.70, Nova 2.1–2.93 (too high → 406 computeFault, malformed → 400).
// Tokens are checked on every Cinder and Nova call (keystonemiddleware's 401
// body); Cinder also refuses a URL project that is not the token's.
//
// Volumes move creating → available, deleting → gone and extending →
// available after Options.Latency; attachments go reserved → attaching →
// attached. Nova's volume attach answers at once (volume reserved, mapping
// recorded) and, after Latency.Attach, connects the attachment, calls the
// backends in order and completes it (volume in-use). Nova's detach sets the
// volume detaching and, after Latency.Detach, calls the backends in reverse
// order, deletes the Cinder attachment and the mapping (volume available).
// Cinder's os-detach, os-force_detach and DELETE /attachments/{id} answer 409
// "Detach volume from instance <id> using the Compute API" while a live
// server's mapping holds the attachment (the guard for bug 2004555);
// os-force_detach and os-reset_status never call the backends, which is how
// zombie disks arise.
//
// Snapshots move creating → available (Latency.Create) and deleting → gone
// (Latency.Delete); an in-use volume needs force below 3.66, and a volume
// with snapshots cannot be deleted. A snapshot copies the volume's backing
// file to SnapshotFile(id); a volume created with snapshot_id or
// source_volid (size defaulting to, and at least, the source's) starts
// with a copy of the snapshot's or the source volume's file. Copies are
// sparse: a reflink where the filesystem has them, else copy_file_range
// over the data extents only.
//
// # Time and ids
//
// The model takes time as an input: Options.Clock (real time by default;
// ManualClock for tests) drives every latency and timestamp. Options.Seed
// makes resource ids reproducible: they depend only on the order in which
// projects, users, instances, volumes, attachments and mappings are created,
// not on how many other requests were made.
//
// # Faults and events
//
// Sim.Faults injects latency, error rates, one-shot failures, hangs, a failed
// listing page, compute-side attach/detach failures, a Nova detach that never
// completes, and token expiry. Sim.Events (and the JSON-lines file at
// Sim.EventLogPath) records every backend attach/detach and every Cinder-only
// change; CheckExclusive proves a volume was never attached read-write to
// two instances at once.
package simcloud
