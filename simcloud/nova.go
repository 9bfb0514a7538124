package simcloud

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// The compute side of Nova: asynchronous attach and detach workers that
// wait their latency, call the backends, and report back to the model.

func physKey(volumeID, instanceID string) string { return volumeID + "/" + instanceID }

// startNovaAttach runs the compute half of an accepted Nova attach.
func (s *Sim) startNovaAttach(serverID, volumeID, host, attachmentID string) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := sleep(s.ctx, s.clock, s.opts.Latency.Attach); err != nil {
			return
		}
		a, ok := s.model.novaConnect(s.clock.Now(), serverID, volumeID)
		if !ok {
			s.log.Info("simcloud: nova attach abandoned: server, mapping or volume gone", "server", serverID, "volume", volumeID)
			return
		}
		a.BackingFile = s.BackingFile(volumeID)
		var device string
		var err error
		if s.faults.takeAttachFail() {
			err = errors.New("injected compute attach failure")
		} else {
			device, err = s.backendAttach(s.ctx, a, host, attachmentID)
		}
		if err != nil {
			s.log.Warn("simcloud: nova attach failed", "server", serverID, "volume", volumeID, "err", err)
			s.events.add(Event{Time: s.clock.Now(), Kind: EventAttachFailed, VolumeID: volumeID, InstanceID: serverID,
				Host: host, NodeDevDir: a.NodeDevDir, AttachmentID: attachmentID, Detail: err.Error()})
			s.model.novaAttachDone(s.clock.Now(), serverID, volumeID, false)
			return
		}
		_ = device
		s.model.novaAttachDone(s.clock.Now(), serverID, volumeID, true)
	}()
}

// startNovaDetach runs the compute half of an accepted Nova detach.
func (s *Sim) startNovaDetach(serverID, volumeID, host, attachmentID string) {
	hold := s.faults.detachHold()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if hold != nil {
			select {
			case <-hold:
			case <-s.ctx.Done():
				return
			}
		}
		if err := sleep(s.ctx, s.clock, s.opts.Latency.Detach); err != nil {
			return
		}
		a, ok := s.detachInfo(serverID, volumeID)
		if !ok {
			return
		}
		var err error
		if s.faults.takeDetachFail() {
			err = errors.New("injected compute detach failure")
		} else {
			err = s.backendDetach(s.ctx, a, host, attachmentID)
		}
		if err != nil {
			s.log.Warn("simcloud: nova detach failed", "server", serverID, "volume", volumeID, "err", err)
			s.events.add(Event{Time: s.clock.Now(), Kind: EventDetachFailed, VolumeID: volumeID, InstanceID: serverID,
				Host: host, NodeDevDir: a.NodeDevDir, AttachmentID: attachmentID, Detail: err.Error()})
			s.model.novaDetachDone(s.clock.Now(), serverID, volumeID, false)
			return
		}
		s.model.novaDetachDone(s.clock.Now(), serverID, volumeID, true)
	}()
}

// detachInfo is what the backends need to detach volumeID from serverID.
func (s *Sim) detachInfo(serverID, volumeID string) (Attachment, bool) {
	a, ok := s.model.novaDetachInfo(serverID, volumeID)
	a.BackingFile = s.BackingFile(volumeID)
	return a, ok
}

// backendHolds reports whether the backends hold a (attached and not yet
// detached).
func (s *Sim) backendHolds(a Attachment) bool {
	s.physMu.Lock()
	defer s.physMu.Unlock()
	_, ok := s.phys[physKey(a.VolumeID, a.InstanceID)]
	return ok
}

// backendAttach calls every backend in order; on failure the ones that
// succeeded are detached again in reverse order.
func (s *Sim) backendAttach(ctx context.Context, a Attachment, host, attachmentID string) (string, error) {
	var device string
	for i, b := range s.opts.Backends {
		d, err := b.AttachVolume(ctx, a)
		if err != nil {
			for j := i - 1; j >= 0; j-- {
				if derr := s.opts.Backends[j].DetachVolume(ctx, a); derr != nil {
					s.log.Error("simcloud: undo attach", "volume", a.VolumeID, "instance", a.InstanceID, "err", derr)
				}
			}
			return "", fmt.Errorf("volume %s: attach to instance %s: backend %d: %w", a.VolumeID, a.InstanceID, i, err)
		}
		if device == "" {
			device = d
		}
	}
	s.physMu.Lock()
	s.phys[physKey(a.VolumeID, a.InstanceID)] = a
	s.physMu.Unlock()
	s.events.add(Event{Time: s.clock.Now(), Kind: EventAttach, VolumeID: a.VolumeID, InstanceID: a.InstanceID,
		Host: host, NodeDevDir: a.NodeDevDir, AttachmentID: attachmentID, Mode: "rw", Device: device})
	return device, nil
}

// backendDetach calls every backend in reverse order.
func (s *Sim) backendDetach(ctx context.Context, a Attachment, host, attachmentID string) error {
	var errs []error
	for i := len(s.opts.Backends) - 1; i >= 0; i-- {
		if err := s.opts.Backends[i].DetachVolume(ctx, a); err != nil {
			errs = append(errs, fmt.Errorf("volume %s: detach from instance %s: backend %d: %w", a.VolumeID, a.InstanceID, i, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	s.physMu.Lock()
	delete(s.phys, physKey(a.VolumeID, a.InstanceID))
	s.physMu.Unlock()
	s.events.add(Event{Time: s.clock.Now(), Kind: EventDetach, VolumeID: a.VolumeID, InstanceID: a.InstanceID,
		Host: host, NodeDevDir: a.NodeDevDir, AttachmentID: attachmentID})
	return nil
}

// removeBackingFile deletes a deleted volume's backing file, if any.
func (s *Sim) removeBackingFile(volumeID string) {
	if err := os.Remove(s.BackingFile(volumeID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("simcloud: remove backing file", "volume", volumeID, "err", err)
	}
}

// growBackingFile extends an existing backing file after os-extend.
func (s *Sim) growBackingFile(volumeID string, sizeGiB int) {
	p := s.BackingFile(volumeID)
	fi, err := os.Stat(p)
	if err != nil {
		return
	}
	if want := int64(sizeGiB) << 30; fi.Size() < want {
		if err := os.Truncate(p, want); err != nil {
			s.log.Warn("simcloud: grow backing file", "volume", volumeID, "err", err)
		}
	}
}
