package simcloud

import "fmt"

// errKind classifies a refusal by the simulated service; the HTTP layer maps
// it to a status code and the service's error key (badRequest, ...).
type errKind int

const (
	errBadRequest errKind = iota + 1
	errNotFound
	errConflict
	errForbidden
)

// apiError is a refusal the real service would answer with kind and msg.
type apiError struct {
	kind errKind
	msg  string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(format string, a ...any) error {
	return &apiError{kind: errBadRequest, msg: fmt.Sprintf(format, a...)}
}

func notFound(format string, a ...any) error {
	return &apiError{kind: errNotFound, msg: fmt.Sprintf(format, a...)}
}

func conflict(format string, a ...any) error {
	return &apiError{kind: errConflict, msg: fmt.Sprintf(format, a...)}
}

func forbidden(format string, a ...any) error {
	return &apiError{kind: errForbidden, msg: fmt.Sprintf(format, a...)}
}

// Cinder's messages, worded as Cinder 21 (Zed) words them.
func errVolumeNotFound(id string) error { return notFound("Volume %s could not be found.", id) }

func errAttachmentNotFound(id string) error {
	return notFound("Volume attachment could not be found with filter: attachment_id = %s.", id)
}

func errPolicy(rule string) error {
	return forbidden("Policy doesn't allow %s to be performed.", rule)
}

// errNovaUsingAttachment is Cinder's ConflictNovaUsingAttachment, the guard
// added for bug 2004555.
func errNovaUsingAttachment(instanceID string) error {
	return conflict("Detach volume from instance %s using the Compute API", instanceID)
}

const msgDeleteInUse = "Invalid volume: Volume status must be available or error or error_restoring or error_extending or error_managing and must not be migrating, attached, belong to a group, have snapshots, awaiting a transfer, or be disassociated from snapshots after volume transfer."

const msgDetachState = "Invalid volume: Unable to detach volume. Volume status must be 'in-use' and attach_status must be 'attached' to detach."

func errInstanceNotFound(id string) error { return notFound("Instance %s could not be found.", id) }
