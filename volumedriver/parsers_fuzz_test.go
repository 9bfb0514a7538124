package volumedriver

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// dockerName is Docker's RestrictedNamePattern (moby daemon/names), written
// here independently of ValidateName's hand-written loop.
var dockerName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// FuzzValidateName: ValidateName accepts exactly Docker's pattern at most
// MaxNameLen bytes long; every rejection is a *NameError.
func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"", "a", "ab", "db-data", "_x", "a/b", "a:b", "a b", "vol.1_x-y", "é1", "a\x00b",
		"1" + strings.Repeat("x", MaxNameLen-1), "1" + strings.Repeat("x", MaxNameLen), "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := ValidateName(name)
		want := dockerName.MatchString(name) && len(name) <= MaxNameLen
		if (err == nil) != want {
			t.Fatalf("ValidateName(%q) = %v, Docker's pattern and ≤%d bytes says %v", name, err, MaxNameLen, want)
		}
		var ne *NameError
		if err != nil && (!errors.As(err, &ne) || !errors.Is(err, ErrInvalidName)) {
			t.Fatalf("ValidateName(%q) error %v is not a *NameError", name, err)
		}
	})
}

// optionsFrom turns fuzz text into an options map: one "key=value" per line.
func optionsFrom(s string) map[string]string {
	opts := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if line == "" {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		opts[k] = v
	}
	return opts
}

// FuzzParseCreateOptions: on success every value is within its allowed set
// or range and passed through unchanged; on failure the error is an
// *OptionError naming options that were given (or, for unknown keys, all
// of them), and its message names them.
func FuzzParseCreateOptions(f *testing.F) {
	for _, s := range []string{"", "size=10", "size=0", "size=1025", "size=010", "size=-1", "size=99999999999999999999",
		"fstype=xfs", "fstype=btrfs", "snapshot=s\nsource=v", "snapshot=s", "source=v\nsize=5",
		"preempt=yes\npreempt_force=1", "preempt=no\npreempt_force=true", "preempt=maybe", "preempt_force=FALSE",
		"type=ssd\navailability_zone=nova\ndescription=", "description=a\x01b", "Size=1", "bogus=1\nzz=2",
		"type=" + strings.Repeat("t", 256), "type="} {
		f.Add(s)
	}
	p := DefaultOptionPolicy()
	f.Fuzz(func(t *testing.T, s string) {
		opts := optionsFrom(s)
		o, err := ParseCreateOptions(opts, p)
		if err != nil {
			var oe *OptionError
			if !errors.As(err, &oe) || len(oe.Option) == 0 {
				t.Fatalf("%q: error %v is not an *OptionError naming an option", opts, err)
			}
			for _, k := range oe.Option {
				if _, given := opts[k]; !given {
					t.Fatalf("%q: error %v names %q, which was not given", opts, err, k)
				}
				if !strings.Contains(err.Error(), k) && !strings.Contains(err.Error(), strconv.Quote(k)) {
					t.Fatalf("%q: message %q does not name %q", opts, err, k)
				}
			}
			return
		}
		_, sizeGiven := opts[OptSize]
		switch {
		case o.SizeGiB >= 1 && o.SizeGiB <= p.MaxSizeGiB:
		case o.SizeGiB == 0 && !sizeGiven && (o.Snapshot != "" || o.Source != ""):
		default:
			t.Fatalf("%q: size %d", opts, o.SizeGiB)
		}
		if !sizeGiven && o.Snapshot == "" && o.Source == "" && o.SizeGiB != p.DefaultSizeGiB {
			t.Fatalf("%q: size %d without a size option, want the default %d", opts, o.SizeGiB, p.DefaultSizeGiB)
		}
		if !o.FSType.Valid() || (opts[OptFSType] != "" && string(o.FSType) != opts[OptFSType]) {
			t.Fatalf("%q: fstype %q", opts, o.FSType)
		}
		if o.Snapshot != "" && o.Source != "" {
			t.Fatalf("%q: both snapshot and source", opts)
		}
		for k, got := range map[string]string{OptType: o.Type, OptAvailabilityZone: o.AvailabilityZone,
			OptSnapshot: o.Snapshot, OptSource: o.Source, OptDescription: o.Description} {
			if got != opts[k] || checkField(got) != "" {
				t.Fatalf("%q: %s = %q", opts, k, got)
			}
		}
		if o.Preempt < PreemptDefault || o.Preempt > PreemptForce {
			t.Fatalf("%q: preempt %v", opts, o.Preempt)
		}
		if _, set := opts[OptPreempt]; !set && o.Preempt != PreemptDefault && o.Preempt != PreemptForce {
			t.Fatalf("%q: preempt %v without a preempt option", opts, o.Preempt)
		}
	})
}

