package libvirtscan

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/digitalocean/go-libvirt"
)

// State is a domain's run state as libvirt reports it.
type State string

// Domain states (virDomainState).
const (
	StateNoState     State = "nostate"
	StateRunning     State = "running"
	StateBlocked     State = "blocked"
	StatePaused      State = "paused"
	StateShutdown    State = "shutdown" // being shut down
	StateShutoff     State = "shutoff"
	StateCrashed     State = "crashed"
	StatePMSuspended State = "pmsuspended"
)

func stateOf(s libvirt.DomainState) State {
	switch s {
	case libvirt.DomainRunning:
		return StateRunning
	case libvirt.DomainBlocked:
		return StateBlocked
	case libvirt.DomainPaused:
		return StatePaused
	case libvirt.DomainShutdown:
		return StateShutdown
	case libvirt.DomainShutoff:
		return StateShutoff
	case libvirt.DomainCrashed:
		return StateCrashed
	case libvirt.DomainPmsuspended:
		return StatePMSuspended
	}
	return StateNoState
}

// Domain is one libvirt domain with both of its definitions.
type Domain struct {
	UUID  string `json:"uuid"`
	Name  string `json:"name"`
	State State  `json:"state"`
	// Active is true while the domain runs (has a live definition).
	Active bool `json:"active"`
	// Persistent is false for a transient domain (no config to edit).
	Persistent bool `json:"persistent"`
	// Nova is nova-compute's metadata, from the live definition when
	// there is one, else from the persistent one.
	Nova *NovaMetadata `json:"nova,omitempty"`
	// Live is the running definition; nil when the domain is not active.
	Live *Definition `json:"live,omitempty"`
	// Config is the persistent definition; nil for a transient domain.
	Config *Definition `json:"config,omitempty"`
}

// ScanOptions tune Scan.
type ScanOptions struct {
	// Parallelism bounds concurrent XML fetches; default 8.
	Parallelism int
}

// ScanStats counts the libvirt calls a scan made.
type ScanStats struct {
	ListCalls int `json:"list_calls"`
	XMLCalls  int `json:"xml_calls"`
	// Vanished counts domains that disappeared between listing and
	// fetching (skipped, not an error).
	Vanished int `json:"vanished"`
}

// Scan lists every domain, active and inactive, and fetches the live and
// the persistent definition of each. Listing is two calls (all domains with
// their state in one, the transient ones in the other); each domain then
// costs one XML fetch, two when it runs and is persistent. Domains are sorted
// by name, then uuid.
func (c *Conn) Scan(ctx context.Context, opts ScanOptions) ([]Domain, ScanStats, error) {
	var stats ScanStats
	records, err := c.lv.ConnectGetAllDomainStats(nil, uint32(libvirt.DomainStatsState), 0)
	stats.ListCalls++
	if err != nil {
		return nil, stats, fmt.Errorf("libvirt %s: list domains with state: %w", c.uri, err)
	}
	transient, _, err := c.lv.ConnectListAllDomains(1, libvirt.ConnectListDomainsTransient)
	stats.ListCalls++
	if err != nil {
		return nil, stats, fmt.Errorf("libvirt %s: list transient domains: %w", c.uri, err)
	}
	isTransient := make(map[libvirt.UUID]bool, len(transient))
	for _, d := range transient {
		isTransient[d.UUID] = true
	}

	par := opts.Parallelism
	if par <= 0 {
		par = 8
	}
	out := make([]Domain, len(records))
	keep := make([]bool, len(records))
	errs := make([]error, len(records))
	calls := make([]int, len(records))
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	for i, rec := range records {
		if err := ctx.Err(); err != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			st := StateNoState
			for _, p := range rec.Params {
				if p.Field == "state.state" {
					if v, ok := p.Value.I.(int32); ok {
						st = stateOf(libvirt.DomainState(v))
					}
				}
			}
			d, n, err := c.fetch(ctx, rec.Dom, st, !isTransient[rec.Dom.UUID])
			calls[i] = n
			switch {
			case errors.Is(err, ErrDomainNotFound):
				c.log.Debug("domain vanished during scan", "domain", rec.Dom.Name)
			case err != nil:
				errs[i] = err
			default:
				out[i], keep[i] = d, true
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, stats, fmt.Errorf("libvirt %s: scan: %w", c.uri, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, stats, err
	}
	domains := make([]Domain, 0, len(out))
	for i := range out {
		stats.XMLCalls += calls[i]
		if keep[i] {
			domains = append(domains, out[i])
		} else {
			stats.Vanished++
		}
	}
	sort.Slice(domains, func(i, j int) bool {
		if domains[i].Name != domains[j].Name {
			return domains[i].Name < domains[j].Name
		}
		return domains[i].UUID < domains[j].UUID
	})
	return domains, stats, nil
}

// Domain reads one domain, by name or uuid, like Scan does.
func (c *Conn) Domain(ctx context.Context, domain string) (Domain, error) {
	d, err := c.lookup(domain)
	if err != nil {
		return Domain{}, err
	}
	state, _, err := c.lv.DomainGetState(d, 0)
	if err != nil {
		return Domain{}, c.domainErr(d, "get state", err)
	}
	persistent, err := c.lv.DomainIsPersistent(d)
	if err != nil {
		return Domain{}, c.domainErr(d, "is persistent", err)
	}
	dom, _, err := c.fetch(ctx, d, stateOf(libvirt.DomainState(state)), persistent == 1)
	return dom, err
}

// fetch reads the definitions of one listed domain; n counts XML calls.
func (c *Conn) fetch(ctx context.Context, d libvirt.Domain, st State, persistent bool) (Domain, int, error) {
	dom := Domain{UUID: formatUUID(d.UUID), Name: d.Name, State: st, Active: d.ID != -1, Persistent: persistent}
	n := 0
	get := func(flags libvirt.DomainXMLFlags) (*Definition, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n++
		x, err := c.lv.DomainGetXMLDesc(d, flags)
		if err != nil {
			return nil, c.domainErr(d, "get XML", err)
		}
		def, err := ParseDomainBytes([]byte(x))
		if err != nil {
			return nil, fmt.Errorf("domain %s (%s): %w", d.Name, dom.UUID, err)
		}
		return def, nil
	}
	first, err := get(0)
	if err != nil {
		return Domain{}, n, err
	}
	switch {
	case !dom.Active:
		dom.Config = first
	case persistent:
		dom.Live = first
		if dom.Config, err = get(libvirt.DomainXMLInactive); err != nil {
			return Domain{}, n, err
		}
	default:
		dom.Live = first
	}
	if dom.Live != nil && dom.Live.Nova != nil {
		dom.Nova = dom.Live.Nova
	} else if dom.Config != nil {
		dom.Nova = dom.Config.Nova
	}
	return dom, n, nil
}

func (c *Conn) domainErr(d libvirt.Domain, what string, err error) error {
	if libvirt.IsNotFound(err) {
		return fmt.Errorf("domain %s (%s): %s: %w", d.Name, formatUUID(d.UUID), what, ErrDomainNotFound)
	}
	return fmt.Errorf("domain %s (%s): %s: %w", d.Name, formatUUID(d.UUID), what, err)
}
