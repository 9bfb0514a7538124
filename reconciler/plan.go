package reconciler

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// candidate is a finding with the remedy it would get and the gates that
// hold it back, before memory and the action cap are applied.
type candidate struct {
	f Finding
	a *Action
	// skip: the item is in transition; leave it alone and reset its
	// sighting counter.
	skip string
	// block: a gate forbids acting, but the discrepancy still counts.
	block string
}

// usable says which sources may be read this run.
type usable struct {
	lv, nova, cinder, mounts bool
	novaConfigured           bool
}

// Plan decides, without any I/O, what this run found and what may be done
// about it. It never fails: an invalid policy or a broken source aborts
// every action and says why in Result.AbortReasons. obs is not modified;
// Result.Memory is mem advanced by this run, to be saved by the caller.
//
// The order of gates for each action: run aborted → item in transition
// (skipped, counter reset) → other safety gates (blocked) → sightings and age
// (waiting) → per-run cap (deferred) → dry-run or ready.
func Plan(obs Observation, mem Memory, pol Policy, now time.Time) Result {
	now = now.UTC()
	res := Result{
		Host:    obs.Host,
		Time:    now,
		DryRun:  !pol.Apply,
		Sources: map[string]SourceStatus{"libvirt": obs.Libvirt.Source, "nova": obs.Nova.Source, "cinder": obs.Cinder.Source, "mounts": obs.Mounts.Source},
	}
	next := mem.clone()
	var aborts []string
	if err := pol.Validate(); err != nil {
		aborts = append(aborts, err.Error())
	}
	if obs.Host == "" {
		aborts = append(aborts, "host name is empty: cannot tell this host's instances and attachments")
	}
	if mem.Host != "" && obs.Host != "" && mem.Host != obs.Host {
		// A memory file copied from another host would lend its sightings
		// (and its domain counts) to this one.
		aborts = append(aborts, fmt.Sprintf("memory file was written on host %s, this is host %s", mem.Host, obs.Host))
		next = NewMemory()
		mem = NewMemory()
	}
	use, srcAborts := assessSources(obs, mem, pol, &next)
	aborts = append(aborts, srcAborts...)
	aborts = append(aborts, missingIDs(obs)...)
	if len(aborts) > 0 {
		res.Aborted, res.AbortReasons = true, aborts
	}

	ix := buildIndex(obs, use.lv, use.nova, use.cinder)
	cands := detect(ix, obs, pol, use)

	// Memory: a run that aborted neither advances nor resets sightings;
	// otherwise a finding seen again counts one more, a finding in
	// transition or no longer seen starts from zero.
	seen := make(map[string]bool, len(cands))
	for i := range cands {
		c := &cands[i]
		s, had := mem.Sightings[c.f.Key]
		switch {
		case res.Aborted:
			if had {
				c.f.Sightings, c.f.FirstSeen = s.Count, s.FirstSeen
			}
		case c.skip != "":
			c.f.Skipped = c.skip
			delete(next.Sightings, c.f.Key)
		default:
			if !had || now.Before(s.LastSeen) {
				// First sighting, or the clock went back since the last
				// one: an age measured across the step cannot be trusted,
				// so counting starts again (keeping the old first sighting
				// would save last < first, a memory the next run refuses).
				s = Sighting{Class: c.f.Class, FirstSeen: now}
			}
			if s.Count < math.MaxInt {
				s.Count++
			}
			s.LastSeen = now
			next.Sightings[c.f.Key] = s
			seen[c.f.Key] = true
			c.f.Sightings, c.f.FirstSeen = s.Count, s.FirstSeen
		}
	}
	if !res.Aborted {
		for k := range next.Sightings {
			if !seen[k] {
				delete(next.Sightings, k)
			}
		}
	}
	next.Host, next.LastRun = obs.Host, now
	markPendingDetaches(cands, mem, &next, res.Aborted)

	// Gates, in order, then the cap over what is left.
	var eligible []int
	for i := range cands {
		c := &cands[i]
		res.Findings = append(res.Findings, c.f)
		if c.a == nil {
			continue
		}
		a := c.a
		a.FindingKey, a.Class, a.Severity = c.f.Key, c.f.Class, c.f.Severity
		a.Domain, a.DomainName, a.Instance, a.Volume = c.f.Domain, c.f.DomainName, c.f.Instance, c.f.Volume
		a.Attachment, a.Mountpoint = c.f.Attachment, c.f.Mountpoint
		age := now.Sub(c.f.FirstSeen)
		switch {
		case res.Aborted:
			a.State, a.Reason = StateAborted, "run aborted: "+joinReasons(aborts)
		case c.skip != "":
			a.State, a.Reason = StateBlocked, "in transition: "+c.skip
		case c.block != "":
			a.State, a.Reason = StateBlocked, c.block
		case c.f.Sightings < pol.MinSightings:
			a.State, a.Reason = StateWaiting, fmt.Sprintf("seen in %d of %d consecutive runs", c.f.Sightings, pol.MinSightings)
		case age < pol.MinAge:
			a.State, a.Reason = StateWaiting, fmt.Sprintf("seen for %s of %s", age.Round(time.Second), pol.MinAge)
		default:
			eligible = append(eligible, len(res.Actions))
		}
		res.Actions = append(res.Actions, *a)
	}
	slices.SortStableFunc(eligible, func(x, y int) int { return capOrder(res.Actions[x], res.Actions[y]) })
	for n, i := range eligible {
		a := &res.Actions[i]
		switch {
		case n >= pol.MaxActions:
			a.State, a.Reason = StateDeferred, fmt.Sprintf("over the cap of %d actions per run", pol.MaxActions)
		case pol.Apply:
			a.State = StateReady
		default:
			a.State, a.Reason = StateDryRun, "dry-run: would act (use --apply)"
		}
	}

	// Keys are unique on any real listing; the tie-breaks keep the output
	// deterministic even on a broken one (which aborts, but still reports).
	slices.SortFunc(res.Findings, func(x, y Finding) int {
		return cmp.Or(cmp.Compare(y.Severity.rank(), x.Severity.rank()), cmp.Compare(x.Class, y.Class), cmp.Compare(x.Key, y.Key),
			cmp.Compare(x.Volume, y.Volume), cmp.Compare(x.Domain, y.Domain), cmp.Compare(x.Attachment, y.Attachment), cmp.Compare(x.Disk, y.Disk))
	})
	slices.SortFunc(res.Actions, func(x, y Action) int {
		return cmp.Or(cmp.Compare(y.Severity.rank(), x.Severity.rank()), cmp.Compare(x.Class, y.Class), cmp.Compare(x.FindingKey, y.FindingKey),
			cmp.Compare(x.Kind, y.Kind), cmp.Compare(x.Volume, y.Volume), cmp.Compare(x.Domain, y.Domain), cmp.Compare(x.Attachment, y.Attachment))
	})
	res.Memory = next
	return res
}

