package volumedriver

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestResolveIdentity walks the sources in the configured order over real
// files and a real HTTP metadata service, the override, and the cache used
// when every source fails.
func TestResolveIdentity(t *testing.T) {
	const (
		driveID = "11111111-2222-3333-4444-555555555555"
		mdID    = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
		dmiID   = "99999999-8888-7777-6666-555555555555"
	)
	dir := t.TempDir()
	drive := filepath.Join(dir, "config-2")
	if err := os.MkdirAll(filepath.Join(drive, "openstack", "latest"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(drive, "openstack", "latest", "meta_data.json"),
		[]byte(`{"uuid":"`+driveID+`","availability_zone":"az-drive","hostname":"h1"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	dmi := filepath.Join(dir, "product_uuid")
	if err := os.WriteFile(dmi, []byte(strings.ToUpper(dmiID)+"\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	up := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up || r.URL.Path != "/openstack/latest/meta_data.json" {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte(`{"uuid":"` + mdID + `","availability_zone":"az-md"}`))
	}))
	defer srv.Close()
	cache := filepath.Join(dir, "state", "identity.json")
	base := IdentityConfig{ConfigDriveDir: drive, MetadataURL: srv.URL, DMIProductUUID: dmi, CacheFile: cache}
	ctx := context.Background()

	for _, tc := range []struct {
		name     string
		order    []string
		override string
		wantID   string
		wantZone string
		wantSrc  string
		noDrive  bool
		mdDown   bool
	}{
		{name: "config drive first", order: DefaultIdentityOrder(), wantID: driveID, wantZone: "az-drive", wantSrc: IdentityConfigDrive},
		{name: "metadata first", order: []string{IdentityMetadata, IdentityConfigDrive}, wantID: mdID, wantZone: "az-md", wantSrc: IdentityMetadata},
		{name: "dmi first (lower-cased)", order: []string{IdentityDMI, IdentityMetadata}, wantID: dmiID, wantSrc: IdentityDMI},
		{name: "no drive: metadata next", order: DefaultIdentityOrder(), noDrive: true, wantID: mdID, wantZone: "az-md", wantSrc: IdentityMetadata},
		{name: "override, zone from a matching metadata service", order: DefaultIdentityOrder(), override: mdID, wantID: mdID, wantZone: "az-md", wantSrc: "override"},
		{name: "override wins over everything", order: DefaultIdentityOrder(), override: "feedface-0000-0000-0000-000000000000", wantID: "feedface-0000-0000-0000-000000000000", wantSrc: "override"},
	} {
		c := base
		c.Order, c.Override = tc.order, tc.override
		if tc.noDrive {
			c.ConfigDriveDir = filepath.Join(dir, "absent")
		}
		up = !tc.mdDown
		id, err := ResolveIdentity(ctx, c)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if id.InstanceID != tc.wantID || id.AvailabilityZone != tc.wantZone || id.Source != tc.wantSrc {
			t.Errorf("%s: got %+v, want %s/%s/%s", tc.name, id, tc.wantID, tc.wantZone, tc.wantSrc)
		}
	}

	// Every source fails: the cache (last written by "no drive: metadata next") answers.
	up = false
	c := base
	c.Order, c.ConfigDriveDir = []string{IdentityConfigDrive, IdentityMetadata}, filepath.Join(dir, "absent")
	id, err := ResolveIdentity(ctx, c)
	if err != nil || id.InstanceID != mdID || !strings.HasPrefix(id.Source, "cache (") {
		t.Fatalf("cache fallback: %+v %v", id, err)
	}
	// Without a cache the error names every source.
	c.CacheFile = ""
	_, err = ResolveIdentity(ctx, c)
	if !errors.Is(err, ErrNoIdentity) || !strings.Contains(err.Error(), "config-drive: ") || !strings.Contains(err.Error(), "metadata: ") {
		t.Fatalf("no source: %v", err)
	}
	for _, bad := range [][]string{{}, {"bios"}, {IdentityDMI, IdentityDMI}} {
		if err := ValidateIdentityOrder(bad); err == nil {
			t.Errorf("order %v accepted", bad)
		}
	}
}
