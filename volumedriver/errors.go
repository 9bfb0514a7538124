package volumedriver

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Error classes. Every error this package returns for bad input or an
// impossible request wraps exactly one of these, so callers (and the plugin
// edge) decide with errors.Is, never by reading the text.
var (
	// ErrInvalidName: a volume name Docker or Cinder would not accept.
	ErrInvalidName = errors.New("invalid volume name")
	// ErrUnknownOption: a `-o key=value` whose key this driver does not know.
	ErrUnknownOption = errors.New("unknown option")
	// ErrInvalidOption: a known option with a value that is not allowed.
	ErrInvalidOption = errors.New("invalid option value")
	// ErrConflictingOptions: options that cannot be used together.
	ErrConflictingOptions = errors.New("conflicting options")
	// ErrMalformedRequest: a plugin-socket request body that does not decode
	// or lacks a required field.
	ErrMalformedRequest = errors.New("malformed request")
	// ErrInvalidMetadata: cinderwarden.* metadata on a Cinder volume that
	// cannot be interpreted (someone edited it by hand).
	ErrInvalidMetadata = errors.New("invalid cinderwarden metadata")
	// ErrIllegalTransition: an event the volume state machine cannot accept
	// in its current phase (a bug in the caller, or an operation in flight).
	ErrIllegalTransition = errors.New("illegal state transition")
	// ErrInUse: the volume is used by containers on this node (mount ids).
	ErrInUse = errors.New("volume in use on this node")
	// ErrStateCorrupt: the state file exists but cannot be trusted.
	ErrStateCorrupt = errors.New("state file corrupt")
	// ErrStateVersion: the state file was written by a newer format.
	ErrStateVersion = errors.New("state file version not supported")
	// ErrIncompleteView: reconciliation was asked to decide without a complete
	// view of Cinder (no destructive step on a partial view).
	ErrIncompleteView = errors.New("incomplete view")
)

// NameError is a rejected volume name. Unwraps to ErrInvalidName.
type NameError struct {
	Name   string
	Reason string
}

func (e *NameError) Error() string {
	if e.Name == "" {
		return "volume name must not be empty"
	}
	return fmt.Sprintf("volume name %q is invalid: %s", displayName(e.Name), e.Reason)
}

func (e *NameError) Unwrap() error { return ErrInvalidName }

// displayName shortens very long names so errors stay readable.
func displayName(s string) string {
	const max = 40
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

// OptionError is a rejected create option. Class is one of ErrUnknownOption,
// ErrInvalidOption or ErrConflictingOptions; errors.Is(err, Class) holds.
type OptionError struct {
	Class error
	// Option is the offending key (for ErrUnknownOption: the unknown keys,
	// sorted; for ErrConflictingOptions: the conflicting keys).
	Option []string
	Value  string
	// Reason says why the value is not allowed (or, for an unknown option,
	// lists the valid ones).
	Reason string
}

func (e *OptionError) Error() string {
	switch e.Class {
	case ErrUnknownOption:
		quoted := make([]string, len(e.Option))
		for i, k := range e.Option {
			quoted[i] = strconv.Quote(k)
		}
		if len(quoted) == 1 {
			return fmt.Sprintf("unknown option %s: %s", quoted[0], e.Reason)
		}
		return fmt.Sprintf("unknown options %s: %s", strings.Join(quoted, ", "), e.Reason)
	case ErrConflictingOptions:
		return e.Reason
	default:
		return fmt.Sprintf("option %s=%q: %s", strings.Join(e.Option, ","), displayName(e.Value), e.Reason)
	}
}

func (e *OptionError) Unwrap() error { return e.Class }

// RequestError is a plugin-socket request that could not be decoded or
// lacks a required field. Unwraps to ErrMalformedRequest (and to the JSON
// decoder's error when there is one).
type RequestError struct {
	Reason string
	Err    error
}

func (e *RequestError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("malformed request: %s: %v", e.Reason, e.Err)
	}
	return "malformed request: " + e.Reason
}

func (e *RequestError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrMalformedRequest, e.Err}
	}
	return []error{ErrMalformedRequest}
}

// TransitionError is an event the state machine refused. Unwraps to
// ErrIllegalTransition.
type TransitionError struct {
	VolumeID string
	Phase    Phase
	Event    string
}

func (e *TransitionError) Error() string {
	return fmt.Sprintf("volume %s: %s not allowed while %s", e.VolumeID, e.Event, e.Phase)
}

func (e *TransitionError) Unwrap() error { return ErrIllegalTransition }