// markPendingDetaches turns the detach of a zombie whose live detach an
// earlier run left pending (its disk now only in the live definition of a
// running domain) into a live retry: one short attempt this run, not nova's
// full timeout × attempts again; the finding says since when. A pending
// entry whose zombie is no longer seen that way is forgotten, unless the
// run aborted (then nothing is known).
func markPendingDetaches(cands []candidate, mem Memory, next *Memory, aborted bool) {
	still := map[string]bool{}
	for i := range cands {
		c := &cands[i]
		p, ok := mem.PendingDetaches[c.f.Key]
		if !ok || c.a == nil || c.a.Kind != ActionLibvirtDetach || c.a.Config || !c.a.Live {
			continue
		}
		still[c.f.Key] = true
		c.a.LiveRetry = true
		c.f.LiveDetachPendingSince = p.Since
		c.f.Detail += fmt.Sprintf("; live detach pending since %s (%d attempts so far): gone from the persistent config, the guest has not acknowledged the unplug; a power cycle drops it",
			p.Since.UTC().Format(time.RFC3339), p.Attempts)
	}
	if aborted {
		return
	}
	for k := range next.PendingDetaches {
		if !still[k] {
			delete(next.PendingDetaches, k)
		}
	}
	if len(next.PendingDetaches) == 0 {
		next.PendingDetaches = nil
	}
}

// capOrder is the order in which eligible actions get the per-run budget:
// most severe first, then by finding key.
func capOrder(x, y Action) int {
	return cmp.Or(cmp.Compare(y.Severity.rank(), x.Severity.rank()), cmp.Compare(x.FindingKey, y.FindingKey))
}

func sortActionsForCap(as []Action) { slices.SortStableFunc(as, capOrder) }

