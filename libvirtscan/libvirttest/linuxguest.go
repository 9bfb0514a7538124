package libvirttest

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/cinderwarden/cinderwarden/internal/testenv"
	"github.com/cinderwarden/cinderwarden/libvirtscan"
)

// KernelCacheDir holds the Debian cloud kernel LinuxDomain boots; the
// CINDERWARDEN_CACHE environment variable overrides its parent.
func KernelCacheDir() string {
	if d := os.Getenv("CINDERWARDEN_CACHE"); d != "" {
		return filepath.Join(d, "guest-kernel")
	}
	return "/var/cache/cinderwarden/guest-kernel"
}

// guestReady is what the guest's /init prints on the serial console once
// ACPI (and so PCI hot-plug) is up.
const guestReady = "CINDERWARDEN-GUEST-READY"

// guestInit is PID 1 of the initramfs: mount the kernel file systems,
// announce readiness on the console, and idle forever. Hot-unplug is
// handled by the kernel's built-in ACPI PCI hot-plug driver.
const guestInit = `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
echo ` + guestReady + `
while true; do /bin/busybox sleep 3600; done
`

func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if testenv.Required() {
		t.Fatalf("SUBSTRATE MISSING (%s=1): %s", testenv.RequireEnv, msg)
	}
	t.Skipf("SKIPPED, NOT TESTED: %s", msg)
}

