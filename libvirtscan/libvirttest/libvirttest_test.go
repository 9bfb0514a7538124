package libvirttest

import (
	"bytes"
	"compress/gzip"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/cinderwarden/cinderwarden/internal/testenv"
)

// TestInitramfsIsNewcCpio lets busybox's own cpio list the archive.
func TestInitramfsIsNewcCpio(t *testing.T) {
	testenv.RequireCommand(t, "busybox")
	payload := []byte("not really busybox, 29 bytes.")
	img, err := Initramfs(payload)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("busybox", "cpio", "-t", "-v")
	cmd.Stdin = bytes.NewReader(raw)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("busybox cpio -t: %v: %s", err, out)
	}
	listing := string(out)
	t.Logf("archive:\n%s", listing)
	for _, want := range []string{"drwxr-xr-x", "bin/busybox", "init", "proc", "sys", "dev"} {
		if !strings.Contains(listing, want) {
			t.Errorf("listing lacks %q:\n%s", want, listing)
		}
	}
	for _, line := range strings.Split(listing, "\n") {
		if strings.HasSuffix(line, " init") && !strings.HasPrefix(line, "-rwxr-xr-x") {
			t.Errorf("/init not executable: %s", line)
		}
		if strings.HasSuffix(line, " bin/busybox") && !strings.Contains(line, " 29 ") {
			t.Errorf("bin/busybox size wrong: %s", line)
		}
	}
}

func TestTestDriverIDsDistinct(t *testing.T) {
	seen := map[string]bool{}
	for i := range 200 {
		for _, id := range []string{TestDriverInstanceID(i), TestDriverVolumeID(i, 0), TestDriverVolumeID(i, 1), TestDriverVolumeID(i, 3)} {
			if seen[id] {
				t.Fatalf("id %s generated twice", id)
			}
			seen[id] = true
		}
	}
}
