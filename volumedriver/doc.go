// Package volumedriver implements the Docker volume plugin protocol: one
// Docker volume is one Cinder volume. The per-volume state machine is kept
// apart from the OpenStack calls and the mount syscalls.
//
// The package has a pure core (no I/O except the state file) and the
// wiring that does the I/O around it.
//
// Pure core:
//
//   - Names (ValidateName) and Create options (ParseCreateOptions with an
//     OptionPolicy) are validated before any API call; errors carry a class
//     (ErrInvalidName, ErrUnknownOption, ErrInvalidOption,
//     ErrConflictingOptions, ErrMalformedRequest) and a stable message.
//   - Managed metadata (ManagedMetadata, SettingsFromMetadata) marks volumes
//     the plugin created and records fstype and the preempt setting; an
//     adopted volume without it gets defaults and is never deleted unless
//     configured (VolumeSettings.MayDelete). TakeoverRequest is issue 4's
//     request in metadata.
//   - Volume is one volume's state machine on this node, keyed by Docker
//     mount ids, in raft's Ready style: Step(event) returns a Ready (persist,
//     actions, replies); the caller does the I/O and feeds results back.
//     Drive runs that loop with an Executor and a Persister.
//   - NodeState is the state file (SaveState atomic, LoadState strict).
//   - Reconcile rebuilds the node's view after a restart from the state
//     file, mountinfo and Cinder, and says what to finish.
//   - The protocol edge (DecodeCreate, DecodeMount, ..., PluginErr,
//     DockerVolume) uses go-plugins-helpers/volume types.
//   - Takeover (issue 4, takeover_plan.go: the pure decisions
//     NextTakerStep, AnswerTakeover, ClassifyHolder, NextToken; I/O in
//     takeover.go): the taker records a TakeoverRequest with a fencing
//     token in the volume's metadata; the holder's watch (one listing
//     filtered on MetaTakeoverHolder per interval, only while it holds
//     volumes) releases, refuses ("in use on <instance>") or, forced,
//     force-releases; a holder silent past the grace is detached through
//     Nova; Cinder os-force_detach only when enabled (403/409 explained,
//     never retried), then the volume is tagged MetaZombieInstance.
//   - Stale-mount sweep (SweepEvent, StaleMount; Driver.Sweep runs it
//     periodically, SweepNode backs `cinderwarden reconcile --scope node`).
//
// Wiring (driver.go, execute.go, server.go, identity.go, persist.go):
//
//   - New(ctx, Config) builds the Driver — it implements go-plugins-helpers'
//     volume.Driver — and recovers before returning (contract step 1
//     below); serve only after it succeeded. Driver.Handler serves the
//     protocol (decode with Decode*, call the driver, encode; errors as
//     {"Err": PluginErr(err)}, status 500); ListenUnix makes the 0660
//     socket. Create validates before any API call, adopts an existing
//     volume of the same name (two: an error naming both ids), marks new
//     volumes managed and waits until available. Remove refuses while
//     attached anywhere (*AttachedError names where) and deletes only
//     managed volumes unless Config.DeleteUnmanaged. Get/List show
//     Cinder's view plus this node's (List: every page of the project).
//   - The executor: ActAttach goes through Nova os-volume_attachments and
//     polls Cinder with a short backoff (20 ms ×1.5, cap 250 ms), at once
//     when the by-id device shows up (inotify); ActWaitDevice finds the
//     device by volume id (hostdisk); ActMount lets hostdisk format only a
//     blank device; ActDetach is Nova DELETE, then waits for Cinder and for
//     the device to go. Every step logs a "step" line at start and end and
//     feeds cinderwarden_volume_step_duration_seconds; every request logs
//     one "request" line (volume, mount id, duration, outcome) and feeds
//     cinderwarden_plugin_request*{operation,result} (NewMetrics).
//   - The state file has one writer (stateWriter): concurrent writes are
//     group-committed, and writes a restart re-derives (attaching →
//     waiting-device → mounting) are skipped (writeNeeded).
//   - ResolveIdentity: override, else config drive / metadata service /
//     DMI product uuid in the configured order, cached in the state dir.
//
// Wiring contract (what the Driver follows):
//
//  1. At start: LoadState; list mounts under Layout.Root (hostdisk); ask
//     Cinder about every volume in the state file and the mounts and every
//     volume attached to this instance; Reconcile; SaveState(rec.State);
//     for each rec.Volumes: RestoreVolume, then run its Actions (feed each
//     outcome to Step, as Drive does); log rec.Findings. Only then serve.
//  2. Per request: decode with Decode*; take the volume's lock (one per
//     volume: different volumes proceed in parallel); Drive(event); answer
//     with ReplyFor(op, mount id); errors through ErrorResponse/PluginErr.
//  3. Executor rules: ActAttach and ActDetach are idempotent (already
//     attached/attaching to this instance → just wait; not attached here →
//     detached). Find devices by volume id, never by Nova's device name.
//     ActMount formats only a device with no signature at all.
//  4. The ids written to the state file before Docker hears success are the
//     only record of running containers: Docker does not re-send Mount to a
//     restarted plugin (see Reconcile).
package volumedriver
