package hostdisk

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Device is a block device found for a volume.
type Device struct {
	// Path is the real device node, every symlink resolved (e.g. /dev/vdb).
	Path string
	// Via is the candidate that led to it: a by-id path or
	// <SysRoot>/block/<name>/serial.
	Via string
}

// Candidates lists every place FindDevice looks for volumeID, in order: the
// by-id links, then the sysfs serial files as a glob pattern.
func (h *Host) Candidates(volumeID string) []string {
	return append(ByIDCandidates(h.cfg.DevRoot, volumeID),
		filepath.Join(h.cfg.SysRoot, "block", "*", "serial"))
}

// FindDevice looks once for the device of volumeID, without waiting. It
// returns an error of class ErrDeviceNotFound when no candidate resolves to a
// block device.
func (h *Host) FindDevice(volumeID string) (Device, error) {
	if err := ValidateVolumeID(volumeID); err != nil {
		return Device{}, err
	}
	if d, ok := h.lookup(volumeID); ok {
		return d, nil
	}
	return Device{}, &DeviceNotFoundError{VolumeID: volumeID, Candidates: h.Candidates(volumeID)}
}

// lookup tries the by-id candidates, then the sysfs serials.
func (h *Host) lookup(volumeID string) (Device, bool) {
	for _, c := range ByIDCandidates(h.cfg.DevRoot, volumeID) {
		if p, ok := resolveBlock(c); ok {
			return Device{Path: p, Via: c}, true
		}
	}
	serials, _ := filepath.Glob(filepath.Join(h.cfg.SysRoot, "block", "*", "serial"))
	sort.Strings(serials)
	for _, sf := range serials {
		b, err := os.ReadFile(sf)
		if err != nil || !SerialMatches(string(b), volumeID) {
			continue
		}
		name := filepath.Base(filepath.Dir(sf))
		if p, ok := resolveBlock(filepath.Join(h.cfg.DevRoot, name)); ok {
			return Device{Path: p, Via: sf}, true
		}
	}
	return Device{}, false
}

// resolveBlock follows symlinks from p and reports the final path when it is
// a block device node.
func resolveBlock(p string) (string, bool) {
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", false
	}
	fi, err := os.Stat(real)
	if err != nil {
		return "", false
	}
	m := fi.Mode()
	if m&fs.ModeDevice == 0 || m&fs.ModeCharDevice != 0 {
		return "", false
	}
	return real, true
}

// WaitForDevice waits until the device of volumeID appears and returns it.
// It watches <DevRoot>/disk/by-id with inotify (or the nearest existing
// parent until by-id is created) and re-checks every FallbackPoll, which also
// covers sysfs serials. The wait ends at Config.DeviceTimeout or when ctx
// ends, with a *DeviceNotFoundError naming the candidates tried.
func (h *Host) WaitForDevice(ctx context.Context, volumeID string) (Device, error) {
	if err := ValidateVolumeID(volumeID); err != nil {
		return Device{}, err
	}
	start := time.Now()
	var found Device
	err := h.waitUntil(ctx, func() bool {
		d, ok := h.lookup(volumeID)
		found = d
		return ok
	})
	if err != nil {
		return Device{}, &DeviceNotFoundError{VolumeID: volumeID, Candidates: h.Candidates(volumeID),
			Waited: time.Since(start), Err: err}
	}
	h.log.Debug("device found", "volume", volumeID, "device", found.Path, "via", found.Via,
		"waited", time.Since(start))
	return found, nil
}

// WaitForDeviceGone waits until no candidate of volumeID resolves to a
// device any more (after a detach), with the same events, fallback poll and
// bounds as WaitForDevice. A timeout is an *Error of class
// ErrDeviceStillPresent naming the device.
func (h *Host) WaitForDeviceGone(ctx context.Context, volumeID string) error {
	if err := ValidateVolumeID(volumeID); err != nil {
		return err
	}
	var last Device
	err := h.waitUntil(ctx, func() bool {
		d, ok := h.lookup(volumeID)
		last = d
		return !ok
	})
	if err != nil {
		return &Error{Class: ErrDeviceStillPresent, Op: "wait for detach of volume " + volumeID,
			Device: last.Path, Detail: "via " + last.Via, Err: err}
	}
	return nil
}

// waitUntil calls done now, on every inotify event on the by-id directory (or
// its nearest existing parent) and every FallbackPoll, until it returns true
// or the deadline passes.
func (h *Host) waitUntil(ctx context.Context, done func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.DeviceTimeout)
	defer cancel()

	byID := filepath.Join(h.cfg.DevRoot, "disk", "by-id")
	w, err := fsnotify.NewWatcher()
	var events chan fsnotify.Event
	var werrs chan error
	watched := ""
	if err != nil {
		h.log.Warn("inotify unavailable, polling only", "dir", byID, "err", err)
	} else {
		defer w.Close()
		events, werrs = w.Events, w.Errors
		watched = h.watchNearest(w, byID, "")
	}
	// Without inotify, poll with a short backoff up to FallbackPoll.
	interval := h.cfg.FallbackPoll
	if w == nil {
		interval = 20 * time.Millisecond
	}
	timer := time.NewTimer(interval)
	defer timer.Stop()
	for {
		if done() {
			return nil
		}
		select {
		case <-ctx.Done():
			if done() {
				return nil
			}
			return ctx.Err()
		case ev, ok := <-events:
			if !ok { // the watcher died: rely on the fallback poll
				events, werrs = nil, nil
				continue
			}
			switch {
			case ev.Name == watched && (ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename)):
				// The watched directory itself went away (the kernel drops
				// its watch): watch the nearest existing ancestor again.
				_ = w.Remove(watched)
				watched = h.watchNearest(w, byID, "")
			case watched != byID && ev.Has(fsnotify.Create):
				// A directory on the way to by-id appeared: move the watch down.
				watched = h.watchNearest(w, byID, watched)
			}
			continue
		case err, ok := <-werrs:
			if !ok {
				events, werrs = nil, nil
				continue
			}
			h.log.Warn("inotify error while waiting for device", "dir", watched, "err", err)
			continue
		case <-timer.C:
			if w == nil && interval < h.cfg.FallbackPoll {
				interval = min(interval*2, h.cfg.FallbackPoll)
			}
			timer.Reset(interval)
		}
	}
}

// watchNearest watches target, or its nearest existing ancestor when target
// does not exist yet, replacing the watch on current. It returns the
// directory now watched ("" if none could be).
func (h *Host) watchNearest(w *fsnotify.Watcher, target, current string) string {
	for dir := target; ; dir = filepath.Dir(dir) {
		if dir == current {
			return current
		}
		err := w.Add(dir)
		if err == nil {
			if current != "" {
				_ = w.Remove(current)
			}
			return dir
		}
		if !errors.Is(err, fs.ErrNotExist) {
			h.log.Warn("cannot watch directory, relying on fallback poll", "dir", dir, "err", err)
			return current
		}
		parent := filepath.Dir(dir)
		if parent == dir || !strings.HasPrefix(target, parent) {
			return current
		}
	}
}

// String makes a Device readable in logs.
func (d Device) String() string { return fmt.Sprintf("%s (via %s)", d.Path, d.Via) }
