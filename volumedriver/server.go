package volumedriver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/docker/go-plugins-helpers/volume"
)

// ContentType is the plugin protocol's media type.
const ContentType = "application/vnd.docker.plugins.v1+json"

// maxBody bounds a request body (Docker's are tiny).
const maxBody = 1 << 20

// Handler serves the Docker volume plugin protocol for the driver.
// The handlers are thin: decode and check the body (Decode*: the exact
// protocol errors of the bad-input table), call the driver, encode. Errors
// are answered with status 500 and {"Err": PluginErr(err)}, as
// go-plugins-helpers does.
func (d *Driver) Handler() http.Handler {
	var drv volume.Driver = d
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+PathActivate, func(w http.ResponseWriter, r *http.Request) {
		encode(w, map[string][]string{"Implements": {"VolumeDriver"}}, nil)
	})
	handle := func(path string, fn func(body []byte) (any, error)) {
		mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
			if err == nil && len(body) > maxBody {
				err = &RequestError{Reason: fmt.Sprintf("request body larger than %d bytes", maxBody)}
			}
			if err != nil {
				encode(w, nil, err)
				return
			}
			res, err := fn(body)
			encode(w, res, err)
		})
	}
	// decodeErr logs and counts a request refused at the edge (the driver's
	// methods log the others).
	decodeErr := func(op string, err error) error {
		d.observe(op, "", "", time.Now(), err)
		return err
	}
	handle(PathCreate, func(b []byte) (any, error) {
		req, _, err := DecodeCreate(b, d.cfg.Policy)
		if err != nil {
			return nil, decodeErr("create", err)
		}
		return struct{}{}, drv.Create(&req)
	})
	handle(PathRemove, func(b []byte) (any, error) {
		req, err := DecodeRemove(b)
		if err != nil {
			return nil, decodeErr("remove", err)
		}
		return struct{}{}, drv.Remove(&req)
	})
	handle(PathMount, func(b []byte) (any, error) {
		req, err := DecodeMount(b)
		if err != nil {
			return nil, decodeErr("mount", err)
		}
		return drv.Mount(&req)
	})
	handle(PathUnmount, func(b []byte) (any, error) {
		req, err := DecodeUnmount(b)
		if err != nil {
			return nil, decodeErr("unmount", err)
		}
		return struct{}{}, drv.Unmount(&req)
	})
	handle(PathPath, func(b []byte) (any, error) {
		req, err := DecodePath(b)
		if err != nil {
			return nil, decodeErr("path", err)
		}
		return drv.Path(&req)
	})
	handle(PathGet, func(b []byte) (any, error) {
		req, err := DecodeGet(b)
		if err != nil {
			return nil, decodeErr("get", err)
		}
		return drv.Get(&req)
	})
	handle(PathList, func([]byte) (any, error) { return drv.List() })
	handle(PathCapabilities, func([]byte) (any, error) { return drv.Capabilities(), nil })
	return mux
}

func encode(w http.ResponseWriter, res any, err error) {
	w.Header().Set("Content-Type", ContentType)
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		_ = json.NewEncoder(w).Encode(ErrorResponse(err))
		return
	}
	_ = json.NewEncoder(w).Encode(res)
}

// ListenUnix listens on the plugin socket: a stale socket file left by a
// killed plugin is removed (a live one is refused), the directory is
// created 0755 and the socket made mode 0660 (root and the group only).
func ListenUnix(path string) (net.Listener, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("plugin socket %q: must be an absolute path", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("plugin socket %s: %w", path, err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&fs.ModeSocket == 0 {
			return nil, fmt.Errorf("plugin socket %s: exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			_ = c.Close()
			return nil, fmt.Errorf("plugin socket %s: another plugin is serving on it", path)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("plugin socket %s: remove stale socket: %w", path, err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("plugin socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("plugin socket %s: chmod: %w", path, err)
	}
	return l, nil
}
