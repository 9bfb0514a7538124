package reconciler

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Fuzz targets for the memory file parser and for Plan. Their seeds run as
// ordinary tests in `go test`; `scripts/fuzz.sh` runs each with -fuzz for a
// bounded time.

const goodMemory = `{"version":2,"domains":1,"servers":0,"sightings":{"k":{"class":"zombie_disk","first_seen":"2026-11-25T20:00:00Z","last_seen":"2026-11-25T20:10:00Z","count":2}}}`

// FuzzParseMemory: a memory file is either refused as ErrCorruptMemory or
// yields a memory that keeps the format's promises and survives a save and
// a load unchanged.
func FuzzParseMemory(f *testing.F) {
	f.Add([]byte(goodMemory))
	for _, s := range []string{
		strings.Replace(goodMemory, `"version":2`, `"version":3`, 1),
		strings.Replace(goodMemory, `"version":2`, `"version":1`, 1),
		strings.Replace(goodMemory, `"sightings":{`, `"pending_detaches":{"k":{"domain":"d","volume":"v","since":"2026-11-25T20:05:00Z","last_attempt":"2026-11-25T20:06:00Z","attempts":3}},"sightings":{`, 1),
		strings.Replace(goodMemory, `"count":2`, `"count":0`, 1),
		strings.Replace(goodMemory, `20:10:00Z`, `19:00:00Z`, 1),
		strings.Replace(goodMemory, `"domains":1`, `"domains":-1`, 1),
		strings.Replace(goodMemory, `"count":2`, `"count":9223372036854775807`, 1),
		strings.Replace(goodMemory, `2026-11-25T20:00:00Z`, `2026-11-25T22:00:00+02:00`, 1),
		goodMemory + `{}`, `{"version":1,"sightings":null}`, `{"version":1}`, `null`, `[]`, `{"version":1.5}`,
		`{"version":1,"host":"cmp-1","last_run":"9999-12-31T23:59:59-23:59","domains":0,"servers":0,"sightings":{}}`,
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseMemory(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrCorruptMemory) {
				t.Fatalf("error %v is not ErrCorruptMemory", err)
			}
			return
		}
		if m.Version != MemoryVersion || m.Sightings == nil || m.Domains < 0 || m.Servers < 0 {
			t.Fatalf("accepted memory breaks the format: %+v", m)
		}
		for k, s := range m.Sightings {
			if s.Count < 1 || s.FirstSeen.IsZero() || s.LastSeen.Before(s.FirstSeen) {
				t.Fatalf("accepted sighting %q = %+v", k, s)
			}
		}
		path := filepath.Join(dir, "memory.json")
		if err := SaveMemory(path, m); err != nil {
			t.Fatalf("an accepted memory cannot be saved: %v", err)
		}
		back, err := LoadMemory(path)
		if err != nil {
			t.Fatalf("an accepted memory, saved, cannot be loaded: %v", err)
		}
		if !memoryEqual(m, back) {
			t.Fatalf("save and load changed the memory:\n%+v\n%+v", m, back)
		}
	})
}

func memoryEqual(a, b Memory) bool {
	if a.Version != b.Version || a.Host != b.Host || !a.LastRun.Equal(b.LastRun) || a.Domains != b.Domains ||
		a.Servers != b.Servers || a.DomainsEmptyRuns != b.DomainsEmptyRuns || a.ServersEmptyRuns != b.ServersEmptyRuns ||
		len(a.Sightings) != len(b.Sightings) {
		return false
	}
	for k, s := range a.Sightings {
		o, ok := b.Sightings[k]
		if !ok || s.Class != o.Class || s.Count != o.Count || !s.FirstSeen.Equal(o.FirstSeen) || !s.LastSeen.Equal(o.LastSeen) {
			return false
		}
	}
	return true
}

// gen turns fuzz bytes into choices; past the end every choice is 0.
type gen struct {
	b []byte
	i int
}

func (g *gen) n(k int) int {
	if g.i >= len(g.b) || k <= 1 {
		return 0
	}
	v := int(g.b[g.i]) % k
	g.i++
	return v
}

func (g *gen) pick(s ...string) string { return s[g.n(len(s))] }
func (g *gen) flag() bool              { return g.n(2) == 1 }

func (g *gen) source() SourceStatus {
	switch g.n(24) {
	case 7:
		return SourceStatus{State: SourceFailed, Reason: "list page 3: 503"}
	case 8:
		return SourceStatus{State: SourceEmpty}
	case 9:
		return SourceStatus{State: SourceState(g.pick(string(SourceNotConfigured), "", "bogus"))}
	}
	return okSrc()
}

