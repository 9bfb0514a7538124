//go:build !linux

package reconciler

import (
	"context"
	"errors"
	"time"
)

var errMountsUnsupported = errors.New("mount table: only supported on linux")

func readMounts(context.Context, []string, time.Duration) ([]MountEntry, error) {
	return nil, errMountsUnsupported
}

func mountEntry(context.Context, string, time.Duration) ([]MountEntry, error) {
	return nil, errMountsUnsupported
}

func lazyUnmount(string) error { return errMountsUnsupported }