// FuzzDecodeRequests: each plugin request decoder, given any body, either
// returns a request whose name is valid (and mount id, where there is one)
// or fails with a *RequestError, *NameError or *OptionError; none panics.
func FuzzDecodeRequests(f *testing.F) {
	for _, s := range []string{"", " ", "{}", "null", "[]", `{"Name":"db"}`, `{"Name":"db","ID":"abc"}`,
		`{"Name":"db","ID":"a b"}`, `{"Name":"a/b","ID":"x"}`, `{"Name":"db","Opts":{"size":"5"}}`,
		`{"Name":"db","Opts":{"nope":"1"}}`, `{"Name":"db"`, `{"Name":1}`, `{"Name":"db"} trailing`,
		`{"Name":"db","ID":"` + strings.Repeat("f", 129) + `"}`, "\xff"} {
		f.Add([]byte(s))
	}
	p := DefaultOptionPolicy()
	f.Fuzz(func(t *testing.T, body []byte) {
		check := func(op string, name, id *string, err error) {
			if err != nil {
				var re *RequestError
				var ne *NameError
				var oe *OptionError
				if !errors.As(err, &re) && !errors.As(err, &ne) && !errors.As(err, &oe) {
					t.Fatalf("%s %q: error %T %v is not a request, name or option error", op, body, err, err)
				}
				return
			}
			if !dockerName.MatchString(*name) || len(*name) > MaxNameLen {
				t.Fatalf("%s %q: accepted name %q", op, body, *name)
			}
			if id != nil && ValidateMountID(*id) != nil {
				t.Fatalf("%s %q: accepted mount id %q", op, body, *id)
			}
		}
		c, _, err := DecodeCreate(body, p)
		check("Create", &c.Name, nil, err)
		m, err := DecodeMount(body)
		check("Mount", &m.Name, &m.ID, err)
		u, err := DecodeUnmount(body)
		check("Unmount", &u.Name, &u.ID, err)
		r, err := DecodeRemove(body)
		check("Remove", &r.Name, nil, err)
		g, err := DecodeGet(body)
		check("Get", &g.Name, nil, err)
		pa, err := DecodePath(body)
		check("Path", &pa.Name, nil, err)
	})
}

// FuzzDecodeState: an accepted state file survives EncodeState and decodes
// to the same state (and encoding is a fixed point); a rejected one is a
// *StateFileError when read through LoadState.
func FuzzDecodeState(f *testing.F) {
	good, err := EncodeState(sampleState())
	if err != nil {
		f.Fatal(err)
	}
	empty, _ := EncodeState(NodeState{})
	f.Add(good)
	f.Add(empty)
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`{"version":2,"volumes":[]}`))
	f.Add([]byte(`{"version":1,"volumes":[],"extra":1}`))
	f.Add([]byte(`{"version":1,"volumes":[]} {}`))
	f.Add([]byte(`{"volumes":[]}`))
	f.Add(good[:len(good)/2])
	f.Add(bytes.Replace(good, []byte(`"mounted"`), []byte(`"flying"`), 1))
	path := filepath.Join(f.TempDir(), "state.json")
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := DecodeState(b)
		if err != nil {
			if werr := os.WriteFile(path, b, 0o600); werr != nil {
				t.Fatal(werr)
			}
			_, lerr := LoadState(path)
			var sfe *StateFileError
			if !errors.As(lerr, &sfe) {
				t.Fatalf("DecodeState rejected %q (%v) but LoadState gave %T %v", b, err, lerr, lerr)
			}
			return
		}
		enc, err := EncodeState(n)
		if err != nil {
			t.Fatalf("accepted %q but EncodeState fails: %v", b, err)
		}
		back, err := DecodeState(enc)
		if err != nil {
			t.Fatalf("EncodeState output rejected: %v\n%s", err, enc)
		}
		if !reflect.DeepEqual(n, back) {
			t.Fatalf("round trip changed the state:\n%+v\n%+v", n, back)
		}
		enc2, err := EncodeState(back)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable (%v):\n%s\n%s", err, enc, enc2)
		}
	})
}