func (g *gen) observation() Observation {
	host := func() string { return g.pick(testHost, testHost, "cmp-2", "") }
	o := Observation{Host: testHost}
	if g.n(8) == 0 {
		o.Host = host()
	}
	o.Libvirt.Source, o.Nova.Source, o.Cinder.Source, o.Mounts.Source = g.source(), g.source(), g.source(), g.source()
	for range g.n(5) {
		d := Domain{UUID: inst(g.n(5)), Name: fmt.Sprintf("instance-%08x", g.n(5)),
			State: g.pick("running", "running", "shutoff", "paused", "", "crashed"), HasNovaMetadata: g.flag()}
		if g.n(4) == 0 {
			d.NovaInstanceUUID = strings.ToUpper(inst(g.n(5)))
		}
		for k := range g.n(4) {
			v := vol(g.n(6))
			disk := Disk{Target: fmt.Sprintf("vd%c", 'a'+k), Bus: "virtio", Device: g.pick("disk", "cdrom", "lun"),
				Live: g.flag(), Config: g.flag()}
			switch g.n(5) {
			case 0:
				disk.Serial = v
			case 1:
				disk.Serial = strings.ToUpper(v)
			case 2:
				disk.Alias = "ua-" + v
			}
			disk.Source = g.pick("/dev/mapper/volume-"+v, "file:/var/lib/nova/mnt/ab12/volume-"+v, "",
				"/var/lib/nova/instances/"+d.UUID+"/disk", "rbd:volumes/volume-"+v)
			d.Disks = append(d.Disks, disk)
		}
		o.Libvirt.Domains = append(o.Libvirt.Domains, d)
	}
	for range g.n(5) {
		s := Server{ID: inst(g.n(5)), Host: host(), Status: g.pick("ACTIVE", "ACTIVE", "SHUTOFF", "MIGRATING", "ERROR"),
			VMState: "active", TaskState: g.pick("", "", "", "deleting", "migrating", "rebuilding"),
			MigrationInProgress: g.n(6) == 0}
		s.InstanceName = fmt.Sprintf("instance-%08x", g.n(5))
		for range g.n(3) {
			m := ServerVolume{VolumeID: vol(g.n(6)), Device: g.pick("/dev/vdb", "/dev/vdc", "")}
			if g.flag() {
				m.AttachmentID = attID(g.n(7))
			}
			s.Volumes = append(s.Volumes, m)
		}
		o.Nova.Servers = append(o.Nova.Servers, s)
	}
	for range g.n(6) {
		v := Volume{ID: vol(g.n(6)), Status: g.pick("in-use", "in-use", "available", "detaching", "attaching",
			"reserved", "error", "deleting", "maintenance"), Multiattach: g.n(5) == 0}
		for range g.n(3) {
			a := VolumeAttachment{ID: attID(g.n(7)), HostName: host(), Device: g.pick("/dev/vdb", "/dev/vdc", ""),
				AttachStatus: g.pick("attached", "", "attaching", "detached", "reserved", "error_detaching")}
			if g.n(5) != 0 {
				a.ServerID = inst(g.n(5))
			}
			v.Attachments = append(v.Attachments, a)
		}
		o.Cinder.Volumes = append(o.Cinder.Volumes, v)
	}
	for range g.n(4) {
		o.Mounts.Entries = append(o.Mounts.Entries, MountEntry{
			Mountpoint: g.pick("/var/lib/nova/mnt/ab12", "/var/lib/nova/mnt/cd34", "/var/lib/nova/mnt",
				"/var/lib/nova/mnt/../../etc", "/var/lib/nova/mntx/ab12", "/srv/other", "var/lib/nova/mnt/ab12"),
			Source:      g.pick("nfs-server:/export", "nfs-server:/export/other", ""),
			FSType:      "nfs4",
			SourceState: MountSourceState(g.pick(string(MountSourceGone), string(MountSourceGone), string(MountSourceReachable), string(MountSourceUnknown), "")),
		})
	}
	return o
}

