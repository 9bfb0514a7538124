package hostdisk

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
)

// Runner is the seam to external programs (blkid, mkfs.ext4, mkfs.xfs). A
// program runs with an argument list, never through a shell, and with no
// stdin.
type Runner interface {
	// Run runs name with args. A program that ran and exited non-zero is
	// not an error: its status is in Result.ExitCode. err is for a program
	// that could not be started or was stopped by ctx.
	Run(ctx context.Context, name string, args ...string) (Result, error)
}

// Result is what a program left behind.
type Result struct {
	Stdout, Stderr []byte
	ExitCode       int
}

// ExecRunner runs programs with os/exec.
type ExecRunner struct{}

// Run implements Runner.
func (ExecRunner) Run(ctx context.Context, name string, args ...string) (Result, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := Result{Stdout: out.Bytes(), Stderr: errb.Bytes()}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ctx.Err() == nil {
		res.ExitCode = ee.ExitCode()
		return res, nil
	}
	if err != nil && ctx.Err() != nil {
		return res, errors.Join(err, ctx.Err())
	}
	return res, err
}
