package reconciler

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// liveOnly is vdisk after an earlier run removed it from the persistent
// config and the guest never acknowledged the live unplug.
func liveOnly(target string, v int) Disk {
	d := vdisk(target, v)
	d.Config = false
	return d
}

// TestPlanPendingLiveDetach: a zombie whose live detach an earlier run left
// pending (remembered in Memory.PendingDetaches) is retried live only, one
// short attempt, flagged LiveRetry, and its finding says since when; the
// memory forgets the pending detach once the zombie is no longer live-only,
// except when the run aborted.
func TestPlanPendingLiveDetach(t *testing.T) {
	zkey := "zombie_disk/" + inst(1) + "/" + vol(1)
	since := t0.Add(-time.Hour)
	pending := PendingDetach{Domain: inst(1), Volume: vol(1), Since: since, LastAttempt: t0.Add(-10 * time.Minute), Attempts: 9}
	memWith := func(p map[string]PendingDetach) Memory {
		m := NewMemory()
		m.Domains, m.Servers = 1, 1
		m.Sightings[zkey] = Sighting{Class: ClassZombieDisk, FirstSeen: since.Add(-time.Hour), LastSeen: t0.Add(-10 * time.Minute), Count: 5}
		m.PendingDetaches = p
		return m
	}
	zombieObs := func(d Disk) Observation {
		return obsOf([]Domain{domain(1, d)}, []Server{server(1)}, []Volume{volume(1, "available")})
	}
	cinderFailed := zombieObs(liveOnly("vdb", 1))
	cinderFailed.Cinder = Cinder{Source: SourceStatus{State: SourceFailed, Reason: "list volumes page 3: 503"}}
	dry := immediate()
	dry.Apply = false

	cases := []struct {
		name        string
		obs         Observation
		mem         Memory
		pol         Policy
		wantState   ActionState // "" = no libvirt_detach action expected
		wantConfig  bool
		wantRetry   bool
		wantDetail  string // substring of the zombie finding's detail ("" = no pending note)
		keepPending bool   // the next memory still holds the pending detach
	}{
		{name: "pending and live only: one live retry",
			obs: zombieObs(liveOnly("vdb", 1)), mem: memWith(map[string]PendingDetach{zkey: pending}), pol: immediate(),
			wantState: StateReady, wantRetry: true, wantDetail: "live detach pending since 2026-11-25T19:00:00Z (9 attempts so far)", keepPending: true},
		{name: "dry-run still says pending and plans the retry",
			obs: zombieObs(liveOnly("vdb", 1)), mem: memWith(map[string]PendingDetach{zkey: pending}), pol: dry,
			wantState: StateDryRun, wantRetry: true, wantDetail: "live detach pending since 2026-11-25T19:00:00Z", keepPending: true},
		{name: "not remembered: a live-only zombie gets the full detach",
			obs: zombieObs(liveOnly("vdb", 1)), mem: memWith(nil), pol: immediate(),
			wantState: StateReady},
		{name: "back in the persistent config: full detach again, pending forgotten",
			obs: zombieObs(vdisk("vdb", 1)), mem: memWith(map[string]PendingDetach{zkey: pending}), pol: immediate(),
			wantState: StateReady, wantConfig: true},
		{name: "zombie gone (power cycle dropped it): pending forgotten",
			obs: zombieObs(Disk{}), mem: memWith(map[string]PendingDetach{zkey: pending}), pol: immediate()},
		{name: "volume re-attached properly: no zombie, pending forgotten",
			obs: obsOf([]Domain{domain(1, liveOnly("vdb", 1))}, []Server{server(1, mapping(1, 1, "/dev/vdb"))}, []Volume{volume(1, "in-use", attachment(1, 1, "/dev/vdb"))}),
			mem: memWith(map[string]PendingDetach{zkey: pending}), pol: immediate()},
		{name: "aborted run (Cinder failed, zombie undecidable): nothing runs, pending kept",
			obs: cinderFailed, mem: memWith(map[string]PendingDetach{zkey: pending}), pol: immediate(),
			keepPending: true},
		{name: "a pending entry of another zombie does not make this one a retry",
			obs: zombieObs(liveOnly("vdb", 1)), mem: memWith(map[string]PendingDetach{"zombie_disk/" + inst(2) + "/" + vol(2): pending}), pol: immediate(),
			wantState: StateReady},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			if tt.obs.Libvirt.Domains[0].Disks[1].Target == "" {
				tt.obs.Libvirt.Domains[0].Disks = tt.obs.Libvirt.Domains[0].Disks[:1]
			}
			r := Plan(tt.obs, tt.mem, tt.pol, t0)
			var detaches []Action
			for _, a := range r.Actions {
				if a.Kind == ActionLibvirtDetach {
					detaches = append(detaches, a)
				}
			}
			switch {
			case tt.wantState == "" && len(detaches) != 0:
				t.Fatalf("detach actions %+v, want none", detaches)
			case tt.wantState != "" && len(detaches) != 1:
				t.Fatalf("%d detach actions (%+v), want exactly one per run", len(detaches), detaches)
			case tt.wantState != "":
				a := detaches[0]
				if a.State != tt.wantState || a.LiveRetry != tt.wantRetry || a.Config != tt.wantConfig || !a.Live {
					t.Errorf("action: state %s retry %v config %v live %v (%s); want %s retry %v config %v live true",
						a.State, a.LiveRetry, a.Config, a.Live, a.Reason, tt.wantState, tt.wantRetry, tt.wantConfig)
				}
			}
			var f *Finding
			for i := range r.Findings {
				if r.Findings[i].Key == zkey {
					f = &r.Findings[i]
				}
			}
			switch {
			case tt.wantDetail != "" && (f == nil || !strings.Contains(f.Detail, tt.wantDetail) || !f.LiveDetachPendingSince.Equal(since)):
				t.Errorf("finding %+v, want detail with %q and pending since %s", f, tt.wantDetail, since)
			case tt.wantDetail == "" && f != nil && (strings.Contains(f.Detail, "pending") || !f.LiveDetachPendingSince.IsZero()):
				t.Errorf("finding says pending: %+v", f)
			}
			_, kept := r.Memory.PendingDetaches[zkey]
			if kept != tt.keepPending {
				t.Errorf("next memory keeps the pending detach: %v, want %v (%+v)", kept, tt.keepPending, r.Memory.PendingDetaches)
			}
			if kept && r.Memory.PendingDetaches[zkey] != pending {
				t.Errorf("Plan changed the pending entry: %+v", r.Memory.PendingDetaches[zkey])
			}
			if _, err := ParseMemory(bytes.NewReader(mustJSON(t, r.Memory))); err != nil {
				t.Errorf("next memory does not load: %v", err)
			}
		})
	}
}