func (g *gen) policy() Policy {
	p := Policy{Apply: g.n(3) != 2, MinSightings: 1 + g.n(4), MaxActions: g.n(7),
		NovaDetachMissingDisk: g.flag(), ActWithoutNova: g.flag()}
	p.MinAge = []time.Duration{0, 0, 10 * time.Minute, 30 * time.Minute}[g.n(4)]
	if g.n(3) != 0 {
		p.MountBases = []string{"/var/lib/nova/mnt"}
	}
	// One run in ten gets a policy Validate refuses.
	if g.n(10) == 9 {
		switch g.n(4) {
		case 0:
			p.MinSightings = 0
		case 1:
			p.MaxActions = -1
		case 2:
			p.MinAge = -time.Second
		default:
			p.MountBases = []string{g.pick("/", "relative", "/var/lib/nova/mnt/", "/var/lib/nova/../nova/mnt")}
		}
	}
	return p
}

// FuzzPlan plays a few runs of Plan over observations built from the fuzz
// bytes (four instances, five volumes, every source state, hostile mount
// paths and clock jumps) and checks the reconciler's safety promises after
// each run (see checkPlan).
func FuzzPlan(f *testing.F) {
	f.Add([]byte{}, []byte(nil))
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, []byte(goodMemory))
	f.Add(bytes.Repeat([]byte{3, 1, 4, 1, 5, 9, 2, 6}, 40), []byte(nil))
	f.Add(bytes.Repeat([]byte{0, 1}, 200), []byte(nil))
	f.Add(bytes.Repeat([]byte{255, 7, 0, 2, 1}, 80), []byte(`{"version":1,"host":"cmp-1","domains":3,"servers":3,"sightings":{}}`))
	f.Fuzz(func(t *testing.T, choices, memJSON []byte) {
		g := &gen{b: choices}
		pol := g.policy()
		runs := 1 + g.n(4)
		mem := NewMemory()
		if len(memJSON) > 0 {
			m, err := ParseMemory(bytes.NewReader(memJSON))
			if err != nil {
				return
			}
			mem = m
		}
		now := t0
		obs := g.observation()
		for run := range runs {
			if run > 0 {
				now = now.Add([]time.Duration{10 * time.Minute, 40 * time.Minute, 0, -time.Hour}[g.n(4)])
				if g.n(3) == 0 {
					obs = g.observation()
				}
			}
			res := checkPlan(t, obs, mem, pol, now)
			mem = res.Memory
		}
	})
}