// FuzzMetadata: SettingsFromMetadata and ParseTakeoverRequest never panic
// and fail only with a *MetadataError; a parsed takeover request renders
// back to exactly the takeover keys and parses to itself; parsed settings
// are within their allowed sets.
func FuzzMetadata(f *testing.F) {
	req := TakeoverRequest{Taker: "i-1", RequestedAt: time.Date(2026, 11, 25, 22, 0, 0, 0, time.UTC), Token: 7, Force: true}
	f.Add(metadataText(req.Metadata()))
	f.Add(metadataText(ManagedMetadata(CreateOptions{FSType: FSXFS, Preempt: PreemptForce})))
	for _, s := range []string{"", "cinderwarden.managed=maybe", "cinderwarden.fstype=zfs",
		"cinderwarden.preempt=false\ncinderwarden.preempt_force=true", "cinderwarden.generation=-1",
		"cinderwarden.generation=18446744073709551616", "cinderwarden.takeover.taker=",
		"cinderwarden.takeover.taker=i\ncinderwarden.takeover.requested_at=2026-11-25T22:00:00+05:00\ncinderwarden.takeover.token=1",
		"cinderwarden.takeover.taker=i\ncinderwarden.takeover.requested_at=2026-11-25T22:00:00.5Z\ncinderwarden.takeover.token=1",
		"cinderwarden.takeover.taker=i\ncinderwarden.takeover.requested_at=yesterday\ncinderwarden.takeover.token=0",
		"other=1\ncinderwarden.takeover.taker=i\ncinderwarden.takeover.requested_at=2026-11-25T22:00:00Z\ncinderwarden.takeover.token=2\ncinderwarden.takeover.force=YES"} {
		f.Add(s)
	}
	p := DefaultOptionPolicy()
	f.Fuzz(func(t *testing.T, s string) {
		md := optionsFrom(s)
		st, err := SettingsFromMetadata(md, p)
		if err != nil {
			var me *MetadataError
			if !errors.As(err, &me) || !errors.Is(err, ErrInvalidMetadata) {
				t.Fatalf("%q: error %T %v is not a *MetadataError", md, err, err)
			}
			if _, given := md[me.Key]; !given {
				t.Fatalf("%q: error names key %q, which is absent", md, me.Key)
			}
		} else if !st.FSType.Valid() || st.Preempt < PreemptDefault || st.Preempt > PreemptForce ||
			st.FSTypeRecorded != (md[MetaFSType] != "") {
			t.Fatalf("%q: settings %+v", md, st)
		}

		r, ok, err := ParseTakeoverRequest(md)
		if err != nil {
			var me *MetadataError
			if !errors.As(err, &me) || ok {
				t.Fatalf("%q: error %T %v (ok %v)", md, err, err, ok)
			}
			return
		}
		if !ok {
			if _, present := md[MetaTakeoverTaker]; present {
				t.Fatalf("%q: taker present but no request", md)
			}
			return
		}
		out := r.Metadata()
		keys := make([]string, 0, len(out))
		for k := range out {
			keys = append(keys, k)
		}
		if !sameSet(keys, TakeoverKeys()) {
			t.Fatalf("%q: re-serialised keys %q, want %q", md, keys, TakeoverKeys())
		}
		if out[MetaTakeoverTaker] != md[MetaTakeoverTaker] || r.Token == 0 ||
			out[MetaTakeoverToken] != strconv.FormatUint(r.Token, 10) {
			t.Fatalf("%q: re-serialised %q", md, out)
		}
		again, ok, err := ParseTakeoverRequest(out)
		if err != nil || !ok || !again.RequestedAt.Equal(r.RequestedAt.Truncate(time.Second)) ||
			again.Taker != r.Taker || again.Token != r.Token || again.Force != r.Force {
			t.Fatalf("%q: %+v re-parsed as %+v (%v, %v)", md, r, again, ok, err)
		}
	})
}

func metadataText(md map[string]string) string {
	var b strings.Builder
	for k, v := range md {
		b.WriteString(k + "=" + v + "\n")
	}
	return b.String()
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]int{}
	for _, x := range a {
		seen[x]++
	}
	for _, x := range b {
		if seen[x] == 0 {
			return false
		}
		seen[x]--
	}
	return true
}