// GuestKernel returns the path of a Debian cloud kernel (ACPI PCI hot-plug
// built in), fetching it once with apt-get download and dpkg-deb -x into
// KernelCacheDir. Concurrent test processes share one fetch.
func GuestKernel(t testing.TB) string {
	t.Helper()
	testenv.RequireCommand(t, "apt-get", "dpkg-deb")
	dir := KernelCacheDir()
	kernel := filepath.Join(dir, "vmlinuz")
	if _, err := os.Stat(kernel); err == nil {
		return kernel
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		missing(t, "kernel cache %s: %v", dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		missing(t, "kernel cache lock: %v", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		missing(t, "kernel cache lock: %v", err)
	}
	defer func() { _ = syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) }()
	if _, err := os.Stat(kernel); err == nil {
		return kernel
	}
	if err := fetchKernel(t, dir, kernel); err != nil {
		missing(t, "fetch Debian cloud kernel (apt-get download linux-image-cloud-amd64): %v", err)
	}
	return kernel
}

var imageDep = regexp.MustCompile(`linux-image-[0-9][^ ,()]*-cloud-amd64`)

func fetchKernel(t testing.TB, dir, kernel string) error {
	work, err := os.MkdirTemp(dir, "fetch-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	// apt drops privileges to _apt for downloads; let it write here.
	if err := os.Chmod(work, 0o777); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	run := func(name string, args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = work
		out, err := cmd.CombinedOutput()
		if err != nil {
			return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
		return out, nil
	}
	if _, err := run("apt-get", "download", "linux-image-cloud-amd64"); err != nil {
		return err
	}
	metas, _ := filepath.Glob(filepath.Join(work, "linux-image-cloud-amd64_*.deb"))
	if len(metas) != 1 {
		return fmt.Errorf("apt-get download left %d metapackages", len(metas))
	}
	deps, err := run("dpkg-deb", "-f", metas[0], "Depends")
	if err != nil {
		return err
	}
	pkg := imageDep.FindString(string(deps))
	if pkg == "" {
		return fmt.Errorf("no versioned image package in Depends %q", deps)
	}
	if _, err := run("apt-get", "download", pkg); err != nil {
		return err
	}
	debs, _ := filepath.Glob(filepath.Join(work, pkg+"_*.deb"))
	if len(debs) != 1 {
		return fmt.Errorf("apt-get download %s left %d packages", pkg, len(debs))
	}
	if _, err := run("dpkg-deb", "-x", debs[0], filepath.Join(work, "x")); err != nil {
		return err
	}
	images, _ := filepath.Glob(filepath.Join(work, "x", "boot", "vmlinuz-*"))
	if len(images) != 1 {
		return fmt.Errorf("%s holds %d kernels", pkg, len(images))
	}
	if err := copyFile(images[0], kernel+".tmp", 0o644); err != nil {
		return err
	}
	t.Logf("fetched %s into %s", pkg, kernel)
	return os.Rename(kernel+".tmp", kernel)
}

func copyFile(from, to string, mode os.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}

// cpioEntry is one file of a newc archive.
type cpioEntry struct {
	name string
	mode uint32 // including type bits
	data []byte
}

// Initramfs builds a gzip'd newc cpio archive with busybox (from the
// busybox-static package at /bin/busybox) and guestInit as /init.
func Initramfs(busybox []byte) ([]byte, error) {
	entries := []cpioEntry{
		{name: "bin", mode: syscall.S_IFDIR | 0o755},
		{name: "dev", mode: syscall.S_IFDIR | 0o755},
		{name: "proc", mode: syscall.S_IFDIR | 0o755},
		{name: "sys", mode: syscall.S_IFDIR | 0o755},
		{name: "bin/busybox", mode: syscall.S_IFREG | 0o755, data: busybox},
		{name: "init", mode: syscall.S_IFREG | 0o755, data: []byte(guestInit)},
		{name: "TRAILER!!!"},
	}
	var raw bytes.Buffer
	for i, e := range entries {
		name := e.name + "\x00"
		fmt.Fprintf(&raw, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			i+1, e.mode, 0, 0, 1, 0, len(e.data), 0, 0, 0, 0, len(name), 0)
		raw.WriteString(name)
		pad4(&raw)
		raw.Write(e.data)
		pad4(&raw)
	}
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	if _, err := w.Write(raw.Bytes()); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return gz.Bytes(), nil
}

func pad4(b *bytes.Buffer) {
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
}

var linuxTmpl = template.Must(template.New("linux").Parse(`<domain type='qemu'>
  <name>{{.Name}}</name>
  <uuid>{{.UUID}}</uuid>
  <memory unit='MiB'>{{.MemoryMiB}}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{{.Kernel}}</kernel>
    <initrd>{{.Initrd}}</initrd>
    <cmdline>console=ttyS0 panic=-1 rdinit=/init</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='file'>
      <source path='{{.Console}}'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
</domain>
`))

// Linux is a running domain with a real Linux kernel that acknowledges
// hot-unplug.
type Linux struct {
	Name, UUID string
	// Dir is a directory qemu can read, for disk files.
	Dir string
	// Console is the serial console log.
	Console string
}

// LinuxDomain boots a persistent qemu TCG domain with the Debian cloud
// kernel and a busybox initramfs, waits (up to 90 s) until the guest reports
// ready on its serial console, and removes it at cleanup.
func LinuxDomain(t testing.TB, c *libvirtscan.Conn) Linux {
	t.Helper()
	kernelSrc := GuestKernel(t)
	testenv.RequireCommand(t, "busybox")
	bbPath, err := exec.LookPath("busybox")
	if err != nil {
		missing(t, "busybox: %v", err)
	}
	bb, err := os.ReadFile(bbPath)
	if err != nil {
		t.Fatalf("read busybox: %v", err)
	}
	initrd, err := Initramfs(bb)
	if err != nil {
		t.Fatalf("build initramfs: %v", err)
	}
	uuid := NewUUID(t)
	g := Linux{Name: "cwlinux-" + uuid[:8], UUID: uuid, Dir: SharedDir(t)}
	g.Console = filepath.Join(g.Dir, "console.log")
	kernel := filepath.Join(g.Dir, "vmlinuz")
	if err := copyFile(kernelSrc, kernel, 0o644); err != nil {
		t.Fatalf("copy kernel: %v", err)
	}
	initrdPath := filepath.Join(g.Dir, "initrd.gz")
	if err := os.WriteFile(initrdPath, initrd, 0o644); err != nil {
		t.Fatalf("write initramfs: %v", err)
	}
	var x bytes.Buffer
	if err := linuxTmpl.Execute(&x, map[string]any{"Name": g.Name, "UUID": uuid, "MemoryMiB": 128,
		"Kernel": kernel, "Initrd": initrdPath, "Console": g.Console}); err != nil {
		t.Fatalf("render domain: %v", err)
	}
	t.Cleanup(func() { removeDomain(t, c, uuid, g.Name) })
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, err := c.DefineDomain(ctx, x.String(), true); err != nil {
		t.Fatalf("boot linux domain: %v", err)
	}
	start := time.Now()
	if err := waitForFile(ctx, g.Console, guestReady); err != nil {
		tail, _ := os.ReadFile(g.Console)
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		t.Fatalf("guest %s not ready: %v; console tail:\n%s", g.Name, err, tail)
	}
	t.Logf("linux guest %s ready in %v", g.Name, time.Since(start).Round(time.Millisecond))
	return g
}

// waitForFile polls path with short exponential backoff until it contains
// want.
func waitForFile(ctx context.Context, path, want string) error {
	delay := 50 * time.Millisecond
	for {
		data, err := os.ReadFile(path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if bytes.Contains(data, []byte(want)) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, 500*time.Millisecond)
	}
}
