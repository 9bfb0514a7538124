package libvirtscan

import (
	"context"
	"fmt"

	"github.com/digitalocean/go-libvirt"
)

// DefineDomain defines a persistent domain from XML and returns its uuid.
// With start it also boots it.
func (c *Conn) DefineDomain(ctx context.Context, xml string, start bool) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	d, err := c.lv.DomainDefineXMLFlags(xml, 0)
	if err != nil {
		return "", fmt.Errorf("libvirt %s: define domain: %w", c.uri, err)
	}
	if start {
		if err := c.lv.DomainCreate(d); err != nil {
			return formatUUID(d.UUID), c.domainErr(d, "start", err)
		}
	}
	return formatUUID(d.UUID), nil
}

// CreateTransient boots a transient domain (gone once it stops) and
// returns its uuid.
func (c *Conn) CreateTransient(ctx context.Context, xml string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	d, err := c.lv.DomainCreateXML(xml, 0)
	if err != nil {
		return "", fmt.Errorf("libvirt %s: create transient domain: %w", c.uri, err)
	}
	return formatUUID(d.UUID), nil
}

// RemoveDomain stops a domain if it runs and undefines it if it is
// persistent. A domain that does not exist is not an error.
func (c *Conn) RemoveDomain(ctx context.Context, domain string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d, err := c.lookup(domain)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return err
	}
	if d.ID != -1 {
		if err := c.lv.DomainDestroyFlags(d, 0); err != nil && !libvirt.IsNotFound(err) && !isCode(err, libvirt.ErrOperationInvalid) {
			return c.domainErr(d, "destroy", err)
		}
	}
	err = c.lv.DomainUndefineFlags(d, libvirt.DomainUndefineManagedSave|libvirt.DomainUndefineNvram)
	if err != nil && !libvirt.IsNotFound(err) && !isCode(err, libvirt.ErrOperationInvalid) {
		return c.domainErr(d, "undefine", err)
	}
	return nil
}
