package reconciler

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// Hostile memory files: each is refused with ErrCorruptMemory and a message
// that says what is wrong (the operator fixes or removes the file; the
// reconciler never guesses). The whole message is compared because it is
// what the operator reads; the class is checked with errors.Is.
func TestHostileMemoryFiles(t *testing.T) {
	const good = goodMemory
	with := func(old, new string) string {
		if !strings.Contains(good, old) {
			t.Fatalf("%q not in the good memory", old)
		}
		return strings.Replace(good, old, new, 1)
	}
	tests := []struct {
		name, in, want string
	}{
		{"empty file", "", "corrupt reconciler memory: EOF"},
		{"only white space", "\n  \n", "corrupt reconciler memory: EOF"},
		{"null", "null", "corrupt reconciler memory: unsupported reconciler memory version: version 0, this build reads versions 1 and 2 (fix or remove the file)"},
		{"an array", "[]", "corrupt reconciler memory: json: cannot unmarshal array into Go value of type reconciler.Memory"},
		{"truncated", good[:40], "corrupt reconciler memory: unexpected EOF"},
		{"byte order mark", "\ufeff" + good, "corrupt reconciler memory: invalid character 'ï' looking for beginning of value"},
		{"written by a newer version", with(`"version":2`, `"version":3`), "corrupt reconciler memory: unsupported reconciler memory version: version 3, this build reads versions 1 and 2 (a newer cinderwarden wrote it: upgrade, or remove the file to start counting afresh)"},
		{"no version", with(`"version":2,`, ``), "corrupt reconciler memory: unsupported reconciler memory version: version 0, this build reads versions 1 and 2 (fix or remove the file)"},
		{"version as a string", with(`"version":2`, `"version":"2"`), "corrupt reconciler memory: json: cannot unmarshal string into Go struct field Memory.version of type int"},
		{"unknown field", with(`"servers":0`, `"servers":0,"extra":true`), "corrupt reconciler memory: json: unknown field \"extra\""},
		{"trailing object", good + `{}`, "corrupt reconciler memory: trailing data after the JSON object"},
		{"two files concatenated", good + "\n" + good, "corrupt reconciler memory: trailing data after the JSON object"},
		{"zero count", with(`"count":2`, `"count":0`), "corrupt reconciler memory: sighting \"k\": count 0, first 2026-11-25 20:00:00 +0000 UTC, last 2026-11-25 20:10:00 +0000 UTC"},
		{"negative count", with(`"count":2`, `"count":-5`), "corrupt reconciler memory: sighting \"k\": count -5, first 2026-11-25 20:00:00 +0000 UTC, last 2026-11-25 20:10:00 +0000 UTC"},
		{"last sighting before the first", with(`20:10:00Z`, `19:00:00Z`), "corrupt reconciler memory: sighting \"k\": count 2, first 2026-11-25 20:00:00 +0000 UTC, last 2026-11-25 19:00:00 +0000 UTC"},
		{"no first sighting", with(`"first_seen":"2026-11-25T20:00:00Z",`, ``), "corrupt reconciler memory: sighting \"k\": count 2, first 0001-01-01 00:00:00 +0000 UTC, last 2026-11-25 20:10:00 +0000 UTC"},
		{"time that is not RFC 3339", with(`2026-11-25T20:00:00Z`, `yesterday`), "corrupt reconciler memory: parsing time \"yesterday\" as \"2006-01-02T15:04:05Z07:00\": cannot parse \"yesterday\" as \"2006\""},
		{"negative domain count", with(`"domains":1`, `"domains":-1`), "corrupt reconciler memory: negative counts"},
		{"negative empty-run count", with(`"servers":0`, `"servers":0,"servers_empty_runs":-1`), "corrupt reconciler memory: negative counts"},
		{"sightings as a list", `{"version":1,"domains":0,"servers":0,"sightings":[]}`, "corrupt reconciler memory: json: cannot unmarshal array into Go struct field Memory.sightings of type map[string]reconciler.Sighting"},
		{"count overflows int", with(`"count":2`, `"count":9223372036854775808`), "corrupt reconciler memory: json: cannot unmarshal number 9223372036854775808 into Go struct field Sighting.sightings.count of type int"},
		{"pending detach without attempts", with(`"sightings":{`, `"pending_detaches":{"k":{"domain":"d","volume":"v","since":"2026-11-25T20:05:00Z","last_attempt":"2026-11-25T20:05:00Z","attempts":0}},"sightings":{`),
			"corrupt reconciler memory: pending detach \"k\": domain \"d\", volume \"v\", 0 attempts, since 2026-11-25 20:05:00 +0000 UTC, last 2026-11-25 20:05:00 +0000 UTC"},
		{"pending detaches in a version 1 file", `{"version":1,"domains":0,"servers":0,"sightings":{},"pending_detaches":{}}`, "corrupt reconciler memory: version 1 has no pending_detaches"},
		{"fractional count", with(`"count":2`, `"count":2.5`), "corrupt reconciler memory: json: cannot unmarshal number 2.5 into Go struct field Sighting.sightings.count of type int"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseMemory(strings.NewReader(tt.in))
			if !errors.Is(err, ErrCorruptMemory) {
				t.Fatalf("err = %v, want ErrCorruptMemory", err)
			}
			if err.Error() != tt.want {
				t.Errorf("error\n got %q\nwant %q", err.Error(), tt.want)
			}
		})
	}
}