// FuzzPlanJSON runs Plan over observations decoded from JSON, seeded with
// every observation of the scenario stories in testdata/scenarios.
func FuzzPlanJSON(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "scenarios", "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	n := 0
	for _, p := range files {
		if strings.HasSuffix(p, ".golden.json") {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		var s struct {
			Steps []struct {
				Observation json.RawMessage `json:"observation"`
			} `json:"steps"`
		}
		if err := json.Unmarshal(b, &s); err != nil {
			f.Fatalf("%s: %v", p, err)
		}
		for _, st := range s.Steps {
			if len(st.Observation) > 0 {
				f.Add([]byte(st.Observation), uint8(n))
				n++
			}
		}
	}
	if n == 0 {
		f.Fatal("no scenario observations found to seed from")
	}
	f.Fuzz(func(t *testing.T, obsJSON []byte, polBits uint8) {
		var obs Observation
		if err := json.Unmarshal(obsJSON, &obs); err != nil {
			return
		}
		pol := DefaultPolicy()
		pol.Apply = polBits&1 != 0
		pol.MinSightings = 1 + int(polBits>>1&3)
		pol.MaxActions = int(polBits >> 3 & 7)
		if polBits&64 != 0 {
			pol.MinAge = 0
		}
		if polBits&128 != 0 {
			pol.MountBases = []string{"/var/lib/nova/mnt"}
		}
		mem := NewMemory()
		now := t0
		for range 3 {
			mem = checkPlan(t, obs, mem, pol, now).Memory
			now = now.Add(31 * time.Minute)
		}
	})
}

var knownKinds = map[ActionKind]bool{ActionLibvirtDetach: true, ActionCinderAttachmentDelete: true,
	ActionNovaDetach: true, ActionLazyUnmount: true}

// checkPlan runs Plan and checks what must hold whatever was observed:
//   - obs is not modified, and the same inputs give the same result;
//   - only the four remedies exist, none of them deletes a volume, and each
//     that passed its gates names exactly what it touches (an attachment id,
//     a domain and a definition, a server, a mountpoint strictly below a
//     configured base);
//   - a dry-run, an aborted run or an invalid policy executes nothing;
//     a failed or suspiciously empty required source aborts the run;
//   - at most MaxActions actions execute, each seen often and long enough;
//   - an action that passed its gates satisfies its own preconditions
//     against the observation it was planned from;
//   - the result renders as a table and as valid JSON;
//   - the memory to save is one ParseMemory accepts.
func checkPlan(t *testing.T, obs Observation, mem Memory, pol Policy, now time.Time) Result {
	t.Helper()
	before, err := json.Marshal(obs)
	if err != nil {
		t.Fatal(err)
	}
	res := Plan(obs, mem, pol, now)
	after, _ := json.Marshal(obs)
	if !bytes.Equal(before, after) {
		t.Fatalf("Plan modified its observation")
	}
	if again := Plan(obs, mem, pol, now); !reflect.DeepEqual(res, again) {
		a, _ := json.MarshalIndent(res, "", " ")
		b, _ := json.MarshalIndent(again, "", " ")
		t.Fatalf("Plan is not deterministic:\n%s\n----\n%s", a, b)
	}
	exec := res.Executable()
	polErr := pol.Validate()
	for _, src := range []SourceStatus{obs.Libvirt.Source, obs.Cinder.Source} {
		if src.State != SourceOK && !res.Aborted {
			t.Fatalf("required source %+v is not ok, yet the run was not aborted", src)
		}
	}
	if (polErr != nil || obs.Host == "") && !res.Aborted {
		t.Fatalf("invalid policy (%v) or empty host %q, yet the run was not aborted", polErr, obs.Host)
	}
	if (!pol.Apply || res.Aborted || polErr != nil) && len(exec) > 0 {
		t.Fatalf("apply=%v aborted=%v policy error=%v, yet %d actions are executable", pol.Apply, res.Aborted, polErr, len(exec))
	}
	if len(exec) > max(pol.MaxActions, 0) {
		t.Fatalf("%d executable actions over the cap of %d", len(exec), pol.MaxActions)
	}
	findings := map[string]Finding{}
	for _, fd := range res.Findings {
		findings[fd.Key] = fd
	}
	for _, a := range res.Actions {
		if !knownKinds[a.Kind] || strings.Contains(strings.ToLower(string(a.Kind)), "volume_delete") {
			t.Fatalf("action kind %q is not one of the four remedies", a.Kind)
		}
		if a.State != StateReady && a.State != StateDryRun {
			continue
		}
		// The act step re-checks the preconditions against fresh state;
		// against the very state they were planned from they must hold.
		if err := CheckPreconditions(a, obs); err != nil {
			t.Fatalf("action %s %s fails its own preconditions on the observation it came from: %v", a.Kind, a.FindingKey, err)
		}
		switch a.Kind {
		case ActionCinderAttachmentDelete:
			if a.Attachment == "" || a.Volume == "" {
				t.Fatalf("attachment delete without an attachment id or volume: %+v", a)
			}
		case ActionLibvirtDetach:
			if a.Domain == "" || a.Disk == nil || (!a.Config && !a.Live) {
				t.Fatalf("libvirt detach without a domain, a disk or a definition: %+v", a)
			}
		case ActionNovaDetach:
			if a.Instance == "" || a.Volume == "" {
				t.Fatalf("nova detach without a server or volume: %+v", a)
			}
		case ActionLazyUnmount:
			if !pol.underBase(a.Mountpoint) || filepath.Clean(a.Mountpoint) != a.Mountpoint {
				t.Fatalf("unmount of %q, not a clean path strictly below the bases %q", a.Mountpoint, pol.MountBases)
			}
		}
		if a.State != StateReady {
			continue
		}
		fd, ok := findings[a.FindingKey]
		if !ok || fd.Skipped != "" || fd.Sightings < pol.MinSightings || now.Sub(fd.FirstSeen) < pol.MinAge {
			t.Fatalf("ready action %+v for finding %+v: not seen often or long enough", a, fd)
		}
	}
	var out bytes.Buffer
	if err := WriteTable(&out, res); err != nil {
		t.Fatalf("WriteTable: %v", err)
	}
	out.Reset()
	if err := WriteJSON(&out, res); err != nil || !json.Valid(out.Bytes()) {
		t.Fatalf("WriteJSON: %v (valid JSON: %v)", err, json.Valid(out.Bytes()))
	}
	b, err := json.Marshal(res.Memory)
	if err != nil {
		t.Fatalf("memory to save does not encode: %v", err)
	}
	if _, err := ParseMemory(bytes.NewReader(b)); err != nil {
		t.Fatalf("the memory Plan returns would be refused on the next run: %v\n%s", err, b)
	}
	return res
}
