package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"

	"github.com/cinderwarden/cinderwarden/internal/cloudconfig"
	cwopenstack "github.com/cinderwarden/cinderwarden/openstack"
)

func TestSimFlagValidation(t *testing.T) {
	cases := []struct {
		args []string
		euid int
		want string // "" = valid, else in stderr
	}{
		{[]string{"--backend", "none"}, 1000, ""},
		{[]string{}, 0, ""},
		{[]string{}, 1000, "--backend loop needs root"},
		{[]string{"--backend", "disk"}, 0, `--backend "disk": want loop or none`},
		{[]string{"--listen", "8080"}, 0, `--listen "8080": want host:port`},
		{[]string{"--instances", "-2"}, 0, "--instances -2: want 0..1000"},
		{[]string{"--attach-latency", "-1s"}, 0, "--attach-latency -1s: must not be negative"},
		{[]string{"--token-lifetime", "0s"}, 0, "--token-lifetime 0s: must be positive"},
		{[]string{"--attach-latency", "soon"}, 0, "invalid value"},
		{[]string{"extra"}, 0, `unexpected arguments ["extra"]`},
		{[]string{"--libvirt-domain", "vm-1=g1"}, 0, "--libvirt-domain needs --libvirt-uri"},
		{[]string{"--libvirt-uri", "qemu:///system", "--libvirt-domain", "vm-3=g3", "--instances", "2"}, 0, "vm-3: no such instance"},
		{[]string{"--libvirt-uri", "qemu:///system", "--libvirt-domain", "vm-1"}, 0, "want INSTANCE=DOMAIN"},
		{[]string{"--libvirt-uri", "qemu:///system", "--libvirt-domain", "vm-1=a", "--libvirt-domain", "vm-1=b"}, 0, "mapped twice"},
		{[]string{"--libvirt-uri", "qemu:///system", "--libvirt-domain", "vm-1=a", "--backend", "none"}, 1000, ""},
	}
	for _, c := range cases {
		var errOut bytes.Buffer
		_, code, ok := parseSimFlags(c.args, c.euid, &errOut)
		switch {
		case c.want == "" && !ok:
			t.Errorf("%v (uid %d): rejected: %s", c.args, c.euid, errOut.String())
		case c.want != "" && (ok || code != 2 || !strings.Contains(errOut.String(), c.want)):
			t.Errorf("%v (uid %d): ok=%v code=%d stderr %q, want exit 2 and %q", c.args, c.euid, ok, code, errOut.String(), c.want)
		}
	}
}

// syncBuffer is a bytes.Buffer safe to read while the command writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestSimServesUntilCancelled(t *testing.T) {
	dir := t.TempDir()
	cloudsPath := filepath.Join(dir, "clouds.yaml")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- dispatch(ctx, []string{"sim", "--backend", "none", "--instances", "2", "--state-dir", filepath.Join(dir, "state"),
			"--clouds-yaml", cloudsPath, "--attach-latency", "10ms"}, &out, &errOut)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for delay := 5 * time.Millisecond; !strings.Contains(out.String(), "\nready\n"); delay = min(delay*2, 200*time.Millisecond) {
		select {
		case code := <-done:
			t.Fatalf("sim exited early with %d: %s %s", code, out.String(), errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sim not ready after 10 s: %s %s", out.String(), errOut.String())
		}
		time.Sleep(delay)
	}
	text := out.String()
	if n := strings.Count(text, "instance: id="); n != 2 {
		t.Fatalf("printed %d instances, want 2:\n%s", n, text)
	}
	for _, want := range []string{"auth_url: http://127.0.0.1:", "compute_url:", "clouds_yaml: " + cloudsPath, "metadata_url=http://",
		"node_dev_dir=" + filepath.Join(dir, "state", "nodes"), "/noauth/volume/v3 (auth_type noauth endpoint", `"sim-noauth"`} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	// The written clouds.yaml works with gophercloud's reader.
	ao, eo, _, err := clouds.Parse(clouds.WithCloudName("sim-admin"), clouds.WithLocations(cloudsPath))
	if err != nil {
		t.Fatal(err)
	}
	pc, err := openstack.AuthenticatedClient(ctx, ao)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := openstack.NewComputeV2(pc, eo)
	if err != nil {
		t.Fatal(err)
	}
	pages, err := servers.List(cc, servers.ListOpts{AllTenants: true}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ss, _ := servers.ExtractServers(pages); len(ss) != 2 {
		t.Fatalf("servers: %d, want 2", len(ss))
	}
	// The sim-noauth cloud works through cloudconfig and our client:
	// Cinder only, no Nova, and it sees the member's (empty) project.
	for _, v := range []string{"OS_CLOUD", "OS_CLIENT_CONFIG_FILE", "OS_INTERFACE", "OS_CACERT"} {
		t.Setenv(v, "")
	}
	nacfg, err := cloudconfig.Resolve(cloudconfig.Options{Cloud: "sim-noauth", CloudsFile: cloudsPath})
	if err != nil {
		t.Fatal(err)
	}
	if !nacfg.IsNoAuth() || !strings.Contains(text, "volume_url_noauth: "+nacfg.NoAuth.Endpoint+" ") {
		t.Fatalf("sim-noauth resolves to %v; printed:\n%s", nacfg, text)
	}
	na, err := cwopenstack.New(ctx, nacfg, cwopenstack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if na.HasCompute() {
		t.Error("sim-noauth client has a Nova")
	}
	if vs, err := na.ListVolumes(ctx, cwopenstack.VolumeFilter{}); err != nil || len(vs) != 0 {
		t.Errorf("sim-noauth volumes: %v, %v; want none", vs, err)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d after cancel: %s", code, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sim did not stop after cancel")
	}
	if _, err := os.Stat(filepath.Join(dir, "state", "events.jsonl")); err != nil {
		t.Fatalf("event log: %v", err)
	}
}
