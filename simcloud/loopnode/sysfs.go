package loopnode

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// sysBlock is where the kernel lists block devices.
const sysBlock = "/sys/block"

// deletedSuffix is what the kernel appends to a backing file's path once the
// file has been unlinked.
const deletedSuffix = " (deleted)"

// Devices returns the bound loop devices whose backing file lies under dir
// (dir itself resolved through symlinks), sorted by path. An empty dir means
// every bound loop device.
func Devices(dir string) ([]Device, error) {
	devs, err := scan(sysBlock)
	if err != nil {
		return nil, err
	}
	if dir == "" {
		return devs, nil
	}
	root := resolveDir(dir)
	var out []Device
	for _, d := range devs {
		if within(root, d.BackingFile) {
			out = append(out, d)
		}
	}
	return out, nil
}

// scan reads every bound loop device under a sysfs block directory laid out
// as the kernel does: <root>/loopN/loop/backing_file, .../loop/autoclear and
// <root>/loopN/size (in 512-byte sectors). Unbound devices have no loop/
// directory and are skipped; a device that is released while being read is
// skipped too.
func scan(root string) ([]Device, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("list loop devices: %w", err)
	}
	var out []Device
	for _, e := range entries {
		name := e.Name()
		if _, ok := loopIndex(name); !ok {
			continue
		}
		d, err := readDevice(filepath.Join(root, name), "/dev/"+name)
		if unbound(err) {
			continue // unbound, or released under us
		}
		if err != nil {
			return nil, fmt.Errorf("read loop device %s: %w", name, err)
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool {
		a, _ := loopIndex(filepath.Base(out[i].Path))
		b, _ := loopIndex(filepath.Base(out[j].Path))
		return a < b
	})
	return out, nil
}

// unbound reports whether an error reading a loop device's sysfs attributes
// means the device is not (or no longer) bound: the loop/ directory is absent,
// or the kernel answers ENODEV for a device being released.
func unbound(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENODEV)
}

// readDevice reads one loop device's sysfs directory; an error for which
// unbound is true means it is not bound.
func readDevice(sysDir, devPath string) (Device, error) {
	back, err := os.ReadFile(filepath.Join(sysDir, "loop", "backing_file"))
	if err != nil {
		return Device{}, err
	}
	d := Device{Path: devPath}
	d.BackingFile, d.BackingDeleted = parseBackingFile(string(back))
	ac, err := os.ReadFile(filepath.Join(sysDir, "loop", "autoclear"))
	if err != nil {
		return Device{}, err
	}
	d.Autoclear = strings.TrimSpace(string(ac)) == "1"
	sz, err := os.ReadFile(filepath.Join(sysDir, "size"))
	if err != nil {
		return Device{}, err
	}
	sectors, err := strconv.ParseInt(strings.TrimSpace(string(sz)), 10, 64)
	if err != nil {
		return Device{}, fmt.Errorf("parse %s/size %q: %w", sysDir, sz, err)
	}
	d.Size = sectors * 512
	return d, nil
}

// parseBackingFile splits the content of loop/backing_file into the path and
// whether the file was unlinked.
func parseBackingFile(s string) (path string, deleted bool) {
	s = strings.TrimSuffix(s, "\n")
	if p, ok := strings.CutSuffix(s, deletedSuffix); ok {
		return p, true
	}
	return s, false
}

// loopIndex returns N for a name "loopN".
func loopIndex(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, "loop")
	if !ok || rest == "" {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 0 || strconv.Itoa(n) != rest {
		return 0, false
	}
	return n, true
}

// canonical returns p as the kernel names it in backing_file: absolute, with
// the symlinks of its directory resolved. The last element is kept as is (the
// file may not exist yet or any more).
func canonical(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	return filepath.Join(resolveDir(filepath.Dir(p)), filepath.Base(p))
}

// resolveDir returns dir absolute with all its symlinks resolved, or just
// absolute and clean when it cannot be resolved.
func resolveDir(dir string) string {
	dir = filepath.Clean(dir)
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	if d, err := filepath.EvalSymlinks(dir); err == nil {
		return d
	}
	return dir
}

// within reports whether path is root or lies below it.
func within(root, path string) bool {
	if path == root {
		return true
	}
	rel, err := filepath.Rel(root, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../") && !filepath.IsAbs(rel)
}