// A clock that steps back (NTP correcting a fast clock, a bad RTC at boot)
// must not make Plan save a memory the next run refuses as corrupt (last
// sighting before the first), and must not bring an action forward: the
// sighting count starts again.
func TestPlanClockStepsBack(t *testing.T) {
	obs := obsOf([]Domain{domain(1, vdisk("vdb", 1))}, []Server{server(1)}, []Volume{volume(1, "in-use")})
	pol := DefaultPolicy()
	mem := NewMemory()
	for i, step := range []struct {
		at        time.Time
		sightings int
	}{
		{t0, 1}, {t0.Add(10 * time.Minute), 2}, {t0.Add(-time.Hour), 1}, {t0.Add(-50 * time.Minute), 2},
	} {
		res := Plan(obs, mem, pol, step.at)
		if len(res.Findings) != 1 || res.Findings[0].Sightings != step.sightings {
			t.Fatalf("run %d at %s: findings %+v, want one seen %d times", i, step.at.Format(time.TimeOnly), res.Findings, step.sightings)
		}
		b, err := json.Marshal(res.Memory)
		if err != nil {
			t.Fatal(err)
		}
		if mem, err = ParseMemory(bytes.NewReader(b)); err != nil {
			t.Fatalf("run %d at %s saved a memory the next run refuses: %v", i, step.at.Format(time.TimeOnly), err)
		}
	}
}

// A memory file whose count is already the largest int does not wrap to a
// negative count (which the next run would refuse).
func TestPlanSightingCountSaturates(t *testing.T) {
	obs := obsOf([]Domain{domain(1, vdisk("vdb", 1))}, []Server{server(1)}, []Volume{volume(1, "in-use")})
	k := key(ClassZombieDisk, inst(1), vol(1))
	mem := NewMemory()
	mem.Host = testHost
	mem.Domains, mem.Servers = 1, 1
	mem.Sightings[k] = Sighting{Class: ClassZombieDisk, FirstSeen: t0, LastSeen: t0, Count: math.MaxInt}
	res := Plan(obs, mem, DefaultPolicy(), t0.Add(time.Hour))
	if got := res.Memory.Sightings[k].Count; got != math.MaxInt {
		t.Fatalf("count after MaxInt = %d, want it to stay at MaxInt", got)
	}
	if res.Findings[0].Sightings != math.MaxInt {
		t.Fatalf("finding sightings = %d", res.Findings[0].Sightings)
	}
}

// Observations with records lacking the ids actions are keyed on abort the
// run with a reason naming the record; nothing is planned against "".
// (FuzzPlanJSON found a volume without id whose attachment without id got a
// ready cinder_attachment_delete.)
func TestHostileObservationsWithoutIDs(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Observation)
		want   string
	}{
		{"domain without UUID", func(o *Observation) { o.Libvirt.Domains[0].UUID = "" },
			"libvirt: domain instance-00000001 has no UUID"},
		{"server without id", func(o *Observation) { o.Nova.Servers[0].ID = "" },
			"nova: server vm-1 has no id"},
		{"mapping without volume id", func(o *Observation) { o.Nova.Servers[0].Volumes[0].VolumeID = "" },
			"nova: server " + inst(1) + " has a volume mapping without a volume id"},
		{"volume without id", func(o *Observation) { o.Cinder.Volumes[0].ID = "" },
			"cinder: a volume has no id"},
		{"attachment without id", func(o *Observation) { o.Cinder.Volumes[0].Attachments[0].ID = "" },
			"cinder: volume " + vol(1) + " has an attachment without an id"},
		// FuzzPlan found this one: two findings keyed alike, ordered by chance.
		{"one attachment id on two volumes", func(o *Observation) {
			o.Cinder.Volumes[1].Attachments[0].ID = o.Cinder.Volumes[0].Attachments[0].ID
		}, "cinder: attachment " + attID(1) + " is listed on volumes " + vol(1) + " and " + vol(2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A stale attachment (volume 1 on instance 1, no disk) next to
			// a healthy mapping, so there is something to act on.
			obs := obsOf([]Domain{domain(1, vdisk("vdc", 2))},
				[]Server{server(1, mapping(2, 2, "/dev/vdc"))},
				[]Volume{volume(1, "in-use", attachment(1, 1, "/dev/vdb")), volume(2, "in-use", attachment(2, 1, "/dev/vdc"))})
			if res := Plan(obs, NewMemory(), immediate(), t0); res.Aborted || len(res.Executable()) != 1 {
				t.Fatalf("the well-formed observation: aborted %v %q, %d executable", res.Aborted, res.AbortReasons, len(res.Executable()))
			}
			tt.mutate(&obs)
			res := Plan(obs, NewMemory(), immediate(), t0)
			if !res.Aborted || !slices.Contains(res.AbortReasons, tt.want) {
				t.Fatalf("abort reasons %q, want one %q", res.AbortReasons, tt.want)
			}
			if n := len(res.Executable()); n != 0 {
				t.Fatalf("%d executable actions on an aborted run", n)
			}
		})
	}
}
