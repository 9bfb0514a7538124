// Package dockertest gives end-to-end tests a real Docker engine to drive:
// a busybox image built locally with `docker import` (no registry is
// reachable here) and a thin runner for the docker CLI. Everything runs
// through exec argument lists, never a shell.
package dockertest

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Image is the tag of the locally imported busybox test image.
const Image = "cinderwarden/busybox:test"

// busyboxApplets are linked into the image's /bin; tests use only these.
var busyboxApplets = []string{"sh", "cat", "echo", "ls", "sleep", "test", "touch", "rm", "mkdir", "stat", "sync", "dd", "wc", "md5sum", "true", "false"}

// CLI runs the docker CLI against one daemon (Host empty means the default).
type CLI struct {
	Host string // e.g. unix:///run/docker-b.sock
}

// Run runs `docker args...` and returns trimmed stdout; the error carries
// stderr so a failing assertion says what docker said.
func (c CLI) Run(ctx context.Context, args ...string) (string, error) {
	full := args
	if c.Host != "" {
		full = append([]string{"-H", c.Host}, args...)
	}
	cmd := exec.CommandContext(ctx, "docker", full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return strings.TrimSpace(stdout.String()), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// EnsureImage imports the busybox test image into the daemon unless it is
// already there. busyboxPath is a static busybox binary (Debian's
// busybox-static installs /bin/busybox).
func (c CLI) EnsureImage(ctx context.Context, busyboxPath string) error {
	if _, err := c.Run(ctx, "image", "inspect", Image); err == nil {
		return nil
	}
	bin, err := os.ReadFile(busyboxPath)
	if err != nil {
		return fmt.Errorf("test image: read busybox: %w", err)
	}
	var buf bytes.Buffer
	if err := writeRootfs(&buf, bin); err != nil {
		return fmt.Errorf("test image: build rootfs: %w", err)
	}
	args := []string{"import", "--change", `CMD ["/bin/sh"]`, "-", Image}
	if c.Host != "" {
		args = append([]string{"-H", c.Host}, args...)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("test image: docker import: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// writeRootfs writes a minimal rootfs tar: /bin/busybox, applet links, and
// the empty directories a container runtime expects.
func writeRootfs(w io.Writer, busybox []byte) error {
	tw := tar.NewWriter(w)
	now := time.Now()
	for _, d := range []string{"bin/", "dev/", "etc/", "proc/", "sys/", "tmp/", "data/"} {
		if err := tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: now}); err != nil {
			return err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(busybox)), ModTime: now}); err != nil {
		return err
	}
	if _, err := tw.Write(busybox); err != nil {
		return err
	}
	for _, a := range busyboxApplets {
		if err := tw.WriteHeader(&tar.Header{Name: "bin/" + a, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777, ModTime: now}); err != nil {
			return err
		}
	}
	return tw.Close()
}
