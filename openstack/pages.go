package openstack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/pagination"
)

// linkedPage is one page of a Cinder/Nova listing whose next link is in
// "<key>_links" (volumes_links, attachments_links, servers_links).
// gophercloud's own AttachmentPage looks for "links.next" and so would stop
// after the first page (1000 attachments by default); this type is why we
// never do.
type linkedPage struct {
	pagination.LinkedPageBase
	key string
}

func (p linkedPage) IsEmpty() (bool, error) {
	if p.StatusCode == 204 {
		return true, nil
	}
	var items []json.RawMessage
	if err := p.ExtractIntoSlicePtr(&items, p.key); err != nil {
		return false, err
	}
	return len(items) == 0, nil
}

func (p linkedPage) NextPageURL() (string, error) {
	body, ok := p.Body.(map[string]any)
	if !ok {
		return "", fmt.Errorf("%s page: body is %T, not an object", p.key, p.Body)
	}
	raw, ok := body[p.key+"_links"]
	if !ok || raw == nil {
		return "", nil
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return "", err
	}
	var links []gophercloud.Link
	if err := json.Unmarshal(b, &links); err != nil {
		return "", fmt.Errorf("%s page: %s_links: %w", p.key, p.key, err)
	}
	next, err := gophercloud.ExtractNextURL(links)
	if err != nil {
		return "", err
	}
	if next != "" && next == p.URL.String() {
		return "", fmt.Errorf("%s page: next link %s points to the same page", p.key, next)
	}
	return next, nil
}

// eachPage walks every page of the listing at url, decoding the items under
// key and handing each page to fn. An error on any page (or from fn) ends
// the walk with that error; pages already handed over must then be treated
// as an incomplete view.
func eachPage[T any](ctx context.Context, sc *gophercloud.ServiceClient, url, key string, fn func([]T) error) error {
	service, request := serviceVolume, key+"_list"
	if o, ok := ctx.Value(opKey{}).(op); ok {
		service, request = o.service, o.request
	}
	pager := pagination.NewPager(sc, url, func(r pagination.PageResult) pagination.Page {
		return linkedPage{LinkedPageBase: pagination.LinkedPageBase{PageResult: r}, key: key}
	})
	page := 0
	var fnErr error
	err := pager.EachPage(ctx, func(_ context.Context, p pagination.Page) (bool, error) {
		page++
		var items []T
		if err := p.(linkedPage).ExtractIntoSlicePtr(&items, key); err != nil {
			return false, fmt.Errorf("%w %s: %w", errDecode, key, err)
		}
		if err := fn(items); err != nil {
			fnErr = err
			return false, err
		}
		return true, nil
	})
	switch {
	case err == nil:
		return nil
	case fnErr != nil:
		return err
	}
	// The failing page is the one after the last page handled (or the one
	// that failed to decode).
	n := page + 1
	if errors.Is(err, errDecode) {
		n = page
	}
	return fmt.Errorf("page %d: %w", n, apiError(service, request, err))
}

var errDecode = errors.New("decode")

// collect walks all pages into one slice; on any error it returns nil, never
// a partial list.
func collect[T, U any](ctx context.Context, sc *gophercloud.ServiceClient, url, key string, conv func(T) U) ([]U, error) {
	var out []U
	err := eachPage(ctx, sc, url, key, func(items []T) error {
		for _, it := range items {
			out = append(out, conv(it))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if out == nil {
		out = []U{}
	}
	return out, nil
}
