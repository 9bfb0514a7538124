package libvirtscan

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
)

// DefaultURI is libvirtd's system qemu driver on the local socket.
const DefaultURI = "qemu:///system"

// ErrDomainNotFound is wrapped when libvirt has no domain by that name or
// uuid.
var ErrDomainNotFound = errors.New("domain not found")

// Conn is one connection to libvirtd. It is safe for concurrent use.
type Conn struct {
	lv  *libvirt.Libvirt
	uri string
	log *slog.Logger
}

// Options configure Dial.
type Options struct {
	// URI is a libvirt URI such as qemu:///system or
	// test+unix:///abs/path/domains.xml (the test driver through libvirtd).
	// Empty means DefaultURI. A "socket" query parameter overrides the
	// daemon socket path.
	URI string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Dial connects to libvirtd over its unix socket and opens the driver the
// URI names. Only local (unix) transports are accepted.
func Dial(ctx context.Context, opts Options) (*Conn, error) {
	raw := opts.URI
	if raw == "" {
		raw = DefaultURI
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("libvirt URI %q: %w", raw, err)
	}
	if _, transport, ok := strings.Cut(u.Scheme, "+"); ok && transport != "unix" {
		return nil, fmt.Errorf("libvirt URI %q: transport %q not supported (only the local unix socket)", raw, transport)
	}
	if u.Host != "" {
		return nil, fmt.Errorf("libvirt URI %q: remote hosts not supported (only the local unix socket)", raw)
	}
	dialOpts := []dialers.LocalOption{}
	if sock := u.Query().Get("socket"); sock != "" {
		dialOpts = append(dialOpts, dialers.WithSocket(sock))
	}
	if dl, ok := ctx.Deadline(); ok {
		wait := time.Until(dl)
		if wait <= 0 {
			return nil, fmt.Errorf("connect to libvirtd (%s): %w", raw, context.DeadlineExceeded)
		}
		dialOpts = append(dialOpts, dialers.WithLocalTimeout(wait))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	lv := libvirt.NewWithDialer(dialers.NewLocal(dialOpts...))
	if err := lv.ConnectToURI(libvirt.RemoteURI(u)); err != nil {
		return nil, fmt.Errorf("connect to libvirtd (%s): %w", raw, err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Conn{lv: lv, uri: raw, log: log.With("libvirt_uri", raw)}, nil
}

// URI is the URI this connection was opened with.
func (c *Conn) URI() string { return c.uri }

// Close disconnects from libvirtd.
func (c *Conn) Close() error {
	if err := c.lv.Disconnect(); err != nil {
		return fmt.Errorf("disconnect from libvirtd (%s): %w", c.uri, err)
	}
	return nil
}

// lookup finds a domain by uuid (any case, with dashes) or by name.
func (c *Conn) lookup(domain string) (libvirt.Domain, error) {
	if u, ok := parseUUID(domain); ok {
		d, err := c.lv.DomainLookupByUUID(u)
		if err == nil {
			return d, nil
		}
		if !libvirt.IsNotFound(err) {
			return libvirt.Domain{}, fmt.Errorf("domain %s: lookup: %w", domain, err)
		}
	}
	d, err := c.lv.DomainLookupByName(domain)
	if libvirt.IsNotFound(err) {
		return libvirt.Domain{}, fmt.Errorf("domain %s: %w", domain, ErrDomainNotFound)
	}
	if err != nil {
		return libvirt.Domain{}, fmt.Errorf("domain %s: lookup: %w", domain, err)
	}
	return d, nil
}

func parseUUID(s string) (libvirt.UUID, bool) {
	var u libvirt.UUID
	hex := strings.ReplaceAll(s, "-", "")
	if len(hex) != 32 || len(s) != 36 {
		return u, false
	}
	for i := range 16 {
		hi, ok1 := unhex(hex[2*i])
		lo, ok2 := unhex(hex[2*i+1])
		if !ok1 || !ok2 {
			return u, false
		}
		u[i] = hi<<4 | lo
	}
	return u, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func formatUUID(u libvirt.UUID) string {
	const digits = "0123456789abcdef"
	b := make([]byte, 0, 36)
	for i, x := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, digits[x>>4], digits[x&0xf])
	}
	return string(b)
}

// libvirtCode reports libvirt's error number carried by err, if any.
func libvirtCode(err error) (libvirt.ErrorNumber, bool) {
	var le libvirt.Error
	if errors.As(err, &le) {
		return libvirt.ErrorNumber(le.Code), true
	}
	return 0, false
}

func isCode(err error, codes ...libvirt.ErrorNumber) bool {
	c, ok := libvirtCode(err)
	if !ok {
		return false
	}
	for _, want := range codes {
		if c == want {
			return true
		}
	}
	return false
}

func isNotFound(err error) bool { return errors.Is(err, ErrDomainNotFound) }