func sortBy[T any](s []T, key func(T) string) {
	slices.SortFunc(s, func(x, y T) int { return cmp.Compare(key(x), key(y)) })
}

// assessSources decides which sources can be trusted and updates the
// emptiness counters in next. Libvirt and Cinder are required; Nova and the
// mount table may be deliberately not configured.
func assessSources(obs Observation, mem Memory, pol Policy, next *Memory) (usable, []string) {
	var u usable
	believe := max(pol.MinSightings, 3)
	var aborts []string
	state := func(name string, s SourceStatus, optional bool) bool {
		switch s.State {
		case SourceOK:
			return true
		case SourceNotConfigured:
			if !optional {
				aborts = append(aborts, name+": not configured, but it is required")
			}
		case "":
			aborts = append(aborts, name+": completeness not reported")
		default:
			aborts = append(aborts, fmt.Sprintf("%s: %s: %s", name, s.State, quoteOr(s.Reason, "no reason given")))
		}
		return false
	}
	u.lv = state("libvirt", obs.Libvirt.Source, false)
	u.nova = state("nova", obs.Nova.Source, true)
	u.novaConfigured = obs.Nova.Source.State != SourceNotConfigured
	u.cinder = state("cinder", obs.Cinder.Source, false)
	u.mounts = state("mounts", obs.Mounts.Source, true)

	// Suspiciously empty listings. A host really emptied is believed after
	// max(MinSightings, 3) consecutive empty runs; a contradiction between
	// sources (no volumes but volume disks, no servers but Nova domains)
	// never is.
	if u.lv {
		if n := len(obs.Libvirt.Domains); n > 0 || mem.Domains == 0 {
			next.Domains, next.DomainsEmptyRuns = n, 0
		} else {
			next.DomainsEmptyRuns = mem.DomainsEmptyRuns + 1
			if next.DomainsEmptyRuns >= believe {
				next.Domains, next.DomainsEmptyRuns = 0, 0
			} else {
				u.lv = false
				aborts = append(aborts, fmt.Sprintf("libvirt: listed no domains, the last complete run saw %d (empty run %d of %d before it is believed)", mem.Domains, next.DomainsEmptyRuns, believe))
			}
		}
	}
	if u.nova {
		novaMeta := 0
		for _, d := range obs.Libvirt.Domains {
			if d.HasNovaMetadata {
				novaMeta++
			}
		}
		switch n := len(obs.Nova.Servers); {
		case n == 0 && novaMeta > 0:
			u.nova = false
			aborts = append(aborts, fmt.Sprintf("nova: listed no servers on host %s, but %d libvirt domains carry Nova metadata", obs.Host, novaMeta))
		case n > 0 || mem.Servers == 0:
			next.Servers, next.ServersEmptyRuns = n, 0
		default:
			next.ServersEmptyRuns = mem.ServersEmptyRuns + 1
			if next.ServersEmptyRuns >= believe {
				next.Servers, next.ServersEmptyRuns = 0, 0
			} else {
				u.nova = false
				aborts = append(aborts, fmt.Sprintf("nova: listed no servers on host %s, the last complete run saw %d (empty run %d of %d before it is believed)", obs.Host, mem.Servers, next.ServersEmptyRuns, believe))
			}
		}
	}
	if u.cinder && len(obs.Cinder.Volumes) == 0 {
		volumeDisks, mappings := 0, 0
		ix := buildIndex(Observation{Libvirt: obs.Libvirt}, true, false, false)
		volumeDisks = ix.volumeDisks
		for _, s := range obs.Nova.Servers {
			mappings += len(s.Volumes)
		}
		if volumeDisks > 0 || mappings > 0 {
			u.cinder = false
			aborts = append(aborts, fmt.Sprintf("cinder: listed no volumes, but domains have %d volume disks and Nova %d volume mappings", volumeDisks, mappings))
		}
	}
	return u, aborts
}