func TestNoteLiveDetach(t *testing.T) {
	zkey := "zombie_disk/" + inst(1) + "/" + vol(1)
	plan := func(mem Memory) Result {
		return Plan(obsOf([]Domain{domain(1, liveOnly("vdb", 1))}, []Server{server(1)}, []Volume{volume(1, "available")}), mem, immediate(), t0)
	}
	earlier := PendingDetach{Domain: inst(1), Volume: vol(1), Since: t0.Add(-time.Hour), LastAttempt: t0.Add(-time.Minute), Attempts: 8}
	withPending := func() Memory {
		m := NewMemory()
		m.PendingDetaches = map[string]PendingDetach{zkey: earlier}
		return m
	}
	cases := []struct {
		name     string
		mem      Memory
		key      string
		pending  bool
		attempts int
		at       time.Time
		wantOK   bool
		want     *PendingDetach // nil: no entry afterwards
	}{
		{name: "first pending: remembered with this run's attempts", mem: NewMemory(), key: zkey, pending: true, attempts: 8, at: t0, wantOK: true,
			want: &PendingDetach{Domain: inst(1), Volume: vol(1), Since: t0, LastAttempt: t0, Attempts: 8}},
		{name: "retry still pending: since kept, one more attempt", mem: withPending(), key: zkey, pending: true, attempts: 1, at: t0, wantOK: true,
			want: &PendingDetach{Domain: inst(1), Volume: vol(1), Since: earlier.Since, LastAttempt: t0, Attempts: 9}},
		{name: "acknowledged at last: forgotten", mem: withPending(), key: zkey, pending: false, attempts: 1, at: t0, wantOK: true},
		{name: "clock stepped back: counting restarts", mem: withPending(), key: zkey, pending: true, attempts: 1, at: t0.Add(-2 * time.Hour), wantOK: true,
			want: &PendingDetach{Domain: inst(1), Volume: vol(1), Since: t0.Add(-2 * time.Hour), LastAttempt: t0.Add(-2 * time.Hour), Attempts: 1}},
		{name: "no such action: nothing recorded", mem: NewMemory(), key: "zombie_disk/x/y", pending: true, attempts: 1, at: t0},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			r := plan(tt.mem)
			_, ok := r.NoteLiveDetach(tt.key, tt.pending, tt.attempts, tt.at)
			if ok != tt.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tt.wantOK)
			}
			got, has := r.Memory.PendingDetaches[zkey]
			switch {
			case tt.want == nil && has:
				t.Errorf("pending detach %+v, want none", got)
			case tt.want != nil && (!has || got != *tt.want):
				t.Errorf("pending detach %+v (present %v), want %+v", got, has, *tt.want)
			}
			if _, err := ParseMemory(bytes.NewReader(mustJSON(t, r.Memory))); err != nil {
				t.Errorf("memory after NoteLiveDetach does not load: %v", err)
			}
		})
	}
}

