package libvirtscan

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// hostileDomain is one bad or odd domain XML document and what ParseDomain
// makes of it: the exact error, or (wantErr "") the accepted result's name
// and disk targets.
type hostileDomain struct {
	name    string
	xml     string
	wantErr string
	// For accepted documents:
	wantName    string
	wantTargets []string
}

const badXML = "libvirtscan: not a domain XML document: "

func hostileDomains() []hostileDomain {
	return []hostileDomain{
		{name: "not XML", xml: "hello world", wantErr: badXML + "no <domain> element"},
		{name: "empty", xml: "", wantErr: badXML + "no <domain> element"},
		{name: "truncated inside a disk",
			xml:     `<domain type="kvm"><name>vm</name><devices><disk type="file"><target dev="vda"`,
			wantErr: badXML + "disk: XML syntax error on line 1: unexpected EOF"},
		{name: "truncated after the root", xml: `<domain type="kvm"><name>vm</name>`,
			wantErr: badXML + "XML syntax error on line 1: unexpected EOF"},
		{name: "wrong root", xml: `<network><name>n</name></network>`, wantErr: badXML + "root element <network>"},
		{name: "mismatched end tag", xml: `<domain><name>vm</devices></domain>`,
			wantErr: badXML + "<name>: XML syntax error on line 1: element <name> closed by </devices>"},
		{name: "no name and no uuid", xml: `<domain type="kvm"></domain>`, wantErr: badXML + "no name and no uuid"},
		{name: "two domain roots",
			xml:     `<domain><name>a</name><devices><disk><target dev="vda"/></disk></devices></domain><domain><name>b</name></domain>`,
			wantErr: badXML + "second root element <domain>"},
		{name: "disk attribute not a number",
			xml:     `<domain><name>vm</name><devices><disk type="file"><target dev="vda"/><driver name="qemu" iothread="abc"/></disk></devices></domain>`,
			wantErr: badXML + `disk: strconv.ParseUint: parsing "abc": invalid syntax`},
		{name: "billion laughs (custom entities are not expanded)",
			xml: `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">` +
				`<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">` +
				`<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>` +
				`<domain><name>&lol3;</name></domain>`,
			wantErr: badXML + "<name>: XML syntax error on line 1: invalid character entity &lol3;"},
		{name: "external entity",
			xml:     `<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><domain><name>&x;</name></domain>`,
			wantErr: badXML + "<name>: XML syntax error on line 1: invalid character entity &x;"},
		{name: "non-UTF-8 name", xml: "<domain><name>v\xffm</name></domain>",
			wantErr: badXML + "<name>: XML syntax error on line 1: invalid UTF-8"},
		{name: "deeply nested unknown elements inside a disk (skipped)",
			xml: `<domain><name>vm</name><devices><disk type="file"><target dev="vda"/>` +
				strings.Repeat("<x>", 20000) + strings.Repeat("</x>", 20000) + `</disk></devices></domain>`,
			wantName: "vm", wantTargets: []string{"vda"}},
		{name: "deeply nested in a skipped element (skipped, not recursed)",
			xml: `<domain><name>vm</name><devices>` + strings.Repeat("<x>", 20000) +
				strings.Repeat("</x>", 20000) + `</devices></domain>`,
			wantName: "vm", wantTargets: []string{}},
		{name: "huge attribute (1 MiB type) is taken as given",
			xml:      `<domain type="` + strings.Repeat("k", 1<<20) + `"><name>vm</name></domain>`,
			wantName: "vm", wantTargets: []string{}},
		// Documents libvirt never writes, accepted as they are: the scan
		// reports them and the callers decide (a disk without a target has
		// no guest name; a bad uuid matches no Nova instance).
		{name: "disk without target",
			xml:      `<domain><name>vm</name><devices><disk type="file" device="disk"><source file="/x"/></disk></devices></domain>`,
			wantName: "vm", wantTargets: []string{""}},
		{name: "duplicate targets (kept, ordered by source)",
			xml: `<domain><name>vm</name><devices><disk type="file"><source file="/b"/><target dev="vdb"/></disk>` +
				`<disk type="file"><source file="/a"/><target dev="vdb"/></disk></devices></domain>`,
			wantName: "vm", wantTargets: []string{"vdb", "vdb"}},
		{name: "bad uuid", xml: `<domain><name>vm</name><uuid>NOT-a-uuid</uuid></domain>`,
			wantName: "vm", wantTargets: []string{}},
	}
}

// TestParseDomainHostile: each hostile document fails with exactly its
// error (wrapping ErrBadXML) or is accepted with exactly its name and disk
// targets, and none takes more than a second (no entity expansion, no
// quadratic path).
func TestParseDomainHostile(t *testing.T) {
	for _, tc := range hostileDomains() {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			def, err := ParseDomainBytes([]byte(tc.xml))
			if d := time.Since(start); d > time.Second {
				t.Errorf("took %v", d)
			}
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("accepted: %+v", def)
				}
				if !errors.Is(err, ErrBadXML) || err.Error() != tc.wantErr {
					t.Fatalf("error %q (ErrBadXML: %v), want %q", err, errors.Is(err, ErrBadXML), tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("rejected: %v", err)
			}
			targets := []string{}
			for _, d := range def.Disks {
				targets = append(targets, d.Target)
			}
			if def.Name != tc.wantName || strings.Join(targets, ",") != strings.Join(tc.wantTargets, ",") ||
				len(targets) != len(tc.wantTargets) {
				t.Fatalf("got name %q targets %q, want %q %q", def.Name, targets, tc.wantName, tc.wantTargets)
			}
		})
	}
}
