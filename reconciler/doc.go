// Package reconciler diffs what libvirt has attached to each domain on a
// compute host against Cinder attachments and Nova's mappings. It observes,
// plans (a pure function) and acts in three separate steps.
//
// # Files: pure core and I/O edges
//
// The decision core does no I/O and imports neither libvirtscan nor
// openstack: observation.go (the Observation types, MergeDisks,
// InvolvedVolumeIDs), index.go, policy.go, plan.go (Plan), precheck.go
// (CheckPreconditions), result.go (Finding, Action, Result, SetOutcome,
// NoteLiveDetach, ExitCode) and render.go (WriteTable, WriteJSON, to any
// io.Writer). memory.go is pure apart from LoadMemory and SaveMemory, and
// audit.go apart from opening and appending to the file.
//
// The I/O edges are observe.go (Observer: libvirt through libvirtscan, Nova
// and Cinder through openstack, converting into this package's types),
// act.go (Actor: libvirtscan's DetachDisk, openstack's attachment delete and
// Nova detach), mounts_linux.go (mountinfo, probing sources with a timeout,
// lazy unmount) and metrics.go (Prometheus). Tests of the core build
// Observations by hand; tests of the edges run against a real libvirtd and
// the simulator.
//
// # Observe
//
// The observe step (libvirt, Nova, Cinder, the mount table) fills an
// Observation. Each source carries a
// SourceStatus: SourceOK only when the whole, paginated listing was read.
// Libvirt and Cinder are required; Nova and Mounts may be
// SourceNotConfigured. Domain disks are the merge of the live and the
// persistent definition (MergeDisks). Cinder must hold every volume
// InvolvedVolumeIDs names plus every volume with an attachment for an
// instance that has a domain on this host.
//
// # Plan
//
// Plan(obs, memory, policy, now) → Result is pure: no I/O, time is an input.
// Disks are matched to volumes by serial, then alias ua-<volume id>, then a
// volume id in the source — never by target name. Classes: zombie disk,
// stale Cinder attachment, mapping + attachment with the disk missing, stale
// Nova mapping, device-name mismatch, unknown domain, stale mount. Remedies:
// libvirt detach (config, then live), Cinder attachment delete, Nova detach
// (only with Policy.NovaDetachMissingDisk), lazy unmount. No remedy deletes a
// volume.
//
// Safety gates, in the order they are applied to each action:
//
//  1. Aborted: any source failed, was not reported, or looked suspiciously
//     empty (no domains when the last run saw some, no volumes while domains
//     have volume disks, no Nova servers while domains carry Nova metadata);
//     an invalid policy; a memory file from another host. Nothing runs, and
//     sightings neither advance nor reset.
//  2. In transition (counter reset): the instance is on another host, has a
//     task state, a migration or an unsettled vm_state; the volume is not
//     available/in-use or one of its attachments is attaching, detaching,
//     reserved or error_*.
//  3. Blocked: the instance is not a Nova server of this host, Nova is not
//     configured (unless Policy.ActWithoutNova), the volume is not in
//     Cinder's listing, a domain disk lives on the mount, mounts are stacked.
//  4. Waiting: seen in fewer than Policy.MinSightings consecutive runs, or
//     for less than Policy.MinAge since the first of them.
//  5. Deferred: beyond Policy.MaxActions this run (most severe first).
//  6. StateDryRun unless Policy.Apply, then StateReady.
//
// # Act
//
// The act step takes Result.Executable(), and for each action re-reads the
// items it names, calls CheckPreconditions on that fresh Observation
// (errors.Is(err, ErrPreconditionFailed) means: skip, the next run looks
// again), acts, appends an AuditRecord to the AuditLog, and records the
// outcome with Result.SetOutcome. Then it saves Result.Memory with
// SaveMemory (atomic, 0600) for the next run.
//
// A live detach the guest does not acknowledge (a firmware-only or hung
// guest) leaves the disk out of the persistent config but attached to the
// running domain: the action is pending, and Result.NoteLiveDetach
// remembers it in Memory.PendingDetaches (domain, volume, since when,
// attempts so far). On later runs Plan marks that zombie's detach
// Action.LiveRetry: the act step asks once more with a single short attempt
// (Actor.RetryTimeout) instead of nova's full timeout × attempts, and
// reports it still pending unless the guest acknowledges; the finding's
// detail says since when. The entry is forgotten once the zombie is no
// longer live-only (acknowledged, power-cycled, or back in the config).
//
// # Output
//
// WriteTable and WriteJSON render a Result (stable, sorted). ExitCode maps
// it to the process exit code: 0 clean, 1 warning or critical findings (info
// findings and transition skips do not count), 2 error (run aborted or an
// action failed).
package reconciler