// missingIDs reports records without the ids that findings and actions are
// keyed on (a domain UUID, a server id, a mapping's or a volume's id, an
// attachment id). No real listing has them; an observer or proxy that
// produced them is broken, and acting on such a record would target
// nothing ("DELETE /attachments/"). Such a run aborts like one with a failed
// source.
func missingIDs(obs Observation) []string {
	var out []string
	for _, d := range obs.Libvirt.Domains {
		if d.UUID == "" {
			out = append(out, fmt.Sprintf("libvirt: domain %s has no UUID", quoteOr(d.Name, "without a name")))
			break
		}
	}
	for _, s := range obs.Nova.Servers {
		if s.ID == "" {
			out = append(out, fmt.Sprintf("nova: server %s has no id", quoteOr(s.Name, "without a name")))
			break
		}
		if i := slices.IndexFunc(s.Volumes, func(m ServerVolume) bool { return m.VolumeID == "" }); i >= 0 {
			out = append(out, fmt.Sprintf("nova: server %s has a volume mapping without a volume id", s.ID))
			break
		}
	}
	for _, v := range obs.Cinder.Volumes {
		if v.ID == "" {
			out = append(out, "cinder: a volume has no id")
			break
		}
		if i := slices.IndexFunc(v.Attachments, func(a VolumeAttachment) bool { return a.ID == "" }); i >= 0 {
			out = append(out, fmt.Sprintf("cinder: volume %s has an attachment without an id", v.ID))
			break
		}
	}
	// Ids are unique in Cinder. An attachment id on two volumes (or one
	// volume listed twice with different contents) would key two findings
	// alike and make an action's target a matter of chance.
	owner := map[string]string{}
	for _, v := range obs.Cinder.Volumes {
		for _, a := range v.Attachments {
			if prev, ok := owner[a.ID]; ok && prev != v.ID {
				out = append(out, fmt.Sprintf("cinder: attachment %s is listed on volumes %s and %s", a.ID, min(prev, v.ID), max(prev, v.ID)))
				return out
			}
			owner[a.ID] = v.ID
		}
	}
	return out
}

// detect finds every discrepancy the usable sources can show.
func detect(ix *index, obs Observation, pol Policy, use usable) []candidate {
	var out []candidate
	novaKnown := use.nova // Nova's view is available for "no mapping" checks
	if use.lv && use.cinder && (use.nova || !use.novaConfigured) {
		out = appendDiskFindings(out, ix, pol, use)
		out = appendAttachmentFindings(out, ix, pol, use)
	}
	if use.lv && use.cinder && novaKnown {
		out = appendMappingFindings(out, ix, pol)
	}
	if use.lv && novaKnown {
		for _, d := range ix.domains {
			inst := d.InstanceID()
			if _, ok := ix.servers[inst]; ok {
				continue
			}
			out = append(out, candidate{f: Finding{
				Key: key(ClassUnknownDomain, strings.ToLower(d.UUID)), Class: ClassUnknownDomain, Severity: SeverityWarning,
				Domain: d.UUID, DomainName: d.Name, Instance: inst,
				Detail: fmt.Sprintf("libvirt domain %s (%s, %s) is not a Nova server on host %s", d.Name, d.UUID, quoteOr(d.State, "unknown state"), obs.Host),
			}})
		}
	}
	if use.mounts {
		out = appendMountFindings(out, ix, obs, pol, use)
	}
	return out
}

func key(c Class, parts ...string) string { return string(c) + "/" + strings.Join(parts, "/") }

// instanceGate applies "act only on instances of this host with no task
// state and no migration". skip means in transition (counter reset).
func instanceGate(ix *index, inst string, pol Policy, use usable) (skip, block string) {
	if !use.novaConfigured {
		if pol.ActWithoutNova {
			return "", ""
		}
		return "", "nova is not configured, so the instance's task state and migrations cannot be checked (policy act_without_nova is off)"
	}
	s, ok := ix.servers[inst]
	if !ok {
		return "", "instance " + inst + " is not a Nova server on host " + ix.host
	}
	return serverSkip(s, ix.host), ""
}

func idlePreconditions(inst string, use usable) []Precondition {
	if !use.novaConfigured {
		return nil
	}
	return []Precondition{{Check: CheckServerIdle, Instance: inst}}
}

