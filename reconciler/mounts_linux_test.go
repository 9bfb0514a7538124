//go:build linux

package reconciler_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/cinderwarden/cinderwarden/internal/testenv"
	"github.com/cinderwarden/cinderwarden/libvirtscan/libvirttest"
	"github.com/cinderwarden/cinderwarden/reconciler"
	"github.com/cinderwarden/cinderwarden/simcloud"
)

func mount(t *testing.T, source, target, fstype string, flags uintptr) {
	t.Helper()
	if err := unix.Mount(source, target, fstype, flags, ""); err != nil {
		t.Fatalf("mount %s on %s: %v", source, target, err)
	}
	t.Cleanup(func() {
		if ok, _ := mountinfo.Mounted(target); ok {
			if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
				t.Errorf("cleanup: unmount %s: %v", target, err)
			}
		}
	})
}

// TestStaleMountObservedAndLazilyUnmounted mounts, under a mount base, a
// healthy tmpfs and a bind mount whose source directory is then deleted
// (mountinfo shows its root as "//deleted"). The observer reports the first
// reachable and the second gone; Plan finds one stale mount; --apply
// unmounts it lazily (after re-reading it) and leaves the healthy one.
func TestStaleMountObservedAndLazilyUnmounted(t *testing.T) {
	testenv.RequireLibvirt(t) // root, and the (empty) test-driver domain list through libvirtd
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	src, base := filepath.Join(dir, "src"), filepath.Join(dir, "mnt")
	healthy, stale := filepath.Join(base, "healthy"), filepath.Join(base, "stale")
	for _, d := range []string{src, healthy, stale} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mount(t, "tmpfs", src, "tmpfs", 0)
	mount(t, "cw-healthy", healthy, "tmpfs", 0)
	if err := os.Mkdir(filepath.Join(src, "export"), 0o755); err != nil {
		t.Fatal(err)
	}
	mount(t, filepath.Join(src, "export"), stale, "", unix.MS_BIND)
	if err := os.Remove(filepath.Join(src, "export")); err != nil {
		t.Fatal(err)
	}

	sim, err := simcloud.Start(context.Background(), simcloud.Options{Seed: uint64(time.Now().UnixNano()) | 1, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	xml := filepath.Join(t.TempDir(), "empty.xml")
	if err := os.WriteFile(xml, []byte("<node></node>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	conn := libvirttest.Dial(t, "test+unix://"+xml)
	obs := &reconciler.Observer{Host: simHost, Libvirt: conn, Cloud: adminClient(t, sim), MountBases: []string{base}}
	o := obs.Observe(ctx)
	if o.Mounts.Source.State != reconciler.SourceOK || len(o.Mounts.Entries) != 2 {
		t.Fatalf("mounts %+v", o.Mounts)
	}
	states := map[string]reconciler.MountEntry{}
	for _, e := range o.Mounts.Entries {
		states[e.Mountpoint] = e
	}
	if e := states[healthy]; e.SourceState != reconciler.MountSourceReachable {
		t.Errorf("healthy mount %+v", e)
	}
	if e := states[stale]; e.SourceState != reconciler.MountSourceGone || !strings.Contains(e.Reason, "deleted") {
		t.Errorf("stale mount %+v", e)
	}

	pol := reconciler.Policy{Apply: true, MinSightings: 1, MaxActions: 5, MountBases: []string{base}}
	res := reconciler.Plan(o, reconciler.NewMemory(), pol, time.Now())
	if res.Aborted {
		t.Fatalf("aborted: %v", res.AbortReasons)
	}
	ex := res.Executable()
	if len(ex) != 1 || ex[0].Kind != reconciler.ActionLazyUnmount || ex[0].Mountpoint != stale {
		t.Fatalf("executable %+v, want one lazy unmount of %s", ex, stale)
	}
	audit, err := reconciler.OpenAuditLog(filepath.Join(t.TempDir(), "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer audit.Close()
	if err := (&reconciler.Actor{Observer: obs, Audit: audit}).Execute(ctx, &res); err != nil {
		t.Fatal(err)
	}
	for _, a := range res.Actions {
		if a.Kind == reconciler.ActionLazyUnmount && a.State != reconciler.StateDone {
			t.Errorf("lazy unmount %s: %s %q", a.Mountpoint, a.State, a.Reason)
		}
	}
	if ok, _ := mountinfo.Mounted(stale); ok {
		t.Errorf("%s still mounted", stale)
	}
	if ok, _ := mountinfo.Mounted(healthy); !ok {
		t.Errorf("%s was unmounted", healthy)
	}
}
