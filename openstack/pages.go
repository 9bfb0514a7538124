package openstack

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/gophercloud/gophercloud/v2"
)

// eachPage walks every page of the Cinder/Nova listing at url: the items
// are under key, the next link under "<key>_links" (volumes_links,
// attachments_links, servers_links). Each page is handed to fn. An error on
// any page (or from fn) ends the walk with that error; pages already handed
// over must then be treated as an incomplete view.
//
// It does not use gophercloud's pagination: its AttachmentPage looks for
// "links.next" and so stops after the first page of attachments (1000 by
// default), and its generic pages decode every body into map[string]any
// and re-encode it to extract the items, which makes a 20,000-volume
// listing several times slower than decoding once, as here.
func eachPage[T any](ctx context.Context, sc *gophercloud.ServiceClient, url, key string, fn func([]T) error) error {
	service, request := serviceVolume, key+"_list"
	if o, ok := ctx.Value(opKey{}).(op); ok {
		service, request = o.service, o.request
	}
	seen := map[string]bool{}
	for page := 1; url != ""; page++ {
		if seen[url] {
			return fmt.Errorf("page %d: next link %s was already visited: pagination loop", page, url)
		}
		seen[url] = true
		resp, err := sc.Get(ctx, url, nil, &gophercloud.RequestOpts{
			OkCodes: []int{http.StatusOK, http.StatusNoContent}, KeepResponseBody: true,
		})
		if err != nil {
			return fmt.Errorf("page %d: %w", page, apiError(service, request, err))
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("page %d: read: %w", page, err)
		}
		if resp.StatusCode == http.StatusNoContent {
			return nil
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(body, &raw); err != nil {
			return fmt.Errorf("page %d: decode: %w", page, err)
		}
		itemsRaw, ok := raw[key]
		if !ok {
			return fmt.Errorf("page %d: response has no %q", page, key)
		}
		var items []T
		if err := json.Unmarshal(itemsRaw, &items); err != nil {
			return fmt.Errorf("page %d: decode %s: %w", page, key, err)
		}
		if len(items) == 0 {
			return nil
		}
		if err := fn(items); err != nil {
			return err
		}
		var links []gophercloud.Link
		if l, ok := raw[key+"_links"]; ok && string(l) != "null" {
			if err := json.Unmarshal(l, &links); err != nil {
				return fmt.Errorf("page %d: decode %s_links: %w", page, key, err)
			}
		}
		if url, err = gophercloud.ExtractNextURL(links); err != nil {
			return fmt.Errorf("page %d: %s_links: %w", page, key, err)
		}
	}
	return nil
}

// collect walks all pages into one slice; on any error it returns nil, never
// a partial list.
func collect[T, U any](ctx context.Context, sc *gophercloud.ServiceClient, url, key string, conv func(T) U) ([]U, error) {
	out := []U{}
	err := eachPage(ctx, sc, url, key, func(items []T) error {
		for _, it := range items {
			out = append(out, conv(it))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
