// Package libvirttest builds real libvirt fixtures for tests: a
// firmware-only qemu TCG domain (boots SeaBIOS and sits there, so it never
// acknowledges a hot-unplug) and documents for libvirt's test driver. Every
// fixture is removed with t.Cleanup.
package libvirttest

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"text/template"
	"time"

	"github.com/cinderwarden/cinderwarden/internal/testenv"
	"github.com/cinderwarden/cinderwarden/libvirtscan"
)

// Dial connects to the system libvirtd (skipping or failing the test, per
// testenv, when it is absent) and closes the connection at cleanup.
func Dial(t testing.TB, uri string) *libvirtscan.Conn {
	t.Helper()
	testenv.RequireLibvirt(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := libvirtscan.Dial(ctx, libvirtscan.Options{URI: uri})
	if err != nil {
		t.Fatalf("dial libvirtd: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// SharedDir is a temporary directory the libvirt-qemu user can traverse and
// read (t.TempDir's parent is 0700), removed at cleanup.
func SharedDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatalf("make %s readable for libvirt-qemu: %v", d, err)
		}
	}
	return dir
}

// SparseFile creates a sparse file of size bytes, readable by libvirt-qemu
// (libvirt's dynamic ownership hands it to that user while attached).
func SparseFile(t testing.TB, path string, size int64) string {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatalf("create %s: %v", path, err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatalf("size %s: %v", path, err)
	}
	return path
}

// NewUUID returns a random RFC 4122 version-4 uuid.
func NewUUID(t testing.TB) string {
	t.Helper()
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("uuid: %v", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Firmware is a running firmware-only domain.
type Firmware struct {
	Name string
	UUID string
	// Dir is a directory qemu can read, for the domain's disk files.
	Dir string
	// Root is the file behind vda.
	Root string
}

// FirmwareOptions tune FirmwareDomain.
type FirmwareOptions struct {
	// Name defaults to "cwtest-<8 hex of the uuid>".
	Name string
	// UUID defaults to a random one (nova: the instance id).
	UUID string
	// Transient boots it without a persistent definition.
	Transient bool
	// Stopped defines it without booting it (persistent, shut off).
	Stopped bool
	// MemoryMiB defaults to 64.
	MemoryMiB int
	// Metadata is put verbatim inside <metadata> (e.g. nova's).
	Metadata string
}

var domainTmpl = template.Must(template.New("dom").Parse(`<domain type='qemu'>
  <name>{{.Name}}</name>
  <uuid>{{.UUID}}</uuid>
{{- if .Metadata}}
  <metadata>{{.Metadata}}</metadata>
{{- end}}
  <memory unit='MiB'>{{.MemoryMiB}}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{{.Root}}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <memballoon model='none'/>
  </devices>
</domain>
`))

// FirmwareDomainXML renders the domain: qemu TCG, i440fx with ACPI (PCI
// hot-plug through ACPI), no OS, no network, one raw disk.
func FirmwareDomainXML(o FirmwareOptions, root string) (string, error) {
	var buf bytes.Buffer
	err := domainTmpl.Execute(&buf, struct {
		FirmwareOptions
		Root string
	}{o, root})
	return buf.String(), err
}

// FirmwareDomain boots a firmware-only domain (persistent unless
// o.Transient; defined but shut off with o.Stopped) with a 1 MiB root disk
// and removes it at cleanup.
func FirmwareDomain(t testing.TB, c *libvirtscan.Conn, o FirmwareOptions) Firmware {
	t.Helper()
	if o.UUID == "" {
		o.UUID = NewUUID(t)
	}
	if o.Name == "" {
		o.Name = "cwtest-" + o.UUID[:8]
	}
	if o.MemoryMiB == 0 {
		o.MemoryMiB = 64
	}
	dir := SharedDir(t)
	root := SparseFile(t, filepath.Join(dir, "root.img"), 1<<20)
	x, err := FirmwareDomainXML(o, root)
	if err != nil {
		t.Fatalf("render domain: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t.Cleanup(func() { removeDomain(t, c, o.UUID, o.Name) })
	if o.Transient {
		_, err = c.CreateTransient(ctx, x)
	} else {
		_, err = c.DefineDomain(ctx, x, !o.Stopped)
	}
	if err != nil {
		t.Fatalf("boot firmware domain %s: %v", o.Name, err)
	}
	return Firmware{Name: o.Name, UUID: o.UUID, Dir: dir, Root: root}
}

// removeDomain destroys and undefines a test domain at cleanup. When the
// test's own connection broke (libvirtd restarted, or "procedure interrupted"
// under load), it retries once on a fresh connection, so a failed test does
// not leave a domain behind for every later scan of this libvirtd to report.
func removeDomain(t testing.TB, c *libvirtscan.Conn, uuid, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := c.RemoveDomain(ctx, uuid)
	if err == nil {
		return
	}
	fresh, derr := libvirtscan.Dial(ctx, libvirtscan.Options{URI: c.URI()})
	if derr != nil {
		t.Errorf("cleanup: remove domain %s: %v (and a fresh connection failed: %v)", name, err, derr)
		return
	}
	defer fresh.Close()
	if err2 := fresh.RemoveDomain(ctx, uuid); err2 != nil {
		t.Errorf("cleanup: remove domain %s: %v; again on a fresh connection: %v", name, err, err2)
	}
}
