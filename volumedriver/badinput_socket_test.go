package volumedriver

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestBadInputOverSocket POSTs every row of the bad-input table to the real
// plugin server on a unix socket (driver wired to the simulator): each is
// refused with status 500, the protocol's media type and exactly the
// table's message, and none reaches Cinder or Nova.
func TestBadInputOverSocket(t *testing.T) {
	p := DefaultOptionPolicy()
	n := newSimNode(t, simNodeOptions{policy: &p})
	hc := n.serve(t)
	before := n.cloud.APICalls()
	for _, tc := range badInputs {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := hc.Post("http://plugin"+tc.path, ContentType, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusInternalServerError {
				t.Errorf("status %d, want 500; body %s", resp.StatusCode, b)
			}
			if ct := resp.Header.Get("Content-Type"); ct != ContentType {
				t.Errorf("Content-Type %q", ct)
			}
			var er struct{ Err string }
			if err := json.Unmarshal(b, &er); err != nil {
				t.Fatalf("body %q: %v", b, err)
			}
			if want := strings.ReplaceAll(tc.msg, "\n", "; "); er.Err != want {
				t.Errorf("Err:\n got %q\nwant %q", er.Err, want)
			}
		})
	}
	if after := n.cloud.APICalls(); after != before {
		t.Errorf("bad requests made %d cloud API calls", after-before)
	}
}

// TestProtocolBasicsOverSocket: Activate, Capabilities and an empty List
// answer like Docker expects.
func TestProtocolBasicsOverSocket(t *testing.T) {
	n := newSimNode(t, simNodeOptions{})
	hc := n.serve(t)
	for path, want := range map[string]string{
		PathActivate:     `{"Implements":["VolumeDriver"]}`,
		PathCapabilities: `{"Capabilities":{"Scope":"global"}}`,
		PathList:         `{"Volumes":[]}`,
	} {
		resp, err := hc.Post("http://plugin"+path, ContentType, strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || strings.TrimSpace(string(b)) != want {
			t.Errorf("%s: %d %s, want %s", path, resp.StatusCode, b, want)
		}
	}
}