// appendDiskFindings walks every volume disk of every domain: zombie disks,
// stale Nova mappings whose disk is still there, and device-name mismatches.
func appendDiskFindings(out []candidate, ix *index, pol Policy, use usable) []candidate {
	keys := make([]ivKey, 0, len(ix.disks))
	for k := range ix.disks {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y ivKey) int { return cmp.Or(cmp.Compare(x.inst, y.inst), cmp.Compare(x.vol, y.vol)) })
	for _, k := range keys {
		ref := ix.disks[k]
		d, disk := ref.dom, ref.disk
		vol := ix.volumes[k.vol]
		att := liveAttachment(vol, k.inst)
		var mapping *ServerVolume
		if use.nova {
			mapping = ix.mappings[k]
		}
		base := Finding{Domain: d.UUID, DomainName: d.Name, Instance: k.inst, Volume: k.vol, Disk: disk.Target}
		where := definitions(disk)

		switch {
		case mapping == nil && att == nil:
			f := base
			f.Class, f.Severity, f.Key = ClassZombieDisk, SeverityWarning, key(ClassZombieDisk, k.inst, k.vol)
			var detail []string
			detail = append(detail, fmt.Sprintf("domain %s has disk %s (matched by %s, %s)", d.Name, disk.Target, ref.by, where))
			if use.nova {
				detail = append(detail, "Nova has no mapping")
			} else {
				detail = append(detail, "Nova not observed")
			}
			c := candidate{}
			if vol == nil {
				detail = append(detail, "Cinder does not list the volume")
				c.block = "volume " + k.vol + " is not in Cinder's listing; its state cannot be checked"
			} else {
				detail = append(detail, fmt.Sprintf("Cinder has no attachment for this instance (volume %s)", quoteOr(vol.Status, "without status")))
				if other := attachedElsewhere(vol, k.inst); other != nil {
					if !vol.Multiattach {
						f.Severity = SeverityCritical
						detail = append(detail, fmt.Sprintf("volume is attached to instance %s (attachment %s) and not multiattach: two writers", quoteOr(other.ServerID, "none"), other.ID))
					} else {
						detail = append(detail, fmt.Sprintf("volume is also attached to instance %s (multiattach)", quoteOr(other.ServerID, "none")))
					}
				}
				c.skip = volumeSkip(vol)
			}
			f.Detail = strings.Join(detail, "; ")
			if s, b := instanceGate(ix, k.inst, pol, use); c.skip == "" {
				c.skip = s
				if c.block == "" {
					c.block = b
				}
			}
			dk := disk
			c.f = f
			c.a = &Action{
				// An inactive domain has no live definition, whatever the
				// observer copied into Live.
				Kind: ActionLibvirtDetach, Disk: &dk, Config: disk.Config, Live: disk.Live && d.Active(),
				Preconditions: append([]Precondition{
					{Check: CheckDomainHasDisk, Domain: d.UUID, Volume: k.vol},
					{Check: CheckVolumeSettled, Volume: k.vol},
					{Check: CheckNoCinderAttachment, Instance: k.inst, Volume: k.vol},
				}, novaNoMapping(k, use)...),
			}
			c.a.Preconditions = append(c.a.Preconditions, idlePreconditions(k.inst, use)...)
			out = append(out, c)
		case mapping != nil && mappingStale(mapping, vol, att):
			f := base
			f.Class, f.Severity, f.Key = ClassStaleNovaMapping, SeverityWarning, key(ClassStaleNovaMapping, k.inst, k.vol)
			f.Attachment = mapping.AttachmentID
			f.Detail = fmt.Sprintf("Nova maps the volume (attachment %s) but Cinder has no such attachment; the disk is still in domain %s as %s (%s); a reboot lets Nova clean it",
				quoteOr(mapping.AttachmentID, "unknown"), d.Name, disk.Target, where)
			out = append(out, withSkip(ix, candidate{f: f}, vol, k.inst, pol, use))
		}

		// Device names are not authoritative; a mismatch is worth a note.
		var names []string
		if mapping != nil && mapping.Device != "" && deviceBase(mapping.Device) != disk.Target {
			names = append(names, "Nova says "+mapping.Device)
		}
		if att != nil && att.Device != "" && deviceBase(att.Device) != disk.Target {
			names = append(names, "Cinder says "+att.Device)
		}
		if len(names) > 0 {
			f := base
			f.Class, f.Severity, f.Key = ClassDeviceNameMismatch, SeverityInfo, key(ClassDeviceNameMismatch, k.inst, k.vol)
			f.Detail = fmt.Sprintf("%s; libvirt target is %s (names are not authoritative)", strings.Join(names, ", "), disk.Target)
			out = append(out, candidate{f: f})
		}
	}
	return out
}

