//go:build !linux

package simcloud

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// sparseCopy copies src to dst (replacing it) and makes dst at least size
// bytes long. Off Linux it is a plain copy (holes are filled); a missing
// src gives a missing dst.
func sparseCopy(src, dst string, size int64) error {
	in, err := os.Open(src)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	tmp := dst + ".part"
	out, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	_, err = io.Copy(out, in)
	if err == nil {
		var fi os.FileInfo
		if fi, err = out.Stat(); err == nil && fi.Size() < size {
			err = out.Truncate(size)
		}
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return nil
}
