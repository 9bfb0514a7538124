package main

import (
	"context"
	"fmt"
	"io"
)

func runReconcile(_ context.Context, _ []string, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "cinderwarden reconcile: not implemented yet (issue 5)")
	return 3
}
