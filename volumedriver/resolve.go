package volumedriver

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cinderwarden/cinderwarden/openstack"
)

// More error classes of the Mount/Create decisions.
var (
	// ErrNoSuchVolume: no Cinder volume (or snapshot) has that id or name.
	ErrNoSuchVolume = errors.New("no such volume")
	// ErrAmbiguousName: several Cinder volumes (or snapshots) share the name.
	ErrAmbiguousName = errors.New("ambiguous name")
	// ErrHeldElsewhere: the volume is attached to another instance and takeover is off.
	ErrHeldElsewhere = errors.New("volume attached to another instance")
	// ErrVolumeUnusable: Cinder's status forbids attaching (error, deleting...).
	ErrVolumeUnusable = errors.New("volume not usable")
)

// FromOpenStack converts the openstack package's view of a volume.
func FromOpenStack(v *openstack.Volume) *CinderVolume {
	if v == nil {
		return nil
	}
	c := &CinderVolume{
		ID: v.ID, Name: v.Name, Status: v.Status, SizeGiB: v.SizeGiB, VolumeType: v.VolumeType,
		AvailabilityZone: v.AvailabilityZone, CreatedAt: v.CreatedAt, Metadata: v.Metadata,
	}
	for _, a := range v.Attachments {
		c.Attachments = append(c.Attachments, CinderAttachment{
			ServerID: a.ServerID, AttachmentID: a.AttachmentID, HostName: a.HostName, Device: a.Device,
		})
	}
	return c
}

// Candidate is a Cinder object found when looking a reference up.
type Candidate struct {
	ID, Name string
}

// PickOne resolves ref (an id or a name) among candidates (the objects whose
// id or name matched in Cinder, e.g. a GET by id plus a list filtered by
// name). An exact id wins; otherwise exactly one name must match. kind is
// "volume" or "snapshot", for the messages:
//
//	no volume has the id or name "x"
//	2 volumes are named "x": <id1>, <id2>; use the id
func PickOne(kind, ref string, candidates []Candidate) (string, error) {
	var named []string
	for _, c := range candidates {
		if c.ID == ref {
			return c.ID, nil
		}
		if c.Name == ref {
			named = append(named, c.ID)
		}
	}
	named = sortedUnique(named)
	switch len(named) {
	case 0:
		return "", fmt.Errorf("no %s has the id or name %q: %w", kind, ref, ErrNoSuchVolume)
	case 1:
		return named[0], nil
	}
	return "", fmt.Errorf("%d %ss are named %q: %s; use the id: %w",
		len(named), kind, ref, strings.Join(named, ", "), ErrAmbiguousName)
}

// HeldElsewhereError refuses a Mount of a volume attached to another
// instance while takeover is off (issue 4). Unwraps to ErrHeldElsewhere.
type HeldElsewhereError struct {
	Name, VolumeID string
	Instance, Host string
}

func (e *HeldElsewhereError) Error() string {
	host := e.Host
	if host == "" {
		host = "unknown host"
	}
	return fmt.Sprintf("volume %s (%s) is attached to instance %s on %s and takeover is off: "+
		"stop its containers there, or enable takeover for this volume (metadata %s=true, "+
		"or -o %s=true when creating it) or in the plugin configuration",
		e.Name, e.VolumeID, e.Instance, host, MetaPreempt, OptPreempt)
}

func (e *HeldElsewhereError) Unwrap() error { return ErrHeldElsewhere }

// AttachPlan is what Mount must do about Cinder before attaching.
type AttachPlan int

const (
	// PlanAttach: available; attach it here.
	PlanAttach AttachPlan = iota + 1
	// PlanAlreadyHere: attached (or attaching) to this instance: wait/reuse.
	PlanAlreadyHere
	// PlanWait: Cinder is in the middle of something (detaching, reserved by
	// another instance...): poll again with backoff until it settles.
	PlanWait
	// PlanTakeover: attached elsewhere and takeover is on: run issue 4's
	// protocol (Force says whether a container on the holder may be overridden).
	PlanTakeover
)

func (p AttachPlan) String() string {
	switch p {
	case PlanAttach:
		return "attach"
	case PlanAlreadyHere:
		return "already-here"
	case PlanWait:
		return "wait"
	case PlanTakeover:
		return "takeover"
	}
	return fmt.Sprintf("AttachPlan(%d)", int(p))
}

// Decision is PlanAttach's answer.
type Decision struct {
	Plan   AttachPlan
	Holder CinderAttachment // PlanTakeover: the current holder
	Force  bool             // PlanTakeover with PreemptForce
}

// PlanAttachment decides what Mount does given Cinder's view of the volume,
// this instance, and the preempt mode in effect (PreemptMode.Resolve). A
// volume held elsewhere with takeover off is a *HeldElsewhereError; a
// volume in an error or deleting status is ErrVolumeUnusable.
func PlanAttachment(c *CinderVolume, instanceID string, mode PreemptMode) (Decision, error) {
	if _, here := c.attachmentTo(instanceID); here {
		return Decision{Plan: PlanAlreadyHere}, nil
	}
	var others []CinderAttachment
	for _, a := range c.Attachments {
		if a.ServerID != instanceID {
			others = append(others, a)
		}
	}
	slices.SortFunc(others, func(a, b CinderAttachment) int { return strings.Compare(a.ServerID, b.ServerID) })
	switch {
	case strings.HasPrefix(c.Status, "error") || c.Status == "deleting" || c.Status == "creating" ||
		c.Status == "downloading" || c.Status == "maintenance" || c.Status == "awaiting-transfer":
		return Decision{}, fmt.Errorf("volume %s (%s) is %s in Cinder: %w", c.Name, c.ID, c.Status, ErrVolumeUnusable)
	case len(others) > 0:
		switch mode {
		case PreemptOn, PreemptForce:
			return Decision{Plan: PlanTakeover, Holder: others[0], Force: mode == PreemptForce}, nil
		}
		return Decision{}, &HeldElsewhereError{Name: c.Name, VolumeID: c.ID, Instance: others[0].ServerID, Host: others[0].HostName}
	case c.Status == "available":
		return Decision{Plan: PlanAttach}, nil
	}
	// attaching/reserved without a visible attachment, detaching, in-use
	// with the attachment not yet listed...
	return Decision{Plan: PlanWait}, nil
}