// TestPendingAcrossRuns walks the memory through saved runs: run 1's full
// detach is pending (8 attempts), runs 2 and 3 plan exactly one live retry
// each and count one attempt each; when the disk is gone the entry goes.
func TestPendingAcrossRuns(t *testing.T) {
	zkey := "zombie_disk/" + inst(1) + "/" + vol(1)
	obs := func(d ...Disk) Observation {
		return obsOf([]Domain{domain(1, d...)}, []Server{server(1)}, []Volume{volume(1, "available")})
	}
	mem := NewMemory()
	r1 := Plan(obs(vdisk("vdb", 1)), mem, immediate(), t0)
	a1 := r1.Executable()
	if len(a1) != 1 || a1[0].LiveRetry || !a1[0].Config {
		t.Fatalf("run 1: %+v, want one full detach", a1)
	}
	r1.NoteLiveDetach(zkey, true, 8, t0)
	mem = reload(t, r1.Memory)
	for run := 2; run <= 3; run++ {
		at := t0.Add(time.Duration(run-1) * 15 * time.Minute)
		r := Plan(obs(liveOnly("vdb", 1)), mem, immediate(), at)
		ex := r.Executable()
		if len(ex) != 1 || !ex[0].LiveRetry || ex[0].Config {
			t.Fatalf("run %d: executable %+v, want exactly one live retry", run, ex)
		}
		p, _ := r.NoteLiveDetach(zkey, true, 1, at)
		if p.Attempts != 8+run-1 || !p.Since.Equal(t0) {
			t.Fatalf("run %d: pending %+v, want %d attempts since %s", run, p, 8+run-1, t0)
		}
		mem = reload(t, r.Memory)
	}
	r4 := Plan(obs(), mem, immediate(), t0.Add(time.Hour))
	if len(r4.Findings) != 0 || r4.Memory.PendingDetaches != nil {
		t.Errorf("after the power cycle: findings %+v, pending %+v", r4.Findings, r4.Memory.PendingDetaches)
	}
}

func mustJSON(t *testing.T, m Memory) []byte {
	t.Helper()
	b, err := json.Marshal(m.clone())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func reload(t *testing.T, m Memory) Memory {
	t.Helper()
	back, err := ParseMemory(bytes.NewReader(mustJSON(t, m)))
	if err != nil {
		t.Fatal(err)
	}
	return back
}