// withSkip sets the transition skip for report-only findings so their
// counters reset too.
func withSkip(ix *index, c candidate, vol *Volume, inst string, pol Policy, use usable) candidate {
	if vol != nil {
		c.skip = volumeSkip(vol)
	}
	if c.skip == "" {
		c.skip, _ = instanceGate(ix, inst, pol, use)
	}
	return c
}

func novaNoMapping(k ivKey, use usable) []Precondition {
	if !use.novaConfigured {
		return nil
	}
	return []Precondition{{Check: CheckNoNovaMapping, Instance: k.inst, Volume: k.vol}}
}

// mappingStale: Nova's mapping names an attachment Cinder no longer has (or,
// without an attachment id, Cinder has none for the instance).
func mappingStale(m *ServerVolume, vol *Volume, att *VolumeAttachment) bool {
	if m.AttachmentID != "" {
		return attachmentByID(vol, m.AttachmentID) == nil
	}
	return att == nil
}

func definitions(d Disk) string {
	switch {
	case d.Live && d.Config:
		return "live and persistent"
	case d.Live:
		return "live only"
	case d.Config:
		return "persistent only"
	}
	return "no definition"
}

// appendMappingFindings walks Nova's mappings whose disk the domain lacks.
func appendMappingFindings(out []candidate, ix *index, pol Policy) []candidate {
	keys := make([]ivKey, 0, len(ix.mappings))
	for k := range ix.mappings {
		if _, present := ix.disks[k]; !present {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(x, y ivKey) int { return cmp.Or(cmp.Compare(x.inst, y.inst), cmp.Compare(x.vol, y.vol)) })
	use := usable{lv: true, nova: true, cinder: true, novaConfigured: true}
	for _, k := range keys {
		d := ix.domainByInstance[k.inst]
		if d == nil {
			continue // no domain here: not a disk discrepancy this host can see
		}
		m := ix.mappings[k]
		vol := ix.volumes[k.vol]
		att := liveAttachment(vol, k.inst)
		if m.AttachmentID != "" {
			att = attachmentByID(vol, m.AttachmentID)
		}
		base := Finding{Domain: d.UUID, DomainName: d.Name, Instance: k.inst, Volume: k.vol}
		if att == nil {
			f := base
			f.Class, f.Severity, f.Key = ClassStaleNovaMapping, SeverityWarning, key(ClassStaleNovaMapping, k.inst, k.vol)
			f.Attachment = m.AttachmentID
			f.Detail = fmt.Sprintf("Nova maps the volume (attachment %s, device %s) but Cinder has no such attachment and domain %s has no such disk; a reboot lets Nova clean it",
				quoteOr(m.AttachmentID, "unknown"), quoteOr(m.Device, "unknown"), d.Name)
			out = append(out, withSkip(ix, candidate{f: f}, vol, k.inst, pol, use))
			continue
		}
		f := base
		f.Class, f.Severity, f.Key = ClassMappingDiskMissing, SeverityWarning, key(ClassMappingDiskMissing, k.inst, k.vol)
		f.Attachment = att.ID
		f.Detail = fmt.Sprintf("Nova maps the volume (device %s) and Cinder attachment %s is %s, but domain %s has no such disk; Nova detach or a hard reboot fixes it",
			quoteOr(m.Device, "unknown"), att.ID, quoteOr(att.AttachStatus, "attached"), d.Name)
		c := withSkip(ix, candidate{f: f}, vol, k.inst, pol, use)
		if pol.NovaDetachMissingDisk {
			c.a = &Action{Kind: ActionNovaDetach, Preconditions: []Precondition{
				{Check: CheckDomainLacksDisk, Domain: d.UUID, Volume: k.vol},
				{Check: CheckVolumeSettled, Volume: k.vol},
				{Check: CheckNovaMappingPresent, Instance: k.inst, Volume: k.vol},
				{Check: CheckServerIdle, Instance: k.inst},
			}}
		}
		out = append(out, c)
	}
	return out
}

// appendAttachmentFindings walks Cinder attachments of instances that have a
// domain on this host, for stale attachments (no disk, no Nova mapping).
func appendAttachmentFindings(out []candidate, ix *index, pol Policy, use usable) []candidate {
	// Map order is fine: Plan sorts findings and actions by their unique
	// keys at the end (sorting 20,000 volumes here would dominate the run).
	for vid, v := range ix.volumes {
		for _, att := range v.Attachments {
			inst := strings.ToLower(att.ServerID)
			if inst == "" || !attachmentLive(att.AttachStatus) {
				continue
			}
			d := ix.domainByInstance[inst]
			if d == nil || (att.HostName != "" && !strings.EqualFold(att.HostName, ix.host)) {
				continue // not an instance of this host
			}
			k := ivKey{inst, vid}
			if _, present := ix.disks[k]; present {
				continue
			}
			if _, mapped := ix.mappings[k]; mapped && use.nova {
				continue // mapping + attachment, disk missing: appendMappingFindings
			}
			f := Finding{
				Key: key(ClassStaleCinderAttachment, strings.ToLower(att.ID)), Class: ClassStaleCinderAttachment, Severity: SeverityWarning,
				Domain: d.UUID, DomainName: d.Name, Instance: inst, Volume: vid, Attachment: att.ID,
			}
			nova := "Nova has no mapping"
			if !use.nova {
				nova = "Nova not observed"
			}
			f.Detail = fmt.Sprintf("Cinder attachment %s (%s, host %s) for instance %s, but domain %s has no such disk; %s",
				att.ID, quoteOr(att.AttachStatus, "attached"), quoteOr(att.HostName, "not recorded"), inst, d.Name, nova)
			c := candidate{f: f, skip: volumeSkip(v)}
			if s, b := instanceGate(ix, inst, pol, use); c.skip == "" {
				c.skip, c.block = s, b
			}
			c.a = &Action{Kind: ActionCinderAttachmentDelete, Preconditions: append([]Precondition{
				{Check: CheckDomainLacksDisk, Domain: d.UUID, Volume: vid},
				{Check: CheckVolumeSettled, Volume: vid},
				{Check: CheckCinderAttachmentPresent, Instance: inst, Volume: vid, Attachment: att.ID},
			}, append(novaNoMapping(k, use), idlePreconditions(inst, use)...)...)}
			out = append(out, c)
		}
	}
	return out
}

// appendMountFindings finds mounts under the configured bases whose source
// is gone. A mount that a domain disk still uses is never unmounted.
func appendMountFindings(out []candidate, ix *index, obs Observation, pol Policy, use usable) []candidate {
	stacked := map[string]int{}
	for _, e := range obs.Mounts.Entries {
		stacked[e.Mountpoint]++
	}
	done := map[string]bool{}
	for _, e := range obs.Mounts.Entries {
		if !pol.underBase(e.Mountpoint) || e.SourceState != MountSourceGone || done[e.Mountpoint] {
			continue
		}
		done[e.Mountpoint] = true
		f := Finding{
			Key: key(ClassStaleMount, e.Mountpoint), Class: ClassStaleMount, Severity: SeverityWarning, Mountpoint: e.Mountpoint,
			Detail: fmt.Sprintf("mount %s of %s (%s): source gone (%s)", e.Mountpoint, e.Source, quoteOr(e.FSType, "unknown type"), quoteOr(e.Reason, "no reason given")),
		}
		c := candidate{f: f}
		if !use.lv {
			c.block = "libvirt not observed: cannot tell whether a domain uses the mount"
		} else if n := stacked[e.Mountpoint]; n > 1 {
			c.block = fmt.Sprintf("%d mounts are stacked on %s; unmounting would hit the top one", n, e.Mountpoint)
		} else if user := mountUser(ix, e.Mountpoint); user != "" {
			c.block = "in use: " + user
		}
		c.a = &Action{Kind: ActionLazyUnmount, Preconditions: []Precondition{
			{Check: CheckMountSourceGone, Mountpoint: e.Mountpoint},
			{Check: CheckMountUnused, Mountpoint: e.Mountpoint},
		}}
		out = append(out, c)
	}
	return out
}

// mountUser names a domain disk whose source is below mountpoint. It
// matches the mountpoint anywhere in the source, so a source rendered as
// "file:/var/lib/nova/mnt/<hash>/volume-<id>" counts as well as a bare path:
// erring towards "in use" only ever blocks an unmount.
func mountUser(ix *index, mountpoint string) string {
	dir := strings.TrimSuffix(mountpoint, "/") + "/"
	for _, d := range ix.domains {
		for _, disk := range d.Disks {
			if strings.Contains(disk.Source, dir) {
				return fmt.Sprintf("domain %s disk %s uses %s", d.Name, disk.Target, disk.Source)
			}
		}
	}
	return ""
}
