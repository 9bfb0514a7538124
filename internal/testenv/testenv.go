// Package testenv gates tests on the real substrate they need (root, loop
// devices, dockerd, libvirtd). A missing substrate skips the test with a loud
// reason; when CINDERWARDEN_REQUIRE_SUBSTRATE=1 (set by .ci/run and make test
// on a prepared machine) it fails instead, so CI can never go green by
// skipping the tests that matter.
package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"
)

// RequireEnv is the environment variable that turns skips into failures.
const RequireEnv = "CINDERWARDEN_REQUIRE_SUBSTRATE"

// Required reports whether missing substrate must fail tests.
func Required() bool { return os.Getenv(RequireEnv) == "1" }

func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if Required() {
		t.Fatalf("SUBSTRATE MISSING (%s=1): %s", RequireEnv, msg)
	}
	t.Skipf("SKIPPED, NOT TESTED: %s (run as root after scripts/substrate.sh; set %s=1 to make this fatal)", msg, RequireEnv)
}

// RequireRoot skips (or fails) unless the test runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "this test needs root (loop devices, mkfs, mount); running as uid %d", os.Geteuid())
	}
}

// RequireCommand skips (or fails) unless every named program is on PATH.
func RequireCommand(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			missing(t, "this test needs %q on PATH: %v", n, err)
		}
	}
}

// RequireSocket skips (or fails) unless a unix socket at path accepts
// connections; what names the daemon for the message.
func RequireSocket(t testing.TB, what, path string) {
	t.Helper()
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		missing(t, "this test needs a running %s at %s: %v", what, path, err)
		return
	}
	_ = c.Close()
}

// DockerSocket is where scripts/substrate.sh starts dockerd.
const DockerSocket = "/var/run/docker.sock"

// LibvirtSocket is libvirtd's read-write socket for qemu:///system.
const LibvirtSocket = "/var/run/libvirt/libvirt-sock"

// RequireDocker skips (or fails) unless dockerd answers on its socket and the
// docker CLI is installed.
func RequireDocker(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	RequireCommand(t, "docker")
	RequireSocket(t, "dockerd", DockerSocket)
}

// RequireLibvirt skips (or fails) unless libvirtd answers on its socket and
// qemu-system-x86_64 is installed.
func RequireLibvirt(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	RequireCommand(t, "qemu-system-x86_64")
	RequireSocket(t, "libvirtd", LibvirtSocket)
}
